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
//! - Denied attempts ([`denied`]): what is observed is the allowed part of
//!   the history ([`History::observed`]); edges with records the policies
//!   in force dropped are listed in [`Proposal::denied_attempts`] with
//!   their deciding policies, and proposed (all their records counted as
//!   observed) only with [`Options::include_denied`].
//! - Scans ([`scan`]): a source's probe edges (few flows, no payload) to
//!   at least `scan_targets` targets are in no rule unless
//!   [`Options::keep_scans`], and listed in [`Proposal::scans`]; a
//!   workload seen only in them counts as not seen.
//! - The model's workloads left without a policy are listed in
//!   [`Proposal::unproposed_workloads`] with the reason ([`unproposed`]).
//! - Deterministic: everything is sorted; no clock is read.

use std::collections::{BTreeMap, HashMap};

use super::edge::{Edge, EdgeKey, EdgeStats, End, History, WorkloadId};
use super::tiers::{self, Classified, TierFinding};
use bulkhead_flows::record::Timestamp;
use bulkhead_policy::compile::{Compiled, compile};
use bulkhead_policy::model::{Direction, Labels, Model, Protocol};

/// Prefix of every proposed policy's name.
pub const NAME_PREFIX: &str = "bulkhead-";

/// The DNS port.
pub const DNS_PORT: u16 = 53;

mod denied;
pub mod exposure;
pub mod infra;
mod rules;
pub mod scan;
mod types;
pub mod unproposed;
mod workloads;

pub use denied::{DeniedAttempt, denied_attempts};

pub use exposure::{Exposure, InternetFacing};
pub use infra::{DnsServerSpec, Infra, InfraFinding, InfraOptions};
use rules::{PeerAcc, name_policies, rules};
pub use scan::Scan;
pub use types::*;
pub use unproposed::{UnproposedReason, WithoutPolicy};
pub use workloads::Workloads;

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
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Propose rules for the sides of edges the Admin tier already accepts
    /// (by default they are only reported: the Admin tier decides before
    /// NetworkPolicy, so such a rule is never consulted while the
    /// guardrail stands).
    pub include_admin_accepted: bool,
    /// Propose the probe edges of scans (by default they are left out and
    /// listed).
    pub keep_scans: bool,
    /// Rare, recent and left out.
    pub thresholds: Thresholds,
    /// Count denied and quarantined records as observed (by default only
    /// allowed ones are; the others are listed as denied attempts).
    pub include_denied: bool,
    /// DNS servers, the API server, internet-facing sources.
    pub infra: InfraOptions,
}

/// Proposes policies for `history` against `model`, with the default
/// [`Options`].
pub fn propose(history: &History, model: &Model) -> Proposal {
    propose_with(history, model, Options::default())
}

/// Proposes policies for `history` against `model`.
pub fn propose_with(history: &History, model: &Model, options: Options) -> Proposal {
    let denied_attempts = denied_attempts(history);
    let history = &*history.observed(options.include_denied);
    let index = Workloads::new(model);
    let infra = Infra::new(model, history, &index, &options.infra);
    let mut exposure = Exposure::new(model, &index, options.infra.keep_observed_sources);
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
        keep_scans: options.keep_scans,
        thresholds: options.thresholds,
        include_denied: options.include_denied,
        denied_attempts,
        ..Proposal::default()
    };
    let th = options.thresholds;
    // The control plane's edges are never left out (see `infra`).
    let scans = scan::Scans::detect(history, th.scan_targets, options.keep_scans, |k| {
        infra.is_control_plane(k)
    });
    let recent_after = th.recent_after(history.span());
    // Every local workload gets a policy (nothing observed means nothing
    // allowed) if it has labels to be selected by, unless all it was seen
    // in is left-out scan probes (then it was not seen: see `scan`).
    let mut policies = Vec::new();
    let mut locals: Vec<&WorkloadId> = history
        .workloads
        .iter()
        .filter(|(id, info)| info.local && scans.seen(id))
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
            ingress_only: infra.dns_server(id).is_some(),
            notes: infra
                .dns
                .contains_key(id)
                .then(|| infra.dns_header(id))
                .into_iter()
                .collect(),
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
        End::Workload(w) => history.workloads.get(w).is_some_and(|i| i.local) && scans.seen(w),
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
        if scans.leaves_out(key) {
            continue;
        }
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
            if dir == Direction::Egress && infra.dns_server(sid).is_some() {
                // A DNS server's egress is left as it is.
                continue;
            }
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
            if observed.flows < th.min_flows && !infra.is_control_plane(key) {
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
            let (sel, why) =
                infra::widen(&infra, &exposure, sid, dir, peer, protocol, key.port, sel);
            let acc = subjects.entry(sid.clone()).or_default();
            observe(acc, stats);
            if dir == Direction::Ingress {
                exposure.open(sid, protocol, key.port, &mut acc.dirs[dir as usize]);
            }
            let p = acc.dirs[dir as usize].entry(sel).or_default();
            p.notes.extend(why);
            for port in &ports {
                p.ports.insert(*port);
                if *port != (protocol, key.port) {
                    p.added.insert(*port);
                }
            }
            p.observed.push(observed);
        }
    }
    // DNS for all pods (see [`infra`]).
    let dns: Vec<(WorkloadId, PeerSel)> = infra
        .dns
        .keys()
        .filter_map(|w| {
            let labels = labels_of(w);
            (!labels.is_empty()).then(|| {
                let namespace = w.namespace.clone();
                (w.clone(), PeerSel::Pods { namespace, labels })
            })
        })
        .collect();
    // Unless a cluster-admin tier decides it first (as for an edge).
    let open = |src: &WorkloadId, dst: &WorkloadId, side: Direction| {
        let key = EdgeKey {
            src: End::Workload(src.clone()),
            dst: End::Workload(dst.clone()),
            protocol: Protocol::Udp.number(),
            port: DNS_PORT,
        };
        view.as_ref()
            .and_then(|v| v.classify(model, &key))
            .is_none_or(|c| {
                c.denied.is_none()
                    && (c.accepted[side as usize].is_none() || options.include_admin_accepted)
            })
    };
    let mut workloads: Vec<&WorkloadId> = index.pods.keys().collect();
    workloads.sort();
    for p in &policies {
        let acc = subjects.entry(p.subject.clone()).or_default();
        infra::add_dns(&infra, &p.subject, &dns, &workloads, &open, &mut acc.dirs);
    }
    out.infrastructure = infra.findings(&policies, !dns.is_empty(), history);
    out.internet_facing = exposure.findings();
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
    out.unproposed_workloads = unproposed::unproposed(&index, history, &scans, &out);
    out.scans = scans.list;
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

/// `src → dst PROTO/port`.
pub fn edge_text(key: &EdgeKey) -> String {
    let proto = bulkhead_flows::record::IpProtocol(key.protocol);
    if key.port == 0 {
        format!("{} → {} {proto}", key.src, key.dst)
    } else {
        format!("{} → {} {proto}/{}", key.src, key.dst, key.port)
    }
}
