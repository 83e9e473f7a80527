//! `--respond` parsing, and the response leaving a held pod alone.

use bulkhead_flows::record::FlowVerdict;
use bulkhead_learn::edge::{End, WorkloadId};

use super::*;

fn scan(src_pods: &[&str]) -> Alert {
    let w = WorkloadId {
        namespace: "shop".into(),
        workload: "Deployment/api".into(),
    };
    Alert {
        kind: AlertKind::Scan,
        baseline: "shop".into(),
        version: 1,
        subject: w.clone(),
        src: End::Workload(w),
        dst: End::External("10.0.0.9".parse().unwrap()),
        protocol: 6,
        port: 1,
        targets: 40,
        port_max: 40,
        verdict: FlowVerdict::Allowed,
        policies: Vec::new(),
        first_seen_unix_ms: 1,
        last_seen_unix_ms: 2,
        src_pods: src_pods.iter().map(|p| (*p).to_owned()).collect(),
        dst_pods: Vec::new(),
    }
}

#[test]
fn specs_parse_and_bad_ones_say_why() {
    let mut c = ResponseConfig::default();
    assert!(!c.enabled());
    c.add("quarantine:scan,new_external").unwrap();
    c.add("quarantine:new_peer").unwrap();
    assert_eq!(
        c.quarantine.iter().copied().collect::<Vec<_>>(),
        [AlertKind::NewPeer, AlertKind::NewExternal, AlertKind::Scan]
    );
    for (bad, says) in [
        ("scan", "no action"),
        ("isolate:scan", "unknown action"),
        ("quarantine:portscan", "unknown alert kind \"portscan\""),
        ("quarantine:", "unknown alert kind \"\""),
    ] {
        let e = ResponseConfig::default().add(bad).unwrap_err().to_string();
        assert!(e.contains(says) && e.contains(bad), "{bad}: {e}");
    }
}

#[test]
fn each_source_pod_is_quarantined_once_and_a_held_one_is_left_as_it_is() {
    let store = Arc::new(QuarantineStore::open(None));
    store
        .set(QuarantineRequest {
            namespace: "shop".into(),
            pod: "api-2".into(),
            reason: Some("by hand".into()),
            allow_dns: false,
        })
        .unwrap();
    let mut cfg = ResponseConfig {
        allow_dns: true,
        ..ResponseConfig::default()
    };
    cfg.add("quarantine:scan").unwrap();
    let r = Responder::new(cfg, Arc::clone(&store));
    let got = r.respond(&scan(&["shop/api-1", "shop/api-2"]));
    assert_eq!(
        got,
        [
            Response::Quarantined("shop/api-1".into()),
            Response::Already("shop/api-2".into())
        ]
    );
    let held = store.list();
    let api1 = &held[0].quarantine;
    assert!(api1.allow_dns);
    assert!(api1.reason.chars().count() <= MAX_REASON);
    assert_eq!(held[1].quarantine.reason, "by hand", "not overwritten");
    let mut other = scan(&["shop/api-3"]);
    other.kind = AlertKind::NewPeer;
    assert!(r.respond(&other).is_empty(), "not a kind it responds to");
    assert_eq!(
        r.respond(&scan(&["no-slash"])),
        [Response::Failed(
            "no-slash".into(),
            store
                .set(QuarantineRequest {
                    namespace: String::new(),
                    pod: "no-slash".into(),
                    reason: None,
                    allow_dns: false
                })
                .unwrap_err()
                .to_string()
        )]
    );
}
