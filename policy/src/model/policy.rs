//! NetworkPolicy v1, validated: every selector parsed, every CIDR and port
//! checked, `policyTypes` defaulting applied. The compiler only sees this form.

use std::fmt;

use ipnetwork::IpNetwork;

use super::selector::Selector;
use super::{Mode, Origin, Protocol};

/// A validated NetworkPolicy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Namespace the policy lives in (its selectors are relative to it).
    pub namespace: String,
    /// Policy name.
    pub name: String,
    /// Pods of `namespace` the policy applies to.
    pub pod_selector: Selector,
    /// Ingress rules if the policy isolates ingress (`policyTypes` has
    /// `Ingress`), else `None`. `Some(vec![])` denies all ingress.
    pub ingress: Option<Vec<Rule>>,
    /// Egress rules if the policy isolates egress, else `None`.
    pub egress: Option<Vec<Rule>>,
    /// Where the policy was read from.
    pub origin: Origin,
    /// Its own mode (annotation `bulkhead.io/mode`); `None`: its
    /// namespace's, else the model's default (see `Model::mode_of`).
    pub mode: Option<Mode>,
}

impl Policy {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The rules of one direction, if the policy isolates it.
    pub fn rules(&self, direction: Direction) -> Option<&[Rule]> {
        match direction {
            Direction::Ingress => self.ingress.as_deref(),
            Direction::Egress => self.egress.as_deref(),
        }
    }
}

/// Traffic direction relative to the selected pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Traffic entering the pod.
    Ingress,
    /// Traffic leaving the pod.
    Egress,
}

impl Direction {
    /// Both directions, ingress first.
    pub const ALL: [Direction; 2] = [Direction::Ingress, Direction::Egress];

    /// Lower-case name as used in output.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One ingress or egress rule: traffic matching any peer AND any port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// `None` (field empty or absent) matches every peer.
    pub peers: Option<Vec<Peer>>,
    /// `None` (field empty or absent) matches every protocol and port.
    pub ports: Option<Vec<PortSpec>>,
}

/// A `from`/`to` peer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Peer {
    /// Pods picked by namespace scope and pod selector.
    Pods {
        /// Which namespaces.
        namespaces: NamespaceScope,
        /// Which pods in them.
        pods: Selector,
    },
    /// Addresses in `cidr` and in none of `except`; pod addresses included.
    IpBlock(IpBlock),
}

/// The namespaces a pod peer looks in.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NamespaceScope {
    /// Only the policy's own namespace (no `namespaceSelector`).
    Same(String),
    /// Namespaces whose labels match.
    Selected(Selector),
}

/// An `ipBlock` peer.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpBlock {
    /// The block (host bits cleared).
    pub cidr: IpNetwork,
    /// Sub-blocks excluded from it, each strictly inside `cidr`.
    pub except: Vec<IpNetwork>,
}

/// One `ports` entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PortSpec {
    /// Protocol (defaults to TCP).
    pub protocol: Protocol,
    /// Which ports of it.
    pub port: PortMatch,
}

/// The port part of a `ports` entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PortMatch {
    /// No `port`: every port of the protocol.
    Any,
    /// A number, or `port`..=`endPort`.
    Range(u16, u16),
    /// A container port name, resolved per destination pod.
    Named(String),
}

impl fmt::Display for IpBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ipBlock {}", self.cidr)?;
        if !self.except.is_empty() {
            let except: Vec<String> = self.except.iter().map(|e| e.to_string()).collect();
            write!(f, " except {}", except.join(","))?;
        }
        Ok(())
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Pods {
                namespaces: NamespaceScope::Same(ns),
                pods,
            } => write!(f, "pods {pods} in namespace {ns}"),
            Peer::Pods {
                namespaces: NamespaceScope::Selected(nss),
                pods,
            } => write!(f, "pods {pods} in namespaces {nss}"),
            Peer::IpBlock(b) => b.fmt(f),
        }
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.port {
            PortMatch::Any => write!(f, "{} any port", self.protocol),
            PortMatch::Range(lo, hi) if lo == hi => write!(f, "{} {lo}", self.protocol),
            PortMatch::Range(lo, hi) => write!(f, "{} {lo}-{hi}", self.protocol),
            PortMatch::Named(n) => write!(f, "{} port named {n:?}", self.protocol),
        }
    }
}
