//! Services (core/v1 `Service`): the frontends kube-proxy translates
//! (ClusterIPs, NodePorts, external and load-balancer addresses) and the
//! pods behind them.
//!
//! Bulkhead never translates a Service itself: the node's kube-proxy
//! (iptables, nftables or IPVS mode) does, and the dataplane judges a
//! connection to a frontend on the backend the node sends it to. What the
//! dataplane needs from this module is only the set of frontends (so it
//! knows which destinations the node will translate); the backends serve
//! `explain`, the flow records' names and the lab's kube-proxy rules.

use std::fmt;
use std::net::IpAddr;

use super::{Labels, Model, Origin, Pod, Protocol};

/// `spec.type`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServiceType {
    /// `ClusterIP` (the default).
    #[default]
    ClusterIp,
    /// `NodePort`: ClusterIP plus a port on every node's addresses.
    NodePort,
    /// `LoadBalancer`: NodePort plus the load balancer's addresses
    /// (`status.loadBalancer.ingress[].ip`).
    LoadBalancer,
    /// `ExternalName`: a DNS alias; nothing is translated.
    ExternalName,
}

impl ServiceType {
    /// Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClusterIp => "ClusterIP",
            Self::NodePort => "NodePort",
            Self::LoadBalancer => "LoadBalancer",
            Self::ExternalName => "ExternalName",
        }
    }
}

/// `spec.externalTrafficPolicy` / `spec.internalTrafficPolicy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TrafficPolicy {
    /// `Cluster` (the default): any ready backend; external traffic is
    /// masqueraded to the node's address.
    #[default]
    Cluster,
    /// `Local`: only backends on the receiving node; external traffic
    /// keeps its source address.
    Local,
}

/// An address family (`spec.ipFamilies` entries).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IpFamily {
    /// `IPv4`.
    V4,
    /// `IPv6`.
    V6,
}

impl IpFamily {
    /// The family of `addr`.
    pub fn of(addr: IpAddr) -> Self {
        if addr.is_ipv4() { Self::V4 } else { Self::V6 }
    }

    /// Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V4 => "IPv4",
            Self::V6 => "IPv6",
        }
    }

    /// The other family.
    pub fn other(self) -> Self {
        match self {
            Self::V4 => Self::V6,
            Self::V6 => Self::V4,
        }
    }
}

/// `spec.ipFamilyPolicy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IpFamilyPolicy {
    /// `SingleStack` (the default when one family or address is given).
    #[default]
    SingleStack,
    /// `PreferDualStack`: both families where the cluster has both.
    PreferDualStack,
    /// `RequireDualStack`: both families (the default when two are given).
    RequireDualStack,
}

impl IpFamilyPolicy {
    /// Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SingleStack => "SingleStack",
            Self::PreferDualStack => "PreferDualStack",
            Self::RequireDualStack => "RequireDualStack",
        }
    }
}

/// `spec.sessionAffinity` (with `spec.sessionAffinityConfig`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SessionAffinity {
    /// `None` (the default): each connection picks a backend.
    #[default]
    None,
    /// `ClientIP`: a client address sticks to one backend.
    ClientIp {
        /// `sessionAffinityConfig.clientIP.timeoutSeconds` (default 10800).
        timeout_seconds: u32,
    },
}

/// A Service port's `targetPort`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TargetPort {
    /// A port number.
    Number(u16),
    /// A container port name, resolved on each backend pod for the
    /// Service port's protocol.
    Name(String),
}

/// One entry of `spec.ports`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServicePort {
    /// `name` (required by the API when there are several ports).
    pub name: Option<String>,
    /// `protocol` (default TCP).
    pub protocol: Protocol,
    /// `port`: the frontend port on ClusterIPs, external and
    /// load-balancer addresses.
    pub port: u16,
    /// `targetPort` (default: the same number as `port`).
    pub target_port: TargetPort,
    /// `nodePort` (NodePort and LoadBalancer Services, when allocated).
    pub node_port: Option<u16>,
}

/// A Service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Service {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `spec.type`.
    pub kind: ServiceType,
    /// `spec.selector`; `None` when it has none (its endpoints are managed
    /// by hand or by another controller, not by the selector).
    pub selector: Option<Labels>,
    /// `spec.clusterIPs` (or `spec.clusterIP`), one per family; empty for a
    /// headless Service (`None`) and for ExternalName. In manifests without
    /// one, assigned from the Service CIDRs (see [`super::addressing`]).
    pub cluster_ips: Vec<IpAddr>,
    /// `spec.clusterIP: None`: headless (clients reach the pods directly).
    pub headless: bool,
    /// `spec.ipFamilies`: the families of `cluster_ips`, in their order
    /// (as the API server completes them); for a headless Service the
    /// families its DNS records carry.
    pub ip_families: Vec<IpFamily>,
    /// `spec.ipFamilyPolicy` (defaulted as the API server does).
    pub ip_family_policy: IpFamilyPolicy,
    /// `spec.ports`.
    pub ports: Vec<ServicePort>,
    /// `spec.externalIPs`.
    pub external_ips: Vec<IpAddr>,
    /// `status.loadBalancer.ingress[].ip`.
    pub load_balancer_ips: Vec<IpAddr>,
    /// `spec.externalTrafficPolicy`.
    pub external_traffic_policy: TrafficPolicy,
    /// `spec.internalTrafficPolicy`.
    pub internal_traffic_policy: TrafficPolicy,
    /// `spec.sessionAffinity`.
    pub session_affinity: SessionAffinity,
    /// `spec.externalName` (ExternalName Services).
    pub external_name: Option<String>,
    /// `spec.allocateLoadBalancerNodePorts: false` (LoadBalancer
    /// Services): ports without a `nodePort` get none.
    pub skip_node_ports: bool,
    /// Where it was read from.
    pub origin: Origin,
}

/// An address and port the node translates to a Service's backends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Frontend {
    /// The address (a ClusterIP, a node address for a NodePort, an
    /// external or load-balancer address).
    pub addr: IpAddr,
    /// The protocol.
    pub protocol: Protocol,
    /// The port (the Service port, or the NodePort on node addresses).
    pub port: u16,
}

/// A pod behind a Service port: the address and target port the node
/// translates a connection to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Backend {
    /// Index of the pod in [`Model::pods`].
    pub pod: usize,
    /// The pod's address (of the frontend's family).
    pub addr: IpAddr,
    /// The resolved target port.
    pub port: u16,
}

impl Service {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Every frontend of the Service that kube-proxy translates, given the
    /// addresses of the node it runs on (NodePorts listen on them):
    /// ClusterIPs, external and load-balancer addresses on each Service
    /// port, node addresses on each NodePort. Headless and ExternalName
    /// Services have none.
    pub fn frontends(&self, node_ips: &[IpAddr]) -> Vec<Frontend> {
        if self.headless || self.kind == ServiceType::ExternalName {
            return Vec::new();
        }
        let mut out = Vec::new();
        for port in &self.ports {
            let on_port = self
                .cluster_ips
                .iter()
                .chain(&self.external_ips)
                .chain(&self.load_balancer_ips);
            out.extend(on_port.map(|&addr| Frontend {
                addr,
                protocol: port.protocol,
                port: port.port,
            }));
            if let Some(node_port) = port.node_port {
                out.extend(node_ips.iter().map(|&addr| Frontend {
                    addr,
                    protocol: port.protocol,
                    port: node_port,
                }));
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Whether `pod` is a backend by the selector (same namespace, labels
    /// match). A Service without a selector selects no pod.
    pub fn selects(&self, pod: &Pod) -> bool {
        pod.namespace == self.namespace
            && self
                .selector
                .as_ref()
                .is_some_and(|sel| sel.iter().all(|(k, v)| pod.labels.get(k) == Some(v)))
    }

    /// The target port `port` resolves to on `pod`: the number, or the
    /// pod's container port of that name and protocol (`None`: the pod
    /// declares no such port, so the endpoints controller leaves it out).
    pub fn target_port_on(&self, port: &ServicePort, pod: &Pod) -> Option<u16> {
        match &port.target_port {
            TargetPort::Number(n) => Some(*n),
            TargetPort::Name(name) => pod.named_port(name, port.protocol),
        }
    }
}

impl Model {
    /// Finds a Service by `namespace/name`.
    pub fn service(&self, key: &str) -> Option<&Service> {
        let (ns, name) = key.split_once('/')?;
        self.services
            .iter()
            .find(|s| s.namespace == ns && s.name == name)
    }

    /// The Service and port the node translates a connection to
    /// `addr`:`port`/`protocol` for (a frontend, with NodePorts on
    /// [`Model::node_ips`]).
    pub fn frontend(
        &self,
        addr: IpAddr,
        protocol: Protocol,
        port: u16,
    ) -> Option<(&Service, &ServicePort)> {
        let on_node = self.node_ips.contains(&addr);
        // As [`Service::frontends`]: headless and ExternalName Services
        // translate nothing.
        self.services
            .iter()
            .filter(|s| !s.headless && s.kind != ServiceType::ExternalName)
            .find_map(|s| {
                let own = s
                    .cluster_ips
                    .iter()
                    .chain(&s.external_ips)
                    .chain(&s.load_balancer_ips)
                    .any(|a| *a == addr);
                let p = s.ports.iter().find(|p| {
                    p.protocol == protocol
                        && ((own && p.port == port) || (on_node && p.node_port == Some(port)))
                })?;
                Some((s, p))
            })
    }

    /// Whether `addr` is one of a Service's own addresses (a ClusterIP,
    /// an external or load-balancer address).
    pub fn is_service_address(&self, addr: IpAddr) -> bool {
        self.services.iter().any(|s| {
            s.cluster_ips
                .iter()
                .chain(&s.external_ips)
                .chain(&s.load_balancer_ips)
                .any(|a| *a == addr)
        })
    }

    /// The backends of `service`'s `port` of `addr`'s family, as the
    /// endpoints controller computes them from the selector: pods of the
    /// Service's namespace whose labels match, with an address of that
    /// family and the target port resolved on them; in pod order.
    pub fn service_backends(
        &self,
        service: &Service,
        port: &ServicePort,
        v4: bool,
    ) -> Vec<Backend> {
        self.pods
            .iter()
            .enumerate()
            .filter(|(_, pod)| service.selects(pod))
            .filter_map(|(i, pod)| {
                let addr = *pod.ips.iter().find(|ip| ip.is_ipv4() == v4)?;
                let port = service.target_port_on(port, pod)?;
                Some(Backend { pod: i, addr, port })
            })
            .collect()
    }
}

impl fmt::Display for Frontend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr {
            IpAddr::V4(a) => write!(f, "{a}:{}/{}", self.port, self.protocol),
            IpAddr::V6(a) => write!(f, "[{a}]:{}/{}", self.port, self.protocol),
        }
    }
}
