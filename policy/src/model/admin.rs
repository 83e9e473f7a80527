//! Cluster-admin policy tiers (the network-policy-api), validated: the
//! `Admin` tier above NetworkPolicy and the `Baseline` tier below it.
//!
//! Three kinds land in this one form: ClusterNetworkPolicy
//! (`policy.networking.k8s.io/v1alpha2`, tier `Admin` or `Baseline`,
//! actions `Accept`/`Deny`/`Pass`), and its predecessors AdminNetworkPolicy
//! (Admin tier, `Allow`/`Deny`/`Pass`) and BaselineAdminNetworkPolicy
//! (Baseline tier, the singleton `default`, `Allow`/`Deny`), both
//! `v1alpha1`. `Allow` is read as `Accept`.
//!
//! Evaluation of one direction of one pod (the compiler folds it into the
//! rule tables): the Admin tier's rules in [`AdminPolicy::order`], first
//! match decides (`Pass` skips the rest of the tier); then NetworkPolicy if
//! any selects the pod that way (it decides: allowed by a rule, or denied);
//! then the Baseline tier, first match decides (`Pass` decides nothing);
//! then allowed.

use std::fmt;

use ipnetwork::IpNetwork;

use super::policy::{Direction, PortSpec};
use super::selector::{Labels, Selector};
use super::{Mode, Origin};

/// Where a cluster-admin policy sits relative to NetworkPolicy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum Tier {
    /// Before everything: pods an operator cut off (`bulkhead quarantine`;
    /// see [`super::quarantine`]). Bulkhead's own, not the API's.
    Quarantine,
    /// Before NetworkPolicy: guardrails namespace owners cannot override.
    Admin,
    /// After NetworkPolicy, for pods no NetworkPolicy selects: defaults.
    Baseline,
}

impl Tier {
    /// API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Quarantine => "Quarantine",
            Tier::Admin => "Admin",
            Tier::Baseline => "Baseline",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a matching rule does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum Action {
    /// Allowed; no later rule or tier is consulted for this side
    /// (v1alpha1's `Allow`).
    Accept,
    /// Dropped; no later rule or tier is consulted.
    Deny,
    /// The rest of this tier is skipped: evaluation goes on in the next.
    Pass,
}

impl Action {
    /// API spelling (v1alpha2).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Accept => "Accept",
            Action::Deny => "Deny",
            Action::Pass => "Pass",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The API kind a cluster-admin policy was written as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum AdminKind {
    /// `policy.networking.k8s.io/v1alpha2` ClusterNetworkPolicy.
    ClusterNetworkPolicy,
    /// `policy.networking.k8s.io/v1alpha1` AdminNetworkPolicy.
    AdminNetworkPolicy,
    /// `policy.networking.k8s.io/v1alpha1` BaselineAdminNetworkPolicy.
    BaselineAdminNetworkPolicy,
    /// A quarantine (no API object: the agent's own, [`Tier::Quarantine`]).
    Quarantine,
}

impl AdminKind {
    /// The kind's name.
    pub fn as_str(self) -> &'static str {
        match self {
            AdminKind::ClusterNetworkPolicy => "ClusterNetworkPolicy",
            AdminKind::AdminNetworkPolicy => "AdminNetworkPolicy",
            AdminKind::BaselineAdminNetworkPolicy => "BaselineAdminNetworkPolicy",
            AdminKind::Quarantine => "Quarantine",
        }
    }
}

impl fmt::Display for AdminKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The pods a cluster-admin policy applies to: those in namespaces
/// matching `namespaces` whose own labels match `pods` (a `namespaces`
/// subject has `pods` = everything), and named `name` if set. Host-network
/// pods are never subjects.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Subject {
    /// Namespace selector.
    pub namespaces: Selector,
    /// Pod selector within those namespaces.
    pub pods: Selector,
    /// Only the pod of this name (a quarantine's one pod; the API's
    /// subjects select by labels only, and leave it `None`).
    pub name: Option<String>,
}

impl Subject {
    /// Pods in namespaces matching `namespaces` whose labels match `pods`.
    pub fn selecting(namespaces: Selector, pods: Selector) -> Self {
        Self {
            namespaces,
            pods,
            name: None,
        }
    }

    /// Whether pod `name`, with `labels`, in a namespace with
    /// `namespace_labels`, is a subject.
    pub fn matches(&self, namespace_labels: &Labels, name: &str, labels: &Labels) -> bool {
        self.namespaces.matches(namespace_labels)
            && self.pods.matches(labels)
            && self.name.as_deref().is_none_or(|n| n == name)
    }
}

/// A peer of a cluster-admin rule.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AdminPeer {
    /// Pods in namespaces matching `namespaces` whose labels match `pods`
    /// (a `namespaces` peer has `pods` = everything).
    Pods {
        /// Namespace selector.
        namespaces: Selector,
        /// Pod selector.
        pods: Selector,
    },
    /// Addresses in any of these CIDRs (host bits cleared), pod and node
    /// addresses included, as the API documents: `0.0.0.0/0` covers every
    /// IPv4 pod too.
    Networks(Vec<IpNetwork>),
    /// The addresses of nodes whose labels match (experimental; egress).
    Nodes(Selector),
}

/// One rule of a cluster-admin policy: traffic with any of `peers` and
/// (if `ports` is set) any of `ports` gets `action`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminRule {
    /// The rule's `name`, if set (shown in explain and flow records).
    pub name: Option<String>,
    /// What a match does.
    pub action: Action,
    /// At least one peer.
    pub peers: Vec<AdminPeer>,
    /// `None`: every protocol and port (ICMP included).
    pub ports: Option<Vec<PortSpec>>,
}

/// A validated cluster-admin policy (any of the three kinds).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminPolicy {
    /// The kind it was written as.
    pub kind: AdminKind,
    /// Object name (cluster-scoped).
    pub name: String,
    /// Its tier.
    pub tier: Tier,
    /// 0..=1000, lower first (a BaselineAdminNetworkPolicy has 0).
    pub priority: u32,
    /// The pods it applies to.
    pub subject: Subject,
    /// Ingress rules, in precedence order.
    pub ingress: Vec<AdminRule>,
    /// Egress rules, in precedence order.
    pub egress: Vec<AdminRule>,
    /// Where it was read from.
    pub origin: Origin,
    /// Its own mode (annotation `bulkhead.io/mode`); `None`: the model's
    /// default.
    pub mode: Option<Mode>,
}

impl AdminPolicy {
    /// `Kind/name`, as explain and flow records name it.
    pub fn key(&self) -> String {
        format!("{}/{}", self.kind, self.name)
    }

    /// The rules of one direction.
    pub fn rules(&self, direction: Direction) -> &[AdminRule] {
        match direction {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }

    /// The evaluation order of cluster-admin policies: tier, priority, then
    /// (an order the API leaves open, made deterministic here) kind and
    /// name.
    pub fn order(&self) -> (Tier, u32, AdminKind, &str) {
        (self.tier, self.priority, self.kind, &self.name)
    }
}

/// A node of the cluster, for the `nodes` peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Node name.
    pub name: String,
    /// Its labels.
    pub labels: Labels,
    /// Its addresses (`status.addresses` of type InternalIP and
    /// ExternalIP).
    pub addresses: Vec<std::net::IpAddr>,
}

impl fmt::Display for AdminPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminPeer::Pods { namespaces, pods } if pods.is_everything() => {
                write!(f, "namespaces {namespaces}")
            }
            AdminPeer::Pods { namespaces, pods } => {
                write!(f, "pods {pods} in namespaces {namespaces}")
            }
            AdminPeer::Networks(nets) => {
                let nets: Vec<String> = nets.iter().map(ToString::to_string).collect();
                write!(f, "networks {}", nets.join(","))
            }
            AdminPeer::Nodes(nodes) => write!(f, "nodes {nodes}"),
        }
    }
}

/// Two cluster-admin policies of one tier and priority that select a
/// common pod with rules in a common direction: the API leaves their order
/// open; Bulkhead evaluates them in [`AdminPolicy::order`] (kind, then
/// name), deterministically, and warns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PriorityTie {
    /// The policy evaluated first.
    pub first: String,
    /// The policy evaluated second.
    pub second: String,
    /// Their tier.
    pub tier: Tier,
    /// Their priority.
    pub priority: u32,
    /// A pod both select (`namespace/name`).
    pub pod: String,
    /// A direction both have rules for.
    pub direction: Direction,
}

impl fmt::Display for PriorityTie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} and {} are both {} tier priority {} and both select pod {} for {}: \
             the API leaves their order open; {} is evaluated first (by kind, then name)",
            self.first, self.second, self.tier, self.priority, self.pod, self.direction, self.first
        )
    }
}

/// The [`PriorityTie`]s of a model (its admin policies in order).
pub fn priority_ties(model: &super::Model) -> Vec<PriorityTie> {
    let selects = |p: &AdminPolicy, pod: &super::Pod| {
        model
            .namespaces
            .get(&pod.namespace)
            .is_some_and(|ns| p.subject.matches(&ns.labels, &pod.name, &pod.labels))
    };
    let mut out = Vec::new();
    let policies = &model.admin_policies;
    for (i, a) in policies.iter().enumerate() {
        for b in policies[i + 1..]
            .iter()
            .take_while(|b| (b.tier, b.priority) == (a.tier, a.priority))
        {
            let direction = Direction::ALL
                .into_iter()
                .find(|&d| !a.rules(d).is_empty() && !b.rules(d).is_empty());
            let pod = model.pods.iter().find(|p| selects(a, p) && selects(b, p));
            if let (Some(direction), Some(pod)) = (direction, pod) {
                out.push(PriorityTie {
                    first: a.key(),
                    second: b.key(),
                    tier: a.tier,
                    priority: a.priority,
                    pod: pod.key(),
                    direction,
                });
            }
        }
    }
    out
}
