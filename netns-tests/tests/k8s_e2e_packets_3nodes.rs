//! The upstream Kubernetes e2e NetworkPolicy scenarios on real packets
//! (as `k8s_e2e_packets.rs`: the same scenario files, truth tables and
//! harness) with the nine pods spread over a lab of three nodes
//! (`lab up --nodes 3`: round-robin in namespace/name order, so every
//! namespace has a pod on every node), one agent per node on a routed
//! fabric: every cross-node connection is judged on egress by the
//! client's node and on ingress by the server's, each knowing the other
//! nodes' pods as identities only. Plus `lab verify` across the nodes
//! (TCP, UDP and SCTP, IPv4 and IPv6, pods and external hosts) with zero
//! disagreements on policies that isolate both directions.

#![allow(dead_code)]

mod lab_support;

/// The lab's name (see the harness).
const LAB: &str = "k8sp3";
/// Its nodes.
const NODES: usize = 3;
/// Probes between pods go to their addresses (see the harness).
const VIA: &str = "pod";
/// The lab nodes' kube-proxy mode.
const KUBE_PROXY: &str = "iptables";

#[path = "../../policy/tests/k8s_e2e/common.rs"]
mod common;
#[path = "k8s_e2e_packets/harness.rs"]
mod harness;
#[path = "../../policy/tests/k8s_e2e/ipblock.rs"]
mod ipblock;
#[path = "../../policy/tests/k8s_e2e/isolation.rs"]
mod isolation;
#[path = "../../policy/tests/k8s_e2e/ports.rs"]
mod ports;
#[path = "../../policy/tests/k8s_e2e/selectors.rs"]
mod selectors;

mod across_nodes {
    use crate::harness::*;

    /// Ingress and egress isolation, named and numbered ports, an
    /// ipBlock with an except holding a pod and an external host: `lab
    /// verify` probes every pod and external host pair on every protocol
    /// and family and finds the kernel of every node in agreement with
    /// `bulkhead connectivity`.
    #[test]
    fn lab_verify_finds_no_disagreement_across_nodes() {
        let c = load_with(|m| {
            let xa = pod_ip(m, "x/a", Family::V4);
            format!(
                "\
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{namespace: x, name: ingress-from-y}}
spec:
  podSelector: {{}}
  policyTypes: [Ingress]
  ingress:
  - from: [{{namespaceSelector: {{matchLabels: {{ns: y}}}}}}]
    ports: [{{protocol: TCP, port: 80}}, {{protocol: SCTP, port: 81}}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{namespace: y, name: egress-to-x-and-net}}
spec:
  podSelector: {{matchLabels: {{pod: b}}}}
  policyTypes: [Egress]
  egress:
  - to: [{{namespaceSelector: {{matchLabels: {{ns: x}}}}}}]
  - to: [{{ipBlock: {{cidr: 0.0.0.0/0, except: [{xa}/32, 192.0.2.0/24]}}}}]
    ports: [{{protocol: UDP, port: 81}}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{namespace: z, name: serve-81-udp}}
spec:
  podSelector: {{matchLabels: {{pod: c}}}}
  policyTypes: [Ingress, Egress]
  ingress:
  - ports: [{{protocol: UDP, port: 81}}]
  egress:
  - to: [{{podSelector: {{}}}}]
"
            )
        });
        c.verify();
    }
}
