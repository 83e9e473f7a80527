use bulkhead_flows::record::FlowVerdict;

use super::*;

fn w(ns: &str, wl: &str) -> WorkloadId {
    WorkloadId {
        namespace: ns.into(),
        workload: wl.into(),
    }
}

fn new_peer() -> Alert {
    Alert {
        kind: AlertKind::NewPeer,
        baseline: "shop".into(),
        version: 3,
        subject: w("shop", "Deployment/web"),
        src: End::Workload(w("shop", "Deployment/web")),
        dst: End::Workload(w("pay", "Deployment/db")),
        protocol: 6,
        port: 5432,
        targets: 1,
        port_max: 5432,
        verdict: FlowVerdict::Denied,
        policies: vec!["shop/deny-all".into(), "pay/db".into()],
        first_seen_unix_ms: 1_765_000_000_000,
        last_seen_unix_ms: 1_765_000_000_500,
        src_pods: vec!["shop/web-1".into()],
        dst_pods: Vec::new(),
    }
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn an_edge_alert_is_labelled_by_its_edge() {
    let a = new_peer();
    assert_eq!(
        labels(&a, "node-1"),
        map(&[
            ("alertname", ALERTNAME),
            ("kind", "new_peer"),
            ("baseline", "shop"),
            ("namespace", "shop"),
            ("workload", "Deployment/web"),
            ("direction", "egress"),
            ("peer", "pay/Deployment/db"),
            ("protocol", "TCP"),
            ("port", "5432"),
            ("node", "node-1"),
        ])
    );
    let n = annotations(&a);
    assert_eq!(n["verdict"], "denied");
    assert_eq!(n["policies"], "shop/deny-all, pay/db");
    assert_eq!(n["baseline_version"], "3");
    assert!(
        n["summary"].contains("pay/Deployment/db TCP/5432"),
        "{}",
        n["summary"]
    );
    assert!(!n.contains_key("targets"));
}

#[test]
fn the_subject_as_destination_names_the_source_as_peer() {
    let mut a = new_peer();
    a.subject = w("pay", "Deployment/db");
    let l = labels(&a, "");
    assert_eq!(l["direction"], "ingress");
    assert_eq!(l["peer"], "shop/Deployment/web");
    assert_eq!(l["namespace"], "pay");
    assert!(!l.contains_key("node"));
    assert!(summary(&a).contains("was reached from"));
}

#[test]
fn a_scan_is_one_alert_per_source_with_its_targets_annotated() {
    let mut a = new_peer();
    a.kind = AlertKind::Scan;
    a.targets = 100;
    a.port = 1;
    a.port_max = 100;
    let mut b = a.clone();
    b.dst = End::External("10.9.9.9".parse().unwrap());
    b.port = 7;
    let l = labels(&a, "n");
    assert_eq!(
        l,
        labels(&b, "n"),
        "the scan's first target is not its identity"
    );
    for k in ["peer", "protocol", "port"] {
        assert!(!l.contains_key(k), "{k}");
    }
    let n = annotations(&a);
    assert_eq!(
        (n["targets"].as_str(), n["ports"].as_str()),
        ("100", "1-100")
    );
}

#[test]
fn it_ends_one_interval_after_it_started() {
    let p = postable(&new_peer(), "n", Duration::from_secs(3600));
    assert_eq!(p.starts_at, "2025-12-06T05:46:40.000Z");
    assert_eq!(p.ends_at, "2025-12-06T06:46:40.000Z");
}
