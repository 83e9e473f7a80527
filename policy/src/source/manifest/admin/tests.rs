//! Cluster-admin policies: every validation error names its field; the
//! conversions (actions, named ports, subjects, peers) are as the API
//! documents them; the conformance data's manifests all load.

use serde_json::{Value, json};

use super::*;
use crate::model::{Origin, PortMatch, PortSpec, Protocol, Requirement, Selector};
use crate::source::manifest::{Ctx, ManifestError, ObjectRef, load_dir, object_ref};

fn ctx_for(origin: &Origin, value: &Value, kind: &str, strict: bool) -> Ctx<'static> {
    let origin: &'static Origin = Box::leak(Box::new(origin.clone()));
    Ctx {
        origin,
        object: object_ref(value, Some(kind)),
        strict,
    }
}

fn run(kind: &str, value: Value, strict: bool) -> Result<AdminPolicy, ObjectError> {
    let origin = Origin::file("p.yaml", 0);
    let ctx = ctx_for(&origin, &value, kind, strict);
    let api_version = value["apiVersion"].as_str().unwrap_or_default().to_owned();
    convert(&ctx, kind, value, if strict { &api_version } else { "" })
}

fn cnp(spec: Value) -> Value {
    json!({"apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
           "metadata": {"name": "c"}, "spec": spec})
}

fn anp(spec: Value) -> Value {
    json!({"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "AdminNetworkPolicy",
           "metadata": {"name": "a"}, "spec": spec})
}

fn banp(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "BaselineAdminNetworkPolicy",
           "metadata": {"name": name}, "spec": spec})
}

fn ns_subject() -> Value {
    json!({"namespaces": {"matchLabels": {"team": "a"}}})
}

fn ok(kind: &str, value: Value) -> AdminPolicy {
    run(kind, value, true).unwrap_or_else(|e| panic!("{e}"))
}

/// The error of a strict conversion; checks the field it names and that
/// the message carries the object and the field.
fn err(kind: &str, value: Value, field: &str) -> ObjectError {
    let e = run(kind, value, true).expect_err("must fail");
    assert_eq!(e.field, field, "{e}");
    assert!(e.to_string().contains(&format!(": {field}: ")), "{e}");
    e
}

/// A CNP with one egress rule, `rule` merged in.
fn cnp_egress(rule: Value) -> Value {
    let mut r = json!({"action": "Accept", "to": [{"namespaces": {}}]});
    for (k, v) in rule.as_object().unwrap() {
        r[k] = v.clone();
    }
    cnp(json!({"tier": "Admin", "priority": 1, "subject": ns_subject(), "egress": [r]}))
}

#[test]
fn cnp_converts_subject_peers_ports_and_networks() {
    let p = ok(
        "ClusterNetworkPolicy",
        cnp(json!({
            "tier": "Baseline", "priority": 7,
            "subject": {"pods": {"podSelector": {"matchLabels": {"app": "db"}}}},
            "ingress": [{"name": "from-web", "action": "Pass",
                         "from": [{"pods": {"namespaceSelector": {"matchLabels": {"t": "w"}},
                                            "podSelector": {}}}],
                         "protocols": [{"tcp": {"destinationPort": {"number": 80}}},
                                       {"udp": {"destinationPort": {"range": {"start": 53, "end": 54}}}},
                                       {"destinationNamedPort": "dns"}]}],
            "egress": [{"action": "Deny", "to": [{"networks": ["10.1.2.3/8", "fd00::1/64"]},
                                                  {"nodes": {"matchLabels": {"role": "infra"}}}]}],
        })),
    );
    assert_eq!(
        (p.tier, p.priority, p.kind),
        (Tier::Baseline, 7, AdminKind::ClusterNetworkPolicy)
    );
    assert_eq!(p.subject.namespaces, Selector::everything());
    assert_eq!(
        p.subject.pods,
        Selector::new(vec![Requirement::In("app".into(), vec!["db".into()])])
    );
    let r = &p.ingress[0];
    assert_eq!(
        (r.name.as_deref(), r.action),
        (Some("from-web"), Action::Pass)
    );
    let ports = r.ports.as_ref().unwrap();
    assert_eq!(
        ports[0],
        PortSpec {
            protocol: Protocol::Tcp,
            port: PortMatch::Range(80, 80)
        }
    );
    assert_eq!(
        ports[1],
        PortSpec {
            protocol: Protocol::Udp,
            port: PortMatch::Range(53, 54)
        }
    );
    let named: Vec<_> = ports[2..]
        .iter()
        .map(|s| (s.protocol, s.port.clone()))
        .collect();
    assert_eq!(
        named,
        Protocol::ALL
            .map(|p| (p, PortMatch::Named("dns".into())))
            .to_vec()
    );
    let e = &p.egress[0];
    assert_eq!(e.ports, None);
    assert_eq!(
        e.peers[0],
        AdminPeer::Networks(vec![
            "10.0.0.0/8".parse().unwrap(),
            "fd00::/64".parse().unwrap()
        ])
    );
    assert_eq!(
        e.peers[1],
        AdminPeer::Nodes(Selector::new(vec![Requirement::In(
            "role".into(),
            vec!["infra".into()]
        )]))
    );
}

#[test]
fn anp_allow_is_accept_and_named_ports_expand() {
    let p = ok(
        "AdminNetworkPolicy",
        anp(json!({
            "priority": 1000, "subject": ns_subject(),
            "ingress": [{"action": "Allow", "from": [{"namespaces": {}}],
                         "ports": [{"namedPort": "web"},
                                   {"portNumber": {"port": 8080}},
                                   {"portRange": {"protocol": "SCTP", "start": 9, "end": 9}}]}],
        })),
    );
    assert_eq!((p.tier, p.priority), (Tier::Admin, 1000));
    assert_eq!(p.subject.pods, Selector::everything());
    let r = &p.ingress[0];
    assert_eq!(r.action, Action::Accept);
    assert_eq!(
        r.peers,
        vec![AdminPeer::Pods {
            namespaces: Selector::everything(),
            pods: Selector::everything()
        }]
    );
    let ports = r.ports.as_ref().unwrap();
    assert_eq!(ports.len(), 5);
    assert!(
        ports[..3]
            .iter()
            .all(|s| s.port == PortMatch::Named("web".into()))
    );
    assert_eq!(
        ports[3],
        PortSpec {
            protocol: Protocol::Tcp,
            port: PortMatch::Range(8080, 8080)
        }
    );
    assert_eq!(
        ports[4],
        PortSpec {
            protocol: Protocol::Sctp,
            port: PortMatch::Range(9, 9)
        }
    );
}

#[test]
fn banp_is_baseline_priority_zero_and_named_default() {
    let p = ok(
        "BaselineAdminNetworkPolicy",
        banp(
            "default",
            json!({"subject": ns_subject(),
            "egress": [{"action": "Deny", "to": [{"networks": ["0.0.0.0/0"]}]}]}),
        ),
    );
    assert_eq!(
        (p.tier, p.priority, p.key().as_str()),
        (Tier::Baseline, 0, "BaselineAdminNetworkPolicy/default")
    );
    let e = err(
        "BaselineAdminNetworkPolicy",
        banp("other", json!({"subject": ns_subject()})),
        "metadata.name",
    );
    assert!(matches!(e.problem, Problem::Invalid { .. }));
    let e = err(
        "BaselineAdminNetworkPolicy",
        banp(
            "default",
            json!({"subject": ns_subject(),
            "ingress": [{"action": "Pass", "from": [{"namespaces": {}}]}]}),
        ),
        "spec.ingress[0].action",
    );
    assert!(matches!(e.problem, Problem::NotSupported { .. }));
    err(
        "BaselineAdminNetworkPolicy",
        banp("default", json!({"priority": 3, "subject": ns_subject()})),
        "spec.priority",
    );
}

#[test]
fn spec_level_errors_name_their_field() {
    let kind = "ClusterNetworkPolicy";
    err(
        kind,
        cnp(json!({"priority": 1, "subject": ns_subject()})),
        "spec.tier",
    );
    err(
        kind,
        cnp(json!({"tier": "Top", "priority": 1, "subject": ns_subject()})),
        "spec.tier",
    );
    err(
        kind,
        cnp(json!({"tier": "Admin", "subject": ns_subject()})),
        "spec.priority",
    );
    err(
        kind,
        cnp(json!({"tier": "Admin", "priority": 1001, "subject": ns_subject()})),
        "spec.priority",
    );
    err(
        kind,
        cnp(json!({"tier": "Admin", "priority": -1, "subject": ns_subject()})),
        "spec.priority",
    );
    err(
        kind,
        cnp(json!({"tier": "Admin", "priority": 1})),
        "spec.subject",
    );
    let both = json!({"namespaces": {}, "pods": {"podSelector": {}}});
    let e = err(
        kind,
        cnp(json!({"tier": "Admin", "priority": 1, "subject": both})),
        "spec.subject",
    );
    assert!(matches!(e.problem, Problem::OneOf { found: 2, .. }));
    let no_pods = json!({"pods": {"namespaceSelector": {}}});
    err(
        kind,
        cnp(json!({"tier": "Admin", "priority": 1, "subject": no_pods})),
        "spec.subject.pods.podSelector",
    );
    // v1alpha1 requires both selectors; an absent one is read as the Go
    // type's zero value (empty: everything), as the reference analyzer
    // and the manifests written for it do.
    let no_ns = json!({"pods": {"podSelector": {"matchLabels": {"a": "b"}}}});
    let p = ok(
        "AdminNetworkPolicy",
        anp(json!({"priority": 1, "subject": no_ns})),
    );
    assert_eq!(p.subject.namespaces, Selector::everything());
    let no_pods = json!({"pods": {"namespaceSelector": {"matchLabels": {"a": "b"}}}});
    let p = ok(
        "AdminNetworkPolicy",
        anp(json!({"priority": 1, "subject": no_pods})),
    );
    assert_eq!(p.subject.pods, Selector::everything());
    let bad_op = json!({"namespaces": {"matchExpressions": [{"key": "k", "operator": "Is"}]}});
    err(
        kind,
        cnp(json!({"tier": "Admin", "priority": 1, "subject": bad_op})),
        "spec.subject.namespaces.matchExpressions[0].operator",
    );
    err(
        kind,
        cnp(json!({"tier": "Admin", "priority": 1, "subject": ns_subject(), "extra": 1})),
        "spec.extra",
    );
    err(
        kind,
        anp(json!({"tier": "Admin", "priority": 1, "subject": ns_subject()})),
        "apiVersion",
    );
    err(
        "AdminNetworkPolicy",
        anp(json!({"tier": "Admin", "priority": 1, "subject": ns_subject()})),
        "spec.tier",
    );
    let mut bad_mode = anp(json!({"priority": 1, "subject": ns_subject()}));
    bad_mode["metadata"]["annotations"] = json!({"bulkhead.io/mode": "loud"});
    err(
        "AdminNetworkPolicy",
        bad_mode.clone(),
        "metadata.annotations[\"bulkhead.io/mode\"]",
    );
    bad_mode["metadata"]["annotations"] = json!({"bulkhead.io/mode": "audit"});
    assert_eq!(
        ok("AdminNetworkPolicy", bad_mode).mode,
        Some(crate::model::Mode::Audit)
    );
}

#[test]
fn rule_level_errors_name_their_field() {
    let kind = "ClusterNetworkPolicy";
    let many: Vec<Value> = (0..26)
        .map(|_| json!({"action": "Deny", "to": [{"namespaces": {}}]}))
        .collect();
    let e = err(
        kind,
        cnp(json!({"tier": "Admin", "priority": 1, "subject": ns_subject(), "egress": many})),
        "spec.egress",
    );
    assert!(matches!(
        e.problem,
        Problem::Count {
            found: 26,
            min: 0,
            max: 25
        }
    ));
    err(
        kind,
        cnp_egress(json!({"name": "x".repeat(101)})),
        "spec.egress[0].name",
    );
    err(
        kind,
        cnp_egress(json!({"action": "Allow"})),
        "spec.egress[0].action",
    );
    err(kind, cnp_egress(json!({"to": []})), "spec.egress[0].to");
    err(
        kind,
        cnp_egress(json!({"from": [{"namespaces": {}}]})),
        "spec.egress[0].from",
    );
    err(
        kind,
        cnp_egress(json!({"to": [{}]})),
        "spec.egress[0].to[0]",
    );
    err(
        kind,
        cnp_egress(json!({"to": [{"namespaces": {}, "nodes": {}}]})),
        "spec.egress[0].to[0]",
    );
    let e = err(
        kind,
        cnp_egress(json!({"to": [{"domainNames": ["example.com"]}]})),
        "spec.egress[0].to[0].domainNames",
    );
    assert!(matches!(e.problem, Problem::UnsupportedField(_)));
    err(
        kind,
        cnp_egress(json!({"to": [{"networks": ["10.0.0.0/8", "bad", "10.0.0.0/9"]}]})),
        "spec.egress[0].to[0].networks[1]",
    );
    err(
        kind,
        cnp_egress(json!({"to": [{"networks": ["10.0.0.0"]}]})),
        "spec.egress[0].to[0].networks[0]",
    );
    err(
        kind,
        cnp_egress(json!({"to": [{"networks": ["10.0.0.0/8", "10.0.0.0/8"]}]})),
        "spec.egress[0].to[0].networks[1]",
    );
    err(
        kind,
        cnp_egress(json!({"to": [{"networks": []}]})),
        "spec.egress[0].to[0].networks",
    );
    err(
        kind,
        cnp_egress(
            json!({"to": [{"networks": ["10.0.0.0/8"]}], "protocols": [{"destinationNamedPort": "web"}]}),
        ),
        "spec.egress[0]",
    );
    let ingress_networks = cnp(
        json!({"tier": "Admin", "priority": 1, "subject": ns_subject(),
        "ingress": [{"action": "Deny", "from": [{"networks": ["10.0.0.0/8"]}]}]}),
    );
    err(kind, ingress_networks, "spec.ingress[0].from[0].networks");
    err(
        kind,
        cnp_egress(json!({"protocols": []})),
        "spec.egress[0].protocols",
    );
    err(
        kind,
        cnp_egress(json!({"protocols": [{"tcp": {}}]})),
        "spec.egress[0].protocols[0].tcp.destinationPort",
    );
    err(
        kind,
        cnp_egress(
            json!({"protocols": [{"tcp": {"destinationPort": {"number": 1}}, "udp": {"destinationPort": {"number": 1}}}]}),
        ),
        "spec.egress[0].protocols[0]",
    );
    err(
        kind,
        cnp_egress(json!({"protocols": [{"tcp": {"destinationPort": {"number": 0}}}]})),
        "spec.egress[0].protocols[0].tcp.destinationPort.number",
    );
    err(
        kind,
        cnp_egress(
            json!({"protocols": [{"tcp": {"destinationPort": {"number": 1, "range": {"start": 1, "end": 2}}}}]}),
        ),
        "spec.egress[0].protocols[0].tcp.destinationPort",
    );
    err(
        kind,
        cnp_egress(
            json!({"protocols": [{"sctp": {"destinationPort": {"range": {"start": 5, "end": 5}}}}]}),
        ),
        "spec.egress[0].protocols[0].sctp.destinationPort.range",
    );
    err(
        kind,
        cnp_egress(
            json!({"protocols": [{"udp": {"destinationPort": {"range": {"start": 5, "end": 70000}}}}]}),
        ),
        "spec.egress[0].protocols[0].udp.destinationPort.range.end",
    );
    // `ports` (the spelling of v1alpha2's first revisions) or `protocols`,
    // not both.
    err(
        kind,
        cnp_egress(json!({"ports": [{"namedPort": "web"}],
                          "protocols": [{"tcp": {"destinationPort": {"number": 80}}}]})),
        "spec.egress[0]",
    );
    let r = ok(
        kind,
        cnp_egress(json!({"ports": [{"portNumber": {"protocol": "UDP", "port": 53}}]})),
    );
    assert_eq!(
        r.egress[0].ports,
        Some(vec![PortSpec {
            protocol: Protocol::Udp,
            port: PortMatch::Range(53, 53)
        }])
    );
}

#[test]
fn v1alpha1_port_errors_name_their_field() {
    let rule = |ports: Value| {
        anp(json!({"priority": 1, "subject": ns_subject(),
                   "ingress": [{"action": "Deny", "from": [{"namespaces": {}}], "ports": ports}]}))
    };
    let kind = "AdminNetworkPolicy";
    err(
        kind,
        rule(json!([{"portNumber": {"protocol": "ICMP", "port": 1}}])),
        "spec.ingress[0].ports[0].portNumber.protocol",
    );
    err(
        kind,
        rule(json!([{"portNumber": {"protocol": "TCP"}}])),
        "spec.ingress[0].ports[0].portNumber.port",
    );
    err(
        kind,
        rule(json!([{"portNumber": {"port": 65536}}])),
        "spec.ingress[0].ports[0].portNumber.port",
    );
    err(
        kind,
        rule(json!([{"portRange": {"start": 9, "end": 8}}])),
        "spec.ingress[0].ports[0].portRange",
    );
    err(
        kind,
        rule(json!([{"portRange": {"start": 9}}])),
        "spec.ingress[0].ports[0].portRange.end",
    );
    err(kind, rule(json!([{}])), "spec.ingress[0].ports[0]");
    err(kind, rule(json!([])), "spec.ingress[0].ports");
    err(
        kind,
        rule(json!([{"namedPort": "a", "portNumber": {"port": 1}}])),
        "spec.ingress[0].ports[0]",
    );
    let proto = anp(json!({"priority": 1, "subject": ns_subject(),
        "ingress": [{"action": "Deny", "from": [{"namespaces": {}}], "protocols": [{"destinationNamedPort": "a"}]}]}));
    err(kind, proto, "spec.ingress[0].protocols");
}

#[test]
fn api_objects_fail_closed_on_peers_they_cannot_read() {
    let domain = |action: &str| {
        anp(json!({"priority": 1, "subject": ns_subject(),
            "egress": [{"action": action, "to": [{"domainNames": ["example.com"]}, {"namespaces": {}}],
                        "ports": [{"portNumber": {"port": 443}}]}]}))
    };
    // Allow: only the peers it can read.
    let p = run("AdminNetworkPolicy", domain("Allow"), false).unwrap();
    assert_eq!(p.egress[0].action, Action::Accept);
    assert_eq!(p.egress[0].peers.len(), 1);
    // Deny and Pass: "Deny all".
    for action in ["Deny", "Pass"] {
        let p = run("AdminNetworkPolicy", domain(action), false).unwrap();
        assert_eq!(p.egress[0].action, Action::Deny);
        assert_eq!(p.egress[0].peers, peers::everything());
        assert_eq!(p.egress[0].ports, None);
    }
    // A peer of a newer schema (no field this version knows) likewise;
    // an Accept rule left with no peer matches nothing and is dropped.
    let newer = cnp(
        json!({"tier": "Admin", "priority": 1, "subject": ns_subject(),
        "ingress": [{"action": "Accept", "from": [{"serviceAccounts": {}}]}]}),
    );
    assert!(
        run("ClusterNetworkPolicy", newer, false)
            .unwrap()
            .ingress
            .is_empty()
    );
    // Strict: the same is an error naming the field.
    err(
        "AdminNetworkPolicy",
        domain("Allow"),
        "spec.egress[0].to[0].domainNames",
    );
}

#[test]
fn loader_reads_admin_policies_and_nodes_and_refuses_a_second_banp() {
    let text = r#"
apiVersion: policy.networking.k8s.io/v1alpha1
kind: BaselineAdminNetworkPolicy
metadata: {name: default}
spec: {subject: {namespaces: {}}}
---
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: z}
spec: {tier: Admin, priority: 5, subject: {namespaces: {}}}
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: a}
spec: {priority: 9, subject: {namespaces: {}}}
---
apiVersion: v1
kind: Node
metadata: {name: n1, labels: {role: infra}}
status: {addresses: [{type: InternalIP, address: 10.0.0.1}, {type: Hostname, address: n1}, {type: ExternalIP, address: "2001:db8::1"}]}
"#;
    let dir = crate::testfs::dir_with(&[("a.yaml", text)]);
    let model = load_dir(dir.path(), &Default::default()).unwrap_or_else(|e| panic!("{e}"));
    let keys: Vec<String> = model.admin_policies.iter().map(AdminPolicy::key).collect();
    assert_eq!(
        keys,
        [
            "ClusterNetworkPolicy/z",
            "AdminNetworkPolicy/a",
            "BaselineAdminNetworkPolicy/default"
        ]
    );
    assert_eq!(model.nodes.len(), 1);
    assert_eq!(
        model.nodes[0].addresses,
        [
            "10.0.0.1".parse::<std::net::IpAddr>().unwrap(),
            "2001:db8::1".parse().unwrap()
        ]
    );

    let second = "
apiVersion: policy.networking.k8s.io/v1alpha1
kind: BaselineAdminNetworkPolicy
metadata: {name: default}
spec: {subject: {namespaces: {}}}
";
    let dir = crate::testfs::dir_with(&[("a.yaml", text), ("b.yaml", second)]);
    let errors = load_dir(dir.path(), &Default::default()).expect_err("two BANPs");
    let message = errors.to_string();
    assert!(
        matches!(&errors.0[..], [ManifestError::Object(e)] if e.field == "metadata.name"
            && e.object == ObjectRef { kind: Some("BaselineAdminNetworkPolicy".into()), namespace: None, name: Some("default".into()) }),
        "{message}"
    );
    assert!(
        message
            .contains("b.yaml (document 1): BaselineAdminNetworkPolicy default: metadata.name: "),
        "{message}"
    );
}

/// The conformance data set's cluster-admin cases (when present): every
/// folder loads, with its admin policies read.
#[test]
fn conformance_admin_cases_all_load() {
    // `$BULKHEAD_CONFORMANCE_DIR`, else `shared/` beside the checkout or
    // any folder above it (a worktree sits deeper than the main one).
    let dir = std::env::var_os("BULKHEAD_CONFORMANCE_DIR")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .ancestors()
                .map(|a| a.join("shared/conformance/netpol-analyzer"))
                .find(|d| d.is_dir())
        })
        .unwrap_or_default()
        .join("tests");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!("skipped: conformance data not found at {}", dir.display());
        return;
    };
    let mut loaded = 0;
    for entry in entries {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let admin = name.starts_with("anp_")
            || name.starts_with("banp_")
            || (name.starts_with("example_pods_w_same_owner_and_labels_gap_")
                && name.contains("anp"));
        if !admin {
            continue;
        }
        let model = load_dir(&path, &Default::default()).unwrap_or_else(|e| panic!("{name}:\n{e}"));
        assert!(
            !model.admin_policies.is_empty(),
            "{name}: no admin policy read"
        );
        loaded += 1;
    }
    assert!(
        loaded >= 37,
        "only {loaded} cluster-admin cases found under {}",
        dir.display()
    );
}

#[test]
fn a_named_port_no_pod_declares_is_a_warning() {
    let text = r#"
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: a}
spec: {containers: [{name: c, image: i, ports: [{name: web, containerPort: 80}]}]}
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: named}
spec:
  priority: 1
  subject: {namespaces: {}}
  ingress:
  - {action: Allow, from: [{namespaces: {}}], ports: [{namedPort: web}]}
  - {action: Deny, from: [{namespaces: {}}], ports: [{namedPort: no-web}]}
"#;
    let dir = crate::testfs::dir_with(&[("a.yaml", text)]);
    let model = load_dir(dir.path(), &Default::default()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(model.warnings.len(), 1, "{:?}", model.warnings);
    let w = &model.warnings[0];
    assert!(
        w.contains("AdminNetworkPolicy named: spec.ingress[1]: named port \"no-web\""),
        "{w}"
    );
}

#[test]
fn a_node_address_that_is_no_ip_is_an_error_in_a_manifest() {
    let text = "
apiVersion: v1
kind: Node
metadata: {name: n1}
status: {addresses: [{type: InternalIP, address: 10.0.0.300}]}
";
    let dir = crate::testfs::dir_with(&[("n.yaml", text)]);
    let errors = load_dir(dir.path(), &Default::default()).expect_err("bad address");
    let message = errors.to_string();
    assert!(
        message.contains(": Node n1: status.addresses[0].address: invalid value \"10.0.0.300\""),
        "{message}"
    );
}
