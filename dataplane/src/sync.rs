//! The slot protocol of the ABI (see `bulkhead_common`): a new policy is
//! written into the inactive slot, stale entries of that slot deleted, and
//! made live by one CONFIG write (the revision); the active slot is never
//! written. Generic over [`SlotMaps`] so the sequence is unit-tested on a
//! fake ([`FakeMaps`]) and runs on the pinned kernel maps unchanged.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bulkhead_common::{
    EndpointInfo, EndpointKey, IdentityKey, IdentityValue, PolicyNode, PolicyNodeKey, ServiceKey,
    active_slot,
};

use super::DataplaneError;
use bulkhead_policy::compile::Compiled;

/// Identities of one slot: (prefix length, key) → value.
pub type IdentityEntries = BTreeMap<(u32, IdentityKey), IdentityValue>;
/// Policy tree roots (POLICY_V4) of one slot.
pub type PolicyEntries = BTreeMap<PolicyNodeKey, PolicyNode>;
/// Other policy tree nodes (POLICY_NODES) of one slot, by node number
/// (relative to the slot's range).
pub type PolicyNodeEntries = BTreeMap<u32, PolicyNode>;
/// Endpoints of one slot.
pub type EndpointEntries = BTreeMap<EndpointKey, EndpointInfo>;
/// Service frontends (SERVICES) of one slot.
pub type ServiceEntries = std::collections::BTreeSet<ServiceKey>;

/// The content of one slot of every policy map.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlotImage {
    /// IDENTITIES entries of the slot.
    pub identities: IdentityEntries,
    /// POLICY_V4 entries (B-tree roots) of the slot.
    pub policy: PolicyEntries,
    /// POLICY_NODES entries of the slot that its roots reach (read back by
    /// walking the trees, so unreachable leftovers never count).
    pub policy_nodes: PolicyNodeEntries,
    /// ENDPOINTS entries of the slot.
    pub endpoints: EndpointEntries,
    /// SERVICES entries of the slot.
    pub services: ServiceEntries,
}

/// Read and write access to the policy maps by slot, and to CONFIG.
pub trait SlotMaps {
    /// The revision in CONFIG.
    fn revision(&self) -> Result<u64, DataplaneError>;
    /// Writes the revision (the switch).
    fn set_revision(&mut self, revision: u64) -> Result<(), DataplaneError>;
    /// Everything the maps hold in `slot`.
    fn read_slot(&self, slot: u8) -> Result<SlotImage, DataplaneError>;
    /// Inserts or overwrites an IDENTITIES entry.
    fn put_identity(
        &mut self,
        len: u32,
        key: IdentityKey,
        value: IdentityValue,
    ) -> Result<(), DataplaneError>;
    /// Deletes an IDENTITIES entry.
    fn remove_identity(&mut self, len: u32, key: IdentityKey) -> Result<(), DataplaneError>;
    /// Inserts or overwrites a POLICY_V4 root.
    fn put_policy(&mut self, key: PolicyNodeKey, value: PolicyNode) -> Result<(), DataplaneError>;
    /// Deletes a POLICY_V4 root.
    fn remove_policy(&mut self, key: PolicyNodeKey) -> Result<(), DataplaneError>;
    /// Writes POLICY_NODES node `node` of `slot`.
    fn put_policy_node(
        &mut self,
        slot: u8,
        node: u32,
        value: PolicyNode,
    ) -> Result<(), DataplaneError>;
    /// Frees POLICY_NODES node `node` of `slot` (an array entry cannot be
    /// deleted: it is zeroed).
    fn clear_policy_node(&mut self, slot: u8, node: u32) -> Result<(), DataplaneError>;
    /// Inserts or overwrites an ENDPOINTS entry.
    fn put_endpoint(&mut self, key: EndpointKey, value: EndpointInfo)
    -> Result<(), DataplaneError>;
    /// Deletes an ENDPOINTS entry.
    fn remove_endpoint(&mut self, key: EndpointKey) -> Result<(), DataplaneError>;
    /// Inserts a SERVICES entry.
    fn put_service(&mut self, key: ServiceKey) -> Result<(), DataplaneError>;
    /// Deletes a SERVICES entry.
    fn remove_service(&mut self, key: ServiceKey) -> Result<(), DataplaneError>;
}

/// What the node should enforce: a compiled policy and its local endpoints.
pub struct Desired<'a> {
    /// The compiled policy.
    pub compiled: &'a Compiled,
    /// Local pods: (pod index in the model, ifindex of its host-side veth).
    pub local: &'a [(usize, u32)],
    /// MACs of local pods' interfaces, where known (from CNI ADD): those
    /// pods may send only from them.
    pub macs: &'a std::collections::BTreeMap<usize, [u8; 6]>,
}

impl Desired<'_> {
    /// The image for `slot`, checked against the slot capacities.
    pub fn image(&self, slot: u8) -> Result<SlotImage, DataplaneError> {
        let pods: Vec<usize> = self.local.iter().map(|&(p, _)| p).collect();
        let image = self.compiled.map_image_bound(slot, &pods, self.macs);
        image.check_fits()?;
        let layout = image.policy_layout();
        let ifindex: HashMap<usize, u32> = self.local.iter().copied().collect();
        Ok(SlotImage {
            identities: image
                .identities
                .into_iter()
                .map(|(l, k, v)| ((l, k), v))
                .collect(),
            policy: layout.roots.into_iter().collect(),
            policy_nodes: (0u32..).zip(layout.nodes).collect(),
            endpoints: image
                .endpoints
                .into_iter()
                .map(|(pod, info)| (EndpointKey::new(ifindex[&pod], slot), info))
                .collect(),
            services: image.services.into_iter().collect(),
        })
    }
}

/// What a sync did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncOutcome {
    /// The active slot already holds the desired image; nothing was written.
    Unchanged {
        /// The revision in force.
        revision: u64,
    },
    /// The desired image was written to the inactive slot and made live.
    Switched {
        /// The revision before.
        from: u64,
        /// The revision now in force.
        to: u64,
        /// Entries written or deleted in the new slot.
        writes: usize,
    },
}

/// Runs the slot protocol on maps, remembering when it last switched so the
/// next write into the then-inactive slot waits out the grace period.
pub struct Syncer {
    grace: Duration,
    last_switch: Instant,
}

impl Syncer {
    /// A syncer that waits `grace` after a switch before writing the slot
    /// it left. It assumes a switch just happened (a previous agent may have
    /// switched right before it died).
    pub fn new(grace: Duration) -> Self {
        Self {
            grace,
            last_switch: Instant::now(),
        }
    }

    /// Makes `desired` the policy in force: unchanged when the active slot
    /// (read back) equals it, else written to the inactive slot and switched.
    /// On any error the active slot and the revision are untouched.
    pub fn sync(
        &mut self,
        maps: &mut dyn SlotMaps,
        desired: &Desired<'_>,
    ) -> Result<SyncOutcome, DataplaneError> {
        let revision = maps.revision()?;
        let active = active_slot(revision);
        let target = active_slot(revision + 1);
        // Both images are built (and capacity-checked) before anything is
        // written, so an oversized policy changes nothing.
        let want_active = desired.image(active)?;
        let want = desired.image(target)?;
        if maps.read_slot(active)? == want_active {
            return Ok(SyncOutcome::Unchanged { revision });
        }
        // Programs that read CONFIG before the last switch may still be
        // reading the slot about to be rewritten.
        let since = self.last_switch.elapsed();
        if since < self.grace {
            std::thread::sleep(self.grace - since);
        }
        let have = maps.read_slot(target)?;
        let writes = write_slot(maps, target, &have, &want)?;
        maps.set_revision(revision + 1)?;
        self.last_switch = Instant::now();
        Ok(SyncOutcome::Switched {
            from: revision,
            to: revision + 1,
            writes,
        })
    }
}

/// Turns slot content `have` into `want`: stale entries first (so the slot
/// never holds more than one image), then new or changed ones.
fn write_slot(
    maps: &mut dyn SlotMaps,
    slot: u8,
    have: &SlotImage,
    want: &SlotImage,
) -> Result<usize, DataplaneError> {
    let mut writes = 0;
    for &(len, key) in have.identities.keys() {
        if !want.identities.contains_key(&(len, key)) {
            maps.remove_identity(len, key)?;
            writes += 1;
        }
    }
    for key in have.policy.keys() {
        if !want.policy.contains_key(key) {
            maps.remove_policy(*key)?;
            writes += 1;
        }
    }
    for &node in have.policy_nodes.keys() {
        if !want.policy_nodes.contains_key(&node) {
            maps.clear_policy_node(slot, node)?;
            writes += 1;
        }
    }
    for key in have.endpoints.keys() {
        if !want.endpoints.contains_key(key) {
            maps.remove_endpoint(*key)?;
            writes += 1;
        }
    }
    for key in have.services.difference(&want.services) {
        maps.remove_service(*key)?;
        writes += 1;
    }
    for (&(len, key), value) in &want.identities {
        if have.identities.get(&(len, key)) != Some(value) {
            maps.put_identity(len, key, *value)?;
            writes += 1;
        }
    }
    for (key, value) in &want.policy {
        if have.policy.get(key) != Some(value) {
            maps.put_policy(*key, *value)?;
            writes += 1;
        }
    }
    for (&node, value) in &want.policy_nodes {
        if have.policy_nodes.get(&node) != Some(value) {
            maps.put_policy_node(slot, node, *value)?;
            writes += 1;
        }
    }
    for (key, value) in &want.endpoints {
        if have.endpoints.get(key) != Some(value) {
            maps.put_endpoint(*key, *value)?;
            writes += 1;
        }
    }
    for key in want.services.difference(&have.services) {
        maps.put_service(*key)?;
        writes += 1;
    }
    Ok(writes)
}

/// In-memory [`SlotMaps`] for unit tests: records every write's slot and
/// fails a write into the slot that is active at that moment.
#[derive(Debug, Default)]
pub struct FakeMaps {
    /// CONFIG's revision.
    pub revision: u64,
    /// Content per slot.
    pub slots: [SlotImage; 2],
    /// Number of writes (puts and removes) so far.
    pub writes: usize,
}

impl FakeMaps {
    fn check(&mut self, slot: u8) -> Result<usize, DataplaneError> {
        if slot == active_slot(self.revision) {
            return Err(DataplaneError::Map {
                name: "fake",
                reason: format!("write into the active slot {slot}"),
            });
        }
        self.writes += 1;
        Ok(slot as usize)
    }
}

impl SlotMaps for FakeMaps {
    fn revision(&self) -> Result<u64, DataplaneError> {
        Ok(self.revision)
    }
    fn set_revision(&mut self, revision: u64) -> Result<(), DataplaneError> {
        self.revision = revision;
        Ok(())
    }
    fn read_slot(&self, slot: u8) -> Result<SlotImage, DataplaneError> {
        Ok(self.slots[slot as usize].clone())
    }
    fn put_identity(
        &mut self,
        len: u32,
        key: IdentityKey,
        value: IdentityValue,
    ) -> Result<(), DataplaneError> {
        let s = self.check(key.slot)?;
        self.slots[s].identities.insert((len, key), value);
        Ok(())
    }
    fn remove_identity(&mut self, len: u32, key: IdentityKey) -> Result<(), DataplaneError> {
        let s = self.check(key.slot)?;
        self.slots[s].identities.remove(&(len, key));
        Ok(())
    }
    fn put_policy(&mut self, key: PolicyNodeKey, value: PolicyNode) -> Result<(), DataplaneError> {
        let s = self.check(key.slot)?;
        self.slots[s].policy.insert(key, value);
        Ok(())
    }
    fn remove_policy(&mut self, key: PolicyNodeKey) -> Result<(), DataplaneError> {
        let s = self.check(key.slot)?;
        self.slots[s].policy.remove(&key);
        Ok(())
    }
    fn put_policy_node(
        &mut self,
        slot: u8,
        node: u32,
        value: PolicyNode,
    ) -> Result<(), DataplaneError> {
        let s = self.check(slot)?;
        self.slots[s].policy_nodes.insert(node, value);
        Ok(())
    }
    fn clear_policy_node(&mut self, slot: u8, node: u32) -> Result<(), DataplaneError> {
        let s = self.check(slot)?;
        self.slots[s].policy_nodes.remove(&node);
        Ok(())
    }
    fn put_endpoint(
        &mut self,
        key: EndpointKey,
        value: EndpointInfo,
    ) -> Result<(), DataplaneError> {
        let s = self.check(key.slot)?;
        self.slots[s].endpoints.insert(key, value);
        Ok(())
    }
    fn remove_endpoint(&mut self, key: EndpointKey) -> Result<(), DataplaneError> {
        let s = self.check(key.slot)?;
        self.slots[s].endpoints.remove(&key);
        Ok(())
    }
    fn put_service(&mut self, key: ServiceKey) -> Result<(), DataplaneError> {
        let s = self.check(key.slot)?;
        self.slots[s].services.insert(key);
        Ok(())
    }
    fn remove_service(&mut self, key: ServiceKey) -> Result<(), DataplaneError> {
        let s = self.check(key.slot)?;
        self.slots[s].services.remove(&key);
        Ok(())
    }
}
