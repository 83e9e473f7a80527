//! The per-pod diff of two enforced revisions: quarantines, policies that
//! select a pod newly, no more or differently, mode changes (learn mode
//! included), only for local pods.

use super::*;
use bulkhead_policy::compile::compile;
use bulkhead_policy::model::addressing::AddressPlan;
use bulkhead_policy::source::manifest::load_dir;

/// Pods `shop/web`, `shop/db` and `shop/cache`.
const PODS: &str = "---\napiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: shop, labels: {app: web}}\n\
spec: {}\nstatus: {podIP: 10.0.0.1}\n\
---\napiVersion: v1\nkind: Pod\nmetadata: {name: db, namespace: shop, labels: {app: db}}\n\
spec: {}\nstatus: {podIP: 10.0.0.2}\n\
---\napiVersion: v1\nkind: Pod\nmetadata: {name: cache, namespace: shop, labels: {app: cache}}\n\
spec: {}\nstatus: {podIP: 10.0.0.3}\n";

/// A NetworkPolicy `shop/NAME` selecting `app: APP`, allowing ingress on
/// TCP `port`, in `mode` (none: the default).
fn policy(name: &str, app: &str, port: u16, mode: Option<&str>) -> String {
    let annotations = mode.map_or(String::new(), |m| {
        format!(", annotations: {{bulkhead.io/mode: {m}}}")
    });
    format!(
        "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
         metadata: {{name: {name}, namespace: shop{annotations}}}\n\
         spec:\n  podSelector: {{matchLabels: {{app: {app}}}}}\n  policyTypes: [Ingress]\n  \
         ingress:\n  - ports: [{{protocol: TCP, port: {port}}}]\n"
    )
}

/// The model of `PODS` and `policies`, with `quarantines` applied.
fn model(policies: &[String], quarantines: &[Quarantine]) -> Arc<Model> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("m.yaml"),
        PODS.to_owned() + &policies.concat(),
    )
    .unwrap();
    let mut m = load_dir(dir.path(), &AddressPlan::default()).unwrap();
    m.apply_quarantines(quarantines);
    Arc::new(m)
}

/// The revision of `model` with `local` pods (names in `shop`) local.
fn enforced(model: &Arc<Model>, local: &[&str]) -> Enforced {
    let compiled = compile(model);
    let local: Vec<usize> = local
        .iter()
        .map(|n| model.pods.iter().position(|p| p.name == *n).unwrap())
        .collect();
    Enforced::of(model, &compiled, &local)
}

fn quarantine(pod: &str, reason: &str) -> Quarantine {
    Quarantine {
        namespace: "shop".into(),
        pod: pod.into(),
        reason: reason.into(),
        allow_dns: false,
    }
}

fn kinds(events: &[Event]) -> Vec<(Vec<&str>, &EventKind)> {
    events
        .iter()
        .map(|e| (e.pods.iter().map(String::as_str).collect(), &e.kind))
        .collect()
}

fn change(added: &[&str], removed: &[&str], changed: &[&str]) -> EventKind {
    let v = |s: &[&str]| s.iter().map(|s| s.to_string()).collect();
    EventKind::PolicyChange {
        revision: 7,
        added: v(added),
        removed: v(removed),
        changed: v(changed),
    }
}

fn mode(policy: &str, from: &str, to: &str) -> EventKind {
    EventKind::ModeChange {
        revision: 7,
        policy: policy.into(),
        from: from.into(),
        to: to.into(),
    }
}

#[test]
fn the_same_revision_again_changes_nothing() {
    let m = model(&[policy("web-in", "web", 80, None)], &[]);
    let a = enforced(&m, &["web", "db"]);
    let b = enforced(
        &model(&[policy("web-in", "web", 80, None)], &[]),
        &["web", "db"],
    );
    assert!(diff(&a, &b, 7, 1_000).is_empty());
}

#[test]
fn policies_added_removed_and_changed_per_pod_grouped_by_change() {
    let before = enforced(
        &model(
            &[
                policy("web-in", "web", 80, None),
                policy("db-in", "db", 5432, None),
                policy("cache-in", "cache", 6379, None),
            ],
            &[],
        ),
        &["web", "db", "cache"],
    );
    let after = enforced(
        &model(
            &[
                // Its port changed.
                policy("web-in", "web", 8080, None),
                // Now selects web and db too.
                policy("shop-in", "web", 443, None),
                policy("shop-db", "db", 443, None),
                // Unchanged, but cache is no longer local: not reported.
                policy("cache-in", "cache", 6380, None),
            ],
            &[],
        ),
        &["web", "db"],
    );
    let events = diff(&before, &after, 7, 1_000);
    assert!(events.iter().all(|e| e.at_unix_ms == 1_000));
    assert_eq!(
        kinds(&events),
        [
            (
                vec!["shop/db"],
                &change(&["shop/shop-db"], &["shop/db-in"], &[])
            ),
            (
                vec!["shop/web"],
                &change(&["shop/shop-in"], &[], &["shop/web-in"])
            ),
        ]
    );
}

#[test]
fn modes_change_for_the_pods_a_policy_selects_learn_mode_included() {
    let policies = |web: Option<&str>, db: Option<&str>| {
        vec![
            policy("web-in", "web", 80, web),
            policy("db-in", "db", 5432, db),
        ]
    };
    let at = |p: Vec<String>| enforced(&model(&p, &[]), &["web", "db"]);
    let enforce = at(policies(None, None));
    let audit = at(policies(Some("audit"), None));
    assert_eq!(
        kinds(&diff(&enforce, &audit, 7, 1)),
        [(vec!["shop/web"], &mode("shop/web-in", "enforce", "audit"))]
    );
    // Learn mode is in no compiled view: still a mode change, both ways.
    let learn = at(policies(Some("audit"), Some("learn")));
    assert_eq!(
        kinds(&diff(&audit, &learn, 7, 2)),
        [(vec!["shop/db"], &mode("shop/db-in", "enforce", "learn"))]
    );
    assert_eq!(
        kinds(&diff(&learn, &enforce, 7, 3)),
        [
            (vec!["shop/db"], &mode("shop/db-in", "learn", "enforce")),
            (vec!["shop/web"], &mode("shop/web-in", "audit", "enforce")),
        ]
    );
    // A policy removed while in learn mode was never in force: nothing.
    let gone = at(vec![policy("web-in", "web", 80, None)]);
    let learn_db = at(policies(None, Some("learn")));
    assert!(diff(&learn_db, &gone, 7, 4).is_empty());
    // Into learn mode with other rules: it stops selecting, as a removal.
    let changed = at(vec![
        policy("web-in", "web", 80, None),
        policy("db-in", "db", 5433, Some("learn")),
    ]);
    assert_eq!(
        kinds(&diff(&enforce, &changed, 7, 5)),
        [(vec!["shop/db"], &change(&[], &["shop/db-in"], &[]))]
    );
}

#[test]
fn quarantines_begin_change_and_end_whatever_their_source() {
    let plain = enforced(&model(&[], &[]), &["web", "db"]);
    let stored = enforced(&model(&[], &[quarantine("web", "scan")]), &["web", "db"]);
    assert_eq!(
        kinds(&diff(&plain, &stored, 7, 1)),
        [(
            vec!["shop/web"],
            &EventKind::Quarantined {
                reason: "scan".into(),
                allow_dns: false,
            }
        )]
    );
    // The quarantine policy is no policy change; its reason changing is
    // reported again.
    let again = enforced(
        &model(&[], &[quarantine("web", "exfiltration")]),
        &["web", "db"],
    );
    assert_eq!(
        kinds(&diff(&stored, &again, 7, 2)),
        [(
            vec!["shop/web"],
            &EventKind::Quarantined {
                reason: "exfiltration".into(),
                allow_dns: false,
            }
        )]
    );
    assert_eq!(
        kinds(&diff(&again, &plain, 7, 3)),
        [(vec!["shop/web"], &EventKind::Unquarantined)]
    );
    // From the pod's label, through the same model.
    let mut labelled = (*model(&[], &[])).clone();
    let db = labelled.pods.iter().position(|p| p.name == "db").unwrap();
    labelled.pods[db]
        .labels
        .insert("bulkhead.io/quarantine".into(), "allow-dns".into());
    labelled.apply_quarantines(&[]);
    let labelled = enforced(&Arc::new(labelled), &["web", "db"]);
    assert_eq!(
        kinds(&diff(&plain, &labelled, 7, 4)),
        [(
            vec!["shop/db"],
            &EventKind::Quarantined {
                reason: "label bulkhead.io/quarantine=allow-dns".into(),
                allow_dns: true,
            }
        )]
    );
}

#[test]
fn a_pod_new_on_the_node_gets_what_selects_it() {
    let m = model(
        &[policy("web-in", "web", 80, None)],
        &[quarantine("web", "r")],
    );
    let events = diff(&enforced(&m, &["db"]), &enforced(&m, &["db", "web"]), 7, 1);
    assert_eq!(
        kinds(&events),
        [
            (
                vec!["shop/web"],
                &EventKind::Quarantined {
                    reason: "r".into(),
                    allow_dns: false,
                }
            ),
            (vec!["shop/web"], &change(&["shop/web-in"], &[], &[])),
        ]
    );
}
