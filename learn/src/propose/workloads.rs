//! Which model pods a workload stands for, and the labels that select it.

use std::collections::HashMap;

use crate::edge::{History, WorkloadId};
use crate::labels;
use bulkhead_policy::model::{Labels, Model};

/// Which model pods each workload stands for, and its selector labels.
pub struct Workloads {
    /// Model pod indices per workload.
    pub pods: HashMap<WorkloadId, Vec<usize>>,
}

impl Workloads {
    /// Indexes the model's pods by workload (as flow records name them).
    pub fn new(model: &Model) -> Self {
        let mut pods: HashMap<WorkloadId, Vec<usize>> = HashMap::new();
        for (i, p) in model.pods.iter().enumerate() {
            let workload =
                bulkhead_flows::enrich::workload(p).unwrap_or_else(|| format!("Pod/{}", p.name));
            pods.entry(WorkloadId {
                namespace: p.namespace.clone(),
                workload,
            })
            .or_default()
            .push(i);
        }
        Self { pods }
    }

    /// Stable labels of a workload: those all its model pods share, else
    /// the observed ones.
    pub fn labels(&self, model: &Model, history: &History, id: &WorkloadId) -> Labels {
        match self.pods.get(id) {
            Some(pods) => labels::common(pods.iter().map(|&i| &model.pods[i].labels))
                .into_iter()
                .filter(|(k, _)| !labels::is_generated(k))
                .collect(),
            None => history
                .workloads
                .get(id)
                .map(|w| labels::stable(&w.labels))
                .unwrap_or_default(),
        }
    }
}
