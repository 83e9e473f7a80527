//! Internet-facing workloads: the pods a Service of type LoadBalancer or
//! NodePort (or with externalIPs) selects, and those behind a Service an
//! Ingress routes to. Clients outside the cluster are not the few seen in
//! a window, so each *observed* ingress port of such a workload that is a
//! target port of one of those Services (named target ports resolved on
//! the pods' container ports, as the endpoints controller does) is opened
//! to every external address: `ipBlock 0.0.0.0/0` (and `::/0` where the
//! cluster has IPv6) in place of the observed external addresses on it.
//! Observed pod peers on that port stay as observed. With
//! `--keep-observed-sources` only the observed sources are kept.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnetwork::IpNetwork;
use serde::Serialize;

use super::rules::PeerAcc;
use super::{PeerSel, Workloads};
use crate::edge::WorkloadId;
use bulkhead_policy::model::{IngressPort, Model, Protocol, Service, ServicePort, ServiceType};

/// What the proof says about one internet-facing workload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InternetFacing {
    /// `namespace/Kind/name`.
    pub workload: String,
    /// What makes it internet-facing: `ns/name (LoadBalancer)`, `ns/name
    /// (Ingress ns/ing)`, ...
    pub services: Vec<String>,
    /// Its observed ingress ports that a Service targets (`TCP/8080`).
    pub ports: Vec<String>,
    /// Whether those ports are open to all external addresses (false with
    /// `--keep-observed-sources`).
    pub open_to_all: bool,
}

/// The internet-facing workloads of a model, and the ports opened.
#[derive(Clone, Debug, Default)]
pub struct Exposure {
    /// Per workload, per target (protocol, port): what exposes it.
    pub by_workload: BTreeMap<WorkloadId, BTreeMap<(Protocol, u16), BTreeSet<String>>>,
    /// Whether the cluster has IPv6 (a pod's or a Service's address).
    pub ipv6: bool,
    /// Only observed sources (`--keep-observed-sources`).
    pub keep_observed_sources: bool,
    /// Ports seen at each workload (filled while proposing).
    opened: BTreeMap<WorkloadId, BTreeSet<(Protocol, u16)>>,
}

impl Exposure {
    /// The internet-facing workloads of `model` (indexed by `index`).
    pub fn new(model: &Model, index: &Workloads, keep_observed_sources: bool) -> Self {
        let mut workload_of: HashMap<usize, &WorkloadId> = HashMap::new();
        for (w, pods) in &index.pods {
            for &p in pods {
                workload_of.insert(p, w);
            }
        }
        let mut out = Exposure {
            ipv6: model.pods.iter().flat_map(|p| &p.ips).any(|a| a.is_ipv6())
                || model
                    .services
                    .iter()
                    .flat_map(|s| &s.cluster_ips)
                    .any(|a| a.is_ipv6()),
            keep_observed_sources,
            ..Exposure::default()
        };
        let mut expose = |s: &Service, port: &ServicePort, why: String| {
            for (i, pod) in model.pods.iter().enumerate() {
                if !s.selects(pod) {
                    continue;
                }
                let (Some(target), Some(w)) = (s.target_port_on(port, pod), workload_of.get(&i))
                else {
                    continue;
                };
                out.by_workload
                    .entry((*w).clone())
                    .or_default()
                    .entry((port.protocol, target))
                    .or_default()
                    .insert(why.clone());
            }
        };
        for s in &model.services {
            let kind = match s.kind {
                ServiceType::LoadBalancer | ServiceType::NodePort => s.kind.as_str(),
                _ if !s.external_ips.is_empty() => "externalIPs",
                _ => continue,
            };
            for port in &s.ports {
                expose(s, port, format!("{} ({kind})", s.key()));
            }
        }
        for ing in &model.ingresses {
            for b in &ing.backends {
                let Some(s) = model.service(&format!("{}/{}", ing.namespace, b.service)) else {
                    continue;
                };
                for port in s.ports.iter().filter(|p| match &b.port {
                    IngressPort::Number(n) => p.port == *n,
                    IngressPort::Name(n) => p.name.as_deref() == Some(n.as_str()),
                }) {
                    expose(s, port, format!("{} (Ingress {})", s.key(), ing.key()));
                }
            }
        }
        out
    }

    /// What exposes `w`'s (protocol, port), if anything.
    pub fn exposed(
        &self,
        w: &WorkloadId,
        protocol: Protocol,
        port: u16,
    ) -> Option<&BTreeSet<String>> {
        self.by_workload.get(w)?.get(&(protocol, port))
    }

    /// If `w`'s (protocol, port) is exposed: records that it was seen,
    /// and (unless `--keep-observed-sources`) adds the blocks of all
    /// external addresses on it to `peers` (the subject's ingress).
    pub(super) fn open(
        &mut self,
        w: &WorkloadId,
        protocol: Protocol,
        port: u16,
        peers: &mut BTreeMap<PeerSel, PeerAcc>,
    ) {
        if self.exposed(w, protocol, port).is_none() {
            return;
        }
        self.opened
            .entry(w.clone())
            .or_default()
            .insert((protocol, port));
        if self.keep_observed_sources {
            return;
        }
        let mut blocks = vec![self.all_of_family(true)];
        if self.ipv6 {
            blocks.push(self.all_of_family(false));
        }
        for net in blocks {
            let q = peers.entry(PeerSel::Cidr(net)).or_default();
            q.ports.insert((protocol, port));
            q.notes.insert(self.note(w, protocol, port));
        }
    }

    /// All addresses of a family (`0.0.0.0/0` or `::/0`): what an external
    /// source of an exposed port is replaced by.
    pub fn all_of_family(&self, v4: bool) -> IpNetwork {
        let any = if v4 {
            Ipv4Addr::UNSPECIFIED.into()
        } else {
            Ipv6Addr::UNSPECIFIED.into()
        };
        IpNetwork::new(any, 0).expect("a /0")
    }

    /// The comment on the opened block of `w`'s (protocol, port).
    pub fn note(&self, w: &WorkloadId, protocol: Protocol, port: u16) -> String {
        let by: Vec<&str> = self
            .exposed(w, protocol, port)
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        format!(
            "internet-facing: {protocol}/{port} is a target port of {}: open to all \
             external addresses (--keep-observed-sources keeps only those seen)",
            by.join(", ")
        )
    }

    /// The proof's lines, one per internet-facing workload.
    pub fn findings(&self) -> Vec<InternetFacing> {
        self.by_workload
            .iter()
            .map(|(w, ports)| {
                let services: BTreeSet<&String> = ports.values().flatten().collect();
                let opened = self.opened.get(w);
                let ports: Vec<String> = ports
                    .keys()
                    .filter(|p| opened.is_some_and(|o| o.contains(p)))
                    .map(|(p, n)| format!("{p}/{n}"))
                    .collect();
                InternetFacing {
                    workload: w.to_string(),
                    services: services.into_iter().cloned().collect(),
                    open_to_all: !self.keep_observed_sources && !ports.is_empty(),
                    ports,
                }
            })
            .collect()
    }
}
