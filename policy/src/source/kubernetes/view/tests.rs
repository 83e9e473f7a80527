//! The view: complete only after every kind listed, relists swapped in
//! whole, unusable objects left out with a warning, real-cluster states.

use kube::runtime::watcher::Event;
use serde_json::{Value, json};

use super::*;

fn pod(name: &str, rv: u64, ip: Option<&str>, extra: Value) -> Value {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "resourceVersion": rv.to_string(),
                     "labels": {"app": name}},
        "spec": {"containers": [{"name": "c", "image": "x"}], "nodeName": "n1"},
        "status": {"phase": "Running"},
    });
    if let Some(ip) = ip {
        pod["status"]["podIP"] = json!(ip);
        pod["status"]["podIPs"] = json!([{"ip": ip}]);
    }
    merge(&mut pod, extra);
    pod
}

fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v,
    }
}

fn listed(view: &mut View, kind: Kind, objects: Vec<Value>) {
    view.apply(kind, Event::Init);
    for o in objects {
        view.apply(kind, Event::InitApply(o));
    }
    view.apply(kind, Event::InitDone);
}

fn synced(pods: Vec<Value>) -> View {
    let mut view = View::default();
    listed(&mut view, Kind::Namespace, vec![]);
    listed(&mut view, Kind::NetworkPolicy, vec![]);
    listed(&mut view, Kind::Service, vec![]);
    for kind in Kind::ALL.into_iter().filter(|k| *k > Kind::Service) {
        listed(&mut view, kind, vec![]);
    }
    listed(&mut view, Kind::Pod, pods);
    view
}

fn service(name: &str, rv: u64, spec: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default", "resourceVersion": rv.to_string()},
        "spec": spec,
    })
}

fn keys(model: &Model) -> Vec<String> {
    model.pods.iter().map(|p| p.key()).collect()
}

#[test]
fn complete_only_after_every_kind_listed() {
    let mut view = View::default();
    listed(
        &mut view,
        Kind::Pod,
        vec![pod("a", 5, Some("10.0.0.1"), json!({}))],
    );
    listed(&mut view, Kind::Namespace, vec![]);
    assert!(!view.complete());
    listed(&mut view, Kind::NetworkPolicy, vec![]);
    assert!(!view.complete(), "Services not listed yet");
    listed(&mut view, Kind::Service, vec![]);
    assert!(
        !view.complete(),
        "Nodes and the cluster-admin kinds not listed yet"
    );
    for kind in Kind::ALL.into_iter().filter(|k| *k > Kind::Service) {
        listed(&mut view, kind, vec![]);
    }
    assert!(view.complete());
    assert_eq!(view.revision(), 5);
}

#[test]
fn a_relist_replaces_the_kind_whole_at_its_end() {
    let mut view = synced(vec![pod("a", 5, Some("10.0.0.1"), json!({}))]);
    view.apply(Kind::Pod, Event::Init);
    view.apply(
        Kind::Pod,
        Event::InitApply(pod("b", 9, Some("10.0.0.2"), json!({}))),
    );
    assert_eq!(
        keys(&view.model(Mode::Enforce)),
        ["default/a"],
        "the old list until the new one is done"
    );
    view.apply(Kind::Pod, Event::InitDone);
    assert_eq!(keys(&view.model(Mode::Enforce)), ["default/b"]);
}

#[test]
fn ended_and_host_network_pods_are_no_pods_and_ip_less_ones_are() {
    let view = synced(vec![
        pod(
            "done",
            3,
            Some("10.0.0.9"),
            json!({"status": {"phase": "Succeeded"}}),
        ),
        pod(
            "failed",
            4,
            Some("10.0.0.8"),
            json!({"status": {"phase": "Failed"}}),
        ),
        pod(
            "host",
            5,
            Some("192.168.1.10"),
            json!({"spec": {"hostNetwork": true}}),
        ),
        pod("new", 6, None, json!({"status": {"phase": "Pending"}})),
        pod("run", 7, Some("10.0.0.9"), json!({})),
    ]);
    let model = view.model(Mode::Enforce);
    assert_eq!(keys(&model), ["default/new", "default/run"]);
    assert!(model.pods[0].ips.is_empty(), "no address until it has one");
    assert_eq!(
        model.pods[1].ips,
        ["10.0.0.9".parse::<std::net::IpAddr>().unwrap()]
    );
    assert!(
        model.warnings.is_empty(),
        "the ended pod's address is no conflict: {:?}",
        model.warnings
    );
}

#[test]
fn two_running_pods_on_one_address_warn_and_the_later_keeps_it() {
    let view = synced(vec![
        pod(
            "old",
            3,
            Some("10.0.0.1"),
            json!({"status": {"startTime": "2026-01-01T00:00:00Z"}}),
        ),
        pod(
            "young",
            4,
            Some("10.0.0.1"),
            json!({"status": {"startTime": "2026-02-01T00:00:00Z"}}),
        ),
    ]);
    let model = view.model(Mode::Enforce);
    let young = model.pods.iter().find(|p| p.name == "young").unwrap();
    let old = model.pods.iter().find(|p| p.name == "old").unwrap();
    assert_eq!(young.ips.len(), 1);
    assert!(old.ips.is_empty());
    assert_eq!(model.warnings.len(), 1, "{:?}", model.warnings);
}

#[test]
fn an_unusable_object_is_left_out_with_a_warning_until_fixed() {
    let mut view = synced(vec![pod("a", 5, Some("10.0.0.1"), json!({}))]);
    let bad = json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "p", "namespace": "default", "resourceVersion": "8"},
        "spec": {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "not-a-cidr"}}]}]},
    });
    assert!(view.apply(Kind::NetworkPolicy, Event::Apply(bad)));
    let model = view.model(Mode::Enforce);
    assert!(model.policies.is_empty());
    assert_eq!(model.warnings.len(), 1);
    assert!(
        model.warnings[0].contains("NetworkPolicy default/p"),
        "{:?}",
        model.warnings
    );
    let good = json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "p", "namespace": "default", "resourceVersion": "9"},
        "spec": {"podSelector": {}, "someFieldOfANewerApi": true},
    });
    view.apply(Kind::NetworkPolicy, Event::Apply(good));
    let model = view.model(Mode::Enforce);
    assert_eq!(
        model.policies.len(),
        1,
        "unknown fields of a newer API are ignored"
    );
    assert!(model.warnings.is_empty());
    assert_eq!(view.revision(), 9);
}

#[test]
fn label_changes_and_deletes_move_the_view() {
    let mut view = synced(vec![pod("a", 5, Some("10.0.0.1"), json!({}))]);
    view.apply(
        Kind::Pod,
        Event::Apply(pod(
            "a",
            6,
            Some("10.0.0.1"),
            json!({"metadata": {"labels": {"app": "z"}}}),
        )),
    );
    let model = view.model(Mode::Enforce);
    assert_eq!(
        model.pods[0].labels.get("app").map(String::as_str),
        Some("z")
    );
    assert_eq!(model.pods[0].node.as_deref(), Some("n1"));
    view.apply(
        Kind::Pod,
        Event::Delete(pod("a", 7, Some("10.0.0.1"), json!({}))),
    );
    assert!(view.model(Mode::Enforce).pods.is_empty());
    assert_eq!(view.revision(), 7);
}

#[test]
fn services_come_as_the_api_server_gave_them_and_a_change_moves_the_view() {
    let mut view = synced(vec![pod("a", 5, Some("10.0.0.1"), json!({}))]);
    let spec = json!({"type": "NodePort", "selector": {"app": "a"},
        "clusterIP": "10.96.7.7", "clusterIPs": ["10.96.7.7"], "ipFamilies": ["IPv4"],
        "ipFamilyPolicy": "SingleStack",
        "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP", "nodePort": 31000}]});
    assert!(view.apply(Kind::Service, Event::Apply(service("web", 8, spec))));
    let model = view.model(Mode::Enforce);
    assert_eq!(model.services.len(), 1);
    let svc = &model.services[0];
    assert_eq!(
        svc.cluster_ips,
        ["10.96.7.7".parse::<std::net::IpAddr>().unwrap()]
    );
    assert_eq!(svc.ports[0].node_port, Some(31000));
    assert_eq!(view.revision(), 8);
    // The API source gives out nothing: a Service the server has not
    // given an address (it always does) has none.
    let bare = json!({"selector": {"app": "a"}, "ports": [{"port": 80}]});
    view.apply(Kind::Service, Event::Apply(service("bare", 9, bare)));
    let model = view.model(Mode::Enforce);
    let bare = model.services.iter().find(|s| s.name == "bare").unwrap();
    assert!(bare.cluster_ips.is_empty());
    view.apply(Kind::Service, Event::Delete(service("web", 10, json!({}))));
    assert_eq!(view.model(Mode::Enforce).services.len(), 1);
    assert_eq!(view.revision(), 10);
}

#[test]
fn an_unusable_service_is_left_out_with_a_warning() {
    let mut view = synced(vec![]);
    let bad = json!({"ports": [{"port": 80, "protocol": "ICMP"}]});
    view.apply(Kind::Service, Event::Apply(service("odd", 4, bad)));
    let model = view.model(Mode::Enforce);
    assert!(model.services.is_empty());
    assert_eq!(model.warnings.len(), 1);
    assert!(
        model.warnings[0].contains("Service default/odd"),
        "{:?}",
        model.warnings
    );
    assert!(
        model.warnings[0].contains("spec.ports[0].protocol"),
        "{:?}",
        model.warnings
    );
}

fn listed_all_but(view: &mut View, except: &[Kind]) {
    for kind in Kind::ALL.into_iter().filter(|k| !except.contains(k)) {
        listed(view, kind, vec![]);
    }
}

#[test]
fn admin_policies_and_nodes_come_into_the_model() {
    let mut view = View::default();
    listed_all_but(&mut view, &[Kind::AdminNetworkPolicy, Kind::Node]);
    assert!(!view.complete());
    let anp = json!({
        "apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "AdminNetworkPolicy",
        "metadata": {"name": "guard", "resourceVersion": "5"},
        "spec": {"priority": 3, "subject": {"namespaces": {}},
                 "egress": [{"action": "Allow", "to": [{"nodes": {}}], "newField": 1}]},
        "status": {"conditions": []},
    });
    listed(&mut view, Kind::AdminNetworkPolicy, vec![anp]);
    let node = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "n1", "resourceVersion": "6", "labels": {"r": "x"}},
        "spec": {"podCIDR": "10.0.0.0/24", "someNewField": true},
        "status": {"addresses": [{"type": "InternalIP", "address": "192.0.2.1"}]},
    });
    listed(&mut view, Kind::Node, vec![node]);
    assert!(view.complete());
    let model = view.model(Mode::Enforce);
    assert_eq!(model.admin_policies.len(), 1);
    assert_eq!(
        model.admin_policies[0].egress[0].action,
        crate::model::Action::Accept
    );
    assert_eq!(
        model.nodes[0].addresses,
        ["192.0.2.1".parse::<std::net::IpAddr>().unwrap()]
    );
    // The API accepted a BANP of another name only in a broken cluster:
    // left out with a warning, never fatal.
    let bad = json!({
        "apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "BaselineAdminNetworkPolicy",
        "metadata": {"name": "other", "resourceVersion": "7"},
        "spec": {"subject": {"namespaces": {}}},
    });
    assert!(view.apply(Kind::BaselineAdminNetworkPolicy, Event::Apply(bad)));
    let model = view.model(Mode::Enforce);
    assert_eq!(model.admin_policies.len(), 1);
    assert_eq!(view.skipped().count(), 1);
}

#[test]
fn an_absent_crd_counts_as_listed_and_empties_its_kind() {
    let mut view = View::default();
    listed_all_but(&mut view, &[Kind::ClusterNetworkPolicy]);
    assert!(!view.complete());
    assert!(view.absent(Kind::ClusterNetworkPolicy));
    assert!(view.complete());
    // Installed later: listed; removed again: gone.
    let cnp = json!({
        "apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
        "metadata": {"name": "c", "resourceVersion": "9"},
        "spec": {"tier": "Admin", "priority": 1, "subject": {"namespaces": {}}},
    });
    listed(&mut view, Kind::ClusterNetworkPolicy, vec![cnp]);
    assert_eq!(view.model(Mode::Enforce).admin_policies.len(), 1);
    assert!(view.absent(Kind::ClusterNetworkPolicy));
    assert!(view.model(Mode::Enforce).admin_policies.is_empty());
    assert!(!view.absent(Kind::ClusterNetworkPolicy));
}

#[test]
fn a_node_address_that_is_no_ip_is_left_out_and_the_node_kept() {
    let mut view = View::default();
    listed_all_but(&mut view, &[Kind::Node]);
    let node = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "n1", "resourceVersion": "3"},
        "status": {"addresses": [{"type": "InternalIP", "address": "not-an-ip"},
                                  {"type": "ExternalIP", "address": "2001:db8::7"}]},
    });
    listed(&mut view, Kind::Node, vec![node]);
    let model = view.model(Mode::Enforce);
    assert_eq!(
        model.nodes[0].addresses,
        ["2001:db8::7".parse::<std::net::IpAddr>().unwrap()]
    );
}
