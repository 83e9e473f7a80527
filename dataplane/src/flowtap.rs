//! The kernel side of flow visibility, read: the two flow tables
//! (FLOWS_0/FLOWS_1), FLOW_CONFIG, the per-CPU FLOW_STATS, the EVENTS
//! ring buffer and the Service translations (SERVICE_CT), as a
//! [`FlowSource`].
//!
//! A drain is lossless and exact (see `bulkhead-common`, "Flow
//! accounting"): flip FLOW_CONFIG's `slot` so the programs write the other
//! table, wait an RCU grace period ([`RcuBarrier`]) so no program still
//! writes the old one, then look up and delete every entry of the now idle
//! table (`BPF_MAP_LOOKUP_AND_DELETE_BATCH`, per key when the kernel lacks
//! it). Each entry is the flow's delta since the previous drain of that
//! table.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Duration;

use aya::maps::{Array, HashMap, Map, MapData, MapError, PerCpuArray, RingBuf};
use bulkhead_common::{
    CtKey, FLOW_STATS_MAX, FlowConfig, FlowEvent, FlowKey, FlowValue, ServiceBackend,
};
use nix::libc;

use super::DataplaneError;
use super::bpfsys::{self, Batch, RcuBarrier};
use super::pins::PinDir;
use bulkhead_flows::source::{FlowSource, FlowSourceError, KernelFlowStats};

/// Map names of the flow tables, in slot order.
pub const FLOWS_MAPS: [&str; 2] = ["FLOWS_0", "FLOWS_1"];
/// The flow accounting configuration map.
pub const FLOW_CONFIG_MAP: &str = "FLOW_CONFIG";
/// The per-CPU flow counters.
pub const FLOW_STATS_MAP: &str = "FLOW_STATS";
/// The flow event ring buffer.
pub const EVENTS_MAP: &str = "EVENTS";
/// The Service translations (original tuple → backend).
pub const SERVICE_CT_MAP: &str = "SERVICE_CT";

/// The flow maps, as `aya` maps (from an `Ebpf` or opened pins).
pub struct FlowMaps {
    /// FLOWS_0.
    pub flows_0: Map,
    /// FLOWS_1.
    pub flows_1: Map,
    /// FLOW_CONFIG.
    pub config: Map,
    /// FLOW_STATS.
    pub stats: Map,
    /// EVENTS.
    pub events: Map,
    /// SERVICE_CT (`None`: records name no Service backend).
    pub service_ct: Option<Map>,
}

impl FlowMaps {
    /// Opens the flow maps pinned in `pins`.
    pub fn open(pins: &PinDir) -> Result<Self, DataplaneError> {
        let open = |name| super::kmaps::open(pins, name);
        Ok(Self {
            flows_0: open(FLOWS_MAPS[0])?,
            flows_1: open(FLOWS_MAPS[1])?,
            config: open(FLOW_CONFIG_MAP)?,
            stats: open(FLOW_STATS_MAP)?,
            events: open(EVENTS_MAP)?,
            service_ct: Some(open(SERVICE_CT_MAP)?),
        })
    }
}

/// Reader of the kernel's flow accounting (one owner: the collector).
pub struct FlowTap {
    tables: [HashMap<MapData, FlowKey, FlowValue>; 2],
    /// The tables' descriptors, for the raw batch operation.
    table_fds: [OwnedFd; 2],
    config: Array<MapData, FlowConfig>,
    stats: PerCpuArray<MapData, u64>,
    events: RingBuf<MapData>,
    service_ct: Option<HashMap<MapData, CtKey, ServiceBackend>>,
    barrier: RcuBarrier,
    /// `BPF_MAP_LOOKUP_AND_DELETE_BATCH` works on the flow tables (until
    /// the kernel says otherwise).
    batch: bool,
    keys: Vec<FlowKey>,
    values: Vec<FlowValue>,
}

fn typed<T: TryFrom<Map, Error = MapError>>(
    map: Map,
    name: &'static str,
) -> Result<T, DataplaneError> {
    T::try_from(map).map_err(|e| DataplaneError::Map {
        name,
        reason: format!("unexpected type or layout: {e}"),
    })
}

/// A duplicate of flow table `slot`'s descriptor (aya 0.14 does not expose
/// a typed map's descriptor).
fn table_fd(map: &Map, slot: usize) -> Result<OwnedFd, DataplaneError> {
    let name = FLOWS_MAPS[slot];
    let Map::HashMap(data) = map else {
        return Err(DataplaneError::Map {
            name,
            reason: "not a hash map".to_owned(),
        });
    };
    data.fd()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| DataplaneError::Map {
            name,
            reason: format!("duplicating its descriptor: {e}"),
        })
}

impl FlowTap {
    /// Opens the flow maps pinned in `pins` (see also
    /// [`Dataplane::flow_tap`](super::Dataplane::flow_tap)).
    pub fn open(pins: &PinDir) -> Result<Self, DataplaneError> {
        Self::from_maps(FlowMaps::open(pins)?)
    }

    /// Wraps flow maps taken from a loaded ELF or opened elsewhere, and
    /// creates the grace-period barrier.
    pub fn from_maps(maps: FlowMaps) -> Result<Self, DataplaneError> {
        let barrier = RcuBarrier::new().map_err(|e| DataplaneError::Map {
            name: "RCU barrier (ARRAY_OF_MAPS)",
            reason: e.to_string(),
        })?;
        let table_fds = [table_fd(&maps.flows_0, 0)?, table_fd(&maps.flows_1, 1)?];
        Ok(Self {
            table_fds,
            tables: [
                typed(maps.flows_0, FLOWS_MAPS[0])?,
                typed(maps.flows_1, FLOWS_MAPS[1])?,
            ],
            config: typed(maps.config, FLOW_CONFIG_MAP)?,
            stats: typed(maps.stats, FLOW_STATS_MAP)?,
            events: typed(maps.events, EVENTS_MAP)?,
            service_ct: maps
                .service_ct
                .map(|m| typed(m, SERVICE_CT_MAP))
                .transpose()?,
            barrier,
            batch: true,
            keys: Vec::new(),
            values: Vec::new(),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> Result<FlowConfig, FlowSourceError> {
        self.config
            .get(&0, 0)
            .map_err(|source| FlowSourceError::Map {
                what: "reading FLOW_CONFIG",
                source,
            })
    }

    /// Sets what the programs do (`FLOW_CONFIG_*` flags; 0 turns
    /// accounting off), keeping the table they write.
    pub fn set_config(&mut self, flags: u32) -> Result<(), FlowSourceError> {
        let slot = self.config()?.slot;
        self.write_config(FlowConfig { slot, flags })
    }

    fn write_config(&mut self, config: FlowConfig) -> Result<(), FlowSourceError> {
        self.config
            .set(0, config, 0)
            .map_err(|source| FlowSourceError::Map {
                what: "writing FLOW_CONFIG",
                source,
            })
    }

    /// Empties table `slot` (which no program writes) into `out`.
    fn empty(
        &mut self,
        slot: usize,
        out: &mut Vec<(FlowKey, FlowValue)>,
    ) -> Result<(), FlowSourceError> {
        self.keys.clear();
        self.values.clear();
        if self.batch {
            let fd = self.table_fds[slot].as_fd();
            match bpfsys::lookup_and_delete_batch(fd, &mut self.keys, &mut self.values) {
                Ok(Batch::Done(_)) => {
                    out.extend(self.keys.drain(..).zip(self.values.drain(..)));
                    return Ok(());
                }
                Ok(Batch::Unsupported) => {
                    tracing::info!("BPF_MAP_LOOKUP_AND_DELETE_BATCH unsupported: draining per key");
                    self.batch = false;
                }
                Err(source) => {
                    return Err(FlowSourceError::Io {
                        what: "draining a flow table (BPF_MAP_LOOKUP_AND_DELETE_BATCH)",
                        source,
                    });
                }
            }
        }
        let table = &mut self.tables[slot];
        let keys: Vec<FlowKey> =
            table
                .keys()
                .collect::<Result<_, _>>()
                .map_err(|source| FlowSourceError::Map {
                    what: "listing a flow table",
                    source,
                })?;
        for key in keys {
            let value = table.get(&key, 0).map_err(|source| FlowSourceError::Map {
                what: "reading a flow entry",
                source,
            })?;
            table.remove(&key).map_err(|source| FlowSourceError::Map {
                what: "deleting a flow entry",
                source,
            })?;
            out.push((key, value));
        }
        Ok(())
    }

    /// Waits a grace period: afterwards no program run that read the old
    /// FLOW_CONFIG is still running.
    fn grace_period(&self) -> Result<(), FlowSourceError> {
        self.barrier.wait().map_err(|source| FlowSourceError::Io {
            what: "waiting for running BPF programs (map-in-map update)",
            source,
        })
    }
}

impl FlowSource for FlowTap {
    fn drain(&mut self, out: &mut Vec<(FlowKey, FlowValue)>) -> Result<(), FlowSourceError> {
        let config = self.config()?;
        let idle = (config.slot & 1) as usize;
        self.write_config(FlowConfig {
            slot: config.slot ^ 1,
            flags: config.flags,
        })?;
        self.grace_period()?;
        self.empty(idle, out)
    }

    fn drain_all(&mut self, out: &mut Vec<(FlowKey, FlowValue)>) -> Result<(), FlowSourceError> {
        self.drain(out)?;
        self.drain(out)
    }

    fn events(
        &mut self,
        timeout: Duration,
        out: &mut Vec<FlowEvent>,
    ) -> Result<(), FlowSourceError> {
        if self.read_events(out) > 0 || timeout.is_zero() {
            return Ok(());
        }
        let mut pfd = libc::pollfd {
            fd: self.events.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd, its count, a timeout.
        let ret = unsafe { libc::poll(&mut pfd, 1, ms.max(1)) };
        if ret < 0 {
            let source = std::io::Error::last_os_error();
            if source.kind() != std::io::ErrorKind::Interrupted {
                return Err(FlowSourceError::Io {
                    what: "polling the EVENTS ring buffer",
                    source,
                });
            }
        }
        self.read_events(out);
        Ok(())
    }

    fn stats(&mut self) -> Result<KernelFlowStats, FlowSourceError> {
        let mut stats = [0u64; FLOW_STATS_MAX as usize];
        for (i, slot) in stats.iter_mut().enumerate() {
            let per_cpu =
                self.stats
                    .get(&(i as u32), 0)
                    .map_err(|source| FlowSourceError::Map {
                        what: "reading FLOW_STATS",
                        source,
                    })?;
            *slot = per_cpu.iter().sum();
        }
        Ok(stats)
    }

    fn service_backend(&mut self, orig: &CtKey) -> Result<Option<ServiceBackend>, FlowSourceError> {
        let Some(map) = &self.service_ct else {
            return Ok(None);
        };
        match map.get(orig, 0) {
            Ok(b) => Ok(Some(b)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(source) => Err(FlowSourceError::Map {
                what: "reading SERVICE_CT",
                source,
            }),
        }
    }
}

impl FlowTap {
    /// Appends every event ready in the ring; how many. Records of another
    /// size (a newer ABI) are skipped.
    fn read_events(&mut self, out: &mut Vec<FlowEvent>) -> usize {
        let mut n = 0;
        while let Some(item) = self.events.next() {
            if let Some(event) = parse_event(&item) {
                out.push(event);
                n += 1;
            }
        }
        n
    }
}

/// A [`FlowEvent`] from a ring buffer record (`None` if the size differs).
pub fn parse_event(bytes: &[u8]) -> Option<FlowEvent> {
    if bytes.len() != std::mem::size_of::<FlowEvent>() {
        return None;
    }
    // SAFETY: the length matches and `FlowEvent` is plain bytes (`Pod`).
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<FlowEvent>()) })
}
