//! The quarantine types of the local API (`/v1/quarantine`) and of the
//! state file, and how the reconciler states what is in force.

use std::collections::BTreeSet;

use bulkhead_policy::model::{Model, QUARANTINE_LABEL, Quarantine};
use serde::{Deserialize, Serialize};

/// `POST /v1/quarantine`: quarantine one pod (a [`Quarantine`] whose
/// `reason` may be left out).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuarantineRequest {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
    /// Why (one line, at most 256 characters).
    #[serde(default)]
    pub reason: Option<String>,
    /// Let the pod still resolve names through the cluster's DNS.
    #[serde(default)]
    pub allow_dns: bool,
}

/// One quarantine as the store keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredQuarantine {
    /// The pod, why, and whether DNS stays open.
    #[serde(flatten)]
    pub quarantine: Quarantine,
    /// When it was set (milliseconds since the epoch).
    pub since_unix_ms: u64,
}

/// Where a quarantine comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuarantineOrigin {
    /// The agent's store (`bulkhead quarantine`, `POST /v1/quarantine`).
    Store,
    /// The pod's label `bulkhead.io/quarantine` (only).
    Label,
}

/// One quarantine in force, as the agent enforces it (state file, API).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineState {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
    /// Why.
    pub reason: String,
    /// The pod may still resolve names through the cluster's DNS.
    pub allow_dns: bool,
    /// Where it comes from (a stored quarantine of a labelled pod is
    /// [`QuarantineOrigin::Store`], with `labelled` set).
    pub origin: QuarantineOrigin,
    /// The pod also carries the quarantine label.
    #[serde(default)]
    pub labelled: bool,
    /// When it was set (stored quarantines), milliseconds since the epoch.
    pub since_unix_ms: Option<u64>,
    /// The policy source knows the pod (a quarantine of a pod it does not
    /// know takes effect when the pod appears).
    pub in_model: bool,
    /// The pod has a veth on this node.
    pub local: bool,
    /// Enforced on this node: local, with its hooks attached and the
    /// revision holding the quarantine in force.
    pub enforced: bool,
}

impl QuarantineState {
    /// `namespace/pod`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.pod)
    }
}

/// `GET /v1/quarantine` (and the answer of `POST`): what is in force.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineList {
    /// The store's generation (bumped by each change).
    pub generation: u64,
    /// The store generation the dataplane enforces (`None` before the
    /// agent's first sync).
    pub enforced_generation: Option<u64>,
    /// The quarantines in force, the store's and the labels'.
    pub quarantines: Vec<QuarantineState>,
    /// Stored quarantines not in force yet.
    #[serde(default)]
    pub pending: Vec<StoredQuarantine>,
}

impl QuarantineList {
    /// The quarantine of `namespace/pod` in force, if any.
    pub fn find(&self, namespace: &str, pod: &str) -> Option<&QuarantineState> {
        self.quarantines
            .iter()
            .find(|q| q.namespace == namespace && q.pod == pod)
    }
}

/// `DELETE /v1/quarantine/{namespace}/{pod}`: whether the store held it,
/// and what is in force once the removal is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveAnswer {
    /// The store held a quarantine of the pod.
    pub removed: bool,
    /// What is in force now.
    #[serde(flatten)]
    pub in_force: QuarantineList,
}

/// The quarantines `model` (compiled with `stored` applied) holds: the
/// stored ones and those of the pods' labels, sorted by pod. `local`
/// holds the `namespace/name` of the pods with a veth on this node;
/// `enforced` whether their hooks and the revision are in force.
pub(crate) fn states(
    model: &Model,
    stored: &[StoredQuarantine],
    local: &BTreeSet<String>,
    enforced: bool,
) -> Vec<QuarantineState> {
    let labelled = model.labelled_quarantines();
    let known: BTreeSet<String> = model.pods.iter().map(|p| p.key()).collect();
    let state = |q: &Quarantine, origin, since_unix_ms, is_labelled| {
        let key = q.key();
        let local = local.contains(&key);
        QuarantineState {
            namespace: q.namespace.clone(),
            pod: q.pod.clone(),
            reason: q.reason.clone(),
            allow_dns: q.allow_dns,
            origin,
            labelled: is_labelled,
            since_unix_ms,
            in_model: known.contains(&key),
            local,
            enforced: local && enforced,
        }
    };
    let mut out: Vec<QuarantineState> = stored
        .iter()
        .map(|s| {
            let label = labelled.iter().find(|l| l.key() == s.quarantine.key());
            let mut q = s.quarantine.clone();
            // As `Model::apply_quarantines` merges them.
            q.allow_dns |= label.is_some_and(|l| l.allow_dns);
            state(
                &q,
                QuarantineOrigin::Store,
                Some(s.since_unix_ms),
                label.is_some(),
            )
        })
        .collect();
    for l in &labelled {
        if !stored.iter().any(|s| s.quarantine.key() == l.key()) {
            out.push(state(l, QuarantineOrigin::Label, None, true));
        }
    }
    out.sort_by(|a, b| (&a.namespace, &a.pod).cmp(&(&b.namespace, &b.pod)));
    out
}

/// What to do to lift a quarantine that comes from the pod's label.
pub fn label_hint(namespace: &str, pod: &str) -> String {
    format!("kubectl label pod -n {namespace} {pod} {QUARANTINE_LABEL}-")
}
