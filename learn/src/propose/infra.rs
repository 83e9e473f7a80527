//! Infrastructure a proposal must not break: DNS servers, the control
//! plane (the API server's addresses), and the nodes.
//!
//! - **DNS servers**: workloads whose pods carry `k8s-app=kube-dns` (the
//!   label kube-dns and CoreDNS both use) or that `--dns-server
//!   NAMESPACE/LABEL=VALUE` names. A DNS server's policy allows ingress
//!   from every pod of every namespace on UDP and TCP 53 (plus its other
//!   observed ingress) and has no egress section, so its egress (upstream
//!   resolvers, the API server) is left as it is. Every other proposed
//!   policy's egress allows DNS to it, seen resolving or not: a pod's cache
//!   expires, and a pod outside the window resolves too.
//! - **Control plane**: the `default/kubernetes` Service's ClusterIPs (the
//!   model has no EndpointSlices, so its endpoints are not known from the
//!   manifests) and `--api-server CIDR`. An observed edge with an end
//!   there is never left out by a threshold ([`Infra::is_control_plane`]).
//! - **Nodes**: addresses of the model's nodes (and the enforcing node's).
//!   The evaluator and the dataplane let a pod's ingress from its *own*
//!   node through whatever policy says (kubelet's probes), but judge
//!   traffic from other nodes (a NodePort masqueraded on another node, a
//!   hostNetwork pod there) and egress to any node by policy. A workload's
//!   edge does not say which of its pods (so which node) it reached, so an
//!   observed node address stays an `ipBlock`, marked as a node's.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnetwork::IpNetwork;
use serde::Serialize;

use super::exposure::Exposure;
use super::rules::PeerAcc;
use super::{DNS_PORT, PeerSel, ProposedPolicy, Workloads};
use crate::edge::{EdgeKey, End, History, WorkloadId};
use bulkhead_policy::model::{Direction, Labels, Model, Protocol};

/// The label kube-dns and CoreDNS pods carry.
pub const DNS_LABEL: (&str, &str) = ("k8s-app", "kube-dns");

/// The Service whose addresses are the API server's.
pub const API_SERVICE: &str = "default/kubernetes";

/// `--dns-server NAMESPACE/LABEL=VALUE`: the pods of a namespace with a
/// label are a DNS server.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DnsServerSpec {
    /// Namespace.
    pub namespace: String,
    /// Label key.
    pub key: String,
    /// Label value.
    pub value: String,
}

/// Why a `--dns-server` value is not `NAMESPACE/LABEL=VALUE`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not NAMESPACE/LABEL=VALUE (e.g. kube-system/k8s-app=kube-dns)")]
pub struct BadDnsServer(pub String);

impl FromStr for DnsServerSpec {
    type Err = BadDnsServer;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadDnsServer(s.to_owned());
        let (namespace, label) = s.split_once('/').ok_or_else(bad)?;
        let (key, value) = label.split_once('=').ok_or_else(bad)?;
        if namespace.is_empty() || key.is_empty() || namespace.contains('=') {
            return Err(bad());
        }
        Ok(DnsServerSpec {
            namespace: namespace.to_owned(),
            key: key.to_owned(),
            value: value.to_owned(),
        })
    }
}

impl fmt::Display for DnsServerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}={}", self.namespace, self.key, self.value)
    }
}

impl DnsServerSpec {
    fn matches(&self, namespace: &str, labels: &Labels) -> bool {
        namespace == self.namespace && labels.get(&self.key) == Some(&self.value)
    }
}

/// What the user says about the cluster's infrastructure.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InfraOptions {
    /// `--dns-server`: DNS servers besides those labelled
    /// [`DNS_LABEL`].
    pub dns_servers: Vec<DnsServerSpec>,
    /// `--api-server`: the API server's addresses besides the
    /// [`API_SERVICE`] Service's.
    pub api_servers: Vec<IpNetwork>,
    /// `--keep-observed-sources`: an internet-facing workload's ports keep
    /// their observed sources (see [`super::exposure`]).
    pub keep_observed_sources: bool,
}

/// An infrastructure workload's or address's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A DNS server.
    DnsServer,
    /// The API server.
    ApiServer,
}

/// What the proposal did about one infrastructure workload or address.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct InfraFinding {
    /// `namespace/Kind/name`, or an address or CIDR.
    pub workload: String,
    /// Its role.
    pub role: Role,
    /// What the proposal did, and why.
    pub note: String,
}

/// The infrastructure of a model and history.
#[derive(Clone, Debug, Default)]
pub struct Infra {
    /// DNS server workloads, with why each is one.
    pub dns: BTreeMap<WorkloadId, String>,
    /// The API server's addresses, with where each is from.
    pub api: Vec<(IpNetwork, String)>,
    /// Node addresses, with the node's name.
    pub nodes: BTreeMap<IpAddr, String>,
}

impl Infra {
    /// Finds the infrastructure of `model` (indexed by `index`) and
    /// `history` as `options` add to it.
    pub fn new(
        model: &Model,
        history: &History,
        index: &Workloads,
        options: &InfraOptions,
    ) -> Self {
        let mut dns = BTreeMap::new();
        let why = |namespace: &str, labels: &Labels| -> Option<String> {
            if labels.get(DNS_LABEL.0).map(String::as_str) == Some(DNS_LABEL.1) {
                return Some(format!("label {}={}", DNS_LABEL.0, DNS_LABEL.1));
            }
            options
                .dns_servers
                .iter()
                .find(|s| s.matches(namespace, labels))
                .map(|s| format!("--dns-server {s}"))
        };
        let mut sorted: Vec<(&WorkloadId, &Vec<usize>)> = index.pods.iter().collect();
        sorted.sort();
        for (id, pods) in sorted {
            if let Some(w) = pods
                .iter()
                .find_map(|&i| why(&model.pods[i].namespace, &model.pods[i].labels))
            {
                dns.insert(id.clone(), w);
            }
        }
        for (id, info) in &history.workloads {
            if !index.pods.contains_key(id)
                && let Some(w) = why(&id.namespace, &info.labels)
            {
                dns.insert(id.clone(), w);
            }
        }
        let mut api: Vec<(IpNetwork, String)> = model
            .service(API_SERVICE)
            .into_iter()
            .flat_map(|s| &s.cluster_ips)
            .map(|a| {
                (
                    IpNetwork::from(*a),
                    format!("ClusterIP of Service {API_SERVICE}"),
                )
            })
            .collect();
        api.extend(
            options
                .api_servers
                .iter()
                .map(|n| (*n, "--api-server".to_owned())),
        );
        api.sort();
        api.dedup_by(|a, b| a.0 == b.0);
        let mut nodes = BTreeMap::new();
        for n in &model.nodes {
            for a in &n.addresses {
                nodes.insert(*a, format!("node {}", n.name));
            }
        }
        for a in &model.node_ips {
            nodes
                .entry(*a)
                .or_insert_with(|| "the enforcing node".to_owned());
        }
        Infra { dns, api, nodes }
    }

    /// Why `w` is a DNS server, if it is one.
    pub fn dns_server(&self, w: &WorkloadId) -> Option<&str> {
        self.dns.get(w).map(String::as_str)
    }

    /// Where the API server address `a` is known from, if it is one.
    pub fn api_server(&self, a: IpAddr) -> Option<&str> {
        self.api
            .iter()
            .find(|(n, _)| n.contains(a))
            .map(|(_, why)| why.as_str())
    }

    /// Whether an end of `key` is the API server: such an edge is never
    /// left out by a threshold or a filter.
    pub fn is_control_plane(&self, key: &EdgeKey) -> bool {
        [&key.src, &key.dst]
            .into_iter()
            .any(|e| matches!(e, End::External(a) if self.api_server(*a).is_some()))
    }

    /// The comment on a peer at external address `a`, if it is
    /// infrastructure.
    pub fn address_note(&self, a: IpAddr) -> Option<String> {
        if let Some(why) = self.api_server(a) {
            return Some(format!(
                "control plane: the API server ({why}); kept whatever the thresholds"
            ));
        }
        self.nodes.get(&a).map(|node| {
            format!(
                "{node}'s address: a pod's own node is always let in, but this edge may \
                 come from another node (or go to one), which policy judges"
            )
        })
    }

    /// The comment on the DNS egress peer of every other policy.
    pub fn dns_egress_note(&self, w: &WorkloadId) -> String {
        format!(
            "DNS for all pods: DNS server {w} ({}) on UDP and TCP 53, allowed whether or \
             not this workload was seen resolving (caches expire)",
            self.dns[w]
        )
    }

    /// The comment on a DNS server's ingress peer of all pods.
    pub fn dns_ingress_note(&self, w: &WorkloadId) -> String {
        format!(
            "DNS server ({}): every pod of every namespace may resolve on UDP and TCP 53",
            self.dns[w]
        )
    }

    /// The comment on a DNS server's policy.
    pub fn dns_header(&self, w: &WorkloadId) -> String {
        format!(
            "DNS server ({}): ingress from all pods on 53; no egress section, so its \
             egress (upstream resolvers, the API server) is left as it is",
            self.dns[w]
        )
    }

    /// The proof's lines: each DNS server and API server address, with
    /// what the proposal did. `policies` are the proposed ones (a DNS
    /// server's is ingress-only); `dns_to_all`: whether the others allow
    /// DNS to the servers; `history` gives the control-plane edges.
    pub fn findings(
        &self,
        policies: &[ProposedPolicy],
        dns_to_all: bool,
        history: &History,
    ) -> Vec<InfraFinding> {
        let proposed: Vec<&WorkloadId> = policies
            .iter()
            .filter(|p| p.ingress_only)
            .map(|p| &p.subject)
            .collect();
        let dns_clients = if dns_to_all {
            policies.len() - proposed.len()
        } else {
            0
        };
        let mut out = Vec::new();
        for (w, why) in &self.dns {
            let own = if proposed.contains(&w) {
                "its policy allows ingress from all pods of all namespaces on UDP and TCP 53 \
                 and has no egress section (its upstream resolvers and the API server stay \
                 reachable)"
            } else {
                "no policy proposed for it (not seen as a local endpoint with stable labels)"
            };
            out.push(InfraFinding {
                workload: w.to_string(),
                role: Role::DnsServer,
                note: format!(
                    "{why}: {own}; {dns_clients} other proposed policies allow DNS to it \
                     whether or not their pods were seen resolving"
                ),
            });
        }
        for (net, why) in &self.api {
            let edges = history
                .edges
                .keys()
                .filter(|k| {
                    [&k.src, &k.dst]
                        .into_iter()
                        .any(|e| matches!(e, End::External(a) if net.contains(*a)))
                })
                .count();
            let workload = if net.prefix() == if net.is_ipv4() { 32 } else { 128 } {
                net.ip().to_string()
            } else {
                net.to_string()
            };
            out.push(InfraFinding {
                workload,
                role: Role::ApiServer,
                note: format!(
                    "control plane ({why}): {edges} observed edges with it, proposed \
                     whatever the thresholds"
                ),
            });
        }
        out
    }
}

/// The selector of an observed peer of `subject`'s direction `dir`,
/// widened where the infrastructure asks (a DNS server's pod clients: all
/// pods; an internet-facing port's external sources: all addresses), and
/// the comment that says why.
#[allow(clippy::too_many_arguments)]
pub(super) fn widen(
    infra: &Infra,
    exposure: &Exposure,
    subject: &WorkloadId,
    dir: Direction,
    peer: &End,
    protocol: Protocol,
    port: u16,
    sel: PeerSel,
) -> (PeerSel, Option<String>) {
    let ingress = dir == Direction::Ingress;
    match peer {
        End::Workload(_)
            if ingress
                && port == DNS_PORT
                && matches!(protocol, Protocol::Udp | Protocol::Tcp)
                && infra.dns_server(subject).is_some() =>
        {
            (PeerSel::AllPods, Some(infra.dns_ingress_note(subject)))
        }
        End::External(a)
            if ingress
                && !exposure.keep_observed_sources
                && exposure.exposed(subject, protocol, port).is_some() =>
        {
            (
                PeerSel::Cidr(exposure.all_of_family(a.is_ipv4())),
                Some(exposure.note(subject, protocol, port)),
            )
        }
        End::External(a) => (sel, infra.address_note(*a)),
        End::Workload(_) => (sel, None),
    }
}

/// Adds what the infrastructure asks of `subject`'s policy to its peers
/// (`dirs`, by direction): a DNS server's ingress from all pods on 53, or
/// every other policy's egress to each DNS server (`dns`: the servers and
/// their selectors) on 53. `open(src, dst, side)`: whether NetworkPolicy
/// decides DNS from workload `src` to `dst` on `side` (no cluster-admin
/// tier decides it first, see [`crate::tiers`]); a DNS server gets all
/// pods if it does for any of `workloads`.
pub(super) fn add_dns(
    infra: &Infra,
    subject: &WorkloadId,
    dns: &[(WorkloadId, PeerSel)],
    workloads: &[&WorkloadId],
    open: &dyn Fn(&WorkloadId, &WorkloadId, Direction) -> bool,
    dirs: &mut [BTreeMap<PeerSel, PeerAcc>; 2],
) {
    let dns_ports = [(Protocol::Tcp, DNS_PORT), (Protocol::Udp, DNS_PORT)];
    let mut add = |d: Direction, sel: PeerSel, note: String| {
        let acc = dirs[d as usize].entry(sel).or_default();
        acc.ports.extend(dns_ports);
        acc.notes.insert(note);
    };
    if infra.dns_server(subject).is_some() {
        if workloads
            .iter()
            .any(|w| open(w, subject, Direction::Ingress))
        {
            add(
                Direction::Ingress,
                PeerSel::AllPods,
                infra.dns_ingress_note(subject),
            );
        }
        return;
    }
    for (w, sel) in dns {
        if open(subject, w, Direction::Egress) {
            add(Direction::Egress, sel.clone(), infra.dns_egress_note(w));
        }
    }
}
