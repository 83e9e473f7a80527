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

/// What `conns` allows from `src` to `dst` (as printed), if anything.
fn allowed_between(
    conns: &[super::connectivity::Connection],
    src: &str,
    dst: &str,
) -> Option<PortSets> {
    conns
        .iter()
        .find(|x| x.src.to_string() == src && x.dst.to_string() == dst)
        .map(|x| x.allowed.clone())
}

#[test]
fn demo_connectivity_is_least_privilege() {
    let m = demo();
    let c = compile(&m);
    let conns = connectivity(&m, &c);
    let find = |s: &str, d: &str| allowed_between(&conns, s, d);
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

/// Services over the demo shop: shop/api (NodePort 30080, port 80 to the
/// named port http), shop/store (port 8080 on api-extra, an api pod,
/// and cache, which nothing lets in), shop/empty (selects nothing).
const SERVICES: &str = "
apiVersion: v1
kind: Service
metadata: {namespace: shop, name: api-np}
spec:
  type: NodePort
  clusterIP: 10.96.0.20
  selector: {app: api}
  ports: [{name: web, port: 80, targetPort: http, nodePort: 30080}]
---
apiVersion: v1
kind: Service
metadata: {namespace: shop, name: store}
spec:
  clusterIP: 10.96.0.30
  selector: {role: store}
  ports: [{port: 8080}]
---
apiVersion: v1
kind: Service
metadata: {namespace: shop, name: empty}
spec:
  clusterIP: 10.96.0.40
  selector: {app: nothing}
  ports: [{port: 80}]
---
apiVersion: v1
kind: Pod
metadata: {namespace: shop, name: api-extra, labels: {app: api, tier: backend, role: store}}
spec: {containers: [{name: api, ports: [{name: http, containerPort: 8080}]}]}
---
apiVersion: v1
kind: Pod
metadata: {namespace: shop, name: cache, labels: {app: cache, role: store}}
spec: {containers: [{name: cache, ports: [{containerPort: 8080}]}]}
";

/// The demo with [`SERVICES`], on a node with address 192.168.1.10.
fn demo_with_services() -> crate::model::Model {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/demo");
    let read = |f: &str| std::fs::read_to_string(demo.join(f)).unwrap();
    let (w, n) = (read("workloads.yaml"), read("netpol.yaml"));
    let dir = crate::testfs::dir_with(&[
        ("workloads.yaml", &w),
        ("netpol.yaml", &n),
        ("services.yaml", SERVICES),
    ]);
    let mut m = load_dir(dir.path(), &AddressPlan::default()).expect("manifests load");
    m.node_ips = vec!["192.168.1.10".parse().unwrap()];
    m
}

fn service_answer(
    m: &crate::model::Model,
    from: &str,
    to: &str,
    port: u16,
) -> super::explain::ServiceExplanation {
    let c = compile(m);
    match super::explain::answer(
        m,
        &c,
        &from.parse().unwrap(),
        &to.parse().unwrap(),
        Protocol::Tcp,
        port,
    )
    .unwrap()
    {
        super::explain::Answer::Service(s) => s,
        super::explain::Answer::Connection(e) => panic!("not explained as a Service: {e:?}"),
    }
}

/// A Service destination, by name, ClusterIP or NodePort, is explained per
/// backend with the verdicts of the connection to each backend pod on its
/// target port, from the same tables.
#[test]
fn explain_a_service_per_backend() {
    let m = demo_with_services();
    for (to, port, frontend_port) in [
        ("svc/shop/api-np", 80, 80),
        ("10.96.0.20", 80, 80),
        ("node", 30080, 30080),
        ("192.168.1.10", 30080, 30080),
    ] {
        let s = service_answer(&m, "shop/frontend", to, port);
        assert_eq!(s.service, "shop/api-np", "{to}");
        assert_eq!(s.frontend.port, frontend_port, "{to}");
        assert_eq!(s.frontend.port_name.as_deref(), Some("web"));
        assert_eq!(s.verdict, "allowed", "{to}");
        let pods: Vec<&str> = s.backends.iter().map(|b| b.pod.as_str()).collect();
        assert_eq!(pods.len(), 2, "{pods:?}");
        assert!(pods.contains(&"shop/api-extra"), "{pods:?}");
        for b in &s.backends {
            let e = &b.explanation;
            assert_eq!(e.port, 8080, "the target port");
            assert_eq!(e.dst.pod.as_deref(), Some(b.pod.as_str()));
            assert_eq!(e.egress.allowed_by[0].policy, "shop/frontend");
            assert_eq!(e.ingress.allowed_by[0].policy, "shop/api");
        }
    }
    let s = service_answer(&m, "sandbox/stray", "svc/shop/api-np", 80);
    assert_eq!(s.verdict, "denied");
    assert!(
        s.backends
            .iter()
            .all(|b| b.explanation.ingress.verdict == "denied")
    );

    // One backend allowed, one not, and why.
    let s = service_answer(&m, "shop/frontend", "10.96.0.30", 8080);
    assert_eq!(s.verdict, "some-backends");
    let by_pod = |p: &str| &s.backends.iter().find(|b| b.pod == p).unwrap().explanation;
    assert!(by_pod("shop/api-extra").allowed);
    let cache = by_pod("shop/cache");
    assert!(!cache.allowed);
    assert_eq!(cache.egress.verdict, "denied");
    assert_eq!(cache.ingress.verdict, "denied");
    assert_eq!(
        cache.egress.port_matches_peer_does_not[0].policy,
        "shop/frontend"
    );

    // No backends: said, with the reason.
    let s = service_answer(&m, "shop/frontend", "svc/shop/empty", 80);
    assert_eq!(s.verdict, "no-backends");
    assert!(s.backends.is_empty());
    assert_eq!(
        s.no_backends.as_deref(),
        Some("no pod matches the Service's selector")
    );
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["verdict"], "no-backends");
    assert_eq!(json["frontend"]["addr"], "10.96.0.40");
}

/// Bad Service destinations are errors naming what exists; a pod or a
/// plain address stays a plain explanation; a Service is never a source.
#[test]
fn explain_service_errors_and_plain_destinations() {
    use super::explain::{Answer, ExplainError, answer};
    let m = demo_with_services();
    let c = compile(&m);
    let ask = |from: &str, to: &str, port| {
        answer(
            &m,
            &c,
            &from.parse().unwrap(),
            &to.parse().unwrap(),
            Protocol::Tcp,
            port,
        )
    };
    match ask("shop/frontend", "10.96.0.20", 81) {
        Err(ExplainError::NoServicePort { service, ports, .. }) => {
            assert_eq!(
                (service.as_str(), ports.as_str()),
                ("shop/api-np", "80/TCP")
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        ask("shop/frontend", "svc/shop/nope", 80),
        Err(ExplainError::UnknownService(_))
    ));
    assert!(matches!(
        ask("svc/shop/api", "shop/api", 8080),
        Err(ExplainError::ServiceSource(_))
    ));
    assert!(matches!(
        ask("shop/frontend", "shop/api", 8080),
        Ok(Answer::Connection(e)) if e.allowed
    ));
    // The node's address on a port that is no NodePort: the node.
    assert!(matches!(
        ask("shop/frontend", "node", 22),
        Ok(Answer::Connection(e)) if e.dst.node
    ));
    // `svc/x` (one slash) is the pod x in namespace svc.
    assert_eq!(
        "svc/x".parse::<PeerArg>().unwrap(),
        PeerArg::Pod("svc/x".into())
    );
}

/// The demo with cluster-admin tiers: an Admin policy on namespace shop
/// (Pass from shop itself, then Deny from everyone) and a Baseline policy
/// on sandbox (Deny egress to every network).
fn demo_tiered() -> crate::model::Model {
    use crate::model::{
        Action, AdminKind, AdminPeer, AdminPolicy, AdminRule, NAMESPACE_NAME_LABEL, Origin,
        Requirement, Selector, Subject, Tier,
    };
    let ns = |n: &str| {
        Selector::new(vec![Requirement::In(
            NAMESPACE_NAME_LABEL.into(),
            vec![n.into()],
        )])
    };
    let mut m = demo();
    let policy = |name: &str, tier, subject, ingress, egress| AdminPolicy {
        kind: AdminKind::ClusterNetworkPolicy,
        name: name.into(),
        tier,
        priority: 10,
        subject: Subject::selecting(subject, Selector::everything()),
        ingress,
        egress,
        origin: Origin::default(),
        mode: None,
    };
    let rule = |name: &str, action, peers| AdminRule {
        name: Some(name.into()),
        action,
        peers,
        ports: None,
    };
    let everyone = AdminPeer::Pods {
        namespaces: Selector::everything(),
        pods: Selector::everything(),
    };
    let shop = AdminPeer::Pods {
        namespaces: ns("shop"),
        pods: Selector::everything(),
    };
    m.admin_policies.push(policy(
        "shop-guard",
        Tier::Admin,
        ns("shop"),
        vec![
            rule("shop-internal", Action::Pass, vec![shop]),
            rule("no-outsiders", Action::Deny, vec![everyone]),
        ],
        vec![],
    ));
    m.admin_policies.push(policy(
        "sandbox-default",
        Tier::Baseline,
        ns("sandbox"),
        vec![],
        vec![rule(
            "no-egress",
            Action::Deny,
            vec![AdminPeer::Networks(vec![
                "0.0.0.0/0".parse().unwrap(),
                "::/0".parse().unwrap(),
            ])],
        )],
    ));
    m.normalize();
    m
}

#[test]
fn explain_names_the_tier_the_deciding_rule_and_the_passes() {
    let m = demo_tiered();
    let c = compile(&m);
    let pod = |k: &str| PeerArg::Pod(k.into());
    let why = |from: &str, to: &str, port| {
        explain(&m, &c, &pod(from), &pod(to), Protocol::Tcp, port).unwrap()
    };
    // An outsider: the Admin Deny decides, whatever NetworkPolicy says.
    let e = why("sandbox/stray", "shop/db", 5432);
    assert!(!e.allowed);
    let d = e.ingress.denied_by.as_ref().expect("denied by a rule");
    assert_eq!(
        (d.policy.as_str(), d.name.as_deref(), d.tier, d.action),
        (
            "ClusterNetworkPolicy/shop-guard",
            Some("no-outsiders"),
            Some(crate::model::Tier::Admin),
            Some(crate::model::Action::Deny)
        )
    );
    // The sandbox's Baseline Deny applies to its egress (no NetworkPolicy
    // selects stray).
    let b = e.egress.denied_by.as_ref().expect("baseline deny");
    assert_eq!(b.name.as_deref(), Some("no-egress"));
    // Inside shop: passed to NetworkPolicy, which allows api → db ...
    let e = why("shop/api", "shop/db", 5432);
    assert!(e.allowed);
    assert_eq!(e.ingress.passed[0].name.as_deref(), Some("shop-internal"));
    assert!(!e.ingress.allowed_by.is_empty());
    assert!(e.ingress.allowed_by.iter().all(|r| r.tier.is_none()));
    // ... and denies frontend → db (isolation), after the pass.
    let e = why("shop/frontend", "shop/db", 5432);
    assert!(!e.allowed);
    assert_eq!(e.ingress.verdict, "denied");
    assert!(e.ingress.denied_by.is_none());
    assert_eq!(e.ingress.passed.len(), 1);
    assert_eq!(
        c.evaluate(
            m.pod("shop/frontend").unwrap().1.ips[0],
            m.pod("shop/db").unwrap().1.ips[0],
            6,
            5432
        )
        .ingress,
        Side::Denied
    );
}

#[test]
fn connectivity_follows_the_tiers() {
    let m = demo_tiered();
    let c = compile(&m);
    let conns = connectivity(&m, &c);
    let find = |s: &str, d: &str| allowed_between(&conns, s, d);
    // Without the tiers stray reached coredns on everything; the Baseline
    // Deny on every network now stops all of its egress.
    assert!(find("sandbox/stray", "kube-system/coredns").is_none());
    assert!(find("sandbox/stray", "0.0.0.0/0").is_none());
    // NetworkPolicy still decides inside shop.
    assert_eq!(
        find("shop/api", "shop/db").unwrap().get(Protocol::Tcp).0,
        vec![(5432, 5432)]
    );
    // coredns → shop: denied by the Admin tier (not from shop).
    assert!(find("kube-system/coredns", "shop/frontend").is_none());
}

#[test]
fn priority_ties_over_common_pods_are_warned_about() {
    let mut m = demo_tiered();
    let mut twin = m.admin_policies[0].clone();
    twin.name = "another-guard".into();
    m.admin_policies.push(twin);
    m.normalize();
    let ties = crate::model::admin::priority_ties(&m);
    assert_eq!(ties.len(), 1, "{ties:?}");
    assert_eq!(ties[0].first, "ClusterNetworkPolicy/another-guard");
    assert!(ties[0].to_string().contains("evaluated first"));
}
