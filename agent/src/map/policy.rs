//! What the policy in force says about the map's workloads: their pods,
//! the policies selecting them (with mode and directions), their
//! effective mode, and the ranges external addresses are grouped by.
//!
//! Selection is the model's own: a NetworkPolicy selects the pods of its
//! namespace its `podSelector` matches (as explain's learn-mode listing
//! reads it), a cluster-admin policy the pods its subject matches; each
//! policy's mode is the compiled one ([`Compiled::modes`], from
//! `Model::mode_of`: its own, else its namespace's, else the agent's
//! `--mode`). A workload's **effective mode** is the strictest mode of the
//! policies selecting any of its pods (enforce, then audit, then learn);
//! a workload no policy selects takes its namespace's mode, else the
//! agent's default (what a policy written for it would take).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde::Serialize;

use bulkhead_learn::WorkloadId;
use bulkhead_learn::map::Groups;
use bulkhead_policy::compile::Compiled;
use bulkhead_policy::model::{AdminPeer, Direction, Mode, Model, Peer, Pod, Tier};

/// The workload a model pod belongs to, as flow records name it (the
/// enricher's `workload`, a bare pod `Pod/<name>`).
pub fn workload_of(pod: &Pod) -> WorkloadId {
    WorkloadId {
        namespace: pod.namespace.clone(),
        workload: bulkhead_flows::enrich::workload(pod)
            .unwrap_or_else(|| format!("Pod/{}", pod.name)),
    }
}

/// A policy selecting a workload (`/v1/map/workload`'s `policies`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SelectingPolicy {
    /// `namespace/name`, or `Kind/name` of a cluster-admin policy.
    pub name: String,
    /// `NetworkPolicy`, or the cluster-admin kind.
    pub kind: String,
    /// The cluster-admin tier (`Admin`, `Baseline`); `null` for
    /// NetworkPolicy.
    pub tier: Option<String>,
    /// Its effective mode.
    pub mode: Mode,
    /// `ingress`, `egress`: the directions it has rules for.
    pub directions: Vec<&'static str>,
}

/// The policy in force, indexed for the map.
pub struct PolicyNow {
    /// The model compiled.
    pub model: Arc<Model>,
    /// Its compilation.
    pub compiled: Arc<Compiled>,
    /// Pods (indices into `model.pods`) with an interface on this node.
    pub local: HashSet<usize>,
    /// The ranges external addresses are grouped by.
    pub groups: Groups,
    /// Pods of each workload.
    pub pods: HashMap<WorkloadId, Vec<usize>>,
}

impl PolicyNow {
    /// Indexes `model` (compiled as `compiled`; `local` pods on this node).
    pub fn new(model: Arc<Model>, compiled: Arc<Compiled>, local: &[usize]) -> Self {
        let mut pods: HashMap<WorkloadId, Vec<usize>> = HashMap::new();
        for (i, p) in model.pods.iter().enumerate() {
            pods.entry(workload_of(p)).or_default().push(i);
        }
        let groups = Groups::new(policy_cidrs(&model));
        Self {
            local: local.iter().copied().collect(),
            model,
            compiled,
            groups,
            pods,
        }
    }

    /// The policies selecting any pod of `id`, sorted by name.
    pub fn selecting(&self, id: &WorkloadId) -> Vec<SelectingPolicy> {
        let mut out: BTreeMap<String, SelectingPolicy> = BTreeMap::new();
        let m = &*self.model;
        for &i in self.pods.get(id).into_iter().flatten() {
            let pod = &m.pods[i];
            for (k, p) in m.policies.iter().enumerate() {
                if p.namespace != pod.namespace || !p.pod_selector.matches(&pod.labels) {
                    continue;
                }
                out.entry(p.key()).or_insert_with(|| SelectingPolicy {
                    name: p.key(),
                    kind: "NetworkPolicy".to_owned(),
                    tier: None,
                    mode: self.compiled.modes.get(k).copied().unwrap_or(m.mode_of(p)),
                    directions: Direction::ALL
                        .into_iter()
                        .filter(|d| p.rules(*d).is_some())
                        .map(Direction::as_str)
                        .collect(),
                });
            }
            let ns_labels = m.namespaces.get(&pod.namespace).map(|n| &n.labels);
            let empty = Default::default();
            for (k, a) in m.admin_policies.iter().enumerate() {
                if a.tier == Tier::Quarantine
                    || !a
                        .subject
                        .matches(ns_labels.unwrap_or(&empty), &pod.name, &pod.labels)
                {
                    continue;
                }
                out.entry(a.key()).or_insert_with(|| SelectingPolicy {
                    name: a.key(),
                    kind: a.kind.as_str().to_owned(),
                    tier: Some(a.tier.as_str().to_owned()),
                    mode: self
                        .compiled
                        .admin_modes
                        .get(k)
                        .copied()
                        .unwrap_or(m.admin_mode_of(a)),
                    directions: Direction::ALL
                        .into_iter()
                        .filter(|d| !a.rules(*d).is_empty())
                        .map(Direction::as_str)
                        .collect(),
                });
            }
        }
        out.into_values().collect()
    }

    /// The effective mode of `id` (see the module doc), `None` when the
    /// model has no pod of it.
    pub fn mode(&self, id: &WorkloadId) -> Option<Mode> {
        self.pods.get(id)?;
        let strictest = self.selecting(id).into_iter().map(|p| p.mode).min();
        Some(strictest.unwrap_or_else(|| {
            self.model
                .namespaces
                .get(&id.namespace)
                .and_then(|n| n.mode)
                .unwrap_or(self.model.default_mode)
        }))
    }

    /// The pods of `id` (indices into the model's pods).
    pub fn pods_of(&self, id: &WorkloadId) -> &[usize] {
        self.pods.get(id).map_or(&[], Vec::as_slice)
    }
}

/// Every `ipBlock` CIDR of the model's policies and cluster-admin
/// `networks` peers.
fn policy_cidrs(model: &Model) -> Vec<ipnetwork::IpNetwork> {
    let mut out = Vec::new();
    for p in &model.policies {
        for d in Direction::ALL {
            for rule in p.rules(d).unwrap_or_default() {
                for peer in rule.peers.iter().flatten() {
                    if let Peer::IpBlock(b) = peer {
                        out.push(b.cidr);
                    }
                }
            }
        }
    }
    for a in &model.admin_policies {
        for d in Direction::ALL {
            for rule in a.rules(d) {
                for peer in &rule.peers {
                    if let AdminPeer::Networks(nets) = peer {
                        out.extend(nets.iter().copied());
                    }
                }
            }
        }
    }
    out
}
