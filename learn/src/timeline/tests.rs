//! The timeline: per-pod queries in time order, retention by age and count,
//! reopening.

use std::sync::Arc;

use super::*;
use bulkhead_testkit::flows::flow_record;

fn quarantined(pod: &str, at: u64) -> Event {
    Event {
        at_unix_ms: at,
        pods: vec![pod.into()],
        kind: EventKind::Quarantined {
            reason: "scan".into(),
            allow_dns: false,
        },
    }
}

fn flow_at(at: u64) -> Event {
    let mut r = flow_record();
    r.end = bulkhead_flows::record::Timestamp(at);
    Event::of_flow(&r)
}

#[test]
fn a_pods_events_come_back_in_time_order_within_the_range() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("timeline.redb");
    let t = Timeline::open(&path, Retention::default()).unwrap();
    let flow = flow_at(2_000);
    assert_eq!(flow.pods, ["prod/web-1"], "the record's pods");
    // Appended out of order, in two batches.
    t.append(&[quarantined("prod/web-1", 3_000), flow.clone()], 3_000)
        .unwrap();
    t.append(
        &[
            Event {
                at_unix_ms: 1_000,
                pods: vec!["prod/web-1".into(), "prod/db-0".into()],
                kind: EventKind::PolicyChange {
                    revision: 7,
                    added: vec!["prod/db".into()],
                    removed: vec![],
                    changed: vec![],
                },
            },
            quarantined("prod/other", 2_500),
        ],
        3_000,
    )
    .unwrap();
    let all = t.query("prod/web-1", 0, u64::MAX, 100).unwrap();
    let at: Vec<u64> = all.iter().map(|e| e.at_unix_ms).collect();
    assert_eq!(at, [1_000, 2_000, 3_000]);
    assert_eq!(all[1], flow);
    assert_eq!(t.query("prod/web-1", 1_500, 2_500, 100).unwrap(), [flow]);
    assert_eq!(t.query("prod/web-1", 0, u64::MAX, 1).unwrap().len(), 1);
    assert!(t.query("prod/nobody", 0, u64::MAX, 100).unwrap().is_empty());
    drop(t);
    let t = Timeline::open(&path, Retention::default()).unwrap();
    assert_eq!(t.len().unwrap(), 4, "durable");
    t.append(&[quarantined("prod/web-1", 3_000)], 3_000)
        .unwrap();
    assert_eq!(
        t.query("prod/web-1", 3_000, 3_000, 10).unwrap().len(),
        2,
        "sequence numbers go on after a reopen: nothing overwritten"
    );
}

#[test]
fn retention_removes_the_oldest_by_age_and_by_count() {
    let dir = tempfile::tempdir().unwrap();
    let t = Timeline::open(
        &dir.path().join("t.redb"),
        Retention {
            max_age_ms: 10_000,
            max_events: 3,
        },
    )
    .unwrap();
    let events: Vec<Event> = (0..5).map(|i| quarantined("a/b", 1_000 * i)).collect();
    assert_eq!(t.append(&events, 5_000).unwrap(), 2, "count");
    let kept: Vec<u64> = t
        .query("a/b", 0, u64::MAX, 10)
        .unwrap()
        .iter()
        .map(|e| e.at_unix_ms)
        .collect();
    assert_eq!(kept, [2_000, 3_000, 4_000]);
    assert_eq!(t.append(&[], 13_500).unwrap(), 2, "age: older than 3,500");
    assert_eq!(t.query("a/b", 0, u64::MAX, 10).unwrap().len(), 1);
    assert_eq!(t.len().unwrap(), 1);
}

#[test]
fn the_exporter_writes_what_the_pipeline_hands_it() {
    use bulkhead_flows::export::Exporter;
    let dir = tempfile::tempdir().unwrap();
    let t = Arc::new(Timeline::open(&dir.path().join("t.redb"), Retention::default()).unwrap());
    let mut e = Box::new(
        exporter::TimelineExporter::start(
            Arc::clone(&t),
            crate::exporter::HistoryExporterConfig::default(),
        )
        .unwrap(),
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    for i in 0..3 {
        let mut r = flow_record();
        r.end = bulkhead_flows::record::Timestamp(now + i);
        e.export(&Arc::new(r));
    }
    let stats = e.finish();
    assert_eq!((stats.exported, stats.pending), (3, 0));
    assert_eq!(t.query("prod/web-1", 0, u64::MAX, 10).unwrap().len(), 3);
}

#[test]
fn a_page_says_when_the_limit_cut_it() {
    let dir = tempfile::tempdir().unwrap();
    let t = Timeline::open(&dir.path().join("t.redb"), Retention::default()).unwrap();
    let events: Vec<Event> = (0..3).map(|i| quarantined("a/b", 1_000 * i)).collect();
    t.append(&events, 3_000).unwrap();
    let page = t.page("a/b", 0, u64::MAX, 2).unwrap();
    assert_eq!((page.events.len(), page.truncated), (2, true));
    assert_eq!(page.schema, SCHEMA);
    let page = t.page("a/b", 0, u64::MAX, 3).unwrap();
    assert_eq!((page.events.len(), page.truncated), (3, false));
    let text = serde_json::to_string(&page).unwrap();
    assert_eq!(serde_json::from_str::<Page>(&text).unwrap(), page);
    // Events written before `changed` existed still read.
    let old = r#"{"at_unix_ms":1,"pods":["a/b"],"type":"policy_change","revision":3,"added":["a/p"],"removed":[]}"#;
    let e: Event = serde_json::from_str(old).unwrap();
    assert!(matches!(e.kind, EventKind::PolicyChange { ref changed, .. } if changed.is_empty()));
}
