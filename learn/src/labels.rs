//! Stable labels: the labels a workload's pods carry because its template
//! says so, without the ones controllers generate per revision, per pod or
//! per run. Proposals select pods by these only.

use bulkhead_policy::model::Labels;

/// Label keys Kubernetes controllers generate; never used in a selector.
///
/// - `pod-template-hash`: Deployment → ReplicaSet revision;
/// - `controller-revision-hash`: StatefulSet and DaemonSet revision;
/// - `pod-template-generation`: DaemonSet (legacy) revision;
/// - `statefulset.kubernetes.io/pod-name`, `apps.kubernetes.io/pod-index`:
///   one StatefulSet pod;
/// - `job-name`, `controller-uid`, `batch.kubernetes.io/job-name`,
///   `batch.kubernetes.io/controller-uid`,
///   `batch.kubernetes.io/job-completion-index`: one Job run (a CronJob's
///   jobs differ every run).
pub const GENERATED_LABELS: [&str; 10] = [
    "pod-template-hash",
    "controller-revision-hash",
    "pod-template-generation",
    "statefulset.kubernetes.io/pod-name",
    "apps.kubernetes.io/pod-index",
    "job-name",
    "controller-uid",
    "batch.kubernetes.io/job-name",
    "batch.kubernetes.io/controller-uid",
    "batch.kubernetes.io/job-completion-index",
];

/// Whether a label key is generated (see [`GENERATED_LABELS`]).
pub fn is_generated(key: &str) -> bool {
    GENERATED_LABELS.contains(&key)
}

/// `labels` without the generated ones.
pub fn stable(labels: &Labels) -> Labels {
    labels
        .iter()
        .filter(|(k, _)| !is_generated(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The labels every one of `sets` carries with the same value.
pub fn common<'a>(mut sets: impl Iterator<Item = &'a Labels>) -> Labels {
    let Some(first) = sets.next() else {
        return Labels::new();
    };
    let mut out = first.clone();
    for s in sets {
        out.retain(|k, v| s.get(k) == Some(v));
    }
    out
}
