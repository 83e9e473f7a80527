use std::time::Duration;

use bulkhead_flows::record::{
    Audit, AuditVerdict, FlowRecord, FlowVerdict, PolicyRef, RecordKind, Timestamp,
};
use bulkhead_testkit::learn::{Peer, T0, conn, demo, demo_model, demo_records};

use super::view::{Follower, Parts, ViewContext};
use super::*;
use crate::edge::{EdgeKey, History, WorkloadId};
use crate::window::Window;

const MIN: u64 = 60_000;

fn config(max_entries: usize) -> MapConfig {
    MapConfig {
        bucket: Duration::from_secs(60),
        retention: Duration::from_secs(3600),
        max_entries,
    }
}

/// A context without policy: /24 and /64 groups, nothing outside a
/// baseline, every workload in enforce mode.
struct Ctx(Groups);

impl ViewContext for Ctx {
    fn groups(&self) -> &Groups {
        &self.0
    }
    fn outside_baseline(&self, key: &EdgeKey) -> bool {
        key.port == 5432
    }
    fn mode(&self, id: &WorkloadId) -> Option<String> {
        (id.namespace == "shop").then(|| "enforce".to_owned())
    }
    fn quarantined(&self, _: &WorkloadId) -> bool {
        false
    }
}

fn ctx() -> Ctx {
    Ctx(Groups::default())
}

fn policy(name: &str) -> PolicyRef {
    PolicyRef {
        name: name.into(),
        ..Default::default()
    }
}

fn with(mut records: Vec<FlowRecord>, verdict: FlowVerdict, policies: &[&str]) -> Vec<FlowRecord> {
    for r in &mut records {
        r.verdict = verdict;
        r.policies = policies
            .iter()
            .map(|p| policy(p))
            .collect::<Vec<_>>()
            .into();
    }
    records
}

fn map_of(records: &[FlowRecord], cfg: MapConfig, now: u64) -> FlowMap {
    let mut m = FlowMap::new(cfg).unwrap();
    let mut b = MapBatch::default();
    for r in records {
        b.add_record(r);
    }
    m.merge(b, now);
    m
}

fn view(m: &FlowMap, w: Window, now: u64) -> (Parts, WindowInfo) {
    let (cells, info) = m.window(w, now);
    (Parts::of(&cells, &ctx()), info)
}

#[test]
fn a_connection_seen_at_both_ends_counts_once_and_the_worst_class_colours_it() {
    let d = demo();
    let mut records = conn(T0, &d.frontend, &d.api, 6, 8080);
    records.extend(with(
        conn(T0 + 1000, &d.frontend, &d.api, 6, 8080),
        FlowVerdict::Denied,
        &["shop/default-deny"],
    ));
    let (parts, _) = view(
        &map_of(&records, config(100), T0 + MIN),
        Window::ALL,
        T0 + MIN,
    );
    assert_eq!(parts.edges.len(), 1);
    let e = &parts.edges[0];
    assert_eq!(
        e.id,
        "shop/Deployment/frontend>shop/Deployment/api:TCP/8080"
    );
    assert_eq!(e.verdict, VerdictClass::Denied);
    assert_eq!(e.classes[&VerdictClass::Allowed].flows, 1);
    assert_eq!(e.classes[&VerdictClass::Allowed].packets, 5);
    assert_eq!(e.classes[&VerdictClass::Denied].flows, 1);
    assert_eq!(e.policies[&VerdictClass::Denied], ["shop/default-deny"]);
    assert_eq!(e.policies[&VerdictClass::Allowed], ["prod/allow-web"]);
    assert_eq!((e.first_seen, e.last_seen), (T0, T0 + 1500));
    let ids: Vec<&str> = parts.workloads.iter().map(|w| w.id.as_str()).collect();
    assert_eq!(ids, ["shop/Deployment/api", "shop/Deployment/frontend"]);
    assert!(
        parts
            .workloads
            .iter()
            .all(|w| w.local && w.kind == "Deployment")
    );
    assert_eq!(parts.workloads[0].short, "api");
    assert_eq!(parts.workloads[0].labels["app"], "api");
    assert_eq!(parts.namespaces.len(), 1);
    assert_eq!(parts.namespaces[0].workloads, 2);
}

#[test]
fn classes_follow_the_verdict_and_the_audit_view() {
    let mut r = bulkhead_testkit::flow_record();
    assert_eq!(VerdictClass::of(&r), VerdictClass::Allowed);
    r.audit = Some(Audit {
        verdict: AuditVerdict::WouldDeny,
        policies: vec![policy("prod/staged")].into(),
    });
    assert_eq!(VerdictClass::of(&r), VerdictClass::WouldDeny);
    assert_eq!(
        VerdictClass::WouldDeny.deciding(&r)[0].name.as_ref(),
        "prod/staged"
    );
    for (v, c) in [
        (FlowVerdict::Revoked, VerdictClass::Revoked),
        (FlowVerdict::Denied, VerdictClass::Denied),
        (FlowVerdict::Quarantined, VerdictClass::Quarantined),
    ] {
        r.verdict = v;
        assert_eq!(VerdictClass::of(&r), c);
    }
    let mut sorted = VerdictClass::ALL;
    sorted.sort();
    assert_eq!(sorted, VerdictClass::ALL, "worst is greatest");
    assert_eq!(
        serde_json::to_string(&VerdictClass::WouldDeny).unwrap(),
        "\"would_deny\""
    );
}

#[test]
fn deciding_policies_are_a_bounded_sorted_set_whatever_the_order() {
    let d = demo();
    let names: Vec<String> = (0..12).rev().map(|i| format!("shop/p{i:02}")).collect();
    let records: Vec<FlowRecord> = names
        .iter()
        .enumerate()
        .flat_map(|(i, n)| {
            with(
                conn(T0 + i as u64, &d.frontend, &d.api, 6, 80),
                FlowVerdict::Denied,
                &[n],
            )
        })
        .collect();
    let mut reversed = records.clone();
    reversed.reverse();
    let now = T0 + MIN;
    let a = view(&map_of(&records, config(100), now), Window::ALL, now).0;
    let b = view(&map_of(&reversed, config(100), now), Window::ALL, now).0;
    assert_eq!(a, b);
    let e = &a.edges[0];
    assert!(e.policies_truncated);
    let expected: Vec<String> = (0..8).map(|i| format!("shop/p{i:02}")).collect();
    assert_eq!(e.policies[&VerdictClass::Denied], expected);
}

/// A deterministic shuffle (no `rand` dependency).
fn shuffled<T: Clone>(v: &[T], seed: u64) -> Vec<T> {
    let mut v = v.to_vec();
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    for i in (1..v.len()).rev() {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        v.swap(i, (s >> 33) as usize % (i + 1));
    }
    v
}

#[test]
fn batches_merge_the_same_in_any_order_and_split() {
    let mut records = demo_records();
    let d = demo();
    records.extend(with(
        conn(T0 + 7_000, &d.db, &d.api, 6, 9000),
        FlowVerdict::Denied,
        &["shop/x"],
    ));
    let now = T0 + 10 * MIN;
    let reference = view(&map_of(&records, config(1000), now), Window::ALL, now).0;
    for seed in 0..20 {
        let order = shuffled(&records, seed);
        let mut m = FlowMap::new(config(1000)).unwrap();
        for chunk in order.chunks(1 + seed as usize % 5) {
            let mut b = MapBatch::default();
            chunk.iter().for_each(|r| b.add_record(r));
            m.merge(b, now);
        }
        assert_eq!(view(&m, Window::ALL, now).0, reference, "seed {seed}");
    }
}

#[test]
fn a_window_takes_whole_buckets() {
    let d = demo();
    let mut records = Vec::new();
    for i in 0..5 {
        records.extend(conn(T0 + i * MIN, &d.frontend, &d.api, 6, 8080));
    }
    let now = T0 + 10 * MIN;
    let m = map_of(&records, config(1000), now);
    assert_eq!(m.stats().buckets, 5);
    let bucket0 = T0 - T0 % MIN;
    // From the middle of the second bucket to inside the third: both whole.
    let w = Window {
        since: Some(Timestamp(bucket0 + MIN + 30_000)),
        until: Some(Timestamp(bucket0 + 2 * MIN + 1)),
    };
    let (parts, info) = view(&m, w, now);
    assert_eq!((info.since, info.until), (bucket0 + MIN, bucket0 + 3 * MIN));
    assert_eq!(info.bucket_ms, MIN);
    assert!(!info.partial);
    assert_eq!(parts.edges[0].classes[&VerdictClass::Allowed].flows, 2);
    let (all, info) = view(&m, Window::ALL, now);
    assert_eq!(all.edges[0].classes[&VerdictClass::Allowed].flows, 5);
    assert_eq!(info.since, (now - 3_600_000) - (now - 3_600_000) % MIN);
}

#[test]
fn beyond_max_entries_the_oldest_buckets_go_whole_and_windows_say_partial() {
    let d = demo();
    let mut m = FlowMap::new(config(4)).unwrap();
    let now = T0 + 10 * MIN;
    for i in 0..4 {
        let mut b = MapBatch::default();
        for port in [80, 81] {
            conn(T0 + i * MIN, &d.frontend, &d.api, 6, port)
                .iter()
                .for_each(|r| b.add_record(r));
        }
        m.merge(b, now);
    }
    let s = m.stats();
    assert_eq!((s.entries, s.buckets, s.evicted_buckets), (4, 2, 2));
    let (parts, info) = view(&m, Window::ALL, now);
    assert!(info.partial);
    assert_eq!(parts.edges[0].classes[&VerdictClass::Allowed].flows, 2);
    let recent = Window {
        since: Some(Timestamp(T0 + 2 * MIN)),
        until: None,
    };
    assert!(!view(&m, recent, now).1.partial);
    // The newest bucket full and the only one: a new edge is lost.
    let mut m = FlowMap::new(config(1)).unwrap();
    let mut b = MapBatch::default();
    conn(T0, &d.frontend, &d.api, 6, 80)
        .iter()
        .for_each(|r| b.add_record(r));
    conn(T0, &d.frontend, &d.api, 6, 81)
        .iter()
        .for_each(|r| b.add_record(r));
    let delta = m.merge(b, now);
    assert_eq!(delta.edges.len(), 1);
    assert_eq!(m.stats().lost_records, 2);
}

#[test]
fn old_buckets_expire_and_late_records_are_lost() {
    let d = demo();
    let records = conn(T0, &d.frontend, &d.api, 6, 80);
    let mut m = map_of(&records, config(100), T0 + MIN);
    assert_eq!(m.stats().entries, 1);
    m.expire(T0 + 2 * 3_600_000);
    let s = m.stats();
    assert_eq!((s.entries, s.buckets, s.expired_buckets), (0, 0, 1));
    let later = T0 + 2 * 3_600_000;
    assert!(
        !m.window(Window::ALL, later).1.partial,
        "the retention is whole"
    );
    let from_t0 = Window {
        since: Some(Timestamp(T0)),
        until: None,
    };
    assert!(
        m.window(from_t0, later).1.partial,
        "reaches into what expired"
    );
    let mut b = MapBatch::default();
    records.iter().for_each(|r| b.add_record(r));
    assert!(m.merge(b, T0 + 2 * 3_600_000).edges.is_empty());
    assert_eq!(m.stats().lost_records, 2);
}

#[test]
fn external_addresses_group_by_the_smallest_policy_block_else_24_or_64() {
    let g = Groups::new([
        "10.0.0.0/8".parse().unwrap(),
        "10.1.0.0/16".parse().unwrap(),
    ]);
    assert_eq!(g.id("10.1.2.3".parse().unwrap()), "cidr:10.1.0.0/16");
    assert_eq!(g.id("10.9.2.3".parse().unwrap()), "cidr:10.0.0.0/8");
    assert_eq!(g.id("192.0.2.77".parse().unwrap()), "cidr:192.0.2.0/24");
    assert_eq!(g.id("2001:db8::7".parse().unwrap()), "cidr:2001:db8::/64");
    let d = demo();
    let mut records = conn(T0, &d.api, &Peer::Ext("192.0.2.7".parse().unwrap()), 6, 443);
    records.extend(conn(
        T0,
        &d.api,
        &Peer::Ext("192.0.2.8".parse().unwrap()),
        6,
        443,
    ));
    let (parts, _) = view(
        &map_of(&records, config(100), T0 + MIN),
        Window::ALL,
        T0 + MIN,
    );
    assert_eq!(parts.edges.len(), 1);
    assert_eq!(parts.edges[0].dst, "cidr:192.0.2.0/24");
    assert_eq!(parts.edges[0].classes[&VerdictClass::Allowed].flows, 2);
    assert_eq!(parts.externals.len(), 1);
    assert_eq!(parts.externals[0].addresses, 2);
    assert_eq!(parts.externals[0].cidr, "192.0.2.0/24");
}

#[test]
fn a_window_as_a_history_is_what_the_learner_makes_of_the_records() {
    let mut records = demo_records();
    let d = demo();
    records.extend(with(
        conn(T0 + 7_000, &d.db, &d.api, 6, 9000),
        FlowVerdict::Denied,
        &["shop/x"],
    ));
    records.extend(with(
        conn(T0 + 8_000, &d.api, &d.db, 6, 5432),
        FlowVerdict::Quarantined,
        &["q"],
    ));
    let mut event = records[0].clone();
    event.kind = RecordKind::Event;
    records.push(event);
    let now = T0 + 10 * MIN;
    let (cells, _) = map_of(&records, config(1000), now).window(Window::ALL, now);
    let from_map = cells.history();
    let mut learned = History::default();
    records.iter().for_each(|r| learned.add_record(r));
    assert_eq!(from_map.sorted_edges(), learned.sorted_edges());
    assert_eq!(from_map.workloads, learned.workloads);
    assert_eq!(from_map.records, learned.records);
}

#[test]
fn follow_lines_name_new_nodes_once_then_increments() {
    let d = demo();
    let mut m = FlowMap::new(config(100)).unwrap();
    let mut f = Follower::default();
    let now = T0 + MIN;
    let mut lines = Vec::new();
    for i in 0..2 {
        let mut b = MapBatch::default();
        conn(T0 + i, &d.frontend, &d.db, 6, 5432)
            .iter()
            .for_each(|r| b.add_record(r));
        let delta = m.merge(b, now);
        lines.push(f.lines(m.stats().revision, &delta, &ctx()));
    }
    let parsed: Vec<Vec<serde_json::Value>> = lines
        .iter()
        .map(|ls| {
            ls.iter()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        })
        .collect();
    let types: Vec<&str> = parsed[0]
        .iter()
        .map(|v| v["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["workload", "workload", "edge"]);
    assert_eq!(parsed[0][0]["mode"], "enforce");
    assert_eq!(parsed[1].len(), 1, "no workload line the second time");
    let edge = &parsed[1][0];
    assert_eq!(edge["type"], "edge");
    assert_eq!(edge["classes"]["allowed"]["flows"], 1, "an increment");
    assert_eq!(edge["outside_baseline"], true);
    assert_eq!(edge["protocol"], "TCP");
    assert_eq!(
        parsed[0][0]["revision"], 1,
        "lines carry their merge's revision"
    );
    assert_eq!(edge["revision"], 2);
}

#[test]
fn a_workload_proposal_comes_from_the_window_with_its_diff() {
    let now = T0 + 10 * MIN;
    let (cells, _) = map_of(&demo_records(), config(1000), now).window(Window::ALL, now);
    let model = demo_model();
    let id = WorkloadId {
        namespace: "shop".into(),
        workload: "StatefulSet/db".into(),
    };
    let p = proposal::for_workload(&cells.history(), &model, &id).unwrap();
    assert_eq!(p.policy_name, "shop/bulkhead-db");
    assert!(p.yaml.contains("kind: NetworkPolicy"), "{}", p.yaml);
    assert!(p.changes > 0);
    let in_force = model.policies.iter().any(|q| q.key() == p.policy_name);
    assert_eq!(p.in_force, in_force);
    if !in_force {
        assert!(p.diff.lines().all(|l| l.starts_with('+')), "{}", p.diff);
    }
    let gone = WorkloadId {
        namespace: "shop".into(),
        workload: "Deployment/nothere".into(),
    };
    assert!(matches!(
        proposal::for_workload(&cells.history(), &model, &gone),
        Err(proposal::ProposalUnavailable::NotSeen(_))
    ));
}

#[test]
fn the_sink_publishes_increments_to_bounded_lossy_subscribers() {
    let map = SharedMap::new(config(100)).unwrap();
    let d = demo();
    let (sub, backlog) = map.subscribe(1, None, T0);
    assert!(backlog.is_none());
    for port in [80, 81, 82] {
        let mut b = MapBatch::default();
        conn(T0, &d.frontend, &d.api, 6, port)
            .iter()
            .for_each(|r| b.add_record(r));
        map.merge(b, T0 + MIN);
    }
    let (revision, first) = sub.recv_timeout(Duration::ZERO).unwrap();
    assert_eq!(first.edges.len(), 1);
    assert_eq!(revision, 1, "the first merge's revision");
    assert_eq!(
        sub.lost(),
        2,
        "a queue of one: the later merges' edges lost"
    );
    let (second, backlog) = map.subscribe(4, Some(Window::ALL), T0 + MIN);
    let (revision, backlog) = backlog.unwrap();
    assert_eq!(backlog.edges.len(), 3);
    assert_eq!(revision, 3, "the backlog is the map as of revision 3");
    drop(sub);
    map.merge(MapBatch::default(), T0 + MIN);
    assert_eq!(map.subscribers(), 2, "an empty merge publishes nothing");
    let mut b = MapBatch::default();
    conn(T0, &d.frontend, &d.api, 6, 90)
        .iter()
        .for_each(|r| b.add_record(r));
    map.merge(b, T0 + MIN);
    assert_eq!(map.subscribers(), 1, "a dropped subscription goes");
    let (revision, next) = second.recv_timeout(Duration::ZERO).unwrap();
    assert_eq!(next.edges.len(), 1);
    assert_eq!(revision, 4, "the next merge after the backlog's");
}

#[test]
fn configs_are_checked() {
    assert!(MapConfig::default().validate().is_ok());
    let bad = MapConfig {
        bucket: Duration::from_millis(1500),
        ..MapConfig::default()
    };
    assert!(matches!(bad.validate(), Err(MapConfigError::Bucket(_))));
    let bad = MapConfig {
        retention: Duration::from_secs(1),
        ..MapConfig::default()
    };
    assert!(matches!(
        bad.validate(),
        Err(MapConfigError::Retention { .. })
    ));
    let bad = MapConfig {
        max_entries: 0,
        ..MapConfig::default()
    };
    assert_eq!(bad.validate(), Err(MapConfigError::MaxEntries));
}

#[test]
fn the_synthetic_benchmark_map_has_the_asked_size() {
    let now = T0 + 10 * MIN;
    let records = bulkhead_testkit::learn::synthetic_map(50, 500, 5000, now);
    let (parts, _) = view(
        &map_of(&records, MapConfig::default(), now),
        Window::ALL,
        now,
    );
    assert_eq!(parts.namespaces.len(), 50);
    assert_eq!(parts.workloads.len(), 500);
    assert_eq!(parts.edges.len(), 5000);
    for class in VerdictClass::ALL
        .into_iter()
        .filter(|c| *c != VerdictClass::Quarantined)
    {
        assert!(parts.edges.iter().any(|e| e.verdict == class), "{class:?}");
    }
    assert!(!parts.externals.is_empty());
}

#[test]
fn the_exporter_merges_what_the_pipeline_hands_it_within_its_interval() {
    use bulkhead_flows::export::Exporter;
    let map = SharedMap::new(MapConfig::default()).unwrap();
    let mut exporter = MapExporter::start(std::sync::Arc::clone(&map)).unwrap();
    assert_eq!(exporter.name(), "map");
    let d = demo();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let records = conn(now - 1_000, &d.frontend, &d.api, 6, 8080);
    let (sub, _) = map.subscribe(4, None, now);
    for r in &records {
        exporter.export(&std::sync::Arc::new(r.clone()));
    }
    let (_, merged) = sub
        .recv_timeout(Duration::from_secs(10))
        .expect("a merge within the batch interval");
    assert_eq!(merged.edges.len(), 1);
    let stats = Box::new(exporter).finish();
    assert_eq!(stats.exported, 2);
    assert_eq!(stats.lost_total(), 0);
    assert_eq!(map.stats().entries, 1);
}
