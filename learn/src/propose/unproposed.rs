//! The model's workloads the proposal gives no policy, and why: the proof
//! names them and says what the proposed policies would do to their
//! traffic (`crate::coverage`), since a workload without a policy stays
//! open and its peers' new policies may deny what it will need.

use std::collections::HashSet;

use serde::Serialize;

use super::scan::Scans;
use super::{Proposal, Workloads};
use crate::edge::{History, WorkloadId};

/// Why a workload of the model has no proposed policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnproposedReason {
    /// No flow in the window (scan probes aside, unless kept).
    NotSeen,
    /// Seen locally, but no label all its pods share to select them by
    /// (also listed as unselectable).
    NoStableLabels,
    /// Seen only as the remote peer of another node's pod: its own
    /// traffic was not all visible (merge its node's history).
    RemoteOnly,
}

impl UnproposedReason {
    /// The reason in plain words.
    pub fn text(self) -> &'static str {
        match self {
            UnproposedReason::NotSeen => "not seen (no flow in the window)",
            UnproposedReason::NoStableLabels => "no stable labels to select it by",
            UnproposedReason::RemoteOnly => {
                "seen only as a remote peer (merge the history of its node to cover it)"
            }
        }
    }
}

/// A workload of the model without a proposed policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WithoutPolicy {
    /// The workload.
    pub workload: WorkloadId,
    /// Why it has none.
    pub reason: UnproposedReason,
}

/// Every workload of the model (its pods grouped as [`Workloads`] does)
/// that `out`'s policies leave without one, sorted.
pub(super) fn unproposed(
    index: &Workloads,
    history: &History,
    scans: &Scans<'_>,
    out: &Proposal,
) -> Vec<WithoutPolicy> {
    let subjects: HashSet<&WorkloadId> = out.policies.iter().map(|p| &p.subject).collect();
    let unselectable: HashSet<&str> = out.unselectable.iter().map(String::as_str).collect();
    let mut v: Vec<WithoutPolicy> = index
        .pods
        .keys()
        .filter(|id| !subjects.contains(id))
        .filter_map(|id| {
            let reason = if unselectable.contains(id.to_string().as_str()) {
                UnproposedReason::NoStableLabels
            } else if !scans.seen(id) {
                UnproposedReason::NotSeen
            } else if history.workloads.get(id).is_some_and(|w| !w.local) {
                UnproposedReason::RemoteOnly
            } else {
                // Seen locally with labels: it has a policy.
                return None;
            };
            Some(WithoutPolicy {
                workload: id.clone(),
                reason,
            })
        })
        .collect();
    v.sort_by(|a, b| a.workload.cmp(&b.workload));
    v
}
