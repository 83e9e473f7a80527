//! Workloads without a proposal: each reason, and what the proposed
//! policies do to them, read from the compiled tables (existing policies
//! included).

use super::*;
use crate::coverage::{prove, text};
use crate::edge::History;
use crate::propose::propose;
use bulkhead_flows::record::FlowRecord;
use bulkhead_testkit::learn::{demo_model, demo_records};

fn history(records: impl IntoIterator<Item = FlowRecord>) -> History {
    let mut h = History::default();
    for r in records {
        h.add_record(&r);
    }
    h
}

/// (workload, reason, denied_by, allowed_by) of the proof.
fn listed(h: &History, model: &Model) -> Vec<(String, UnproposedReason, Vec<String>, Vec<String>)> {
    let p = propose(h, model);
    let proof = prove(h, model, &p);
    assert!(proof.complete(), "{:?}", proof.denied);
    proof
        .unproposed_workloads
        .into_iter()
        .map(|u| (u.workload, u.reason, u.denied_by, u.allowed_by))
        .collect()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The demo's stray debug pod sent nothing: not seen. The frontend's
/// ingress admits it on 8080 (the manifests' own `frontend` policy opens
/// http to everyone, and stays); every other side is closed to it.
#[test]
fn an_unseen_workload_is_named_with_what_the_proposal_denies_it() {
    let (h, model) = (history(demo_records()), demo_model());
    assert_eq!(
        listed(&h, &model),
        [(
            "sandbox/Pod/stray".to_owned(),
            UnproposedReason::NotSeen,
            strings(&[
                "shop/bulkhead-api (egress)",
                "shop/bulkhead-api (ingress)",
                "shop/bulkhead-db (egress)",
                "shop/bulkhead-db (ingress)",
                "shop/bulkhead-frontend (egress)",
            ]),
            // The DNS server's policy admits every pod on 53; it has no
            // egress section, so its egress is not listed.
            strings(&[
                "kube-system/bulkhead-coredns ingress TCP/53, UDP/53",
                "shop/bulkhead-frontend ingress TCP/8080",
            ]),
        )]
    );
    let p = propose(&h, &model);
    let proof = prove(&h, &model, &p);
    let t = text(&proof, &p);
    assert!(
        t.contains(
            "  sandbox/Pod/stray: not seen (no flow in the window)\n    denied by: \
             shop/bulkhead-api (egress), "
        ),
        "{t}"
    );
    assert!(
        t.contains("; shop/bulkhead-frontend ingress TCP/8080\n"),
        "{t}"
    );
    let json = serde_json::to_value(&proof).unwrap();
    let u = &json["unproposed_workloads"][0];
    assert_eq!(u["workload"], "sandbox/Pod/stray");
    assert_eq!(u["reason"], "not_seen");
    assert_eq!(
        u["allowed_by"][1],
        "shop/bulkhead-frontend ingress TCP/8080"
    );
}

/// db's own records are missing (its node's history was not merged): db
/// is a remote peer only. api's proposed egress and coredns's ingress
/// admit what was seen of it.
#[test]
fn a_remote_only_workload_is_named_with_what_its_peers_allow() {
    let records = demo_records()
        .into_iter()
        .filter(|r| r.endpoint.as_ref().is_none_or(|e| &*e.pod != "db-0"));
    let (h, model) = (history(records), demo_model());
    let db = listed(&h, &model)
        .into_iter()
        .find(|u| u.0 == "shop/StatefulSet/db")
        .unwrap();
    assert_eq!(db.1, UnproposedReason::RemoteOnly);
    assert_eq!(
        db.3,
        strings(&[
            "kube-system/bulkhead-coredns ingress TCP/53, UDP/53",
            "shop/bulkhead-api egress TCP/5432",
            // The manifests' own `frontend` policy opens http to all.
            "shop/bulkhead-frontend ingress TCP/8080",
        ])
    );
    assert!(db.2.contains(&"shop/bulkhead-api (ingress)".to_owned()));
    assert!(!db.2.iter().any(|d| d.starts_with("shop/bulkhead-db")));
}

/// db's pods (one, `db` in the manifests) share no label but a generated one: no policy (no selector),
/// listed as unselectable and here.
#[test]
fn a_workload_without_stable_labels_is_named() {
    let mut model = demo_model();
    for p in model.pods.iter_mut().filter(|p| p.name == "db") {
        p.labels = [(
            "statefulset.kubernetes.io/pod-name".to_owned(),
            "db-0".to_owned(),
        )]
        .into_iter()
        .collect();
    }
    // The manifests' default-deny would deny db's traffic, which no
    // proposal can fix (it has no policy): without them, all is covered.
    model.policies.clear();
    model.normalize();
    let h = history(demo_records());
    let all = listed(&h, &model);
    let db = all
        .iter()
        .find(|u| u.0 == "shop/StatefulSet/db")
        .unwrap_or_else(|| panic!("{all:?} {:?}", model.pods));
    assert_eq!(db.1, UnproposedReason::NoStableLabels);
    assert!(propose(&h, &model).unselectable.contains(&db.0));
    // The stray pod is still there, not seen; nothing else.
    assert_eq!(all.len(), 2, "{all:?}");
}
