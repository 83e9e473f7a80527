//! The detectors' thread: live records in, alerts out to JSON Lines and the
//! counters; held scan windows raised when they end, with no record to
//! wake the thread.

use std::sync::Arc;
use std::time::Instant;

use bulkhead_flows::record::{FlowRecord, PodInfo, RecordKind, Timestamp};
use bulkhead_learn::baseline::Scope;
use bulkhead_learn::edge::History as EdgeHistory;
use bulkhead_testkit::flows::flow_record;
use serde_json::Value;

use super::*;
use crate::quarantine::QuarantineStore;
use bulkhead_learn::baseline::detect::DetectConfig;
use std::time::Duration;

fn pod(name: &str) -> Option<Arc<PodInfo>> {
    Some(Arc::new(PodInfo {
        namespace: "shop".into(),
        pod: format!("{name}-1").into(),
        workload: Some(format!("Deployment/{name}").into()),
        labels: Default::default(),
    }))
}

/// A notification of `src` → `dst`:`port` (TCP) seen at the source now.
fn record(src: &str, dst: &str, port: u16) -> Arc<FlowRecord> {
    let now = now_ms();
    let mut r = flow_record();
    r.kind = RecordKind::Event;
    r.start = Timestamp(now);
    r.end = Timestamp(now);
    r.src.pod = pod(src);
    r.endpoint = r.src.pod.clone();
    r.dst.pod = pod(dst);
    r.dst.external = false;
    r.dst.ip = "10.0.0.9".parse().unwrap();
    r.dst.port = port;
    Arc::new(r)
}

/// A baseline of shop with web → api:8080 learned.
fn baseline() -> Baseline {
    let mut h = EdgeHistory::default();
    let mut learned = (*record("web", "api", 8080)).clone();
    learned.kind = RecordKind::Flow;
    h.add_record(&learned);
    let b = Baseline::take("shop", vec![Scope::Namespace("shop".into())], &h, 0).unwrap();
    assert_eq!(b.edges().len(), 1);
    b
}

fn lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn wait_for_lines(path: &std::path::Path, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let l = lines(path);
        if l.len() >= n {
            return l;
        }
        assert!(Instant::now() < deadline, "{} lines of {n}: {l:?}", l.len());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn live_records_raise_alerts_to_jsonl_and_counters() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alerts.jsonl");
    let history = Arc::new(History::new(100));
    let cfg = AlertsConfig {
        baselines: vec![baseline()],
        detect: DetectConfig {
            interval_ms: 3_600_000,
            scan_window_ms: 200,
            scan_targets: 10,
        },
        jsonl: Some(path.clone()),
        ..AlertsConfig::default()
    };
    let timeline = Arc::new(
        Timeline::open(
            &dir.path().join("timeline.redb"),
            bulkhead_learn::timeline::Retention::default(),
        )
        .unwrap(),
    );
    let alerts = Alerts::start(
        &cfg,
        "node-a",
        Arc::clone(&history),
        None,
        Some(Arc::clone(&timeline)),
    )
    .unwrap();
    // Learned: nothing. A new edge, twice (its notification, its flow
    // record): one alert, once its window ended, with no record after it.
    history.push(record("web", "api", 8080));
    history.push(record("web", "db", 5432));
    history.push(record("web", "db", 5432));
    let got = wait_for_lines(&path, 1);
    // Then a scan of 100 ports from api: one scan alert.
    for port in 1..=100 {
        history.push(record("api", "db", port));
    }
    let got_all = wait_for_lines(&path, 2);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(lines(&path).len(), 2, "{:#?}", lines(&path));
    assert_eq!(got.len(), 1);
    let a = &got_all[0];
    assert_eq!(a["schema"], jsonl::SCHEMA);
    assert_eq!(a["node"], "node-a");
    assert_eq!(a["kind"], "new_peer");
    assert_eq!(a["baseline"], "shop");
    assert_eq!(a["port"], 5432);
    assert_eq!(
        a["dst"],
        serde_json::json!({"workload": {"namespace": "shop", "workload": "Deployment/db"}})
    );
    let s = &got_all[1];
    assert_eq!(s["kind"], "scan");
    assert!(s["targets"].as_u64().unwrap() >= 10, "{s}");

    let text = alerts.append_metrics("# EOF\n".into());
    for line in [
        "bulkhead_alerts_total{kind=\"new_peer\",baseline=\"shop\"} 1",
        "bulkhead_alerts_total{kind=\"scan\",baseline=\"shop\"} 1",
        "bulkhead_alerts_delivered_total{sink=\"jsonl\"} 2",
        "bulkhead_alerts_records_lost_total 0",
    ] {
        assert!(text.contains(line), "{line} missing in:\n{text}");
    }
    let started = Instant::now();
    alerts.stop();
    assert!(started.elapsed() < Duration::from_secs(2), "stop waited");
    assert_eq!(history.subscribers(), 0);
    // Each alert is in the timeline of the pods whose records raised it.
    let kinds = |pod: &str| -> Vec<&'static str> {
        timeline
            .query(pod, 0, u64::MAX, 10)
            .unwrap()
            .iter()
            .map(|e| match &e.kind {
                bulkhead_learn::timeline::EventKind::Alert { alert } => alert.kind.as_str(),
                other => panic!("{other:?}"),
            })
            .collect()
    };
    assert_eq!(kinds("shop/web-1"), ["new_peer"]);
    assert_eq!(kinds("shop/api-1"), ["scan"]);
    assert_eq!(kinds("shop/db-1"), ["new_peer", "scan"]);
}

#[test]
fn stopping_raises_what_is_held() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alerts.jsonl");
    let history = Arc::new(History::new(100));
    let cfg = AlertsConfig {
        baselines: vec![baseline()],
        detect: DetectConfig {
            scan_window_ms: 3_600_000,
            ..DetectConfig::default()
        },
        jsonl: Some(path.clone()),
        ..AlertsConfig::default()
    };
    let alerts = Alerts::start(&cfg, "n", Arc::clone(&history), None, None).unwrap();
    history.push(record("web", "db", 5432));
    std::thread::sleep(Duration::from_millis(100));
    assert!(lines(&path).is_empty(), "held for the window");
    alerts.stop();
    assert_eq!(lines(&path).len(), 1);
}

/// A config with a fast scan window, alerts to `jsonl`, activated
/// baselines persisted at `active`.
fn runtime_config(jsonl: &std::path::Path, active: &std::path::Path) -> AlertsConfig {
    AlertsConfig {
        detect: DetectConfig {
            interval_ms: 3_600_000,
            scan_window_ms: 200,
            scan_targets: 10,
        },
        jsonl: Some(jsonl.to_owned()),
        active: Some(active.to_owned()),
        ..AlertsConfig::default()
    }
}

#[test]
fn a_baseline_activated_at_run_time_alerts_persists_and_deactivates() {
    let dir = tempfile::tempdir().unwrap();
    let (path, active) = (dir.path().join("alerts.jsonl"), dir.path().join("b.json"));
    let history = Arc::new(History::new(100));
    let cfg = runtime_config(&path, &active);
    let alerts = Alerts::start(&cfg, "n", Arc::clone(&history), None, None).unwrap();
    assert!(alerts.active().is_empty());
    assert_eq!(history.subscribers(), 0, "idle: nothing subscribed");
    let list = alerts.activate(baseline()).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(
        (list[0].name.as_str(), list[0].origin.as_str()),
        ("shop", "api")
    );
    assert_eq!(history.subscribers(), 1);
    history.push(record("web", "db", 5432));
    assert_eq!(wait_for_lines(&path, 1)[0]["kind"], "new_peer");

    // Another baseline activated: shop's detector goes on where it was
    // (the same edge again raises nothing within its interval).
    let mut other = baseline();
    other.name = "other".into();
    assert_eq!(alerts.activate(other).unwrap().len(), 2);
    assert_eq!(history.subscribers(), 1, "one subscription, handed over");
    history.push(record("web", "db", 5432));
    let two = wait_for_lines(&path, 2);
    assert_eq!(
        two[1]["baseline"], "other",
        "only the new detector alerts: {two:?}"
    );
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(lines(&path).len(), 2, "{:#?}", lines(&path));
    alerts.stop();

    // A restarted agent alerts on what was activated.
    let alerts = Alerts::start(&cfg, "n", Arc::clone(&history), None, None).unwrap();
    let names: Vec<String> = alerts.active().into_iter().map(|b| b.name).collect();
    assert_eq!(names, ["other", "shop"]);
    let (was, now) = alerts.deactivate("other").unwrap();
    assert!(was);
    assert_eq!(now.len(), 1);
    let (was, _) = alerts.deactivate("other").unwrap();
    assert!(!was);
    alerts.deactivate("shop").unwrap();
    assert_eq!(history.subscribers(), 0, "no baseline: unsubscribed");
    alerts.stop();
    let reopened = Alerts::start(&cfg, "n", history, None, None).unwrap();
    assert!(reopened.active().is_empty());
    reopened.stop();
}

#[test]
fn a_command_line_baseline_cannot_be_replaced_or_deactivated_at_run_time() {
    let dir = tempfile::tempdir().unwrap();
    let history = Arc::new(History::new(100));
    let cfg = AlertsConfig {
        baselines: vec![baseline()],
        ..runtime_config(&dir.path().join("a.jsonl"), &dir.path().join("b.json"))
    };
    let alerts = Alerts::start(&cfg, "n", history, None, None).unwrap();
    assert!(matches!(
        alerts.activate(baseline()),
        Err(AlertsError::Static(_))
    ));
    assert!(matches!(
        alerts.deactivate("shop"),
        Err(AlertsError::Static(_))
    ));
    assert_eq!(alerts.active()[0].origin, "flag");
    alerts.stop();
}

#[test]
fn a_scan_quarantines_its_source_pod_when_asked_and_a_new_edge_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alerts.jsonl");
    let history = Arc::new(History::new(1000));
    let store = Arc::new(QuarantineStore::open(None));
    let mut respond = ResponseConfig::default();
    respond.add("quarantine:scan").unwrap();
    let mut cfg = AlertsConfig {
        baselines: vec![baseline()],
        respond,
        ..runtime_config(&path, &dir.path().join("b.json"))
    };
    // A window a busy machine's stall between two pushes cannot split: the
    // scan stays one scan.
    cfg.detect.scan_window_ms = 2_000;
    let alerts = Alerts::start(
        &cfg,
        "n",
        Arc::clone(&history),
        Some(Arc::clone(&store)),
        None,
    )
    .unwrap();
    history.push(record("web", "db", 5432));
    wait_for_lines(&path, 1);
    assert!(store.list().is_empty(), "a new peer is not a scan");
    for port in 1..=30 {
        history.push(record("api", "db", port));
    }
    let got = wait_for_lines(&path, 2);
    assert_eq!(got[1]["kind"], "scan");
    assert_eq!(
        got[1]["responses"],
        serde_json::json!(["quarantined shop/api-1"])
    );
    let held = store.list();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].quarantine.key(), "shop/api-1");
    assert!(
        held[0]
            .quarantine
            .reason
            .starts_with("automatic response to a scan alert"),
        "{:?}",
        held[0].quarantine.reason
    );
    let text = alerts.append_metrics("# EOF\n".into());
    let line = "bulkhead_alert_responses_total{action=\"quarantine\",kind=\"scan\",outcome=\"quarantined\"} 1";
    assert!(text.contains(line), "{line} missing in:\n{text}");
    alerts.stop();
}

#[test]
fn a_drain_sized_burst_is_checked_in_full_and_counted_once() {
    let history = Arc::new(History::new(100));
    let cfg = AlertsConfig {
        baselines: vec![baseline()],
        ..AlertsConfig::default()
    };
    let alerts = Alerts::start(&cfg, "n", Arc::clone(&history), None, None).unwrap();
    // What one drain hands over at 100k new flows/s (25,000 flow records),
    // and some notifications, at once; then a few more one by one.
    let learned = record("web", "api", 8080);
    let burst: Vec<_> = (0..25_000).map(|_| Arc::clone(&learned)).collect();
    history.push_all(&burst);
    history.push_all(&burst[..5_000]);
    for _ in 0..3 {
        history.push(Arc::clone(&learned));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while alerts.stats().records < 30_003 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let s = alerts.stats();
    assert_eq!((s.records, s.records_lost), (30_003, 0));
    assert_eq!(s.alertmanager, None);
    let text = alerts.append_metrics("# EOF\n".into());
    assert!(
        text.contains("bulkhead_alerts_records_total 30003"),
        "{text}"
    );
    alerts.stop();
    assert_eq!(history.subscribers(), 0);
}
