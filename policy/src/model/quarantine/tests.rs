//! Quarantine as a policy: what it selects, what it lets through, and that
//! it wins over every allow of every tier (through the compiled tables, as
//! the kernel sees them).

use std::net::IpAddr;

use bulkhead_common::{PROTO_TCP, PROTO_UDP};

use super::*;
use crate::compile::compile;
use crate::eval::Verdict;
use crate::model::addressing::AddressPlan;
use crate::source::manifest::load_dir;
use crate::testfs::dir_with;

/// Two namespaces: `shop` (web, db, both `tier` labelled) and
/// `kube-system` (coredns, `k8s-app: kube-dns`); an Admin Accept of
/// everything to and from shop, and a NetworkPolicy allowing web → db.
const CLUSTER: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Namespace
metadata: {name: kube-system}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {tier: web}}
spec: {containers: [{name: c, image: i}]}
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: shop, labels: {tier: db}}
spec: {containers: [{name: c, image: i}]}
status: {podIP: 10.0.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: coredns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec: {containers: [{name: c, image: i}]}
status: {podIP: 10.0.0.53}
---
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: accept-shop}
spec:
  tier: Admin
  priority: 0
  subject: {namespaces: {matchLabels: {kubernetes.io/metadata.name: shop}}}
  ingress:
  - {action: Accept, from: [{namespaces: {}}]}
  egress:
  - {action: Accept, to: [{networks: [0.0.0.0/0]}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: shop}
spec:
  podSelector: {matchLabels: {tier: db}}
  ingress:
  - from: [{podSelector: {matchLabels: {tier: web}}}]
"#;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The model of `yaml` (one manifest file).
fn model_from_yaml(yaml: &str) -> Model {
    let dir = dir_with(&[("cluster.yaml", yaml)]);
    load_dir(dir.path(), &AddressPlan::default()).expect("the manifests load")
}

/// The verdict on `src` → `dst` over `proto`/`port` in `model`, through
/// the compiled tables.
fn verdict(model: &Model, src: &str, dst: &str, proto: u8, port: u16) -> Verdict {
    compile(model).evaluate(ip(src), ip(dst), proto, port)
}

fn quarantine(pod: &str, allow_dns: bool) -> Quarantine {
    Quarantine {
        namespace: "shop".into(),
        pod: pod.into(),
        reason: "scanning".into(),
        allow_dns,
    }
}

#[test]
fn a_quarantine_overrides_an_admin_accept_both_ways_and_only_for_its_pod() {
    let mut model = model_from_yaml(CLUSTER);
    assert!(verdict(&model, "10.0.0.1", "10.0.0.2", PROTO_TCP, 80).allowed());
    model.apply_quarantines(&[quarantine("web", false)]);
    for (src, dst) in [("10.0.0.1", "10.0.0.2"), ("10.0.0.2", "10.0.0.1")] {
        let v = verdict(&model, src, dst, PROTO_TCP, 80);
        assert!(!v.allowed(), "{src} → {dst}: {v:?}");
    }
    assert!(
        !verdict(&model, "10.0.0.1", "192.0.2.9", PROTO_UDP, 443).allowed(),
        "nor anywhere outside"
    );
    assert!(
        !verdict(&model, "10.0.0.1", "10.0.0.53", PROTO_UDP, 53).allowed(),
        "DNS only when asked for"
    );
    // db's other traffic is as it was: from coredns, its NetworkPolicy
    // under the Admin Accept of everything in shop.
    assert!(verdict(&model, "10.0.0.53", "10.0.0.2", PROTO_TCP, 80).allowed());
}

#[test]
fn allow_dns_lets_the_pod_reach_the_cluster_dns_and_nothing_else() {
    let mut model = model_from_yaml(CLUSTER);
    model.apply_quarantines(&[quarantine("web", true)]);
    for proto in [PROTO_UDP, PROTO_TCP] {
        assert!(verdict(&model, "10.0.0.1", "10.0.0.53", proto, 53).allowed());
    }
    assert!(!verdict(&model, "10.0.0.1", "10.0.0.53", PROTO_UDP, 54).allowed());
    assert!(!verdict(&model, "10.0.0.53", "10.0.0.1", PROTO_UDP, 53).allowed());
}

#[test]
fn a_label_quarantines_and_a_stored_quarantine_of_an_absent_pod_waits() {
    let labelled = CLUSTER.replace(
        "labels: {tier: db}",
        "labels: {tier: db, bulkhead.io/quarantine: \"true\"}",
    );
    let mut model = model_from_yaml(&labelled);
    let q = model.labelled_quarantines();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].key(), "shop/db");
    assert_eq!(q[0].reason, "label bulkhead.io/quarantine=true");
    model.apply_quarantines(&[quarantine("gone", false)]);
    assert!(!verdict(&model, "10.0.0.1", "10.0.0.2", PROTO_TCP, 80).allowed());
    assert!(verdict(&model, "10.0.0.53", "10.0.0.1", PROTO_TCP, 80).allowed());
    let tiers: Vec<_> = model
        .admin_policies
        .iter()
        .map(|p| (p.tier, p.name.as_str()))
        .collect();
    assert_eq!(
        tiers,
        [
            (Tier::Quarantine, "shop/db"),
            (Tier::Quarantine, "shop/gone"),
            (Tier::Admin, "accept-shop")
        ],
        "quarantines first, in the evaluation order"
    );
}

#[test]
fn explain_names_the_quarantine_its_tier_and_reason() {
    use crate::eval::explain::{PeerArg, explain};
    let mut model = model_from_yaml(CLUSTER);
    model.apply_quarantines(&[quarantine("web", false)]);
    let compiled = compile(&model);
    let pod = |s: &str| PeerArg::Pod(s.into());
    let e = explain(
        &model,
        &compiled,
        &pod("shop/web"),
        &pod("shop/db"),
        Protocol::Tcp,
        80,
    )
    .expect("explained");
    assert!(!e.allowed);
    let denied = e.egress.denied_by.expect("a rule denies the egress");
    assert_eq!(denied.policy, "Quarantine/shop/web");
    assert_eq!(denied.tier, Some(Tier::Quarantine));
    assert_eq!(denied.action, Some(Action::Deny));
    assert_eq!(denied.name.as_deref(), Some("quarantined: scanning"));
    assert!(
        e.egress.admin_policies[0].starts_with("Quarantine/shop/web (Quarantine"),
        "{:?}",
        e.egress.admin_policies
    );
    // db's ingress is decided by its own policies; the quarantine denies
    // at web's side.
    assert!(e.ingress.denied_by.is_none());
}

#[test]
fn a_quarantine_holds_across_relabels_and_policy_changes() {
    let q = quarantine("web", false);
    // Relabelled (no selector of any policy matches it any more) and a new
    // policy allowing everything to and from it: the model the agent
    // compiles next, with its stored quarantines applied again.
    let changed = CLUSTER.replace("labels: {tier: web}", "labels: {tier: renamed}")
        + r#"---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-all, namespace: shop}
spec:
  podSelector: {}
  ingress: [{}]
  egress: [{}]
"#;
    let mut model = model_from_yaml(&changed);
    model.apply_quarantines(std::slice::from_ref(&q));
    assert!(!verdict(&model, "10.0.0.1", "10.0.0.2", PROTO_TCP, 80).allowed());
    assert!(!verdict(&model, "10.0.0.2", "10.0.0.1", PROTO_TCP, 80).allowed());
    // Applied twice (each compile applies the store again): still one
    // quarantine policy, and lifting it restores the model's verdicts.
    model.apply_quarantines(std::slice::from_ref(&q));
    let n = |m: &Model| {
        m.admin_policies
            .iter()
            .filter(|p| p.tier == Tier::Quarantine)
            .count()
    };
    assert_eq!(n(&model), 1);
    model.apply_quarantines(&[]);
    assert_eq!(n(&model), 0);
    assert!(verdict(&model, "10.0.0.2", "10.0.0.1", PROTO_TCP, 80).allowed());
}

#[test]
fn a_quarantine_policy_reads_back_as_its_quarantine() {
    for allow_dns in [false, true] {
        let q = Quarantine {
            namespace: "shop".into(),
            pod: "web".into(),
            reason: "scan from web".into(),
            allow_dns,
        };
        assert_eq!(Quarantine::of_policy(&q.to_policy()), Some(q));
    }
    let mut other = Quarantine {
        namespace: "shop".into(),
        pod: "web".into(),
        reason: "r".into(),
        allow_dns: false,
    }
    .to_policy();
    other.tier = Tier::Admin;
    assert_eq!(
        Quarantine::of_policy(&other),
        None,
        "only the quarantine tier"
    );
}
