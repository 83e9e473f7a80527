//! Rules from per-peer observations, and the proposed policies' names.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::{NAME_PREFIX, Observed, PeerSel, ProposedPeer, ProposedPolicy, ProposedRule};
use bulkhead_policy::model::Protocol;

/// What one subject's direction observed with one peer.
#[derive(Default)]
pub(super) struct PeerAcc {
    pub(super) ports: BTreeSet<(Protocol, u16)>,
    pub(super) added: BTreeSet<(Protocol, u16)>,
    pub(super) notes: BTreeSet<String>,
    pub(super) observed: Vec<Observed>,
}

/// Peers with identical port sets share a rule; rules sorted by port set.
pub(super) fn rules(peers: BTreeMap<PeerSel, PeerAcc>) -> Vec<ProposedRule> {
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
            notes: acc.notes.into_iter().collect(),
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
pub(super) fn name_policies(policies: &mut [ProposedPolicy]) {
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
