//! The slot-neutral content of one policy slot ([`NodeImage`]) and the
//! difference between two of them ([`ImageDelta`]).
//!
//! A [`MapImage`] is stamped with a slot and its policy trees are already
//! cut into B-tree nodes; a `NodeImage` is the same content as the maps'
//! logical entries: identities by (prefix length, address), each policy
//! tree as its sorted list of ranges, endpoints by the ifindex of the
//! pod's host-side veth, Service frontends without slot. The dataplane
//! keeps what each slot holds as a `NodeImage`, writes only an
//! `ImageDelta` into the inactive slot, and lays the changed trees out
//! into POLICY_NODES itself. An incremental compiler yields the delta of a
//! change directly.

use std::collections::{BTreeMap, BTreeSet};

use bulkhead_common::{
    ENDPOINTS_SLOT_CAPACITY, EndpointInfo, IDENTITIES_SLOT_CAPACITY, IdentityValue,
    POLICY_DEPTH_MAX, POLICY_FANOUT, POLICY_NODE_INNER, POLICY_NODE_LEAF,
    POLICY_NODES_SLOT_CAPACITY, POLICY_SLOT_CAPACITY, PolicyNode, PolicyRange,
    SERVICES_SLOT_CAPACITY,
};

use super::Compiled;
use super::maps::{ImageTooLarge, MapImage};

/// An identity entry's key without slot: (prefix length as the maps store
/// it, i.e. including the slot's `SLOT_PREFIX` bits; address, IPv4 mapped
/// into IPv6).
pub type IdentityAddr = (u32, [u8; 16]);
/// A policy tree's key without slot: (rule table, peer identity).
pub type TreeKey = (u32, u32);
/// A Service frontend without slot: (IP protocol, port, address).
pub type ServiceAddr = (u8, u16, [u8; 16]);

/// The logical content of one policy slot, without the slot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeImage {
    /// IDENTITIES and IDENTITIES_EXACT entries.
    pub identities: BTreeMap<IdentityAddr, IdentityValue>,
    /// Policy trees: each (table, peer)'s sorted, disjoint ranges (never
    /// empty), before they are cut into nodes.
    pub policy: BTreeMap<TreeKey, Vec<PolicyRange>>,
    /// ENDPOINTS entries by ifindex.
    pub endpoints: BTreeMap<u32, EndpointInfo>,
    /// SERVICES entries.
    pub services: BTreeSet<ServiceAddr>,
}

/// What turns one [`NodeImage`] into another: per map, each key whose
/// entry changes, with its new value (`None`: removed; for services
/// `false`: removed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageDelta {
    /// Identity entries set or removed.
    pub identities: BTreeMap<IdentityAddr, Option<IdentityValue>>,
    /// Policy trees set (their whole new range list) or removed.
    pub policy: BTreeMap<TreeKey, Option<Vec<PolicyRange>>>,
    /// Endpoints set or removed.
    pub endpoints: BTreeMap<u32, Option<EndpointInfo>>,
    /// Service frontends added (`true`) or removed (`false`).
    pub services: BTreeMap<ServiceAddr, bool>,
}

/// Entry counts of one image, per map (the capacity checks' input).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImageCounts {
    /// Identity entries.
    pub identities: usize,
    /// Policy trees (POLICY_V4 roots).
    pub roots: usize,
    /// Non-root policy nodes (POLICY_NODES).
    pub nodes: usize,
    /// Endpoints.
    pub endpoints: usize,
    /// Service frontends.
    pub services: usize,
}

impl ImageCounts {
    /// Checks every count against the per-slot capacities of the ABI.
    pub fn check_fits(&self) -> Result<(), ImageTooLarge> {
        let parts = [
            ("IDENTITIES", self.identities, IDENTITIES_SLOT_CAPACITY),
            ("POLICY_V4", self.roots, POLICY_SLOT_CAPACITY),
            ("POLICY_NODES", self.nodes, POLICY_NODES_SLOT_CAPACITY),
            ("ENDPOINTS", self.endpoints, ENDPOINTS_SLOT_CAPACITY),
            ("SERVICES", self.services, SERVICES_SLOT_CAPACITY),
        ];
        for (map, needed, capacity) in parts {
            if needed > capacity as usize {
                return Err(ImageTooLarge {
                    map,
                    needed,
                    capacity,
                });
            }
        }
        Ok(())
    }
}

/// Nodes (root included) of the B-tree that [`super::maps::policy_tree`]
/// cuts `ranges` ranges into; 0 for none.
pub fn tree_node_count(ranges: usize) -> usize {
    if ranges == 0 {
        return 0;
    }
    let mut total = 0;
    let mut level = ranges;
    loop {
        let nodes = level.div_ceil(POLICY_FANOUT);
        total += nodes;
        if nodes == 1 {
            return total;
        }
        level = nodes;
    }
}

/// The sorted ranges a policy tree holds: its leaves' ranges in order,
/// from `root` through `node` (a child by its number; `None` when absent).
/// `None` when the tree is malformed: a child missing or reached twice, a
/// node of unknown kind or with a bad count, deeper than
/// `POLICY_DEPTH_MAX`, or leaves out of order.
pub fn tree_ranges(
    root: &PolicyNode,
    mut node: impl FnMut(u32) -> Option<PolicyNode>,
) -> Option<Vec<PolicyRange>> {
    let mut out: Vec<PolicyRange> = Vec::new();
    let mut seen = BTreeSet::new();
    // Depth-first, children in order: (node, depth).
    let mut stack = vec![(*root, 1usize)];
    while let Some((n, depth)) = stack.pop() {
        let count = usize::from(n.count);
        if count == 0 || count > POLICY_FANOUT || depth > POLICY_DEPTH_MAX {
            return None;
        }
        let used = &n.ranges[..count];
        match n.kind {
            POLICY_NODE_LEAF => {
                for r in used {
                    if r.first > r.last || out.last().is_some_and(|p| p.last >= r.first) {
                        return None;
                    }
                    out.push(*r);
                }
            }
            POLICY_NODE_INNER => {
                for r in used.iter().rev() {
                    if !seen.insert(r.target) {
                        return None;
                    }
                    stack.push((node(r.target)?, depth + 1));
                }
            }
            _ => return None,
        }
    }
    Some(out)
}

impl NodeImage {
    /// The content of `image` (any slot), endpoints keyed by the ifindex
    /// `local` gives each pod (pods without one are left out).
    ///
    /// Panics if a policy tree of `image` is malformed (the compiler never
    /// makes one).
    pub fn from_map_image(image: &MapImage, local: &[(usize, u32)]) -> Self {
        let mut trees: BTreeMap<TreeKey, BTreeMap<u32, PolicyNode>> = BTreeMap::new();
        for (k, v) in &image.policy {
            trees
                .entry((k.table, k.identity))
                .or_default()
                .insert(k.node, *v);
        }
        let policy = trees
            .into_iter()
            .map(|(key, nodes)| {
                let ranges = tree_ranges(&nodes[&0], |n| nodes.get(&n).copied())
                    .expect("the compiler's trees are well formed");
                (key, ranges)
            })
            .collect();
        let ifindex: BTreeMap<usize, u32> = local.iter().copied().collect();
        Self {
            identities: image
                .identities
                .iter()
                .map(|&(len, k, v)| ((len, k.addr), v))
                .collect(),
            policy,
            endpoints: image
                .endpoints
                .iter()
                .filter_map(|(pod, info)| Some((*ifindex.get(pod)?, *info)))
                .collect(),
            services: image
                .services
                .iter()
                .map(|s| (s.proto, s.port, s.addr))
                .collect(),
        }
    }

    /// Entry counts per map ([`ImageCounts`]).
    pub fn counts(&self) -> ImageCounts {
        ImageCounts {
            identities: self.identities.len(),
            roots: self.policy.len(),
            nodes: self
                .policy
                .values()
                .map(|r| tree_node_count(r.len()).saturating_sub(1))
                .sum(),
            endpoints: self.endpoints.len(),
            services: self.services.len(),
        }
    }

    /// What turns `self` into `new`.
    pub fn diff(&self, new: &NodeImage) -> ImageDelta {
        ImageDelta {
            identities: diff_maps(&self.identities, &new.identities),
            policy: diff_maps(&self.policy, &new.policy),
            endpoints: diff_maps(&self.endpoints, &new.endpoints),
            services: self
                .services
                .symmetric_difference(&new.services)
                .map(|s| (*s, new.services.contains(s)))
                .collect(),
        }
    }

    /// Applies `delta` (every entry of it, whatever `self` holds).
    pub fn apply(&mut self, delta: &ImageDelta) {
        apply_map(&mut self.identities, &delta.identities);
        apply_map(&mut self.policy, &delta.policy);
        apply_map(&mut self.endpoints, &delta.endpoints);
        for (s, &present) in &delta.services {
            if present {
                self.services.insert(*s);
            } else {
                self.services.remove(s);
            }
        }
    }

    /// The entries of `delta` that change `self` (a value it already holds,
    /// or the removal of a key it lacks, is dropped).
    pub fn effective(&self, delta: &ImageDelta) -> ImageDelta {
        fn keep<K: Ord + Clone, V: PartialEq + Clone>(
            have: &BTreeMap<K, V>,
            d: &BTreeMap<K, Option<V>>,
        ) -> BTreeMap<K, Option<V>> {
            d.iter()
                .filter(|(k, v)| have.get(*k) != v.as_ref())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        }
        ImageDelta {
            identities: keep(&self.identities, &delta.identities),
            policy: keep(&self.policy, &delta.policy),
            endpoints: keep(&self.endpoints, &delta.endpoints),
            services: delta
                .services
                .iter()
                .filter(|(s, present)| self.services.contains(*s) != **present)
                .map(|(s, p)| (*s, *p))
                .collect(),
        }
    }

    /// The entry counts after applying `delta` (which must be
    /// [`Self::effective`] for `self`), in O(delta).
    pub fn counts_after(&self, counts: ImageCounts, delta: &ImageDelta) -> ImageCounts {
        fn step(n: &mut usize, had: bool, has: bool) {
            match (had, has) {
                (false, true) => *n += 1,
                (true, false) => *n -= 1,
                _ => {}
            }
        }
        let nodes = |r: Option<&Vec<PolicyRange>>| {
            r.map_or(0, |r| tree_node_count(r.len()).saturating_sub(1))
        };
        let mut c = counts;
        for (k, v) in &delta.identities {
            step(
                &mut c.identities,
                self.identities.contains_key(k),
                v.is_some(),
            );
        }
        for (k, v) in &delta.policy {
            let old = self.policy.get(k);
            step(&mut c.roots, old.is_some(), v.is_some());
            c.nodes = c.nodes + nodes(v.as_ref()) - nodes(old);
        }
        for (k, v) in &delta.endpoints {
            step(
                &mut c.endpoints,
                self.endpoints.contains_key(k),
                v.is_some(),
            );
        }
        for (s, &present) in &delta.services {
            step(&mut c.services, self.services.contains(s), present);
        }
        c
    }
}

fn diff_maps<K: Ord + Clone, V: PartialEq + Clone>(
    old: &BTreeMap<K, V>,
    new: &BTreeMap<K, V>,
) -> BTreeMap<K, Option<V>> {
    let mut out = BTreeMap::new();
    for (k, v) in old {
        if !new.contains_key(k) {
            out.insert(k.clone(), None);
        } else if new[k] != *v {
            out.insert(k.clone(), Some(new[k].clone()));
        }
    }
    for (k, v) in new {
        if !old.contains_key(k) {
            out.insert(k.clone(), Some(v.clone()));
        }
    }
    out
}

fn apply_map<K: Ord + Clone, V: Clone>(map: &mut BTreeMap<K, V>, delta: &BTreeMap<K, Option<V>>) {
    for (k, v) in delta {
        match v {
            Some(v) => {
                map.insert(k.clone(), v.clone());
            }
            None => {
                map.remove(k);
            }
        }
    }
}

impl ImageDelta {
    /// Whether the delta changes nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries (keys) the delta sets or removes, over every map.
    pub fn len(&self) -> usize {
        self.identities.len() + self.policy.len() + self.endpoints.len() + self.services.len()
    }

    /// Adds `other`'s entries, `other` winning where both name a key (the
    /// delta of applying `self`, then `other`).
    pub fn extend(&mut self, other: &ImageDelta) {
        self.identities
            .extend(other.identities.iter().map(|(k, v)| (*k, *v)));
        self.policy
            .extend(other.policy.iter().map(|(k, v)| (*k, v.clone())));
        self.endpoints
            .extend(other.endpoints.iter().map(|(k, v)| (*k, *v)));
        self.services
            .extend(other.services.iter().map(|(k, v)| (*k, *v)));
    }
}

impl Compiled {
    /// The node's image: [`Self::map_image_bound`] for the local pods
    /// (`local`: pod index, ifindex of its host-side veth) as a
    /// [`NodeImage`]. Returns the map image too (its capacity check is the
    /// caller's).
    pub fn node_image(
        &self,
        local: &[(usize, u32)],
        macs: &BTreeMap<usize, [u8; 6]>,
    ) -> (NodeImage, MapImage) {
        let pods: Vec<usize> = local.iter().map(|&(p, _)| p).collect();
        let image = self.map_image_bound(0, &pods, macs);
        (NodeImage::from_map_image(&image, local), image)
    }
}

#[cfg(test)]
mod tests;
