//! The flow cache: merges the kernel's per-interval deltas (drained table
//! entries and `FlowRecord` fallback events alike) into flows, and decides
//! when a flow's record is written: TCP close (FIN both ways, or RST, after
//! a short linger for the last ACKs), idle timeout, active timeout (an
//! interim record; the flow stays cached), cache full (the least recently
//! seen of a few sampled flows is exported early, nothing is dropped), and
//! shutdown. Pure: time is passed in (`CLOCK_MONOTONIC` ns, the kernel's
//! clock).

use indexmap::IndexMap;
use std::time::Duration;

use bulkhead_common::{
    FLOW_F_NEW, FlowKey, FlowValue, PROTO_TCP, RULE_NONE, ServiceBackend, rule_denies, tcp_flags,
};

use super::record::EndReason;

/// Timeouts and size of the flow cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AggregateConfig {
    /// A flow without packets for this long is finished (`idle`).
    pub idle_timeout: Duration,
    /// A flow gets an interim record (`active`) after this long without one.
    pub active_timeout: Duration,
    /// A closed TCP flow is finished this long after its last packet (late
    /// ACKs still merge into it).
    pub close_linger: Duration,
    /// Most flows cached; beyond it flows are exported early (`evicted`).
    pub capacity: usize,
}

impl Default for AggregateConfig {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(15),
            active_timeout: Duration::from_secs(60),
            close_linger: Duration::from_secs(1),
            capacity: 262_144,
        }
    }
}

/// A flow (or a part of one) whose record is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Finished {
    /// The flow.
    pub key: FlowKey,
    /// Counts since the flow's previous record; `first_seen_ns` is the
    /// first packet since then, flags and verdict data cover the flow.
    pub value: FlowValue,
    /// The revision `value.rule` belongs to.
    pub rule_revision: u64,
    /// Why now.
    pub end_reason: EndReason,
    /// For a connection to a Service frontend: its backend, as last read.
    pub service: Option<ServiceBackend>,
}

/// Counters of the cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Deltas merged.
    pub deltas: u64,
    /// Packets (passed and dropped) merged.
    pub packets: u64,
    /// Bytes merged.
    pub bytes: u64,
    /// Records produced (interim ones included).
    pub records: u64,
    /// Packets in produced records.
    pub packets_out: u64,
    /// Bytes in produced records.
    pub bytes_out: u64,
    /// Flows exported early because the cache was full.
    pub evicted: u64,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    /// Counts since the last record; `first_seen_ns == 0`: no packet yet.
    value: FlowValue,
    rule_revision: u64,
    /// Last packet of the flow (survives interim records).
    last_seen_ns: u64,
    /// When the last record was written (or the flow started).
    last_record_ns: u64,
    closed: bool,
    /// The backend of a connection to a Service frontend.
    service: Option<ServiceBackend>,
}

/// Packets and bytes of a value (passed and dropped).
fn totals(v: &FlowValue) -> (u64, u64) {
    (
        v.packets_orig + v.packets_reply + v.dropped_packets,
        v.bytes_orig + v.bytes_reply + v.dropped_bytes,
    )
}

/// The flow cache.
#[derive(Debug)]
pub struct FlowCache {
    config: AggregateConfig,
    // An IndexMap, not a HashMap: eviction samples random positions in
    // O(1). (Sampling a HashMap by iterating from its start degrades as
    // removals leave empty buckets there: ×18 per merge at capacity.)
    entries: IndexMap<FlowKey, Entry, foldhash::fast::RandomState>,
    stats: CacheStats,
    /// xorshift64 state for eviction sampling.
    rng: u64,
}

/// Flows sampled to pick one to evict.
const EVICT_SAMPLE: usize = 8;

impl FlowCache {
    /// An empty cache.
    pub fn new(config: AggregateConfig) -> Self {
        Self {
            entries: IndexMap::with_capacity_and_hasher(
                config.capacity.min(65_536),
                foldhash::fast::RandomState::default(),
            ),
            config,
            stats: CacheStats::default(),
            rng: 0x9E37_79B9_7F4A_7C15,
        }
    }

    /// Flows cached.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no flow is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The counters.
    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    /// The configuration.
    pub fn config(&self) -> &AggregateConfig {
        &self.config
    }

    /// Merges one delta. Records due at once (a flow evicted to make room,
    /// or a closed flow whose tuple starts a new connection) go to `out`.
    pub fn merge(&mut self, key: FlowKey, d: &FlowValue, out: &mut Vec<Finished>) {
        let (p, b) = totals(d);
        self.stats.deltas += 1;
        self.stats.packets += p;
        self.stats.bytes += b;
        if let Some(e) = self.entries.get_mut(&key) {
            if !(e.closed && d.flags & FLOW_F_NEW != 0) {
                apply(e, &key, d);
                return;
            }
            // The tuple was reused by a new connection.
            let old = self.entries.swap_remove(&key).expect("present");
            emit(&mut self.stats, key, &old, EndReason::Closed, out);
        } else if self.entries.len() >= self.config.capacity.max(1) {
            self.evict(out);
        }
        let mut e = Entry {
            value: FlowValue {
                rule: RULE_NONE,
                ..FlowValue::default()
            },
            rule_revision: d.revision,
            last_seen_ns: d.last_seen_ns,
            last_record_ns: d.first_seen_ns,
            closed: false,
            service: None,
        };
        apply(&mut e, &key, d);
        self.entries.insert(key, e);
    }

    /// Whether the backend of `key` (a connection to a Service frontend)
    /// should be read again before merging `d`: the flow is new to the
    /// cache or has none yet, `d` starts a new connection, was judged
    /// under another revision or dropped packets (a connection the
    /// dataplane judged afresh, whose entry it rewrote). Otherwise a flow's
    /// backend and the verdict on it stay.
    pub fn wants_backend(&self, key: &FlowKey, d: &FlowValue) -> bool {
        self.entries.get(key).is_none_or(|e| {
            e.service.is_none()
                || d.flags & FLOW_F_NEW != 0
                || d.revision != e.value.revision
                || d.dropped_packets > 0
        })
    }

    /// Sets the backend of a cached flow (after [`Self::merge`]).
    pub fn set_backend(&mut self, key: &FlowKey, backend: ServiceBackend) {
        if let Some(e) = self.entries.get_mut(key) {
            e.service = Some(backend);
        }
    }

    /// Exports the least recently seen of a few sampled flows.
    fn evict(&mut self, out: &mut Vec<Finished>) {
        let n = self.entries.len();
        let mut oldest: Option<(usize, u64)> = None;
        for _ in 0..EVICT_SAMPLE.min(n) {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            let i = (self.rng % n as u64) as usize;
            let seen = self.entries[i].last_seen_ns;
            if oldest.is_none_or(|(_, s)| seen < s) {
                oldest = Some((i, seen));
            }
        }
        let Some((i, _)) = oldest else {
            return;
        };
        let (key, e) = self.entries.swap_remove_index(i).expect("sampled");
        self.stats.evicted += 1;
        emit(&mut self.stats, key, &e, EndReason::Evicted, out);
    }

    /// Finishes closed and idle flows and writes interim records of long
    /// ones, as of `now_ns`.
    pub fn expire(&mut self, now_ns: u64, out: &mut Vec<Finished>) {
        let idle = self.config.idle_timeout.as_nanos() as u64;
        let active = self.config.active_timeout.as_nanos() as u64;
        let linger = self.config.close_linger.as_nanos() as u64;
        let stats = &mut self.stats;
        self.entries.retain(|k, e| {
            let quiet = now_ns.saturating_sub(e.last_seen_ns);
            if e.closed && quiet >= linger {
                emit(stats, *k, e, EndReason::Closed, out);
                false
            } else if quiet >= idle {
                emit(stats, *k, e, EndReason::Idle, out);
                false
            } else if now_ns.saturating_sub(e.last_record_ns) >= active {
                if e.value.first_seen_ns != 0 {
                    emit(stats, *k, e, EndReason::Active, out);
                    reset(e);
                }
                e.last_record_ns = now_ns;
                true
            } else {
                true
            }
        });
    }

    /// Finishes every flow (shutdown).
    pub fn finish_all(&mut self, reason: EndReason, out: &mut Vec<Finished>) {
        for (k, e) in self.entries.drain(..) {
            emit(&mut self.stats, k, &e, reason, out);
        }
    }
}

/// Appends the record of `e` to `out`.
fn emit(
    stats: &mut CacheStats,
    key: FlowKey,
    e: &Entry,
    reason: EndReason,
    out: &mut Vec<Finished>,
) {
    let mut value = e.value;
    if value.first_seen_ns == 0 {
        // No packet since the last record: an end marker.
        value.first_seen_ns = e.last_seen_ns;
    }
    value.last_seen_ns = value.last_seen_ns.max(value.first_seen_ns);
    let (p, b) = totals(&value);
    stats.records += 1;
    stats.packets_out += p;
    stats.bytes_out += b;
    out.push(Finished {
        key,
        value,
        rule_revision: e.rule_revision,
        end_reason: reason,
        service: e.service,
    });
}

/// Adds a delta to a flow.
fn apply(e: &mut Entry, key: &FlowKey, d: &FlowValue) {
    let v = &mut e.value;
    if v.first_seen_ns == 0 || (d.first_seen_ns != 0 && d.first_seen_ns < v.first_seen_ns) {
        v.first_seen_ns = d.first_seen_ns;
    }
    v.last_seen_ns = v.last_seen_ns.max(d.last_seen_ns);
    e.last_seen_ns = e.last_seen_ns.max(d.last_seen_ns);
    v.packets_orig += d.packets_orig;
    v.bytes_orig += d.bytes_orig;
    v.packets_reply += d.packets_reply;
    v.bytes_reply += d.bytes_reply;
    v.dropped_packets += d.dropped_packets;
    v.dropped_bytes += d.dropped_bytes;
    v.tcp_flags_orig |= d.tcp_flags_orig;
    v.tcp_flags_reply |= d.tcp_flags_reply;
    v.flags |= d.flags;
    v.revision = v.revision.max(d.revision);
    // The rule follows passed packets, and drops by a rule (a
    // cluster-admin Deny, `RULE_F_DENY` set): the latest decision.
    if d.packets_orig + d.packets_reply > 0 || (d.dropped_packets > 0 && rule_denies(d.rule)) {
        v.rule = d.rule;
        e.rule_revision = d.revision;
    }
    if d.drop_reason != 0 {
        v.drop_reason = d.drop_reason;
    }
    if key.tuple.proto == PROTO_TCP {
        let (o, r) = (v.tcp_flags_orig, v.tcp_flags_reply);
        e.closed =
            (o | r) & tcp_flags::RST != 0 || (o & tcp_flags::FIN != 0 && r & tcp_flags::FIN != 0);
    }
}

/// Clears the counts after an interim record; verdict data, flags and
/// timestamps of the flow stay.
fn reset(e: &mut Entry) {
    let v = &mut e.value;
    v.first_seen_ns = 0;
    v.last_seen_ns = 0;
    v.packets_orig = 0;
    v.bytes_orig = 0;
    v.packets_reply = 0;
    v.bytes_reply = 0;
    v.dropped_packets = 0;
    v.dropped_bytes = 0;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrich::tests::key;
    use bulkhead_common::{FLOW_SIDE_EGRESS, PROTO_UDP};

    const S: u64 = 1_000_000_000;

    fn delta(first: u64, last: u64, po: u64, pr: u64, fo: u8, fr: u8) -> FlowValue {
        FlowValue {
            first_seen_ns: first,
            last_seen_ns: last,
            packets_orig: po,
            bytes_orig: po * 100,
            packets_reply: pr,
            bytes_reply: pr * 100,
            revision: 2,
            rule: 5,
            tcp_flags_orig: fo,
            tcp_flags_reply: fr,
            ..Default::default()
        }
    }

    fn cache() -> FlowCache {
        FlowCache::new(AggregateConfig {
            idle_timeout: Duration::from_secs(15),
            active_timeout: Duration::from_secs(60),
            close_linger: Duration::from_secs(1),
            capacity: 4,
        })
    }

    #[test]
    fn merges_deltas_across_drains_and_closes_on_fin() {
        let mut c = cache();
        let k = key(FLOW_SIDE_EGRESS, 11);
        let mut out = Vec::new();
        c.merge(k, &delta(10 * S, 10 * S + 5, 1, 1, 0x02, 0x12), &mut out);
        c.expire(11 * S, &mut out);
        c.merge(k, &delta(11 * S, 12 * S, 5, 4, 0x11, 0x10), &mut out);
        c.expire(12 * S, &mut out);
        assert!(out.is_empty());
        c.merge(k, &delta(12 * S, 13 * S, 1, 1, 0x10, 0x11), &mut out);
        c.expire(13 * S, &mut out);
        assert!(out.is_empty(), "lingers for late ACKs");
        c.expire(14 * S, &mut out);
        assert_eq!(out.len(), 1);
        let f = out[0];
        assert_eq!(f.end_reason, EndReason::Closed);
        assert_eq!(f.value.packets_orig, 7);
        assert_eq!(f.value.packets_reply, 6);
        assert_eq!(f.value.bytes_orig, 700);
        assert_eq!(f.value.first_seen_ns, 10 * S);
        assert_eq!(f.value.last_seen_ns, 13 * S);
        assert_eq!(f.value.tcp_flags_orig, 0x13);
        assert_eq!(f.value.rule, 5);
        assert!(c.is_empty());
        assert_eq!(c.stats().packets, c.stats().packets_out);
    }

    #[test]
    fn rst_closes() {
        let mut c = cache();
        let k = key(FLOW_SIDE_EGRESS, 11);
        let mut out = Vec::new();
        c.merge(k, &delta(S, S, 1, 0, 0x02, 0), &mut out);
        c.merge(k, &delta(S, S, 0, 1, 0, 0x04), &mut out);
        c.expire(3 * S, &mut out);
        assert_eq!(out[0].end_reason, EndReason::Closed);
    }

    #[test]
    fn idle_and_active_timeouts() {
        let mut c = cache();
        let mut udp = key(FLOW_SIDE_EGRESS, 11);
        udp.tuple.proto = PROTO_UDP;
        let mut out = Vec::new();
        // A long flow: a packet every 10 s from t = 0 to 130 s.
        for t in 0..=13u64 {
            c.merge(
                udp,
                &delta(t * 10 * S + 1, t * 10 * S + 1, 1, 1, 0, 0),
                &mut out,
            );
            c.expire(t * 10 * S + 2, &mut out);
        }
        let active: Vec<_> = out
            .iter()
            .filter(|f| f.end_reason == EndReason::Active)
            .collect();
        assert_eq!(active.len(), 2, "{out:?}");
        assert_eq!(active[0].value.packets_orig, 7);
        assert_eq!(c.len(), 1);
        c.expire(200 * S, &mut out);
        let last = out.last().unwrap();
        assert_eq!(last.end_reason, EndReason::Idle);
        let total: u64 = out.iter().map(|f| f.value.packets_orig).sum();
        assert_eq!(total, 14);
        assert_eq!(c.stats().packets, c.stats().packets_out);
    }

    #[test]
    fn full_cache_exports_instead_of_dropping() {
        let mut c = cache();
        let mut out = Vec::new();
        for i in 0..10u16 {
            let mut k = key(FLOW_SIDE_EGRESS, 11);
            k.tuple.sport = 1000 + i;
            c.merge(
                k,
                &delta(S + i as u64, S + i as u64, 1, 0, 0x02, 0),
                &mut out,
            );
        }
        assert_eq!(c.len(), 4);
        assert_eq!(out.len(), 6);
        assert!(out.iter().all(|f| f.end_reason == EndReason::Evicted));
        c.finish_all(EndReason::AgentStop, &mut out);
        assert_eq!(out.len(), 10);
        assert_eq!(c.stats().evicted, 6);
        assert_eq!(c.stats().packets, c.stats().packets_out);
    }

    #[test]
    fn reused_tuple_after_close_starts_a_new_flow() {
        let mut c = cache();
        let k = key(FLOW_SIDE_EGRESS, 11);
        let mut out = Vec::new();
        c.merge(k, &delta(S, S, 2, 2, 0x03, 0x13), &mut out);
        let mut d = delta(S + 10, S + 10, 1, 0, 0x02, 0);
        d.flags = FLOW_F_NEW;
        c.merge(k, &d, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].value.packets_orig, 2);
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn rule_follows_passed_packets_and_drop_reason_sticks() {
        let mut c = cache();
        let k = key(FLOW_SIDE_EGRESS, 11);
        let mut out = Vec::new();
        c.merge(k, &delta(S, S, 1, 0, 0, 0), &mut out);
        let drop = FlowValue {
            first_seen_ns: 2 * S,
            last_seen_ns: 2 * S,
            dropped_packets: 1,
            dropped_bytes: 60,
            drop_reason: 3,
            revision: 3,
            rule: RULE_NONE,
            ..Default::default()
        };
        c.merge(k, &drop, &mut out);
        c.finish_all(EndReason::AgentStop, &mut out);
        let f = out[0];
        assert_eq!((f.value.rule, f.rule_revision), (5, 2));
        assert_eq!((f.value.revision, f.value.drop_reason), (3, 3));
    }

    /// A drop by a rule (a cluster-admin Deny: `RULE_F_DENY` set) keeps
    /// that rule, so the record can name it.
    #[test]
    fn a_drop_by_a_rule_keeps_the_rule() {
        let mut c = cache();
        let k = key(FLOW_SIDE_EGRESS, 11);
        let mut out = Vec::new();
        let denied = 7 | bulkhead_common::RULE_F_DENY;
        let drop = FlowValue {
            first_seen_ns: S,
            last_seen_ns: S,
            dropped_packets: 1,
            dropped_bytes: 60,
            drop_reason: 1,
            revision: 4,
            rule: denied,
            ..Default::default()
        };
        c.merge(k, &drop, &mut out);
        c.finish_all(EndReason::AgentStop, &mut out);
        assert_eq!((out[0].value.rule, out[0].rule_revision), (denied, 4));
    }
}
