//! The agent's flow side: the kernel flow tap feeding the flow pipeline
//! (history, exporters, metrics) and the local API serving it, including
//! the durable history store, which the history exporter writes and the
//! API reads (one `Arc<HistoryStore>`: redb reads run beside its writer).
//!
//! Nothing here may stop enforcement: a pipeline or API that cannot start
//! is logged and reported by `/healthz` (degraded), and the agent goes on.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bulkhead_common::{FLOW_CONFIG_ACCOUNTING, FLOW_CONFIG_EVENTS_DROP, FLOW_CONFIG_EVENTS_NEW};
use serde_json::json;

use crate::api::{
    Api, ApiBackend, ApiConfig, ApiHandle, EdgeQuery, FlowStream, Health, HealthStatus,
    HistoryError, MapError, Next, TimelineError, TimelineQuery, WorkloadQuery,
};
use crate::timeline::{Enforced, TimelineSource};
use bulkhead_dataplane::flowtap::FlowTap;
use bulkhead_dataplane::{Dataplane, status};
use bulkhead_flows::export::{Exporter, IpfixExporter, JsonlExporter};
use bulkhead_flows::{
    Enricher, Filter, History, Metrics, Pipeline, PipelineConfig, PipelineHandle, SharedEnricher,
    Subscription,
};
use bulkhead_learn::exporter::BatchSink;
use bulkhead_learn::map::{MapExporter, MapSink, SharedMap};
use bulkhead_learn::timeline::exporter::TimelineExporter;
use bulkhead_learn::timeline::{Retention, Timeline};
use bulkhead_learn::{HistoryExporter, HistoryExporterConfig, HistoryStore, StoreConfig};
use bulkhead_policy::compile::Compiled;
use bulkhead_policy::model::Model;

use super::AgentState;

/// Queue of one `--follow` subscriber; beyond it records are lost for it.
const FOLLOW_QUEUE: usize = 4_096;

/// How often map fill and drop counters are read for metrics (reading CT's
/// fill walks its keys).
const METRICS_REFRESH: Duration = Duration::from_secs(5);

/// The flow side's configuration.
#[derive(Clone, Debug)]
pub struct FlowsConfig {
    /// Account flows in the kernel and run the pipeline.
    pub enabled: bool,
    /// The pipeline (node name, exporters, timeouts).
    pub pipeline: PipelineConfig,
    /// The local API.
    pub api: ApiConfig,
    /// Durable edge history for `bulkhead propose` (an exporter), if any.
    pub history_db: Option<PathBuf>,
    /// Its limits and time buckets.
    pub history_store: StoreConfig,
    /// The forensic timeline (flows, alerts, quarantine, policy and mode
    /// changes per pod), if any.
    pub timeline_db: Option<PathBuf>,
    /// What the timeline keeps.
    pub timeline_retention: Retention,
    /// Baseline-deviation alerts (idle until a baseline is active).
    pub alerts: crate::alerts::AlertsConfig,
    /// The network map's time buckets and bounds (kept whenever flows
    /// are on).
    pub map: bulkhead_learn::map::MapConfig,
}

/// The durable history as `GET /v1/history` serves it.
#[derive(Clone, Debug)]
pub enum HistorySource {
    /// The agent runs without `--history-db`.
    None,
    /// `--history-db` was given but the store is not open.
    NotOpen {
        /// The configured file.
        path: PathBuf,
        /// Why not (flows off, or the store's or pipeline's error).
        reason: String,
    },
    /// The open store, shared with the history exporter that writes it
    /// (still served if the rest of the pipeline failed to start).
    Open(Arc<HistoryStore>),
}

impl HistorySource {
    /// The store's committed content as JSON (`learn::store::Stored`'s
    /// form), read in one read transaction beside the exporter's writes.
    pub fn json(&self, window: bulkhead_learn::Window) -> Result<String, HistoryError> {
        match self {
            HistorySource::None => Err(HistoryError::NotKept),
            HistorySource::NotOpen { path, reason } => Err(HistoryError::NotOpen {
                path: path.clone(),
                reason: reason.clone(),
            }),
            HistorySource::Open(store) => {
                let stored = store
                    .load_window(window)
                    .map_err(|e| HistoryError::Read(Box::new(e)))?;
                Ok(serde_json::to_string(&stored).expect("history types serialize"))
            }
        }
    }
}

/// What the API threads share with the agent loop.
struct Shared {
    pipeline: Mutex<Option<PipelineHandle>>,
    history: Option<Arc<History>>,
    store: HistorySource,
    /// One `/v1/history` answer built at a time: each holds the whole
    /// history and its JSON in memory (a million edges: hundreds of MiB).
    /// `/v1/timeline` answers take it too (up to `max_limit` events each).
    history_answer: Mutex<()>,
    /// The forensic timeline.
    timeline: TimelineSource,
    /// The baseline detectors, when alerting is on.
    alerts: crate::map::AlertsSlot,
    /// The network map, whenever the pipeline runs.
    map: Option<Arc<crate::map::MapSource>>,
    metrics: Arc<Metrics>,
    health: Mutex<HealthState>,
    /// CNI registrations the API's `/v1/cni` routes serve.
    cni: Arc<crate::cni::Registry>,
    /// Quarantines the API's `/v1/quarantine` routes serve.
    quarantines: Arc<crate::quarantine::QuarantineStore>,
}

#[derive(Clone, Debug, Default)]
struct HealthState {
    /// A complete view has been enforced (the state's `enforced_revision`).
    enforced: bool,
    revision: u64,
    endpoints: usize,
    error: Option<String>,
    flow_error: Option<String>,
    api_error: Option<String>,
    /// The policy source's state.
    source: bulkhead_policy::source::SourceStatus,
}

/// The running flow side of the agent.
pub struct AgentFlows {
    shared: Arc<Shared>,
    /// What the last enforced revision subjected the local pods to (the
    /// timeline's reference for the next one).
    enforced: Mutex<Option<Enforced>>,
    enricher: SharedEnricher,
    api: Option<ApiHandle>,
    last_refresh: Option<Instant>,
}

impl AgentFlows {
    /// Starts flow accounting, the pipeline and the API (served from
    /// `runtime`, with the CNI routes over `cni` and the quarantine routes
    /// over `quarantines`). Failures are logged and leave the rest running.
    pub fn start(
        dp: &Dataplane,
        cfg: &FlowsConfig,
        cni: Arc<crate::cni::Registry>,
        quarantines: Arc<crate::quarantine::QuarantineStore>,
        runtime: &tokio::runtime::Handle,
    ) -> Self {
        let enricher: SharedEnricher = Arc::new(RwLock::new(Enricher::empty()));
        let mut health = HealthState::default();
        let mut pipeline = None;
        let timeline = open_timeline(cfg, &mut health);
        let mut store = match &cfg.history_db {
            Some(path) => HistorySource::NotOpen {
                path: path.clone(),
                reason: "flow visibility is off (--flows off): nothing records it".to_owned(),
            },
            None => HistorySource::None,
        };
        let mut flow_map = None;
        if cfg.enabled {
            let started = open_store(cfg).and_then(|opened| {
                if let Some(s) = &opened {
                    store = HistorySource::Open(Arc::clone(s));
                }
                let map = SharedMap::new(cfg.map).map_err(|e| e.to_string())?;
                flow_map = Some(Arc::clone(&map));
                start_pipeline(dp, enricher.clone(), cfg, opened, timeline.timeline(), map)
            });
            match started {
                Ok(p) => pipeline = Some(p),
                Err(e) => {
                    tracing::error!(error = %e, "flow visibility is off: the flow pipeline did not start");
                    if let HistorySource::NotOpen { reason, .. } = &mut store {
                        reason.clone_from(&e);
                    }
                    health.flow_error = Some(e);
                }
            }
        } else if let Err(e) = FlowTap::open(dp.pins()).and_then(|mut t| {
            t.set_config(0)
                .map_err(|e| bulkhead_dataplane::DataplaneError::Map {
                    name: "FLOW_CONFIG",
                    reason: e.to_string(),
                })
        }) {
            tracing::warn!(error = %e, "turning kernel flow accounting off");
        }
        let (history, metrics) = match &pipeline {
            Some(p) => (Some(p.history.clone()), p.metrics.clone()),
            None => (None, Arc::new(Metrics::new())),
        };
        metrics.set_up(true);
        let alerts = start_alerts(
            cfg,
            history.as_ref(),
            &quarantines,
            timeline.timeline(),
            &mut health,
        );
        let alerts: crate::map::AlertsSlot = Arc::new(Mutex::new(alerts));
        let map = flow_map.filter(|_| pipeline.is_some()).map(|m| {
            Arc::new(crate::map::MapSource::new(
                m,
                &cfg.pipeline.node,
                history.clone(),
                Some(Arc::clone(&quarantines)),
                Arc::clone(&alerts),
            ))
        });
        let shared = Arc::new(Shared {
            pipeline: Mutex::new(pipeline),
            history,
            store,
            history_answer: Mutex::new(()),
            timeline,
            alerts,
            map,
            metrics,
            health: Mutex::new(health),
            cni,
            quarantines,
        });
        let backend: Arc<dyn ApiBackend> = Arc::new(Backend(shared.clone()));
        let api = match Api::start(cfg.api.clone(), backend, runtime) {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::error!(error = %e, "the local API did not start");
                lock(&shared.health).api_error = Some(e.to_string());
                None
            }
        };
        Self {
            shared,
            enforced: Mutex::new(None),
            enricher,
            api,
            last_refresh: None,
        }
    }

    /// The web UI's address the API serves, if it has a UI listener.
    pub fn ui_addr(&self) -> Option<std::net::SocketAddr> {
        self.api.as_ref().and_then(ApiHandle::ui_addr)
    }

    /// Makes records of `revision` resolvable (pods, endpoints, rules),
    /// and writes what changed for the local pods since the last revision
    /// into the timeline, as of `switched_unix_ms` (when the sync that
    /// made it live began: no packet was judged by it before).
    pub fn update_policy(
        &self,
        model: &Arc<Model>,
        compiled: &Arc<Compiled>,
        local: &[(usize, u32)],
        revision: u64,
        switched_unix_ms: u64,
    ) {
        self.enricher
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .update(model, compiled, local, revision);
        self.shared.metrics.set_revision(revision);
        let pods: Vec<usize> = local.iter().map(|&(p, _)| p).collect();
        if let Some(m) = &self.shared.map {
            m.update_policy(model, compiled, &pods);
        }
        if let Some(t) = self.shared.timeline.timeline() {
            let now = Enforced::of(model, compiled, &pods);
            let mut enforced = lock(&self.enforced);
            let before = enforced.replace(now);
            if let (Some(before), Some(now)) = (before, enforced.as_ref()) {
                let events = crate::timeline::diff(&before, now, revision, switched_unix_ms);
                if !events.is_empty()
                    && let Err(e) = t.append(&events, unix_ms())
                {
                    tracing::warn!(error = %e, events = events.len(), "writing policy changes into the timeline");
                }
            }
        }
    }

    /// Records the agent's state for `/healthz` and metrics; every
    /// [`METRICS_REFRESH`] also reads map fill and drop counters.
    pub fn observe(&mut self, dp: &Dataplane, state: &AgentState) {
        {
            let mut h = lock(&self.shared.health);
            h.enforced = state.enforced_revision.is_some();
            h.revision = state.revision;
            h.endpoints = state.endpoints.len();
            h.error = state.error.clone();
            h.source.clone_from(&state.source);
        }
        let m = &self.shared.metrics;
        m.set_revision(state.revision);
        let source = &state.source;
        m.set_source(
            source.connected,
            source.stale_since_unix_ms,
            state.warnings.len() as u64,
        );
        if state.error.is_none() {
            m.sync_succeeded();
        }
        if self
            .last_refresh
            .is_some_and(|t| t.elapsed() < METRICS_REFRESH)
        {
            return;
        }
        self.last_refresh = Some(Instant::now());
        match status::read(dp.pins()) {
            Ok(s) => {
                for f in &s.maps {
                    m.set_map_fill(f.map, f.entries as u64, u64::from(f.capacity));
                }
            }
            Err(e) => tracing::debug!(error = %e, "reading map fill"),
        }
        if let Ok(drops) = dp.maps().drops() {
            let mut by_reason = vec![0u64; bulkhead_common::DROPS_MAX as usize];
            for (reason, n) in drops {
                by_reason[reason as usize] = n;
            }
            m.set_kernel_drops(&by_reason);
        }
    }

    /// Stops the API, then the pipeline (draining the kernel and flushing
    /// the exporters, on the blocking pool: it joins the pipeline's thread).
    pub async fn stop(mut self) {
        if let Some(api) = self.api.take() {
            api.stop().await;
        }
        let pipeline = lock(&self.shared.pipeline).take();
        if let Some(p) = pipeline {
            match tokio::task::spawn_blocking(move || p.stop()).await {
                Ok(a) => tracing::info!(
                    holds = a.holds(),
                    kernel_records = a.kernel_records(),
                    accounted = a.accounted_records(),
                    "flow pipeline stopped"
                ),
                Err(e) => tracing::error!(error = %e, "stopping the flow pipeline"),
            }
        }
        // After the pipeline: its last records reach the detectors.
        let alerts = lock(&self.shared.alerts).take();
        if let Some(a) = alerts
            && let Err(e) = tokio::task::spawn_blocking(move || a.stop()).await
        {
            tracing::error!(error = %e, "stopping the alert detectors");
        }
    }
}

/// Milliseconds since the epoch now.
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The timeline, if configured (independent of flow visibility: policy,
/// quarantine and mode changes go into it either way); one that does not
/// open degrades health.
fn open_timeline(cfg: &FlowsConfig, health: &mut HealthState) -> TimelineSource {
    let Some(path) = &cfg.timeline_db else {
        return TimelineSource::None;
    };
    match Timeline::open(path, cfg.timeline_retention) {
        Ok(t) => {
            tracing::info!(path = %path.display(), "forensic timeline open");
            TimelineSource::Open(Arc::new(t))
        }
        Err(e) => {
            tracing::error!(error = %e, "the forensic timeline is off");
            health
                .flow_error
                .get_or_insert_with(|| format!("timeline: {e}"));
            TimelineSource::NotOpen {
                path: path.clone(),
                reason: e.to_string(),
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The baseline detectors over the pipeline's live records, whenever the
/// pipeline runs (idle until a baseline is active). Alerting that cannot
/// start degrades health, as the flow pipeline's failing does; without
/// the pipeline it is an error only if alerting was asked for.
fn start_alerts(
    cfg: &FlowsConfig,
    history: Option<&Arc<History>>,
    quarantines: &Arc<crate::quarantine::QuarantineStore>,
    timeline: Option<&Arc<Timeline>>,
    health: &mut HealthState,
) -> Option<crate::alerts::Alerts> {
    let asked = !cfg.alerts.baselines.is_empty()
        || cfg.alerts.jsonl.is_some()
        || cfg.alerts.alertmanager.is_some()
        || cfg.alerts.respond.enabled();
    let started = match history {
        Some(h) => crate::alerts::Alerts::start(
            &cfg.alerts,
            &cfg.pipeline.node,
            Arc::clone(h),
            Some(Arc::clone(quarantines)),
            timeline.cloned(),
        )
        .map_err(|e| e.to_string()),
        None if asked => Err("flow visibility is off: no live records to check".to_owned()),
        None => return None,
    };
    started
        .inspect_err(|e| {
            tracing::error!(error = %e, "baseline alerts are off");
            health
                .flow_error
                .get_or_insert_with(|| format!("alerts: {e}"));
        })
        .ok()
}

/// The history store, if configured (its open failing stops the pipeline,
/// as any exporter's start failing does).
fn open_store(cfg: &FlowsConfig) -> Result<Option<Arc<HistoryStore>>, String> {
    cfg.history_db
        .as_deref()
        .map(|path| HistoryStore::open(path, cfg.history_store).map(Arc::new))
        .transpose()
        .map_err(|e| e.to_string())
}

fn start_pipeline(
    dp: &Dataplane,
    enricher: SharedEnricher,
    cfg: &FlowsConfig,
    store: Option<Arc<HistoryStore>>,
    timeline: Option<&Arc<Timeline>>,
    map: Arc<SharedMap>,
) -> Result<PipelineHandle, String> {
    let config: PipelineConfig = cfg.pipeline.clone();
    let mut exporters: Vec<Box<dyn Exporter>> = Vec::new();
    if let Some(c) = &config.jsonl {
        exporters.push(Box::new(
            JsonlExporter::start(c.clone()).map_err(|e| e.to_string())?,
        ));
    }
    if let Some(c) = &config.ipfix {
        exporters.push(Box::new(
            IpfixExporter::start(c.clone()).map_err(|e| e.to_string())?,
        ));
    }
    if let Some(store) = store {
        exporters.push(Box::new(
            HistoryExporter::start(store, HistoryExporterConfig::default())
                .map_err(|e| e.to_string())?,
        ));
    }
    if let Some(t) = timeline {
        exporters.push(Box::new(
            TimelineExporter::start(Arc::clone(t), HistoryExporterConfig::default())
                .map_err(|e| e.to_string())?,
        ));
    }
    exporters.push(Box::new(
        MapExporter::start(map).map_err(|e| e.to_string())?,
    ));
    let mut tap = FlowTap::open(dp.pins()).map_err(|e| e.to_string())?;
    tap.set_config(FLOW_CONFIG_ACCOUNTING | FLOW_CONFIG_EVENTS_NEW | FLOW_CONFIG_EVENTS_DROP)
        .map_err(|e| e.to_string())?;
    Pipeline::start_with(Box::new(tap), enricher, config, exporters).map_err(|e| e.to_string())
}

/// [`ApiBackend`] over the pipeline.
struct Backend(Arc<Shared>);

impl ApiBackend for Backend {
    fn metrics(&self) -> String {
        let mut text = self.0.metrics.render();
        if let Some(m) = &self.0.map {
            text = m.append_metrics(text);
        }
        match lock(&self.0.alerts).as_ref() {
            Some(a) => a.append_metrics(text),
            None => text,
        }
    }

    fn cni(&self) -> Option<Arc<crate::cni::Registry>> {
        Some(Arc::clone(&self.0.cni))
    }

    fn quarantine(&self) -> Option<Arc<crate::quarantine::QuarantineStore>> {
        Some(Arc::clone(&self.0.quarantines))
    }

    fn with_alerts(&self, f: &mut dyn FnMut(&crate::alerts::Alerts)) -> bool {
        match lock(&self.0.alerts).as_ref() {
            Some(a) => {
                f(a);
                true
            }
            None => false,
        }
    }

    fn health(&self) -> Health {
        let h = lock(&self.0.health).clone();
        let status = if h.error.is_some() {
            HealthStatus::Failing
        } else if h.flow_error.is_some() || h.api_error.is_some() {
            HealthStatus::Degraded
        } else {
            HealthStatus::Ok
        };
        Health {
            status,
            detail: json!({
                "revision": h.revision,
                "endpoints": h.endpoints,
                "error": h.error,
                "flows": h.flow_error.as_deref().unwrap_or("ok"),
                "source": h.source,
            }),
        }
    }

    /// Ready once a complete view is enforced (and enforcement stays
    /// ready through later errors: the last complete view stays in force).
    fn ready(&self) -> Result<(), String> {
        if lock(&self.0.health).enforced {
            Ok(())
        } else {
            Err("no policy enforced yet: the agent has not synced its first complete view".into())
        }
    }

    fn recent_flows(&self, query: &str, limit: usize) -> Result<Vec<String>, String> {
        let filter = Filter::from_query(query).map_err(|e| e.to_string())?;
        let Some(history) = &self.0.history else {
            return Ok(Vec::new());
        };
        let mut records = history.query(&filter, limit);
        records.reverse();
        Ok(records
            .iter()
            .filter_map(|r| serde_json::to_string(&**r).ok())
            .collect())
    }

    fn follow(&self, query: &str, last: usize) -> Result<Box<dyn FlowStream>, String> {
        let filter = Filter::from_query(query).map_err(|e| e.to_string())?;
        let Some(history) = &self.0.history else {
            return Err("flow visibility is off on this agent".to_owned());
        };
        // Subscribe first: a record pushed meanwhile is in both, and the
        // backlog's copies are skipped in the live part.
        let sub = history.subscribe(filter.clone(), FOLLOW_QUEUE);
        let mut backlog = history.query(&filter, last);
        backlog.reverse();
        Ok(Box::new(Follow {
            backlog: backlog.into(),
            seen: Vec::new(),
            sub,
            lost_reported: 0,
        }))
    }

    fn accounting(&self) -> serde_json::Value {
        match lock(&self.0.pipeline).as_ref() {
            Some(p) => {
                let a = p.accounting();
                let holds = a.holds();
                let mut v = serde_json::to_value(a).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.insert("holds".into(), holds.into());
                }
                v
            }
            None => json!({"error": "flow visibility is off on this agent"}),
        }
    }

    fn history(&self, window: bulkhead_learn::Window) -> Result<String, HistoryError> {
        let _one = lock(&self.0.history_answer);
        self.0.store.json(window)
    }

    fn timeline(&self, query: &TimelineQuery) -> Result<String, TimelineError> {
        let _one = lock(&self.0.history_answer);
        self.0.timeline.json(query)
    }

    fn map(&self, window: bulkhead_learn::Window) -> Result<String, MapError> {
        let map = self.0.map.as_ref().ok_or(MapError::NotKept)?;
        let lost = lock(&self.0.pipeline).as_ref().map_or(0, |p| {
            let a = p.accounting();
            a.exporters
                .iter()
                .filter(|e| e.exporter == MapSink::NAME)
                .map(|e| e.lost_total())
                .sum()
        });
        Ok(map.view(window, lost))
    }

    fn map_follow(
        &self,
        since: Option<bulkhead_learn::Window>,
    ) -> Result<Box<dyn FlowStream>, MapError> {
        Ok(self.0.map.as_ref().ok_or(MapError::NotKept)?.follow(since))
    }

    fn map_edge(&self, query: &EdgeQuery) -> Result<String, MapError> {
        self.0.map.as_ref().ok_or(MapError::NotKept)?.edge(query)
    }

    fn map_workload(&self, query: &WorkloadQuery) -> Result<String, MapError> {
        self.0
            .map
            .as_ref()
            .ok_or(MapError::NotKept)?
            .workload(query)
    }
}

/// A follow stream: the backlog, then the live subscription.
struct Follow {
    backlog: std::collections::VecDeque<Arc<bulkhead_flows::FlowRecord>>,
    seen: Vec<Arc<bulkhead_flows::FlowRecord>>,
    sub: Subscription,
    lost_reported: u64,
}

impl FlowStream for Follow {
    fn next(&mut self, timeout: Duration) -> Next {
        if let Some(r) = self.backlog.pop_front() {
            let line = serde_json::to_string(&*r).unwrap_or_default();
            self.seen.push(r);
            return Next::Record(line);
        }
        let lost = self.sub.lost();
        if lost > self.lost_reported {
            let n = lost - self.lost_reported;
            self.lost_reported = lost;
            return Next::Lost(n);
        }
        loop {
            match self.sub.recv_timeout(timeout) {
                Ok(r) => {
                    if let Some(i) = self.seen.iter().position(|s| Arc::ptr_eq(s, &r)) {
                        self.seen.swap_remove(i);
                        continue;
                    }
                    return Next::Record(serde_json::to_string(&*r).unwrap_or_default());
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    // Backlog copies can only arrive first; past one idle
                    // wait none is left to skip.
                    self.seen.clear();
                    return Next::Idle;
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return Next::Closed,
            }
        }
    }
}
