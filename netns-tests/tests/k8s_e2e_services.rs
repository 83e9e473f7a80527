//! The upstream Kubernetes e2e NetworkPolicy scenarios on real packets
//! through Services (as `k8s_e2e_packets.rs`: the same scenario files,
//! truth tables and harness), on one node: every pod has a Service of its
//! own, the node runs kube-proxy's iptables-mode rules, and every probe
//! between pods goes to the destination's ClusterIP. Policy is judged on
//! the backend a connection reaches, so every truth table holds exactly
//! as it does to pod addresses (TCP, UDP and SCTP; IPv4 and IPv6).

#![allow(dead_code)]

mod lab_support;

/// The lab's name (see the harness).
const LAB: &str = "k8ss1";
/// Its nodes: one, every pod behind it.
const NODES: usize = 1;
/// Probes between pods go to the destination's ClusterIP.
const VIA: &str = "service";
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
