//! The NAT rules kube-proxy writes, for the lab's nodes: kube-proxy itself
//! is not available here, so the lab writes what its proxiers would write
//! for the lab's Services and pods, and installs it in each node's network
//! namespace ([`install`]), so that pods reach each other through
//! ClusterIPs and NodePorts exactly as on a real node.
//!
//! Two modes, each after its proxier in `kubernetes/pkg/proxy`:
//!
//! - [`iptables`] (`pkg/proxy/iptables/proxier.go`): the
//!   `iptables-restore` input of one family: nat `KUBE-SERVICES`,
//!   `KUBE-NODEPORTS`, `KUBE-POSTROUTING`, `KUBE-MARK-MASQ`, per Service
//!   port `KUBE-SVC-*` / `KUBE-SVL-*` / `KUBE-EXT-*` and per endpoint
//!   `KUBE-SEP-*`; filter `KUBE-SERVICES` / `KUBE-EXTERNAL-SERVICES` /
//!   `KUBE-NODEPORTS` / `KUBE-FORWARD` / `KUBE-PROXY-FIREWALL`; and the
//!   jumps from the built-in chains.
//! - [`nftables`] (`pkg/proxy/nftables/proxier.go`): `table ip kube-proxy`
//!   (or `ip6`) with its base chains, the `service-ips` /
//!   `service-nodeports` verdict maps, `service-*` / `local-*` /
//!   `external-*` / `endpoint-*` chains and the no-endpoint maps.
//!
//! Both follow the proxiers' logic for traffic policies
//! (`proxy.CategorizeEndpoints`: cluster, local and locally reachable
//! endpoints; `internalTrafficPolicy: Local` and `externalTrafficPolicy:
//! Local` with the short-circuit of pod and node traffic), masquerading
//! (mark `0x4000`, `MASQUERADE --random-fully` / `masquerade
//! fully-random`; hairpin and off-cluster sources, the local-traffic
//! detector being the cluster's pod CIDRs as with `--detect-local-mode
//! ClusterCIDR`) and Services without endpoints (REJECT, or DROP when only
//! local endpoints count and there are none here). Chain names are hashed
//! as kube-proxy hashes them (SHA-256, base32, 16 characters for
//! iptables; 8 and the readable name for nftables).
//!
//! Left out, because it changes no packet's fate in the lab:
//! comments (iptables `-m comment`, nftables `comment`), metrics and
//! `nfacct` counters, the canary chains, the "large cluster" mode. Left
//! out because the lab has no such input: session affinity (`ClientIP`),
//! `loadBalancerSourceRanges` (the `KUBE-FW-*` / `firewall-*` chains stay
//! empty), topology hints, terminating endpoints (every lab pod is ready:
//! the lab starts its servers before it reports `up`), `--masquerade-all`,
//! the nftables "unallocated ClusterIP" drop (the lab knows no Service
//! CIDR). NodePorts on localhost are off (`--iptables-localhost-nodeports
//! false`), so `route_localnet` stays 0 and there is no `KUBE-FIREWALL`.
//! The whole ruleset is written on every change (kube-proxy's "full
//! sync"; it also does partial ones, which end in the same ruleset).
//! NodePorts answer on every local address in iptables mode and on the
//! node's addresses (`--nodeport-addresses primary`, the nftables mode's
//! default) in nftables mode.
//!
//! The lab's nodes run with `nf_conntrack_tcp_be_liberal=1`, so the
//! iptables mode leaves out its `KUBE-FORWARD` drop of INVALID packets,
//! as kube-proxy does when it finds that sysctl set: the agent's host
//! routing sends pod-to-pod packets around the node's netfilter, so the
//! node's conntrack sees ICMP errors (and mid-flow packets) of flows it
//! never saw, which that rule would drop.

pub mod daemon;
pub mod install;
pub mod iptables;
pub mod nftables;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use data_encoding::BASE32;
use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use bulkhead_policy::model::{Backend, Model, Service, ServicePort, ServiceType, TrafficPolicy};

/// The mark kube-proxy sets on packets to masquerade (`--masquerade-bit`
/// 14, the default).
pub const MASQ_MARK: &str = "0x4000";

/// Which rules the lab's nodes get (`lab up --kube-proxy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyMode {
    /// kube-proxy's iptables mode (its default).
    #[default]
    Iptables,
    /// kube-proxy's nftables mode.
    Nftables,
    /// No Service translation at all.
    None,
}

impl ProxyMode {
    /// `iptables`, `nftables`, `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Iptables => "iptables",
            Self::Nftables => "nftables",
            Self::None => "none",
        }
    }
}

impl fmt::Display for ProxyMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A kube-proxy mode name that is none of the three.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown kube-proxy mode {0:?} (expected iptables, nftables or none)")]
pub struct UnknownProxyMode(pub String);

impl FromStr for ProxyMode {
    type Err = UnknownProxyMode;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "iptables" => Ok(Self::Iptables),
            "nftables" => Ok(Self::Nftables),
            "none" => Ok(Self::None),
            _ => Err(UnknownProxyMode(s.to_owned())),
        }
    }
}

/// The node the rules are for: what kube-proxy knows about its own node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeView {
    /// Its Kubernetes name.
    pub name: String,
    /// Its addresses (`--nodeport-addresses primary`: where NodePorts
    /// answer in nftables mode).
    pub addresses: Vec<IpAddr>,
    /// The pods (`namespace/name`) scheduled on it: the local endpoints of
    /// `Local` traffic policies.
    pub local_pods: BTreeSet<String>,
    /// The cluster's pod CIDRs (`--cluster-cidr`): traffic from them is
    /// "local" (from a pod) to the traffic detector.
    pub pod_cidrs: Vec<IpNetwork>,
    /// The node's `net.netfilter.nf_conntrack_tcp_be_liberal` is set:
    /// kube-proxy's iptables mode then leaves out its drop of packets
    /// conntrack calls INVALID.
    pub conntrack_tcp_liberal: bool,
}

impl NodeView {
    /// The pod CIDR of a family, if any (no detector without one).
    fn pod_cidr(&self, v4: bool) -> Option<IpNetwork> {
        self.pod_cidrs.iter().copied().find(|c| c.is_ipv4() == v4)
    }
}

/// One Service port as a proxier of one family sees it, with its
/// endpoints sorted into kube-proxy's categories.
#[derive(Clone, Debug)]
pub(crate) struct PortPlan<'m> {
    /// The Service.
    pub svc: &'m Service,
    /// The port.
    pub port: &'m ServicePort,
    /// `namespace/name` or `namespace/name:port` (`ServicePortName`).
    pub name: String,
    /// `tcp`, `udp`, `sctp`.
    pub proto: &'static str,
    /// The ClusterIP of the family.
    pub cluster_ip: IpAddr,
    /// External IPs of the family.
    pub external_ips: Vec<IpAddr>,
    /// Load-balancer IPs of the family.
    pub lb_ips: Vec<IpAddr>,
    /// The NodePort, if any.
    pub node_port: Option<u16>,
    /// Endpoints of `Cluster` policy (empty unless used).
    pub cluster: Vec<Backend>,
    /// Endpoints of `Local` policy (empty unless used).
    pub local: Vec<Backend>,
    /// Every endpoint some chain leads to (an endpoint chain each).
    pub reachable: Vec<Backend>,
    /// Whether the Service has any endpoint at all, on any node.
    pub has_endpoints: bool,
}

impl PortPlan<'_> {
    /// NodePort, external or load-balancer addresses.
    pub fn externally_accessible(&self) -> bool {
        self.node_port.is_some() || !self.external_ips.is_empty() || !self.lb_ips.is_empty()
    }

    /// `externalTrafficPolicy: Local` (only counts when externally
    /// accessible).
    pub fn external_local(&self) -> bool {
        self.externally_accessible() && self.svc.external_traffic_policy == TrafficPolicy::Local
    }

    /// `internalTrafficPolicy: Local`.
    pub fn internal_local(&self) -> bool {
        self.svc.internal_traffic_policy == TrafficPolicy::Local
    }

    /// Whether ClusterIP traffic has endpoints to go to.
    pub fn has_internal_endpoints(&self) -> bool {
        self.has_endpoints && (!self.internal_local() || !self.local.is_empty())
    }

    /// Whether external traffic has endpoints to go to.
    pub fn has_external_endpoints(&self) -> bool {
        self.has_endpoints && (!self.external_local() || !self.local.is_empty())
    }

    /// Whether the external chain exists (it short-circuits local traffic
    /// even when no endpoint serves external traffic).
    pub fn uses_external_chain(&self) -> bool {
        self.has_endpoints && self.externally_accessible()
    }

    /// The endpoint's `ip:port` (`[ip]:port` for IPv6), as Go's
    /// `net.JoinHostPort` writes it.
    pub fn endpoint_string(b: &Backend) -> String {
        std::net::SocketAddr::new(b.addr, b.port).to_string()
    }
}

/// `ServicePortName.String()`: `namespace/name`, then `:port` when the
/// port has a name.
fn port_name(svc: &Service, port: &ServicePort) -> String {
    match &port.name {
        Some(n) if !n.is_empty() => format!("{}/{}:{n}", svc.namespace, svc.name),
        _ => format!("{}/{}", svc.namespace, svc.name),
    }
}

/// The Service ports a proxier of one family handles, with endpoints: in
/// (namespace, name, port) order (kube-proxy's order is a Go map's; order
/// does not matter between Service ports, whose matches are disjoint).
pub(crate) fn plan<'m>(model: &'m Model, node: &NodeView, v4: bool) -> Vec<PortPlan<'m>> {
    let of_family = |ips: &[IpAddr]| -> Vec<IpAddr> {
        ips.iter().copied().filter(|a| a.is_ipv4() == v4).collect()
    };
    let mut out = Vec::new();
    for svc in &model.services {
        if svc.headless || svc.kind == ServiceType::ExternalName {
            continue;
        }
        // A proxier handles the Services with a ClusterIP of its family.
        let Some(&cluster_ip) = svc.cluster_ips.iter().find(|a| a.is_ipv4() == v4) else {
            continue;
        };
        for port in &svc.ports {
            let all = model.service_backends(svc, port, v4);
            let mut p = PortPlan {
                svc,
                port,
                name: port_name(svc, port),
                proto: proto_name(port.protocol),
                cluster_ip,
                external_ips: of_family(&svc.external_ips),
                lb_ips: of_family(&svc.load_balancer_ips),
                node_port: port
                    .node_port
                    .filter(|_| svc.kind != ServiceType::ClusterIp),
                cluster: Vec::new(),
                local: Vec::new(),
                reachable: Vec::new(),
                has_endpoints: !all.is_empty(),
            };
            categorize(&mut p, all, model, node);
            out.push(p);
        }
    }
    out
}

/// `proxy.CategorizeEndpoints` without topology: cluster endpoints when
/// Cluster policy is used, local ones when Local policy is, and their
/// union as the reachable ones.
fn categorize(p: &mut PortPlan<'_>, all: Vec<Backend>, model: &Model, node: &NodeView) {
    // Even with `externalTrafficPolicy: Local`, the cluster endpoints
    // serve the short-circuit of pod and node traffic to external
    // addresses (`UsesClusterEndpoints`).
    let uses_cluster = !p.internal_local() || p.externally_accessible();
    let uses_local = p.internal_local() || p.external_local();
    let is_local = |b: &Backend| node.local_pods.contains(&model.pods[b.pod].key());
    if uses_local {
        p.local = all.iter().filter(|b| is_local(b)).cloned().collect();
    }
    if uses_cluster {
        p.cluster = all;
    }
    let mut reachable = p.cluster.clone();
    for b in &p.local {
        if !reachable.contains(b) {
            reachable.push(b.clone());
        }
    }
    p.reachable = reachable;
}

/// Lower-case protocol, as kube-proxy writes it.
fn proto_name(p: bulkhead_policy::model::Protocol) -> &'static str {
    match p {
        bulkhead_policy::model::Protocol::Tcp => "tcp",
        bulkhead_policy::model::Protocol::Udp => "udp",
        bulkhead_policy::model::Protocol::Sctp => "sctp",
    }
}

/// SHA-256 of `text`, base32 (standard alphabet), its first `n` characters:
/// kube-proxy's chain name hash.
pub fn hash_prefix(text: &str, n: usize) -> String {
    let digest = Sha256::digest(text.as_bytes());
    let mut s = BASE32.encode(&digest);
    s.truncate(n);
    s
}

/// The addresses of node `index` of a lab, where its NodePorts are
/// reached: its fabric addresses (labs of several nodes), else the
/// gateway addresses every pod's veth carries on it (one node).
pub fn node_addresses(state: &super::state::LabState, index: usize) -> Vec<IpAddr> {
    crate::nodes::node_addresses(&state.nodes[index], &state.gateways)
}

/// What kube-proxy knows of node `index` of lab `state`.
pub fn node_view(state: &super::state::LabState, index: usize) -> NodeView {
    NodeView {
        name: state.nodes[index].name.clone(),
        addresses: node_addresses(state, index),
        local_pods: state
            .hosts
            .iter()
            .filter(|h| !h.external && h.node == index)
            .map(|h| h.name.clone())
            .collect(),
        pod_cidrs: state
            .pod_cidrs
            .iter()
            .filter_map(|c| c.parse().ok())
            .collect(),
        // `lab up` sets it on every node (see `setup::NODE_SYSCTLS`).
        conntrack_tcp_liberal: true,
    }
}
