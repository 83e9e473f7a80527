use std::net::IpAddr;
use std::path::Path;

use super::connectivity::{PortSets, Ranges, connectivity};
use super::explain::{PeerArg, explain};
use super::*;
use crate::compile::compile;
use crate::model::addressing::AddressPlan;
use crate::model::{Mode, Protocol};
use crate::source::manifest::load_dir;

fn demo() -> crate::model::Model {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/demo");
    load_dir(&dir, &AddressPlan::default()).expect("demo manifests load")
}

#[test]
fn ranges_merge_clamp_and_intersect() {
    let r = Ranges::from_unsorted(vec![(0, 10), (11, 20), (30, 40), (35, 50)]);
    assert_eq!(r.0, vec![(1, 20), (30, 50)]);
    let s = Ranges::from_unsorted(vec![(15, 32), (50, 60)]);
    assert_eq!(r.intersect(&s).0, vec![(15, 20), (30, 32), (50, 50)]);
    assert!(r.contains(1) && r.contains(50) && !r.contains(25) && !r.contains(0));
    assert!(PortSets::all().is_all());
}

#[test]
fn demo_connectivity_is_least_privilege() {
    let m = demo();
    let c = compile(&m);
    let conns = connectivity(&m, &c);
    let find = |s: &str, d: &str| {
        conns
            .iter()
            .find(|x| x.src.to_string() == s && x.dst.to_string() == d)
            .map(|x| x.allowed.clone())
    };
    let api = find("shop/frontend", "shop/api").expect("frontend → api");
    assert_eq!(api.get(Protocol::Tcp).0, vec![(8080, 8080)]);
    assert!(api.get(Protocol::Udp).is_empty());
    assert_eq!(
        find("shop/api", "shop/db").unwrap().get(Protocol::Tcp).0,
        vec![(5432, 5432)]
    );
    assert!(find("shop/frontend", "shop/db").is_none());
    assert!(find("sandbox/stray", "shop/db").is_none());
    assert!(
        find("sandbox/stray", "kube-system/coredns")
            .unwrap()
            .is_all()
    );
    // Isolated egress: no external line; unisolated: the whole space, both families.
    assert!(find("shop/api", "0.0.0.0/0").is_none());
    assert!(find("sandbox/stray", "0.0.0.0/0").unwrap().is_all());
    assert!(find("sandbox/stray", "::/0").unwrap().is_all());
    // External to the frontend: only its named http port.
    assert_eq!(
        find("0.0.0.0/0", "shop/frontend")
            .unwrap()
            .get(Protocol::Tcp)
            .0,
        vec![(8080, 8080)]
    );
    // A pod to itself is never listed.
    assert!(conns.iter().all(|x| x.src != x.dst));
}

#[test]
fn explain_names_the_deciding_and_the_near_miss_rules() {
    let m = demo();
    let c = compile(&m);
    let pod = |s: &str| PeerArg::Pod(s.into());
    let e = explain(
        &m,
        &c,
        &pod("shop/api"),
        &pod("shop/db"),
        Protocol::Tcp,
        5432,
    )
    .unwrap();
    assert!(e.allowed);
    assert_eq!(e.egress.verdict, "allowed");
    assert_eq!(e.egress.allowed_by.len(), 1);
    assert_eq!(e.egress.allowed_by[0].policy, "shop/api");
    assert_eq!(
        e.egress.allowed_by[0].port_text,
        "TCP port named \"postgres\""
    );
    assert_eq!(e.ingress.allowed_by[0].policy, "shop/db");
    assert_eq!(e.ingress.policies, vec!["shop/db", "shop/default-deny"]);

    let e = explain(
        &m,
        &c,
        &pod("sandbox/stray"),
        &pod("shop/db"),
        Protocol::Tcp,
        5432,
    )
    .unwrap();
    assert!(!e.allowed);
    assert_eq!(e.egress.verdict, "not-isolated");
    assert_eq!(e.ingress.verdict, "denied");
    assert!(e.ingress.allowed_by.is_empty());
    assert_eq!(e.ingress.port_matches_peer_does_not[0].policy, "shop/db");

    let e = explain(
        &m,
        &c,
        &pod("shop/api"),
        &pod("shop/db"),
        Protocol::Tcp,
        5433,
    )
    .unwrap();
    assert!(!e.allowed);
    assert_eq!(e.egress.peer_matches_port_does_not[0].policy, "shop/api");

    // An external address: no egress side to judge on its end.
    let ext = PeerArg::Addr("203.0.113.9".parse::<IpAddr>().unwrap());
    let e = explain(&m, &c, &ext, &pod("shop/frontend"), Protocol::Tcp, 8080).unwrap();
    assert!(e.allowed);
    assert_eq!(e.egress.verdict, "not-a-pod");
    assert!(matches!(
        explain(&m, &c, &pod("shop/nope"), &ext, Protocol::Tcp, 1),
        Err(super::explain::ExplainError::UnknownPod(_))
    ));
}

#[test]
fn evaluate_reports_every_allowing_rule() {
    let m = demo();
    let c = compile(&m);
    let ip = |k: &str| m.pod(k).unwrap().1.ips[0];
    let v = c.evaluate(
        ip("shop/api"),
        ip("kube-system/coredns"),
        Protocol::Udp.number(),
        53,
    );
    assert!(v.allowed());
    assert!(matches!(&v.egress, Side::Allowed(r) if r.len() == 1));
    assert_eq!(v.ingress, Side::NotIsolated);
    let v = c.evaluate(
        ip("shop/api"),
        ip("kube-system/coredns"),
        Protocol::Udp.number(),
        54,
    );
    assert_eq!(v.egress, Side::Denied);
}

/// Modes in explain: with shop/db's policy staged in audit and the
/// default-deny learning, stray → db passes (nothing enforced on db's
/// ingress) and the audit view says it would be denied by shop/db.
#[test]
fn explain_shows_the_audit_view_and_learning_policies() {
    let mut m = demo();
    for p in &mut m.policies {
        p.mode = match p.key().as_str() {
            "shop/db" => Some(Mode::Audit),
            "shop/default-deny" => Some(Mode::Learn),
            _ => None,
        };
    }
    let c = compile(&m);
    let pod = |s: &str| PeerArg::Pod(s.into());
    let e = explain(
        &m,
        &c,
        &pod("sandbox/stray"),
        &pod("shop/db"),
        Protocol::Tcp,
        5432,
    )
    .unwrap();
    assert!(e.allowed, "audit and learn never deny");
    assert_eq!(e.ingress.verdict, "not-isolated");
    let audit = e.ingress.audit.as_ref().expect("db's ingress is audited");
    assert_eq!(audit.verdict, "would-deny");
    assert_eq!(audit.policies, vec!["shop/db"]);
    assert_eq!(e.ingress.learning, vec!["shop/default-deny"]);
    let e = explain(
        &m,
        &c,
        &pod("shop/api"),
        &pod("shop/db"),
        Protocol::Tcp,
        5432,
    )
    .unwrap();
    assert_eq!(e.ingress.audit.as_ref().unwrap().verdict, "allowed");
    assert!(
        e.egress.audit.is_none(),
        "api's egress has no audit-mode policy"
    );
}

#[test]
fn the_node_is_always_let_in_and_needs_a_rule_to_be_reached() {
    let mut m = demo();
    let node: IpAddr = "10.244.255.254".parse().unwrap();
    m.node_ips = vec![node, "fd00:10:244::fffe".parse().unwrap()];
    let c = compile(&m);
    let db = m.pod("shop/db").unwrap().1.ips[0];
    let api = m.pod("shop/api").unwrap().1.ips[0];
    // db's ingress allows only api on 5432; its node gets in on any port.
    let v = c.evaluate(node, db, 6, 10250);
    assert_eq!(v.ingress, Side::FromNode);
    assert!(v.allowed() && c.allowed(node, db, 6, 10250));
    assert!(!c.allowed(api, db, 6, 10250), "a pod still may not");
    // Egress to the node is policy as usual: api's egress does not allow it.
    assert!(!c.allowed(api, node, 6, 10250));
    let e = explain(
        &m,
        &c,
        &PeerArg::Addr(node),
        &PeerArg::Pod("shop/db".into()),
        Protocol::Tcp,
        10250,
    )
    .unwrap();
    assert!(e.allowed);
    assert_eq!(e.ingress.verdict, "from-node");
    // Without a node, the same address is an external one and denied.
    m.node_ips.clear();
    assert!(!compile(&m).allowed(node, db, 6, 10250));
}
