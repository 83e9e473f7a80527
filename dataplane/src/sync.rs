//! The slot protocol of the ABI (see `bulkhead_common`): a new policy is
//! written into the inactive slot, stale entries of that slot deleted, and
//! made live by one CONFIG write (the revision); the active slot is never
//! written. Generic over [`SlotMaps`] so the sequence is unit-tested on a
//! fake ([`FakeMaps`]) and runs on the pinned kernel maps unchanged.
//!
//! The [`Syncer`] keeps what each slot holds in memory (as a slot-neutral
//! [`NodeImage`] and the slot's POLICY_NODES allocation, see
//! [`crate::slotcache`]), read back once when it first syncs and again only
//! after a failed write. A change is the [`ImageDelta`] from the active
//! slot's image; the inactive slot lags the active one by the previous
//! delta, so a switch writes `lag ∪ delta` there: O(change), no read-back.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use bulkhead_common::{
    EndpointInfo, EndpointKey, IdentityKey, IdentityValue, PolicyNode, PolicyNodeKey, ServiceKey,
    active_slot,
};

use super::DataplaneError;
use super::slotcache::{SlotState, identity_key};
use bulkhead_policy::compile::Compiled;
use bulkhead_policy::compile::image::{ImageCounts, ImageDelta, NodeImage};

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

impl Desired<'_> {
    /// The slot-neutral image, checked against the slot capacities.
    pub fn node_image(&self) -> Result<NodeImage, DataplaneError> {
        let (image, map) = self.compiled.node_image(self.local, self.macs);
        map.check_fits()?;
        Ok(image)
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

/// Runs the slot protocol on maps. It keeps what each slot holds in memory
/// (read back once, when it first syncs, and again after a failed write or
/// when CONFIG's revision is not the one it last wrote), and the keys where
/// the inactive slot lags the active one (the last delta it switched to).
/// A switch writes only those and the new delta into the inactive slot:
/// O(change), never a read of the maps. It remembers when it last switched
/// so the next write into the then-inactive slot waits out the grace period.
pub struct Syncer {
    grace: Duration,
    last_switch: Instant,
    cache: Option<Cache>,
}

/// What the syncer knows of the maps.
struct Cache {
    /// CONFIG's revision when the cache was loaded or last switched.
    revision: u64,
    /// Each slot's content, by slot number.
    slots: [SlotState; 2],
    /// Keys where the inactive slot may differ from the active one (values
    /// unused).
    lag: ImageDelta,
}

impl Syncer {
    /// A syncer that waits `grace` after a switch before writing the slot
    /// it left. It assumes a switch just happened (a previous agent may have
    /// switched right before it died).
    pub fn new(grace: Duration) -> Self {
        Self {
            grace,
            last_switch: Instant::now(),
            cache: None,
        }
    }

    /// Makes `desired` the policy in force: unchanged when the active slot
    /// equals it, else written to the inactive slot and switched.
    /// On any error the active slot and the revision are untouched.
    pub fn sync(
        &mut self,
        maps: &mut dyn SlotMaps,
        desired: &Desired<'_>,
    ) -> Result<SyncOutcome, DataplaneError> {
        // Built and capacity-checked before anything is written, so an
        // oversized policy changes nothing.
        let wanted = desired.node_image()?;
        self.sync_image(maps, &wanted)
    }

    /// [`Self::sync`] of an image built by the caller.
    pub fn sync_image(
        &mut self,
        maps: &mut dyn SlotMaps,
        wanted: &NodeImage,
    ) -> Result<SyncOutcome, DataplaneError> {
        let cache = self.load(maps)?;
        let active = active_slot(cache.revision);
        let delta = cache.slots[active as usize].image.diff(wanted);
        if delta.is_empty() {
            return Ok(SyncOutcome::Unchanged {
                revision: cache.revision,
            });
        }
        let counts = wanted.counts();
        counts.check_fits()?;
        self.switch(maps, delta, counts)
    }

    /// Makes the active image with `delta` applied the policy in force,
    /// in O(delta) (plus the lag): the incremental path of [`Self::sync`].
    /// Entries of `delta` that change nothing are ignored; when none is
    /// left, nothing is written.
    pub fn apply_delta(
        &mut self,
        maps: &mut dyn SlotMaps,
        delta: &ImageDelta,
    ) -> Result<SyncOutcome, DataplaneError> {
        let cache = self.load(maps)?;
        let active = &cache.slots[active_slot(cache.revision) as usize];
        let delta = active.image.effective(delta);
        if delta.is_empty() {
            return Ok(SyncOutcome::Unchanged {
                revision: cache.revision,
            });
        }
        let counts = active.image.counts_after(active.counts, &delta);
        counts.check_fits()?;
        self.switch(maps, delta, counts)
    }

    /// The image of the active slot as the syncer knows it (read back from
    /// `maps` first if it knows nothing yet).
    pub fn active_image(&mut self, maps: &dyn SlotMaps) -> Result<&NodeImage, DataplaneError> {
        let cache = self.load(maps)?;
        Ok(&cache.slots[active_slot(cache.revision) as usize].image)
    }

    /// Forgets what the slots hold: the next sync reads them back.
    pub fn forget(&mut self) {
        self.cache = None;
    }

    /// The cache, read back from `maps` when there is none or CONFIG's
    /// revision moved under it (another writer).
    fn load(&mut self, maps: &dyn SlotMaps) -> Result<&mut Cache, DataplaneError> {
        let revision = maps.revision()?;
        if self.cache.as_ref().is_none_or(|c| c.revision != revision) {
            self.cache = None;
            let slots = [
                SlotState::load(&maps.read_slot(0)?),
                SlotState::load(&maps.read_slot(1)?),
            ];
            let active = active_slot(revision) as usize;
            let lag = slots[active].image.diff(&slots[1 - active].image);
            self.cache = Some(Cache {
                revision,
                slots,
                lag,
            });
        }
        Ok(self.cache.as_mut().expect("loaded"))
    }

    /// Writes the active image with `delta` (effective for it; the result
    /// has `counts`, checked) into the inactive slot and switches to it.
    /// Any failure drops the cache.
    fn switch(
        &mut self,
        maps: &mut dyn SlotMaps,
        delta: ImageDelta,
        counts: ImageCounts,
    ) -> Result<SyncOutcome, DataplaneError> {
        // Programs that read CONFIG before the last switch may still be
        // reading the slot about to be rewritten.
        let since = self.last_switch.elapsed();
        if since < self.grace {
            std::thread::sleep(self.grace - since);
        }
        let cache = self.cache.as_mut().expect("loaded before a switch");
        let revision = cache.revision;
        let target = active_slot(revision + 1);
        let [s0, s1] = &mut cache.slots;
        let (have, active) = if target == 0 { (s0, &*s1) } else { (s1, &*s0) };
        let plan = have
            .image
            .effective(&wanted_at(&active.image, &cache.lag, &delta));
        let result = write_plan(maps, target, have, &plan)
            .and_then(|writes| maps.set_revision(revision + 1).map(|()| writes));
        let writes = match result {
            Ok(w) => w,
            Err(e) => {
                self.cache = None;
                return Err(e);
            }
        };
        have.image.apply(&plan);
        have.counts = counts;
        debug_assert_eq!(have.counts, have.image.counts());
        cache.revision = revision + 1;
        cache.lag = delta;
        self.last_switch = Instant::now();
        Ok(SyncOutcome::Switched {
            from: revision,
            to: revision + 1,
            writes,
        })
    }
}

/// The wanted entry (the active image's with `delta` applied) of every key
/// of `lag` and `delta`.
fn wanted_at(active: &NodeImage, lag: &ImageDelta, delta: &ImageDelta) -> ImageDelta {
    let mut out = ImageDelta::default();
    for k in lag.identities.keys() {
        out.identities.insert(*k, active.identities.get(k).copied());
    }
    for k in lag.policy.keys() {
        out.policy.insert(*k, active.policy.get(k).cloned());
    }
    for k in lag.endpoints.keys() {
        out.endpoints.insert(*k, active.endpoints.get(k).copied());
    }
    for k in lag.services.keys() {
        out.services.insert(*k, active.services.contains(k));
    }
    out.extend(delta);
    out
}

/// Writes `plan` (effective for `have`, the content of `slot`) into the
/// maps: stale entries first (so the slot never holds more than one image),
/// then new or changed ones; a rewritten tree takes fresh nodes, and nodes
/// freed and not taken again are cleared. Updates `have`'s node allocation
/// (not its image). Returns the number of map writes.
fn write_plan(
    maps: &mut dyn SlotMaps,
    slot: u8,
    have: &mut SlotState,
    plan: &ImageDelta,
) -> Result<usize, DataplaneError> {
    let mut writes = 0;
    for (&(len, addr), v) in &plan.identities {
        if v.is_none() {
            maps.remove_identity(len, identity_key(slot, addr))?;
            writes += 1;
        }
    }
    let mut freed = Vec::new();
    for (&(table, peer), v) in &plan.policy {
        freed.extend(have.release(&(table, peer)));
        // A tree of no ranges has no root (the compiler never makes one).
        if v.as_ref().is_none_or(Vec::is_empty) {
            maps.remove_policy(PolicyNodeKey::new(slot, table, peer, 0))?;
            writes += 1;
        }
    }
    for (&ifindex, v) in &plan.endpoints {
        if v.is_none() {
            maps.remove_endpoint(EndpointKey::new(ifindex, slot))?;
            writes += 1;
        }
    }
    for (&(proto, port, addr), &present) in &plan.services {
        if !present {
            maps.remove_service(ServiceKey {
                slot,
                proto,
                port,
                addr,
            })?;
            writes += 1;
        }
    }
    for (&(len, addr), v) in &plan.identities {
        if let Some(v) = v {
            maps.put_identity(len, identity_key(slot, addr), *v)?;
            writes += 1;
        }
    }
    let mut taken = HashSet::new();
    for (&key, v) in &plan.policy {
        let Some(ranges) = v else { continue };
        let placed = have.place(slot, key, ranges)?;
        // Children before the root that reaches them.
        for (node, value) in placed.nodes {
            maps.put_policy_node(slot, node, value)?;
            taken.insert(node);
            writes += 1;
        }
        if let Some((k, root)) = placed.root {
            maps.put_policy(k, root)?;
            writes += 1;
        }
    }
    for (&ifindex, v) in &plan.endpoints {
        if let Some(v) = v {
            maps.put_endpoint(EndpointKey::new(ifindex, slot), *v)?;
            writes += 1;
        }
    }
    for (&(proto, port, addr), &present) in &plan.services {
        if present {
            maps.put_service(ServiceKey {
                slot,
                proto,
                port,
                addr,
            })?;
            writes += 1;
        }
    }
    for node in freed {
        if !taken.contains(&node) {
            maps.clear_policy_node(slot, node)?;
            writes += 1;
        }
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
    /// Fails the write that would be number `fail_at + 1` (and every one
    /// after it) while set.
    pub fail_at: Option<usize>,
    /// Number of [`SlotMaps::read_slot`] calls so far.
    pub reads: std::cell::Cell<usize>,
}

impl FakeMaps {
    fn check(&mut self, slot: u8) -> Result<usize, DataplaneError> {
        if slot == active_slot(self.revision) {
            return Err(DataplaneError::Map {
                name: "fake",
                reason: format!("write into the active slot {slot}"),
            });
        }
        if self.fail_at.is_some_and(|n| self.writes >= n) {
            return Err(DataplaneError::Map {
                name: "fake",
                reason: "injected failure".to_owned(),
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
        self.reads.set(self.reads.get() + 1);
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
