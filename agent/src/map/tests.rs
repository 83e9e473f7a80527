use std::sync::{Arc, Mutex};

use bulkhead_learn::History;
use bulkhead_learn::baseline::{Baseline, Scope};
use bulkhead_learn::map::{MapBatch, MapConfig, SharedMap};
use bulkhead_policy::compile::compile;
use bulkhead_policy::model::{Mode, Model};
use bulkhead_testkit::learn::{conn, demo, demo_model};
use serde_json::Value;

use super::*;

fn id(ns: &str, w: &str) -> WorkloadId {
    WorkloadId {
        namespace: ns.into(),
        workload: w.into(),
    }
}

fn policy_now(model: Model) -> PolicyNow {
    let compiled = compile(&model);
    PolicyNow::new(Arc::new(model), Arc::new(compiled), &[])
}

#[test]
fn a_workload_takes_the_strictest_mode_of_the_policies_selecting_it() {
    let p = policy_now(demo_model());
    assert_eq!(
        p.mode(&id("shop", "Deployment/frontend")),
        Some(Mode::Enforce)
    );
    assert_eq!(p.mode(&id("shop", "Deployment/gone")), None);
    let names: Vec<String> = p
        .selecting(&id("shop", "StatefulSet/db"))
        .into_iter()
        .map(|s| format!("{} {:?} {:?}", s.name, s.mode, s.directions))
        .collect();
    assert_eq!(
        names,
        [
            "shop/allow-dns Enforce [\"egress\"]",
            "shop/db Enforce [\"ingress\"]",
            "shop/default-deny Enforce [\"ingress\", \"egress\"]",
        ]
    );

    let mut m = demo_model();
    for pol in &mut m.policies {
        pol.mode = Some(if pol.name == "db" {
            Mode::Audit
        } else {
            Mode::Learn
        });
    }
    m.default_mode = Mode::Audit;
    let p = policy_now(m.clone());
    assert_eq!(p.mode(&id("shop", "StatefulSet/db")), Some(Mode::Audit));
    assert_eq!(
        p.mode(&id("shop", "Deployment/frontend")),
        Some(Mode::Learn)
    );
    // No policy selects coredns: its namespace's mode, else the default.
    let dns = id("kube-system", "Deployment/coredns");
    assert_eq!(p.mode(&dns), Some(Mode::Audit));
    m.namespaces.get_mut("kube-system").unwrap().mode = Some(Mode::Learn);
    assert_eq!(policy_now(m).mode(&dns), Some(Mode::Learn));
}

#[test]
fn edges_outside_an_active_baseline_are_marked() {
    let d = demo();
    let t = crate::flows::unix_ms() - 10_000;
    let held = conn(t, &d.frontend, &d.api, 6, 8080);
    let mut learned = History::default();
    held.iter().for_each(|r| learned.add_record(r));
    let baseline =
        Baseline::take("shop", vec![Scope::Namespace("shop".into())], &learned, 0).unwrap();
    let cfg = crate::alerts::AlertsConfig {
        baselines: vec![baseline],
        ..crate::alerts::AlertsConfig::default()
    };
    let ring = Arc::new(bulkhead_flows::History::new(10));
    let alerts = crate::alerts::Alerts::start(&cfg, "n", ring, None, None).unwrap();
    let map = SharedMap::new(MapConfig::default()).unwrap();
    let source = MapSource::new(
        Arc::clone(&map),
        "n",
        None,
        None,
        Arc::new(Mutex::new(Some(alerts))),
    );
    let mut b = MapBatch::default();
    held.iter()
        .chain(&conn(t, &d.frontend, &d.db, 6, 5432))
        .chain(&conn(t, &d.dns, &d.api, 6, 9999))
        .for_each(|r| b.add_record(r));
    map.merge(b, crate::flows::unix_ms());
    let v: Value = serde_json::from_str(&source.view(Window::ALL, 0)).unwrap();
    let outside: Vec<(&str, bool)> = v["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["id"].as_str().unwrap(),
                e["outside_baseline"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        outside,
        [
            (
                "kube-system/Deployment/coredns>shop/Deployment/api:TCP/9999",
                true
            ),
            (
                "shop/Deployment/frontend>shop/Deployment/api:TCP/8080",
                false
            ),
            (
                "shop/Deployment/frontend>shop/StatefulSet/db:TCP/5432",
                true
            ),
        ]
    );
    // Without a policy in force: modes unknown, addresses by /24.
    assert!(v["workloads"][0]["mode"].is_null());
    if let Some(a) = source.alerts.lock().unwrap().take() {
        a.stop();
    }
}
