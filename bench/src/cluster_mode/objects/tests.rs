use bulkhead_policy::source::manifest::{ApiObject, api_object};

use super::*;
use crate::cluster::{ClusterSpec, LabelMode};
use crate::cluster_mode::synth;

fn spec(pods: usize) -> ClusterSpec {
    ClusterSpec {
        seed: 7,
        namespaces: 8,
        apps_per_namespace: 6,
        pods,
        policies: 120,
        labels: LabelMode::Realistic,
    }
}

/// The objects read back through the agent's own conversion are the
/// generator's model: the same policies, namespaces, pod labels, ports,
/// addresses and nodes.
#[test]
fn objects_read_back_as_the_generated_model() {
    let model = spec(300).build_with(None).model;
    for p in &model.policies {
        let Ok(ApiObject::Policy(back)) = api_object("NetworkPolicy", policy(p)) else {
            panic!("{} did not read back as a policy", p.key());
        };
        assert_eq!(back.pod_selector, p.pod_selector, "{}", p.key());
        assert_eq!(back.ingress, p.ingress, "{}", p.key());
        assert_eq!(back.egress, p.egress, "{}", p.key());
    }
    for ns in model.namespaces.values() {
        let Ok(ApiObject::Namespace(back)) = api_object("Namespace", namespace(ns)) else {
            panic!("namespace {} did not read back", ns.name);
        };
        assert_eq!(back.labels, ns.labels);
    }
    let mut addrs = Addresses::default();
    for p in &model.pods {
        let (node, ip) = addrs.take().unwrap();
        let Ok(ApiObject::Pod(back)) = api_object("Pod", pod(p, &node, ip)) else {
            panic!("pod {} did not read back", p.key());
        };
        assert_eq!(back.key(), p.key());
        assert!(p.labels.iter().all(|(k, v)| back.labels.get(k) == Some(v)));
        assert_eq!(back.ports, p.ports);
        assert_eq!(back.ips, vec![std::net::IpAddr::V4(ip)]);
        assert_eq!(back.node.as_deref(), Some(node.as_str()));
        assert!(back.off_network.is_none() && back.claim.running);
    }
}

#[test]
fn addresses_fill_node_by_node_and_reuse_released_ones() {
    let mut a = Addresses::default();
    let first = a.take().unwrap();
    assert_eq!(first, ("node-1".to_owned(), Ipv4Addr::new(10, 244, 1, 2)));
    for _ in 1..PODS_PER_NODE {
        assert_eq!(a.take().unwrap().0, "node-1");
    }
    assert_eq!(
        a.take().unwrap(),
        ("node-2".to_owned(), Ipv4Addr::new(10, 244, 2, 2))
    );
    a.release(first.0.clone(), first.1);
    assert_eq!(a.take().unwrap(), first);
    // 1,023 remote nodes of 110 pods, then the CIDR is full.
    let mut n = PODS_PER_NODE + 1;
    while a.take().is_some() {
        n += 1;
    }
    assert_eq!(n, 1023 * PODS_PER_NODE);
}

#[test]
fn churn_keeps_the_pod_count_and_changes_in_turn() {
    let mut s = synth::generate(&spec(200)).unwrap();
    assert_eq!(s.remote.len(), 200);
    let (mut applies, mut deletes) = (0, 0);
    for i in 0..300 {
        match s.churn_change(i).unwrap() {
            synth::Change::Apply(_) => applies += 1,
            synth::Change::DeletePod(..) => deletes += 1,
        }
    }
    assert_eq!((applies, deletes), (200, 100));
    assert_eq!(s.remote.len(), 200);
    // The local namespace, pods and policies are among the objects.
    let local = s
        .objects
        .iter()
        .filter(|o| o["metadata"]["namespace"] == synth::LOCAL_NS)
        .count();
    assert_eq!(local, 2 + 4);
}
