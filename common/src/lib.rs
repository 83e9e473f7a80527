//! The ABI shared by Bulkhead's eBPF programs and its userspace controller
//! (version 9 judges Service traffic on its backend: the SERVICES and
//! SERVICE_CT maps, the service mark in `Config::flags`
//! ([`CONFIG_SERVICE_MARK_SHIFT`]), [`CT_SERVICE`], [`Verdict::Deferred`],
//! [`HOOK_TRANSLATED`] and [`DropReason::ServiceUnjudged`]; version 8 flags identities that are the local node's or pods'
//! addresses ([`IdentityValue::flags`]: ingress from the node is always
//! allowed, ICMP errors are checked against their sender) and adds
//! [`DropReason::IcmpErrorSender`]; version 7 adds host routing: `Config::flags` with
//! [`CONFIG_F_HOST_ROUTING`] and the DELIVER program array `from_pod`
//! tail-calls through; version 6 the audit views of `ENDPOINTS_V6`;
//! version 5 adds flow accounting: FLOWS_0/FLOWS_1, FLOW_CONFIG, FLOW_STATS
//! and the EVENTS ring buffer; since version 4 the policy maps are the hash
//! of B-tree roots `POLICY_V4` and the array of their other nodes
//! `POLICY_NODES`; `POLICY_V3`, which kept every node in the hash, and the
//! LPM trie `POLICY` of version 2 are retired).
//!
//! Rules of this crate (see ARCHITECTURE.md): `#[repr(C)]`, explicit padding,
//! no `bool`, addresses as `[u8; 16]` with IPv4 mapped into IPv6, multi-byte
//! fields of LPM keys in network byte order (the trie compares bits from the
//! first byte on). Every type has its size and offsets asserted. The layout is
//! append-only; an incompatible change renames the map with a version suffix.
//! Numbers of drop reasons, verdicts and event kinds are never reused.
//!
//! # Atomic policy swap: slots and the revision
//!
//! Every policy map (IDENTITIES, POLICY_V4, ENDPOINTS) is keyed by a `slot`
//! (0 or 1) first; the array POLICY_NODES is split into one index range per
//! slot ([`policy_node_index`]). CONFIG holds one [`Config`] whose `revision` selects the
//! active slot: `revision % 2` ([`active_slot`]). A program reads CONFIG once
//! when it starts and does every lookup of that packet in that slot, so no
//! packet sees half a policy (host routing's `deliver`, tail-called by
//! `from_pod`, keeps `from_pod`'s revision). Userspace makes a new policy live by:
//!
//! 1. writing the whole new image into the inactive slot (`(revision + 1) % 2`),
//!    deleting that slot's stale entries;
//! 2. writing `revision + 1` to CONFIG (one map update: the switch);
//! 3. waiting a grace period (programs that read the old revision may still
//!    run) before the now-inactive slot may be rewritten by the next update.
//!
//! Conntrack entries remember the revision each side (egress of the source,
//! ingress of the destination) was last checked under; a packet that finds an
//! older one re-checks that side under the active slot, so a policy change
//! applies to existing connections at once.
#![no_std]
#![cfg_attr(not(feature = "user"), forbid(unsafe_code))]

use core::mem::{offset_of, size_of};

/// Version of this ABI; map names gain a suffix when it changes incompatibly.
pub const ABI_VERSION: u32 = 11;

/// Number of policy slots (double buffering).
pub const SLOTS: u8 = 2;

/// The slot the programs read under `revision`.
pub const fn active_slot(revision: u64) -> u8 {
    (revision % SLOTS as u64) as u8
}

/// Identity number meaning "any peer" in a policy key. Never assigned to an
/// address class.
pub const IDENTITY_ANY: u32 = 0;

/// Protocol number meaning "any protocol" in a policy key (IP protocol 0 is
/// the IPv6 hop-by-hop header, never a transport protocol).
pub const PROTO_ANY: u8 = 0;
/// IANA protocol number of ICMP.
pub const PROTO_ICMP: u8 = 1;
/// IANA protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// IANA protocol number of UDP.
pub const PROTO_UDP: u8 = 17;
/// IANA protocol number of ICMPv6.
pub const PROTO_ICMPV6: u8 = 58;
/// IANA protocol number of SCTP.
pub const PROTO_SCTP: u8 = 132;

// ---------------------------------------------------------------------------
// Capacities (max_entries of each map). Userspace checks that an image fits
// one slot before writing it: the other slot holds the live policy.

/// IDENTITIES: prefixes per slot (the map holds two slots).
pub const IDENTITIES_SLOT_CAPACITY: u32 = 65_536;
/// IDENTITIES: map capacity.
pub const IDENTITIES_MAX: u32 = IDENTITIES_SLOT_CAPACITY * SLOTS as u32;
/// IDENTITIES_EXACT: capacity (ABI v11; it holds the full-length entries of
/// the same image, so the same per-slot bound applies).
pub const IDENTITIES_EXACT_MAX: u32 = IDENTITIES_MAX;
/// POLICY_V4: tree roots (one per (table, peer)) per slot. The 10k-pod ×
/// 1k-policy benchmark needs up to 37,463 POLICY_V3 nodes (roots and others)
/// per node of 110 pods (ABI v2 needed 111,190 LPM entries there); this
/// leaves 3.5× headroom. The map is not preallocated (`BPF_F_NO_PREALLOC`):
/// memory follows the roots in use, ~250 bytes each.
pub const POLICY_SLOT_CAPACITY: u32 = 131_072;
/// POLICY_V4: map capacity.
pub const POLICY_MAX: u32 = POLICY_SLOT_CAPACITY * SLOTS as u32;
/// POLICY_NODES: non-root nodes per slot (a power of two: the programs mask
/// a node number with `POLICY_NODES_SLOT_CAPACITY - 1`, so a lookup never
/// leaves its slot's range). Only peers with more than `POLICY_FANOUT`
/// ranges have them (the 100k-rule dataplane benchmark: ~6,500). An array is
/// preallocated: 2 × 32,768 × 200 bytes = 13 MB.
pub const POLICY_NODES_SLOT_CAPACITY: u32 = 32_768;
/// POLICY_NODES: map capacity.
pub const POLICY_NODES_MAX: u32 = POLICY_NODES_SLOT_CAPACITY * SLOTS as u32;
const _: () = assert!(POLICY_NODES_SLOT_CAPACITY.is_power_of_two());
/// ENDPOINTS: local pods per slot.
pub const ENDPOINTS_SLOT_CAPACITY: u32 = 4_096;
/// ENDPOINTS: map capacity.
pub const ENDPOINTS_MAX: u32 = ENDPOINTS_SLOT_CAPACITY * SLOTS as u32;
/// CT: connections (LRU: the least recently used entry is evicted when full).
pub const CT_MAX: u32 = 262_144;
/// FRAGS: fragmented datagrams in flight (LRU).
pub const FRAGS_MAX: u32 = 8_192;
/// DROPS: counter slots (indexed by [`DropReason`]; room to grow).
pub const DROPS_MAX: u32 = 64;

// ---------------------------------------------------------------------------
// IDENTITIES: (slot, address) → identity.

/// Key data of the address → identity LPM trie. IPv4 addresses are mapped
/// into IPv6 (`::ffff:a.b.c.d`); the slot byte comes first, so an IPv6 `/n`
/// has prefix length `8 + n` and an IPv4 `/n` has `8 + 96 + n`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdentityKey {
    /// Policy slot (0 or 1).
    pub slot: u8,
    /// The address, IPv4-mapped when IPv4.
    pub addr: [u8; 16],
}
const _: () = assert!(size_of::<IdentityKey>() == 17);
const _: () = assert!(offset_of!(IdentityKey, slot) == 0);
const _: () = assert!(offset_of!(IdentityKey, addr) == 1);

/// Prefix length of an IDENTITIES lookup (slot + full address).
pub const IDENTITY_PREFIX_FULL: u32 = 8 + 128;

/// Name of the exact-address companion of IDENTITIES (ABI v11).
pub const IDENTITIES_EXACT_MAP: &str = "IDENTITIES_EXACT";

/// Whether an identity entry of prefix length `len` is stored in
/// IDENTITIES_EXACT (one address: a pod, a node, a `/32` or `/128` block)
/// rather than the IDENTITIES trie. The programs look an address up there
/// first and fall back to the trie: an exact entry is always the longest
/// match, and a hash lookup costs the same however many prefixes (a wide
/// CIDR over the pod range, say) the trie holds above it.
pub const fn identity_is_exact(len: u32) -> bool {
    len == IDENTITY_PREFIX_FULL
}
/// Prefix length bits taken by the slot in every slotted LPM key.
pub const SLOT_PREFIX: u32 = 8;

/// Value of the address → identity LPM trie.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IdentityValue {
    /// The identity (address class) the prefix belongs to; never `IDENTITY_ANY`.
    pub identity: u32,
    /// `IDENTITY_F_*` bits (zero before ABI v8, where this was reserved).
    pub flags: u32,
}
const _: () = assert!(size_of::<IdentityValue>() == 8);
const _: () = assert!(offset_of!(IdentityValue, identity) == 0);
const _: () = assert!(offset_of!(IdentityValue, flags) == 4);

/// Identity flag: the prefix is an address of the local node (the node's
/// own network namespace). Kubernetes always allows a pod's ingress from
/// its node (kubelet's probes come from there): the ingress side of such a
/// connection is allowed with [`RULE_NODE`], in every view.
pub const IDENTITY_F_NODE: u32 = 1;
/// Identity flag: the prefix is a pod's address. No pod but a connection's
/// own peer may send an ICMP error about it ([`DropReason::IcmpErrorSender`]).
pub const IDENTITY_F_POD: u32 = 2;

impl IdentityValue {
    /// What an address without an entry is: `IDENTITY_ANY`, no flags (only
    /// any-peer rules match it).
    pub const NONE: IdentityValue = IdentityValue {
        identity: IDENTITY_ANY,
        flags: 0,
    };

    /// An address of the local node ([`IDENTITY_F_NODE`]).
    #[inline(always)]
    pub const fn is_node(&self) -> bool {
        self.flags & IDENTITY_F_NODE != 0
    }

    /// A pod's address ([`IDENTITY_F_POD`]).
    #[inline(always)]
    pub const fn is_pod(&self) -> bool {
        self.flags & IDENTITY_F_POD != 0
    }
}

// ---------------------------------------------------------------------------
// POLICY_V4: (slot, table, peer identity) → B-tree root, and POLICY_NODES:
// index → the trees' other nodes; both hold nodes of (protocol, port)
// ranges.
//
// One rule table's grants to one peer (an identity, or `IDENTITY_ANY` for
// rules without peers) are a sorted list of disjoint ranges over the
// *policy point* `proto << 16 | port` ([`policy_point`]), each with the
// deciding rule. The compiler folds the protocol precedence into it: the
// peer's any-protocol rule fills every gap around its per-protocol ranges,
// so one search answers "this protocol and port, else any protocol".
//
// The list is stored as a B-tree of fixed nodes of up to
// [`POLICY_FANOUT`] ranges: the root in the exact-match hash POLICY_V4
// (key node number 0), every other node in the array POLICY_NODES, in the
// slot's index range. An inner node's ranges cover its children's ranges
// (first of the first to last of the last) and `target` is the child's
// node number: its index in POLICY_NODES relative to the slot's range
// ([`policy_node_index`]); a leaf's `target` is the rule. A lookup per peer
// is: hash lookup of the root, search in the node (a fixed 4-step binary
// search), follow the child (an array access the verifier inlines: no
// helper call, no hashing), until a leaf. Depth is log16 of the *peer's*
// range count, never of the rule count: 1 node for up to 16 ranges, 2 for
// up to 256, 3 for 4,096; [`POLICY_DEPTH_MAX`] bounds it for any content.
// ABI v3 (`POLICY_V3`) kept every node in the hash, each level a hash
// lookup.

/// Ranges per policy tree node.
pub const POLICY_FANOUT: usize = 16;
/// Most nodes on a root-to-leaf path of a policy tree: 16^6 = 2^24 ranges, as
/// many as there are policy points, so every possible list fits.
pub const POLICY_DEPTH_MAX: usize = 6;
/// Largest policy point (protocol 255, port 65535).
pub const POLICY_POINT_MAX: u32 = 0x00ff_ffff;
/// [`PolicyNode::kind`]: a leaf (`target` is a rule).
pub const POLICY_NODE_LEAF: u8 = 1;
/// [`PolicyNode::kind`]: an inner node (`target` is a child node number,
/// see [`policy_node_index`]).
pub const POLICY_NODE_INNER: u8 = 2;

/// The POLICY_NODES index of node number `node` (an inner range's `target`)
/// in `slot`: the slot's range starts at `slot * POLICY_NODES_SLOT_CAPACITY`,
/// and the number is masked into the range (userspace never writes a larger
/// one; the mask keeps every lookup within its slot).
pub const fn policy_node_index(slot: u8, node: u32) -> u32 {
    slot as u32 * POLICY_NODES_SLOT_CAPACITY + (node & (POLICY_NODES_SLOT_CAPACITY - 1))
}

/// The policy point of a protocol and (destination) port: ranges of
/// the policy trees are over these, ordered by protocol, then port.
pub const fn policy_point(proto: u8, port: u16) -> u32 {
    (proto as u32) << 16 | port as u32
}

/// Key of POLICY_V4 (a hash; fields in host byte order). Its layout is
/// that of ABI v3's POLICY_V3 key; only roots are stored, so `node` is 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyNodeKey {
    /// Policy slot (0 or 1).
    pub slot: u8,
    /// Padding; zero.
    pub _pad: [u8; 3],
    /// Rule table number.
    pub table: u32,
    /// Peer identity; `IDENTITY_ANY` for rules that match every peer.
    pub identity: u32,
    /// 0 (the root). In the compiler's trees (before placement into
    /// POLICY_V4 and POLICY_NODES) the node number within the peer's tree.
    pub node: u32,
}
const _: () = assert!(size_of::<PolicyNodeKey>() == 16);
const _: () = assert!(offset_of!(PolicyNodeKey, slot) == 0);
const _: () = assert!(offset_of!(PolicyNodeKey, table) == 4);
const _: () = assert!(offset_of!(PolicyNodeKey, identity) == 8);
const _: () = assert!(offset_of!(PolicyNodeKey, node) == 12);

impl PolicyNodeKey {
    /// The key of node `node` of (`slot`, `table`, `identity`).
    pub const fn new(slot: u8, table: u32, identity: u32, node: u32) -> Self {
        Self {
            slot,
            _pad: [0; 3],
            table,
            identity,
            node,
        }
    }
}

/// One range of a [`PolicyNode`]: policy points `first..=last`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PolicyRange {
    /// First policy point.
    pub first: u32,
    /// Last policy point.
    pub last: u32,
    /// Leaf: the deciding rule. Inner node: the child's node number (its
    /// POLICY_NODES index within the slot's range).
    pub target: u32,
}
const _: () = assert!(size_of::<PolicyRange>() == 12);
const _: () = assert!(offset_of!(PolicyRange, first) == 0);
const _: () = assert!(offset_of!(PolicyRange, last) == 4);
const _: () = assert!(offset_of!(PolicyRange, target) == 8);

/// Value of POLICY_V4 (a root) and of POLICY_NODES (any other node): one
/// B-tree node. A POLICY_NODES entry that no tree reaches is unused (zeroed
/// when userspace frees it).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PolicyNode {
    /// Ranges in use (1..=`POLICY_FANOUT`), the first `count` of `ranges`.
    pub count: u8,
    /// `POLICY_NODE_LEAF` or `POLICY_NODE_INNER`.
    pub kind: u8,
    /// Padding; zero.
    pub _pad: [u8; 2],
    /// Reserved (verdict flags: audit, deny tiers); zero.
    pub _reserved: u32,
    /// Disjoint ranges sorted by `first`; unused ones zero.
    pub ranges: [PolicyRange; POLICY_FANOUT],
}
const _: () = assert!(size_of::<PolicyNode>() == 200);
const _: () = assert!(offset_of!(PolicyNode, count) == 0);
const _: () = assert!(offset_of!(PolicyNode, kind) == 1);
const _: () = assert!(offset_of!(PolicyNode, ranges) == 8);
// The kernel's binary search takes exactly 4 steps.
const _: () = assert!(POLICY_FANOUT == 16);

impl PolicyNode {
    /// The range holding `point` (`None` if none does). A lower bound on
    /// `last` in 4 fixed steps of 8, 4, 2, 1 (`POLICY_FANOUT` is 16).
    #[inline(always)]
    pub fn search(&self, point: u32) -> Option<&PolicyRange> {
        let n = self.count as usize;
        let mut i = 0usize;
        let mut step = POLICY_FANOUT / 2;
        while step > 0 {
            let j = i + step;
            // verifier: `& (POLICY_FANOUT - 1)` bounds the index for the
            // verifier (and removes Rust's bounds check); j - 1 < 16 anyway.
            if j <= n && self.ranges[(j - 1) & (POLICY_FANOUT - 1)].last < point {
                i = j;
            }
            step /= 2;
        }
        let r = &self.ranges[i & (POLICY_FANOUT - 1)];
        if i < n && r.first <= point && point <= r.last {
            Some(r)
        } else {
            None
        }
    }
}

// ---------------------------------------------------------------------------
// POLICY (ABI v2, retired): (slot, table, identity, proto, port) → rule.
//
// The LPM trie of ABI v2, kept so its layout stays documented (a pinned v2
// map may still exist on a node being upgraded); no program uses it. Its
// lookup cost grew with the entry count (about log2(entries) trie nodes).

/// Key data of the retired (ABI v2) policy LPM trie `POLICY`. Lookups use the full length
/// ([`POLICY_PREFIX_FULL`]); entries use shorter prefixes as wildcards: any
/// protocol ([`POLICY_PREFIX_ANY_PROTO`]), any port of one protocol
/// ([`POLICY_PREFIX_PROTO`]), and aligned port blocks in between.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyKey {
    /// Policy slot (0 or 1).
    pub slot: u8,
    /// Rule table number, big-endian.
    pub table: [u8; 4],
    /// Peer identity, big-endian; `IDENTITY_ANY` for rules that match every peer.
    pub identity: [u8; 4],
    /// IP protocol number.
    pub proto: u8,
    /// Destination port, big-endian (0 for protocols without ports).
    pub port: [u8; 2],
}
const _: () = assert!(size_of::<PolicyKey>() == 12);
const _: () = assert!(offset_of!(PolicyKey, slot) == 0);
const _: () = assert!(offset_of!(PolicyKey, table) == 1);
const _: () = assert!(offset_of!(PolicyKey, identity) == 5);
const _: () = assert!(offset_of!(PolicyKey, proto) == 9);
const _: () = assert!(offset_of!(PolicyKey, port) == 10);

/// Prefix length of a policy entry that matches any protocol and port.
pub const POLICY_PREFIX_ANY_PROTO: u32 = 72;
/// Prefix length of a policy entry that matches every port of one protocol.
pub const POLICY_PREFIX_PROTO: u32 = 80;
/// Prefix length of a policy entry for one exact port (and of every lookup).
pub const POLICY_PREFIX_FULL: u32 = 96;

impl PolicyKey {
    /// Builds a key from host-order fields.
    pub const fn new(slot: u8, table: u32, identity: u32, proto: u8, port: u16) -> Self {
        Self {
            slot,
            table: table.to_be_bytes(),
            identity: identity.to_be_bytes(),
            proto,
            port: port.to_be_bytes(),
        }
    }
}

/// Value of the retired (ABI v2) policy LPM trie: the rule that allows the match.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PolicyValue {
    /// Index of the deciding rule in the compiled rule registry (for flow
    /// logs and explain).
    pub rule: u32,
    /// Reserved for verdict flags (audit, deny tiers); zero.
    pub _reserved: u32,
}
const _: () = assert!(size_of::<PolicyValue>() == 8);

/// Rule number recorded when a side allowed without a rule (the pod is not
/// isolated in that direction, or the address is not a local pod).
pub const RULE_NONE: u32 = u32::MAX;

/// Rule number recorded when the ingress side was allowed because the peer
/// is the pod's own node ([`IDENTITY_F_NODE`]), which no policy can deny.
pub const RULE_NODE: u32 = u32::MAX - 1;

/// Bit of a policy tree's target (and of a recorded rule) saying the rule
/// denies: a cluster-admin `Deny` (or NetworkPolicy's isolation after an
/// Admin `Pass`). The compiler folds the tiers into the trees, so a lookup
/// answers "allowed by rule R" or "denied by rule R" in one descent. Rule
/// ids stay below this bit; [`RULE_NONE`] and [`RULE_NODE`] are not rules.
pub const RULE_F_DENY: u32 = 1 << 31;

/// Whether a policy tree's target (or a recorded rule) denies.
#[inline(always)]
pub const fn rule_denies(rule: u32) -> bool {
    rule & RULE_F_DENY != 0 && rule < RULE_NODE
}

/// The rule id of a target or recorded rule, without [`RULE_F_DENY`]
/// ([`RULE_NONE`] and [`RULE_NODE`] unchanged).
#[inline(always)]
pub const fn rule_id(rule: u32) -> u32 {
    if rule >= RULE_NODE {
        rule
    } else {
        rule & !RULE_F_DENY
    }
}

// ---------------------------------------------------------------------------
// ENDPOINTS: (ifindex, slot) → endpoint.

/// Endpoint flag: ingress is isolated (some policy selects the pod for
/// ingress), so only what its ingress table allows may enter.
pub const ENDPOINT_ISOLATED_INGRESS: u32 = 1 << 0;
/// Endpoint flag: egress is isolated.
pub const ENDPOINT_ISOLATED_EGRESS: u32 = 1 << 1;
/// Endpoint flag: `ipv4` is set; IPv4 leaving the pod must come from it.
/// Without it, IPv4 leaving the pod is spoofed.
pub const ENDPOINT_HAS_IPV4: u32 = 1 << 2;
/// Endpoint flag: `ipv6` is set; IPv6 leaving the pod must come from it.
/// Without it, IPv6 leaving the pod is spoofed.
pub const ENDPOINT_HAS_IPV6: u32 = 1 << 3;
/// Endpoint flag: `mac` is set; frames leaving the pod must carry it as
/// their source MAC.
pub const ENDPOINT_HAS_MAC: u32 = 1 << 4;
/// Endpoint flag (ABI v6): policies in audit mode select the pod for
/// ingress; `audit_ingress_table` is its ingress table as if they were
/// enforced, checked beside the enforced verdict (never deciding it).
pub const ENDPOINT_AUDIT_INGRESS: u32 = 1 << 5;
/// Endpoint flag (ABI v6): policies in audit mode select the pod for
/// egress; `audit_egress_table` is checked beside the enforced verdict.
pub const ENDPOINT_AUDIT_EGRESS: u32 = 1 << 6;

/// Name of the ENDPOINTS map in this ABI (v6 grew the value by the audit
/// tables; a map pinned under the old name is retired, not reused).
pub const ENDPOINTS_MAP: &str = "ENDPOINTS_V6";

/// Key of ENDPOINTS.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EndpointKey {
    /// ifindex of the pod's host-side veth (where the programs attach).
    pub ifindex: u32,
    /// Policy slot (0 or 1).
    pub slot: u8,
    /// Padding; zero.
    pub _pad: [u8; 3],
}
const _: () = assert!(size_of::<EndpointKey>() == 8);
const _: () = assert!(offset_of!(EndpointKey, ifindex) == 0);
const _: () = assert!(offset_of!(EndpointKey, slot) == 4);

impl EndpointKey {
    /// The key of `ifindex` in `slot`.
    pub const fn new(ifindex: u32, slot: u8) -> Self {
        Self {
            ifindex,
            slot,
            _pad: [0; 3],
        }
    }
}

/// Value of ENDPOINTS: a local pod's table bindings and addresses.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EndpointInfo {
    /// Rule table for traffic entering the pod (if `ENDPOINT_ISOLATED_INGRESS`).
    pub ingress_table: u32,
    /// Rule table for traffic leaving the pod (if `ENDPOINT_ISOLATED_EGRESS`).
    pub egress_table: u32,
    /// `ENDPOINT_*` bits.
    pub flags: u32,
    /// Reserved (endpoint id for flow events); zero.
    pub _reserved: u32,
    /// The pod's MAC (source of every frame it sends).
    pub mac: [u8; 6],
    /// Padding; zero.
    pub _pad: [u8; 2],
    /// The pod's IPv4 address, mapped into IPv6 (if `ENDPOINT_HAS_IPV4`).
    pub ipv4: [u8; 16],
    /// The pod's IPv6 address (if `ENDPOINT_HAS_IPV6`).
    pub ipv6: [u8; 16],
    /// Audit view of ingress (if `ENDPOINT_AUDIT_INGRESS`): the table of
    /// the enforced and the audit-mode policies selecting the pod together.
    pub audit_ingress_table: u32,
    /// Audit view of egress (if `ENDPOINT_AUDIT_EGRESS`).
    pub audit_egress_table: u32,
}
const _: () = assert!(size_of::<EndpointInfo>() == 64);
const _: () = assert!(offset_of!(EndpointInfo, ingress_table) == 0);
const _: () = assert!(offset_of!(EndpointInfo, egress_table) == 4);
const _: () = assert!(offset_of!(EndpointInfo, flags) == 8);
const _: () = assert!(offset_of!(EndpointInfo, mac) == 16);
const _: () = assert!(offset_of!(EndpointInfo, ipv4) == 24);
const _: () = assert!(offset_of!(EndpointInfo, ipv6) == 40);
const _: () = assert!(offset_of!(EndpointInfo, audit_ingress_table) == 56);
const _: () = assert!(offset_of!(EndpointInfo, audit_egress_table) == 60);

// ---------------------------------------------------------------------------
// CONFIG: index 0 → the revision.

/// Value of CONFIG (a one-entry array, index 0).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Config {
    /// Policy revision; the active slot is `revision % 2`. Only ever grows.
    pub revision: u64,
    /// Mode flags (`CONFIG_F_*`); unknown bits are ignored.
    pub flags: u64,
}
const _: () = assert!(size_of::<Config>() == 16);
const _: () = assert!(offset_of!(Config, revision) == 0);
const _: () = assert!(offset_of!(Config, flags) == 8);

/// CONFIG flag: host routing. `from_pod` delivers a packet whose route
/// (the node's FIB, resolved neighbour) leads to another pod's host veth
/// straight into that pod (`bpf_redirect_peer`), judging the destination
/// pod's ingress side itself, as `to_pod` would; the node's IP stack
/// (forwarding, netfilter, the host veth's egress) is skipped. Anything
/// else (another route, an unresolved neighbour, TTL expiring, a
/// fragment, an ICMP error, an oversized packet, the reply of a
/// connection whose original packets took the stack: see
/// [`CT_HOST_ROUTED`]) takes the stack as without the flag.
pub const CONFIG_F_HOST_ROUTING: u64 = 1;

/// Where [`Config::flags`] holds the service mark: its upper 32 bits (the
/// `CONFIG_F_*` bits are the lower ones; a program of an earlier ABI
/// ignores them, and 0 there turns Service judging off).
///
/// The service mark is the one `skb->mark` bit `from_pod` sets on the
/// first packet of a connection to a Service frontend (see
/// [`ServiceKey`]) that it leaves for the node to translate; the program
/// that sees the packet after kube-proxy's DNAT (`to_pod` of a local
/// backend, `leave_node` on the node's way out) finds the bit, judges the
/// client's egress on the backend, and clears it. The bit must be one no
/// other component of the node uses (kube-proxy uses 0x4000 and 0x8000).
pub const CONFIG_SERVICE_MARK_SHIFT: u32 = 32;

/// The service mark in `flags` (0: Service traffic is judged as sent).
#[inline(always)]
pub const fn config_service_mark(flags: u64) -> u32 {
    (flags >> CONFIG_SERVICE_MARK_SHIFT) as u32
}

// ---------------------------------------------------------------------------
// CT: conntrack.

/// Key of CT: the 5-tuple of a connection's original direction (the packet
/// that created it), both families (IPv4 mapped into IPv6). Ports are host
/// order. ICMP/ICMPv6 echo uses the identifier as a port: a request has
/// `sport = id, dport = 0`, a reply `sport = 0, dport = id`, so a reply is
/// the reverse tuple of its request. Protocols without ports use 0, 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CtKey {
    /// Source address of the original direction.
    pub src: [u8; 16],
    /// Destination address of the original direction.
    pub dst: [u8; 16],
    /// Source port (echo: identifier of a request), host order.
    pub sport: u16,
    /// Destination port (echo: identifier of a reply), host order.
    pub dport: u16,
    /// IP protocol.
    pub proto: u8,
    /// Padding; zero.
    pub _pad: [u8; 3],
}
const _: () = assert!(size_of::<CtKey>() == 40);
const _: () = assert!(offset_of!(CtKey, src) == 0);
const _: () = assert!(offset_of!(CtKey, dst) == 16);
const _: () = assert!(offset_of!(CtKey, sport) == 32);
const _: () = assert!(offset_of!(CtKey, dport) == 34);
const _: () = assert!(offset_of!(CtKey, proto) == 36);

impl CtKey {
    /// The tuple of the opposite direction.
    pub const fn reversed(&self) -> Self {
        Self {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            proto: self.proto,
            _pad: [0; 3],
        }
    }
}

/// Revision meaning "this side was never checked" in a [`CtEntry`] (e.g. the
/// destination is not a local pod, or its hook has not seen the flow yet).
pub const CT_UNCHECKED: u64 = u64::MAX;

/// CT entry flag: a packet of the reply direction was seen.
pub const CT_SEEN_REPLY: u8 = 1 << 0;
/// CT flag: host routing delivered a packet of the original direction
/// (`deliver`). Only then are replies host-routed too: a connection the
/// node's stack carried (one a kube-proxy DNAT rewrote on its way, say)
/// keeps its replies on the stack, where netfilter's conntrack undoes the
/// NAT.
pub const CT_HOST_ROUTED: u8 = 1 << 1;
/// CT flag: the connection was opened to a Service frontend (the key's
/// destination) and the node translated it to the backend in
/// [`SERVICE_CT`](ServiceBackend): the client's egress side is judged on
/// that backend, and re-judged on it when the revision changes.
pub const CT_SERVICE: u8 = 1 << 2;
/// CT flag: the connection is a Service connection as it reaches its
/// backend on this node after the node masqueraded it (the key's source
/// is the node's address and port; the client is in SERVICE_MASQ): the
/// backend's ingress side is judged on that client, not on the node, and
/// re-judged on it when the revision changes.
pub const CT_MASQUERADED: u8 = 1 << 3;

/// Value of CT.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CtEntry {
    /// Revision under which the egress policy of the original source was
    /// last checked ([`CT_UNCHECKED`]: never, on this node).
    pub egress_revision: u64,
    /// Revision under which the ingress policy of the original destination
    /// was last checked ([`CT_UNCHECKED`]: never).
    pub ingress_revision: u64,
    /// CLOCK_MONOTONIC ns of the last packet, at tick resolution
    /// (`bpf_ktime_get_coarse_ns()`; since ABI v5, `bpf_ktime_get_ns()`
    /// before).
    pub last_seen_ns: u64,
    /// Rule that allowed the egress side ([`RULE_NONE`]: no rule needed).
    pub egress_rule: u32,
    /// Rule that allowed the ingress side ([`RULE_NONE`]: no rule needed).
    pub ingress_rule: u32,
    /// TCP flags seen in the original direction (OR of all packets).
    pub tcp_flags_orig: u8,
    /// TCP flags seen in the reply direction (OR of all packets).
    pub tcp_flags_reply: u8,
    /// `CT_*` flags.
    pub flags: u8,
    /// The egress side's audit verdict as of `egress_revision`
    /// (`FLOW_F_AUDITED`, `FLOW_F_AUDIT_DENY`; ABI v6). Its own byte, so
    /// the two sides' checks (possibly on two CPUs) never share a store.
    pub audit_egress: u8,
    /// The ingress side's audit verdict as of `ingress_revision`.
    pub audit_ingress: u8,
    /// Padding; zero.
    pub _pad: [u8; 3],
}
const _: () = assert!(size_of::<CtEntry>() == 40);
const _: () = assert!(offset_of!(CtEntry, egress_revision) == 0);
const _: () = assert!(offset_of!(CtEntry, ingress_revision) == 8);
const _: () = assert!(offset_of!(CtEntry, last_seen_ns) == 16);
const _: () = assert!(offset_of!(CtEntry, egress_rule) == 24);
const _: () = assert!(offset_of!(CtEntry, ingress_rule) == 28);
const _: () = assert!(offset_of!(CtEntry, tcp_flags_orig) == 32);
const _: () = assert!(offset_of!(CtEntry, flags) == 34);
const _: () = assert!(offset_of!(CtEntry, audit_egress) == 35);
const _: () = assert!(offset_of!(CtEntry, audit_ingress) == 36);

/// TCP flag bits as in the header's flags byte.
pub mod tcp_flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// ACK.
    pub const ACK: u8 = 0x10;
}

// ---------------------------------------------------------------------------
// SERVICES and SERVICE_CT: Service frontends and translated connections.

/// Key of SERVICES: one Service frontend (an address and port kube-proxy
/// translates: a ClusterIP, a node address with a NodePort, an external
/// or load-balancer address) in one slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    /// Policy slot.
    pub slot: u8,
    /// IP protocol.
    pub proto: u8,
    /// Port, host order.
    pub port: u16,
    /// Address (IPv4 mapped into IPv6).
    pub addr: [u8; 16],
}
const _: () = assert!(size_of::<ServiceKey>() == 20);
const _: () = assert!(offset_of!(ServiceKey, addr) == 4);

/// Value of SERVICES: reserved flags (0). Presence is what counts.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ServiceValue {
    /// Reserved; zero.
    pub flags: u32,
}
const _: () = assert!(size_of::<ServiceValue>() == 4);

/// Frontends per slot.
pub const SERVICES_SLOT_CAPACITY: u32 = 65_536;
/// Capacity of SERVICES (both slots).
pub const SERVICES_MAX: u32 = SERVICES_SLOT_CAPACITY * SLOTS as u32;
/// Capacity of SERVICE_CT (LRU).
pub const SERVICE_CT_MAX: u32 = 65_536;
/// SERVICE_PENDING_BY_CLIENT: capacity. A record lives from a new Service
/// connection's first packet leaving its pod until the node delivers it
/// translated (microseconds; up to seconds while the backend's neighbour
/// is resolved): room for bursts of new connections far beyond that.
pub const SERVICE_PENDING_MAX: u32 = 16_384;
/// Capacity of SERVICE_MASQ (LRU): one record per masqueraded Service
/// connection to a backend on this node, as many as SERVICE_CT holds.
pub const SERVICE_MASQ_MAX: u32 = SERVICE_CT_MAX;

/// Value of SERVICE_CT, keyed by a connection's original tuple (client to
/// frontend, a [`CtKey`]): the backend address and port the node
/// translated it to, as the program after the translation saw them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ServiceBackend {
    /// The backend's address (IPv4 mapped into IPv6).
    pub addr: [u8; 16],
    /// The backend's port, host order.
    pub port: u16,
    /// 1 when the client's egress allowed the connection to the backend,
    /// 0 when it denied it.
    pub allowed: u8,
    /// Padding; zero.
    pub _pad: u8,
}
const _: () = assert!(size_of::<ServiceBackend>() == 20);

// ---------------------------------------------------------------------------
// FRAGS: fragment tracking.

/// Hook number in a [`FragKey`]: `from_pod` (TC ingress of the host veth).
pub const HOOK_FROM_POD: u8 = 1;
/// Hook number in a [`FragKey`]: `to_pod` (TC egress of the host veth).
pub const HOOK_TO_POD: u8 = 2;

/// Key of FRAGS: one fragmented datagram as seen at one hook of one device.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FragKey {
    /// Source address (IPv4 mapped).
    pub src: [u8; 16],
    /// Destination address (IPv4 mapped).
    pub dst: [u8; 16],
    /// IP identification (IPv4: 16 bits; IPv6: the fragment header's 32).
    pub id: u32,
    /// ifindex of the device whose program allowed the first fragment.
    pub ifindex: u32,
    /// IP protocol of the fragmented payload.
    pub proto: u8,
    /// `HOOK_*` of the program that allowed the first fragment.
    pub hook: u8,
    /// Padding; zero.
    pub _pad: [u8; 2],
}
const _: () = assert!(size_of::<FragKey>() == 44);
const _: () = assert!(offset_of!(FragKey, id) == 32);
const _: () = assert!(offset_of!(FragKey, ifindex) == 36);
const _: () = assert!(offset_of!(FragKey, proto) == 40);
const _: () = assert!(offset_of!(FragKey, hook) == 41);

/// Value of FRAGS: the first fragment was allowed.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FragEntry {
    /// `bpf_ktime_get_ns()` when the first fragment passed.
    pub first_seen_ns: u64,
    /// Reserved; zero.
    pub _reserved: u64,
}
const _: () = assert!(size_of::<FragEntry>() == 16);

// ---------------------------------------------------------------------------
// Drop reasons, verdicts, events.

/// Why a packet was dropped: the index of its DROPS counter. Numbers are
/// stable and never reused.
///
/// verifier: one byte, like [`Verdict`], so the programs'
/// `Result<Verdict, DropReason>` is a tag and one payload byte that both
/// variants define (a wider payload left bytes undefined in the `Ok` case,
/// which LLVM may store from a clobbered register; the verifier rejects
/// that).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// A new connection that no rule allows (egress of the source at
    /// `from_pod`/XDP, ingress of the destination at `to_pod`).
    PolicyDenied = 1,
    /// Headers cut short or inconsistent (IP total length, IPv6 extension
    /// header lengths, ...).
    Malformed = 2,
    /// An existing connection that the current revision no longer allows.
    PolicyRevoked = 3,
    /// Source IP of a packet leaving a pod is not the pod's.
    SpoofedIp = 4,
    /// Source MAC of a frame leaving a pod is not the pod's.
    SpoofedMac = 5,
    /// VLAN-tagged frame (pods do not tag).
    VlanTagged = 6,
    /// IPv4 header length below 20 bytes or beyond the total length.
    BadIpv4Ihl = 7,
    /// TCP data offset below 5 words or beyond the packet.
    BadTcpDataOffset = 8,
    /// More than [`IPV6_EXT_HEADERS_MAX`] IPv6 extension headers.
    Ipv6ExtHeaders = 9,
    /// First fragment that does not hold the whole L4 header.
    FragmentTooShort = 10,
    /// Non-first fragment overlapping the L4 header.
    FragmentOverlap = 11,
    /// Non-first fragment without an allowed first fragment.
    FragmentUntracked = 12,
    /// An ICMP error about a tracked connection sent by a pod that is not
    /// the connection's peer (only the peer, the node and routers outside
    /// the pods may send one).
    IcmpErrorSender = 13,
    /// A packet carrying the service mark (deferred by `from_pod` to be
    /// judged after the node's translation) whose hand-off record was not
    /// its own (the node queued it, e.g. for neighbour resolution): it
    /// cannot be judged, so it is dropped; the client's retransmission is
    /// judged.
    ServiceUnjudged = 14,
    /// A program the packet's path needs (a tail call: `open_*`,
    /// `to_backend`) is missing: the dataplane is loaded only in part.
    TailCallFailed = 15,
}

/// Every drop reason, for iteration (exporters, tests).
pub const DROP_REASONS: [DropReason; 15] = [
    DropReason::PolicyDenied,
    DropReason::Malformed,
    DropReason::PolicyRevoked,
    DropReason::SpoofedIp,
    DropReason::SpoofedMac,
    DropReason::VlanTagged,
    DropReason::BadIpv4Ihl,
    DropReason::BadTcpDataOffset,
    DropReason::Ipv6ExtHeaders,
    DropReason::FragmentTooShort,
    DropReason::FragmentOverlap,
    DropReason::FragmentUntracked,
    DropReason::IcmpErrorSender,
    DropReason::ServiceUnjudged,
    DropReason::TailCallFailed,
];
const _: () = assert!((DropReason::TailCallFailed as u32) < DROPS_MAX);

impl DropReason {
    /// A stable snake_case name (metrics labels, logs).
    pub const fn name(self) -> &'static str {
        match self {
            Self::PolicyDenied => "policy_denied",
            Self::Malformed => "malformed",
            Self::PolicyRevoked => "policy_revoked",
            Self::SpoofedIp => "spoofed_ip",
            Self::SpoofedMac => "spoofed_mac",
            Self::VlanTagged => "vlan_tagged",
            Self::BadIpv4Ihl => "bad_ipv4_ihl",
            Self::BadTcpDataOffset => "bad_tcp_data_offset",
            Self::Ipv6ExtHeaders => "ipv6_ext_headers",
            Self::FragmentTooShort => "fragment_too_short",
            Self::FragmentOverlap => "fragment_overlap",
            Self::FragmentUntracked => "fragment_untracked",
            Self::IcmpErrorSender => "icmp_error_sender",
            Self::ServiceUnjudged => "service_unjudged",
            Self::TailCallFailed => "tail_call_failed",
        }
    }
}

/// Most IPv6 extension headers walked before the L4 header; more is dropped
/// ([`DropReason::Ipv6ExtHeaders`]).
pub const IPV6_EXT_HEADERS_MAX: usize = 8;

/// Why a packet passed (flow events; stable numbers).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// A new connection allowed by policy (or not enforced).
    Allowed = 1,
    /// A packet of an existing connection (either direction).
    Established = 2,
    /// An ICMP error about an existing connection.
    Related = 3,
    /// Dropped (see [`DropReason`]).
    Dropped = 4,
    /// Passed without policy: ARP, neighbour discovery, non-IP.
    Bypass = 5,
    /// The first packet of a connection to a Service frontend, passed to
    /// the node for translation with the service mark: judged after it.
    Deferred = 6,
}

/// Kinds of flow events (the ring buffer record comes with flow logs;
/// stable numbers).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A flow's first packet dropped since the last drain (one per flow,
    /// endpoint side and interval: denied floods do not flood the ring).
    Drop = 1,
    /// A new connection was allowed and tracked.
    NewFlow = 2,
    /// A flow table delta the table could not take (table full): a record,
    /// not a notification.
    FlowRecord = 3,
}

// ---------------------------------------------------------------------------
// Flow accounting (ABI v5): FLOWS_0/FLOWS_1, FLOW_CONFIG, FLOW_STATS, EVENTS.
//
// Every packet a TC program judges (and every packet XDP drops) is counted in
// a flow table entry: one connection as seen at one endpoint. There are two
// tables; FLOW_CONFIG's `slot` says which one the programs write. Userspace
// drains losslessly: it flips `slot`, waits until no program still runs with
// the old value (an RCU grace period, forced by updating a map-in-map), then
// reads and deletes every entry of the now idle table. Each drained entry is
// the flow's delta over one interval; userspace aggregates deltas into flow
// records. When an insert fails (table full), the entry travels as an
// `EventKind::FlowRecord` event in the EVENTS ring buffer instead; if that
// fails too, the record is lost and counted (packets and bytes included).
// Accounting identity, exact once both tables are drained and the ring read:
//   FlowStat::EntriesCreated + FallbackSent + FallbackLost
//     == entries drained + fallback events read + FallbackLost
//   FlowStat::PacketsAccounted
//     == packets in drained entries and fallback events + LostPackets

/// Side of a flow, relative to the endpoint of the entry: the endpoint's pod
/// opened the connection (egress) or its peer did (ingress).
pub const FLOW_SIDE_EGRESS: u8 = 1;
/// See [`FLOW_SIDE_EGRESS`].
pub const FLOW_SIDE_INGRESS: u8 = 2;

/// Key of FLOWS_0/FLOWS_1: one connection at one endpoint.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// The connection's original-direction tuple (as CT keys it; for a
    /// packet that never became a connection, the tuple as sent).
    pub tuple: CtKey,
    /// ifindex of the endpoint's host-side veth.
    pub ifindex: u32,
    /// `FLOW_SIDE_*`.
    pub side: u8,
    /// Padding; zero.
    pub _pad: [u8; 3],
}
const _: () = assert!(size_of::<FlowKey>() == 48);
const _: () = assert!(offset_of!(FlowKey, ifindex) == 40);
const _: () = assert!(offset_of!(FlowKey, side) == 44);

/// [`FlowValue::flags`]: the entry's first packet opened the connection at
/// this endpoint (a new flow, not a continuation from an earlier interval).
pub const FLOW_F_NEW: u8 = 1 << 0;
/// [`FlowValue::flags`]: a packet was dropped by `xdp_prefilter`.
pub const FLOW_F_XDP: u8 = 1 << 1;
/// [`FlowValue::flags`]: the packets passed without enforcement (learn mode
/// or an endpoint isolated in neither direction).
pub const FLOW_F_UNENFORCED: u8 = 1 << 2;
/// [`FlowValue::flags`] (ABI v6): policies in audit mode cover this side;
/// its packets were also judged by the audit view.
pub const FLOW_F_AUDITED: u8 = 1 << 3;
/// [`FlowValue::flags`] (ABI v6): the audit view would deny this side
/// (the packets passed: audit never drops).
pub const FLOW_F_AUDIT_DENY: u8 = 1 << 4;

/// Value of FLOWS_0/FLOWS_1: what one interval saw of the flow.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowValue {
    /// CLOCK_MONOTONIC ns of the first packet, at tick resolution
    /// (`bpf_ktime_get_coarse_ns()`: the fine clock costs a fifth of the
    /// established path; a flow's times need no better than a tick).
    pub first_seen_ns: u64,
    /// CLOCK_MONOTONIC ns of the last packet, at tick resolution.
    pub last_seen_ns: u64,
    /// Passed packets in the original direction.
    pub packets_orig: u64,
    /// Passed bytes (the packet length as the program sees it, Ethernet
    /// header included) in the original direction.
    pub bytes_orig: u64,
    /// Passed packets in the reply direction.
    pub packets_reply: u64,
    /// Passed bytes in the reply direction.
    pub bytes_reply: u64,
    /// Dropped packets (either direction).
    pub dropped_packets: u64,
    /// Dropped bytes.
    pub dropped_bytes: u64,
    /// Policy revision of the last verdict (rule numbers belong to it).
    pub revision: u64,
    /// Rule that allowed this side ([`RULE_NONE`]: none needed); for a policy
    /// drop, the denying rule ([`RULE_F_DENY`] set) or [`RULE_NONE`] (no rule
    /// allows). Userspace reads a drop's rule only when [`rule_denies`].
    pub rule: u32,
    /// Last drop's `DropReason` number; 0: nothing dropped.
    pub drop_reason: u8,
    /// TCP flags seen in the original direction (OR).
    pub tcp_flags_orig: u8,
    /// TCP flags seen in the reply direction (OR).
    pub tcp_flags_reply: u8,
    /// `FLOW_F_*`.
    pub flags: u8,
}
const _: () = assert!(size_of::<FlowValue>() == 80);
const _: () = assert!(offset_of!(FlowValue, packets_orig) == 16);
const _: () = assert!(offset_of!(FlowValue, dropped_packets) == 48);
const _: () = assert!(offset_of!(FlowValue, revision) == 64);
const _: () = assert!(offset_of!(FlowValue, rule) == 72);
const _: () = assert!(offset_of!(FlowValue, drop_reason) == 76);
const _: () = assert!(offset_of!(FlowValue, flags) == 79);

/// A record of the EVENTS ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowEvent {
    /// The flow.
    pub key: FlowKey,
    /// For `NewFlow`/`Drop`: the packet's contribution; for `FlowRecord`:
    /// the whole delta that the flow table could not take.
    pub value: FlowValue,
    /// [`EventKind`] number.
    pub kind: u8,
    /// `HOOK_*` of the program (3: `xdp_prefilter`).
    pub hook: u8,
    /// Padding; zero.
    pub _pad: [u8; 6],
}
const _: () = assert!(size_of::<FlowEvent>() == 136);
const _: () = assert!(offset_of!(FlowEvent, value) == 48);
const _: () = assert!(offset_of!(FlowEvent, kind) == 128);

/// Hook number of `xdp_prefilter` in a [`FlowEvent`].
pub const HOOK_XDP: u8 = 3;
/// Hook number in a [`FlowEvent`] of a client's egress judged after the
/// node translated a Service connection (`to_pod` of the backend or
/// `leave_node`).
pub const HOOK_TRANSLATED: u8 = 4;

/// [`FlowConfig::flags`]: count packets in the flow tables.
pub const FLOW_CONFIG_ACCOUNTING: u32 = 1 << 0;
/// [`FlowConfig::flags`]: send an `EventKind::NewFlow` event per new flow.
pub const FLOW_CONFIG_EVENTS_NEW: u32 = 1 << 1;
/// [`FlowConfig::flags`]: send an `EventKind::Drop` event for the first
/// dropped packet of each flow entry (per flow, endpoint side and interval
/// between drains; the flow record counts every drop).
pub const FLOW_CONFIG_EVENTS_DROP: u32 = 1 << 2;

/// Value of FLOW_CONFIG (a one-entry array). All zero (as loaded): nothing
/// is accounted; the agent sets it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowConfig {
    /// The flow table the programs write: 0 → FLOWS_0, 1 → FLOWS_1.
    pub slot: u32,
    /// `FLOW_CONFIG_*`.
    pub flags: u32,
}
const _: () = assert!(size_of::<FlowConfig>() == 8);

/// Entries of each flow table (FLOWS_0, FLOWS_1), preallocated (~200 bytes
/// an entry with the hash table's own overhead: ~13 MiB each).
pub const FLOWS_CAPACITY: u32 = 65_536;
/// Size of the EVENTS ring buffer in bytes (a power of two pages).
pub const EVENTS_RING_BYTES: u32 = 4 << 20;
/// Slots of FLOW_STATS.
pub const FLOW_STATS_MAX: u32 = 16;

/// Index of a FLOW_STATS counter (per-CPU `u64`). Stable numbers, never
/// reused.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FlowStat {
    /// Packets counted into a flow (table or fallback or lost).
    PacketsAccounted = 0,
    /// Bytes counted into a flow.
    BytesAccounted = 1,
    /// Flow table entries created.
    EntriesCreated = 2,
    /// Inserts refused because the table was full (the record went to the
    /// ring instead, or was lost).
    TableFull = 3,
    /// Inserts that failed for another reason than a full table or a
    /// concurrent insert of the same key.
    InsertFailed = 4,
    /// `FlowRecord` events sent (records the table could not take).
    FallbackSent = 5,
    /// Records lost: neither the table nor the ring took them.
    FallbackLost = 6,
    /// Packets in lost records.
    LostPackets = 7,
    /// Bytes in lost records.
    LostBytes = 8,
    /// `NewFlow`/`Drop` notification events sent.
    EventsSent = 9,
    /// Notification events lost (ring full); their packets are still in the
    /// flow table, only the live notification is missing.
    EventsLost = 10,
}

/// Every flow counter, for iteration.
pub const FLOW_STATS: [FlowStat; 11] = [
    FlowStat::PacketsAccounted,
    FlowStat::BytesAccounted,
    FlowStat::EntriesCreated,
    FlowStat::TableFull,
    FlowStat::InsertFailed,
    FlowStat::FallbackSent,
    FlowStat::FallbackLost,
    FlowStat::LostPackets,
    FlowStat::LostBytes,
    FlowStat::EventsSent,
    FlowStat::EventsLost,
];
const _: () = assert!((FlowStat::EventsLost as u32) < FLOW_STATS_MAX);

impl FlowStat {
    /// A stable snake_case name (metrics labels).
    pub const fn name(self) -> &'static str {
        match self {
            Self::PacketsAccounted => "packets_accounted",
            Self::BytesAccounted => "bytes_accounted",
            Self::EntriesCreated => "entries_created",
            Self::TableFull => "table_full",
            Self::InsertFailed => "insert_failed",
            Self::FallbackSent => "fallback_sent",
            Self::FallbackLost => "fallback_lost",
            Self::LostPackets => "lost_packets",
            Self::LostBytes => "lost_bytes",
            Self::EventsSent => "events_sent",
            Self::EventsLost => "events_lost",
        }
    }
}

/// TC verdict: pass (`TC_ACT_OK`; `TCX_PASS` under tcx).
pub const TC_PASS: i32 = 0;
/// TC verdict: drop (`TC_ACT_SHOT`; `TCX_DROP` under tcx).
pub const TC_DROP: i32 = 2;
/// XDP verdict: drop.
pub const XDP_DROP: u32 = 1;
/// XDP verdict: pass.
pub const XDP_PASS: u32 = 2;

#[cfg(feature = "user")]
mod user {
    // SAFETY: all types are #[repr(C)], Copy, with explicit padding and no
    // invalid bit patterns.
    unsafe impl aya::Pod for super::IdentityKey {}
    unsafe impl aya::Pod for super::IdentityValue {}
    unsafe impl aya::Pod for super::PolicyKey {}
    unsafe impl aya::Pod for super::PolicyValue {}
    unsafe impl aya::Pod for super::PolicyNodeKey {}
    unsafe impl aya::Pod for super::PolicyNode {}
    unsafe impl aya::Pod for super::EndpointKey {}
    unsafe impl aya::Pod for super::EndpointInfo {}
    unsafe impl aya::Pod for super::Config {}
    unsafe impl aya::Pod for super::CtKey {}
    unsafe impl aya::Pod for super::ServiceKey {}
    unsafe impl aya::Pod for super::ServiceValue {}
    unsafe impl aya::Pod for super::ServiceBackend {}
    unsafe impl aya::Pod for super::CtEntry {}
    unsafe impl aya::Pod for super::FragKey {}
    unsafe impl aya::Pod for super::FragEntry {}
    unsafe impl aya::Pod for super::FlowKey {}
    unsafe impl aya::Pod for super::FlowValue {}
    unsafe impl aya::Pod for super::FlowEvent {}
    unsafe impl aya::Pod for super::FlowConfig {}
}
