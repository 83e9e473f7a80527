//! Baseline-deviation alerts (issue 17): the detectors of the baselines
//! given to the agent (`--baseline`) read the flow pipeline's live records
//! and raise alerts, which go out as JSON Lines (`--alerts-jsonl`), as
//! Prometheus counters ([`metrics`]) and to Alertmanager
//! (`--alertmanager`, [`alertmanager`], labelled by [`labels`]).
//!
//! The detectors run on a thread of their own, fed by a subscription to
//! the flow history (notifications and flow records, as
//! `bulkhead flows --follow` is): bounded and lossy, so the pipeline never
//! waits for them, and what they miss is counted
//! (`bulkhead_alerts_records_lost_total`). The thread sleeps until a
//! record comes or the next held scan window ends
//! ([`Detector::next_deadline`]); nothing polls. Alertmanager is fed
//! through its client's own bounded queue, so a slow or absent one never
//! slows the detectors either.

pub mod alertmanager;
pub mod jsonl;
pub mod labels;
pub mod metrics;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::RecvTimeoutError;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bulkhead_flows::{Filter, History, Subscription, SubscriptionId};
use bulkhead_learn::baseline::Baseline;
use bulkhead_learn::baseline::detect::{Alert, DetectConfig, Detector};

use self::alertmanager::{
    Alertmanager, AlertmanagerConfig, AlertmanagerError, DeliveryStats, Endpoint,
};
use self::jsonl::{AlertLine, JsonlSink};
use self::metrics::AlertMetrics;

/// Queue of the detectors' subscription: records beyond it are lost for
/// them (counted), never for the pipeline. The pipeline hands records over
/// in bursts (each drain's finished flows at once: 25,000 every 250 ms at
/// 100k new flows/s, besides the notifications), so it holds more than a
/// drain's worth at that rate, as the JSON Lines exporter's queue does.
pub const SUBSCRIPTION_QUEUE: usize = 65_536;

/// After a batch (what was queued when the detectors' thread woke), it
/// waits this long before it takes the next: under load it wakes about 100
/// times a second for a batch rather than once for every few records the
/// pipeline hands over (at 100k new flows/s the wake-ups, not the checks,
/// were most of its CPU and cost the collector its own), and the queue
/// fills by at most this long's records meanwhile. A record waits at most
/// this much longer to be checked; with no traffic, nothing wakes it.
pub const BATCH_PAUSE: Duration = Duration::from_millis(10);

/// What the agent alerts on, and where the alerts go.
#[derive(Clone, Debug, Default)]
pub struct AlertsConfig {
    /// The baselines to check live traffic against (none: alerting is off).
    pub baselines: Vec<Baseline>,
    /// Thresholds and intervals, for every baseline.
    pub detect: DetectConfig,
    /// Append alerts as JSON Lines to this file.
    pub jsonl: Option<PathBuf>,
    /// Post alerts to this Alertmanager.
    pub alertmanager: Option<Endpoint>,
}

impl AlertsConfig {
    /// Whether any baseline is given.
    pub fn enabled(&self) -> bool {
        !self.baselines.is_empty()
    }
}

/// Alerting could not start.
#[derive(Debug, thiserror::Error)]
pub enum AlertsError {
    /// The JSON Lines file cannot be opened for appending.
    #[error("opening the alerts file {}: {source}", path.display())]
    Jsonl {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The Alertmanager client did not start.
    #[error(transparent)]
    Alertmanager(#[from] AlertmanagerError),
    /// The detectors' thread did not start.
    #[error("starting the alert detectors: {0}")]
    Start(#[source] std::io::Error),
}

/// What the detectors did so far.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct AlertsStats {
    /// Live records the detectors checked.
    pub records: u64,
    /// Live records their subscription lost (its queue was full).
    pub records_lost: u64,
    /// The Alertmanager client's counts, if one is configured.
    pub alertmanager: Option<DeliveryStats>,
}

/// Running detectors and their sinks.
pub struct Alerts {
    history: Arc<History>,
    subscription: SubscriptionId,
    metrics: Arc<AlertMetrics>,
    alertmanager: Option<Arc<Alertmanager>>,
    thread: Option<JoinHandle<()>>,
}

impl Alerts {
    /// Subscribes to `history` and starts the detectors of `cfg`'s
    /// baselines; `node` is the `node` label of their alerts.
    pub fn start(
        cfg: &AlertsConfig,
        node: &str,
        history: Arc<History>,
    ) -> Result<Self, AlertsError> {
        let names: Vec<String> = cfg.baselines.iter().map(|b| b.name.clone()).collect();
        let metrics = Arc::new(AlertMetrics::new(
            &names,
            cfg.jsonl.is_some(),
            cfg.alertmanager.is_some(),
        ));
        let jsonl = cfg
            .jsonl
            .as_ref()
            .map(|path| {
                JsonlSink::open(path).map_err(|source| AlertsError::Jsonl {
                    path: path.clone(),
                    source,
                })
            })
            .transpose()?;
        let alertmanager = cfg
            .alertmanager
            .as_ref()
            .map(|e| Alertmanager::start(AlertmanagerConfig::new(e.clone())).map(Arc::new))
            .transpose()?;
        let subscription = history.subscribe(Filter::default(), SUBSCRIPTION_QUEUE);
        let id = subscription.id();
        let worker = Worker {
            detectors: cfg
                .baselines
                .iter()
                .map(|b| Detector::new(b.clone(), cfg.detect))
                .collect(),
            interval: Duration::from_millis(cfg.detect.interval_ms),
            node: node.to_owned(),
            jsonl,
            alertmanager: alertmanager.clone(),
            metrics: Arc::clone(&metrics),
        };
        let thread = std::thread::Builder::new()
            .name("bulkhead-alerts".into())
            .spawn(move || worker.run(&subscription))
            .map_err(|e| {
                history.unsubscribe(id);
                AlertsError::Start(e)
            })?;
        tracing::info!(
            baselines = ?names,
            jsonl = ?cfg.jsonl,
            alertmanager = ?cfg.alertmanager.as_ref().map(|e| format!("{}:{}{}", e.host, e.port, e.path)),
            "baseline alerts on"
        );
        Ok(Self {
            history,
            subscription: id,
            metrics,
            alertmanager,
            thread: Some(thread),
        })
    }

    /// Records checked and lost, and the Alertmanager client's counts, so
    /// far.
    pub fn stats(&self) -> AlertsStats {
        AlertsStats {
            records: self.metrics.records(),
            records_lost: self.metrics.records_lost(),
            alertmanager: self.alertmanager.as_ref().map(|am| am.stats()),
        }
    }

    /// `text` (the agent's OpenMetrics exposition) with the alerts'
    /// metrics added.
    pub fn append_metrics(&self, text: String) -> String {
        if let Some(am) = &self.alertmanager {
            self.metrics.set_alertmanager(&am.stats());
        }
        self.metrics.append(text)
    }

    /// Ends the subscription, lets the detectors take what is queued and
    /// raise what they hold, and stops the sinks (Alertmanager gets one
    /// attempt at what is queued for it).
    pub fn stop(mut self) {
        self.history.unsubscribe(self.subscription);
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("the alert detectors panicked");
        }
        if let Some(am) = self.alertmanager.take().and_then(Arc::into_inner) {
            let stats = am.stop();
            self.metrics.set_alertmanager(&stats);
            tracing::info!(
                delivered = stats.delivered,
                lost = stats.lost_total(),
                "Alertmanager client stopped"
            );
        }
    }
}

/// Milliseconds since the epoch now.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The detectors' thread.
struct Worker {
    detectors: Vec<Detector>,
    interval: Duration,
    node: String,
    jsonl: Option<JsonlSink>,
    alertmanager: Option<Arc<Alertmanager>>,
    metrics: Arc<AlertMetrics>,
}

impl Worker {
    fn run(mut self, sub: &Subscription) {
        let mut alerts: Vec<Alert> = Vec::new();
        loop {
            // Wake for a record, or when the next held window ends.
            let wait = self
                .detectors
                .iter()
                .filter_map(Detector::next_deadline)
                .min()
                .map_or(Duration::MAX, |d| {
                    Duration::from_millis(d.saturating_sub(now_ms()))
                });
            let batch = match sub.recv_timeout(wait) {
                Ok(r) => {
                    // This record and every one queued behind it.
                    let mut n = 0;
                    let mut next = Some(r);
                    while let Some(r) = next {
                        n += 1;
                        for d in &mut self.detectors {
                            alerts.extend(d.observe(&r));
                        }
                        next = sub.try_recv().ok();
                    }
                    self.metrics.records_checked(n);
                    true
                }
                Err(RecvTimeoutError::Timeout) => {
                    let now = now_ms();
                    for d in &mut self.detectors {
                        alerts.extend(d.flush(now));
                    }
                    false
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            self.emit(&alerts);
            alerts.clear();
            self.metrics.set_records_lost(sub.lost());
            if batch {
                std::thread::sleep(BATCH_PAUSE);
            }
        }
        // Stopping: what is held is raised now rather than lost.
        let alerts: Vec<Alert> = self
            .detectors
            .iter_mut()
            .flat_map(|d| d.flush(u64::MAX))
            .collect();
        self.emit(&alerts);
        self.metrics.set_records_lost(sub.lost());
    }

    fn emit(&mut self, alerts: &[Alert]) {
        for (i, d) in self.detectors.iter().enumerate() {
            self.metrics.set_suppressed(i, d.suppressed());
        }
        if alerts.is_empty() {
            return;
        }
        let now = now_ms();
        for a in alerts {
            self.metrics.alert(a.kind, &a.baseline);
            tracing::info!(
                kind = a.kind.as_str(),
                baseline = %a.baseline,
                summary = %labels::summary(a),
                "baseline alert"
            );
            if let Some(sink) = &mut self.jsonl {
                let written = sink.write(&AlertLine::new(a, &self.node, now));
                self.metrics.jsonl(written);
            }
            if let Some(am) = &self.alertmanager {
                am.send(labels::postable(a, &self.node, self.interval));
            }
        }
    }
}

#[cfg(test)]
mod tests;
