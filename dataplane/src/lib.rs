//! The eBPF dataplane in the kernel: load the embedded ELF, pin maps and
//! programs under a bpffs directory ([`pins`]), attach the programs to each
//! local pod's host-side veth ([`hooks`]), and make compiled policy live by
//! the slot protocol ([`sync`]); read flow accounting ([`flowtap`]).
//!
//! Fail-static: maps, programs and links are pinned, so enforcement stays
//! exactly as last programmed when the agent exits or dies. [`Dataplane::open`]
//! adopts what is pinned (no reload, no switch when the active slot already
//! holds the desired image) and [`cleanup`] removes all of it.
//!
//! [`node`] is the node as netlink shows it (links, routes, addresses): the
//! local endpoints the dataplane hooks.
//!
//! The build script embeds the eBPF ELF (`cargo xtask build-ebpf`) and
//! refuses a stale one: see `build.rs`.

pub mod bpfsys;
pub mod error;
pub mod flowtap;
pub mod hooks;
pub mod kmaps;
pub mod node;
pub mod pins;
pub mod slotcache;
pub mod status;
pub mod sync;

#[cfg(test)]
mod tests;

use std::time::Duration;

use aya::EbpfLoader;
use aya::maps::{MapData, ProgramArray};
use aya::programs::{SchedClassifier, Xdp};
use aya_obj::programs::XdpAttachType;

use bulkhead_common::CONFIG_F_HOST_ROUTING;
pub use bulkhead_policy::compile::image::{ImageDelta, NodeImage};
pub use error::DataplaneError;
pub use flowtap::{FlowMaps, FlowTap};
pub use hooks::{HookReport, TcMode};
pub use kmaps::KernelMaps;
pub use pins::{DEFAULT_PIN_DIR, PinDir};
pub use sync::{Desired, SlotMaps, SyncOutcome, Syncer};

use crate::node::{LocalEndpoint, Uplink};

/// Program names in the ELF (and their pin names).
pub const FROM_POD: &str = "from_pod";
/// See [`FROM_POD`].
pub const TO_POD: &str = "to_pod";
/// See [`FROM_POD`].
pub const XDP_PREFILTER: &str = "xdp_prefilter";
/// See [`FROM_POD`]: host routing's second half, `from_pod`'s tail call
/// through the DELIVER program array (never attached).
pub const DELIVER: &str = "deliver";
/// See [`FROM_POD`]: TC egress of the node's uplinks, where a Service
/// connection translated to another node's backend is judged.
pub const LEAVE_NODE: &str = "leave_node";
/// See [`FROM_POD`]: `to_pod`'s tail call for the first packet of a
/// Service connection after the node's translation (never attached).
pub const TO_BACKEND: &str = "to_backend";
/// The program array `from_pod` tail-calls `deliver` through.
const DELIVER_MAP: &str = "DELIVER";
/// See [`FROM_POD`]: the tail calls of `from_pod` and `to_pod` for new
/// connections (and Service connections due for their egress check).
pub const OPEN_FROM_POD: &str = "open_from_pod";
/// See [`OPEN_FROM_POD`].
pub const OPEN_TO_POD: &str = "open_to_pod";
/// The program array of the TC programs' tail calls, by index (the
/// `TAIL_*` indexes of the eBPF crate).
const TAILS_MAP: &str = "TAILS";
/// The programs in TAILS, at their indexes.
const TAILS: [&str; 4] = [TO_BACKEND, OPEN_FROM_POD, OPEN_TO_POD, TO_POD];
/// Every TC program of the ELF.
const TC_PROGRAMS: [&str; 7] = [
    FROM_POD,
    TO_POD,
    DELIVER,
    LEAVE_NODE,
    TO_BACKEND,
    OPEN_FROM_POD,
    OPEN_TO_POD,
];

/// The dataplane ELF embedded at build time (see `dataplane/build.rs`).
pub fn embedded_elf() -> Option<&'static [u8]> {
    #[cfg(bulkhead_embedded_elf)]
    {
        Some(include_bytes!(concat!(
            env!("OUT_DIR"),
            "/bulkhead-ebpf.elf"
        )))
    }
    #[cfg(not(bulkhead_embedded_elf))]
    {
        None
    }
}

/// How [`Dataplane::open`] found the pins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Programs were pinned already: adopted as they are.
    Adopted,
    /// The ELF was loaded (maps reused if pinned) and the programs pinned.
    Loaded,
}

/// The pinned dataplane, open.
pub struct Dataplane {
    pins: PinDir,
    maps: KernelMaps,
    from_pod: SchedClassifier,
    to_pod: SchedClassifier,
    leave_node: SchedClassifier,
    xdp: Xdp,
    syncer: Syncer,
    tc_mode: TcMode,
}

impl Dataplane {
    /// Opens the dataplane pinned in `pins`, loading `elf` first when the
    /// programs are not all pinned (pinned maps are reused, so policy and
    /// conntrack survive).
    pub fn open(
        pins: PinDir,
        elf: Option<&[u8]>,
        grace: Duration,
        tc_mode: TcMode,
    ) -> Result<(Self, Origin), DataplaneError> {
        let all_pinned = TC_PROGRAMS
            .iter()
            .chain(&[XDP_PREFILTER])
            .all(|p| pins.prog(p).exists())
            && pins::MAPS.iter().all(|m| pins.map(m).exists());
        let origin = if all_pinned {
            Origin::Adopted
        } else {
            load_and_pin(&pins, elf.ok_or(DataplaneError::NoElf)?)?;
            Origin::Loaded
        };
        let prog_err = |name: &str, path: &std::path::Path, e: aya::programs::ProgramError| {
            DataplaneError::Pin {
                action: "opening pinned program",
                path: path.to_owned(),
                reason: format!("{name}: {e}"),
            }
        };
        let p = pins.prog(FROM_POD);
        let from_pod = SchedClassifier::from_pin(&p).map_err(|e| prog_err(FROM_POD, &p, e))?;
        let p = pins.prog(TO_POD);
        let to_pod = SchedClassifier::from_pin(&p).map_err(|e| prog_err(TO_POD, &p, e))?;
        let p = pins.prog(LEAVE_NODE);
        let leave_node = SchedClassifier::from_pin(&p).map_err(|e| prog_err(LEAVE_NODE, &p, e))?;
        let p = pins.prog(XDP_PREFILTER);
        let xdp = Xdp::from_pin(&p, XdpAttachType::Interface)
            .map_err(|e| prog_err(XDP_PREFILTER, &p, e))?;
        let maps = KernelMaps::open(&pins)?;
        Ok((
            Self {
                pins,
                maps,
                from_pod,
                to_pod,
                leave_node,
                xdp,
                syncer: Syncer::new(grace),
                tc_mode,
            },
            origin,
        ))
    }

    /// The pin directory.
    pub fn pins(&self) -> &PinDir {
        &self.pins
    }

    /// The maps.
    pub fn maps(&self) -> &KernelMaps {
        &self.maps
    }

    /// A reader of the pinned flow maps (flow tables, FLOW_CONFIG,
    /// FLOW_STATS, EVENTS): the kernel side of flow visibility. Each call
    /// opens the pins anew; give the tap to the one thread that drains.
    pub fn flow_tap(&self) -> Result<FlowTap, DataplaneError> {
        FlowTap::open(&self.pins)
    }

    /// The revision in force.
    pub fn revision(&self) -> Result<u64, DataplaneError> {
        self.maps.revision()
    }

    /// Turns host routing on or off (see `CONFIG_F_HOST_ROUTING`): one
    /// CONFIG write, at once for every packet after it; the revision stays.
    pub fn set_host_routing(&mut self, on: bool) -> Result<(), DataplaneError> {
        if self.maps.host_routing() == on {
            return Ok(());
        }
        self.maps
            .set_mode_flags(self.maps.mode_flags() ^ CONFIG_F_HOST_ROUTING)
    }

    /// Makes `desired` the policy in force (see [`sync`]).
    pub fn sync(&mut self, desired: &Desired<'_>) -> Result<SyncOutcome, DataplaneError> {
        self.syncer.sync(&mut self.maps, desired)
    }

    /// Makes the policy in force with `delta` applied the policy in force,
    /// writing only the change (see [`Syncer::apply_delta`]).
    pub fn apply_delta(&mut self, delta: &ImageDelta) -> Result<SyncOutcome, DataplaneError> {
        self.syncer.apply_delta(&mut self.maps, delta)
    }

    /// The image in force as the syncer knows it (read back from the maps
    /// the first time): the base an [`ImageDelta`] for
    /// [`Self::apply_delta`] applies to.
    pub fn active_image(&mut self) -> Result<&NodeImage, DataplaneError> {
        self.syncer.active_image(&self.maps)
    }

    /// Attaches the programs to every endpoint's veth where they are missing
    /// (XDP too when `xdp`, else removes it) and `leave_node` to every
    /// uplink, and removes the links of devices that are neither any more.
    pub fn reconcile_hooks(
        &mut self,
        endpoints: &[LocalEndpoint],
        uplinks: &[Uplink],
        xdp: bool,
    ) -> Result<HookReport, DataplaneError> {
        hooks::reconcile(self, endpoints, uplinks, xdp)
    }

    /// Sets the service mark (see `CONFIG_SERVICE_MARK_SHIFT`): the one
    /// `skb->mark` bit that hands a Service connection's first packet from
    /// `from_pod` to the program after the node's translation; 0 judges
    /// Service traffic as sent.
    pub fn set_service_mark(&mut self, mark: u32) -> Result<(), DataplaneError> {
        self.maps.set_service_mark(mark)
    }
}

/// Loads `elf` with every map pinned (reusing maps already pinned), loads
/// the programs and pins them, replacing stale program pins.
fn load_and_pin(pins: &PinDir, elf: &[u8]) -> Result<(), DataplaneError> {
    let paths: Vec<(&str, std::path::PathBuf)> =
        pins::MAPS.iter().map(|&m| (m, pins.map(m))).collect();
    let mut loader = EbpfLoader::new();
    for (name, path) in &paths {
        loader.map_pin_path(name, path.as_path());
    }
    let mut ebpf = loader
        .load(elf)
        .map_err(|e| DataplaneError::Load(Box::new(e)))?;
    for name in TC_PROGRAMS {
        let prog: &mut SchedClassifier = ebpf
            .program_mut(name)
            .and_then(|p| p.try_into().ok())
            .ok_or(DataplaneError::MissingProgram {
                name,
                kind: "TC classifier",
            })?;
        prog.load()
            .map_err(DataplaneError::program("loading", name))?;
        pin_program(pins, name, |path| prog.pin(path))?;
    }
    let prog: &mut Xdp = ebpf
        .program_mut(XDP_PREFILTER)
        .and_then(|p| p.try_into().ok())
        .ok_or(DataplaneError::MissingProgram {
            name: XDP_PREFILTER,
            kind: "XDP",
        })?;
    prog.load()
        .map_err(DataplaneError::program("loading", XDP_PREFILTER))?;
    pin_program(pins, XDP_PREFILTER, |path| prog.pin(path))?;
    // The tail calls' targets: the pinned arrays keep the entries (and so
    // the programs) after this process exits.
    set_tail_call(&mut ebpf, DELIVER_MAP, 0, DELIVER)?;
    for (index, prog) in (0u32..).zip(TAILS) {
        set_tail_call(&mut ebpf, TAILS_MAP, index, prog)?;
    }
    for name in pins::RETIRED_MAPS {
        if pins::remove_pin(&pins.map(name))? {
            tracing::info!(map = name, "removed the pin of a map an earlier ABI used");
        }
    }
    tracing::info!(dir = %pins.root.display(), "loaded the eBPF ELF and pinned maps and programs");
    Ok(())
}

/// Puts program `prog` at `index` of the program array `map`.
fn set_tail_call(
    ebpf: &mut aya::Ebpf,
    map: &'static str,
    index: u32,
    prog: &'static str,
) -> Result<(), DataplaneError> {
    let fd = ebpf
        .program(prog)
        .ok_or(DataplaneError::MissingProgram {
            name: prog,
            kind: "TC classifier",
        })?
        .fd()
        .map_err(DataplaneError::program("reading the fd of", prog))?
        .try_clone()
        .map_err(|e| DataplaneError::Map {
            name: map,
            reason: e.to_string(),
        })?;
    let mut array: ProgramArray<&mut MapData> = ebpf
        .map_mut(map)
        .ok_or(DataplaneError::Map {
            name: map,
            reason: "missing from the ELF".to_owned(),
        })?
        .try_into()
        .map_err(|e: aya::maps::MapError| DataplaneError::Map {
            name: map,
            reason: e.to_string(),
        })?;
    array
        .set(index, &fd, 0)
        .map_err(DataplaneError::map_op("writing", map))
}

fn pin_program(
    pins: &PinDir,
    name: &str,
    pin: impl FnOnce(&std::path::Path) -> Result<(), aya::pin::PinError>,
) -> Result<(), DataplaneError> {
    let path = pins.prog(name);
    pins::remove_pin(&path)?;
    pin(&path).map_err(|e| DataplaneError::Pin {
        action: "pinning",
        path,
        reason: e.to_string(),
    })
}

/// What [`cleanup`] removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CleanupReport {
    /// Link pins removed (each detached a hook).
    pub links: usize,
    /// Netlink (clsact) filters detached.
    pub netlink_filters: usize,
    /// Map and program pins removed.
    pub objects: usize,
}

/// Detaches everything and removes every pin under `dir` (idempotent).
/// `netlink_devices` are the devices the agent attached with netlink
/// (fallback mode; their filters carry no pin), in this network namespace.
pub fn cleanup(
    dir: &std::path::Path,
    netlink_devices: &[String],
) -> Result<CleanupReport, DataplaneError> {
    let mut report = CleanupReport::default();
    for dev in netlink_devices {
        report.netlink_filters += hooks::detach_netlink(dev);
    }
    let Some(pins) = PinDir::existing(dir)? else {
        return Ok(report);
    };
    report.links = remove_files(&pins.links())?;
    report.objects =
        remove_files(&pins.root.join("progs"))? + remove_files(&pins.root.join("maps"))?;
    for sub in ["links", "progs", "maps"] {
        let p = pins.root.join(sub);
        match std::fs::remove_dir(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(DataplaneError::io("removing", p)(e)),
        }
    }
    match std::fs::remove_dir(&pins.root) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        // Someone else's pins live there too: leave the directory.
        Err(e) if e.raw_os_error() == Some(nix::libc::ENOTEMPTY) => {}
        Err(e) => return Err(DataplaneError::io("removing", pins.root.clone())(e)),
    }
    Ok(report)
}

fn remove_files(dir: &std::path::Path) -> Result<usize, DataplaneError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(DataplaneError::io("reading", dir)(e)),
    };
    let mut n = 0;
    for entry in entries {
        let entry = entry.map_err(DataplaneError::io("reading", dir))?;
        if pins::remove_pin(&entry.path())? {
            n += 1;
        }
    }
    Ok(n)
}
