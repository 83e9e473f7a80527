//! The upstream Kubernetes e2e NetworkPolicy scenarios on real packets
//! through Services across three nodes (as `k8s_e2e_packets_3nodes.rs`,
//! the pods spread round-robin): every pod has a Service of its own, every
//! node runs kube-proxy's nftables-mode rules, and every probe between
//! pods goes to the destination's ClusterIP. A connection translated to a
//! pod on another node has its client's egress judged where it leaves the
//! client's node (`leave_node` on the uplink) and its backend's ingress on
//! the backend's node; the truth tables hold exactly as to pod addresses.

#![allow(dead_code)]

mod lab_support;

/// The lab's name (see the harness).
const LAB: &str = "k8ss3";
/// Its nodes.
const NODES: usize = 3;
/// Probes between pods go to the destination's ClusterIP.
const VIA: &str = "service";
/// The lab nodes' kube-proxy mode.
const KUBE_PROXY: &str = "nftables";

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
