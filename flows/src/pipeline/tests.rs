//! The pipeline against a fake kernel that keeps FLOW_STATS the way the
//! programs do: a bounded table, a bounded ring for fallback records, and
//! lost records counted.

use std::collections::HashMap;
use std::sync::RwLock;

use bulkhead_common::{
    CtKey, DropReason, FLOW_F_NEW, FLOW_SIDE_EGRESS, FLOW_SIDE_INGRESS, FLOW_STATS_MAX, PROTO_UDP,
    RULE_NONE,
};

use super::*;
use crate::clock::ManualClock;
use crate::enrich::tests::{db_backend, enricher, key, service_enricher, to_frontend};
use crate::export::jsonl::{JsonlConfig, JsonlTarget};
use crate::filter::Filter;
use crate::record::FlowVerdict;
use crate::source::FlowSourceError;

const S: u64 = 1_000_000_000;

#[derive(Default)]
struct Kernel {
    table: HashMap<FlowKey, FlowValue>,
    table_capacity: usize,
    ring: Vec<FlowEvent>,
    ring_capacity: usize,
    stats: KernelFlowStats,
    /// SERVICE_CT.
    services: HashMap<CtKey, ServiceBackend>,
    /// SERVICE_CT lookups made.
    service_lookups: u64,
}

impl Kernel {
    fn new(table_capacity: usize, ring_capacity: usize) -> Arc<Mutex<Self>> {
        Arc::new(Mutex::new(Kernel {
            table_capacity,
            ring_capacity,
            stats: [0; FLOW_STATS_MAX as usize],
            ..Default::default()
        }))
    }

    fn stat(&mut self, s: FlowStat, n: u64) {
        self.stats[s as usize] += n;
    }

    /// One packet of `key` at `now`: passed in the original or reply
    /// direction, or dropped.
    fn packet(&mut self, key: FlowKey, now: u64, reply: bool, drop: Option<DropReason>, flags: u8) {
        let len = 100u64;
        self.stat(FlowStat::PacketsAccounted, 1);
        self.stat(FlowStat::BytesAccounted, len);
        let mut d = FlowValue {
            first_seen_ns: now,
            last_seen_ns: now,
            revision: 3,
            rule: RULE_NONE,
            ..Default::default()
        };
        match (drop, reply) {
            (Some(r), _) => {
                d.dropped_packets = 1;
                d.dropped_bytes = len;
                d.drop_reason = r as u8;
            }
            (None, false) => {
                d.packets_orig = 1;
                d.bytes_orig = len;
                d.tcp_flags_orig = flags;
                d.rule = 0;
            }
            (None, true) => {
                d.packets_reply = 1;
                d.bytes_reply = len;
                d.tcp_flags_reply = flags;
                d.rule = 0;
            }
        }
        if let Some(v) = self.table.get_mut(&key) {
            v.last_seen_ns = now;
            v.packets_orig += d.packets_orig;
            v.bytes_orig += d.bytes_orig;
            v.packets_reply += d.packets_reply;
            v.bytes_reply += d.bytes_reply;
            v.dropped_packets += d.dropped_packets;
            v.dropped_bytes += d.dropped_bytes;
            v.tcp_flags_orig |= d.tcp_flags_orig;
            v.tcp_flags_reply |= d.tcp_flags_reply;
            if d.drop_reason != 0 {
                v.drop_reason = d.drop_reason;
            } else {
                v.rule = d.rule;
            }
        } else if self.table.len() < self.table_capacity {
            d.flags = FLOW_F_NEW;
            self.stat(FlowStat::EntriesCreated, 1);
            self.table.insert(key, d);
        } else if self.ring.len() < self.ring_capacity {
            self.stat(FlowStat::TableFull, 1);
            self.stat(FlowStat::FallbackSent, 1);
            self.ring.push(FlowEvent {
                key,
                value: d,
                kind: EventKind::FlowRecord as u8,
                hook: 1,
                _pad: [0; 6],
            });
        } else {
            self.stat(FlowStat::TableFull, 1);
            self.stat(FlowStat::FallbackLost, 1);
            self.stat(FlowStat::LostPackets, 1);
            self.stat(FlowStat::LostBytes, len);
        }
    }

    fn notify(&mut self, key: FlowKey, kind: EventKind, value: FlowValue) {
        if self.ring.len() < self.ring_capacity {
            self.stat(FlowStat::EventsSent, 1);
            self.ring.push(FlowEvent {
                key,
                value,
                kind: kind as u8,
                hook: 1,
                _pad: [0; 6],
            });
        } else {
            self.stat(FlowStat::EventsLost, 1);
        }
    }
}

struct FakeSource(Arc<Mutex<Kernel>>);

impl FlowSource for FakeSource {
    fn drain(&mut self, out: &mut Vec<(FlowKey, FlowValue)>) -> Result<(), FlowSourceError> {
        out.extend(self.0.lock().unwrap().table.drain());
        Ok(())
    }
    fn drain_all(&mut self, out: &mut Vec<(FlowKey, FlowValue)>) -> Result<(), FlowSourceError> {
        self.drain(out)
    }
    fn events(
        &mut self,
        timeout: Duration,
        out: &mut Vec<FlowEvent>,
    ) -> Result<(), FlowSourceError> {
        let got: Vec<FlowEvent> = self.0.lock().unwrap().ring.drain(..).collect();
        if got.is_empty() {
            std::thread::sleep(timeout.min(Duration::from_millis(2)));
        }
        out.extend(got);
        Ok(())
    }
    fn stats(&mut self) -> Result<KernelFlowStats, FlowSourceError> {
        Ok(self.0.lock().unwrap().stats)
    }
    fn service_backend(&mut self, orig: &CtKey) -> Result<Option<ServiceBackend>, FlowSourceError> {
        let mut k = self.0.lock().unwrap();
        k.service_lookups += 1;
        Ok(k.services.get(orig).copied())
    }
}

/// An exporter that keeps what it gets.
#[derive(Clone, Default)]
struct Keep(Arc<Mutex<Vec<Arc<FlowRecord>>>>);

impl Exporter for Keep {
    fn name(&self) -> &'static str {
        "keep"
    }
    fn export(&mut self, record: &Arc<FlowRecord>) {
        self.0.lock().unwrap().push(record.clone());
    }
    fn flush(&mut self) {}
    fn stats(&self) -> ExportStats {
        let n = self.0.lock().unwrap().len() as u64;
        ExportStats {
            exporter: "keep".into(),
            submitted: n,
            exported: n,
            ..Default::default()
        }
    }
    fn finish(self: Box<Self>) -> ExportStats {
        self.stats()
    }
}

struct Setup {
    kernel: Arc<Mutex<Kernel>>,
    clock: Arc<ManualClock>,
    kept: Keep,
    handle: PipelineHandle,
}

fn setup(table: usize, ring: usize, tweak: impl FnOnce(&mut PipelineConfig)) -> Setup {
    setup_with(enricher(), table, ring, tweak)
}

fn setup_with(
    enricher: Enricher,
    table: usize,
    ring: usize,
    tweak: impl FnOnce(&mut PipelineConfig),
) -> Setup {
    let kernel = Kernel::new(table, ring);
    let clock = ManualClock::new(100 * S, 1_000 * S as i64);
    let mut config = PipelineConfig::new("node-a");
    config.drain_interval = Duration::from_millis(5);
    config.clock = clock.clone();
    tweak(&mut config);
    let kept = Keep::default();
    let mut exporters: Vec<Box<dyn Exporter>> = vec![Box::new(kept.clone())];
    if let Some(j) = config.jsonl.clone() {
        exporters.push(Box::new(JsonlExporter::start(j).unwrap()));
    }
    let handle = Pipeline::start_with(
        Box::new(FakeSource(kernel.clone())),
        Arc::new(RwLock::new(enricher)),
        config,
        exporters,
    )
    .unwrap();
    Setup {
        kernel,
        clock,
        kept,
        handle,
    }
}

/// Waits until `f` holds (the collector runs on its own thread).
fn eventually(mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(10), "timed out");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn drained(s: &Setup) -> bool {
    s.kernel.lock().unwrap().table.is_empty() && s.kernel.lock().unwrap().ring.is_empty()
}

/// Waits until the collector took everything and ran a few more drains.
fn settle(s: &Setup) {
    eventually(|| drained(s));
    std::thread::sleep(Duration::from_millis(30));
}

#[test]
fn aggregates_across_drains_and_closes_tcp() {
    let s = setup(100, 100, |_| {});
    let k = key(FLOW_SIDE_EGRESS, 11);
    let now = || s.clock.monotonic_ns();
    s.kernel.lock().unwrap().packet(k, now(), false, None, 0x02);
    s.kernel.lock().unwrap().packet(k, now(), true, None, 0x12);
    settle(&s);
    s.clock.advance(S / 10);
    for _ in 0..3 {
        s.kernel.lock().unwrap().packet(k, now(), false, None, 0x10);
    }
    settle(&s);
    s.clock.advance(S / 10);
    s.kernel.lock().unwrap().packet(k, now(), false, None, 0x11);
    s.kernel.lock().unwrap().packet(k, now(), true, None, 0x11);
    settle(&s);
    assert!(s.kept.0.lock().unwrap().is_empty(), "lingers after FIN");
    s.clock.advance(2 * S);
    eventually(|| !s.kept.0.lock().unwrap().is_empty());
    let r = s.kept.0.lock().unwrap()[0].clone();
    assert_eq!(r.end_reason, Some(EndReason::Closed));
    assert_eq!((r.packets.orig, r.packets.reply), (5, 2));
    assert_eq!((r.bytes.orig, r.bytes.reply), (500, 200));
    assert_eq!(&*r.node, "node-a");
    assert_eq!(r.start.unix_ms(), 1_100_000);
    assert_eq!(r.end.unix_ms(), 1_100_200);
    assert_eq!(&*r.endpoint.as_ref().unwrap().pod, "web-5d9f-abcde");
    assert_eq!(r.verdict, FlowVerdict::Allowed);
    eventually(|| s.handle.history.len() == 1);
    let a = s.handle.stop();
    assert!(a.holds(), "{a:#?}");
    assert_eq!(a.cache.records, 1);
}

/// The client's record of a connection through a Service names the
/// backend read from SERVICE_CT while the flow was drained (the entry may
/// be gone when the record is due), and later drains read it again only
/// when the verdict on it may have changed. A drop notification names it
/// too.
#[test]
fn service_records_name_the_backend_read_at_drain_time() {
    let s = setup_with(service_enricher(), 100, 100, |c| {
        c.aggregate.idle_timeout = Duration::from_secs(15);
    });
    let k = to_frontend([10, 96, 0, 10], 80);
    let now = || s.clock.monotonic_ns();
    s.kernel
        .lock()
        .unwrap()
        .services
        .insert(k.tuple, db_backend(true));
    s.kernel.lock().unwrap().packet(k, now(), false, None, 0x02);
    settle(&s);
    assert_eq!(s.kernel.lock().unwrap().service_lookups, 1);
    for _ in 0..3 {
        let mut kern = s.kernel.lock().unwrap();
        kern.packet(k, now(), true, None, 0x12);
        // A continuation, not a new connection (this fake flags every
        // entry it creates as new).
        kern.table.get_mut(&k).unwrap().flags = 0;
        drop(kern);
        settle(&s);
    }
    assert_eq!(
        s.kernel.lock().unwrap().service_lookups,
        1,
        "same revision, nothing dropped: not read again"
    );
    // The kernel forgets the translation; the record still has it.
    s.kernel.lock().unwrap().services.clear();
    s.clock.advance(20 * S);
    eventually(|| s.kept.0.lock().unwrap().len() == 1);
    let r = s.kept.0.lock().unwrap()[0].clone();
    assert_eq!(r.end_reason, Some(EndReason::Idle));
    let svc = r.service.as_ref().expect("service");
    assert_eq!(svc.key().as_deref(), Some("prod/db"));
    let b = svc.backend.as_ref().expect("backend");
    assert_eq!(&*b.address.pod.as_ref().unwrap().pod, "db");
    assert!(b.allowed);

    // A denied connection: its drop notification and its record name the
    // backend it was denied on.
    let sub = s.handle.history.subscribe(Filter::default(), 16);
    let mut denied = k;
    denied.tuple.sport = 40001;
    {
        let mut kern = s.kernel.lock().unwrap();
        kern.services.insert(denied.tuple, db_backend(false));
        let t = s.clock.monotonic_ns();
        kern.packet(denied, t, false, Some(DropReason::PolicyDenied), 0x02);
        let mut v = kern.table[&denied];
        v.flags = 0;
        kern.notify(denied, EventKind::Drop, v);
    }
    settle(&s);
    let note = sub
        .recv_timeout(Duration::from_secs(10))
        .expect("drop note");
    assert_eq!(note.event, Some(EventType::Drop));
    let b = note.backend().expect("backend in the notification");
    assert!(!b.allowed);
    let a = s.handle.stop();
    assert!(a.holds(), "{a:#?}");
    let kept = s.kept.0.lock().unwrap();
    let r = kept.iter().find(|r| r.src.port == 40001).expect("record");
    assert_eq!(r.verdict, FlowVerdict::Denied);
    assert!(!r.backend().expect("backend").allowed);
}

#[test]
fn idle_and_active_timeouts_follow_the_clock() {
    let s = setup(100, 100, |c| {
        c.aggregate.active_timeout = Duration::from_secs(60);
        c.aggregate.idle_timeout = Duration::from_secs(15);
    });
    let mut udp = key(FLOW_SIDE_EGRESS, 11);
    udp.tuple.proto = PROTO_UDP;
    for _ in 0..7 {
        let now = s.clock.monotonic_ns();
        s.kernel.lock().unwrap().packet(udp, now, false, None, 0);
        settle(&s);
        s.clock.advance(10 * S);
    }
    eventually(|| s.kept.0.lock().unwrap().len() == 1);
    assert_eq!(
        s.kept.0.lock().unwrap()[0].end_reason,
        Some(EndReason::Active)
    );
    s.clock.advance(20 * S);
    eventually(|| s.kept.0.lock().unwrap().len() == 2);
    let kept = s.kept.0.lock().unwrap().clone();
    assert_eq!(kept[1].end_reason, Some(EndReason::Idle));
    assert_eq!(kept[0].packets.orig + kept[1].packets.orig, 7);
    let a = s.handle.stop();
    assert!(a.holds(), "{a:#?}");
}

#[test]
fn fallback_events_merge_and_the_identity_holds_with_losses() {
    // A table of 2 entries and a ring of 3: flows beyond go to the ring,
    // then are lost (counted).
    let s = setup(2, 3, |_| {});
    let now = s.clock.monotonic_ns();
    {
        let mut k = s.kernel.lock().unwrap();
        for i in 0..8u16 {
            let mut f = key(FLOW_SIDE_EGRESS, 11);
            f.tuple.sport = 1000 + i;
            k.packet(f, now, false, None, 0x02);
        }
        assert_eq!(k.stats[FlowStat::FallbackSent as usize], 3);
        assert_eq!(k.stats[FlowStat::FallbackLost as usize], 3);
    }
    settle(&s);
    let a = s.handle.stop();
    assert!(a.holds(), "{a:#?}");
    assert_eq!(a.received.entries_drained, 2);
    assert_eq!(a.received.fallback_events, 3);
    assert_eq!(a.kernel.fallback_lost, 3);
    assert_eq!(a.kernel_records(), 8);
    assert_eq!(a.received.packets + a.kernel.lost_packets, 8);
    let kept = s.kept.0.lock().unwrap();
    assert_eq!(kept.len(), 5);
    assert!(
        kept.iter()
            .all(|r| r.end_reason == Some(EndReason::AgentStop))
    );
}

#[test]
fn notifications_reach_history_not_exporters() {
    let s = setup(100, 100, |_| {});
    let k = key(FLOW_SIDE_INGRESS, 12);
    let now = s.clock.monotonic_ns();
    let sub = s.handle.history.subscribe(Filter::default(), 16);
    {
        let mut kern = s.kernel.lock().unwrap();
        kern.packet(k, now, false, Some(DropReason::PolicyDenied), 0x02);
        kern.notify(
            k,
            EventKind::Drop,
            FlowValue {
                first_seen_ns: now,
                last_seen_ns: now,
                dropped_packets: 1,
                dropped_bytes: 100,
                drop_reason: DropReason::PolicyDenied as u8,
                revision: 3,
                rule: RULE_NONE,
                ..Default::default()
            },
        );
    }
    let ev = sub.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(ev.kind, RecordKind::Event);
    assert_eq!(ev.event, Some(EventType::Drop));
    assert_eq!(ev.verdict, FlowVerdict::Denied);
    assert_eq!(&*ev.policies[0].name, "prod/db-ingress");
    let a = s.handle.stop();
    assert!(a.holds(), "{a:#?}");
    assert_eq!(a.received.notifications, 1);
    let kept = s.kept.0.lock().unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].kind, RecordKind::Flow);
    assert_eq!(kept[0].dropped.packets, 1);
    let flow = sub.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(flow.kind, RecordKind::Flow);
}

#[test]
fn a_slow_subscriber_does_not_block_the_pipeline() {
    let s = setup(100_000, 100, |_| {});
    let sub = s.handle.history.subscribe(Filter::default(), 1);
    let now = s.clock.monotonic_ns();
    {
        let mut k = s.kernel.lock().unwrap();
        for i in 0..500u16 {
            let mut f = key(FLOW_SIDE_EGRESS, 11);
            f.tuple.sport = i;
            f.tuple.proto = PROTO_UDP;
            k.packet(f, now, false, None, 0);
        }
    }
    settle(&s);
    s.clock.advance(60 * S);
    eventually(|| s.kept.0.lock().unwrap().len() == 500);
    // Exporters get records before the history does.
    eventually(|| s.handle.history.pushed() == 500);
    assert_eq!(sub.lost(), 499);
    let metrics = s.handle.metrics.clone();
    let a = s.handle.stop();
    assert_eq!(a.subscriber_lost, 499);
    assert!(a.holds());
    let m = metrics.render();
    assert!(
        m.contains(
            r#"bulkhead_flow_records_lost_total{stage="subscriber",reason="queue_full"} 499"#
        ),
        "{m}"
    );
}

#[test]
fn exports_json_lines_and_balances() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flows.jsonl");
    let p = path.clone();
    let s = setup(100_000, 100, move |c| {
        c.jsonl = Some(JsonlConfig::new(JsonlTarget::File {
            path: p,
            max_bytes: 1 << 30,
            keep: 1,
        }));
    });
    let now = s.clock.monotonic_ns();
    {
        let mut k = s.kernel.lock().unwrap();
        for i in 0..2000u16 {
            let mut f = key(FLOW_SIDE_EGRESS, 11);
            f.tuple.sport = i;
            k.packet(f, now, false, None, 0x02);
            k.packet(f, now, true, None, 0x04);
        }
    }
    let a = s.handle.stop();
    assert!(a.holds(), "{a:#?}");
    let jsonl = a.exporters.iter().find(|e| e.exporter == "jsonl").unwrap();
    assert_eq!(jsonl.exported, 2000);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 2000);
    let first: FlowRecord = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first.packets.total(), 2);
}

/// Throughput of the whole pipeline (cache, enrichment, metrics, history,
/// JSON Lines to a file) for 200k new flows; prints the cost per record.
/// Run: `cargo test --release -p bulkhead --lib flows::pipeline::tests::throughput -- --ignored --nocapture`.
#[test]
#[ignore = "measurement, not a check"]
fn throughput() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flows.jsonl");
    let p = path.clone();
    let n: u32 = 200_000;
    let s = setup(n as usize, 100, move |c| {
        c.aggregate.capacity = 1 << 20;
        c.jsonl = Some(JsonlConfig::new(JsonlTarget::File {
            path: p,
            max_bytes: 1 << 34,
            keep: 1,
        }));
    });
    let now = s.clock.monotonic_ns();
    {
        let mut k = s.kernel.lock().unwrap();
        for i in 0..n {
            let mut f = key(FLOW_SIDE_EGRESS, 11);
            f.tuple.sport = i as u16;
            f.tuple.dport = (i >> 16) as u16;
            f.tuple.proto = PROTO_UDP;
            k.packet(f, now, false, None, 0);
        }
    }
    settle(&s);
    let t = Instant::now();
    s.clock.advance(60 * S);
    eventually(|| s.kept.0.lock().unwrap().len() == n as usize);
    let collector = t.elapsed();
    let a = s.handle.stop();
    let total = t.elapsed();
    assert!(a.holds(), "{a:#?}");
    let size = std::fs::metadata(&path).unwrap().len();
    let jsonl = a.exporters.iter().find(|e| e.exporter == "jsonl").unwrap();
    println!("jsonl: {jsonl:?}");
    println!(
        "{n} records: collector {:?} ({:.2} us/record), through JSON Lines {:?} ({:.2} us/record), {} bytes/record",
        collector,
        collector.as_secs_f64() * 1e6 / n as f64,
        total,
        total.as_secs_f64() * 1e6 / n as f64,
        size / n as u64
    );
}
