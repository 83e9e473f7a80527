//! The agent's network map: the flow map (`bulkhead_learn::map`, fed by
//! its exporter in the flow pipeline) read with the policy in force, the
//! active baselines and the quarantines, as the `/v1/map*` routes serve it
//! ([`MapSource`]).
//!
//! Each answer copies the window out of the map under its lock (bounded by
//! `--map-max-entries`), then builds its JSON without it. The policy in
//! force is the reconciler's (`update_policy`, one `Arc` swap per enforced
//! revision), so explain and the proposal say what policy says now.

mod backend;
mod details;
pub mod metrics;
pub mod policy;
#[cfg(test)]
mod tests;

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::Serialize;

use crate::api::{FlowStream, MapError, Next};
use bulkhead_learn::map::view::{Follower, MapView, Parts, SCHEMA, ViewContext};
use bulkhead_learn::map::{Cells, Groups, MapSubscription, SharedMap};
use bulkhead_learn::{EdgeKey, Window, WorkloadId};
use bulkhead_policy::compile::Compiled;
use bulkhead_policy::model::Model;

pub use backend::MapBackend;
pub use policy::PolicyNow;

/// Merges of increments queued for one map follower; beyond, they are
/// lost for it (counted in edges).
pub const FOLLOW_QUEUE: usize = 256;

/// The agent's baseline alerting, shared with the flow side.
pub type AlertsSlot = Arc<Mutex<Option<crate::alerts::Alerts>>>;

/// The map as the API serves it.
pub struct MapSource {
    map: Arc<SharedMap>,
    node: String,
    recent: Option<Arc<bulkhead_flows::History>>,
    quarantines: Option<Arc<crate::quarantine::QuarantineStore>>,
    alerts: AlertsSlot,
    policy: RwLock<Option<Arc<PolicyNow>>>,
}

/// What a view is built with: the policy in force, the baselines' verdict
/// on the window's edges, the quarantined workloads.
pub(crate) struct Context {
    policy: Option<Arc<PolicyNow>>,
    groups: Groups,
    outside: HashSet<EdgeKey>,
    quarantined: HashSet<WorkloadId>,
}

impl ViewContext for Context {
    fn groups(&self) -> &Groups {
        &self.groups
    }
    fn outside_baseline(&self, key: &EdgeKey) -> bool {
        self.outside.contains(key)
    }
    fn mode(&self, id: &WorkloadId) -> Option<String> {
        let mode = self.policy.as_ref()?.mode(id)?;
        Some(mode.as_str().to_owned())
    }
    fn quarantined(&self, id: &WorkloadId) -> bool {
        self.quarantined.contains(id)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl MapSource {
    /// The map `map` of node `node`, with the recent-flows ring `recent`
    /// (edge details), the quarantine store and the baseline alerting.
    pub fn new(
        map: Arc<SharedMap>,
        node: &str,
        recent: Option<Arc<bulkhead_flows::History>>,
        quarantines: Option<Arc<crate::quarantine::QuarantineStore>>,
        alerts: AlertsSlot,
    ) -> Self {
        Self {
            map,
            node: node.to_owned(),
            recent,
            quarantines,
            alerts,
            policy: RwLock::new(None),
        }
    }

    /// The map itself.
    pub fn map(&self) -> &Arc<SharedMap> {
        &self.map
    }

    /// `text` (OpenMetrics) with the map's metrics appended.
    pub fn append_metrics(&self, text: String) -> String {
        metrics::append(text, self.map.stats(), self.map.subscribers())
    }

    /// Takes the policy now in force (`local`: the pods on this node).
    pub fn update_policy(&self, model: &Arc<Model>, compiled: &Arc<Compiled>, local: &[usize]) {
        let now = PolicyNow::new(Arc::clone(model), Arc::clone(compiled), local);
        *self.policy.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(now));
    }

    fn policy(&self) -> Option<Arc<PolicyNow>> {
        self.policy
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The context for views of `cells`.
    pub(crate) fn context(&self, cells: &Cells) -> Context {
        let policy = self.policy();
        let outside = match lock(&self.alerts).as_ref() {
            Some(a) => a.outside_baseline(cells.edges.keys()),
            None => HashSet::new(),
        };
        let mut quarantined = HashSet::new();
        if let (Some(store), Some(p)) = (&self.quarantines, &policy) {
            for q in store.in_force().quarantines {
                if let Some((_, pod)) = p.model.pod(&q.key()) {
                    quarantined.insert(policy::workload_of(pod));
                }
            }
        }
        Context {
            groups: policy
                .as_ref()
                .map(|p| p.groups.clone())
                .unwrap_or_default(),
            policy,
            outside,
            quarantined,
        }
    }

    /// `GET /v1/map` (`exporter_lost`: records the map's exporter lost,
    /// its queue full, added to the map's own).
    pub fn view(&self, window: Window, exporter_lost: u64) -> String {
        let now = crate::flows::unix_ms();
        let (cells, info, stats) = self.map.window(window, now);
        let ctx = self.context(&cells);
        let view = MapView {
            schema: SCHEMA,
            node: self.node.clone(),
            generated_at: now,
            window: info,
            revision: stats.revision,
            parts: Parts::of(&cells, &ctx),
            evicted_buckets: stats.evicted_buckets,
            lost_records: stats.lost_records + exporter_lost,
        };
        serde_json::to_string(&view).expect("map views serialize")
    }

    /// `GET /v1/map/follow`: the window `since` (if given), then the
    /// increments.
    pub fn follow(self: &Arc<Self>, since: Option<Window>) -> Box<dyn FlowStream> {
        let now = crate::flows::unix_ms();
        let (sub, backlog) = self.map.subscribe(FOLLOW_QUEUE, since, now);
        let mut stream = MapFollow {
            source: Arc::clone(self),
            sub,
            follower: Follower::default(),
            lines: VecDeque::new(),
            lost_reported: 0,
        };
        if let Some((revision, cells)) = backlog {
            stream.push(revision, &cells);
        }
        Box::new(stream)
    }

    /// `GET /v1/map/edge`.
    pub fn edge(&self, q: &crate::api::EdgeQuery) -> Result<String, MapError> {
        details::edge(self, q)
    }

    /// `GET /v1/map/workload`.
    pub fn workload(&self, q: &crate::api::WorkloadQuery) -> Result<String, MapError> {
        details::workload(self, q)
    }
}

/// A map follower: lines built from each merge's increments as they come.
struct MapFollow {
    source: Arc<MapSource>,
    sub: MapSubscription,
    follower: Follower,
    lines: VecDeque<String>,
    lost_reported: u64,
}

impl MapFollow {
    fn push(&mut self, revision: u64, cells: &Cells) {
        let ctx = self.source.context(cells);
        self.lines
            .extend(self.follower.lines(revision, cells, &ctx));
    }
}

impl FlowStream for MapFollow {
    fn next(&mut self, timeout: Duration) -> Next {
        if let Some(l) = self.lines.pop_front() {
            return Next::Record(l);
        }
        let lost = self.sub.lost();
        if lost > self.lost_reported {
            let n = lost - self.lost_reported;
            self.lost_reported = lost;
            return Next::Lost(n);
        }
        match self.sub.recv_timeout(timeout) {
            Ok((revision, cells)) => {
                self.push(revision, &cells);
                match self.lines.pop_front() {
                    Some(l) => Next::Record(l),
                    None => Next::Idle,
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Next::Idle,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Next::Closed,
        }
    }
}

/// A JSON answer with its schema first.
#[derive(Serialize)]
struct Schema<'a, T: Serialize> {
    schema: &'static str,
    #[serde(flatten)]
    body: &'a T,
}

/// `body` as JSON text under `schema`.
fn with_schema(schema: &'static str, body: &impl Serialize) -> String {
    serde_json::to_string(&Schema { schema, body }).expect("map answers serialize")
}
