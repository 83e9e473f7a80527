//! Services from manifests: conversion and defaulting, every refusal of
//! the API server as an error naming file, object and field, addresses and
//! NodePorts given out deterministically, warnings for what makes no sense.

use std::net::IpAddr;

use serde_json::json;

use super::super::{ApiObject, ManifestError, ManifestErrors, api_object, load_dir};
use crate::model::addressing::{AddressPlan, AddressingError};
use crate::model::{
    IpFamily, IpFamilyPolicy, Model, Protocol, Service, ServiceType, SessionAffinity, TargetPort,
    TrafficPolicy,
};
use crate::testfs::dir_with;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| ip(s)).collect()
}

fn load_with(files: &[(&str, &str)], plan: &AddressPlan) -> Result<Model, ManifestErrors> {
    let dir = dir_with(files);
    load_dir(dir.path(), plan)
}

fn load_ok(files: &[(&str, &str)]) -> Model {
    load_with(files, &AddressPlan::default()).unwrap_or_else(|e| panic!("load failed:\n{e}"))
}

/// A Service `shop/web` with `spec` (a YAML flow mapping's inside).
fn svc(spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: shop}}\nspec: {{{spec}}}\n"
    )
}

fn one(spec: &str) -> Service {
    let model = load_ok(&[("svc.yaml", &svc(spec))]);
    assert_eq!(model.services.len(), 1);
    model.services.into_iter().next().unwrap()
}

/// The one error of loading `text` as `svc.yaml`: names the file, the
/// object and `field`.
fn error_at(text: &str, field: &str) -> String {
    let dir = dir_with(&[("svc.yaml", text)]);
    let errors = match load_dir(dir.path(), &AddressPlan::default()) {
        Ok(m) => panic!("load succeeded: {:#?}", m.services),
        Err(e) => e,
    };
    assert_eq!(errors.0.len(), 1, "{errors}");
    let message = errors.to_string();
    let ManifestError::Object(e) = &errors.0[0] else {
        panic!("not an object error: {message}");
    };
    assert_eq!(e.origin.path().unwrap(), dir.path().join("svc.yaml"));
    assert_eq!(e.field, field, "{message}");
    let path = dir.path().join("svc.yaml");
    assert!(
        message.starts_with(&format!("{} (document ", path.display())),
        "{message}"
    );
    assert!(message.contains(&format!(": {field}: ")), "{message}");
    message
}

fn spec_error(spec: &str, field: &str) -> String {
    let message = error_at(&svc(spec), field);
    assert!(message.contains(": Service shop/web: "), "{message}");
    message
}

// ---------------------------------------------------------------- conversion

#[test]
fn a_full_service_converts_with_every_field() {
    let s = one("type: LoadBalancer, selector: {app: web},
         clusterIP: 10.96.5.5, clusterIPs: [10.96.5.5, 'fd00:10:96::5'],
         ipFamilies: [IPv4, IPv6], ipFamilyPolicy: PreferDualStack,
         ports: [{name: http, port: 80, targetPort: http, nodePort: 30080},
                 {name: dns, port: 53, protocol: UDP, targetPort: 5353}],
         externalIPs: [192.0.2.10], externalTrafficPolicy: Local, internalTrafficPolicy: Local,
         sessionAffinity: ClientIP, sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}");
    assert_eq!((s.namespace.as_str(), s.name.as_str()), ("shop", "web"));
    assert_eq!(s.kind, ServiceType::LoadBalancer);
    assert_eq!(s.selector.as_ref().unwrap()["app"], "web");
    assert_eq!(s.cluster_ips, ips(&["10.96.5.5", "fd00:10:96::5"]));
    assert_eq!(s.ip_families, [IpFamily::V4, IpFamily::V6]);
    assert_eq!(s.ip_family_policy, IpFamilyPolicy::PreferDualStack);
    assert_eq!(s.ports[0].target_port, TargetPort::Name("http".into()));
    assert_eq!(s.ports[0].node_port, Some(30080));
    assert_eq!(s.ports[1].protocol, Protocol::Udp);
    assert_eq!(s.ports[1].target_port, TargetPort::Number(5353));
    assert_eq!(
        s.ports[1].node_port,
        Some(30000),
        "given out from the range"
    );
    assert_eq!(s.external_ips, ips(&["192.0.2.10"]));
    assert_eq!(s.external_traffic_policy, TrafficPolicy::Local);
    assert_eq!(s.internal_traffic_policy, TrafficPolicy::Local);
    assert_eq!(
        s.session_affinity,
        SessionAffinity::ClientIp {
            timeout_seconds: 60
        }
    );
    let frontends: Vec<String> = s
        .frontends(&ips(&["172.18.0.2"]))
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        frontends.contains(&"172.18.0.2:30080/TCP".to_string()),
        "{frontends:?}"
    );
    assert!(
        frontends.contains(&"[fd00:10:96::5]:53/UDP".to_string()),
        "{frontends:?}"
    );
    assert!(
        frontends.contains(&"192.0.2.10:80/TCP".to_string()),
        "{frontends:?}"
    );
}

#[test]
fn defaults_are_the_api_servers() {
    let s = one("selector: {app: web}, ports: [{port: 8080}]");
    assert_eq!(s.kind, ServiceType::ClusterIp);
    assert_eq!(s.ports[0].protocol, Protocol::Tcp);
    assert_eq!(s.ports[0].target_port, TargetPort::Number(8080));
    assert_eq!(
        s.ports[0].node_port, None,
        "a ClusterIP Service has no NodePort"
    );
    assert_eq!(s.ip_family_policy, IpFamilyPolicy::SingleStack);
    assert_eq!(
        s.cluster_ips,
        ips(&["10.96.0.2"]),
        "primary family, after .1"
    );
    assert_eq!(s.ip_families, [IpFamily::V4]);
    assert_eq!(s.session_affinity, SessionAffinity::None);
    assert_eq!(s.external_traffic_policy, TrafficPolicy::Cluster);
    let zero = one("ports: [{port: 81, targetPort: 0}], selector: {}");
    assert_eq!(zero.ports[0].target_port, TargetPort::Number(81));
    assert_eq!(zero.selector, None, "an empty selector selects nothing");
    let affinity = one("ports: [{port: 81}], sessionAffinity: ClientIP");
    assert_eq!(
        affinity.session_affinity,
        SessionAffinity::ClientIp {
            timeout_seconds: 10800
        }
    );
}

#[test]
fn headless_services_have_no_address_and_no_frontend() {
    let s = one("clusterIP: None, selector: {app: db}");
    assert!(s.headless);
    assert!(s.cluster_ips.is_empty());
    assert!(s.ports.is_empty(), "a headless Service may have no ports");
    assert_eq!(s.ip_families, [IpFamily::V4]);
    assert!(s.frontends(&ips(&["172.18.0.2"])).is_empty());
    let unselected = one("clusterIP: None, ports: [{port: 5432}]");
    assert_eq!(
        unselected.ip_family_policy,
        IpFamilyPolicy::RequireDualStack
    );
    assert_eq!(unselected.ip_families, [IpFamily::V4, IpFamily::V6]);
}

#[test]
fn external_name_services_translate_nothing() {
    let model = load_ok(&[(
        "svc.yaml",
        &svc("type: ExternalName, externalName: db.example.com., selector: {app: x}"),
    )]);
    let s = &model.services[0];
    assert_eq!(s.kind, ServiceType::ExternalName);
    assert_eq!(s.external_name.as_deref(), Some("db.example.com."));
    assert!(s.cluster_ips.is_empty() && s.ip_families.is_empty());
    assert!(s.frontends(&ips(&["172.18.0.2"])).is_empty());
    assert_eq!(model.warnings.len(), 1, "{:?}", model.warnings);
    assert!(
        model.warnings[0].contains("Service shop/web: spec.selector: an ExternalName"),
        "{:?}",
        model.warnings
    );
}

#[test]
fn services_inside_list_objects() {
    let text = "
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: a, namespace: shop}
  spec: {ports: [{port: 80}]}
---
apiVersion: v1
kind: ServiceList
items:
- metadata: {name: b}
  spec: {ports: [{port: 81}]}
";
    let model = load_ok(&[("list.yaml", text)]);
    let keys: Vec<String> = model.services.iter().map(Service::key).collect();
    assert_eq!(keys, ["default/b", "shop/a"]);
    assert!(
        model.namespaces.contains_key("shop"),
        "a Service's namespace is used"
    );
}

#[test]
fn api_object_converts_services_and_ignores_newer_fields() {
    let value = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop", "resourceVersion": "7"},
        "spec": {"type": "NodePort", "clusterIP": "10.96.9.9", "clusterIPs": ["10.96.9.9"],
                 "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                 "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP", "nodePort": 31111}],
                 "someFieldOfANewerApi": true},
        "status": {"loadBalancer": {}},
    });
    let Ok(ApiObject::Service(s)) = api_object("Service", value) else {
        panic!("not a Service");
    };
    assert_eq!(s.cluster_ips, ips(&["10.96.9.9"]));
    assert_eq!(s.ports[0].node_port, Some(31111));
    let bad = json!({"metadata": {"name": "x"}, "spec": {"ports": [{"port": 0}]}});
    let e = api_object("Service", bad).unwrap_err();
    assert_eq!(e.field, "spec.ports[0].port");
    assert_eq!(e.object.to_string(), "Service default/x");
}

// ---------------------------------------------------------------- refusals

#[test]
fn every_refusal_of_the_api_server_names_its_field() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "type: Cluster, ports: [{port: 80}]",
            "spec.type",
            "unsupported value",
        ),
        ("selector: {a: b}", "spec.ports", "required"),
        (
            "ports: [{port: 80, protocol: ICMP}]",
            "spec.ports[0].protocol",
            "ICMP",
        ),
        (
            "ports: [{port: 0}]",
            "spec.ports[0].port",
            "outside 1-65535",
        ),
        (
            "ports: [{port: 70000}]",
            "spec.ports[0].port",
            "outside 1-65535",
        ),
        (
            "ports: [{port: 80, targetPort: 65536}]",
            "spec.ports[0].targetPort",
            "outside",
        ),
        (
            "ports: [{port: 80, targetPort: Http_Port}]",
            "spec.ports[0].targetPort",
            "is not valid",
        ),
        (
            "ports: [{port: 80, targetPort: '8080'}]",
            "spec.ports[0].targetPort",
            "not valid",
        ),
        (
            "ports: [{name: a, port: 80}, {name: a, port: 81}]",
            "spec.ports[1].name",
            "duplicate",
        ),
        (
            "ports: [{name: A_1, port: 80}]",
            "spec.ports[0].name",
            "DNS-1123",
        ),
        (
            "ports: [{name: a, port: 80}, {name: b, port: 80}]",
            "spec.ports[1]",
            "duplicate value 80/TCP",
        ),
        (
            "ports: [{port: 80, nodePort: 30001}]",
            "spec.ports[0].nodePort",
            "ClusterIP",
        ),
        (
            "type: NodePort, ports: [{name: a, port: 80, nodePort: 30001}, {name: b, port: 81, nodePort: 30001}]",
            "spec.ports[1].nodePort",
            "duplicate",
        ),
        (
            "type: NodePort, ports: [{port: 80, nodePort: 70000}]",
            "spec.ports[0].nodePort",
            "outside",
        ),
        (
            "clusterIP: 10.96.0.300, ports: [{port: 80}]",
            "spec.clusterIP",
            "valid IP",
        ),
        (
            "clusterIPs: [10.96.0.5, 10.96.0.6], ports: [{port: 80}]",
            "spec.clusterIPs",
            "one IP for each",
        ),
        (
            "clusterIP: 10.96.0.5, clusterIPs: [10.96.0.6], ports: [{port: 80}]",
            "spec.clusterIPs",
            "must match",
        ),
        (
            "clusterIPs: [None, 10.96.0.6], ports: [{port: 80}]",
            "spec.clusterIPs",
            "first and only",
        ),
        (
            "clusterIPs: ['fd00::1', x], ports: [{port: 80}]",
            "spec.clusterIPs[1]",
            "valid IP",
        ),
        (
            "type: NodePort, clusterIP: None, ports: [{port: 80}]",
            "spec.clusterIP",
            "NodePort",
        ),
        (
            "type: LoadBalancer, clusterIP: None, ports: [{port: 80}]",
            "spec.clusterIP",
            "LoadBalancer",
        ),
        (
            "ipFamilies: [IPv5], ports: [{port: 80}]",
            "spec.ipFamilies[0]",
            "unsupported",
        ),
        (
            "ipFamilies: [IPv4, IPv4], ports: [{port: 80}]",
            "spec.ipFamilies[1]",
            "duplicate",
        ),
        (
            "ipFamilies: [IPv6], clusterIP: 10.96.0.9, ports: [{port: 80}]",
            "spec.clusterIPs[0]",
            "IPv6",
        ),
        (
            "ipFamilyPolicy: Dual, ports: [{port: 80}]",
            "spec.ipFamilyPolicy",
            "unsupported",
        ),
        (
            "ipFamilyPolicy: SingleStack, ipFamilies: [IPv4, IPv6], ports: [{port: 80}]",
            "spec.ipFamilyPolicy",
            "multiple",
        ),
        (
            "externalIPs: [127.0.0.1], ports: [{port: 80}]",
            "spec.externalIPs[0]",
            "loopback",
        ),
        (
            "externalIPs: [0.0.0.0], ports: [{port: 80}]",
            "spec.externalIPs[0]",
            "unspecified",
        ),
        (
            "externalIPs: ['fe80::1'], ports: [{port: 80}]",
            "spec.externalIPs[0]",
            "link-local",
        ),
        (
            "externalIPs: [nope], ports: [{port: 80}]",
            "spec.externalIPs[0]",
            "valid IP",
        ),
        (
            "externalTrafficPolicy: Local, ports: [{port: 80}]",
            "spec.externalTrafficPolicy",
            "externally-accessible",
        ),
        (
            "type: NodePort, externalTrafficPolicy: Global, ports: [{port: 80}]",
            "spec.externalTrafficPolicy",
            "unsupported",
        ),
        (
            "internalTrafficPolicy: Node, ports: [{port: 80}]",
            "spec.internalTrafficPolicy",
            "unsupported",
        ),
        (
            "sessionAffinity: Sticky, ports: [{port: 80}]",
            "spec.sessionAffinity",
            "unsupported",
        ),
        (
            "sessionAffinity: ClientIP, sessionAffinityConfig: {clientIP: {timeoutSeconds: 0}}, ports: [{port: 80}]",
            "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
            "greater than 0",
        ),
        (
            "sessionAffinityConfig: {clientIP: {timeoutSeconds: 5}}, ports: [{port: 80}]",
            "spec.sessionAffinityConfig",
            "None",
        ),
        (
            "allocateLoadBalancerNodePorts: false, ports: [{port: 80}]",
            "spec.allocateLoadBalancerNodePorts",
            "LoadBalancer",
        ),
        (
            "type: ExternalName, externalName: a.b, clusterIP: 10.96.0.9",
            "spec.clusterIP",
            "ExternalName",
        ),
        (
            "type: ExternalName, externalName: a.b, ipFamilies: [IPv4]",
            "spec.ipFamilies",
            "ExternalName",
        ),
        (
            "type: ExternalName, externalName: a.b, ipFamilyPolicy: SingleStack",
            "spec.ipFamilyPolicy",
            "ExternalName",
        ),
        ("type: ExternalName", "spec.externalName", "required"),
        (
            "type: ExternalName, externalName: Bad_Name",
            "spec.externalName",
            "DNS-1123",
        ),
        (
            "ports: [{port: 80}], selectr: {a: b}",
            "spec.selectr",
            "unknown field",
        ),
        ("ports: [{port: x}]", "spec.ports[0].port", "invalid"),
    ];
    for (spec, field, says) in cases {
        let message = spec_error(spec, field);
        assert!(
            message.contains(says),
            "{spec}: {message:?} does not say {says:?}"
        );
    }
}

#[test]
fn refusals_outside_the_spec_name_their_field() {
    let status = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\n\
                  spec: {ports: [{port: 80}]}\nstatus: {loadBalancer: {ingress: [{ip: 192.0.2.1}]}}\n";
    spec_message(status, "status.loadBalancer.ingress", "LoadBalancer");
    let bad_ip = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\n\
                  spec: {type: LoadBalancer, ports: [{port: 80}]}\n\
                  status: {loadBalancer: {ingress: [{hostname: lb.example.com}, {ip: 300.1.1.1}]}}\n";
    spec_message(bad_ip, "status.loadBalancer.ingress[1].ip", "valid IP");
    let name = "apiVersion: v1\nkind: Service\nmetadata: {name: 1web, namespace: shop}\n\
                spec: {ports: [{port: 80}]}\n";
    let message = error_at(name, "metadata.name");
    assert!(message.contains("Service shop/1web"), "{message}");
    let version =
        "apiVersion: v2\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 80}]}\n";
    spec_message_of(version, "apiVersion", "v1", "Service default/web");
    let twice = format!(
        "{}---\n{}",
        svc("ports: [{port: 80}]"),
        svc("ports: [{port: 81}]")
    );
    let message = error_at(&twice, "metadata.name");
    assert!(
        message.contains("service shop/web is also defined at"),
        "{message}"
    );
}

fn spec_message(text: &str, field: &str, says: &str) {
    spec_message_of(text, field, says, "Service shop/web");
}

fn spec_message_of(text: &str, field: &str, says: &str, object: &str) {
    let message = error_at(text, field);
    assert!(message.contains(says), "{message}");
    assert!(message.contains(&format!(": {object}: ")), "{message}");
}

// ---------------------------------------------------------------- addresses

const FOUR: &str = "
apiVersion: v1
kind: Service
metadata: {name: b, namespace: shop}
spec: {type: NodePort, ports: [{name: tcp, port: 53}, {name: udp, port: 53, protocol: UDP}, {name: web, port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: a, namespace: shop}
spec: {clusterIP: 10.96.0.3, type: NodePort, ports: [{port: 80, nodePort: 30001}]}
---
apiVersion: v1
kind: Service
metadata: {name: c, namespace: shop}
spec: {ipFamilyPolicy: PreferDualStack, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: z, namespace: aaa}
spec: {ipFamilies: [IPv6], ports: [{port: 80}]}
";

#[test]
fn addresses_and_node_ports_are_given_in_order_skipping_explicit_ones() {
    let model = load_ok(&[("svc.yaml", FOUR)]);
    let by = |name: &str| model.services.iter().find(|s| s.name == name).unwrap();
    // aaa/z first (namespace order): IPv6 only, the v6 CIDR's first free.
    assert_eq!(by("z").cluster_ips, ips(&["fd00:10:96::2"]));
    assert_eq!(by("z").ip_families, [IpFamily::V6]);
    assert_eq!(by("a").cluster_ips, ips(&["10.96.0.3"]), "explicit, kept");
    assert_eq!(by("b").cluster_ips, ips(&["10.96.0.2"]));
    // c: .3 is a's, so .4; and the second family.
    assert_eq!(by("c").cluster_ips, ips(&["10.96.0.4", "fd00:10:96::3"]));
    assert_eq!(by("c").ip_families, [IpFamily::V4, IpFamily::V6]);
    // NodePorts: 30001 is a's; b's two port-53 entries share one.
    let node_ports: Vec<Option<u16>> = by("b").ports.iter().map(|p| p.node_port).collect();
    assert_eq!(node_ports, [Some(30000), Some(30000), Some(30002)]);
    assert_eq!(by("a").ports[0].node_port, Some(30001));
    assert!(model.warnings.is_empty(), "{:?}", model.warnings);
    // The same manifests, split and named otherwise, give the same.
    let docs: Vec<&str> = FOUR.split("---").collect();
    let again = load_ok(&[("2.yaml", docs[0]), ("1.yaml", &docs[1..].join("---"))]);
    let strip = |m: &Model| {
        m.services
            .iter()
            .map(|s| (s.key(), s.cluster_ips.clone(), s.ports.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&again), strip(&model));
}

#[test]
fn families_follow_the_plan_and_the_policy() {
    let v4_only = AddressPlan {
        service_cidrs: vec!["10.0.0.0/24".parse().unwrap()],
        ..AddressPlan::default()
    };
    let text = "
apiVersion: v1
kind: Service
metadata: {name: prefer}
spec: {ipFamilyPolicy: PreferDualStack, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: require}
spec: {ipFamilyPolicy: RequireDualStack, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: six}
spec: {ipFamilies: [IPv6], ports: [{port: 80}]}
";
    let model = load_with(&[("svc.yaml", text)], &v4_only).unwrap();
    let by = |name: &str| model.services.iter().find(|s| s.name == name).unwrap();
    assert_eq!(by("prefer").cluster_ips, ips(&["10.0.0.2"]));
    assert_eq!(by("require").cluster_ips, ips(&["10.0.0.3"]));
    assert!(by("six").cluster_ips.is_empty());
    assert_eq!(model.warnings.len(), 2, "{:?}", model.warnings);
    assert!(
        model
            .warnings
            .iter()
            .any(|w| w.contains("default/require") && w.contains("IPv6"))
    );
    assert!(
        model
            .warnings
            .iter()
            .any(|w| w.contains("default/six") && w.contains("IPv6"))
    );
    // IPv6 primary: a plain Service is IPv6.
    let v6_first = AddressPlan {
        service_cidrs: vec![
            "fd00:1::/112".parse().unwrap(),
            "10.0.0.0/24".parse().unwrap(),
        ],
        ..AddressPlan::default()
    };
    let model = load_with(&[("svc.yaml", &svc("ports: [{port: 80}]"))], &v6_first).unwrap();
    assert_eq!(model.services[0].cluster_ips, ips(&["fd00:1::2"]));
}

#[test]
fn two_services_claiming_one_address_or_node_port_warn_and_the_first_keeps_it() {
    let text = "
apiVersion: v1
kind: Service
metadata: {name: b}
spec: {type: NodePort, clusterIP: 10.96.0.7, ports: [{port: 80, nodePort: 30500}]}
---
apiVersion: v1
kind: Service
metadata: {name: a}
spec: {type: NodePort, clusterIP: 10.96.0.7, ports: [{port: 80, nodePort: 30500}]}
";
    let model = load_ok(&[("svc.yaml", text)]);
    let (a, b) = (&model.services[0], &model.services[1]);
    assert_eq!(a.cluster_ips, ips(&["10.96.0.7"]));
    assert!(b.cluster_ips.is_empty(), "lost, and not given another");
    assert_eq!(a.ports[0].node_port, Some(30500));
    assert_eq!(b.ports[0].node_port, None);
    assert_eq!(model.warnings.len(), 2, "{:?}", model.warnings);
    assert!(
        model.warnings[0].contains("default/a keeps it"),
        "{:?}",
        model.warnings
    );
}

#[test]
fn running_out_is_an_error_naming_the_service() {
    let tiny = AddressPlan {
        service_cidrs: vec!["10.0.0.0/30".parse().unwrap()],
        node_ports: Some(30000..=30000),
        ..AddressPlan::default()
    };
    let two = format!(
        "{}---\napiVersion: v1\nkind: Service\nmetadata: {{name: x, namespace: shop}}\nspec: {{ports: [{{port: 80}}]}}\n",
        svc("ports: [{port: 80}]")
    );
    let e = load_with(&[("svc.yaml", &two)], &tiny).unwrap_err();
    assert!(
        matches!(&e.0[0], ManifestError::Addressing(AddressingError::ServiceCidrExhausted { service, .. }) if service == "shop/x"),
        "{e}"
    );
    let ports = svc("type: NodePort, ports: [{name: a, port: 80}, {name: b, port: 81}]");
    let e = load_with(&[("svc.yaml", &ports)], &tiny).unwrap_err();
    assert!(e.to_string().contains("NodePort range 30000-30000"), "{e}");
}

#[test]
fn a_named_target_port_no_selected_pod_declares_warns() {
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: shop, labels: {app: web}}\n\
               spec: {containers: [{name: c, image: i, ports: [{name: http, containerPort: 8080}]}]}\n";
    let good = svc("selector: {app: web}, ports: [{port: 80, targetPort: http}]");
    assert!(
        load_ok(&[("pod.yaml", pod), ("svc.yaml", &good)])
            .warnings
            .is_empty()
    );
    let udp = svc("selector: {app: web}, ports: [{port: 80, targetPort: http, protocol: UDP}]");
    let model = load_ok(&[("pod.yaml", pod), ("svc.yaml", &udp)]);
    assert_eq!(model.warnings.len(), 1, "{:?}", model.warnings);
    assert!(
        model.warnings[0]
            .contains("Service shop/web: spec.ports[0].targetPort: target port \"http\" (UDP)"),
        "{:?}",
        model.warnings
    );
    let backends = model.service_backends(&model.services[0], &model.services[0].ports[0], true);
    assert!(backends.is_empty());
}

#[test]
fn unnamed_ports_of_a_multi_port_service_warn_and_stay() {
    let model = load_ok(&[(
        "svc.yaml",
        &svc("ports: [{port: 80}, {name: b, port: 81}, {port: 82}]"),
    )]);
    assert_eq!(model.services[0].ports.len(), 3);
    assert_eq!(model.warnings.len(), 2, "{:?}", model.warnings);
    assert!(
        model.warnings[0]
            .contains("Service shop/web: spec.ports[0].name: required field is missing"),
        "{:?}",
        model.warnings
    );
    assert!(
        model.warnings[1].contains("spec.ports[2].name"),
        "{:?}",
        model.warnings
    );
}
