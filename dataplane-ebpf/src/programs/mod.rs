//! The programs and what they share: the revision/slot read, endpoint
//! lookup, anti-spoofing and the TC enforcement path.

pub mod deliver;
pub mod from_pod;
pub mod leave_node;
pub mod noop;
pub mod open;
pub mod to_backend;
pub mod to_pod;
pub mod xdp_prefilter;

use core::mem::{MaybeUninit, size_of};

use aya_ebpf::{
    EbpfContext as _,
    bindings::{__sk_buff, xdp_md},
    helpers::generated::bpf_xdp_load_bytes,
    programs::{TcContext, XdpContext},
};
use bulkhead_common::{
    CONFIG_F_HOST_ROUTING, DropReason, ENDPOINT_HAS_IPV4, ENDPOINT_HAS_IPV6, ENDPOINT_HAS_MAC,
    EndpointInfo, EndpointKey, FLOW_SIDE_EGRESS, FLOW_SIDE_INGRESS, HOOK_TO_POD, TC_DROP, TC_PASS,
    Verdict, active_slot, config_service_mark,
};

use crate::{
    conntrack::{self, Hook},
    flowlog,
    flowlog::{TAIL_NONE, TAIL_OPEN, TAIL_PENDING, TAIL_REJUDGE},
    frags, hostroute,
    maps::{CONFIG, DELIVER, ENDPOINTS_V6, SCRATCH, TAILS},
    notify,
    parse::{self, Frag, Kind, Packet, Parsed, reverse_into},
    policy::{self, check_side},
    service,
};

/// Largest offset read directly from the linear packet data; beyond it (and
/// beyond the linear part) reads go through the load helper.
///
/// verifier: a packet pointer plus a variable offset needs the offset's
/// bounds; this check gives them.
const DIRECT_MAX: usize = 0x1000;

/// Reads a `T` at `off` directly from the linear bytes `data..end`, if they
/// hold it.
#[inline(always)]
fn load_direct<T: Copy>(data: usize, end: usize, off: usize) -> Option<T> {
    if off > DIRECT_MAX {
        return None;
    }
    let at = data + off;
    if at + size_of::<T>() > end {
        return None;
    }
    // SAFETY: `at..at + size_of::<T>()` lies within the packet's linear
    // data (checked above, which the verifier also checks); `T` is plain
    // bytes, read unaligned.
    Some(unsafe { (at as *const T).read_unaligned() })
}

impl Packet for TcContext {
    /// Direct access for the linear part (every packet of a TC test run,
    /// and the headers of nearly every real one); `bpf_skb_load_bytes` for
    /// what lies in the skb's fragments.
    #[inline(always)]
    fn load<T: Copy>(&self, off: usize) -> Result<T, DropReason> {
        if let Some(v) = load_direct(self.data(), self.data_end(), off) {
            return Ok(v);
        }
        TcContext::load(self, off).map_err(|_| DropReason::Malformed)
    }
    #[inline(always)]
    fn len(&self) -> usize {
        TcContext::len(self) as usize
    }
}

impl Packet for XdpContext {
    /// Direct access for the first buffer; `bpf_xdp_load_bytes` for the
    /// fragments of a multi-buffer frame.
    #[inline(always)]
    fn load<T: Copy>(&self, off: usize) -> Result<T, DropReason> {
        if let Some(v) = load_direct(self.data(), self.data_end(), off) {
            return Ok(v);
        }
        let mut out = MaybeUninit::<T>::uninit();
        // SAFETY: the helper writes exactly `size_of::<T>()` bytes into
        // `out` or fails; `T` is plain bytes.
        let ret = unsafe {
            bpf_xdp_load_bytes(
                self.ctx.cast::<xdp_md>(),
                off as u32,
                out.as_mut_ptr().cast(),
                size_of::<T>() as u32,
            )
        };
        if ret == 0 {
            // SAFETY: initialised by the helper above.
            Ok(unsafe { out.assume_init() })
        } else {
            Err(DropReason::Malformed)
        }
    }
    #[inline(always)]
    fn len(&self) -> usize {
        self.data_end() - self.data()
    }
}

/// Index of `to_backend` in TAILS.
pub const TAIL_TO_BACKEND: u32 = 0;
/// Index of `open_from_pod` in TAILS.
pub const TAIL_OPEN_FROM_POD: u32 = 1;
/// Index of `open_to_pod` in TAILS.
pub const TAIL_OPEN_TO_POD: u32 = 2;
/// Index of `to_pod` in TAILS (`to_backend` runs it after judging the
/// client's side).
pub const TAIL_TO_POD: u32 = 3;

/// Scratch slot of the TC programs (they never nest on one CPU).
pub const SCRATCH_TC: u32 = 0;
/// Scratch slot of the XDP program.
pub const SCRATCH_XDP: u32 = 1;

/// The per-CPU scratch space for a packet's parse result.
#[inline(always)]
pub fn scratch(index: u32) -> Result<&'static mut Parsed, DropReason> {
    let ptr = SCRATCH.get_ptr_mut(index).ok_or(DropReason::Malformed)?;
    // SAFETY: per-CPU and per program kind (TC and XDP use different
    // indexes; programs run to completion without nesting on one CPU), and
    // every field is valid when zeroed (`Parsed` is repr(C), its enums have
    // a zero variant).
    Ok(unsafe { &mut *ptr })
}

/// CONFIG as the programs read it, once per packet.
#[derive(Clone, Copy)]
pub struct Active {
    /// The revision in force.
    pub revision: u64,
    /// Its slot.
    pub slot: u8,
    /// `CONFIG_F_*`.
    pub flags: u64,
}

impl Active {
    /// The service mark (`config_service_mark`; 0: off).
    #[inline(always)]
    pub fn service_mark(&self) -> u32 {
        config_service_mark(self.flags)
    }
}

/// The revision in force (read once per packet), its slot and the mode
/// flags.
#[inline(always)]
pub fn active() -> Active {
    let (revision, flags) = CONFIG.get(0).map_or((0, 0), |c| (c.revision, c.flags));
    Active {
        revision,
        slot: active_slot(revision),
        flags,
    }
}

/// The endpoint on `ifindex` in `slot`, copied out.
#[inline(always)]
pub fn endpoint(ifindex: u32, slot: u8) -> Option<EndpointInfo> {
    // SAFETY: copied at once; userspace replaces whole values.
    unsafe { ENDPOINTS_V6.get(EndpointKey::new(ifindex, slot)) }.copied()
}

/// A frame leaving the pod must carry the pod's MAC.
#[inline(always)]
pub fn check_mac(ep: &EndpointInfo, src_mac: &[u8; 6]) -> Result<(), DropReason> {
    if ep.flags & ENDPOINT_HAS_MAC != 0 && *src_mac != ep.mac {
        return Err(DropReason::SpoofedMac);
    }
    Ok(())
}

/// An IP packet leaving the pod must carry the pod's address of its family.
#[inline(always)]
pub fn check_ip(ep: &EndpointInfo, p: &Parsed) -> Result<(), DropReason> {
    let ok = if p.v6 {
        ep.flags & ENDPOINT_HAS_IPV6 != 0 && p.key.tuple.src == ep.ipv6
    } else {
        ep.flags & ENDPOINT_HAS_IPV4 != 0 && p.key.tuple.src == ep.ipv4
    };
    if ok {
        Ok(())
    } else {
        Err(DropReason::SpoofedIp)
    }
}

/// Both TC programs: runs [`enforce`] and [`finish`]es; what `enforce`
/// leaves to another program (`p.flow.tail`: a new connection, a Service
/// connection's stale egress) goes to `open_from_pod` / `open_to_pod`, and
/// a packet with the service mark at `to_pod` to `to_backend` (tail calls:
/// each program is verified on its own, and `from_pod` and `to_pod` keep
/// only what established connections need, within the kernel's limit).
#[inline(always)]
pub fn run_tc(ctx: &TcContext, hook: Hook) -> i32 {
    let Ok(p) = scratch(SCRATCH_TC) else {
        notify::count_drop(DropReason::Malformed);
        return TC_DROP;
    };
    p.flow.reset();
    let at = active();
    match enforce(ctx, hook, at, p) {
        _ if p.flow.tail != TAIL_NONE => tail_call(
            ctx,
            match hook {
                Hook::FromPod => TAIL_OPEN_FROM_POD,
                Hook::ToPod => TAIL_OPEN_TO_POD,
            },
        ),
        result => finish(ctx, hook, at, p, result, false),
    }
}

/// Tail-calls TAILS entry `index`; when that fails (the entry is empty:
/// a half-loaded dataplane), drops the packet (`TailCallFailed`).
#[inline(always)]
pub fn tail_call(ctx: &TcContext, index: u32) -> i32 {
    // SAFETY: a TC context and a program array of TC programs; on success
    // the call does not return.
    unsafe { TAILS.tail_call(ctx, index) };
    notify::count_drop(DropReason::TailCallFailed);
    TC_DROP
}

/// The one exit of the TC programs that judge a packet at a pod's veth:
/// accounts the packet (`flowlog`) and counts a drop (`notify`), hands a
/// deferred one to the node with the service mark, and returns the TC
/// verdict; with host routing, `from_pod` may deliver the packet itself
/// ([`deliver`]). `opens`: the caller may have left a new connection's
/// CT entry to `deliver` (`TAIL_PENDING`), recorded here when the packet
/// is not delivered.
#[inline(always)]
pub fn finish(
    ctx: &TcContext,
    hook: Hook,
    at: Active,
    p: &mut Parsed,
    result: Result<Verdict, DropReason>,
    opens: bool,
) -> i32 {
    let len = u64::from(ctx.len());
    match result {
        Ok(Verdict::Deferred) => {
            // Judged after the node's translation (`service`), and
            // accounted there.
            service::defer(at.revision, p);
            // SAFETY: a TC program's context is a valid `__sk_buff`.
            let mark = unsafe { &*ctx.as_ptr().cast::<__sk_buff>() }.mark;
            ctx.set_mark(mark | at.service_mark());
            TC_PASS
        }
        Ok(verdict) => {
            flowlog::account(p, len, None);
            if hook == Hook::FromPod
                && at.flags & CONFIG_F_HOST_ROUTING != 0
                && matches!(verdict, Verdict::Allowed | Verdict::Established)
                && p.kind == Kind::Flow
                && p.frag == Frag::No
                // A reply follows its original packets' path (see
                // `CT_HOST_ROUTED`), and a Service connection the node's
                // translation.
                && (!p.flow.reply || p.flow.host_routed)
                && !p.flow.service
            {
                // SAFETY: a TC context and the one-entry program array;
                // on success the call does not return.
                unsafe { DELIVER.tail_call(ctx, 0) };
            }
            // Not delivered (no host routing for it, or an empty DELIVER):
            // the node's stack takes it, and `to_pod` finds the entry.
            // verifier: a branch just before the exit, after the policy
            // walk and accounting: a decision taken in `open` kept two
            // copies of those states apart.
            if opens && p.flow.tail == TAIL_PENDING {
                conntrack::record_pending(p);
            }
            TC_PASS
        }
        Err(reason) => {
            flowlog::account(p, len, Some(reason));
            notify::count_drop(reason);
            TC_DROP
        }
    }
}

/// `open_from_pod` / `open_to_pod`: what `from_pod` / `to_pod` left to
/// them in the TC scratch (parse and `Meta` as the tail call leaves them):
/// a new connection is judged at this hook (or deferred, for a Service
/// frontend) and recorded; a Service connection's stale egress side is
/// judged on its backend. The packet's revision is the one the calling
/// program read (one packet, one revision).
#[inline(always)]
pub fn run_open(ctx: &TcContext, hook: Hook) -> i32 {
    let Ok(p) = scratch(SCRATCH_TC) else {
        notify::count_drop(DropReason::Malformed);
        return TC_DROP;
    };
    let tail = p.flow.tail;
    p.flow.tail = TAIL_NONE;
    let revision = p.flow.revision;
    let at = Active {
        revision,
        slot: active_slot(revision),
        flags: active().flags,
    };
    let ifindex = p.flow.ifindex;
    let Some(ep) = endpoint(ifindex, at.slot) else {
        notify::count_drop(DropReason::TailCallFailed);
        return TC_DROP;
    };
    let result = if tail == TAIL_REJUDGE {
        match conntrack::established(revision, at.slot, &ep, hook, false, true, p) {
            Some(verdict) => verdict,
            // Gone meanwhile (LRU): a new connection after all.
            None => open_new(hook, at, &ep, p),
        }
    } else {
        open_new(hook, at, &ep, p)
    };
    finish(ctx, hook, at, p, result, true)
}

/// A new connection at `hook`: judged or deferred, recorded; a first
/// fragment's datagram recorded for its later fragments.
#[inline(always)]
fn open_new(
    hook: Hook,
    at: Active,
    ep: &EndpointInfo,
    p: &mut Parsed,
) -> Result<Verdict, DropReason> {
    // `from_pod` leaves a new connection to a Service frontend to the
    // program after the node's translation (`service`).
    let defer = hook == Hook::FromPod && at.service_mark() != 0 && p.frag == Frag::No;
    // `open_from_pod` leaves recording the connection to `finish`, or,
    // with host routing, to `deliver`, which knows the destination's
    // verdict too.
    let verdict = conntrack::open(
        at.revision,
        at.slot,
        ep,
        hook,
        false,
        defer,
        hook == Hook::FromPod,
        conntrack::Opened::NONE,
        p,
    );
    if p.frag == Frag::First {
        frags::first(p, p.flow.ifindex, hook, verdict.is_ok());
    }
    verdict
}

/// `deliver`: host routing for a packet `from_pod` passed (a tracked flow,
/// not a fragment, already accounted at its source; its parse and `Meta`
/// in the TC scratch, which the tail call leaves as it was). When the node
/// routes it to another endpoint's host veth, judges and accounts it at
/// that endpoint as `to_pod` would (same CT entry, same flow key,
/// `HOOK_TO_POD`), then redirects it into that pod or drops it. Anything
/// else goes to the stack untouched.
#[inline(always)]
pub fn run_deliver(ctx: &TcContext) -> i32 {
    let Ok(p) = scratch(SCRATCH_TC) else {
        return TC_PASS;
    };
    // The revision `from_pod` judged the source under (its Meta): one
    // packet, one revision. Safe: the tail call runs in `from_pod`'s RCU
    // read section, which the controller's grace period after a switch
    // waits for.
    let revision = p.flow.revision;
    let at = Active {
        revision,
        slot: active_slot(revision),
        flags: 0,
    };
    let len = u64::from(ctx.len());
    // SAFETY: a TC program's context is a valid `__sk_buff`.
    let ifindex = unsafe { &*ctx.as_ptr().cast::<__sk_buff>() }.ifindex;
    // Accounting made the tuple the flow's key (original direction); the
    // route and conntrack need the packet's own again.
    if p.flow.reply {
        reverse_into(&p.rev, &mut p.key.tuple);
    }
    let Some(to) = hostroute::route(ctx, ifindex, p) else {
        return pass_on(p);
    };
    if to == ifindex {
        return pass_on(p); // back where it came from: the stack's hairpin
    }
    let Some(ep) = endpoint(to, at.slot) else {
        return pass_on(p); // not a pod: the stack forwards it
    };
    if !hostroute::rewrite(ctx, p) {
        return pass_on(p);
    }
    // A new connection `open_from_pod` judged at its egress and left to
    // this program to record (`TAIL_PENDING`): opened here with both
    // sides, or not recorded at all when the ingress side denies it.
    let opened = if p.flow.tail == TAIL_PENDING {
        conntrack::Opened {
            revision,
            rule: p.flow.rule,
            audit: p.flow.audit,
        }
    } else {
        conntrack::Opened::NONE
    };
    p.flow.tail = TAIL_NONE;
    let reply = p.flow.reply;
    // The destination's side is current in conntrack (`from_pod` found
    // it checked under this revision) and, for an original packet, the
    // entry is marked host-routed already: nothing to look up or write.
    let current = p.flow.peer_revision == at.revision && (reply || p.flow.host_routed);
    let (rule, audit) = (p.flow.peer_rule, p.flow.peer_audit);
    p.flow.start(to, HOOK_TO_POD, at.revision, &ep);
    p.flow.parsed(Hook::ToPod.new_side().flow_side());
    if current {
        p.flow.reply = reply;
        p.flow.side = if reply {
            FLOW_SIDE_EGRESS
        } else {
            FLOW_SIDE_INGRESS
        };
        p.flow.rule = rule;
        p.flow.audit = audit;
        flowlog::account(p, len, None);
        return hostroute::redirect(p);
    }
    match conntrack::track(at.revision, at.slot, &ep, Hook::ToPod, true, opened, p) {
        Ok(_) => {
            flowlog::account(p, len, None);
            hostroute::redirect(p)
        }
        Err(reason) => {
            flowlog::account(p, len, Some(reason));
            notify::count_drop(reason);
            TC_DROP
        }
    }
}

/// `deliver` leaves the packet to the node's stack: records the new
/// connection `open_from_pod` left to it, if any (`TAIL_PENDING`), as
/// `to_pod` expects to find it.
#[inline(always)]
fn pass_on(p: &mut Parsed) -> i32 {
    if p.flow.tail == TAIL_PENDING {
        conntrack::record_pending(p);
    }
    TC_PASS
}

/// Whether the packet carries the service mark (`from_pod` deferred it to
/// be judged after the node's translation); clears it.
#[inline(always)]
pub fn take_service_mark(ctx: &TcContext, at: &Active) -> bool {
    let bit = at.service_mark();
    // SAFETY: a TC program's context is a valid `__sk_buff`.
    let mark = unsafe { &*ctx.as_ptr().cast::<__sk_buff>() }.mark;
    // verifier: test only the masked value (0 when the mark is off): a
    // test of `bit` itself would split every later state of the program
    // in two, by what it learnt of the CONFIG flags it keeps using.
    if mark & bit == 0 {
        return false;
    }
    ctx.set_mark(mark & !bit);
    true
}

/// The TC path of both `from_pod` and `to_pod`. Leaves in `p.flow` what
/// flow accounting needs (`ready` once the tuple is parsed).
#[inline(always)]
fn enforce(ctx: &TcContext, hook: Hook, at: Active, p: &mut Parsed) -> Result<Verdict, DropReason> {
    // SAFETY: a TC program's context is a valid `__sk_buff`.
    let skb = unsafe { &*ctx.as_ptr().cast::<__sk_buff>() };
    let ifindex = skb.ifindex;
    let (revision, slot) = (at.revision, at.slot);
    let Some(ep) = endpoint(ifindex, slot) else {
        return Ok(Verdict::Bypass); // not a pod Bulkhead knows
    };
    // A tag the kernel already moved out of the frame (skb metadata).
    if skb.vlan_present != 0 {
        return Err(DropReason::VlanTagged);
    }
    let eth = parse::eth(ctx)?;
    if hook == Hook::FromPod {
        check_mac(&ep, &eth.src_mac)?;
    }
    if !parse::ip(ctx, eth.ether_type, p)? {
        return Ok(Verdict::Bypass); // ARP and other non-IP
    }
    if p.kind == Kind::LinkControl {
        if on_link(hook, &ep, slot, p)? {
            return Ok(Verdict::Bypass);
        }
        // Addressed beyond the pod's link: an ordinary ICMPv6 message.
        p.kind = Kind::Untracked;
    }
    p.flow.start(ifindex, hook.number(), revision, &ep);
    p.flow.parsed(hook.new_side().flow_side());
    if hook == Hook::FromPod {
        check_ip(&ep, p)?;
    }
    if p.frag == Frag::Later {
        return frags::later(&ep, p, ifindex, hook);
    }
    let verdict = judge(hook, at, &ep, p);
    if p.frag == Frag::First && p.flow.tail == TAIL_NONE {
        // A denied datagram leaves no record behind, not even an older
        // one under the same ID: its later fragments never pass.
        frags::first(p, ifindex, hook, verdict.is_ok());
    }
    verdict
}

/// The verdict on a parsed, unfragmented packet or first fragment.
#[inline(always)]
fn judge(hook: Hook, at: Active, ep: &EndpointInfo, p: &mut Parsed) -> Result<Verdict, DropReason> {
    let kind = p.kind;
    if kind == Kind::Flow {
        return match conntrack::established(at.revision, at.slot, ep, hook, false, false, p) {
            Some(verdict) => verdict,
            None => {
                // New: judged by `open_*` (see `run_tc`).
                p.flow.tail = TAIL_OPEN;
                Ok(Verdict::Allowed)
            }
        };
    }
    if kind == Kind::IcmpError && conntrack::related(at.slot, p)? {
        return Ok(Verdict::Related);
    }
    let judged = check_side(
        at.slot,
        ep,
        hook.new_side(),
        &p.key.tuple,
        p.policy_port,
        true,
    )
    .map_err(|rule| {
        p.flow.rule = rule;
        DropReason::PolicyDenied
    })?;
    p.flow.rule = judged.rule;
    p.flow.audit = judged.audit;
    Ok(Verdict::Allowed)
}

/// Whether a neighbour discovery or MLD message stays on the pod's link,
/// where it passes without policy or accounting (like ARP). Leaving the
/// pod it must come from the pod's own address, a link-local one (the node
/// never forwards those) or the unspecified one (duplicate address
/// detection, to a link-scope address only), and go to a link-local or
/// link-scope multicast address or to the node. Entering the pod it must
/// come from a link-local or unspecified address (only the node shares the
/// link) or from the node. Anything else is addressed across the node and
/// is judged as any ICMPv6 message; a foreign source is `SpoofedIp`.
#[inline(always)]
fn on_link(hook: Hook, ep: &EndpointInfo, slot: u8, p: &Parsed) -> Result<bool, DropReason> {
    let (src, dst) = (p.key.tuple.src, p.key.tuple.dst);
    if is_link_local(&src) {
        return Ok(true);
    }
    match hook {
        Hook::FromPod if src == [0; 16] => {
            if is_link_scoped(&dst) {
                Ok(true)
            } else {
                Err(DropReason::SpoofedIp)
            }
        }
        // Off the link, `enforce` checks the source like any packet's.
        Hook::FromPod if !(is_link_scoped(&dst) || policy::identity(slot, dst).is_node()) => {
            Ok(false)
        }
        Hook::FromPod => check_ip(ep, p).map(|()| true),
        Hook::ToPod => Ok(src == [0; 16] || policy::identity(slot, src).is_node()),
    }
}

/// An IPv6 link-local unicast address (`fe80::/10`).
#[inline(always)]
fn is_link_local(a: &[u8; 16]) -> bool {
    a[0] == 0xfe && a[1] & 0xc0 == 0x80
}

/// A link-local unicast address, or a multicast address of interface- or
/// link-local scope (`ff01::/16`, `ff02::/16` and their flagged forms).
#[inline(always)]
fn is_link_scoped(a: &[u8; 16]) -> bool {
    is_link_local(a) || (a[0] == 0xff && a[1] & 0x0f <= 2)
}
