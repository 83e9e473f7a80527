//! What the proposed policies would do to the workloads they leave without
//! a policy: read from the compiled tables of the model with the proposal
//! applied (`table_grants`, the evaluator's own port sets), never
//! interpreted here.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;

use crate::propose::{Proposal, UnproposedReason, Workloads};
use bulkhead_policy::compile::{Compiled, IdentityId, TableId};
use bulkhead_policy::eval::connectivity::{PortSets, Ranges, table_grants};
use bulkhead_policy::model::{Direction, Model, Protocol};

/// A workload of the model without a proposed policy, and what the
/// proposed policies do to its traffic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UnproposedWorkload {
    /// `namespace/Kind/name`.
    pub workload: String,
    /// Why it has no policy.
    pub reason: UnproposedReason,
    /// Proposed policies whose subject's ingress admits nothing from its
    /// pods (`ns/name (ingress)`), or whose egress admits nothing to them
    /// (`ns/name (egress)`), sorted.
    pub denied_by: Vec<String>,
    /// Proposed policies admitting some of that traffic, and on which
    /// ports (`ns/name ingress TCP/8080, UDP/53`), sorted.
    pub allowed_by: Vec<String>,
}

/// For every workload `proposal` leaves without a policy: for every
/// proposed policy, whether its subject's pods admit anything from the
/// workload's pods (ingress) or send anything to them (egress), in
/// `compiled` (of `combined`: the model with the proposal applied). A
/// side admits the union of what its tables grant the workload's pods.
/// A workload without an address, or a subject without pods, in the
/// manifests gives no entry.
pub(super) fn effects(
    combined: &Model,
    compiled: &Compiled,
    index: &Workloads,
    proposal: &Proposal,
) -> Vec<UnproposedWorkload> {
    let mut cache: HashMap<(Option<TableId>, IdentityId), PortSets> = HashMap::new();
    let mut grants = |table: Option<TableId>, peer: IdentityId| {
        cache
            .entry((table, peer))
            .or_insert_with(|| table_grants(compiled, table, peer))
            .clone()
    };
    let pods = |id| index.pods.get(id).map(Vec::as_slice).unwrap_or_default();
    proposal
        .unproposed_workloads
        .iter()
        .map(|u| {
            let peers: BTreeSet<IdentityId> = pods(&u.workload)
                .iter()
                .flat_map(|&i| &combined.pods[i].ips)
                .map(|a| compiled.identity_of(*a))
                .collect();
            let (mut denied_by, mut allowed_by) = (Vec::new(), Vec::new());
            // Without an address in the manifests, nothing can be said.
            for p in proposal.policies.iter().filter(|_| !peers.is_empty()) {
                // A policy without an egress section (a DNS server's) does
                // nothing to egress: not listed either way.
                let directions: &[Direction] = if p.ingress_only {
                    &[Direction::Ingress]
                } else {
                    &[Direction::Ingress, Direction::Egress]
                };
                for &d in directions {
                    let tables: BTreeSet<Option<TableId>> = pods(&p.subject)
                        .iter()
                        .map(|&i| compiled.endpoints[i].table(d))
                        .collect();
                    if tables.is_empty() {
                        // A subject not in the manifests: no pod to judge.
                        continue;
                    }
                    let mut admitted = PortSets::default();
                    for &t in &tables {
                        for &peer in &peers {
                            admitted = union(&admitted, &grants(t, peer));
                        }
                    }
                    if admitted.is_empty() {
                        denied_by.push(format!("{} ({d})", p.key()));
                    } else {
                        allowed_by.push(format!("{} {d} {}", p.key(), ports_text(&admitted)));
                    }
                }
            }
            denied_by.sort();
            allowed_by.sort();
            UnproposedWorkload {
                workload: u.workload.to_string(),
                reason: u.reason,
                denied_by,
                allowed_by,
            }
        })
        .collect()
}

fn union(a: &PortSets, b: &PortSets) -> PortSets {
    PortSets {
        by_protocol: std::array::from_fn(|i| {
            let mut v = a.by_protocol[i].0.clone();
            v.extend_from_slice(&b.by_protocol[i].0);
            Ranges::from_unsorted(v)
        }),
    }
}

/// `TCP/8080, TCP/9000-9100, UDP/53`; `all ports` for everything.
fn ports_text(sets: &PortSets) -> String {
    if sets.is_all() {
        return "all ports".to_owned();
    }
    Protocol::ALL
        .into_iter()
        .flat_map(|p| {
            sets.get(p).0.iter().map(move |&(lo, hi)| {
                if lo == hi {
                    format!("{p}/{lo}")
                } else {
                    format!("{p}/{lo}-{hi}")
                }
            })
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests;
