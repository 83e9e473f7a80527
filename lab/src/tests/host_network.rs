//! HostNetwork pods in the plan, the probes and verify.

use std::net::SocketAddr;

use super::*;
use crate::nodes::fabric_route_batch;
use crate::probe::Via;
use bulkhead_policy::model::{Node, OffNetwork};

/// `model()` plus `h/web` (hostNetwork, TCP 8080 and UDP 53, with a
/// status address that is no node's) on `node`.
fn with_host_network(node: &str) -> Model {
    let mut m = model();
    let mut web = pod("h", "web", &[(8080, Protocol::Tcp), (53, Protocol::Udp)]);
    web.off_network = Some(OffNetwork::HostNetwork);
    web.node = Some(node.into());
    web.ips = vec![ip("203.0.113.9")];
    m.pods.push(web);
    m.normalize();
    m
}

fn node_object(name: &str, addrs: &[&str]) -> Node {
    Node {
        name: name.into(),
        labels: Labels::new(),
        addresses: addrs.iter().map(|a| ip(a)).collect(),
    }
}

#[test]
fn a_host_network_pod_is_its_nodes_namespace_and_fabric_addresses() {
    let mut m = with_host_network("node-1");
    m.nodes = vec![
        node_object("node-0", &["198.18.0.1"]),
        node_object("node-1", &["198.18.0.2", "fd00:fab::2"]),
    ];
    let s = plan(&m, &spec_nodes(&[], 2)).unwrap();
    let web = s.hosts.iter().find(|h| h.name == "h/web").unwrap();
    assert!(web.host_network && !web.is_pod() && !web.external);
    assert_eq!(web.node, 1);
    assert_eq!(web.netns, "bh-t1-n1");
    assert_eq!(web.ips, [ip("198.18.0.2"), ip("fd00:fab::2")]);
    assert!(web.veth.is_empty() && web.mac.is_empty());
    let namespaces = s.namespaces();
    let mut unique = namespaces.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), namespaces.len(), "{namespaces:?}");
    // Two nodes, the fabric and the three pods: none for h/web.
    assert_eq!(namespaces.len(), 2 + 1 + 3, "{namespaces:?}");
    // Node-0 reaches node-1's address on the fabric link: no host route.
    let routes = op_lines(fabric_route_batch(&s, 0));
    assert!(
        !routes.iter().any(|r| r.contains("198.18.0.2/32")),
        "{routes:?}"
    );
}

#[test]
fn on_one_node_a_host_network_pod_has_the_gateway_addresses() {
    let s = plan(&with_host_network("node-0"), &spec(&[])).unwrap();
    let web = s.hosts.iter().find(|h| h.name == "h/web").unwrap();
    assert_eq!(web.netns, "bh-t1-node");
    assert_eq!(web.ips, s.gateways);
    assert_eq!(web.ips, crate::kubeproxy::node_addresses(&s, 0));
}

#[test]
fn with_assigned_addresses_a_host_network_pod_is_an_ordinary_pod() {
    let s = plan(
        &with_host_network("node-0"),
        &LabSpec {
            assign_pod_ips: true,
            ..spec(&[])
        },
    )
    .unwrap();
    let web = s.hosts.iter().find(|h| h.name == "h/web").unwrap();
    assert!(web.is_pod());
    assert_ne!(web.netns, s.node);
}

#[test]
fn a_node_object_must_declare_the_labs_node_addresses() {
    let mut m = with_host_network("node-1");
    m.nodes = vec![
        node_object("node-0", &["198.18.0.1"]),
        node_object("node-1", &["198.18.0.7"]),
        // Not a node of the lab: the model's business.
        node_object("node-9", &["192.0.2.99"]),
    ];
    let e = plan(&m, &spec_nodes(&[], 2)).unwrap_err().to_string();
    assert!(
        e.contains("Node node-1")
            && e.contains("status.addresses")
            && e.contains("198.18.0.7")
            && e.contains("198.18.0.2"),
        "{e}"
    );
    // On one node, the node's addresses are the gateways.
    m.nodes = vec![node_object("node-0", &["198.18.0.1"])];
    let e = plan(&m, &spec(&[])).unwrap_err().to_string();
    assert!(e.contains("Node node-0") && e.contains("10.244.0.1"), "{e}");
    m.nodes = vec![node_object("node-0", &["10.244.0.1", "fd00:10:244::1"])];
    plan(&m, &spec(&[])).unwrap();
}

#[test]
fn two_host_network_pods_on_one_node_are_refused() {
    let mut m = with_host_network("node-0");
    let mut other = m.pod("h/web").unwrap().1.clone();
    other.name = "web2".into();
    m.pods.push(other);
    m.normalize();
    let e = plan(&m, &spec(&[])).unwrap_err().to_string();
    assert!(
        e.contains("hostNetwork pod h/web2") && e.contains("h/web is already"),
        "{e}"
    );
}

#[test]
fn host_network_pods_are_destinations_only() {
    let s = plan(&with_host_network("node-0"), &spec(&[])).unwrap();
    let web = s.hosts.iter().position(|h| h.name == "h/web").unwrap();
    let probes = plan_probes(&s, &opts(&[true], &[Protocol::Tcp], None));
    assert!(probes.iter().all(|p| p.src != web));
    let to_web: Vec<_> = probes.iter().filter(|p| p.dst == web).collect();
    // From each of the three pods, to its declared TCP port at the node's address.
    assert_eq!(to_web.len(), 3, "{to_web:?}");
    assert!(
        to_web
            .iter()
            .all(|p| p.port == 8080 && p.target == Some(SocketAddr::new(ip("10.244.0.1"), 8080)))
    );
}

#[test]
fn verify_judges_a_host_network_destination_on_its_address() {
    let l = lines(concat!(
        r#"{"src":"x/a","dst":"198.18.0.2/32","allowed":{"TCP":[[8080,8080]],"UDP":[],"SCTP":[]}}"#,
        "\n",
        // A line naming the pod itself: not what the agents see.
        r#"{"src":"x/b","dst":"h/web","allowed":{"TCP":[[8080,8080]],"UDP":[],"SCTP":[]}}"#,
    ));
    let probe = |src: &str, outcome| ProbeResult {
        target: Some(SocketAddr::new(ip("198.18.0.2"), 8080)),
        via: Via::Pod,
        dst_host_network: true,
        ..result(src, "h/web", "IPv4", Protocol::Tcp, 8080, outcome)
    };
    assert!(expected(&probe("x/a", Outcome::Connected), &l));
    assert!(!expected(&probe("x/b", Outcome::Connected), &l));
    let found = disagreements(
        &[
            probe("x/a", Outcome::Connected),
            probe("x/b", Outcome::Timeout),
            probe("x/b", Outcome::Connected),
        ],
        &l,
    );
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].probe.src, "x/b");
    assert!(!found[0].expected);
}

#[test]
fn state_files_without_host_network_read_as_none() {
    let s = plan(&with_host_network("node-0"), &spec(&[])).unwrap();
    let mut json = serde_json::to_value(&s).unwrap();
    let hosts = json["hosts"].as_array_mut().unwrap();
    // Written only when set.
    assert_eq!(
        hosts
            .iter()
            .filter(|h| h.get("host_network").is_some())
            .count(),
        1
    );
    for h in hosts.iter_mut() {
        h.as_object_mut().unwrap().remove("host_network");
    }
    let old: LabState = serde_json::from_value(json).unwrap();
    assert!(old.hosts.iter().all(|h| !h.host_network));
}

#[test]
fn the_lab_takes_the_agents_pod_addresses_when_a_host_network_pod_has_none() {
    use crate::plan::{has_host_network, with_agent_addresses};
    // As analysis loads it: h/web (first in order) takes a pod address.
    let mut analysis = with_host_network("node-0");
    for p in &mut analysis.pods {
        p.ips.clear();
    }
    AddressPlan::default().assign(&mut analysis.pods).unwrap();
    assert_eq!(analysis.pod("h/web").unwrap().1.ips[0], ip("10.244.0.2"));
    // As the agents load it: h/web left out first.
    let mut agents = analysis.clone();
    agents.drop_off_network_pods();
    for p in &mut agents.pods {
        p.ips.clear();
    }
    AddressPlan::default().assign(&mut agents.pods).unwrap();
    assert!(has_host_network(&analysis, false) && !has_host_network(&analysis, true));
    let lab = with_agent_addresses(analysis, &agents);
    for pod in &agents.pods {
        assert_eq!(lab.pod(&pod.key()).unwrap().1.ips, pod.ips, "{}", pod.key());
    }
    assert_eq!(lab.pod("x/a").unwrap().1.ips[0], ip("10.244.0.2"));
    let s = plan(&lab, &spec(&[])).unwrap();
    let xa = s.hosts.iter().find(|h| h.name == "x/a").unwrap();
    assert_eq!(xa.ips[0], ip("10.244.0.2"));
}
