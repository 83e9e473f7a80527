//! A proposal as YAML: one document per policy, with comments saying what
//! was observed, and when, behind every peer; rare and recent
//! observations flagged (see [`super::propose::Thresholds`]).

use super::propose::{Observed, Proposal, ProposedPolicy, ProposedRule, Thresholds};
use super::yaml::{self, Place};
use bulkhead_flows::record::Timestamp;
use bulkhead_policy::model::{Mode, Policy};

fn when(first: Option<Timestamp>, last: Option<Timestamp>) -> String {
    match (first, last) {
        (Some(f), Some(l)) => format!("first {f}, last {l}"),
        _ => "nothing".into(),
    }
}

/// `1 edge`, `2 edges`.
pub(crate) fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn ports_text(ports: &[(bulkhead_policy::model::Protocol, u16)]) -> String {
    ports
        .iter()
        .map(|(p, n)| format!("{p}/{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// ` — RARE: …; RECENT: …` for a flagged observation, else nothing.
pub fn flags(o: &Observed, th: &Thresholds) -> String {
    let mut f = Vec::new();
    if o.rare {
        f.push(if o.flows == 1 {
            "RARE: seen once".to_string()
        } else {
            format!("RARE: {} flows", o.flows)
        });
    }
    if o.recent {
        f.push(format!(
            "RECENT: first seen in the last {}% of the window",
            th.recent_percent
        ));
    }
    if f.is_empty() {
        String::new()
    } else {
        format!(" — {}", f.join("; "))
    }
}

fn note(p: &ProposedPolicy, place: Place) -> Vec<String> {
    match place {
        Place::Header => [
            format!(
                "Proposed by `bulkhead propose` for {} in namespace {}.",
                p.subject.workload, p.namespace
            ),
            format!(
                "observed: {}, {}, {}",
                plural(p.edges, "edge", "edges"),
                plural(p.flows, "flow", "flows"),
                when(p.first, p.last)
            ),
        ]
        .into_iter()
        .chain(p.notes.iter().cloned())
        .chain(
            p.tiers
                .iter()
                .map(|(_, f)| format!("cluster-admin tier: {f}")),
        )
        .collect(),
        Place::NoRules(d) if p.tiers.iter().any(|(td, _)| *td == d) => {
            vec![format!(
                "no {} proposed: what the cluster-admin tiers do not decide is denied",
                d.as_str()
            )]
        }
        Place::NoRules(d) if p.left_out[d as usize] > 0 => vec![format!(
            "no {} proposed: {} left out below --min-flows {}; all {} denied",
            d.as_str(),
            plural(p.left_out[d as usize], "entry", "entries"),
            p.thresholds.min_flows,
            d.as_str()
        )],
        Place::NoRules(d) => vec![format!(
            "no {} observed: all {} denied",
            d.as_str(),
            d.as_str()
        )],
        Place::Rule(d, i) => {
            let r: &ProposedRule = &p.rules(d)[i];
            if r.added.is_empty() {
                vec![]
            } else {
                vec![format!(
                    "DNS: {} added (UDP and TCP 53 go together; TCP carries truncated answers)",
                    ports_text(&r.added)
                )]
            }
        }
        Place::Peer(d, i, j) => p.rules(d)[i].peers[j]
            .notes
            .iter()
            .cloned()
            .chain(p.rules(d)[i].peers[j].observed.iter().map(|o| {
                format!(
                    "observed: {} {}/{}: {}, first {}, last {}{}",
                    o.peer,
                    o.protocol,
                    o.port,
                    plural(o.flows, "flow", "flows"),
                    o.first,
                    o.last,
                    flags(o, &p.thresholds)
                )
            }))
            .collect(),
    }
}

/// One proposed policy as a YAML document.
pub fn policy_yaml(p: &ProposedPolicy) -> String {
    policy_yaml_in(p, None)
}

/// One proposed policy as a YAML document that sets its own `mode` (the
/// `bulkhead.io/mode` annotation), if given: `None` writes no annotation,
/// so the policy takes its namespace's or the agent's mode.
pub fn policy_yaml_in(p: &ProposedPolicy, mode: Option<Mode>) -> String {
    // The mode is a choice about how to apply the proposal, not part of
    // what was learned, so it is set here rather than in the proposal.
    let policy = Policy { mode, ..p.policy() };
    yaml::policy(&policy, &|place| note(p, place))
}

/// Every proposed policy, as one multi-document YAML stream.
pub fn proposal_yaml(proposal: &Proposal) -> String {
    proposal_yaml_in(proposal, None)
}

/// Every proposed policy in `mode` (see [`policy_yaml_in`]), as one
/// multi-document YAML stream.
pub fn proposal_yaml_in(proposal: &Proposal, mode: Option<Mode>) -> String {
    let mut out = String::new();
    for (i, p) in proposal.policies.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&policy_yaml_in(p, mode));
    }
    out
}

/// The file name a policy is written to in `--output-dir`.
pub fn file_name(p: &ProposedPolicy) -> String {
    format!("{}.{}.yaml", p.namespace, p.name)
}
