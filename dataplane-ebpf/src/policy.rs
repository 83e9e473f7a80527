//! Policy lookup: does a side (egress of the source, ingress of the
//! destination) allow a tuple? Per side at most two tree descents (the
//! peer's identity, then any peer), each one POLICY_V4 hash lookup of the
//! root and, as deep as that peer's range list needs (1 node up to 16
//! ranges, 2 up to 256, ..., bounded by `POLICY_DEPTH_MAX`), inlined
//! POLICY_NODES array accesses: the cost never depends on the number of
//! rules, peers or tables.
//!
//! Mirrors the userspace reference evaluator over the same tables; the two
//! must agree (the BPF_PROG_TEST_RUN differential test compares them).

use aya_ebpf::maps::lpm_trie::Key;
use bulkhead_common::{
    CtKey, ENDPOINT_AUDIT_EGRESS, ENDPOINT_AUDIT_INGRESS, ENDPOINT_ISOLATED_EGRESS,
    ENDPOINT_ISOLATED_INGRESS, EndpointInfo, FLOW_F_AUDIT_DENY, FLOW_F_AUDITED, FLOW_SIDE_EGRESS,
    FLOW_SIDE_INGRESS, IDENTITY_ANY, IDENTITY_PREFIX_FULL, IdentityKey, IdentityValue,
    POLICY_DEPTH_MAX, POLICY_NODE_LEAF, PROTO_SCTP, PROTO_TCP, PROTO_UDP, PolicyNodeKey, RULE_NODE,
    RULE_NONE, policy_node_index, policy_point, rule_denies,
};

use crate::maps::{IDENTITIES, IDENTITIES_EXACT, POLICY_NODES, POLICY_V4};

/// Which side of a connection a program checks.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Egress policy of the original source.
    Egress,
    /// Ingress policy of the original destination.
    Ingress,
}

impl Side {
    /// The `FLOW_SIDE_*` of a flow key at the endpoint this side belongs to.
    #[inline(always)]
    pub fn flow_side(self) -> u8 {
        match self {
            Side::Egress => FLOW_SIDE_EGRESS,
            Side::Ingress => FLOW_SIDE_INGRESS,
        }
    }
}

/// The identity of `addr` in `slot` and its `IDENTITY_F_*` flags
/// ([`IdentityValue::NONE`] when it has none): the exact entry of the
/// address if there is one (the longest match by definition), else the
/// trie's longest prefix.
#[inline(always)]
pub fn identity(slot: u8, addr: [u8; 16]) -> IdentityValue {
    let exact = IdentityKey { slot, addr };
    // SAFETY: the value is copied out within this run (RCU); userspace
    // writes only the inactive slot.
    // verifier: passed by reference on purpose. By value (as clippy
    // suggests) the key is copied once more, and `from_pod` verifies
    // ~927k instructions instead of ~722k (the limit is 1M;
    // `ebpf_load.rs` holds every program under 850k).
    #[allow(clippy::needless_borrows_for_generic_args)]
    if let Some(v) = unsafe { IDENTITIES_EXACT.get(&exact) } {
        return *v;
    }
    let key = Key::new(IDENTITY_PREFIX_FULL, exact);
    IDENTITIES.get(&key).copied().unwrap_or(IdentityValue::NONE)
}

/// What [`allowed`] returns when no range matches. Not a rule and never
/// recorded: `check_side` turns it into a denial by isolation.
// verifier: a sentinel in a plain u32, not an `Option<u32>`: LLVM computed
// `rule_denies` on the payload of a `None` (an unwritten register) before
// testing the tag, and the verifier rejects reading it ("R3 !read_ok").
const RULE_MISS: u32 = u32::MAX - 2;

/// The target of `table`'s range holding `point` (`policy_point(proto,
/// port)`) for exactly `peer` (one tree descent), or [`RULE_MISS`].
#[inline(always)]
fn descend(slot: u8, table: u32, peer: u32, point: u32) -> u32 {
    // verifier: map keys live on the stack and the lookup helper reads all
    // their bytes, so every byte must be written: `PolicyNodeKey` has
    // explicit, zeroed padding.
    let key = PolicyNodeKey::new(slot, table, peer, 0);
    // SAFETY: the value is only read, within this run (RCU); userspace
    // writes only the inactive slot.
    let Some(mut node) = (unsafe { POLICY_V4.get(key) }) else {
        return RULE_MISS;
    };
    // verifier: a constant trip count, so the loop is bounded.
    for _ in 0..POLICY_DEPTH_MAX {
        let Some(range) = node.search(point) else {
            return RULE_MISS;
        };
        if node.kind == POLICY_NODE_LEAF {
            return range.target;
        }
        // An array lookup: inlined by the verifier (bounds check and an
        // address computation), no helper call. The index stays in the
        // slot's range (`policy_node_index` masks the node number).
        node = match POLICY_NODES.get(policy_node_index(slot, range.target)) {
            Some(n) => n,
            None => return RULE_MISS,
        };
    }
    RULE_MISS
}

/// Returns the target of `table` that decides traffic with
/// `peer_identity`, `proto` and (destination) `port`: a rule (with
/// `RULE_F_DENY` if it denies; `RULE_NONE` where a table NetworkPolicy
/// does not isolate leaves it open), or [`RULE_MISS`] if nothing matches
/// (denied: NetworkPolicy isolates).
///
/// Within one peer, the tree holds the protocol's own ranges with the
/// peer's any-protocol rule filled into every gap (the compiler resolves
/// that precedence, and folds the cluster-admin tiers in). Across peers
/// the order is:
#[inline(always)]
pub fn allowed(slot: u8, table: u32, peer_identity: u32, proto: u8, port: u16) -> u32 {
    let point = policy_point(proto, port);
    // 1. A rule naming the peer's own identity (pod selectors, ipBlocks).
    if peer_identity != IDENTITY_ANY {
        let rule = descend(slot, table, peer_identity, point);
        if rule != RULE_MISS {
            return rule;
        }
    }
    // 2. A rule for any peer (`IDENTITY_ANY`: a rule without peers).
    descend(slot, table, IDENTITY_ANY, point)
    // 3. Nothing matched: RULE_MISS (the caller drops for isolated pods).
}

/// Whether a target [`allowed`] returned lets the traffic through.
#[inline(always)]
fn allows(rule: u32) -> bool {
    rule != RULE_MISS && !rule_denies(rule)
}

/// The policy port of an original-direction tuple: the destination port for
/// protocols with ports, else 0 (echo identifiers are not ports).
#[inline(always)]
pub fn policy_port(tuple: &CtKey) -> u16 {
    match tuple.proto {
        PROTO_TCP | PROTO_UDP | PROTO_SCTP => tuple.dport,
        _ => 0,
    }
}

/// What checking one side found.
#[derive(Clone, Copy)]
pub struct Judged {
    /// The enforced rule that allowed the side (`RULE_NONE` when the pod
    /// is not isolated that way).
    pub rule: u32,
    /// The audit view's verdict as `FLOW_F_*` bits: 0 (no audit-mode
    /// policy covers the side), `FLOW_F_AUDITED` (it would allow), or
    /// `FLOW_F_AUDITED | FLOW_F_AUDIT_DENY` (it would deny).
    pub audit: u8,
}

/// Checks one side of the connection whose original direction is `orig`
/// for the endpoint `ep` (the pod that side belongs to) in `slot`:
/// `Ok(Judged)`, or `Err(rule)` when the enforced policy denies it: the
/// denying rule with `RULE_F_DENY`, or `RULE_NONE` (isolated, no rule
/// allows).
///
/// The audit view (enforced plus audit-mode policies, compiled into their
/// own table) is checked beside the enforced one and never decides: it
/// only says whether the side would be denied if the audit-mode policies
/// were enforced. One identity lookup serves both. `audit` false skips the
/// audit view (XDP, which only drops).
#[inline(always)]
pub fn check_side(
    slot: u8,
    ep: &EndpointInfo,
    side: Side,
    orig: &CtKey,
    port: u16,
    audit: bool,
) -> Result<Judged, u32> {
    check_side_as(slot, ep, side, orig, port, audit, || None)
}

/// [`check_side`], except that ingress from the node is judged on the
/// address `stand_in` names, when it names one (the client of a
/// masqueraded Service connection): still one identity per policy walk.
#[inline(always)]
pub fn check_side_as(
    slot: u8,
    ep: &EndpointInfo,
    side: Side,
    orig: &CtKey,
    port: u16,
    audit: bool,
    stand_in: impl FnOnce() -> Option<[u8; 16]>,
) -> Result<Judged, u32> {
    let (isolated, table, audited, audit_table, peer) = match side {
        Side::Egress => (
            ep.flags & ENDPOINT_ISOLATED_EGRESS != 0,
            ep.egress_table,
            audit && ep.flags & ENDPOINT_AUDIT_EGRESS != 0,
            ep.audit_egress_table,
            orig.dst,
        ),
        Side::Ingress => (
            ep.flags & ENDPOINT_ISOLATED_INGRESS != 0,
            ep.ingress_table,
            audit && ep.flags & ENDPOINT_AUDIT_INGRESS != 0,
            ep.audit_ingress_table,
            orig.src,
        ),
    };
    if !isolated && !audited {
        return Ok(Judged {
            rule: RULE_NONE,
            audit: 0,
        });
    }
    let mut peer = identity(slot, peer);
    if side == Side::Ingress
        && peer.is_node()
        && let Some(addr) = stand_in()
    {
        peer = identity(slot, addr);
    }
    // Ingress from the pod's own node is always allowed, in every view.
    let from_node = side == Side::Ingress && peer.is_node();
    let id = peer.identity;
    let rule = if !isolated {
        RULE_NONE
    } else if from_node {
        RULE_NODE
    } else {
        let rule = allowed(slot, table, id, orig.proto, port);
        if rule == RULE_MISS {
            return Err(RULE_NONE);
        }
        if rule_denies(rule) {
            return Err(rule);
        }
        rule
    };
    let audit = if !audited {
        0
    } else if from_node || allows(allowed(slot, audit_table, id, orig.proto, port)) {
        FLOW_F_AUDITED
    } else {
        FLOW_F_AUDITED | FLOW_F_AUDIT_DENY
    };
    Ok(Judged { rule, audit })
}
