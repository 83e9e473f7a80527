//! The compiled policy written as eBPF map entries for one policy slot (the
//! ABI v4 of `bulkhead-common`): the address → identity LPM trie, the policy
//! B-trees (roots in POLICY_V4, other nodes in POLICY_NODES, see
//! [`PolicyLayout`]) and the per-endpoint bindings, each key stamped with
//! the slot.
//!
//! Policy: per (table, peer) the groups of the rule table — (peer, proto)
//! and (peer, any protocol) — become one sorted list of disjoint ranges over
//! `policy_point(proto, port)`, the any-protocol rule filling every gap
//! ([`peer_ranges`]); that list is cut into B-tree nodes of `POLICY_FANOUT`
//! ranges ([`policy_tree`]). The kernel's lookup order (peer's protocol,
//! peer's any protocol, any peer's protocol, any peer's any protocol) and
//! deciding rule (`rules[0]` of the first matching segment) stay exactly
//! those of `RuleTable::lookup`.
//!
//! Every identity, table and rule number in the image is the kernel's
//! ([`Compiled::kernel`]: derived from content, not from positions), so a
//! small model change makes a small image change; entries are listed in
//! key order (identities by prefix, trees by (table, peer)).
//!
//! The loader writes an image into the inactive slot and then bumps the
//! revision in CONFIG (see `bulkhead_common`'s crate docs); it checks
//! [`MapImage::check_fits`] first. Endpoints are listed by pod index; the
//! loader keys them by the ifindex of each local pod's host-side veth.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::IpAddr;

use bulkhead_common::{
    ENDPOINT_AUDIT_EGRESS, ENDPOINT_AUDIT_INGRESS, ENDPOINT_HAS_IPV4, ENDPOINT_HAS_IPV6,
    ENDPOINT_HAS_MAC, ENDPOINT_ISOLATED_EGRESS, ENDPOINT_ISOLATED_INGRESS, ENDPOINTS_SLOT_CAPACITY,
    EndpointInfo, IDENTITIES_SLOT_CAPACITY, IDENTITY_ANY, IDENTITY_F_NODE, IDENTITY_F_POD,
    IdentityKey, IdentityValue, POLICY_DEPTH_MAX, POLICY_FANOUT, POLICY_NODE_INNER,
    POLICY_NODE_LEAF, POLICY_NODES_SLOT_CAPACITY, POLICY_POINT_MAX, POLICY_SLOT_CAPACITY,
    PROTO_ANY, PolicyNode, PolicyNodeKey, PolicyRange, RULE_NONE, SERVICES_SLOT_CAPACITY,
    SLOT_PREFIX, ServiceKey, policy_point,
};
use ipnetwork::IpNetwork;

use super::tables::Segment;
use super::{Compiled, IdentityId, IdentityKind, RuleId, TableId};

/// An LPM trie entry: (prefix length, key data, value).
pub type LpmEntry<K, V> = (u32, K, V);

/// All map contents of one compiled policy, for one slot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MapImage {
    /// The slot every key is stamped with (0 or 1).
    pub slot: u8,
    /// Address → identity.
    pub identities: Vec<LpmEntry<IdentityKey, IdentityValue>>,
    /// (table, peer identity, node) → B-tree node of (protocol, port) ranges,
    /// node numbers per tree as [`policy_tree`] makes them; the maps store
    /// them as [`Self::policy_layout`] places them.
    pub policy: Vec<(PolicyNodeKey, PolicyNode)>,
    /// Per pod (index into the model): its bindings, addresses and MAC.
    pub endpoints: Vec<(usize, EndpointInfo)>,
    /// Service frontends (SERVICES), sorted.
    pub services: Vec<ServiceKey>,
}

/// A map image that does not fit one slot of a map.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("map image needs {needed} {map} entries; one slot holds {capacity}")]
pub struct ImageTooLarge {
    /// Which map.
    pub map: &'static str,
    /// Entries the image has.
    pub needed: usize,
    /// Entries one slot holds.
    pub capacity: u32,
}

impl MapImage {
    /// Checks every part against the per-slot capacities of the ABI.
    pub fn check_fits(&self) -> Result<(), ImageTooLarge> {
        let parts = [
            (
                "IDENTITIES",
                self.identities.len(),
                IDENTITIES_SLOT_CAPACITY,
            ),
            (
                "POLICY_V4",
                self.policy.iter().filter(|(k, _)| k.node == 0).count(),
                POLICY_SLOT_CAPACITY,
            ),
            (
                "POLICY_NODES",
                self.policy.iter().filter(|(k, _)| k.node != 0).count(),
                POLICY_NODES_SLOT_CAPACITY,
            ),
            ("ENDPOINTS", self.endpoints.len(), ENDPOINTS_SLOT_CAPACITY),
            ("SERVICES", self.services.len(), SERVICES_SLOT_CAPACITY),
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

/// The policy trees of one slot as the maps store them: roots in POLICY_V4,
/// every other node in the slot's range of POLICY_NODES, inner ranges'
/// targets renumbered to those POLICY_NODES node numbers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyLayout {
    /// POLICY_V4 entries (every key's `node` is 0).
    pub roots: Vec<(PolicyNodeKey, PolicyNode)>,
    /// POLICY_NODES entries of the slot: node number `i` (index
    /// `policy_node_index(slot, i)`) is `nodes[i]`.
    pub nodes: Vec<PolicyNode>,
}

impl MapImage {
    /// The policy as the maps store it (see [`place_policy`]).
    pub fn policy_layout(&self) -> PolicyLayout {
        place_policy(&self.policy)
    }
}

/// Places trees (each a root numbered 0 and nodes numbered within the tree,
/// as [`policy_tree`] makes them; one slot) for the maps: trees in key
/// order, each tree's non-root nodes in its own order, numbered from 0 on
/// in POLICY_NODES; inner targets renumbered accordingly. Deterministic, so
/// equal images place equally (the sync compares placed images).
///
/// Panics if an inner target names no node of its tree.
pub fn place_policy(entries: &[(PolicyNodeKey, PolicyNode)]) -> PolicyLayout {
    let mut trees: BTreeMap<(u8, u32, u32), BTreeMap<u32, PolicyNode>> = BTreeMap::new();
    for (k, v) in entries {
        trees
            .entry((k.slot, k.table, k.identity))
            .or_default()
            .insert(k.node, *v);
    }
    let mut out = PolicyLayout::default();
    for ((slot, table, peer), nodes) in trees {
        let number: BTreeMap<u32, u32> = nodes
            .keys()
            .filter(|&&n| n != 0)
            .enumerate()
            .map(|(i, &n)| (n, (out.nodes.len() + i) as u32))
            .collect();
        for (n, mut node) in nodes {
            if node.kind == POLICY_NODE_INNER {
                for r in &mut node.ranges[..node.count as usize] {
                    r.target = number[&r.target];
                }
            }
            if n == 0 {
                out.roots
                    .push((PolicyNodeKey::new(slot, table, peer, 0), node));
            } else {
                out.nodes.push(node);
            }
        }
    }
    out
}

/// Key data and prefix length of an address prefix in `slot` (IPv4 mapped
/// into IPv6; the slot takes the first 8 bits).
pub fn identity_key(slot: u8, net: IpNetwork) -> (u32, IdentityKey) {
    let (len, addr) = match net {
        IpNetwork::V4(n) => (
            96 + n.prefix() as u32,
            n.network().to_ipv6_mapped().octets(),
        ),
        IpNetwork::V6(n) => (n.prefix() as u32, n.network().octets()),
    };
    (SLOT_PREFIX + len, IdentityKey { slot, addr })
}

/// Key data of a single address in `slot` (full-length lookups).
pub fn address_key(slot: u8, addr: IpAddr) -> IdentityKey {
    identity_key(slot, IpNetwork::from(addr)).1
}

/// An address as the ABI stores it (IPv4 mapped into IPv6).
pub fn abi_addr(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

/// The MAC the lab (and hand-wired test pods) give a pod's interface:
/// locally administered unicast `02:xx:xx:xx:xx:xx`, the
/// `xx` being the first five bytes of the FNV-1a-64 hash of the pod's
/// addresses (sorted, each as 16 bytes, IPv4 mapped into IPv6). Pods with
/// distinct addresses get distinct MACs with overwhelming probability
/// (40-bit hash). The dataplane checks a pod's MAC only when the agent
/// learnt it from the pod's CNI ADD ([`Compiled::map_image_bound`]), never
/// from this guess: a real cluster's veths have random MACs.
pub fn pod_mac(addrs: impl IntoIterator<Item = IpAddr>) -> [u8; 6] {
    let mut addrs: Vec<[u8; 16]> = addrs.into_iter().map(abi_addr).collect();
    addrs.sort_unstable();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in addrs.iter().flatten() {
        h ^= u64::from(*byte);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let b = h.to_be_bytes();
    [0x02, b[0], b[1], b[2], b[3], b[4]]
}

impl Compiled {
    /// Writes the compiled policy as map entries for `slot`, with every pod
    /// as an endpoint (all tables).
    pub fn map_image(&self, slot: u8) -> MapImage {
        self.image(slot, None, &BTreeMap::new())
    }

    /// Like [`Self::map_image`], for a node: only the endpoints `pods`
    /// (indexes into the model) and the rule tables they use. Identities
    /// cover every address (remote pods are peers too). No MAC is checked.
    pub fn map_image_for(&self, slot: u8, pods: &[usize]) -> MapImage {
        self.image(slot, Some(pods), &BTreeMap::new())
    }

    /// [`Self::map_image_for`] where the pods of `macs` (index → the MAC
    /// of the pod's interface, as its CNI ADD reported it) may send only
    /// from that MAC (`ENDPOINT_HAS_MAC`); the others' MACs are unknown
    /// and not checked (their source addresses still are).
    pub fn map_image_bound(
        &self,
        slot: u8,
        pods: &[usize],
        macs: &BTreeMap<usize, [u8; 6]>,
    ) -> MapImage {
        self.image(slot, Some(pods), macs)
    }

    fn image(&self, slot: u8, pods: Option<&[usize]>, macs: &BTreeMap<usize, [u8; 6]>) -> MapImage {
        let mut image = MapImage {
            slot,
            ..MapImage::default()
        };
        // Pod and node addresses first; a region prefix that is exactly
        // one such address (an ipBlock cut down to it) has no other
        // address, so its external identity never applies and its entry
        // would clash.
        let value = |id, flags| IdentityValue {
            identity: id,
            flags,
        };
        let mut exact_keys = HashSet::new();
        for identity in &self.identities.list {
            let (addrs, flags) = match &identity.kind {
                IdentityKind::Pods { addrs, .. } => (addrs, IDENTITY_F_POD),
                IdentityKind::Node { addrs, .. } => (addrs, IDENTITY_F_NODE),
                IdentityKind::External { .. } => continue,
            };
            let id = self.kernel.identity(identity.id);
            for &a in addrs {
                let (len, key) = identity_key(slot, IpNetwork::from(a));
                exact_keys.insert((len, key));
                image.identities.push((len, key, value(id, flags)));
            }
        }
        for identity in &self.identities.list {
            if let IdentityKind::External { region } = &identity.kind {
                let id = self.kernel.identity(identity.id);
                for &net in &self.regions.regions[*region as usize].prefixes {
                    let (len, key) = identity_key(slot, net);
                    if !exact_keys.contains(&(len, key)) {
                        image.identities.push((len, key, value(id, 0)));
                    }
                }
            }
        }
        image
            .identities
            .sort_unstable_by_key(|&(len, key, _)| (key.addr, len));
        let local: Vec<usize> = match pods {
            Some(p) => p.to_vec(),
            None => (0..self.endpoints.len()).collect(),
        };
        let used: Option<BTreeSet<TableId>> = pods.map(|_| {
            local
                .iter()
                .flat_map(|&p| {
                    let (ep, audit) = (self.endpoints[p], self.audit_endpoints[p]);
                    [ep.ingress, ep.egress, audit.ingress, audit.egress]
                })
                .flatten()
                .collect()
        });
        // At least one node per peer of every table: reserve that much.
        image.policy.reserve(
            self.tables
                .iter()
                .enumerate()
                .filter(|(t, _)| used.as_ref().is_none_or(|u| u.contains(&(*t as TableId))))
                .map(|(_, t)| t.groups.len())
                .sum(),
        );
        // Tables in kernel number order, so the image lists trees by key.
        let mut by_number: Vec<(u32, TableId)> = (0..self.tables.len() as TableId)
            .filter(|t| used.as_ref().is_none_or(|u| u.contains(t)))
            .map(|t| (self.kernel.table(t), t))
            .collect();
        by_number.sort_unstable();
        let target = |t: u32| self.kernel.target(t);
        for (kernel_table, table_id) in by_number {
            let table = &self.tables[table_id as usize];
            // Sorted by (kernel peer, protocol): one tree per peer,
            // `IDENTITY_ANY` (0) first.
            let mut groups: Vec<(IdentityId, u8, &[Segment])> = table
                .groups
                .iter()
                .map(|(&(peer, proto), segs)| (self.kernel.identity(peer), proto, segs.as_slice()))
                .collect();
            groups.sort_unstable_by_key(|&(peer, proto, _)| (peer, proto));
            // A tiered table that NetworkPolicy does not isolate allows what
            // no rule decides: its any-peer tree says so explicitly
            // (RULE_NONE in every gap), as the kernel denies a miss.
            let open = !table.isolated();
            if open && groups.first().is_none_or(|g| g.0 != IDENTITY_ANY) {
                let ranges = fill_gaps(Vec::new(), RULE_NONE);
                image
                    .policy
                    .extend(policy_tree(slot, kernel_table, IDENTITY_ANY, &ranges));
            }
            for chunk in groups.chunk_by(|a, b| a.0 == b.0) {
                let of_peer: Vec<(u8, &[Segment])> = chunk
                    .iter()
                    .map(|&(_, proto, segs)| (proto, segs))
                    .collect();
                let mut ranges = peer_ranges_with(&of_peer, target);
                if open && chunk[0].0 == IDENTITY_ANY {
                    ranges = fill_gaps(ranges, RULE_NONE);
                }
                image
                    .policy
                    .extend(policy_tree(slot, kernel_table, chunk[0].0, &ranges));
            }
        }
        let mut addrs: Vec<Vec<IpAddr>> = vec![Vec::new(); self.endpoints.len()];
        for (&addr, &(_, pod)) in &self.identities.by_pod_addr {
            addrs[pod].push(addr);
        }
        for pod in local {
            image.endpoints.push((
                pod,
                self.endpoint_info(pod, &addrs[pod], macs.get(&pod).copied()),
            ));
        }
        image.services = self
            .frontends
            .iter()
            .map(|f| ServiceKey {
                slot,
                proto: f.protocol.number(),
                port: f.port,
                addr: abi_addr(f.addr),
            })
            .collect();
        image.services.sort_unstable();
        image.services.dedup();
        image
    }

    /// The ENDPOINTS value of pod `pod` with addresses `addrs` and, when
    /// known, the MAC of its interface.
    fn endpoint_info(&self, pod: usize, addrs: &[IpAddr], mac: Option<[u8; 6]>) -> EndpointInfo {
        let (ep, audit) = (self.endpoints[pod], self.audit_endpoints[pod]);
        let number = |t: Option<TableId>| t.map_or(0, |t| self.kernel.table(t));
        let mut info = EndpointInfo {
            ingress_table: number(ep.ingress),
            egress_table: number(ep.egress),
            flags: 0,
            _reserved: 0,
            mac: [0; 6],
            _pad: [0; 2],
            ipv4: [0; 16],
            ipv6: [0; 16],
            audit_ingress_table: number(audit.ingress),
            audit_egress_table: number(audit.egress),
        };
        for (table, flag) in [
            (ep.ingress, ENDPOINT_ISOLATED_INGRESS),
            (ep.egress, ENDPOINT_ISOLATED_EGRESS),
            (audit.ingress, ENDPOINT_AUDIT_INGRESS),
            (audit.egress, ENDPOINT_AUDIT_EGRESS),
        ] {
            if table.is_some() {
                info.flags |= flag;
            }
        }
        set_endpoint_addresses(&mut info, addrs, mac);
        info
    }
}

/// Sets what an ENDPOINTS value says of the pod itself: its addresses (one
/// per family, as Kubernetes podIPs; the lowest if more) and, when known,
/// the MAC it may send from; its tables and isolation stay.
pub fn set_endpoint_addresses(info: &mut EndpointInfo, addrs: &[IpAddr], mac: Option<[u8; 6]>) {
    info.flags &= !(ENDPOINT_HAS_IPV4 | ENDPOINT_HAS_IPV6 | ENDPOINT_HAS_MAC);
    info.ipv4 = [0; 16];
    info.ipv6 = [0; 16];
    info.mac = mac.unwrap_or_default();
    if mac.is_some() {
        info.flags |= ENDPOINT_HAS_MAC;
    }
    let mut sorted = addrs.to_vec();
    sorted.sort_unstable();
    if let Some(a) = sorted.iter().find(|a| a.is_ipv4()) {
        info.ipv4 = abi_addr(*a);
        info.flags |= ENDPOINT_HAS_IPV4;
    }
    if let Some(a) = sorted.iter().find(|a| a.is_ipv6()) {
        info.ipv6 = abi_addr(*a);
        info.flags |= ENDPOINT_HAS_IPV6;
    }
}

/// One peer's groups of a rule table — (protocol, its sorted disjoint
/// segments), protocols ascending, `PROTO_ANY` allowed — as the sorted,
/// disjoint ranges over policy points that the policy trees store: each segment's
/// deciding rule (`rules[0]`) on its own protocol's points, and the
/// any-protocol segment's rule on every other point (it covers all ports,
/// and a protocol's own segment takes precedence, as in
/// `RuleTable::lookup`). Neighbours with the same rule are merged.
/// Targets are the segments' own rule numbers ([`Segment::kernel_rule`]).
pub fn peer_ranges(groups: &[(u8, &[Segment])]) -> Vec<PolicyRange> {
    peer_ranges_with(groups, |t| t)
}

/// [`peer_ranges`] with each segment's target ([`Segment::kernel_rule`])
/// renumbered by `number` (the compiler's internal rule numbers to the
/// kernel's, [`super::KernelIds::target`]). `number` must be one-to-one, so
/// neighbours merge exactly where their segments' targets are equal.
pub fn peer_ranges_with(
    groups: &[(u8, &[Segment])],
    number: impl Fn(u32) -> u32,
) -> Vec<PolicyRange> {
    let any: Option<RuleId> = groups
        .iter()
        .find(|(proto, _)| *proto == PROTO_ANY)
        .and_then(|(_, segs)| {
            debug_assert!(segs.iter().all(|s| s.lo == 0 && s.hi == u16::MAX));
            segs.first().map(|s| number(s.kernel_rule()))
        });
    let number = &number;
    let mut own: Vec<(u32, u32, RuleId)> = groups
        .iter()
        .filter(|(proto, _)| *proto != PROTO_ANY)
        .flat_map(|&(proto, segs)| {
            segs.iter().map(move |s| {
                (
                    policy_point(proto, s.lo),
                    policy_point(proto, s.hi),
                    number(s.kernel_rule()),
                )
            })
        })
        .collect();
    own.sort_unstable();
    let mut out: Vec<PolicyRange> = Vec::with_capacity(own.len() * 2 + 1);
    let mut push = |first: u32, last: u32, target: RuleId| match out.last_mut() {
        Some(prev) if prev.last + 1 == first && prev.target == target => prev.last = last,
        _ => out.push(PolicyRange {
            first,
            last,
            target,
        }),
    };
    let mut next = 0u32; // first point not yet covered
    for (first, last, rule) in own {
        if let Some(any) = any
            && next < first
        {
            push(next, first - 1, any);
        }
        push(first, last, rule);
        next = last + 1;
    }
    if let Some(any) = any
        && next <= POLICY_POINT_MAX
    {
        push(next, POLICY_POINT_MAX, any);
    }
    out
}

/// Sorted, disjoint `ranges` with every gap over all policy points
/// covered by `target` (neighbours with equal targets merged).
pub fn fill_gaps(ranges: Vec<PolicyRange>, target: u32) -> Vec<PolicyRange> {
    let mut out: Vec<PolicyRange> = Vec::with_capacity(ranges.len() * 2 + 1);
    let mut push = |first: u32, last: u32, target: u32| match out.last_mut() {
        Some(prev) if prev.last + 1 == first && prev.target == target => prev.last = last,
        _ => out.push(PolicyRange {
            first,
            last,
            target,
        }),
    };
    let mut next = 0u32;
    for r in ranges {
        if next < r.first {
            push(next, r.first - 1, target);
        }
        push(r.first, r.last, r.target);
        next = r.last + 1;
    }
    if next <= POLICY_POINT_MAX {
        push(next, POLICY_POINT_MAX, target);
    }
    out
}

/// The policy tree of one peer's sorted, disjoint `ranges` in (`slot`,
/// `table`, `peer`): a B-tree of nodes of up to `POLICY_FANOUT` ranges, the
/// root numbered 0, then level by level. Leaves hold the ranges (target:
/// the rule); an inner node's range spans its child's ranges (target: the
/// child's node number within this tree; [`place_policy`] renumbers them
/// for POLICY_NODES). No entries for no ranges.
pub fn policy_tree(
    slot: u8,
    table: u32,
    peer: IdentityId,
    ranges: &[PolicyRange],
) -> Vec<(PolicyNodeKey, PolicyNode)> {
    let node = |kind, ranges: &[PolicyRange]| {
        let mut node = PolicyNode {
            count: ranges.len() as u8,
            kind,
            _pad: [0; 2],
            _reserved: 0,
            ranges: [PolicyRange::default(); POLICY_FANOUT],
        };
        node.ranges[..ranges.len()].copy_from_slice(ranges);
        node
    };
    if ranges.is_empty() {
        return Vec::new();
    }
    if ranges.len() <= POLICY_FANOUT {
        // The common case: the root is the only leaf.
        let key = PolicyNodeKey::new(slot, table, peer, 0);
        return vec![(key, node(POLICY_NODE_LEAF, ranges))];
    }
    // Levels bottom-up; each node as its ranges, inner targets being
    // positions in the level below until numbered.
    let mut levels: Vec<Vec<Vec<PolicyRange>>> =
        vec![ranges.chunks(POLICY_FANOUT).map(<[_]>::to_vec).collect()];
    while levels.last().is_some_and(|l| l.len() > 1) {
        let below = levels.last().expect("a level");
        let spans: Vec<PolicyRange> = below
            .iter()
            .enumerate()
            .map(|(i, node)| PolicyRange {
                first: node[0].first,
                last: node[node.len() - 1].last,
                target: i as u32,
            })
            .collect();
        levels.push(spans.chunks(POLICY_FANOUT).map(<[_]>::to_vec).collect());
    }
    assert!(
        levels.len() <= POLICY_DEPTH_MAX,
        "policy points bound the depth"
    );
    // Number the nodes top-down: root 0, then each level in order.
    let mut first_number = vec![0u32; levels.len()];
    let mut n = 0u32;
    for depth in (0..levels.len()).rev() {
        first_number[depth] = n;
        n += levels[depth].len() as u32;
    }
    let mut out = Vec::with_capacity(n as usize);
    for depth in (0..levels.len()).rev() {
        for (i, node_ranges) in levels[depth].iter().enumerate() {
            let kind = if depth == 0 {
                POLICY_NODE_LEAF
            } else {
                POLICY_NODE_INNER
            };
            let mut node = node(kind, node_ranges);
            if depth > 0 {
                for r in &mut node.ranges[..node_ranges.len()] {
                    r.target += first_number[depth - 1];
                }
            }
            let key = PolicyNodeKey::new(slot, table, peer, first_number[depth] + i as u32);
            out.push((key, node));
        }
    }
    out
}
