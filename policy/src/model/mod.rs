//! What Bulkhead knows about a cluster: namespaces, pods, NetworkPolicies
//! and Services, validated. Sources (manifest directory, later the Kubernetes API) build it;
//! the compiler reads it.

pub mod addressing;
pub mod admin;
pub mod ingress;
pub mod mode;
pub mod policy;
pub mod quarantine;
pub mod selector;
pub mod service;

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;

use bulkhead_common::{PROTO_SCTP, PROTO_TCP, PROTO_UDP};

pub use admin::{Action, AdminKind, AdminPeer, AdminPolicy, AdminRule, Node, Subject, Tier};
pub use ingress::{Ingress, IngressBackend, IngressPort};
pub use mode::{MODE_ANNOTATION, Mode, UnknownMode};
pub use policy::{Direction, IpBlock, NamespaceScope, Peer, Policy, PortMatch, PortSpec, Rule};
pub use quarantine::{QUARANTINE_LABEL, Quarantine};
pub use selector::{Labels, Requirement, Selector};
pub use service::{
    Backend, Frontend, IpFamily, IpFamilyPolicy, Service, ServicePort, ServiceType,
    SessionAffinity, TargetPort, TrafficPolicy,
};

/// The label every namespace carries with its own name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Where an object was read from.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Origin {
    /// A document of a manifest file.
    File {
        /// The file.
        file: PathBuf,
        /// Index of the YAML document in the file (0 for JSON).
        document: usize,
    },
    /// The Kubernetes API (the object's kind, namespace and name say which).
    KubernetesApi,
}

impl Default for Origin {
    fn default() -> Self {
        Self::File {
            file: PathBuf::new(),
            document: 0,
        }
    }
}

impl Origin {
    /// A document of a manifest file.
    pub fn file(file: impl Into<PathBuf>, document: usize) -> Self {
        Self::File {
            file: file.into(),
            document,
        }
    }

    /// The manifest file, if read from one.
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            Self::File { file, .. } => Some(file),
            Self::KubernetesApi => None,
        }
    }

    /// The document's index in its file, if read from one.
    pub fn document(&self) -> Option<usize> {
        match self {
            Self::File { document, .. } => Some(*document),
            Self::KubernetesApi => None,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File { file, document } => {
                write!(f, "{} (document {})", file.display(), document + 1)
            }
            Self::KubernetesApi => f.write_str("the Kubernetes API"),
        }
    }
}

/// A transport protocol that NetworkPolicy ports can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// The three, in output order.
    pub const ALL: [Protocol; 3] = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp];

    /// Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }

    /// IANA protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => PROTO_TCP,
            Protocol::Udp => PROTO_UDP,
            Protocol::Sctp => PROTO_SCTP,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error for a protocol name that is not TCP, UDP or SCTP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown protocol {0:?} (expected TCP, UDP or SCTP)")]
pub struct UnknownProtocol(pub String);

impl FromStr for Protocol {
    type Err = UnknownProtocol;
    /// Case-insensitive, as users type it on the command line; manifests are
    /// checked case-sensitively by the loader.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "TCP" => Ok(Protocol::Tcp),
            "UDP" => Ok(Protocol::Udp),
            "SCTP" => Ok(Protocol::Sctp),
            _ => Err(UnknownProtocol(s.to_string())),
        }
    }
}

/// A namespace and its labels (always including [`NAMESPACE_NAME_LABEL`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespace {
    /// Name.
    pub name: String,
    /// Labels.
    pub labels: Labels,
    /// Where it was declared; `None` if it exists only because something
    /// lives in it.
    pub origin: Option<Origin>,
    /// Mode of its policies that set none themselves (annotation
    /// [`MODE_ANNOTATION`]); `None`: the model's default.
    pub mode: Option<Mode>,
}

/// A declared container port.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerPort {
    /// Port name, if any.
    pub name: Option<String>,
    /// Port number.
    pub port: u16,
    /// Protocol (defaults to TCP).
    pub protocol: Protocol,
}

/// The kind of object a pod stands for.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Workload {
    /// `Pod`, `Deployment`, `StatefulSet`, ...
    pub kind: String,
    /// The object's name.
    pub name: String,
}

/// A pod: a Pod object, or the one pod a workload object stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pod {
    /// Namespace.
    pub namespace: String,
    /// Name: the Pod's, or the workload's.
    pub name: String,
    /// The object it came from (kind `Pod` for a Pod object).
    pub source: Workload,
    /// The controlling owner of a Pod object (`ownerReferences` with
    /// `controller: true`), if any.
    pub owner: Option<Workload>,
    /// Labels (of the pod template for workloads).
    pub labels: Labels,
    /// Container ports of all containers.
    pub ports: Vec<ContainerPort>,
    /// Addresses: from `status.podIP(s)`, or assigned (see [`addressing`]).
    pub ips: Vec<IpAddr>,
    /// How strongly it holds its status addresses when another pod claims
    /// one too (churn): see [`addressing`].
    pub claim: AddressClaim,
    /// The node it is scheduled on (`spec.nodeName` of a Pod object), if
    /// known: an agent enforces only its own node's pods; the others are
    /// identities.
    pub node: Option<String>,
    /// Why the pod has no address of its own on the pod network, if so
    /// (the agent leaves such pods out: [`Model::drop_off_network_pods`]).
    pub off_network: Option<OffNetwork>,
    /// Where it was read from.
    pub origin: Origin,
}

/// Why a pod has no address of its own on the pod network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OffNetwork {
    /// `spec.hostNetwork`: it carries its node's addresses.
    HostNetwork,
    /// `status.phase` Succeeded or Failed: it ended, and its address may
    /// already be another pod's.
    Ended,
}

impl fmt::Display for OffNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::HostNetwork => "it uses the host network (hostNetwork)",
            Self::Ended => "it ended (phase Succeeded or Failed)",
        })
    }
}

/// What decides between two pods claiming one address: a running pod
/// before one that is not, then the most recently started (`Ord`: the
/// greater claim wins).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AddressClaim {
    /// `status.phase` is `Running`.
    pub running: bool,
    /// `status.startTime`, Unix seconds.
    pub started_unix: Option<i64>,
}

impl Pod {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The port number a named port resolves to on this pod, for `protocol`.
    pub fn named_port(&self, name: &str, protocol: Protocol) -> Option<u16> {
        self.ports
            .iter()
            .find(|p| p.protocol == protocol && p.name.as_deref() == Some(name))
            .map(|p| p.port)
    }
}

/// Everything loaded: namespaces by name, pods and policies sorted by
/// `namespace/name`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Model {
    /// Namespaces, declared or implied.
    pub namespaces: BTreeMap<String, Namespace>,
    /// Pods, sorted by (namespace, name).
    pub pods: Vec<Pod>,
    /// Policies, sorted by (namespace, name).
    pub policies: Vec<Policy>,
    /// Services, sorted by (namespace, name).
    pub services: Vec<Service>,
    /// Ingresses, sorted by (namespace, name).
    pub ingresses: Vec<Ingress>,
    /// Cluster-admin policies (both tiers), sorted by
    /// [`AdminPolicy::order`]: the order the tiers evaluate them in.
    pub admin_policies: Vec<AdminPolicy>,
    /// The cluster's nodes, sorted by name, as far as a source knows them
    /// (for the `nodes` peer of cluster-admin rules).
    pub nodes: Vec<Node>,
    /// Mode of policies for which neither they nor their namespace set
    /// one (the agent's `--mode`).
    pub default_mode: Mode,
    /// Addresses of the node the policy is enforced on (the agent's
    /// network namespace; none offline unless given). Kubernetes always
    /// allows a pod's ingress from its own node: kubelet's probes come
    /// from there. An address that is also a pod's stays the pod's.
    pub node_ips: Vec<IpAddr>,
    /// What the source accepted but that makes part of an object
    /// ineffective (as the Kubernetes API server accepts it too), each
    /// naming its object and field: logged and counted, never fatal.
    pub warnings: Vec<String>,
}

impl Model {
    /// Finds a pod by `namespace/name`.
    pub fn pod(&self, key: &str) -> Option<(usize, &Pod)> {
        let (ns, name) = key.split_once('/')?;
        self.pods
            .binary_search_by(|p| (p.namespace.as_str(), p.name.as_str()).cmp(&(ns, name)))
            .ok()
            .map(|i| (i, &self.pods[i]))
    }

    /// The mode `policy` takes effect in: its own, else its namespace's,
    /// else [`Self::default_mode`].
    pub fn mode_of(&self, policy: &Policy) -> Mode {
        policy
            .mode
            .or_else(|| self.namespaces.get(&policy.namespace)?.mode)
            .unwrap_or(self.default_mode)
    }

    /// The mode a cluster-admin policy takes effect in: its own, else
    /// [`Self::default_mode`].
    pub fn admin_mode_of(&self, policy: &AdminPolicy) -> Mode {
        policy.mode.unwrap_or(self.default_mode)
    }

    /// Leaves out the pods that have no address of their own on the pod
    /// network ([`OffNetwork`]): never endpoints, and as peers their
    /// addresses (their node's, or reused) match only ipBlocks. What an
    /// enforcing agent does; the offline analysis keeps them as pods, as
    /// other NetworkPolicy analyzers do. Returns how many were left out.
    pub fn drop_off_network_pods(&mut self) -> usize {
        let before = self.pods.len();
        self.pods.retain(|p| p.off_network.is_none());
        before - self.pods.len()
    }

    /// Sorts pods, policies and Services and adds implied namespaces and the name
    /// label; call after building a model by hand.
    pub fn normalize(&mut self) {
        self.pods
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        self.policies
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        self.services
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        self.ingresses
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        self.admin_policies
            .sort_by(|a, b| a.order().cmp(&b.order()));
        self.nodes.sort_by(|a, b| a.name.cmp(&b.name));
        let used = self
            .pods
            .iter()
            .map(|p| p.namespace.clone())
            .chain(self.policies.iter().map(|p| p.namespace.clone()))
            .chain(self.services.iter().map(|s| s.namespace.clone()))
            .collect::<Vec<_>>();
        for ns in used {
            self.namespaces
                .entry(ns.clone())
                .or_insert_with(|| Namespace {
                    name: ns,
                    labels: Labels::new(),
                    origin: None,
                    mode: None,
                });
        }
        for ns in self.namespaces.values_mut() {
            ns.labels
                .insert(NAMESPACE_NAME_LABEL.to_string(), ns.name.clone());
        }
    }
}
