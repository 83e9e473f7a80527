//! One workload's proposed policy from a window of the map, and its diff
//! against the policy of that name in force: what the map's workload
//! details show. The same path as `bulkhead propose`: [`crate::propose`]
//! over the window as a [`History`] and the model, rendered by
//! [`crate::render`], diffed by [`crate::coverage::policy_diff`].

use serde::Serialize;

use crate::coverage::policy_diff;
use crate::edge::{History, WorkloadId};
use bulkhead_policy::model::Model;

/// The proposal for one workload (`GET /v1/map/workload`'s `proposal`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WorkloadProposal {
    /// `namespace/name` of the proposed policy.
    pub policy_name: String,
    /// The proposed policy's YAML, as `bulkhead propose` writes it.
    pub yaml: String,
    /// Block diff against the policy of that name in force; the whole
    /// policy as added when none is; empty when they are the same.
    pub diff: String,
    /// A policy of that name is in force.
    pub in_force: bool,
    /// Lines added or removed by the diff.
    pub changes: usize,
}

/// Why a workload has no proposal.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProposalUnavailable {
    /// No flow of it in the window.
    #[error("{0} was not seen in this time window")]
    NotSeen(String),
    /// Its pods have no labels a selector could use.
    #[error("{0} has no stable labels a policy could select it by")]
    NoStableLabels(String),
    /// Seen, but nothing in the window gives it a policy (e.g. only
    /// denied attempts, or traffic policy cannot name).
    #[error(
        "no policy is proposed for {0} from this time window (only denied attempts or traffic NetworkPolicy cannot express)"
    )]
    NoPolicy(String),
}

/// The proposal for `id` from `history` (a window of the map) against
/// `model` (the policy in force).
pub fn for_workload(
    history: &History,
    model: &Model,
    id: &WorkloadId,
) -> Result<WorkloadProposal, ProposalUnavailable> {
    let name = id.to_string();
    if !history.workloads.contains_key(id) {
        return Err(ProposalUnavailable::NotSeen(name));
    }
    let proposal = crate::propose(history, model);
    let Some(p) = proposal.policies.iter().find(|p| p.subject == *id) else {
        return Err(if proposal.unselectable.contains(&name) {
            ProposalUnavailable::NoStableLabels(name)
        } else {
            ProposalUnavailable::NoPolicy(name)
        });
    };
    let key = p.key();
    let new = p.policy();
    let in_force = model.policies.iter().find(|q| q.key() == key);
    let diff = match in_force {
        Some(old) => policy_diff(old, &new).unwrap_or_default(),
        None => crate::diff::lines("", &crate::yaml::plain(&new)),
    };
    let changes = diff
        .lines()
        .filter(|l| l.starts_with('+') || l.starts_with('-'))
        .count();
    Ok(WorkloadProposal {
        policy_name: key,
        yaml: crate::render::policy_yaml(p),
        diff,
        in_force: in_force.is_some(),
        changes,
    })
}
