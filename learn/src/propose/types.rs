//! The proposal's types: peers, rules, policies, thresholds and findings.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde::Serialize;

use crate::edge::{EdgeKey, WorkloadId};
use crate::tiers::TierFinding;
use bulkhead_flows::record::Timestamp;
use bulkhead_policy::model::{
    Direction, IpBlock, Labels, NAMESPACE_NAME_LABEL, NamespaceScope, Origin, Peer, Policy,
    PortMatch, PortSpec, Protocol, Requirement, Rule, Selector,
};

/// A peer as a proposal names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerSel {
    /// Pods of a namespace with these labels.
    Pods {
        /// Namespace.
        namespace: String,
        /// Stable labels (empty: every pod of the namespace).
        labels: Labels,
    },
    /// One external address.
    Addr(IpAddr),
    /// Every pod of every namespace (`namespaceSelector: {}`): a DNS
    /// server's clients.
    AllPods,
    /// A block of addresses (`0.0.0.0/0` for an internet-facing port).
    Cidr(#[serde(serialize_with = "as_text")] IpNetwork),
}

/// A CIDR as its text (`0.0.0.0/0`).
fn as_text<S: serde::Serializer>(n: &IpNetwork, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(n)
}

/// What was observed between a subject and one workload or address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Observed {
    /// The peer as observed (`namespace/Kind/name` or an address).
    pub peer: String,
    /// Protocol.
    pub protocol: Protocol,
    /// Port.
    pub port: u16,
    /// Connections.
    pub flows: u64,
    /// First seen.
    pub first: Timestamp,
    /// Last seen.
    pub last: Timestamp,
    /// Fewer flows than [`Thresholds::rare_below`].
    pub rare: bool,
    /// First seen in the last [`Thresholds::recent_percent`] of the
    /// history's span.
    pub recent: bool,
}

/// What flags an observed entry for review, and what leaves it out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Thresholds {
    /// Rare: fewer flows than this (`--rare-below`, default 3).
    pub rare_below: u64,
    /// Recent: first seen later than this share of the history's span
    /// before its end, in percent (`--recent-share`, default 10).
    pub recent_percent: u8,
    /// Left out of the proposal: fewer flows than this (`--min-flows`,
    /// default 1: none).
    pub min_flows: u64,
    /// A scan: a source with at least this many probe edges
    /// (`--scan-targets`, default 10; see [`super::scan`]).
    pub scan_targets: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            rare_below: 3,
            recent_percent: 10,
            min_flows: 1,
            scan_targets: super::scan::DEFAULT_SCAN_TARGETS,
        }
    }
}

impl Thresholds {
    /// The time after which a first sighting is recent: `last − share ·
    /// (last − first)` of the span; `None` (nothing recent) for an empty
    /// or instantaneous history.
    pub fn recent_after(&self, span: Option<(Timestamp, Timestamp)>) -> Option<Timestamp> {
        let (first, last) = span?;
        let len = last.0.checked_sub(first.0).filter(|l| *l > 0)?;
        let share = (u128::from(len) * u128::from(self.recent_percent.min(100)) / 100) as u64;
        Some(Timestamp(last.0 - share))
    }
}

/// An observed entry of one subject's direction, for the reviewer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Flagged {
    /// The subject workload (`namespace/Kind/name`).
    pub subject: String,
    /// The subject's direction.
    pub direction: Direction,
    /// What was observed.
    #[serde(flatten)]
    pub observed: Observed,
    /// The edge.
    #[serde(skip)]
    pub key: EdgeKey,
}

impl Flagged {
    pub(super) fn order(&self) -> impl Ord + '_ {
        let o = &self.observed;
        (
            o.flows,
            &self.subject,
            self.direction,
            &o.peer,
            o.protocol,
            o.port,
        )
    }
}

/// One peer of a proposed rule and what was observed with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProposedPeer {
    /// The selector.
    pub peer: PeerSel,
    /// Why it is there beyond what was observed (DNS for all pods, an
    /// internet-facing port, the control plane), sorted.
    pub notes: Vec<String>,
    /// The observations behind it, sorted.
    pub observed: Vec<Observed>,
}

/// A proposed rule: every peer may use every port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProposedRule {
    /// Peers, sorted.
    pub peers: Vec<ProposedPeer>,
    /// (protocol, port), sorted.
    pub ports: Vec<(Protocol, u16)>,
    /// Ports added beyond what was observed (DNS: the other of UDP/TCP 53).
    pub added: Vec<(Protocol, u16)>,
}

/// A proposed policy for one workload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProposedPolicy {
    /// The workload it is for.
    pub subject: WorkloadId,
    /// Namespace.
    pub namespace: String,
    /// `bulkhead-<name>`.
    pub name: String,
    /// The selector's labels.
    pub labels: Labels,
    /// `policyTypes: [Ingress]` only, no egress section (a DNS server:
    /// its egress is left as it is).
    pub ingress_only: bool,
    /// Comments for the policy's header (what the subject is, e.g. a DNS
    /// server).
    pub notes: Vec<String>,
    /// Ingress rules.
    pub ingress: Vec<ProposedRule>,
    /// Egress rules.
    pub egress: Vec<ProposedRule>,
    /// Edges behind it.
    pub edges: u64,
    /// Connections behind it.
    pub flows: u64,
    /// First observation.
    pub first: Option<Timestamp>,
    /// Last observation.
    pub last: Option<Timestamp>,
    /// Observed edges of the subject a cluster-admin tier decides on its
    /// behalf, with the subject's direction they concern (see
    /// [`Proposal::tier_denied`], [`Proposal::admin_accepted`]).
    pub tiers: Vec<(Direction, TierFinding)>,
    /// The thresholds its observations are flagged by.
    pub thresholds: Thresholds,
    /// Entries left out below [`Thresholds::min_flows`], per direction
    /// (`Direction as usize`).
    pub left_out: [u64; 2],
}

impl ProposedPolicy {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The rules of one direction.
    pub fn rules(&self, d: Direction) -> &[ProposedRule] {
        match d {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }

    /// The policy in the model's form (what the YAML says).
    pub fn policy(&self) -> Policy {
        let rules = |rs: &[ProposedRule]| -> Vec<Rule> {
            rs.iter()
                .map(|r| Rule {
                    peers: Some(
                        r.peers
                            .iter()
                            .map(|p| model_peer(&self.namespace, &p.peer))
                            .collect(),
                    ),
                    ports: Some(
                        r.ports
                            .iter()
                            .map(|&(protocol, port)| PortSpec {
                                protocol,
                                port: PortMatch::Range(port, port),
                            })
                            .collect(),
                    ),
                })
                .collect()
        };
        Policy {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            pod_selector: selector(&self.labels),
            ingress: Some(rules(&self.ingress)),
            egress: (!self.ingress_only).then(|| rules(&self.egress)),
            origin: Origin::default(),
            mode: None,
        }
    }
}

/// A selector of exactly these labels (`matchLabels`).
pub fn selector(labels: &Labels) -> Selector {
    Selector::new(
        labels
            .iter()
            .map(|(k, v)| Requirement::In(k.clone(), vec![v.clone()]))
            .collect(),
    )
}

fn model_peer(policy_ns: &str, p: &PeerSel) -> Peer {
    match p {
        PeerSel::Pods { namespace, labels } => Peer::Pods {
            namespaces: if namespace == policy_ns {
                NamespaceScope::Same(namespace.clone())
            } else {
                NamespaceScope::Selected(Selector::new(vec![Requirement::In(
                    NAMESPACE_NAME_LABEL.into(),
                    vec![namespace.clone()],
                )]))
            },
            pods: selector(labels),
        },
        PeerSel::Addr(a) => Peer::IpBlock(IpBlock {
            cidr: IpNetwork::from(*a),
            except: vec![],
        }),
        PeerSel::AllPods => Peer::Pods {
            namespaces: NamespaceScope::Selected(Selector::everything()),
            pods: Selector::everything(),
        },
        PeerSel::Cidr(n) => Peer::IpBlock(IpBlock {
            cidr: *n,
            except: vec![],
        }),
    }
}

/// Why an edge is in no proposal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Unproposed {
    /// The edge.
    pub edge: String,
    /// Why.
    pub reason: &'static str,
}

/// The proposal.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Proposal {
    /// Policies, sorted by (namespace, name).
    pub policies: Vec<ProposedPolicy>,
    /// Observed workloads without stable labels (no policy proposed).
    pub unselectable: Vec<String>,
    /// Edges NetworkPolicy cannot express (ICMP and other protocols; port
    /// 0): once the subject is isolated they are denied.
    pub unexpressible: Vec<Unproposed>,
    /// Observed edges a cluster-admin Deny decides (an Admin Deny, or a
    /// Baseline Deny for a pod no NetworkPolicy selects): in no rule, since
    /// no NetworkPolicy allow can override it.
    pub tier_denied: Vec<TierFinding>,
    /// Sides of observed edges an Admin Accept decides: in no rule unless
    /// `include_admin_accepted`.
    pub admin_accepted: Vec<TierFinding>,
    /// Whether the Admin-accepted sides were proposed anyway.
    pub include_admin_accepted: bool,
    /// Whether the scans' probe edges were proposed anyway.
    pub keep_scans: bool,
    /// The thresholds of rare, recent and left out.
    pub thresholds: Thresholds,
    /// Proposed entries that are rare or recent, fewest flows first.
    pub flagged: Vec<Flagged>,
    /// Entries with fewer flows than [`Thresholds::min_flows`]: in no
    /// rule. Fewest flows first.
    pub left_out: Vec<Flagged>,
    /// Edges with denied or quarantined records, sorted by edge: their
    /// allowed part alone is observed, unless `include_denied`.
    pub denied_attempts: Vec<super::DeniedAttempt>,
    /// Whether denied records were counted as observed.
    pub include_denied: bool,
    /// DNS servers and API server addresses, and what the proposal did
    /// about them (see [`super::infra`]).
    pub infrastructure: Vec<super::InfraFinding>,
    /// Internet-facing workloads and the ports opened to all (see
    /// [`super::exposure`]).
    pub internet_facing: Vec<super::InternetFacing>,
    /// Scans, by source: their probe edges are in no rule unless
    /// `keep_scans`.
    pub scans: Vec<super::Scan>,
    /// The model's workloads without a proposed policy, and why.
    pub unproposed_workloads: Vec<super::WithoutPolicy>,
}

impl Proposal {
    /// The probe edges of scans the proposal leaves out (none with
    /// `keep_scans`).
    pub fn scan_left_out(&self) -> impl Iterator<Item = &crate::edge::EdgeKey> {
        self.scans
            .iter()
            .filter(|_| !self.keep_scans)
            .flat_map(|s| s.keys.iter())
    }
}
