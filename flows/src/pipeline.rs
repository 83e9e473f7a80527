//! The collector: one thread owns the [`FlowSource`], reads the ring
//! buffer (waiting until the next drain is due), merges fallback
//! `FlowRecord` events and drained table entries into the flow cache,
//! turns `NewFlow`/`Drop` notifications into `type: "event"` records for
//! the history and subscribers (not for exporters: their packets are in
//! the flow table too), and every `drain_interval` drains the table,
//! expires flows and hands finished records to the history, the metrics
//! and the exporters. Exporters never block it (see `export`).
//!
//! [`Accounting`] states the lossless accounting identity stage by stage;
//! it is exact once the pipeline has stopped (both tables drained, the
//! ring read, every flow finished, exporters flushed) with no traffic
//! after the final drain.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLockReadGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bulkhead_common::{
    EventKind, FLOW_SIDE_EGRESS, FlowEvent, FlowKey, FlowStat, FlowValue, ServiceBackend,
};

pub use super::accounting::{Accounting, CacheAccounting, KernelAccounting, ReceivedAccounting};
use super::aggregate::{AggregateConfig, Finished, FlowCache};
use super::clock::{Clock, SystemClock};
use super::enrich::{Enricher, RecordContext, RecordInput, SharedEnricher};
use super::export::{
    ExportStats, Exporter, IpfixConfig, IpfixError, IpfixExporter, JsonlConfig, JsonlError,
    JsonlExporter, LogLimiter,
};
use super::history::{DEFAULT_HISTORY, History};
use super::metrics::Metrics;
use super::record::{EndReason, EventType, FlowRecord, RecordKind};
use super::source::{FlowSource, KernelFlowStats};

/// Configuration of the pipeline.
#[derive(Clone)]
pub struct PipelineConfig {
    /// Node name written into records.
    pub node: String,
    /// How often the flow table is drained.
    pub drain_interval: Duration,
    /// Flow cache timeouts and size.
    pub aggregate: AggregateConfig,
    /// Records kept in the recent history.
    pub history: usize,
    /// JSON Lines export, if any.
    pub jsonl: Option<JsonlConfig>,
    /// IPFIX export, if any.
    pub ipfix: Option<IpfixConfig>,
    /// Source failures are logged at most once per interval.
    pub log_interval: Duration,
    /// Monotonic time and its wall-clock offset.
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for PipelineConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineConfig")
            .field("node", &self.node)
            .field("drain_interval", &self.drain_interval)
            .field("aggregate", &self.aggregate)
            .field("history", &self.history)
            .field("jsonl", &self.jsonl)
            .field("ipfix", &self.ipfix)
            .field("log_interval", &self.log_interval)
            .finish_non_exhaustive()
    }
}

impl PipelineConfig {
    /// Defaults (drain every 250 ms, idle 15 s, active 60 s, 10k records of
    /// history, no exporter) for a node.
    pub fn new(node: impl Into<String>) -> Self {
        Self {
            node: node.into(),
            drain_interval: Duration::from_millis(250),
            aggregate: AggregateConfig::default(),
            history: DEFAULT_HISTORY,
            jsonl: None,
            ipfix: None,
            log_interval: Duration::from_secs(10),
            clock: Arc::new(SystemClock),
        }
    }
}

/// Why the pipeline could not start.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The JSON Lines exporter.
    #[error(transparent)]
    Jsonl(#[from] JsonlError),
    /// The IPFIX exporter.
    #[error(transparent)]
    Ipfix(#[from] IpfixError),
    /// The collector thread.
    #[error("starting the flow collector thread: {source}")]
    Spawn {
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

struct Shared {
    stop: AtomicBool,
    accounting: Mutex<Accounting>,
}

/// The running pipeline.
pub struct PipelineHandle {
    /// The recent history and its subscriptions.
    pub history: Arc<History>,
    /// The metrics registry.
    pub metrics: Arc<Metrics>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<Accounting>>,
}

impl PipelineHandle {
    /// The accounting as of the last drain.
    pub fn accounting(&self) -> Accounting {
        self.shared
            .accounting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Stops: drains both tables and the ring, finishes every cached flow
    /// (`agent_stop`), flushes the exporters; returns the final accounting.
    pub fn stop(mut self) -> Accounting {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> Accounting {
        self.shared.stop.store(true, Ordering::SeqCst);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(a)) => a,
            Some(Err(_)) => {
                tracing::error!("the flow collector thread panicked");
                self.accounting()
            }
            None => self.accounting(),
        }
    }
}

impl Drop for PipelineHandle {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop_inner();
        }
    }
}

/// The flow pipeline.
pub struct Pipeline;

impl Pipeline {
    /// Starts the exporters and the collector thread.
    pub fn start(
        source: Box<dyn FlowSource>,
        enricher: SharedEnricher,
        config: PipelineConfig,
    ) -> Result<PipelineHandle, PipelineError> {
        let mut exporters: Vec<Box<dyn Exporter>> = Vec::new();
        if let Some(c) = &config.jsonl {
            exporters.push(Box::new(JsonlExporter::start(c.clone())?));
        }
        if let Some(c) = &config.ipfix {
            exporters.push(Box::new(IpfixExporter::start(c.clone())?));
        }
        Self::start_with(source, enricher, config, exporters)
    }

    /// Starts with exporters built by the caller (`config.jsonl` and
    /// `config.ipfix` are ignored).
    pub fn start_with(
        source: Box<dyn FlowSource>,
        enricher: SharedEnricher,
        config: PipelineConfig,
        exporters: Vec<Box<dyn Exporter>>,
    ) -> Result<PipelineHandle, PipelineError> {
        let history = Arc::new(History::new(config.history));
        let metrics = Arc::new(Metrics::new());
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            accounting: Mutex::new(Accounting::default()),
        });
        let collector = Collector {
            source,
            enricher,
            cache: FlowCache::new(config.aggregate.clone()),
            history: history.clone(),
            metrics: metrics.clone(),
            exporters,
            ctx: RecordContext {
                node: config.node.as_str().into(),
                realtime_offset_ns: config.clock.realtime_offset_ns(),
            },
            clock: config.clock.clone(),
            drain_interval: config.drain_interval.max(Duration::from_millis(1)),
            shared: shared.clone(),
            received: ReceivedAccounting::default(),
            kernel: [0; bulkhead_common::FLOW_STATS_MAX as usize],
            limiter: LogLimiter::new(config.log_interval),
            deltas: Vec::with_capacity(4096),
            events: Vec::with_capacity(4096),
            finished: Vec::with_capacity(4096),
            records: Vec::with_capacity(4096),
        };
        let thread = std::thread::Builder::new()
            .name("flows-collector".into())
            .spawn(move || collector.run())
            .map_err(|source| PipelineError::Spawn { source })?;
        Ok(PipelineHandle {
            history,
            metrics,
            shared,
            thread: Some(thread),
        })
    }
}

struct Collector {
    source: Box<dyn FlowSource>,
    enricher: SharedEnricher,
    cache: FlowCache,
    history: Arc<History>,
    metrics: Arc<Metrics>,
    exporters: Vec<Box<dyn Exporter>>,
    ctx: RecordContext,
    clock: Arc<dyn Clock>,
    drain_interval: Duration,
    shared: Arc<Shared>,
    received: ReceivedAccounting,
    kernel: KernelFlowStats,
    limiter: LogLimiter,
    deltas: Vec<(FlowKey, FlowValue)>,
    events: Vec<FlowEvent>,
    finished: Vec<Finished>,
    records: Vec<Arc<FlowRecord>>,
}

fn totals(v: &FlowValue) -> (u64, u64) {
    (
        v.packets_orig + v.packets_reply + v.dropped_packets,
        v.bytes_orig + v.bytes_reply + v.dropped_bytes,
    )
}

impl Collector {
    fn run(mut self) -> Accounting {
        let mut next_drain = Instant::now() + self.drain_interval;
        while !self.shared.stop.load(Ordering::SeqCst) {
            let wait = next_drain.saturating_duration_since(Instant::now());
            self.read_events(wait);
            let now = Instant::now();
            if now >= next_drain {
                self.drain(false);
                next_drain += self.drain_interval;
                if next_drain < now {
                    next_drain = now + self.drain_interval;
                }
            }
        }
        self.shutdown()
    }

    fn source_error(&mut self, what: &str, e: &dyn std::fmt::Display) {
        self.received.source_errors += 1;
        self.metrics.error("flow_source");
        if let Some(more) = self.limiter.check() {
            tracing::warn!(error = %e, suppressed = more, "flow source: {what} failed");
        }
    }

    fn enricher(&self) -> RwLockReadGuard<'_, Enricher> {
        self.enricher.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads ring events, waiting at most `wait` for the first.
    fn read_events(&mut self, wait: Duration) {
        self.events.clear();
        let mut events = std::mem::take(&mut self.events);
        if let Err(e) = self.source.events(wait, &mut events) {
            self.source_error("reading events", &e);
            // Do not spin on a broken source.
            std::thread::sleep(wait.min(Duration::from_millis(100)));
        }
        let mut notes: Vec<Arc<FlowRecord>> = Vec::new();
        let mut fallbacks = 0u64;
        for ev in &events {
            let note = match ev.kind {
                k if k == EventKind::FlowRecord as u8 => {
                    let (p, b) = totals(&ev.value);
                    self.received.fallback_events += 1;
                    self.received.packets += p;
                    self.received.bytes += b;
                    fallbacks += 1;
                    self.merge(&ev.key, &ev.value);
                    continue;
                }
                k if k == EventKind::NewFlow as u8 => EventType::NewFlow,
                k if k == EventKind::Drop as u8 => EventType::Drop,
                _ => continue,
            };
            self.received.notifications += 1;
            let backend = if self.is_service_flow(&ev.key) {
                self.backend(&ev.key)
            } else {
                None
            };
            let r = self.enricher().record(
                &self.ctx,
                &RecordInput {
                    key: &ev.key,
                    value: &ev.value,
                    rule_revision: ev.value.revision,
                    kind: RecordKind::Event,
                    event: Some(note),
                    end_reason: None,
                    service: backend.as_ref(),
                },
            );
            notes.push(Arc::new(r));
        }
        self.events = events;
        if fallbacks > 0 {
            self.metrics.add_deltas("ring", fallbacks);
        }
        if !notes.is_empty() {
            for n in &notes {
                self.metrics.observe(n);
            }
            self.history.push_all(&notes);
        }
        if !self.finished.is_empty() {
            self.emit();
        }
    }

    /// Whether `key` is a client's side of a connection to a Service
    /// frontend (its record names the backend).
    fn is_service_flow(&self, key: &FlowKey) -> bool {
        key.side == FLOW_SIDE_EGRESS && self.enricher().is_frontend(&key.tuple)
    }

    /// The backend of the Service connection `key` (SERVICE_CT).
    fn backend(&mut self, key: &FlowKey) -> Option<ServiceBackend> {
        match self.source.service_backend(&key.tuple) {
            Ok(b) => b,
            Err(e) => {
                self.source_error("reading a Service translation", &e);
                None
            }
        }
    }

    /// Merges one delta into the cache; for a connection to a Service
    /// frontend, reads its backend now (at drain time: the kernel's entry
    /// may be gone by the time the flow's record is due).
    fn merge(&mut self, key: &FlowKey, v: &FlowValue) {
        let backend = if self.is_service_flow(key) && self.cache.wants_backend(key, v) {
            self.backend(key)
        } else {
            None
        };
        self.cache.merge(*key, v, &mut self.finished);
        if let Some(b) = backend {
            self.cache.set_backend(key, b);
        }
    }

    fn merge_deltas(&mut self) {
        let n = self.deltas.len() as u64;
        self.received.entries_drained += n;
        let deltas = std::mem::take(&mut self.deltas);
        for (k, v) in &deltas {
            let (p, b) = totals(v);
            self.received.packets += p;
            self.received.bytes += b;
            self.merge(k, v);
        }
        self.deltas = deltas;
        self.deltas.clear();
        if n > 0 {
            self.metrics.add_deltas("table", n);
        }
    }

    fn read_stats(&mut self) {
        match self.source.stats() {
            Ok(s) => {
                self.kernel = s;
                self.metrics.set_kernel_flow_stats(&s);
            }
            Err(e) => self.source_error("reading stats", &e),
        }
    }

    /// One drain: table entries merged, kernel counters read, flows expired,
    /// finished records emitted, exporters flushed.
    fn drain(&mut self, all: bool) {
        self.deltas.clear();
        let mut deltas = std::mem::take(&mut self.deltas);
        let r = if all {
            self.source.drain_all(&mut deltas)
        } else {
            self.source.drain(&mut deltas)
        };
        self.deltas = deltas;
        if let Err(e) = r {
            self.source_error("draining the flow table", &e);
        }
        self.merge_deltas();
        self.read_stats();
        self.ctx.realtime_offset_ns = self.clock.realtime_offset_ns();
        self.cache
            .expire(self.clock.monotonic_ns(), &mut self.finished);
        self.emit();
        for e in &mut self.exporters {
            e.flush();
        }
        self.publish(false, None);
    }

    /// Builds records of finished flows and hands them on.
    fn emit(&mut self) {
        if self.finished.is_empty() {
            return;
        }
        {
            let enricher = self.enricher.read().unwrap_or_else(|e| e.into_inner());
            for f in self.finished.drain(..) {
                self.records.push(Arc::new(enricher.record(
                    &self.ctx,
                    &RecordInput {
                        key: &f.key,
                        value: &f.value,
                        rule_revision: f.rule_revision,
                        kind: RecordKind::Flow,
                        event: None,
                        end_reason: Some(f.end_reason),
                        service: f.service.as_ref(),
                    },
                )));
            }
        }
        let stopping = self.shared.stop.load(Ordering::Relaxed);
        for r in &self.records {
            self.metrics.observe(r);
            for e in &mut self.exporters {
                if stopping {
                    e.export_waiting(r);
                } else {
                    e.export(r);
                }
            }
        }
        self.history.push_all(&self.records);
        self.records.clear();
    }

    fn publish(&mut self, stopped: bool, exporters: Option<Vec<ExportStats>>) -> Accounting {
        let exporters =
            exporters.unwrap_or_else(|| self.exporters.iter().map(|e| e.stats()).collect());
        for s in &exporters {
            self.metrics.set_export_stats(s);
        }
        let subscriber_lost = self.history.subscriber_lost();
        self.metrics
            .set_lost("subscriber", "queue_full", subscriber_lost);
        self.metrics
            .set_pipeline(self.cache.len(), self.history.len());
        let k = &self.kernel;
        let c = self.cache.stats();
        let a = Accounting {
            kernel: KernelAccounting {
                entries_created: k[FlowStat::EntriesCreated as usize],
                fallback_sent: k[FlowStat::FallbackSent as usize],
                fallback_lost: k[FlowStat::FallbackLost as usize],
                packets_accounted: k[FlowStat::PacketsAccounted as usize],
                lost_packets: k[FlowStat::LostPackets as usize],
                bytes_accounted: k[FlowStat::BytesAccounted as usize],
                lost_bytes: k[FlowStat::LostBytes as usize],
                events_sent: k[FlowStat::EventsSent as usize],
                events_lost: k[FlowStat::EventsLost as usize],
            },
            received: self.received.clone(),
            cache: CacheAccounting {
                flows: self.cache.len() as u64,
                packets_in: c.packets,
                records: c.records,
                packets_out: c.packets_out,
                evicted: c.evicted,
            },
            exporters,
            subscriber_lost,
            stopped,
        };
        *self
            .shared
            .accounting
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = a.clone();
        a
    }

    fn shutdown(mut self) -> Accounting {
        self.drain(true);
        // Whatever the ring still holds (fallback records written while
        // draining), until it is empty.
        for _ in 0..1000 {
            self.read_events(Duration::ZERO);
            if self.events.is_empty() {
                break;
            }
        }
        self.read_stats();
        self.cache
            .finish_all(EndReason::AgentStop, &mut self.finished);
        self.emit();
        let exporters: Vec<ExportStats> = std::mem::take(&mut self.exporters)
            .into_iter()
            .map(|e| e.finish())
            .collect();
        self.metrics.set_up(false);
        let a = self.publish(true, Some(exporters));
        if !a.holds() {
            tracing::warn!(accounting = ?a, "flow accounting does not balance at stop (traffic after the final drain?)");
        }
        a
    }
}

#[cfg(test)]
mod tests;
