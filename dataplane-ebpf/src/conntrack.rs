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

// verifier: keys are passed by reference on purpose: `&p.key.tuple` points into
// the scratch map, so no 40-byte copy lands on the 512-byte stack.
#![allow(clippy::needless_borrows_for_generic_args)]

use aya_ebpf::bindings::BPF_NOEXIST;
use bulkhead_common::{
    CT_HOST_ROUTED, CT_MASQUERADED, CT_SEEN_REPLY, CT_SERVICE, CT_UNCHECKED, CtEntry, CtKey,
    DropReason, EndpointInfo, HOOK_FROM_POD, HOOK_TO_POD, RULE_NONE, Verdict,
};

use crate::{
    flowlog::{Meta, TAIL_NONE, TAIL_PENDING, TAIL_REJUDGE},
    maps::CT,
    parse::{Parsed, copy_into, reverse_into},
    policy::{Side, check_side, check_side_as, identity, policy_port},
    service,
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

    /// `HOOK_*` (frag keys, flow events).
    #[inline(always)]
    pub fn number(self) -> u8 {
        match self {
            Hook::FromPod => HOOK_FROM_POD,
            Hook::ToPod => HOOK_TO_POD,
        }
    }
}

/// Whether CT holds the connection of `key` in either direction (read-only;
/// `rev` is scratch for the reversed key). Both are `Parsed` tuples.
#[inline(always)]
pub fn known(key: &CtKey, rev: &mut CtKey) -> bool {
    if CT.get_ptr(key).is_some() {
        return true;
    }
    reverse_into(key, rev);
    CT.get_ptr(&*rev).is_some()
}

/// The other side of a new connection, when this packet was judged on it
/// already and CT holds no entry yet (`TAIL_PENDING`: host routing, the
/// source's egress judged by `open_from_pod`): what [`open`] records for
/// it beside its own side, in one insert.
#[derive(Clone, Copy)]
pub struct Opened {
    /// The revision the other side was judged under (`CT_UNCHECKED`: not
    /// judged; [`Opened::NONE`]).
    pub revision: u64,
    /// Its allowing rule.
    pub rule: u32,
    /// Its audit bits.
    pub audit: u8,
}

impl Opened {
    /// No other side judged: [`open`] records its own side only.
    pub const NONE: Opened = Opened {
        revision: CT_UNCHECKED,
        rule: 0,
        audit: 0,
    };
}

/// Tracks a packet of a `Kind::Flow` (`deliver`, which has the verifier
/// budget for both paths in one program): [`established`], else
/// [`open`]ed; a packet whose connection `open_from_pod` judged and left
/// to this program (`other` judged) is opened at once, with both sides.
#[inline(always)]
pub fn track(
    revision: u64,
    slot: u8,
    ep: &EndpointInfo,
    hook: Hook,
    routed: bool,
    other: Opened,
    p: &mut Parsed,
) -> Result<Verdict, DropReason> {
    if other.revision == CT_UNCHECKED
        && let Some(verdict) = established(revision, slot, ep, hook, routed, true, p)
    {
        return verdict;
    }
    open(revision, slot, ep, hook, routed, false, false, other, p)
}

/// Records the new connection `open_from_pod` judged and left to its exit
/// (`TAIL_PENDING`), its egress side alone, as `open` would have: the
/// packet is not delivered by host routing (it takes the node's stack,
/// where `to_pod` checks the ingress side). Reads the egress side's verdict from
/// `p.flow` as `open` left it; clears `Meta::tail`.
#[inline(always)]
pub fn record_pending(p: &mut Parsed) {
    p.flow.tail = TAIL_NONE;
    let entry = CtEntry {
        egress_revision: p.flow.revision,
        ingress_revision: CT_UNCHECKED,
        last_seen_ns: p.flow.now(),
        egress_rule: p.flow.rule,
        ingress_rule: 0,
        tcp_flags_orig: p.tcp_flags,
        tcp_flags_reply: 0,
        flags: 0,
        audit_egress: p.flow.audit,
        audit_ingress: 0,
        _pad: [0; 3],
    };
    let _ = CT.insert(&p.key.tuple, &entry, u64::from(BPF_NOEXIST));
}

/// A packet of a connection CT holds (either direction; a side checked
/// under an older revision is checked again): its verdict, or `None` when
/// CT holds none (a new connection: see [`open`]). Leaves direction, side
/// and rule in `p.flow` for flow accounting, and for `from_pod` what host
/// routing needs (see `Meta::host_routed`, `Meta::peer_revision`).
/// `routed`: host routing delivers this packet (`deliver`), so an
/// original-direction packet marks the entry `CT_HOST_ROUTED`.
/// `services`: a Service connection's stale egress side is judged here on
/// its backend; else the packet is left to `open_*` (`p.flow.tail`).
#[inline(always)]
pub fn established(
    revision: u64,
    slot: u8,
    ep: &EndpointInfo,
    hook: Hook,
    routed: bool,
    services: bool,
    p: &mut Parsed,
) -> Option<Result<Verdict, DropReason>> {
    let at = Established {
        revision,
        slot,
        hook,
        tcp_flags: p.tcp_flags,
        now: p.flow.now(),
        routed,
        services,
    };
    if let Some(entry) = CT.get_ptr_mut(&p.key.tuple) {
        let flow = &mut p.flow;
        return Some(at.update(entry, &p.key.tuple, Dir::Original, ep, flow, &mut p.xlate));
    }
    reverse_into(&p.key.tuple, &mut p.rev);
    let entry = CT.get_ptr_mut(&p.rev)?;
    Some(at.update(entry, &p.rev, Dir::Reply, ep, &mut p.flow, &mut p.xlate))
}

/// A new connection (CT holds none): its side at this hook is checked and
/// the connection recorded, with `other`'s side when this packet was
/// judged on it already. `defer`: a connection to a Service frontend is
/// left to the program after the node's translation (`Verdict::Deferred`;
/// see `service`). `hand_off` (`open_from_pod`): an allowed connection is
/// not recorded here but left to the program's exit (`TAIL_PENDING`),
/// which records it unless it hands the packet to `deliver`; `deliver`
/// records it with the destination's ingress side, so a connection that
/// side denies costs no CT insert and delete.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn open(
    revision: u64,
    slot: u8,
    ep: &EndpointInfo,
    hook: Hook,
    routed: bool,
    defer: bool,
    hand_off: bool,
    other: Opened,
    p: &mut Parsed,
) -> Result<Verdict, DropReason> {
    if defer && service::is_frontend(slot, &p.key.tuple) {
        return Ok(Verdict::Deferred);
    }
    let now = p.flow.now();
    let side = hook.new_side();
    // Ingress from the node may be a Service client the node masqueraded:
    // judged on that client (`service`).
    p.flow.masqueraded = false;
    let judged = check_side_as(slot, ep, side, &p.key.tuple, p.policy_port, true, || {
        let client = service::masq_client(&p.key.tuple);
        p.flow.masqueraded = client.is_some();
        client
    });
    let judged = judged.map_err(|rule| {
        p.flow.rule = rule;
        DropReason::PolicyDenied
    })?;
    let rule = judged.rule;
    p.flow.audit = judged.audit;
    p.flow.rule = rule;
    p.flow.new = true;
    if hand_off {
        p.flow.tail = TAIL_PENDING;
        return Ok(Verdict::Allowed);
    }
    let (egress_revision, ingress_revision, egress_rule, ingress_rule) = match side {
        Side::Egress => (revision, other.revision, rule, other.rule),
        Side::Ingress => (other.revision, revision, other.rule, rule),
    };
    let (audit_egress, audit_ingress) = match side {
        Side::Egress => (judged.audit, other.audit),
        Side::Ingress => (other.audit, judged.audit),
    };
    let entry = CtEntry {
        egress_revision,
        ingress_revision,
        last_seen_ns: now,
        egress_rule,
        ingress_rule,
        tcp_flags_orig: p.tcp_flags,
        tcp_flags_reply: 0,
        flags: if routed { CT_HOST_ROUTED } else { 0 }
            | if p.flow.masqueraded {
                CT_MASQUERADED
            } else {
                0
            },
        audit_egress,
        audit_ingress,
        _pad: [0; 3],
    };
    // A concurrent packet may have created it first; then the next packet
    // finds that entry and checks this side on it.
    let _ = CT.insert(&p.key.tuple, &entry, u64::from(BPF_NOEXIST));
    Ok(Verdict::Allowed)
}

/// A packet of a tracked connection, and what it needs to update the entry.
struct Established {
    revision: u64,
    slot: u8,
    hook: Hook,
    tcp_flags: u8,
    now: u64,
    /// Host routing delivers the packet (see [`established`]).
    routed: bool,
    /// Judge a Service connection's stale egress side here (see
    /// [`established`]).
    services: bool,
}

impl Established {
    #[inline(always)]
    fn update(
        &self,
        entry: *mut CtEntry,
        orig: &CtKey,
        dir: Dir,
        ep: &EndpointInfo,
        flow: &mut Meta,
        xlate: &mut CtKey,
    ) -> Result<Verdict, DropReason> {
        let side = match (self.hook, dir) {
            (Hook::FromPod, Dir::Original) | (Hook::ToPod, Dir::Reply) => Side::Egress,
            _ => Side::Ingress,
        };
        flow.reply = dir == Dir::Reply;
        flow.side = side.flow_side();
        // SAFETY: a CT value stays valid for the rest of this program run
        // (RCU); concurrent writers only store whole fields.
        let e = unsafe { &mut *entry };
        let checked = match side {
            Side::Egress => e.egress_revision,
            Side::Ingress => e.ingress_revision,
        };
        let translated = e.flags & CT_SERVICE != 0;
        flow.service = translated;
        if checked != self.revision {
            let service_egress = translated && side == Side::Egress;
            let masq_ingress = e.flags & CT_MASQUERADED != 0 && side == Side::Ingress;
            if (service_egress || masq_ingress) && !self.services {
                // Judged on the backend (or the client) by `open_*`
                // (`flow.tail`), whose verifier budget has room for it.
                flow.tail = TAIL_REJUDGE;
                return Ok(Verdict::Established);
            }
            // A Service connection's egress is the client's to the backend,
            // a masqueraded one's ingress the backend's from the client
            // (no record: judged as denied, see `service::backend_into`).
            // verifier: always judged on the scratch copy `xlate`, so every
            // kind of connection shares one path through `check_side`.
            copy_into(orig, xlate);
            let found = if service_egress {
                service::backend_into(orig, xlate)
            } else if masq_ingress {
                service::masq_client_into(orig, xlate)
            } else {
                true
            };
            let judged = if found {
                check_side(self.slot, ep, side, xlate, policy_port(xlate), true)
            } else {
                Err(RULE_NONE)
            };
            match judged {
                Ok(judged) => match side {
                    Side::Egress => {
                        e.egress_rule = judged.rule;
                        e.audit_egress = judged.audit;
                        e.egress_revision = self.revision;
                    }
                    Side::Ingress => {
                        e.ingress_rule = judged.rule;
                        e.audit_ingress = judged.audit;
                        e.ingress_revision = self.revision;
                    }
                },
                Err(rule) => {
                    flow.rule = rule;
                    let _ = CT.remove(orig);
                    return Err(if checked == CT_UNCHECKED {
                        DropReason::PolicyDenied
                    } else {
                        DropReason::PolicyRevoked
                    });
                }
            }
            // The first packet this side sees opens the connection here.
            flow.new = checked == CT_UNCHECKED;
        }
        (flow.rule, flow.audit) = match side {
            Side::Egress => (e.egress_rule, e.audit_egress),
            Side::Ingress => (e.ingress_rule, e.audit_ingress),
        };
        // Stores only what changes (the coarse clock moves once a tick, TCP
        // flags rarely): fewer dirtied cache lines when the two ends of a
        // connection run on different CPUs.
        if e.last_seen_ns != self.now {
            e.last_seen_ns = self.now;
        }
        match dir {
            Dir::Original => {
                if e.tcp_flags_orig & self.tcp_flags != self.tcp_flags {
                    e.tcp_flags_orig |= self.tcp_flags;
                }
                if self.routed && e.flags & CT_HOST_ROUTED == 0 {
                    e.flags |= CT_HOST_ROUTED;
                }
            }
            Dir::Reply => {
                if e.tcp_flags_reply & self.tcp_flags != self.tcp_flags
                    || e.flags & CT_SEEN_REPLY == 0
                {
                    e.tcp_flags_reply |= self.tcp_flags;
                    e.flags |= CT_SEEN_REPLY;
                }
            }
        }
        // What host routing needs after `from_pod` (whether a reply may be
        // delivered; the other side, so `deliver` needs no lookup of its
        // own when that side is current). `hook` is a constant once
        // inlined: `to_pod` and `deliver` store none of it.
        if self.hook == Hook::FromPod {
            flow.host_routed = e.flags & CT_HOST_ROUTED != 0;
            (flow.peer_revision, flow.peer_rule, flow.peer_audit) = match side {
                Side::Egress => (e.ingress_revision, e.ingress_rule, e.audit_ingress),
                Side::Ingress => (e.egress_revision, e.egress_rule, e.audit_egress),
            };
        }
        Ok(Verdict::Established)
    }
}

/// Whether the ICMP error in `p` is about a tracked connection: its
/// embedded packet (`p.inner`) was sent by the error's destination and CT
/// knows the connection in either direction. Such an error must come from
/// the connection's peer (the embedded packet's destination) or from an
/// address that is no pod's (the node, a router on the path): no other pod
/// is ever on a connection's path, so its error is an injection
/// (`IcmpErrorSender`). Errors about unknown connections are not related
/// (`Ok(false)`): policy judges them.
#[inline(always)]
pub fn related(slot: u8, p: &mut Parsed) -> Result<bool, DropReason> {
    if !(p.has_inner && p.inner.src == p.key.tuple.dst && known(&p.inner, &mut p.rev)) {
        return Ok(false);
    }
    if p.key.tuple.src == p.inner.dst || !identity(slot, p.key.tuple.src).is_pod() {
        Ok(true)
    } else {
        Err(DropReason::IcmpErrorSender)
    }
}
