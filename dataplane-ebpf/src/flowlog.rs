//! Flow accounting: every packet a program judges (TC: passed or dropped
//! once its tuple is parsed; XDP: dropped) is counted into the flow table
//! FLOW_CONFIG selects, keyed by (original-direction tuple, ifindex, side).
//!
//! One call per packet, from the programs' single exit path
//! ([`account`]). The verdict path leaves what it learnt in [`Meta`] (in
//! the per-CPU scratch, with the packet's tuple): whether the tuple was
//! parsed, the direction relative to the connection, the side of the
//! endpoint, the deciding rule, and whether this packet opened the
//! connection at this endpoint.
//!
//! Protocol with userspace (see `bulkhead-common`, "Flow accounting"):
//! an existing entry is updated in place (atomic adds: several CPUs may
//! share it); a missing one is inserted with `BPF_NOEXIST` (`EEXIST`: a
//! concurrent insert won, add to that one); a full table (`E2BIG`) or any
//! other failure sends the packet's delta as an `EventKind::FlowRecord`
//! event instead, and when the ring is full too the record is counted as
//! lost with its packets and bytes. Nothing is done when FLOW_CONFIG lacks
//! `FLOW_CONFIG_ACCOUNTING`.

// verifier: keys are passed by reference on purpose: they point into the
// scratch map, so no 48-byte key or 80-byte value lands on the stack.
// `account` turns `Parsed::key` (the packet's tuple as sent) into the flow
// key in place.
#![allow(clippy::needless_borrows_for_generic_args)]

use aya_ebpf::{bindings::BPF_NOEXIST, helpers::generated::bpf_ktime_get_coarse_ns, maps::HashMap};
use bulkhead_common::{
    CT_UNCHECKED, DropReason, ENDPOINT_ISOLATED_EGRESS, ENDPOINT_ISOLATED_INGRESS, EndpointInfo,
    EventKind, FLOW_CONFIG_ACCOUNTING, FLOW_CONFIG_EVENTS_DROP, FLOW_CONFIG_EVENTS_NEW, FLOW_F_NEW,
    FLOW_F_UNENFORCED, FLOW_F_XDP, FlowEvent, FlowKey, FlowStat, FlowValue, RULE_NONE,
};

use crate::{
    atomic,
    maps::{EVENTS, FLOW_CONFIG, FLOW_STATS, FLOWS_0, FLOWS_1},
    parse::{Parsed, copy_into},
};

/// `EEXIST`: a concurrent insert of the same key won.
const EEXIST: i32 = 17;
/// `E2BIG`: the (preallocated) hash table is full.
const E2BIG: i32 = 7;

/// What the verdict path learnt about a packet, for [`account`]. Lives in
/// the scratch map; [`Meta::reset`] starts every packet.
#[repr(C)]
pub struct Meta {
    /// `bpf_ktime_get_coarse_ns()` of this packet (0: not read yet).
    pub now: u64,
    /// Policy revision of the verdict.
    pub revision: u64,
    /// Rule that allowed this side (`RULE_NONE`: none needed); for a policy
    /// drop, the denying rule (`RULE_F_DENY` set) or `RULE_NONE`.
    pub rule: u32,
    /// ifindex of the endpoint's host-side veth.
    pub ifindex: u32,
    /// The tuple (`Parsed::key`) is parsed: the packet is accounted.
    pub ready: bool,
    /// The packet goes the connection's reply way (the flow key is the
    /// reversed tuple).
    pub reply: bool,
    /// The packet opened the connection at this endpoint (a new CT entry,
    /// or the first check of this side of an existing one).
    pub new: bool,
    /// The endpoint is isolated in neither direction.
    pub unenforced: bool,
    /// The connection's original packets were host-routed
    /// (`CT_HOST_ROUTED`): its replies may be too.
    pub host_routed: bool,
    /// Conntrack's record of the connection's other side (the revision it
    /// was checked under, `CT_UNCHECKED` if never or unknown; its rule and
    /// audit bits), as the packet found the entry.
    pub peer_revision: u64,
    /// What `from_pod`/`to_pod` leave to their `open_*` program (tail
    /// call): [`TAIL_NONE`], [`TAIL_OPEN`] or [`TAIL_REJUDGE`]; what
    /// `open_from_pod` leaves to `deliver`: [`TAIL_PENDING`].
    pub tail: u8,
    /// The connection is a Service connection (`CT_SERVICE`): it goes
    /// through the node's translation, never host-routed.
    pub service: bool,
    /// See `peer_revision`.
    pub peer_rule: u32,
    /// See `peer_revision`.
    pub peer_audit: u8,
    /// `FLOW_SIDE_*`.
    pub side: u8,
    /// `HOOK_*` of the program.
    pub hook: u8,
    /// `FLOW_F_XDP` for `xdp_prefilter`, else 0.
    pub xdp: u8,
    /// The audit view's verdict on this side: `FLOW_F_AUDITED` and
    /// `FLOW_F_AUDIT_DENY` bits (0: no audit-mode policy covers it).
    pub audit: u8,
    /// Set by accounting: the packet is the flow entry's first drop this
    /// interval (it gets the Drop notification).
    ///
    /// verifier: kept in the scratch map, not a register: a map value's
    /// content is not tracked, so the paths with and without a first drop
    /// stay one state for the rest of the program (a returned flag doubled
    /// the states and hit the complexity limit).
    pub first_drop: bool,
    /// Set by `conntrack::open`: the new connection's ingress was judged
    /// on the client of a masqueraded Service connection (`CT_MASQUERADED`).
    ///
    /// verifier: in the scratch map for the same reason as `first_drop`: a
    /// local flag kept the two outcomes apart, and `open_to_pod` walked the
    /// policy tree twice over (past the complexity limit).
    pub masqueraded: bool,
}

impl Meta {
    /// Starts a packet: nothing is known, nothing will be accounted.
    #[inline(always)]
    pub fn reset(&mut self) {
        self.now = 0;
        self.ready = false;
        self.tail = TAIL_NONE;
    }

    /// The endpoint and program of the packet (TC: `xdp` 0).
    #[inline(always)]
    pub fn start(&mut self, ifindex: u32, hook: u8, revision: u64, ep: &EndpointInfo) {
        self.ifindex = ifindex;
        self.hook = hook;
        self.revision = revision;
        self.xdp = 0;
        self.unenforced = ep.flags & (ENDPOINT_ISOLATED_INGRESS | ENDPOINT_ISOLATED_EGRESS) == 0;
    }

    /// The tuple is parsed: the packet will be accounted as `side`, in the
    /// original direction, without a rule, until the verdict path says more.
    #[inline(always)]
    pub fn parsed(&mut self, side: u8) {
        self.ready = true;
        self.reply = false;
        self.new = false;
        self.side = side;
        self.rule = RULE_NONE;
        self.audit = 0;
        self.host_routed = false;
        self.service = false;
        self.peer_revision = CT_UNCHECKED;
    }

    /// CLOCK_MONOTONIC at tick resolution, read at most once per packet.
    ///
    /// `bpf_ktime_get_coarse_ns()` rather than `bpf_ktime_get_ns()`: the
    /// fine clock reads the clocksource (about 35 ns a call measured in a
    /// VM, where it was a fifth of the established path), the coarse one a
    /// timekeeper field. Same clock base; last-seen times and idle timeouts
    /// need no better than a tick (1-10 ms).
    #[inline(always)]
    pub fn now(&mut self) -> u64 {
        if self.now == 0 {
            // SAFETY: the helper takes no arguments.
            self.now = unsafe { bpf_ktime_get_coarse_ns() };
        }
        self.now
    }
}

/// [`Meta::tail`]: nothing left to another program.
pub const TAIL_NONE: u8 = 0;
/// [`Meta::tail`]: a new connection (CT holds none), judged and recorded
/// by `open_from_pod` / `open_to_pod`.
pub const TAIL_OPEN: u8 = 1;
/// [`Meta::tail`]: a Service connection whose egress side is stale,
/// judged on its backend by `open_from_pod` / `open_to_pod`.
pub const TAIL_REJUDGE: u8 = 2;
/// [`Meta::tail`], set by `open_from_pod`: this packet's new connection
/// was judged allowed at its egress, and its CT entry is not written yet.
/// With host routing, `deliver` records it with the destination's ingress
/// side in one insert (or writes nothing when that side denies it);
/// whoever does not deliver the packet records the egress side alone
/// (`conntrack::record_pending`).
///
/// verifier: a value of `tail`, which `from_pod` resets anyway, rather
/// than a flag of its own: one more store in `from_pod`'s reset took its
/// verification past the complexity limit.
pub const TAIL_PENDING: u8 = 3;

/// Adds `n` to flow counter `stat` on this CPU.
#[inline(always)]
fn stat(stat: FlowStat, n: u64) {
    if let Some(counter) = FLOW_STATS.get_ptr_mut(stat as u32) {
        // SAFETY: a per-CPU array slot is only touched by programs running
        // on this CPU, which do not preempt each other mid-update.
        unsafe { *counter += n };
    }
}

/// Accounts the packet whose parse result and verdict-path [`Meta`] are in
/// `p`: `len` bytes, dropped for `dropped` or passed. Sends the
/// notifications FLOW_CONFIG asks for.
#[inline(always)]
pub fn account(p: &mut Parsed, len: u64, dropped: Option<DropReason>) {
    if !p.flow.ready {
        return;
    }
    let Some(config) = FLOW_CONFIG.get(0) else {
        return;
    };
    let flags = config.flags;
    if flags & FLOW_CONFIG_ACCOUNTING == 0 {
        return;
    }
    let now = p.flow.now();
    // The flow key in place: the tuple as sent, or for a reply the
    // original-direction tuple conntrack found (`p.rev`).
    if p.flow.reply {
        copy_into(&p.rev, &mut p.key.tuple);
    }
    p.key.ifindex = p.flow.ifindex;
    // SAFETY: `side` and the three bytes of padding form the aligned word
    // at offset 44 of the 8-aligned key.
    unsafe {
        (&raw mut p.key.side)
            .cast::<u32>()
            .write(u32::from(p.flow.side));
    }
    // verifier: one call site per map, so the map pointer is a constant at
    // each and the verifier inlines the hash lookup (a pointer chosen at
    // run time would make it call the generic helper).
    p.flow.first_drop = false;
    if config.slot == 0 {
        into_table(&FLOWS_0, p, len, dropped, now);
    } else {
        into_table(&FLOWS_1, p, len, dropped, now);
    }
    stat(FlowStat::PacketsAccounted, 1);
    stat(FlowStat::BytesAccounted, len);
    // A drop notification per flow and interval, not per packet: a flood
    // of denied packets must not become a flood of events (the counts are
    // in the flow record either way).
    let kind = match dropped {
        Some(_) if p.flow.first_drop && flags & FLOW_CONFIG_EVENTS_DROP != 0 => EventKind::Drop,
        None if p.flow.new && flags & FLOW_CONFIG_EVENTS_NEW != 0 => EventKind::NewFlow,
        _ => return,
    };
    delta(p, len, dropped, now);
    if send(p, kind) {
        stat(FlowStat::EventsSent, 1);
    } else {
        stat(FlowStat::EventsLost, 1);
    }
}

/// Counts the packet into `table`: updates its entry, or inserts one, or
/// sends the delta to the ring when the table cannot take it. Sets
/// `p.flow.first_drop` when the packet is a drop and the entry had none
/// before (the first drop of the flow this interval).
#[inline(always)]
fn into_table(
    table: &HashMap<FlowKey, FlowValue>,
    p: &mut Parsed,
    len: u64,
    dropped: Option<DropReason>,
    now: u64,
) {
    if let Some(v) = table.get_ptr_mut(&p.key) {
        update(v, p, len, dropped, now);
        return;
    }
    delta(p, len, dropped, now);
    match table.insert(&p.key, &p.fval, u64::from(BPF_NOEXIST)) {
        Ok(()) => {
            stat(FlowStat::EntriesCreated, 1);
            p.flow.first_drop = dropped.is_some();
            return;
        }
        Err(e) if e == -EEXIST => {
            // Another CPU inserted the flow between the lookup and the
            // insert: add to its entry.
            if let Some(v) = table.get_ptr_mut(&p.key) {
                update(v, p, len, dropped, now);
                return;
            }
            stat(FlowStat::InsertFailed, 1);
        }
        Err(e) if e == -E2BIG => stat(FlowStat::TableFull, 1),
        Err(_) => stat(FlowStat::InsertFailed, 1),
    }
    if send(p, EventKind::FlowRecord) {
        stat(FlowStat::FallbackSent, 1);
    } else {
        stat(FlowStat::FallbackLost, 1);
        stat(FlowStat::LostPackets, 1);
        stat(FlowStat::LostBytes, len);
    }
    // The fallback record is the notification: `first_drop` stays false.
}

/// Adds the packet to an existing entry; for a drop, notes in
/// `p.flow.first_drop` whether the entry had none before (read before the
/// add: two CPUs dropping the flow's first packets at once may both see
/// none, and both notify).
#[inline(always)]
fn update(v: *mut FlowValue, p: &mut Parsed, len: u64, dropped: Option<DropReason>, now: u64) {
    if dropped.is_some() {
        // SAFETY: as below; a plain read of a counter other CPUs add to.
        p.flow.first_drop =
            unsafe { core::ptr::read_volatile(&raw const (*v).dropped_packets) } == 0;
    }
    let m = &p.flow;
    // SAFETY: a flow table value stays valid for this program run (RCU;
    // userspace deletes only from the idle table). Counters change only by
    // atomic adds and flags by atomic ORs, so concurrent CPUs lose nothing;
    // the other fields are whole stores of the latest packet's values.
    unsafe {
        let (packets, bytes) = match dropped {
            Some(r) => {
                (*v).drop_reason = r as u8;
                (&raw mut (*v).dropped_packets, &raw mut (*v).dropped_bytes)
            }
            None if m.reply => (&raw mut (*v).packets_reply, &raw mut (*v).bytes_reply),
            None => (&raw mut (*v).packets_orig, &raw mut (*v).bytes_orig),
        };
        atomic::add(packets, 1);
        atomic::add(bytes, len);
        // Stores only when the value changes: fewer dirtied cache lines
        // when several CPUs carry the flow.
        if (*v).last_seen_ns != now {
            (*v).last_seen_ns = now;
        }
        if (*v).revision != m.revision {
            (*v).revision = m.revision;
        }
        if dropped.is_none() && (*v).rule != m.rule {
            (*v).rule = m.rule;
        }
        // TCP flags of this direction and the entry flags share the 32-bit
        // word at `drop_reason` (bytes: reason, flags orig, flags reply,
        // FLOW_F_*): one atomic OR, only when a bit is missing.
        let word = flag_bits(p);
        let at = (&raw mut (*v).drop_reason).cast::<u32>();
        if core::ptr::read_volatile(at) & word != word {
            atomic::or(at, word);
        }
    }
}

/// The bits the packet sets in the 32-bit word at `FlowValue::drop_reason`
/// (little-endian: byte 1 TCP flags orig, byte 2 TCP flags reply, byte 3
/// `FLOW_F_*` other than `FLOW_F_NEW`, which only a new entry carries).
#[inline(always)]
fn flag_bits(p: &Parsed) -> u32 {
    let tcp = u32::from(p.tcp_flags);
    let tcp = if p.flow.reply { tcp << 16 } else { tcp << 8 };
    let mut f = u32::from(p.flow.xdp | p.flow.audit);
    if p.flow.unenforced {
        f |= u32::from(FLOW_F_UNENFORCED);
    }
    tcp | f << 24
}

/// Writes the packet's own contribution into `p.fval` (a new entry's
/// value, or an event's).
#[inline(always)]
fn delta(p: &mut Parsed, len: u64, dropped: Option<DropReason>, now: u64) {
    let m = &p.flow;
    let v = &mut p.fval;
    v.first_seen_ns = now;
    v.last_seen_ns = now;
    v.packets_orig = 0;
    v.bytes_orig = 0;
    v.packets_reply = 0;
    v.bytes_reply = 0;
    v.dropped_packets = 0;
    v.dropped_bytes = 0;
    v.revision = m.revision;
    v.tcp_flags_orig = 0;
    v.tcp_flags_reply = 0;
    match dropped {
        Some(r) => {
            v.dropped_packets = 1;
            v.dropped_bytes = len;
            v.drop_reason = r as u8;
            // A policy drop's denying rule (`RULE_F_DENY` set; see
            // `check_side`); userspace reads a drop's rule only then.
            v.rule = m.rule;
        }
        None => {
            v.drop_reason = 0;
            v.rule = m.rule;
            if m.reply {
                v.packets_reply = 1;
                v.bytes_reply = len;
            } else {
                v.packets_orig = 1;
                v.bytes_orig = len;
            }
        }
    }
    if m.reply {
        v.tcp_flags_reply = p.tcp_flags;
    } else {
        v.tcp_flags_orig = p.tcp_flags;
    }
    let mut flags = m.xdp | m.audit;
    if m.unenforced {
        flags |= FLOW_F_UNENFORCED;
    }
    if m.new && dropped.is_none() {
        flags |= FLOW_F_NEW;
    }
    v.flags = flags;
}

/// Sends `p.key` and `p.fval` as an event of `kind`; `false` when the ring
/// is full.
#[inline(always)]
fn send(p: &Parsed, kind: EventKind) -> bool {
    let Some(mut entry) = EVENTS.reserve::<FlowEvent>(0) else {
        return false;
    };
    let e = entry.as_mut_ptr();
    // SAFETY: `e` points at reserved ring memory of `size_of::<FlowEvent>()`
    // bytes; every field is written before submit.
    unsafe {
        (*e).key = p.key;
        (*e).value = p.fval;
        (*e).kind = kind as u8;
        (*e).hook = p.flow.hook;
        (*e)._pad = [0; 6];
    }
    entry.submit(0);
    true
}

/// Accounts a packet dropped by `xdp_prefilter` (flagged `FLOW_F_XDP`).
#[inline(always)]
pub fn account_xdp_drop(p: &mut Parsed, len: u64, reason: DropReason) {
    p.flow.xdp = FLOW_F_XDP;
    account(p, len, Some(reason));
}
