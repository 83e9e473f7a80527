//! Service traffic, judged on the backend it reaches.
//!
//! kube-proxy translates a connection to a Service frontend (ClusterIP,
//! NodePort, external address) in the node's stack, after `from_pod` saw
//! the packet leave the pod: there the destination is the frontend, which
//! is no pod's. So `from_pod` does not judge the first packet of a new
//! connection to a frontend (SERVICES): it records the packet's original
//! tuple and client in SERVICE_PENDING_BY_CLIENT (by the client's address
//! and port, which the translation keeps unless it masquerades) and in
//! this CPU's SERVICE_PENDING (for a masqueraded one) ([`defer`]), sets
//! the service mark and passes it to the node. The first program to see
//! the translated packet takes the record ([`take`]) and judges the client's egress on
//! the backend (the translated destination) with the client's own address
//! ([`judge_client`]): `to_pod` of a backend on this node (which then
//! judges the backend's ingress on the packet as it arrives, masqueraded
//! or not, like any packet), or `leave_node` on the node's way out for a
//! backend elsewhere (whose node judges its ingress). When both allow it,
//! the original tuple gets a CT entry flagged `CT_SERVICE` and SERVICE_CT
//! the backend ([`opened`]): the client's later packets and replies are
//! established at its own programs, and a new revision re-judges their
//! egress on that backend (`conntrack.rs`).
//!
//! Masqueraded (kube-proxy masquerades a pod reaching itself through its
//! Service, and every client under `masqueradeAll`): the backend's ingress
//! would see the node's address, which is always let in. So `to_backend`
//! records the client for the translated tuple ([`record_masquerade`]) and
//! the backend's ingress is judged on that client when the connection
//! opens and when it is re-judged ([`masq_client`], `CT_MASQUERADED`).
//! Only for a backend on this node: a remote backend's node sees this
//! node's address and judges it as such.
//!
//! Not deferred: fragments (judged as sent: their datagram is reassembled
//! and maybe refragmented by the node, so no hand-off can follow them), and
//! everything when the service mark is 0.

// verifier: keys and values are passed by reference on purpose: they point
// into the scratch or pending maps, so no 40-byte copy lands on the stack.
#![allow(clippy::needless_borrows_for_generic_args)]

use aya_ebpf::bindings::BPF_ANY;
use bulkhead_common::{
    CT_SERVICE, CtEntry, CtKey, DropReason, EndpointInfo, FLOW_SIDE_EGRESS, HOOK_TRANSLATED,
    RULE_NONE, ServiceBackend, ServiceKey,
};

use crate::{
    maps::{CT, SERVICE_CT, SERVICE_MASQ, SERVICE_PENDING, SERVICE_PENDING_BY_CLIENT, SERVICES},
    parse::{Parsed, copy_into},
    policy::{Judged, Side, check_side, identity, policy_port},
    programs::{Active, endpoint},
};

/// SERVICE_PENDING's record: a deferred packet on its way through the node.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Pending {
    /// The connection's original tuple (client to frontend).
    pub orig: CtKey,
    /// The revision `from_pod` deferred it under.
    pub revision: u64,
    /// `bpf_ktime_get_coarse_ns()` when it was deferred.
    pub deferred_ns: u64,
    /// ifindex of the client's host veth.
    pub ifindex: u32,
    /// 1 from `defer` until a program takes the record.
    pub armed: u32,
}

/// SERVICE_PENDING_BY_CLIENT's key: the client's end of a deferred packet,
/// which the node's translation keeps unless it masquerades.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PendingKey {
    /// The client's address (IPv4 mapped into IPv6).
    pub addr: [u8; 16],
    /// The client's port, host order.
    pub port: u16,
    /// IP protocol.
    pub proto: u8,
    /// Padding; zero.
    pub _pad: u8,
}

impl PendingKey {
    /// The source end of `tuple`.
    #[inline(always)]
    fn source(tuple: &CtKey) -> Self {
        Self {
            addr: tuple.src,
            port: tuple.sport,
            proto: tuple.proto,
            _pad: 0,
        }
    }
}

/// SERVICE_MASQ's value: the client of a masqueraded Service connection.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct MasqClient {
    /// The client's address (IPv4 mapped into IPv6).
    pub addr: [u8; 16],
}

/// Whether `tuple` (a packet's, as sent) goes to a Service frontend.
#[inline(always)]
pub fn is_frontend(slot: u8, tuple: &CtKey) -> bool {
    let key = ServiceKey {
        slot,
        proto: tuple.proto,
        port: tuple.dport,
        addr: tuple.dst,
    };
    // SAFETY: only tested for presence.
    unsafe { SERVICES.get(&key) }.is_some()
}

/// Records the packet in `p` (a new connection's first packet, leaving
/// the pod on `p.flow.ifindex`) for the program after the translation.
#[inline(always)]
pub fn defer(revision: u64, p: &mut Parsed) {
    let now = p.flow.now();
    let Some(rec) = SERVICE_PENDING.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: per-CPU, and programs do not nest on one CPU.
    let rec = unsafe { &mut *rec };
    copy_into(&p.key.tuple, &mut rec.orig);
    rec.revision = revision;
    rec.deferred_ns = now;
    rec.ifindex = p.flow.ifindex;
    rec.armed = 1;
    // Full (LRU evicts) or failed: the per-CPU record still serves a
    // packet the node forwards at once.
    let _ = SERVICE_PENDING_BY_CLIENT.insert(&PendingKey::source(&rec.orig), rec, BPF_ANY as u64);
}

/// How long a deferred packet may take through the node to the program
/// after the translation when it goes through in one softirq
/// (microseconds): a per-CPU record older than this is another packet's
/// that never arrived.
const PENDING_MAX_NS: u64 = 20_000_000;

/// How long a deferred packet may wait in the node, found by its client's
/// end: the neighbour queue holds it for at most the kernel's three
/// solicitations a second apart before dropping it.
const PENDING_QUEUED_MAX_NS: u64 = 10_000_000_000;

/// Takes the hand-off record for the translated packet in `p` (parsed; a
/// tracked flow, `p.flow.now` read). First by the packet's source
/// (SERVICE_PENDING_BY_CLIENT: the node kept the client's address and
/// port): a recent record is copied into this CPU's SERVICE_PENDING and
/// deleted from the hash (a stale one only deleted). Otherwise this CPU's
/// record: `None` unless it is armed, recent, and fits the packet: the
/// same protocol, and either the same source address and port or a source
/// that is the node's own address (it masqueraded). Disarms it either way.
#[inline(always)]
pub fn take(slot: u8, p: &Parsed) -> Option<&'static Pending> {
    let rec = SERVICE_PENDING.get_ptr_mut(0)?;
    // SAFETY: per-CPU, and programs do not nest on one CPU.
    let rec = unsafe { &mut *rec };
    let t = &p.key.tuple;
    let key = PendingKey::source(t);
    if let Some(found) = SERVICE_PENDING_BY_CLIENT.get_ptr(&key) {
        // SAFETY: a map value, read before it is deleted.
        let deferred_ns = unsafe { (*found).deferred_ns };
        if p.flow.now.wrapping_sub(deferred_ns) <= PENDING_QUEUED_MAX_NS {
            // Copied before the delete: a deleted element may be reused at
            // once.
            // SAFETY: as above.
            *rec = unsafe { *found };
            rec.armed = 0;
            let _ = SERVICE_PENDING_BY_CLIENT.remove(&key);
            return Some(rec);
        }
        // Stale: its packet never arrived; this CPU's record may fit.
        let _ = SERVICE_PENDING_BY_CLIENT.remove(&key);
    }
    if rec.armed == 0 {
        return None;
    }
    rec.armed = 0;
    let recent = p.flow.now.wrapping_sub(rec.deferred_ns) <= PENDING_MAX_NS;
    let kept = rec.orig.src == t.src && rec.orig.sport == t.sport;
    let fits = recent
        && rec.orig.proto == t.proto
        && (kept || (rec.orig.src != t.src && identity(slot, t.src).is_node()));
    fits.then_some(rec)
}

/// Judges the client's egress for the translated packet in `p` (its
/// destination is the backend): on the tuple from the client's own address
/// and port to the backend (`p.xlate`), under the active revision. Records
/// the backend in SERVICE_CT either way. On a denial, `p` is made the
/// client's flow record (see [`account_as_client`]).
#[inline(always)]
pub fn judge_client(
    at: &Active,
    pend: &Pending,
    p: &mut Parsed,
) -> Result<(EndpointInfo, Judged), DropReason> {
    let client = endpoint(pend.ifindex, at.slot).ok_or(DropReason::ServiceUnjudged)?;
    copy_into(&pend.orig, &mut p.xlate);
    p.xlate.dst = p.key.tuple.dst;
    p.xlate.dport = p.key.tuple.dport;
    let judged = check_side(
        at.slot,
        &client,
        Side::Egress,
        &p.xlate,
        policy_port(&p.xlate),
        true,
    );
    let backend = ServiceBackend {
        addr: p.xlate.dst,
        port: p.xlate.dport,
        allowed: u8::from(judged.is_ok()),
        _pad: 0,
    };
    let _ = SERVICE_CT.insert(&pend.orig, &backend, u64::from(BPF_ANY));
    match judged {
        Ok(j) => Ok((client, j)),
        Err(rule) => {
            p.flow.rule = rule;
            account_as_client(at, pend, &client, p);
            Err(DropReason::PolicyDenied)
        }
    }
}

/// Records the client of `pend` for the translated packet in `p` (a tuple
/// to a backend on this node, the client's egress allowed) when the node
/// masqueraded it: its source is no longer the client's.
#[inline(always)]
pub fn record_masquerade(pend: &Pending, p: &Parsed) {
    if pend.orig.src == p.key.tuple.src && pend.orig.sport == p.key.tuple.sport {
        return;
    }
    let client = MasqClient {
        addr: pend.orig.src,
    };
    let _ = SERVICE_MASQ.insert(&p.key.tuple, &client, u64::from(BPF_ANY));
}

/// The client of the masqueraded Service connection whose tuple at the
/// backend is `tuple` (SERVICE_MASQ), if it is one.
#[inline(always)]
pub fn masq_client(tuple: &CtKey) -> Option<[u8; 16]> {
    // SAFETY: copied at once.
    unsafe { SERVICE_MASQ.get(tuple) }.map(|c| c.addr)
}

/// Points `xlate` (a copy of the masqueraded connection `orig`'s tuple,
/// `CT_MASQUERADED`; a `Parsed` tuple) at its client, which the backend's
/// ingress is judged on. `false` when there is no record (evicted): the
/// caller judges it denied.
#[inline(always)]
pub fn masq_client_into(orig: &CtKey, xlate: &mut CtKey) -> bool {
    // SAFETY: copied at once.
    let Some(client) = (unsafe { SERVICE_MASQ.get(orig) }) else {
        return false;
    };
    xlate.src = client.addr;
    true
}

/// The connection is open both ways: records the original tuple in CT
/// (`CT_SERVICE`, egress judged under `at.revision` with `judged`) and
/// makes `p` the client's flow record of its new connection.
#[inline(always)]
pub fn opened(at: &Active, pend: &Pending, client: &EndpointInfo, judged: Judged, p: &mut Parsed) {
    let now = p.flow.now();
    let entry = CtEntry {
        egress_revision: at.revision,
        // No program judges a frontend's ingress: mark it current.
        ingress_revision: at.revision,
        last_seen_ns: now,
        egress_rule: judged.rule,
        ingress_rule: RULE_NONE,
        tcp_flags_orig: p.tcp_flags,
        tcp_flags_reply: 0,
        flags: CT_SERVICE,
        audit_egress: judged.audit,
        audit_ingress: 0,
        _pad: [0; 3],
    };
    let _ = CT.insert(&pend.orig, &entry, u64::from(BPF_ANY));
    account_as_client(at, pend, client, p);
    p.flow.rule = judged.rule;
    p.flow.audit = judged.audit;
    p.flow.new = true;
}

/// Makes `p` the client's flow record: its endpoint, the egress side, the
/// original tuple (the frontend; SERVICE_CT names the backend).
#[inline(always)]
fn account_as_client(at: &Active, pend: &Pending, client: &EndpointInfo, p: &mut Parsed) {
    p.flow
        .start(pend.ifindex, HOOK_TRANSLATED, at.revision, client);
    p.flow.parsed(FLOW_SIDE_EGRESS);
    copy_into(&pend.orig, &mut p.key.tuple);
}

/// Points `xlate` (a copy of the Service connection `orig`'s original
/// tuple, `CT_SERVICE`; a `Parsed` tuple) at the backend SERVICE_CT
/// recorded, which the client's egress is judged on. `false` when there is
/// no record (evicted): the caller judges it denied, so the entry goes and
/// the client's next packet is deferred and judged afresh.
#[inline(always)]
pub fn backend_into(orig: &CtKey, xlate: &mut CtKey) -> bool {
    // SAFETY: copied at once.
    let Some(backend) = (unsafe { SERVICE_CT.get(orig) }).copied() else {
        return false;
    };
    xlate.dst = backend.addr;
    xlate.dport = backend.port;
    true
}
