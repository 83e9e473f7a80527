//! `baseline take`, `accept` (by edge and from an alerts file) and `show`,
//! on files.

use std::sync::Arc;

use bulkhead_flows::record::{PodInfo, RecordKind};
use bulkhead_learn::baseline::detect::{Alert, AlertKind};
use bulkhead_testkit::flows::flow_record;

use super::*;
use bulkhead_agent::alerts::jsonl::AlertLine as Line;

fn w(ns: &str, name: &str) -> End {
    End::Workload(WorkloadId {
        namespace: ns.into(),
        workload: format!("Deployment/{name}"),
    })
}

fn pod(ns: &str, name: &str) -> Option<Arc<PodInfo>> {
    Some(Arc::new(PodInfo {
        namespace: ns.into(),
        pod: format!("{name}-1").into(),
        workload: Some(format!("Deployment/{name}").into()),
        labels: Default::default(),
    }))
}

/// A flow log with shop web → api:8080 and other x → y:80.
fn flow_log(dir: &Path) -> PathBuf {
    let path = dir.join("flows.jsonl");
    let mut text = String::new();
    for (ns, src, dst, port) in [("shop", "web", "api", 8080), ("other", "x", "y", 80)] {
        let mut r = flow_record();
        r.kind = RecordKind::Flow;
        r.src.pod = pod(ns, src);
        r.endpoint = r.src.pod.clone();
        r.dst.pod = pod(ns, dst);
        r.dst.external = false;
        r.dst.ip = "10.0.0.9".parse().unwrap();
        r.dst.port = port;
        text.push_str(&serde_json::to_string(&r).unwrap());
        text.push('\n');
    }
    std::fs::write(&path, text).unwrap();
    path
}

fn take_args(dir: &Path, flows: PathBuf) -> TakeArgs {
    TakeArgs {
        name: "shop".into(),
        scope: vec!["shop".into()],
        flows: vec![flows],
        history_db: Vec::new(),
        socket: Vec::new(),
        lab: None,
        file: dir.join("shop.json"),
        force: false,
        include_denied: false,
        window: Default::default(),
    }
}

#[test]
fn edges_parse_workloads_addresses_and_protocols() {
    assert_eq!(
        parse_edge("shop/Deployment/web,shop/Deployment/db,TCP/5432").unwrap(),
        EdgeKey {
            src: w("shop", "web"),
            dst: w("shop", "db"),
            protocol: 6,
            port: 5432,
        }
    );
    let k = parse_edge("shop/Deployment/web,2001:db8::1,icmpv6").unwrap();
    assert_eq!(
        (k.dst, k.protocol, k.port),
        (End::External("2001:db8::1".parse().unwrap()), 58, 0)
    );
    assert_eq!(
        edge_text(&parse_edge("shop/Deployment/web,10.0.0.1,udp/53").unwrap()),
        "shop/Deployment/web -> 10.0.0.1 UDP/53"
    );
    for bad in [
        "shop/Deployment/web,shop/Deployment/db",
        "shop/web,shop/Deployment/db,TCP/1",
        "shop/Deployment/web,shop/Deployment/db,TCP/x",
        "shop/Deployment/web,shop/Deployment/db,bogus/1",
        "shop/Deployment/web,shop/Deployment/db,ICMP/7",
    ] {
        assert!(parse_edge(bad).is_err(), "{bad}");
    }
}

#[test]
fn take_accept_and_show() {
    let dir = tempfile::tempdir().unwrap();
    let log = flow_log(dir.path());
    let args = take_args(dir.path(), log.clone());
    take(&args).unwrap();
    let b = Baseline::read(&args.file).unwrap();
    assert_eq!(b.version(), 1);
    let edges: Vec<String> = b.edges().iter().map(edge_text).collect();
    assert_eq!(
        edges,
        ["shop/Deployment/web -> shop/Deployment/api TCP/8080"]
    );
    // Taking again over it needs --force.
    assert!(matches!(take(&args), Err(BaselineCliError::Exists { .. })));

    accept(&AcceptArgs {
        file: args.file.clone(),
        edge: vec![
            "shop/Deployment/web,shop/Deployment/db,TCP/5432".into(),
            // Outside the scope: reported, not accepted.
            "other/Deployment/x,other/Deployment/z,TCP/1".into(),
        ],
        from_alerts: Vec::new(),
        note: Some("reviewed".into()),
    })
    .unwrap();
    let b = Baseline::read(&args.file).unwrap();
    assert_eq!((b.version(), b.edges().len()), (2, 2));
    assert_eq!(b.versions[1].note, "reviewed");

    let text = show_text(&b);
    assert!(
        text.starts_with("baseline shop v2: 2 edges\nscope: shop\n"),
        "{text}"
    );
    assert!(text.contains("v2 ("), "{text}");
    assert!(text.contains("  shop/Deployment/web -> shop/Deployment/db TCP/5432\n"));
}

fn alert(kind: AlertKind, baseline: &str, port: u16) -> Alert {
    Alert {
        kind,
        baseline: baseline.into(),
        version: 1,
        subject: WorkloadId {
            namespace: "shop".into(),
            workload: "Deployment/web".into(),
        },
        src: w("shop", "web"),
        dst: w("shop", "cache"),
        protocol: 6,
        port,
        targets: 1,
        port_max: port,
        verdict: bulkhead_flows::record::FlowVerdict::Allowed,
        policies: Vec::new(),
        first_seen_unix_ms: 1,
        last_seen_unix_ms: 2,
        src_pods: vec!["shop/web-1".into()],
        dst_pods: vec!["shop/cache-1".into()],
    }
}

#[test]
fn accept_from_alerts_takes_this_baselines_edge_alerts_only() {
    let dir = tempfile::tempdir().unwrap();
    let log = flow_log(dir.path());
    let args = take_args(dir.path(), log);
    take(&args).unwrap();
    let alerts = dir.path().join("alerts.jsonl");
    let mut text = String::new();
    for a in [
        alert(AlertKind::NewPeer, "shop", 6379),
        alert(AlertKind::Scan, "shop", 1),
        alert(AlertKind::NewPeer, "other", 9),
        // The same edge twice: accepted once.
        alert(AlertKind::NewPeer, "shop", 6379),
    ] {
        text.push_str(&serde_json::to_string(&Line::new(&a, "n", 5)).unwrap());
        text.push('\n');
    }
    std::fs::write(&alerts, text).unwrap();
    accept(&AcceptArgs {
        file: args.file.clone(),
        edge: Vec::new(),
        from_alerts: vec![alerts.clone()],
        note: None,
    })
    .unwrap();
    let b = Baseline::read(&args.file).unwrap();
    assert_eq!(b.version(), 2);
    let added: Vec<String> = b.versions[1].added.iter().map(edge_text).collect();
    assert_eq!(
        added,
        ["shop/Deployment/web -> shop/Deployment/cache TCP/6379"]
    );
    assert!(b.versions[1].note.contains("alerts.jsonl"));

    std::fs::write(&alerts, "{\"schema\":\"x\"}\n").unwrap();
    let err = accept(&AcceptArgs {
        file: args.file.clone(),
        edge: Vec::new(),
        from_alerts: vec![alerts],
        note: None,
    })
    .unwrap_err();
    assert!(err.to_string().contains(":1: not a"), "{err}");
}
