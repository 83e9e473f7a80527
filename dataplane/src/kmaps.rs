//! The pinned kernel maps, typed with the ABI of `bulkhead-common`, as
//! [`SlotMaps`] for the sync and read-only for `status`.

use aya::maps::{Array, HashMap, LpmTrie, Map, MapData, MapError, PerCpuArray, lpm_trie::Key};
use bulkhead_common::{
    Config, CtEntry, CtKey, DROP_REASONS, DropReason, ENDPOINTS_MAP, EndpointInfo, EndpointKey,
    IDENTITIES_EXACT_MAP, IDENTITY_PREFIX_FULL, IdentityKey, IdentityValue, POLICY_DEPTH_MAX,
    POLICY_NODE_INNER, POLICY_NODES_SLOT_CAPACITY, PolicyNode, PolicyNodeKey, ServiceBackend,
    ServiceKey, ServiceValue, config_service_mark, identity_is_exact, policy_node_index,
};

use super::DataplaneError;
use super::pins::{POLICY_MAP, POLICY_NODES_MAP, PinDir};
use super::sync::{SlotImage, SlotMaps};

/// The maps userspace reads and writes.
pub struct KernelMaps {
    identities: LpmTrie<MapData, IdentityKey, IdentityValue>,
    /// The full-length identity entries (ABI v11), kept out of the trie.
    identities_exact: HashMap<MapData, IdentityKey, IdentityValue>,
    policy: HashMap<MapData, PolicyNodeKey, PolicyNode>,
    policy_nodes: Array<MapData, PolicyNode>,
    endpoints: HashMap<MapData, EndpointKey, EndpointInfo>,
    config: Array<MapData, Config>,
    ct: HashMap<MapData, CtKey, CtEntry>,
    drops: PerCpuArray<MapData, u64>,
    services: HashMap<MapData, ServiceKey, ServiceValue>,
    service_ct: HashMap<MapData, CtKey, ServiceBackend>,
    /// CONFIG's mode flags (`CONFIG_F_*`), written with every revision.
    flags: u64,
}

/// Whether a map operation failed because the key is absent.
fn not_found(e: &MapError) -> bool {
    match e {
        MapError::KeyNotFound => true,
        MapError::SyscallError(s) => s.io_error.raw_os_error() == Some(nix::libc::ENOENT),
        _ => false,
    }
}

/// Opens the map pinned as `name` in `pins`.
pub(super) fn open(pins: &PinDir, name: &'static str) -> Result<Map, DataplaneError> {
    let path = pins.map(name);
    let data = MapData::from_pin(&path).map_err(|e| DataplaneError::Pin {
        action: "opening pinned map",
        path: path.clone(),
        reason: e.to_string(),
    })?;
    Map::from_map_data(data).map_err(|e| DataplaneError::Map {
        name,
        reason: e.to_string(),
    })
}

fn typed<T: TryFrom<Map, Error = aya::maps::MapError>>(
    pins: &PinDir,
    name: &'static str,
) -> Result<T, DataplaneError> {
    T::try_from(open(pins, name)?).map_err(|e| DataplaneError::Map {
        name,
        reason: format!("unexpected type or layout: {e}"),
    })
}

impl KernelMaps {
    /// Opens the maps pinned in `pins`.
    pub fn open(pins: &PinDir) -> Result<Self, DataplaneError> {
        let config: Array<MapData, Config> = typed(pins, "CONFIG")?;
        let flags = config
            .get(&0, 0)
            .map_err(DataplaneError::map_op("reading", "CONFIG"))?
            .flags;
        Ok(Self {
            identities: typed(pins, "IDENTITIES")?,
            identities_exact: typed(pins, IDENTITIES_EXACT_MAP)?,
            policy: typed(pins, POLICY_MAP)?,
            policy_nodes: typed(pins, POLICY_NODES_MAP)?,
            endpoints: typed(pins, ENDPOINTS_MAP)?,
            config,
            ct: typed(pins, "CT")?,
            drops: typed(pins, "DROPS")?,
            services: typed(pins, "SERVICES")?,
            service_ct: typed(pins, "SERVICE_CT")?,
            flags,
        })
    }

    /// CONFIG's mode flags (`CONFIG_F_*`).
    pub fn mode_flags(&self) -> u64 {
        self.flags
    }

    /// Whether host routing is on (`CONFIG_F_HOST_ROUTING`).
    pub fn host_routing(&self) -> bool {
        self.flags & bulkhead_common::CONFIG_F_HOST_ROUTING != 0
    }

    /// Sets CONFIG's mode flags, keeping the revision (one 16-byte write,
    /// so a program reads the old or the new value whole).
    pub fn set_mode_flags(&mut self, flags: u64) -> Result<(), DataplaneError> {
        let revision = self.revision()?;
        self.flags = flags;
        self.write_config(revision)
    }

    fn write_config(&mut self, revision: u64) -> Result<(), DataplaneError> {
        let config = Config {
            revision,
            flags: self.flags,
        };
        self.config
            .set(0, config, 0)
            .map_err(DataplaneError::map_op("writing", "CONFIG"))
    }

    /// Drop counters (summed over CPUs) of every known reason.
    pub fn drops(&self) -> Result<Vec<(DropReason, u64)>, DataplaneError> {
        DROP_REASONS
            .iter()
            .map(|&r| {
                let v = self
                    .drops
                    .get(&(r as u32), 0)
                    .map_err(DataplaneError::map_op("reading", "DROPS"))?;
                Ok((r, v.iter().sum()))
            })
            .collect()
    }

    /// Number of conntrack entries.
    pub fn ct_len(&self) -> usize {
        self.ct.keys().filter(Result::is_ok).count()
    }

    /// The service mark in force (0: Service traffic is judged as sent).
    pub fn service_mark(&self) -> u32 {
        config_service_mark(self.flags)
    }

    /// Sets the service mark (one bit, or 0 to judge Service traffic as
    /// sent), keeping the revision and the other mode flags.
    pub fn set_service_mark(&mut self, mark: u32) -> Result<(), DataplaneError> {
        let low = self.flags & u64::from(u32::MAX);
        let flags = low | u64::from(mark) << bulkhead_common::CONFIG_SERVICE_MARK_SHIFT;
        if flags == self.flags {
            return Ok(());
        }
        self.set_mode_flags(flags)
    }

    /// The backend the node translated the Service connection `orig`
    /// (its original tuple) to, as the dataplane recorded it.
    pub fn service_backend(&self, orig: &CtKey) -> Option<ServiceBackend> {
        self.service_ct.get(orig, 0).ok()
    }
}

impl SlotMaps for KernelMaps {
    fn revision(&self) -> Result<u64, DataplaneError> {
        Ok(self
            .config
            .get(&0, 0)
            .map_err(DataplaneError::map_op("reading", "CONFIG"))?
            .revision)
    }

    fn set_revision(&mut self, revision: u64) -> Result<(), DataplaneError> {
        self.write_config(revision)
    }

    fn read_slot(&self, slot: u8) -> Result<SlotImage, DataplaneError> {
        let mut image = SlotImage::default();
        for entry in self.identities.iter() {
            let (k, v) = entry.map_err(DataplaneError::map_op("reading", "IDENTITIES"))?;
            if k.data().slot == slot {
                image.identities.insert((k.prefix_len(), k.data()), v);
            }
        }
        // After the trie: a full-length entry a pre-v11 agent wrote there
        // is shadowed by the exact one, as in the programs' lookup.
        for entry in self.identities_exact.iter() {
            let (k, v) = entry.map_err(DataplaneError::map_op("reading", IDENTITIES_EXACT_MAP))?;
            if k.slot == slot {
                image.identities.insert((IDENTITY_PREFIX_FULL, k), v);
            }
        }
        for entry in self.policy.iter() {
            let (k, v) = entry.map_err(DataplaneError::map_op("reading", POLICY_MAP))?;
            if k.slot == slot {
                image.policy.insert(k, v);
            }
        }
        // The slot's POLICY_NODES entries its trees reach, level by level
        // (as deep as a lookup goes; numbers outside the slot's range are
        // never followed, their root then differs from any image anyway).
        let mut level: Vec<u32> = Vec::new();
        let inner = |node: &PolicyNode, next: &mut Vec<u32>| {
            if node.kind == POLICY_NODE_INNER {
                let used = usize::from(node.count).min(node.ranges.len());
                next.extend(node.ranges[..used].iter().map(|r| r.target));
            }
        };
        for root in image.policy.values() {
            inner(root, &mut level);
        }
        for _ in 1..POLICY_DEPTH_MAX {
            let mut next = Vec::new();
            for n in level {
                if n >= POLICY_NODES_SLOT_CAPACITY || image.policy_nodes.contains_key(&n) {
                    continue;
                }
                let v = self
                    .policy_nodes
                    .get(&policy_node_index(slot, n), 0)
                    .map_err(DataplaneError::map_op("reading", POLICY_NODES_MAP))?;
                inner(&v, &mut next);
                image.policy_nodes.insert(n, v);
            }
            level = next;
        }
        for entry in self.endpoints.iter() {
            let (k, v) = entry.map_err(DataplaneError::map_op("reading", ENDPOINTS_MAP))?;
            if k.slot == slot {
                image.endpoints.insert(k, v);
            }
        }
        for key in self.services.keys() {
            let k = key.map_err(DataplaneError::map_op("reading", "SERVICES"))?;
            if k.slot == slot {
                image.services.insert(k);
            }
        }
        Ok(image)
    }

    fn put_identity(
        &mut self,
        len: u32,
        key: IdentityKey,
        value: IdentityValue,
    ) -> Result<(), DataplaneError> {
        if identity_is_exact(len) {
            return self
                .identities_exact
                .insert(key, value, 0)
                .map_err(DataplaneError::map_op("writing", IDENTITIES_EXACT_MAP));
        }
        self.identities
            .insert(&Key::new(len, key), value, 0)
            .map_err(DataplaneError::map_op("writing", "IDENTITIES"))
    }

    fn remove_identity(&mut self, len: u32, key: IdentityKey) -> Result<(), DataplaneError> {
        let in_trie = self.identities.remove(&Key::new(len, key));
        if !identity_is_exact(len) {
            return in_trie.map_err(DataplaneError::map_op("deleting from", "IDENTITIES"));
        }
        // Both places: a pre-v11 agent wrote full-length entries into the
        // trie, where a stale one would answer once the exact one is gone.
        let in_exact = self.identities_exact.remove(&key);
        match (in_trie, in_exact) {
            (Ok(()), _) | (_, Ok(())) => Ok(()),
            (Err(e), _) if !not_found(&e) => {
                Err(DataplaneError::map_op("deleting from", "IDENTITIES")(e))
            }
            (_, Err(e)) => Err(DataplaneError::map_op(
                "deleting from",
                IDENTITIES_EXACT_MAP,
            )(e)),
        }
    }

    fn put_policy(&mut self, key: PolicyNodeKey, value: PolicyNode) -> Result<(), DataplaneError> {
        self.policy
            .insert(key, value, 0)
            .map_err(DataplaneError::map_op("writing", POLICY_MAP))
    }

    fn remove_policy(&mut self, key: PolicyNodeKey) -> Result<(), DataplaneError> {
        self.policy
            .remove(&key)
            .map_err(DataplaneError::map_op("deleting from", POLICY_MAP))
    }

    fn put_policy_node(
        &mut self,
        slot: u8,
        node: u32,
        value: PolicyNode,
    ) -> Result<(), DataplaneError> {
        self.policy_nodes
            .set(policy_node_index(slot, node), value, 0)
            .map_err(DataplaneError::map_op("writing", POLICY_NODES_MAP))
    }

    fn clear_policy_node(&mut self, slot: u8, node: u32) -> Result<(), DataplaneError> {
        let zero = PolicyNode {
            count: 0,
            kind: 0,
            _pad: [0; 2],
            _reserved: 0,
            ranges: [Default::default(); bulkhead_common::POLICY_FANOUT],
        };
        self.put_policy_node(slot, node, zero)
    }

    fn put_endpoint(
        &mut self,
        key: EndpointKey,
        value: EndpointInfo,
    ) -> Result<(), DataplaneError> {
        self.endpoints
            .insert(key, value, 0)
            .map_err(DataplaneError::map_op("writing", ENDPOINTS_MAP))
    }

    fn remove_endpoint(&mut self, key: EndpointKey) -> Result<(), DataplaneError> {
        self.endpoints
            .remove(&key)
            .map_err(DataplaneError::map_op("deleting from", ENDPOINTS_MAP))
    }

    fn put_service(&mut self, key: ServiceKey) -> Result<(), DataplaneError> {
        self.services
            .insert(key, ServiceValue::default(), 0)
            .map_err(DataplaneError::map_op("writing", "SERVICES"))
    }

    fn remove_service(&mut self, key: ServiceKey) -> Result<(), DataplaneError> {
        self.services
            .remove(&key)
            .map_err(DataplaneError::map_op("deleting from", "SERVICES"))
    }
}
