//! Conntrack: replies and related ICMP errors of allowed connections pass,
//! and a policy change applies to existing connections at once.
//!
//! A connection is keyed by the tuple of its original direction (`CtKey`).
//! Each side remembers the revision it was last checked under: egress of the
//! original source (checked by that pod's programs: `from_pod` for original
//! packets, `to_pod` for replies) and ingress of the original destination
//! (`to_pod` for original packets, `from_pod` for replies). When a packet
//! finds its side checked under an older revision (or never), the side is
//! checked again in the active slot: still allowed → the revision is
//! updated; denied → the entry is deleted and the packet dropped, so a
//! revoked connection stops on its next packet, in either direction.

// verifier: keys are passed by reference on purpose: `&p.tuple` points into
// the scratch map, so no 40-byte copy lands on the 512-byte stack.
#![allow(clippy::needless_borrows_for_generic_args)]

use aya_ebpf::{bindings::BPF_NOEXIST, helpers::bpf_ktime_get_ns};
use bulkhead_common::{
    CT_SEEN_REPLY, CT_UNCHECKED, CtEntry, CtKey, DropReason, EndpointInfo, Verdict,
};

use crate::{
    maps::CT,
    parse::Parsed,
    policy::{Side, check_side, policy_port},
};

/// Whether a packet goes the connection's original way or back.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dir {
    Original,
    Reply,
}

/// Which program is asking.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// TC ingress of the host veth: the packet leaves the pod.
    FromPod,
    /// TC egress of the host veth: the packet enters the pod.
    ToPod,
}

impl Hook {
    /// The side a new connection is checked on at this hook.
    #[inline(always)]
    pub fn new_side(self) -> Side {
        match self {
            Hook::FromPod => Side::Egress,
            Hook::ToPod => Side::Ingress,
        }
    }
}

/// Whether CT holds the connection of `key` in either direction (read-only).
#[inline(always)]
pub fn known(key: &CtKey) -> bool {
    CT.get_ptr(key).is_some() || CT.get_ptr(&key.reversed()).is_some()
}

/// Tracks a packet of a `Kind::Flow`: established (either direction, side
/// re-checked if stale) or new (checked, then recorded).
#[inline(always)]
pub fn track(
    revision: u64,
    slot: u8,
    ep: &EndpointInfo,
    hook: Hook,
    p: &Parsed,
) -> Result<Verdict, DropReason> {
    // SAFETY: the helper takes no arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    if let Some(entry) = CT.get_ptr_mut(&p.tuple) {
        return established(
            entry,
            &p.tuple,
            Dir::Original,
            revision,
            slot,
            ep,
            hook,
            p,
            now,
        );
    }
    let reply = p.tuple.reversed();
    if let Some(entry) = CT.get_ptr_mut(&reply) {
        return established(entry, &reply, Dir::Reply, revision, slot, ep, hook, p, now);
    }
    let side = hook.new_side();
    let rule = check_side(slot, ep, side, &p.tuple, p.policy_port)
        .map_err(|()| DropReason::PolicyDenied)?;
    let (egress_revision, ingress_revision, egress_rule, ingress_rule) = match side {
        Side::Egress => (revision, CT_UNCHECKED, rule, 0),
        Side::Ingress => (CT_UNCHECKED, revision, 0, rule),
    };
    let entry = CtEntry {
        egress_revision,
        ingress_revision,
        last_seen_ns: now,
        egress_rule,
        ingress_rule,
        tcp_flags_orig: p.tcp_flags,
        tcp_flags_reply: 0,
        flags: 0,
        _pad: [0; 5],
    };
    // A concurrent packet may have created it first; then the next packet
    // finds that entry and checks this side on it.
    let _ = CT.insert(&p.tuple, &entry, u64::from(BPF_NOEXIST));
    Ok(Verdict::Allowed)
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn established(
    entry: *mut CtEntry,
    orig: &CtKey,
    dir: Dir,
    revision: u64,
    slot: u8,
    ep: &EndpointInfo,
    hook: Hook,
    p: &Parsed,
    now: u64,
) -> Result<Verdict, DropReason> {
    let side = match (hook, dir) {
        (Hook::FromPod, Dir::Original) | (Hook::ToPod, Dir::Reply) => Side::Egress,
        _ => Side::Ingress,
    };
    // SAFETY: a CT value stays valid for the rest of this program run (RCU);
    // concurrent writers only store whole fields.
    let e = unsafe { &mut *entry };
    let checked = match side {
        Side::Egress => e.egress_revision,
        Side::Ingress => e.ingress_revision,
    };
    if checked != revision {
        match check_side(slot, ep, side, orig, policy_port(orig)) {
            Ok(rule) => match side {
                Side::Egress => {
                    e.egress_rule = rule;
                    e.egress_revision = revision;
                }
                Side::Ingress => {
                    e.ingress_rule = rule;
                    e.ingress_revision = revision;
                }
            },
            Err(()) => {
                let _ = CT.remove(orig);
                return Err(if checked == CT_UNCHECKED {
                    DropReason::PolicyDenied
                } else {
                    DropReason::PolicyRevoked
                });
            }
        }
    }
    e.last_seen_ns = now;
    match dir {
        Dir::Original => e.tcp_flags_orig |= p.tcp_flags,
        Dir::Reply => {
            e.tcp_flags_reply |= p.tcp_flags;
            e.flags |= CT_SEEN_REPLY;
        }
    }
    Ok(Verdict::Established)
}

/// Whether an ICMP error (`outer`) is about a tracked connection: its
/// embedded packet (`inner`) was sent by the error's destination and CT
/// knows the connection in either direction.
#[inline(always)]
pub fn related(inner: &CtKey, outer: &CtKey) -> bool {
    inner.src == outer.dst && known(inner)
}
