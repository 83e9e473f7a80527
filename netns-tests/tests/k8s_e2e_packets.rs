//! The upstream Kubernetes e2e NetworkPolicy scenarios
//! (kubernetes/kubernetes `test/e2e/network/netpol/network_policy.go`) on
//! real packets: the very scenario files and truth tables that
//! `policy/tests/k8s_e2e.rs` checks against the reference evaluator,
//! run here by a second harness that answers every check with real TCP,
//! UDP and SCTP probes (IPv4 and IPv6) between the nine pods of a lab
//! (namespaces x, y, z × pods a, b, c), its agent enforcing each
//! scenario's policies, labels and ports in the kernel. Sequences (policy
//! update, delete, pod and namespace relabel) are live changes of the
//! running lab. See `k8s_e2e_packets/harness.rs`.

#![allow(dead_code)]

mod lab_support;

/// The lab's name (see the harness).
const LAB: &str = "k8spk";
/// Its nodes: one, every pod behind it.
const NODES: usize = 1;
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
