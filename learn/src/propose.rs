//! From observed edges and the model to proposed NetworkPolicies: one
//! policy per observed workload (`bulkhead-<name>`, both directions) that
//! allows exactly its observed edges.
//!
//! - Subjects are the workloads seen as a *local* endpoint (all their
//!   traffic was visible); a workload seen only as a remote peer gets no
//!   policy from this history.
//! - Pods are selected by the workload's stable labels ([`super::labels`]):
//!   from the manifests when the workload is in them (the labels all its
//!   pods share), else as last observed. A workload without stable labels
//!   gets no policy (`{}` would select its whole namespace) and is listed
//!   as unselectable.
//! - Peers: pods by namespace (`kubernetes.io/metadata.name`, omitted for
//!   the policy's own namespace) and stable labels; external addresses by
//!   `ipBlock` /32 or /128, never aggregated.
//! - Ports by number (a name could resolve differently on other pods).
//! - DNS: an edge to port 53 over UDP or TCP allows both (TCP carries
//!   truncated answers); said in a comment and in the proof.
//! - Minimal: per direction, each peer's ports are collected, then peers
//!   with identical port sets share one rule. This allows no pair
//!   (peer, port) that was not observed.
//! - Cluster-admin tiers ([`super::tiers`], read from the compiled model
//!   with the proposed policies in place and staged guardrails enforced):
//!   an edge a cluster-admin Deny decides (Admin Deny; Baseline Deny for a
//!   pod no NetworkPolicy selects) is in no rule, since no allow overrides
//!   it, and is reported; a side an Admin Accept decides gets no rule
//!   (never consulted) unless [`Options::include_admin_accepted`], and is
//!   reported. Admin Pass hands the edge to NetworkPolicy: proposed as
//!   usual. A proposed policy selects its pods, so the Baseline tier no
//!   longer applies to them: its Deny there is lifted by the allow.
//! - Rare and recent entries ([`Thresholds`]): an observed (peer, port)
//!   entry with fewer flows than `rare_below` is *rare*, one first seen in
//!   the last `recent_percent` of the history's span ([`History::span`])
//!   is *recent*; both are flagged in the comments and listed in
//!   [`Proposal::flagged`], fewest flows first. An edge with fewer flows
//!   than `min_flows` is in no rule and listed in [`Proposal::left_out`].
//!   All three are functions of the history alone.
//! - Deterministic: everything is sorted; no clock is read.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde::Serialize;

use super::edge::{Edge, EdgeKey, EdgeStats, End, History, WorkloadId};
use super::labels;
use super::tiers::{self, Classified, TierFinding};
use bulkhead_flows::record::Timestamp;
use bulkhead_policy::compile::{Compiled, compile};
use bulkhead_policy::model::{
    Direction, IpBlock, Labels, Model, NAMESPACE_NAME_LABEL, NamespaceScope, Origin, Peer, Policy,
    PortMatch, PortSpec, Protocol, Requirement, Rule, Selector,
};

/// Prefix of every proposed policy's name.
pub const NAME_PREFIX: &str = "bulkhead-";

/// The DNS port.
pub const DNS_PORT: u16 = 53;

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
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            rare_below: 3,
            recent_percent: 10,
            min_flows: 1,
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
    fn order(&self) -> impl Ord + '_ {
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
            egress: Some(rules(&self.egress)),
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
    /// The thresholds of rare, recent and left out.
    pub thresholds: Thresholds,
    /// Proposed entries that are rare or recent, fewest flows first.
    pub flagged: Vec<Flagged>,
    /// Entries with fewer flows than [`Thresholds::min_flows`]: in no
    /// rule. Fewest flows first.
    pub left_out: Vec<Flagged>,
}

/// Which model pods each workload stands for, and its selector labels.
pub struct Workloads {
    /// Model pod indices per workload.
    pub pods: HashMap<WorkloadId, Vec<usize>>,
}

impl Workloads {
    /// Indexes the model's pods by workload (as flow records name them).
    pub fn new(model: &Model) -> Self {
        let mut pods: HashMap<WorkloadId, Vec<usize>> = HashMap::new();
        for (i, p) in model.pods.iter().enumerate() {
            let workload =
                bulkhead_flows::enrich::workload(p).unwrap_or_else(|| format!("Pod/{}", p.name));
            pods.entry(WorkloadId {
                namespace: p.namespace.clone(),
                workload,
            })
            .or_default()
            .push(i);
        }
        Self { pods }
    }

    /// Stable labels of a workload: those all its model pods share, else
    /// the observed ones.
    pub fn labels(&self, model: &Model, history: &History, id: &WorkloadId) -> Labels {
        match self.pods.get(id) {
            Some(pods) => labels::common(pods.iter().map(|&i| &model.pods[i].labels))
                .into_iter()
                .filter(|(k, _)| !labels::is_generated(k))
                .collect(),
            None => history
                .workloads
                .get(id)
                .map(|w| labels::stable(&w.labels))
                .unwrap_or_default(),
        }
    }
}

#[derive(Default)]
struct PeerAcc {
    ports: BTreeSet<(Protocol, u16)>,
    added: BTreeSet<(Protocol, u16)>,
    observed: Vec<Observed>,
}

#[derive(Default)]
struct SubjectAcc {
    dirs: [BTreeMap<PeerSel, PeerAcc>; 2],
    left_out: [u64; 2],
    edges: u64,
    flows: u64,
    first: Option<Timestamp>,
    last: Option<Timestamp>,
}

/// What [`propose_with`] may do beyond the defaults.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Propose rules for the sides of edges the Admin tier already accepts
    /// (by default they are only reported: the Admin tier decides before
    /// NetworkPolicy, so such a rule is never consulted while the
    /// guardrail stands).
    pub include_admin_accepted: bool,
    /// Rare, recent and left out.
    pub thresholds: Thresholds,
}

/// Proposes policies for `history` against `model`, with the default
/// [`Options`].
pub fn propose(history: &History, model: &Model) -> Proposal {
    propose_with(history, model, Options::default())
}

/// Proposes policies for `history` against `model`.
pub fn propose_with(history: &History, model: &Model, options: Options) -> Proposal {
    let index = Workloads::new(model);
    let mut label_cache: HashMap<WorkloadId, Labels> = HashMap::new();
    let mut labels_of = |id: &WorkloadId| -> Labels {
        if let Some(l) = label_cache.get(id) {
            return l.clone();
        }
        let l = index.labels(model, history, id);
        label_cache.insert(id.clone(), l.clone());
        l
    };
    let mut out = Proposal {
        include_admin_accepted: options.include_admin_accepted,
        thresholds: options.thresholds,
        ..Proposal::default()
    };
    let th = options.thresholds;
    let recent_after = th.recent_after(history.span());
    // Every local workload gets a policy (nothing observed means nothing
    // allowed) if it has labels to be selected by.
    let mut policies = Vec::new();
    let mut locals: Vec<&WorkloadId> = history
        .workloads
        .iter()
        .filter(|(_, info)| info.local)
        .map(|(id, _)| id)
        .collect();
    locals.sort();
    for id in locals {
        let labels = labels_of(id);
        if labels.is_empty() {
            out.unselectable.push(id.to_string());
            continue;
        }
        policies.push(ProposedPolicy {
            namespace: id.namespace.clone(),
            name: String::new(),
            subject: id.clone(),
            labels,
            ingress: vec![],
            egress: vec![],
            edges: 0,
            flows: 0,
            first: None,
            last: None,
            tiers: vec![],
            thresholds: th,
            left_out: [0; 2],
        });
    }
    name_policies(&mut policies);
    // What the tiers decide, with the proposed policies selecting their
    // pods (rules aside): the Baseline tier no longer applies to them.
    let view = tiers::any(model).then(|| {
        View::new(
            model,
            &Proposal {
                policies: policies.clone(),
                ..Proposal::default()
            },
        )
    });
    let is_subject = |e: &End| match e {
        End::Workload(w) => history.workloads.get(w).is_some_and(|i| i.local),
        End::External(_) => false,
    };
    let mut subjects: BTreeMap<WorkloadId, SubjectAcc> = BTreeMap::new();
    let mut notes: HashMap<WorkloadId, Vec<(Direction, TierFinding)>> = HashMap::new();
    // Notes a finding on the policy of the edge's end whose direction `d`
    // it concerns (egress: the source; ingress: the destination).
    let mut note = |key: &EdgeKey, d: Direction, f: &TierFinding| {
        let end = match d {
            Direction::Egress => &key.src,
            Direction::Ingress => &key.dst,
        };
        if let End::Workload(w) = end
            && is_subject(end)
        {
            notes.entry(w.clone()).or_default().push((d, f.clone()));
        }
    };
    let edges = history.sorted_edges();
    for Edge { key, stats } in &edges {
        let (src_subject, dst_subject) = (is_subject(&key.src), is_subject(&key.dst));
        if !src_subject && !dst_subject {
            continue;
        }
        let tiers = view
            .as_ref()
            .and_then(|v| v.classify(model, key))
            .unwrap_or_default();
        if let Some(denied) = tiers.denied {
            note(key, Direction::Egress, &denied);
            note(key, Direction::Ingress, &denied);
            out.tier_denied.push(denied);
            continue;
        }
        let Some(protocol) = key.policy_protocol().filter(|_| key.port != 0) else {
            // Not denied once the policies apply if the Admin tier accepts
            // it on every side they isolate.
            let sides = [
                (src_subject, Direction::Egress),
                (dst_subject, Direction::Ingress),
            ];
            let accepted: Vec<&TierFinding> = sides
                .iter()
                .filter(|(subject, _)| *subject)
                .filter_map(|&(_, d)| tiers.accepted[d as usize].as_ref())
                .collect();
            if accepted.len() == sides.iter().filter(|(subject, _)| *subject).count() {
                for f in accepted {
                    note(key, f.side, f);
                    out.admin_accepted.push(f.clone());
                }
            } else {
                out.unexpressible.push(Unproposed {
                    edge: edge_text(key),
                    reason: "NetworkPolicy names only TCP, UDP and SCTP ports",
                });
            }
            continue;
        };
        let mut ports = vec![(protocol, key.port)];
        if key.port == DNS_PORT && matches!(protocol, Protocol::Udp | Protocol::Tcp) {
            ports = vec![(Protocol::Tcp, DNS_PORT), (Protocol::Udp, DNS_PORT)];
        }
        for (subject, peer, dir) in [
            (&key.src, &key.dst, Direction::Egress),
            (&key.dst, &key.src, Direction::Ingress),
        ] {
            if !is_subject(subject) {
                continue;
            }
            let End::Workload(sid) = subject else {
                continue;
            };
            if let Some(accepted) = &tiers.accepted[dir as usize] {
                note(key, dir, accepted);
                out.admin_accepted.push(accepted.clone());
                if !options.include_admin_accepted {
                    continue;
                }
            }
            let observed = Observed {
                peer: peer.to_string(),
                protocol,
                port: key.port,
                flows: stats.flows(),
                first: stats.first_seen,
                last: stats.last_seen,
                rare: stats.flows() < th.rare_below,
                recent: recent_after.is_some_and(|t| stats.first_seen > t),
            };
            let entry = |observed: &Observed| Flagged {
                subject: sid.to_string(),
                direction: dir,
                observed: observed.clone(),
                key: key.clone(),
            };
            if observed.flows < th.min_flows {
                out.left_out.push(entry(&observed));
                subjects.entry(sid.clone()).or_default().left_out[dir as usize] += 1;
                continue;
            }
            if observed.rare || observed.recent {
                out.flagged.push(entry(&observed));
            }
            let sel = match peer {
                End::Workload(p) => PeerSel::Pods {
                    namespace: p.namespace.clone(),
                    labels: labels_of(p),
                },
                End::External(a) => PeerSel::Addr(*a),
            };
            let acc = subjects.entry(sid.clone()).or_default();
            observe(acc, stats);
            let p = acc.dirs[dir as usize].entry(sel).or_default();
            for port in &ports {
                p.ports.insert(*port);
                if *port != (protocol, key.port) {
                    p.added.insert(*port);
                }
            }
            p.observed.push(observed);
        }
    }
    for p in &mut policies {
        p.tiers = notes.remove(&p.subject).unwrap_or_default();
        let Some(acc) = subjects.remove(&p.subject) else {
            continue;
        };
        [p.ingress, p.egress] = acc.dirs.map(rules);
        p.left_out = acc.left_out;
        (p.edges, p.flows, p.first, p.last) = (acc.edges, acc.flows, acc.first, acc.last);
    }
    policies.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    out.policies = policies;
    out.flagged.sort_by(|a, b| a.order().cmp(&b.order()));
    out.left_out.sort_by(|a, b| a.order().cmp(&b.order()));
    out
}

/// The model as the proposal will meet it (see [`tiers`]), compiled.
struct View {
    model: Model,
    compiled: Compiled,
    index: Workloads,
}

impl View {
    fn new(model: &Model, proposal: &Proposal) -> Self {
        let model = super::coverage::apply(model, proposal);
        View {
            compiled: compile(&model),
            index: Workloads::new(&model),
            model,
        }
    }

    fn classify(&self, original: &Model, key: &EdgeKey) -> Option<Classified> {
        tiers::classify(&self.model, original, &self.compiled, &self.index, key)
    }
}

fn observe(acc: &mut SubjectAcc, s: &EdgeStats) {
    acc.edges += 1;
    acc.flows += s.flows();
    acc.first = Some(acc.first.map_or(s.first_seen, |f| f.min(s.first_seen)));
    acc.last = Some(acc.last.map_or(s.last_seen, |l| l.max(s.last_seen)));
}

/// Peers with identical port sets share a rule; rules sorted by port set.
fn rules(peers: BTreeMap<PeerSel, PeerAcc>) -> Vec<ProposedRule> {
    let mut by_ports: BTreeMap<Vec<(Protocol, u16)>, ProposedRule> = BTreeMap::new();
    for (sel, mut acc) in peers {
        let ports: Vec<(Protocol, u16)> = acc.ports.into_iter().collect();
        acc.observed
            .sort_by(|a, b| (&a.peer, a.protocol, a.port).cmp(&(&b.peer, b.protocol, b.port)));
        let rule = by_ports
            .entry(ports.clone())
            .or_insert_with(|| ProposedRule {
                peers: vec![],
                ports,
                added: vec![],
            });
        rule.peers.push(ProposedPeer {
            peer: sel,
            observed: acc.observed,
        });
        for a in acc.added {
            if !rule.added.contains(&a) {
                rule.added.push(a);
            }
        }
    }
    by_ports
        .into_values()
        .map(|mut r| {
            r.added.sort();
            // An added port another peer of the rule observed is still
            // added for this one: keep it listed.
            r
        })
        .collect()
}

/// `bulkhead-<name>`; `bulkhead-<kind>-<name>` where two workloads of one
/// namespace share a name.
fn name_policies(policies: &mut [ProposedPolicy]) {
    let mut count: HashMap<(String, String), usize> = HashMap::new();
    for p in policies.iter() {
        *count
            .entry((p.namespace.clone(), p.subject.name().to_string()))
            .or_default() += 1;
    }
    for p in policies.iter_mut() {
        let name = p.subject.name().to_ascii_lowercase();
        p.name = if count[&(p.namespace.clone(), p.subject.name().to_string())] > 1 {
            format!(
                "{NAME_PREFIX}{}-{name}",
                p.subject.kind().to_ascii_lowercase()
            )
        } else {
            format!("{NAME_PREFIX}{name}")
        };
    }
}

/// `src → dst PROTO/port`.
pub fn edge_text(key: &EdgeKey) -> String {
    let proto = bulkhead_flows::record::IpProtocol(key.protocol);
    if key.port == 0 {
        format!("{} → {} {proto}", key.src, key.dst)
    } else {
        format!("{} → {} {proto}/{}", key.src, key.dst, key.port)
    }
}
