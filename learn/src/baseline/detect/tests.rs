//! Deviations against a baseline: kinds, one alert per edge and interval,
//! scans folded into one alert.

use std::sync::Arc;

use super::*;
use crate::baseline::Scope;
use crate::baseline::tests::history;
use bulkhead_flows::record::{PodInfo, RecordKind, Timestamp};
use bulkhead_testkit::flows::flow_record;

fn pod(ns: &str, name: &str) -> Option<Arc<PodInfo>> {
    Some(Arc::new(PodInfo {
        namespace: ns.into(),
        pod: format!("{name}-1").into(),
        workload: Some(format!("Deployment/{name}").into()),
        labels: Default::default(),
    }))
}

/// A record of `src` → `dst`:`port` (TCP) seen at the source at `at_ms`;
/// `dst` `None`: an external address.
fn record(src: &str, dst: Option<&str>, port: u16, at_ms: u64) -> FlowRecord {
    let mut r = flow_record();
    r.kind = RecordKind::Event;
    r.start = Timestamp(at_ms);
    r.end = Timestamp(at_ms);
    r.src.pod = pod("shop", src);
    r.endpoint = r.src.pod.clone();
    r.dst.pod = dst.and_then(|d| pod("shop", d));
    r.dst.external = dst.is_none();
    r.dst.port = port;
    r
}

fn detector() -> Detector {
    let b = Baseline::take("shop", vec![Scope::Namespace("shop".into())], &history(), 0).unwrap();
    Detector::new(b, DetectConfig::default())
}

/// Every alert of `records`, and the flush after the last window.
fn run(d: &mut Detector, records: &[FlowRecord]) -> Vec<Alert> {
    let mut out: Vec<Alert> = records.iter().flat_map(|r| d.observe(r)).collect();
    let end = records.last().map_or(0, |r| r.end.unix_ms());
    out.extend(d.flush(end + 10_000));
    out
}

#[test]
fn learned_traffic_raises_nothing_and_each_new_edge_one_alert_of_its_kind() {
    let mut d = detector();
    let learned = [
        record("web", Some("api"), 8080, 1_000),
        record("api", Some("db"), 5432, 1_100),
    ];
    assert!(run(&mut d, &learned).is_empty(), "in the baseline");
    let new = [
        record("web", Some("db"), 5432, 2_000),
        record("api", Some("db"), 22, 2_100),
        record("web", None, 443, 2_200),
        // The same edges again, and the connection's flow record: folded.
        record("web", Some("db"), 5432, 2_300),
        record("api", Some("db"), 22, 9_000),
    ];
    let alerts = run(&mut d, &new);
    let kinds: Vec<(AlertKind, u16)> = alerts.iter().map(|a| (a.kind, a.port)).collect();
    assert_eq!(
        kinds,
        [
            (AlertKind::NewPeer, 5432),
            (AlertKind::NewPort, 22),
            (AlertKind::NewExternal, 443)
        ]
    );
    assert_eq!(alerts[0].subject.to_string(), "shop/Deployment/web");
    assert_eq!(alerts[0].policies, ["prod/allow-web"]);
    assert_eq!(
        (&alerts[0].src_pods[..], &alerts[0].dst_pods[..]),
        (
            &["shop/web-1".to_owned()][..],
            &["shop/db-1".to_owned()][..]
        )
    );
    assert!(
        alerts[2].dst_pods.is_empty(),
        "an external address is no pod"
    );
    assert_eq!(d.suppressed(), 2);
    // After the interval, the same edge raises again.
    let later = 2_000 + DetectConfig::default().interval_ms;
    let again = run(&mut d, &[record("web", Some("db"), 5432, later)]);
    assert_eq!(again.len(), 1);
}

#[test]
fn a_scan_of_100_ports_is_one_scan_alert() {
    let mut d = detector();
    let probes: Vec<FlowRecord> = (0..100)
        .map(|i| record("web", Some("db"), 1000 + i, 5_000 + u64::from(i)))
        .collect();
    let alerts = run(&mut d, &probes);
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let a = &alerts[0];
    assert_eq!(a.kind, AlertKind::Scan);
    assert_eq!(a.targets, 100);
    assert_eq!(
        (a.port, a.port_max),
        (1000, 1019),
        "the kept samples' ports"
    );
    assert_eq!((a.src_pods.len(), a.dst_pods.len()), (1, 1), "{a:?}");
    // More probes within the interval fold into it.
    let more: Vec<FlowRecord> = (0..50)
        .map(|i| record("web", Some("api"), 2000 + i, 60_000 + u64::from(i)))
        .collect();
    assert!(run(&mut d, &more).is_empty());
    assert!(d.suppressed() >= 50);
}

#[test]
fn a_few_new_ports_below_the_threshold_are_separate_alerts() {
    let mut d = detector();
    let probes: Vec<FlowRecord> = (0..5)
        .map(|i| record("web", Some("db"), 1000 + i, 5_000 + u64::from(i)))
        .collect();
    let alerts = run(&mut d, &probes);
    assert_eq!(alerts.len(), 5);
    assert!(alerts.iter().all(|a| a.kind == AlertKind::NewPeer));
    assert_eq!(d.next_deadline(), None, "nothing held");
}

#[test]
fn out_of_scope_traffic_is_ignored_and_windows_end_on_the_callers_clock() {
    let mut d = detector();
    let mut r = record("web", Some("api"), 9, 1_000);
    r.src.pod = pod("other", "x");
    r.endpoint = r.src.pod.clone();
    r.dst.pod = pod("other", "y");
    assert!(run(&mut d, &[r]).is_empty());
    assert!(
        d.observe(&record("web", Some("db"), 1, 1_000)).is_empty(),
        "held"
    );
    assert_eq!(d.next_deadline(), Some(3_000));
    assert!(d.flush(2_999).is_empty());
    assert_eq!(d.flush(3_000).len(), 1);
}

#[test]
fn an_alert_names_every_pod_that_made_it_up_to_a_bound() {
    let mut d = detector();
    // Replicas of one workload scanning together: one source, many pods.
    let probes: Vec<FlowRecord> = (0..40u16)
        .map(|i| {
            let mut r = record("web", Some("db"), 1000 + i, 5_000 + u64::from(i));
            let replica = PodInfo {
                pod: format!("web-{}", i % 20).into(),
                ..(**r.src.pod.as_ref().unwrap()).clone()
            };
            r.src.pod = Some(Arc::new(replica));
            r
        })
        .collect();
    let alerts = run(&mut d, &probes);
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].kind, AlertKind::Scan);
    assert_eq!(alerts[0].src_pods.len(), MAX_PODS, "bounded");
    assert!(alerts[0].src_pods.contains(&"shop/web-0".to_owned()));
    // One new edge opened by two replicas names both.
    let mut d = detector();
    let mut other = record("web", Some("db"), 5432, 2_100);
    other.src.pod = Some(Arc::new(PodInfo {
        pod: "web-2".into(),
        ..(**other.src.pod.as_ref().unwrap()).clone()
    }));
    let alerts = run(&mut d, &[record("web", Some("db"), 5432, 2_000), other]);
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].src_pods, ["shop/web-1", "shop/web-2"]);
}
