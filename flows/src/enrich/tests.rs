//! Enrichment against a small compiled model; its fixtures serve the
//! other flow tests.
use super::*;
use bulkhead_common::{CtKey, DropReason, FLOW_SIDE_INGRESS};
use bulkhead_policy::compile::compile;
use bulkhead_policy::model::{
    Labels, Mode, Namespace, NamespaceScope, Origin, Peer, Policy, PortMatch, PortSpec, Protocol,
    Requirement, Rule, Selector, Workload,
};

fn pod(ns: &str, name: &str, app: &str, ip: &str, owner: Option<Workload>) -> Pod {
    Pod {
        namespace: ns.into(),
        name: name.into(),
        source: Workload {
            kind: "Pod".into(),
            name: name.into(),
        },
        owner,
        labels: [
            ("app".to_string(), app.to_string()),
            ("pod-template-hash".to_string(), "5d9f".to_string()),
        ]
        .into(),
        ports: vec![],
        ips: vec![ip.parse().unwrap()],
        claim: Default::default(),
        node: None,
        off_network: None,
        origin: Origin::default(),
    }
}

fn selector(app: &str) -> Selector {
    Selector::new(vec![Requirement::In("app".into(), vec![app.into()])])
}

/// prod/web (10.0.0.1, ifindex 11) and prod/db (10.0.0.2, ifindex 12);
/// prod/db-ingress lets web reach db on TCP 5432 (rule 0).
pub(crate) fn model() -> Model {
    let mut m = Model {
        namespaces: [(
            "prod".to_string(),
            Namespace {
                name: "prod".into(),
                labels: Labels::new(),
                origin: None,
                mode: None,
            },
        )]
        .into(),
        pods: vec![
            pod(
                "prod",
                "web-5d9f-abcde",
                "web",
                "10.0.0.1",
                Some(Workload {
                    kind: "ReplicaSet".into(),
                    name: "web-5d9f".into(),
                }),
            ),
            pod("prod", "db", "db", "10.0.0.2", None),
        ],
        policies: vec![Policy {
            namespace: "prod".into(),
            name: "db-ingress".into(),
            pod_selector: selector("db"),
            ingress: Some(vec![Rule {
                peers: Some(vec![Peer::Pods {
                    namespaces: NamespaceScope::Same("prod".into()),
                    pods: selector("web"),
                }]),
                ports: Some(vec![PortSpec {
                    protocol: Protocol::Tcp,
                    port: PortMatch::Range(5432, 5432),
                }]),
            }]),
            egress: None,
            origin: Origin::default(),
            mode: None,
        }],
        default_mode: Mode::Enforce,
        services: Vec::new(),
        ingresses: Vec::new(),
        node_ips: Vec::new(),
        warnings: Vec::new(),
        admin_policies: Vec::new(),
        nodes: Vec::new(),
    };
    m.normalize();
    m
}

/// (pod index, ifindex) of the two pods: web on 11, db on 12.
pub(crate) fn local(m: &Model) -> Vec<(usize, u32)> {
    vec![
        (m.pod("prod/web-5d9f-abcde").unwrap().0, 11),
        (m.pod("prod/db").unwrap().0, 12),
    ]
}

pub(crate) fn enricher() -> Enricher {
    let m = model();
    let c = compile(&m);
    Enricher::new(&m, &c, &local(&m), 3)
}

fn v4(a: [u8; 4]) -> [u8; 16] {
    let mut x = [0u8; 16];
    x[10] = 0xff;
    x[11] = 0xff;
    x[12..].copy_from_slice(&a);
    x
}

pub(crate) fn key(side: u8, ifindex: u32) -> FlowKey {
    FlowKey {
        tuple: CtKey {
            src: v4([10, 0, 0, 1]),
            dst: v4([10, 0, 0, 2]),
            sport: 40000,
            dport: 5432,
            proto: PROTO_TCP,
            _pad: [0; 3],
        },
        ifindex,
        side,
        _pad: [0; 3],
    }
}

fn ctx() -> RecordContext {
    RecordContext {
        node: "n1".into(),
        realtime_offset_ns: 0,
    }
}

#[test]
fn names_pods_workloads_and_rules() {
    let e = enricher();
    let k = key(FLOW_SIDE_INGRESS, 12);
    // Records carry the kernel's number of the rule (internal rule 0).
    let rule = compile(&model()).kernel.rule(0);
    let v = FlowValue {
        packets_orig: 2,
        revision: 3,
        rule,
        ..Default::default()
    };
    let r = e.record(
        &ctx(),
        &RecordInput {
            key: &k,
            value: &v,
            rule_revision: 3,
            kind: RecordKind::Flow,
            event: None,
            end_reason: Some(EndReason::Idle),
            service: None,
        },
    );
    assert_eq!(&*r.endpoint.as_ref().unwrap().pod, "db");
    assert_eq!(r.direction, FlowDirection::Ingress);
    let src = r.src.pod.as_ref().unwrap();
    assert_eq!(src.workload.as_deref(), Some("Deployment/web"));
    assert!(!r.src.external);
    assert_eq!(r.verdict, FlowVerdict::Allowed);
    assert_eq!(&*r.policies[0].name, "prod/db-ingress");
    assert_eq!(r.policies[0].rule, Some(0));
    // A rule of a revision no longer kept resolves to nothing.
    let r = e.record(
        &ctx(),
        &RecordInput {
            key: &k,
            value: &v,
            rule_revision: 1,
            kind: RecordKind::Flow,
            event: None,
            end_reason: None,
            service: None,
        },
    );
    assert!(r.policies.is_empty());
}

#[test]
fn denied_names_isolating_policies_and_old_revisions_stay() {
    let mut e = enricher();
    let m = model();
    let c = compile(&m);
    for rev in 4..=8 {
        e.update(&m, &c, &local(&m), rev);
    }
    assert_eq!(e.revisions(), vec![5, 6, 7, 8]);
    let k = key(FLOW_SIDE_INGRESS, 12);
    let v = FlowValue {
        dropped_packets: 1,
        dropped_bytes: 60,
        drop_reason: DropReason::PolicyDenied as u8,
        revision: 8,
        rule: RULE_NONE,
        ..Default::default()
    };
    let r = e.record(
        &ctx(),
        &RecordInput {
            key: &k,
            value: &v,
            rule_revision: 8,
            kind: RecordKind::Event,
            event: Some(EventType::Drop),
            end_reason: None,
            service: None,
        },
    );
    assert_eq!(r.verdict, FlowVerdict::Denied);
    assert_eq!(&*r.policies[0].name, "prod/db-ingress");
    assert_eq!(r.policies[0].rule, None);
    // web's egress is not isolated.
    assert!(e.isolating(8, 11, Direction::Egress).is_empty());
    let mut ext = key(FLOW_SIDE_EGRESS, 11);
    ext.tuple.dst = v4([192, 0, 2, 9]);
    let v = FlowValue {
        packets_orig: 1,
        rule: RULE_NONE,
        ..Default::default()
    };
    let r = e.record(
        &ctx(),
        &RecordInput {
            key: &ext,
            value: &v,
            rule_revision: 8,
            kind: RecordKind::Flow,
            event: None,
            end_reason: None,
            service: None,
        },
    );
    assert!(r.dst.external && r.dst.pod.is_none());
    assert!(r.policies.is_empty());
}

#[test]
fn workload_names() {
    let mut p = pod("a", "x", "x", "10.1.1.1", None);
    assert_eq!(workload(&p), None);
    p.owner = Some(Workload {
        kind: "StatefulSet".into(),
        name: "db".into(),
    });
    assert_eq!(workload(&p).as_deref(), Some("StatefulSet/db"));
    p.owner = Some(Workload {
        kind: "ReplicaSet".into(),
        name: "other".into(),
    });
    assert_eq!(workload(&p).as_deref(), Some("ReplicaSet/other"));
    p.source.kind = "Deployment".into();
    p.source.name = "api".into();
    assert_eq!(workload(&p).as_deref(), Some("Deployment/api"));
}

/// A record whose kernel flags say the audit view judged it carries the
/// verdict and the audit-mode policies of its endpoint and direction.
#[test]
fn audited_records_name_the_staged_policies() {
    let mut m = model();
    // web's egress staged: only DNS allowed, so the db connection would be
    // denied; db's ingress stays enforced.
    let mut staged = m.policies[0].clone();
    staged.name = "web-egress".into();
    staged.pod_selector = selector("web");
    staged.ingress = None;
    staged.egress = Some(vec![Rule {
        peers: None,
        ports: Some(vec![PortSpec {
            protocol: Protocol::Udp,
            port: PortMatch::Range(53, 53),
        }]),
    }]);
    staged.mode = Some(Mode::Audit);
    m.policies.push(staged);
    m.normalize();
    let c = compile(&m);
    let e = Enricher::new(&m, &c, &local(&m), 3);
    let record = |side, ifindex, flags| {
        let v = FlowValue {
            packets_orig: 1,
            revision: 3,
            rule: RULE_NONE,
            flags,
            ..Default::default()
        };
        e.record(
            &ctx(),
            &RecordInput {
                key: &key(side, ifindex),
                value: &v,
                rule_revision: 3,
                kind: RecordKind::Flow,
                event: None,
                end_reason: None,
                service: None,
            },
        )
    };
    let r = record(FLOW_SIDE_EGRESS, 11, FLOW_F_AUDITED | FLOW_F_AUDIT_DENY);
    let audit = r.audit.expect("audited");
    assert_eq!(audit.verdict, AuditVerdict::WouldDeny);
    assert_eq!(audit.policies.len(), 1);
    assert_eq!(&*audit.policies[0].name, "prod/web-egress");
    let json = serde_json::to_value(record(FLOW_SIDE_EGRESS, 11, FLOW_F_AUDITED)).unwrap();
    assert_eq!(
        json["audit"],
        serde_json::json!({"verdict": "allowed", "policies": [{"name": "prod/web-egress"}]})
    );
    // Without the kernel's flag there is no audit field at all.
    let plain = serde_json::to_value(record(FLOW_SIDE_INGRESS, 12, 0)).unwrap();
    assert!(plain.get("audit").is_none(), "{plain}");
    // db's ingress has no audit-mode policy.
    assert!(e.auditing(3, 12, Direction::Ingress).is_empty());
}

/// A staged guardrail (an audit-mode ClusterNetworkPolicy denying web's
/// egress to db) is named in the records it would deny, `Kind/name` with
/// its tier, so an audit report can name it; the enforced verdict is not
/// its business.
#[test]
fn audited_records_name_a_staged_cluster_admin_policy() {
    use bulkhead_policy::model::{
        Action, AdminKind, AdminPeer, AdminPolicy, AdminRule, Subject, Tier,
    };
    let mut m = model();
    m.admin_policies.push(AdminPolicy {
        kind: AdminKind::ClusterNetworkPolicy,
        name: "no-db".into(),
        tier: Tier::Admin,
        priority: 3,
        subject: Subject::selecting(Selector::everything(), selector("web")),
        ingress: vec![],
        egress: vec![AdminRule {
            name: Some("db".into()),
            action: Action::Deny,
            peers: vec![AdminPeer::Pods {
                namespaces: Selector::everything(),
                pods: selector("db"),
            }],
            ports: None,
        }],
        origin: Origin::default(),
        mode: Some(Mode::Audit),
    });
    m.normalize();
    let c = compile(&m);
    // The compiler judges web → db would-deny in the audit view only.
    let (web, db) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
    assert!(c.allowed(web, db, 6, 5432));
    assert!(c.audit(web, db, 6, 5432).would_deny());
    let e = Enricher::new(&m, &c, &local(&m), 3);
    let staged = e.auditing(3, 11, Direction::Egress);
    assert_eq!(staged.len(), 1);
    assert_eq!(&*staged[0].name, "ClusterNetworkPolicy/no-db");
    assert_eq!(staged[0].tier.as_deref(), Some("Admin"));
    assert!(e.auditing(3, 12, Direction::Ingress).is_empty());
    // Enforced, it is no longer staged.
    m.admin_policies[0].mode = Some(Mode::Enforce);
    let c = compile(&m);
    let e = Enricher::new(&m, &c, &local(&m), 3);
    assert!(e.auditing(3, 11, Direction::Egress).is_empty());
}

/// A drop by an enforced cluster-admin Deny: the kernel records the
/// denying rule with `RULE_F_DENY` (the policy tree's target, as the
/// compiled table holds it); the record names that rule, its tier,
/// action and name.
#[test]
fn denied_by_a_cluster_admin_rule_names_it() {
    use bulkhead_common::RULE_F_DENY;
    use bulkhead_policy::model::{
        Action, AdminKind, AdminPeer, AdminPolicy, AdminRule, Subject, Tier,
    };
    let mut m = model();
    m.admin_policies.push(AdminPolicy {
        kind: AdminKind::ClusterNetworkPolicy,
        name: "guard".into(),
        tier: Tier::Admin,
        priority: 1,
        subject: Subject::selecting(Selector::everything(), selector("db")),
        ingress: vec![AdminRule {
            name: Some("no-web".into()),
            action: Action::Deny,
            peers: vec![AdminPeer::Pods {
                namespaces: Selector::everything(),
                pods: selector("web"),
            }],
            ports: None,
        }],
        egress: vec![],
        origin: Origin::default(),
        mode: None,
    });
    m.normalize();
    let c = compile(&m);
    let web = c.identity_of("10.0.0.1".parse().unwrap());
    let db = c.pod_of("10.0.0.2".parse().unwrap()).expect("db");
    let table = c.endpoints[db].ingress.expect("db's ingress table");
    let seg = c.tables[table as usize]
        .lookup(web, 6, 5432)
        .expect("a decision");
    assert!(seg.deny);
    // The policy tree holds (and the kernel records) the kernel's number.
    let target = c.kernel.target(seg.kernel_rule());
    assert_ne!(target & RULE_F_DENY, 0);
    let e = Enricher::new(&m, &c, &local(&m), 3);
    let v = FlowValue {
        dropped_packets: 1,
        drop_reason: DropReason::PolicyDenied as u8,
        revision: 3,
        rule: target,
        ..Default::default()
    };
    let r = e.record(
        &ctx(),
        &RecordInput {
            key: &key(FLOW_SIDE_INGRESS, 12),
            value: &v,
            rule_revision: 3,
            kind: RecordKind::Event,
            event: Some(EventType::Drop),
            end_reason: None,
            service: None,
        },
    );
    assert_eq!(r.verdict, FlowVerdict::Denied);
    assert_eq!(r.policies.len(), 1, "{:?}", r.policies);
    let p = &r.policies[0];
    assert_eq!(&*p.name, "ClusterNetworkPolicy/guard");
    assert_eq!(
        (
            p.tier.as_deref(),
            p.action.as_deref(),
            p.rule_name.as_deref()
        ),
        (Some("Admin"), Some("Deny"), Some("no-web"))
    );
}

/// A drop by a quarantine of the endpoint: verdict `quarantined`, the
/// record names the quarantine, its tier and its reason; a drop by an
/// ordinary rule stays `denied`.
#[test]
fn a_drop_by_a_quarantine_is_quarantined_with_its_reason() {
    use bulkhead_policy::model::Quarantine;
    let mut m = model();
    m.apply_quarantines(&[Quarantine {
        namespace: "prod".into(),
        pod: "db".into(),
        reason: "scanning".into(),
        allow_dns: false,
    }]);
    let c = compile(&m);
    let web = c.identity_of("10.0.0.1".parse().unwrap());
    let db = c.pod_of("10.0.0.2".parse().unwrap()).expect("db");
    let table = c.endpoints[db].ingress.expect("db's ingress table");
    let seg = c.tables[table as usize]
        .lookup(web, 6, 5432)
        .expect("a decision");
    assert!(seg.deny, "the quarantine denies what db's policy allows");
    let e = Enricher::new(&m, &c, &local(&m), 3);
    let record = |reason: DropReason| {
        let v = FlowValue {
            dropped_packets: 1,
            drop_reason: reason as u8,
            revision: 3,
            rule: c.kernel.target(seg.kernel_rule()),
            ..Default::default()
        };
        e.record(
            &ctx(),
            &RecordInput {
                key: &key(FLOW_SIDE_INGRESS, 12),
                value: &v,
                rule_revision: 3,
                kind: RecordKind::Event,
                event: Some(EventType::Drop),
                end_reason: None,
                service: None,
            },
        )
    };
    for reason in [DropReason::PolicyDenied, DropReason::PolicyRevoked] {
        let r = record(reason);
        assert_eq!(r.verdict, FlowVerdict::Quarantined);
        let p = &r.policies[0];
        assert_eq!(&*p.name, "Quarantine/prod/db");
        assert_eq!(
            (p.tier.as_deref(), p.rule_name.as_deref()),
            (Some("Quarantine"), Some("quarantined: scanning"))
        );
    }
    let plain = enricher().record(
        &ctx(),
        &RecordInput {
            key: &key(FLOW_SIDE_INGRESS, 12),
            value: &FlowValue {
                dropped_packets: 1,
                drop_reason: DropReason::PolicyDenied as u8,
                revision: 3,
                rule: RULE_NONE,
                ..Default::default()
            },
            rule_revision: 3,
            kind: RecordKind::Event,
            event: Some(EventType::Drop),
            end_reason: None,
            service: None,
        },
    );
    assert_eq!(plain.verdict, FlowVerdict::Denied);
}

/// The node's address in the Service fixtures.
pub(crate) const NODE_IP: [u8; 4] = [192, 168, 1, 10];

/// [`model`] with Service prod/db (ClusterIP 10.96.0.10, port 80 to
/// target port 5432 on app=db, NodePort 30080), compiled on a node with
/// [`NODE_IP`].
pub(crate) fn service_enricher() -> Enricher {
    use bulkhead_policy::model::{Service, ServicePort, ServiceType, TargetPort};
    let mut m = model();
    m.services.push(Service {
        namespace: "prod".into(),
        name: "db".into(),
        kind: ServiceType::NodePort,
        selector: Some([("app".to_string(), "db".to_string())].into()),
        cluster_ips: vec!["10.96.0.10".parse().unwrap()],
        ports: vec![ServicePort {
            name: None,
            protocol: Protocol::Tcp,
            port: 80,
            target_port: TargetPort::Number(5432),
            node_port: Some(30080),
        }],
        ..Default::default()
    });
    m.normalize();
    let c = bulkhead_policy::compile::compile_on_node(&m, &[std::net::IpAddr::from(NODE_IP)]);
    Enricher::new(&m, &c, &local(&m), 3)
}

/// web's connection (egress, ifindex 11) to `dst`:`dport`.
pub(crate) fn to_frontend(dst: [u8; 4], dport: u16) -> FlowKey {
    let mut k = key(FLOW_SIDE_EGRESS, 11);
    k.tuple.dst = v4(dst);
    k.tuple.dport = dport;
    k
}

/// The backend db (10.0.0.2:5432).
pub(crate) fn db_backend(allowed: bool) -> ServiceBackend {
    ServiceBackend {
        addr: v4([10, 0, 0, 2]),
        port: 5432,
        allowed: u8::from(allowed),
        _pad: 0,
    }
}

fn service_record(
    e: &Enricher,
    k: &FlowKey,
    v: &FlowValue,
    b: Option<&ServiceBackend>,
) -> FlowRecord {
    e.record(
        &ctx(),
        &RecordInput {
            key: k,
            value: v,
            rule_revision: 3,
            kind: RecordKind::Flow,
            event: None,
            end_reason: Some(EndReason::Closed),
            service: b,
        },
    )
}

/// A connection to a ClusterIP names the Service and the backend pod; the
/// record's `dst` stays the address the client used.
#[test]
fn records_to_a_frontend_name_the_service_and_the_backend() {
    let e = service_enricher();
    let k = to_frontend([10, 96, 0, 10], 80);
    assert!(e.is_frontend(&k.tuple));
    let v = FlowValue {
        packets_orig: 3,
        packets_reply: 2,
        revision: 3,
        rule: RULE_NONE,
        ..Default::default()
    };
    let r = service_record(&e, &k, &v, Some(&db_backend(true)));
    assert_eq!(r.dst.ip.to_string(), "10.96.0.10");
    assert!(r.dst.external && r.dst.pod.is_none());
    let svc = r.service.as_ref().expect("service");
    assert_eq!(svc.key().as_deref(), Some("prod/db"));
    assert_eq!((svc.ip.to_string().as_str(), svc.port), ("10.96.0.10", 80));
    let b = svc.backend.as_ref().expect("backend");
    assert_eq!(
        (b.address.ip.to_string().as_str(), b.address.port),
        ("10.0.0.2", 5432)
    );
    assert_eq!(&*b.address.pod.as_ref().unwrap().pod, "db");
    assert!(b.allowed && !b.address.external);
    assert!(r.involves_pod("prod", "db"));
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(
        json["service"],
        serde_json::json!({
            "namespace": "prod", "name": "db", "ip": "10.96.0.10", "port": 80,
            "backend": {
                "ip": "10.0.0.2", "port": 5432, "namespace": "prod", "pod": "db",
                "labels": {"app": "db", "pod-template-hash": "5d9f"}, "allowed": true
            }
        })
    );
    assert_eq!(serde_json::from_value::<FlowRecord>(json).unwrap(), r);
}

/// A denied connection names the backend it was denied on; a NodePort on
/// the node's address names its Service; a frontend without a recorded
/// translation names the Service only; other destinations name none.
#[test]
fn denied_nodeport_and_untranslated_service_records() {
    let e = service_enricher();
    let denied = FlowValue {
        dropped_packets: 1,
        drop_reason: DropReason::PolicyDenied as u8,
        revision: 3,
        rule: RULE_NONE,
        ..Default::default()
    };
    let node_port = to_frontend(NODE_IP, 30080);
    assert!(e.is_frontend(&node_port.tuple));
    let r = service_record(&e, &node_port, &denied, Some(&db_backend(false)));
    assert_eq!(r.verdict, FlowVerdict::Denied);
    let svc = r.service.expect("service");
    assert_eq!(svc.key().as_deref(), Some("prod/db"));
    assert_eq!(svc.port, 30080);
    let b = svc.backend.expect("backend");
    assert!(!b.allowed);
    assert_eq!(&*b.address.pod.unwrap().pod, "db");

    let r = service_record(&e, &to_frontend([10, 96, 0, 10], 80), &denied, None);
    let svc = r.service.expect("service");
    assert_eq!(svc.name.as_deref(), Some("db"));
    assert!(svc.backend.is_none());
    let json = serde_json::to_value(&svc).unwrap();
    assert!(json.get("backend").is_none(), "{json}");

    // Not a frontend: another port of the ClusterIP, the node's address on
    // another port, a pod.
    for k in [
        to_frontend([10, 96, 0, 10], 81),
        to_frontend(NODE_IP, 80),
        key(FLOW_SIDE_EGRESS, 11),
    ] {
        assert!(!e.is_frontend(&k.tuple));
        assert!(service_record(&e, &k, &denied, None).service.is_none());
    }
    // Nothing about Services without any.
    assert!(!enricher().is_frontend(&to_frontend([10, 96, 0, 10], 80).tuple));
}
