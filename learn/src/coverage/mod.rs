//! The coverage proof printed with every proposal. The manifests' model
//! with the proposal in it (replacing earlier policies of the same names)
//! is compiled by the real compiler, and then:
//!
//! - every observed edge is replayed through the reference evaluator
//!   (`bulkhead_policy::eval`) between the pods of its workloads (every pod of one
//!   end against one pod of the other, both ways): all must be allowed,
//!   except those a cluster-admin Deny decides (the guardrails are in the
//!   model, staged ones enforced: see [`super::tiers`]), which no
//!   NetworkPolicy can allow and the proposal leaves out; an edge an Admin
//!   Accept decides is allowed by the Admin tier;
//! - the Baseline tier's Deny the proposal lifts: edges it denies with the
//!   manifests as they are, allowed once the proposed policies select
//!   their pods;
//! - *beyond observed*: what each proposed policy's rules allow, read from
//!   the compiled rule tables, that no edge used (other workloads matched
//!   by a peer selector, DNS ports added), and the workloads a policy
//!   selects besides its subject;
//! - rare and recent entries, fewest flows first, and the edges left out
//!   below `--min-flows` (from the proposal): left out on purpose, so not
//!   counted against coverage; replayed all the same, and any the
//!   proposal still allows (another rule's selector matches) is named;
//! - scans' probe edges (from the proposal): left out like those below
//!   `--min-flows`, replayed all the same;
//! - the model's workloads without a proposed policy, and what the
//!   proposed policies would do to their traffic ([`unproposed`]);
//! - stability: the newest edge's first sighting against the last
//!   observation;
//! - the diff against the policies already in the manifests.

mod attempts;
mod replay;
mod text;
mod unproposed;

pub use text::text;
pub use unproposed::UnproposedWorkload;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use serde::Serialize;

use super::diff;
use super::edge::{EdgeKey, End, History, WorkloadId};
use super::propose::{DeniedAttempt, Flagged, NAME_PREFIX, Proposal, Scan, Workloads, edge_text};
use super::tiers::{self, TierFinding, replay_pairs};
use super::window::WindowFacts;
use super::yaml;
use bulkhead_flows::record::Timestamp;
use bulkhead_policy::compile::{IdentityId, IdentityKind, compile};
use bulkhead_policy::model::{Direction, Mode, Model, Origin, Policy, Protocol};
use replay::{Before, Replay, replay};

/// An observed edge the proposal does not allow (a bug if ever non-empty).
#[derive(Clone, Debug, Serialize)]
pub struct DeniedEdge {
    /// The edge.
    pub edge: String,
    /// Source address replayed.
    pub src: IpAddr,
    /// Destination address replayed.
    pub dst: IpAddr,
    /// The evaluator's verdict, per side.
    pub verdict: String,
}

/// Something a policy allows that was not observed.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Beyond {
    /// `namespace/name` of the proposed policy.
    pub policy: String,
    /// Direction.
    pub direction: Direction,
    /// The peer workload or address range.
    pub peer: String,
    /// `PROTO/port`, sorted.
    pub ports: Vec<String>,
}

/// Workloads a proposed policy selects besides its subject.
#[derive(Clone, Debug, Serialize)]
pub struct AlsoSelects {
    /// `namespace/name` of the proposed policy.
    pub policy: String,
    /// The other workloads.
    pub workloads: Vec<String>,
}

/// Time since the last new edge.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Stability {
    /// First observation.
    pub first_seen: Option<Timestamp>,
    /// Last observation.
    pub last_seen: Option<Timestamp>,
    /// When the newest edge was first seen.
    pub last_new_edge: Option<Timestamp>,
    /// From the last new edge to the last observation, seconds: how long
    /// the set of edges has not changed.
    pub stable_for_seconds: Option<f64>,
}

/// How the proposal compares with the policies in the manifests.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Diff {
    /// Proposed policies not in the manifests.
    pub added: Vec<String>,
    /// In the manifests with a different spec.
    pub changed: Vec<String>,
    /// In the manifests, identical.
    pub unchanged: Vec<String>,
    /// `bulkhead-*` policies in the manifests that the proposal no longer
    /// contains.
    pub stale: Vec<String>,
    /// Line diffs of the changed policies (canonical YAML, no comments).
    pub text: BTreeMap<String, String>,
}

impl Diff {
    /// Whether applying the proposal changes nothing.
    pub fn no_change(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty()
    }
}

/// The proof.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Proof {
    /// Observed edges.
    pub edges: u64,
    /// Edges replayed through the evaluator.
    pub replayed: u64,
    /// Replayed edges a cluster-admin Deny decides (for every pair): no
    /// NetworkPolicy can allow them, the proposal leaves them out.
    pub guardrail_denied: u64,
    /// Replayed edges a proposal can make allowed: `replayed -
    /// guardrail_denied`.
    pub proposable: u64,
    /// Proposable edges allowed.
    pub allowed: u64,
    /// Of those, edges an Admin Accept decides on a side.
    pub allowed_by_admin: u64,
    /// `allowed / proposable` in percent (100 when there is none).
    pub coverage_percent: f64,
    /// Replayed edges not allowed (must be empty).
    pub denied: Vec<DeniedEdge>,
    /// Edges not replayed because an end is not in the manifests (or has no
    /// address of the family needed).
    pub unverifiable: Vec<String>,
    /// Edges NetworkPolicy cannot express (denied once isolated).
    pub unexpressible: Vec<String>,
    /// Observed edges a cluster-admin Deny decides, left out of the
    /// proposal (from it).
    pub tier_denied: Vec<TierFinding>,
    /// Sides of observed edges an Admin Accept decides (from the proposal;
    /// proposed only with `--include-admin-accepted`).
    pub admin_accepted: Vec<TierFinding>,
    /// Edges the Baseline tier denies with the manifests as they are,
    /// allowed once the proposal applies (its policies select the pods, so
    /// the Baseline tier steps aside for them).
    pub baseline_lifted: Vec<TierFinding>,
    /// Allowed beyond what was observed.
    pub beyond_observed: Vec<Beyond>,
    /// Workloads selected besides the subject.
    pub also_selects: Vec<AlsoSelects>,
    /// Observed workloads that got no policy (no stable labels).
    pub unselectable: Vec<String>,
    /// Proposed entries that are rare (from the proposal).
    pub rare: u64,
    /// Proposed entries that are recent (from the proposal).
    pub recent: u64,
    /// Rare or recent proposed entries, fewest flows first (from the
    /// proposal).
    pub flagged: Vec<Flagged>,
    /// Entries left out below `--min-flows` (from the proposal), fewest
    /// flows first.
    pub left_out: Vec<Flagged>,
    /// Edges left out below `--min-flows`: not replayed against coverage.
    pub left_out_edges: u64,
    /// Left-out edges the proposal allows all the same (another rule's
    /// selector matches their ends).
    pub left_out_allowed: Vec<String>,
    /// DNS servers and API server addresses, and what the proposal did
    /// about them (from the proposal).
    pub infrastructure: Vec<crate::propose::InfraFinding>,
    /// Internet-facing workloads and their opened ports (from the
    /// proposal).
    pub internet_facing: Vec<crate::propose::InternetFacing>,
    /// Scans (from the proposal): their probe edges are left out, not
    /// replayed against coverage, unless `--keep-scans`.
    pub scans: Vec<Scan>,
    /// Left-out scan probes the proposal allows all the same.
    pub scan_allowed: Vec<String>,
    /// The model's workloads without a proposed policy, why, and what the
    /// proposed policies would do to their traffic.
    pub unproposed_workloads: Vec<UnproposedWorkload>,
    /// Stability.
    pub stability: Stability,
    /// Against the manifests' policies.
    pub diff: Diff,
    /// Edges with denied or quarantined records and their deciding
    /// policies (from the proposal): replayed and proposed only for their
    /// allowed part, unless `include_denied`.
    pub denied_attempts: Vec<DeniedAttempt>,
    /// Whether denied records were counted as observed (`--include-denied`).
    pub include_denied: bool,
    /// The time window the history was read for (set by the caller, who
    /// read it; everything by default).
    pub window: WindowFacts,
}

impl Proof {
    /// Whether every replayed edge is allowed.
    pub fn complete(&self) -> bool {
        self.denied.is_empty()
    }
}

/// `model` with the proposal's policies in place of any of the same name.
pub fn apply(model: &Model, proposal: &Proposal) -> Model {
    let names: HashSet<String> = proposal.policies.iter().map(|p| p.key()).collect();
    let mut m = model.clone();
    m.policies.retain(|p| !names.contains(&p.key()));
    m.policies
        .extend(proposal.policies.iter().enumerate().map(|(i, p)| Policy {
            origin: Origin::file("<proposal>", i),
            // The proof is about the proposal enforced, whatever mode its
            // namespace or the agent would give it.
            mode: Some(Mode::Enforce),
            ..p.policy()
        }));
    tiers::planning_view(&mut m);
    m.normalize();
    m
}

/// Proves `proposal` against the observed `history` and the manifests'
/// `model`.
pub fn prove(history: &History, model: &Model, proposal: &Proposal) -> Proof {
    // What the proposal was learnt from: the allowed part, unless denied
    // records were included.
    let history = &*history.observed(proposal.include_denied);
    let combined = apply(model, proposal);
    let compiled = compile(&combined);
    let index = Workloads::new(&combined);
    let mut proof = Proof {
        unselectable: proposal.unselectable.clone(),
        unexpressible: proposal
            .unexpressible
            .iter()
            .map(|u| u.edge.clone())
            .collect(),
        tier_denied: proposal.tier_denied.clone(),
        admin_accepted: proposal.admin_accepted.clone(),
        rare: proposal.flagged.iter().filter(|f| f.observed.rare).count() as u64,
        recent: proposal
            .flagged
            .iter()
            .filter(|f| f.observed.recent)
            .count() as u64,
        flagged: proposal.flagged.clone(),
        left_out: proposal.left_out.clone(),
        denied_attempts: proposal.denied_attempts.clone(),
        include_denied: proposal.include_denied,
        infrastructure: proposal.infrastructure.clone(),
        internet_facing: proposal.internet_facing.clone(),
        scans: proposal.scans.clone(),
        unproposed_workloads: unproposed::effects(&combined, &compiled, &index, proposal),
        ..Proof::default()
    };
    let left_out: HashSet<&EdgeKey> = proposal.left_out.iter().map(|f| &f.key).collect();
    proof.left_out_edges = left_out.len() as u64;
    let scanned: HashSet<&EdgeKey> = proposal.scan_left_out().collect();
    let before = Before::new(model);
    let tiered = compiled.tables.iter().any(|t| t.tiered());
    let edges = history.sorted_edges();
    proof.edges = edges.len() as u64;

    // Replay.
    for e in &edges {
        let key = &e.key;
        let Some(proto) = key.policy_protocol().filter(|_| key.port != 0) else {
            continue;
        };
        let pairs = match replay_pairs(&combined, &index, key) {
            Ok(p) => p,
            Err(why) => {
                if !left_out.contains(key) && !scanned.contains(key) {
                    proof
                        .unverifiable
                        .push(format!("{}: {why}", edge_text(key)));
                }
                continue;
            }
        };
        let verdict = replay(&compiled, tiered, &pairs, proto, key.port);
        if left_out.contains(key) {
            if matches!(verdict, Replay::Allowed { .. }) {
                proof.left_out_allowed.push(edge_text(key));
            }
            continue;
        }
        if scanned.contains(key) {
            if matches!(verdict, Replay::Allowed { .. }) {
                proof.scan_allowed.push(edge_text(key));
            }
            continue;
        }
        proof.replayed += 1;
        match verdict {
            Replay::GuardrailDenied => proof.guardrail_denied += 1,
            Replay::Allowed { by_admin } => {
                proof.allowed += 1;
                proof.allowed_by_admin += u64::from(by_admin);
                if let Some(f) = before.as_ref().and_then(|b| b.baseline_denied(model, key)) {
                    proof.baseline_lifted.push(f);
                }
            }
            Replay::Denied { src, dst, verdict } => proof.denied.push(DeniedEdge {
                edge: edge_text(key),
                src,
                dst,
                verdict: format!(
                    "egress: {:?}, ingress: {:?}",
                    verdict.egress, verdict.ingress
                ),
            }),
        }
    }
    proof.proposable = proof.replayed - proof.guardrail_denied;
    proof.coverage_percent = if proof.proposable == 0 {
        100.0
    } else {
        proof.allowed as f64 * 100.0 / proof.proposable as f64
    };

    // Beyond observed, from the compiled tables.
    let observed: HashSet<&EdgeKey> = history.edges.keys().collect();
    let pod_workload: Vec<WorkloadId> = combined
        .pods
        .iter()
        .map(|p| WorkloadId {
            namespace: p.namespace.clone(),
            workload: bulkhead_flows::enrich::workload(p)
                .unwrap_or_else(|| format!("Pod/{}", p.name)),
        })
        .collect();
    let mut pods_of_identity: HashMap<IdentityId, BTreeSet<usize>> = HashMap::new();
    for (i, p) in combined.pods.iter().enumerate() {
        for a in &p.ips {
            pods_of_identity
                .entry(compiled.identity_of(*a))
                .or_default()
                .insert(i);
        }
    }
    let policy_index: HashMap<String, usize> = combined
        .policies
        .iter()
        .enumerate()
        .map(|(i, p)| (p.key(), i))
        .collect();
    let mut beyond: BTreeMap<(String, Direction, String), BTreeSet<(Protocol, u16)>> =
        BTreeMap::new();
    for p in &proposal.policies {
        let pi = policy_index[&p.key()];
        let Some(subject_pods) = index.pods.get(&p.subject) else {
            continue;
        };
        let rep = subject_pods[0];
        for d in Direction::ALL {
            let Some(table) = compiled.endpoints[rep].table(d) else {
                continue;
            };
            let ours: HashSet<u32> = compiled
                .rules
                .iter()
                .enumerate()
                .filter(|(_, r)| r.tier.is_none() && r.policy == pi && r.direction == d)
                .map(|(i, _)| i as u32)
                .collect();
            for (&(peer, proto_n), segs) in compiled.tables[table as usize].sorted_groups() {
                let Some(proto) = Protocol::ALL.into_iter().find(|p| p.number() == proto_n) else {
                    continue;
                };
                for seg in segs
                    .iter()
                    .filter(|s| !s.deny && s.rules.iter().any(|r| ours.contains(r)))
                {
                    let ends: Vec<(End, String)> = match compiled.identities.get(peer).kind {
                        IdentityKind::External { region } => compiled.regions.regions
                            [region as usize]
                            .prefixes
                            .iter()
                            .map(|n| {
                                let end = if n.prefix() == if n.is_ipv4() { 32 } else { 128 } {
                                    End::External(n.ip())
                                } else {
                                    End::External(std::net::Ipv4Addr::UNSPECIFIED.into())
                                };
                                (end, n.to_string())
                            })
                            .collect(),
                        _ => pods_of_identity
                            .get(&peer)
                            .into_iter()
                            .flatten()
                            .map(|&q| {
                                (
                                    End::Workload(pod_workload[q].clone()),
                                    pod_workload[q].to_string(),
                                )
                            })
                            .collect(),
                    };
                    for (end, label) in ends {
                        for port in seg.lo..=seg.hi {
                            let subject = End::Workload(p.subject.clone());
                            let (src, dst) = match d {
                                Direction::Egress => (subject, end.clone()),
                                Direction::Ingress => (end.clone(), subject),
                            };
                            let key = EdgeKey {
                                src,
                                dst,
                                protocol: proto_n,
                                port,
                            };
                            if !observed.contains(&key) {
                                beyond
                                    .entry((p.key(), d, label.clone()))
                                    .or_default()
                                    .insert((proto, port));
                            }
                        }
                    }
                }
            }
        }
    }
    proof.beyond_observed = beyond
        .into_iter()
        .map(|((policy, direction, peer), ports)| Beyond {
            policy,
            direction,
            peer,
            ports: ports.iter().map(|(p, n)| format!("{p}/{n}")).collect(),
        })
        .collect();

    // Workloads selected besides the subject.
    let proposed: HashMap<usize, &WorkloadId> = proposal
        .policies
        .iter()
        .map(|p| (policy_index[&p.key()], &p.subject))
        .collect();
    let mut also: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (q, e) in compiled.endpoints.iter().enumerate() {
        let Some(t) = e.ingress else { continue };
        for pi in &compiled.tables[t as usize].policies {
            if let Some(subject) = proposed.get(pi)
                && **subject != pod_workload[q]
            {
                also.entry(combined.policies[*pi].key())
                    .or_default()
                    .insert(pod_workload[q].to_string());
            }
        }
    }
    proof.also_selects = also
        .into_iter()
        .map(|(policy, w)| AlsoSelects {
            policy,
            workloads: w.into_iter().collect(),
        })
        .collect();

    // Stability.
    let span = history.span();
    let last_new = history.last_new_edge();
    proof.stability = Stability {
        first_seen: span.map(|s| s.0),
        last_seen: span.map(|s| s.1),
        last_new_edge: last_new,
        stable_for_seconds: span
            .zip(last_new)
            .map(|(s, n)| s.1.0.saturating_sub(n.0) as f64 / 1000.0),
    };

    proof.diff = diff_against(model, proposal);
    proof
}

/// The block diff ([`diff::lines`]) of the policy in force `old` against
/// its proposed replacement `new`, or `None` when their rules are the
/// same. Rules, not modes: a proposal applied in audit and re-proposed is
/// unchanged (promoting is `bulkhead promote`).
pub fn policy_diff(old: &Policy, new: &Policy) -> Option<String> {
    let old = Policy {
        origin: Origin::default(),
        mode: None,
        ..old.clone()
    };
    (old != *new).then(|| diff::lines(&yaml::plain(&old), &yaml::plain(new)))
}

/// The diff of the proposal against the manifests' policies.
pub fn diff_against(model: &Model, proposal: &Proposal) -> Diff {
    let existing: HashMap<String, &Policy> = model.policies.iter().map(|p| (p.key(), p)).collect();
    let mut d = Diff::default();
    let mut proposed = HashSet::new();
    for p in &proposal.policies {
        let key = p.key();
        let new = p.policy();
        match existing.get(&key) {
            None => d.added.push(key.clone()),
            Some(old) => match policy_diff(old, &new) {
                None => d.unchanged.push(key.clone()),
                Some(text) => {
                    d.text.insert(key.clone(), text);
                    d.changed.push(key.clone());
                }
            },
        }
        proposed.insert(key);
    }
    d.stale = model
        .policies
        .iter()
        .filter(|p| p.name.starts_with(NAME_PREFIX) && !proposed.contains(&p.key()))
        .map(Policy::key)
        .collect();
    d
}
