//! Baseline-deviation alerts (issue 17): the detectors of the active
//! baselines read the flow pipeline's live records and raise alerts, which
//! go out as JSON Lines (`--alerts-jsonl`), as Prometheus counters
//! ([`metrics`]) and to Alertmanager (`--alertmanager`, [`alertmanager`],
//! labelled by [`labels`]), and may quarantine their source pods
//! ([`respond`], `--respond`, off by default).
//!
//! The active baselines are those given on the command line (`--baseline`)
//! and those activated in the running agent (`bulkhead baseline activate`,
//! the API's `/v1/baselines`), which persist beside the state file
//! ([`active`]). With none, no detector runs and nothing subscribes.
//!
//! The detectors run on a thread of their own, fed by a subscription to
//! the flow history (notifications and flow records, as
//! `bulkhead flows --follow` is): bounded and lossy, so the pipeline never
//! waits for them, and what they miss is counted
//! (`bulkhead_alerts_records_lost_total`). The thread sleeps until a
//! record comes or the next held scan window ends; nothing polls.
//! Alertmanager is fed through its client's own bounded queue, so a slow
//! or absent one never slows the detectors either.
//!
//! A change of the active baselines subscribes anew first, then ends the
//! running thread's subscription and takes its detectors back: unchanged
//! baselines keep their state (records in between reach both
//! subscriptions; the detectors' deduplication folds the repeats).

pub mod active;
pub mod alertmanager;
pub mod jsonl;
pub mod labels;
pub mod metrics;
pub mod respond;
mod worker;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use bulkhead_flows::{Filter, History, SubscriptionId};
use bulkhead_learn::baseline::Baseline;
use bulkhead_learn::baseline::detect::DetectConfig;
use bulkhead_learn::timeline::Timeline;
use serde::{Deserialize, Serialize};

use self::active::ActiveBaselines;
use self::alertmanager::{Alertmanager, AlertmanagerConfig, AlertmanagerError, Endpoint};
use self::jsonl::JsonlSink;
use self::metrics::AlertMetrics;
use self::respond::{Responder, ResponseConfig};
use self::worker::Worker;
use crate::quarantine::QuarantineStore;

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
pub const BATCH_PAUSE: std::time::Duration = std::time::Duration::from_millis(10);

/// What the agent alerts on, and where the alerts go.
#[derive(Clone, Debug, Default)]
pub struct AlertsConfig {
    /// The baselines given on the command line, always active.
    pub baselines: Vec<Baseline>,
    /// Where baselines activated at run time persist (`None`: in memory).
    pub active: Option<PathBuf>,
    /// Thresholds and intervals, for every baseline.
    pub detect: DetectConfig,
    /// Append alerts as JSON Lines to this file.
    pub jsonl: Option<PathBuf>,
    /// Post alerts to this Alertmanager.
    pub alertmanager: Option<Endpoint>,
    /// The automatic response (none by default).
    pub respond: ResponseConfig,
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
    /// The detectors' thread panicked: alerting is off until a restart.
    #[error("the alert detectors stopped after a panic; restart the agent")]
    Gone,
    /// The baseline is given on the command line: it cannot be replaced
    /// or deactivated at run time.
    #[error("baseline {0:?} is given on the agent's command line (--baseline); change it there")]
    Static(String),
    /// The activated baselines could not be persisted (nothing changed).
    #[error("writing the activated baselines {}: {source}", path.display())]
    Persist {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// What the detectors did so far.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AlertsStats {
    /// Live records the detectors checked.
    pub records: u64,
    /// Live records their subscriptions lost (the queue was full).
    pub records_lost: u64,
    /// The Alertmanager client's counts, if one is configured.
    pub alertmanager: Option<self::alertmanager::DeliveryStats>,
}

/// An active baseline, as `GET /v1/baselines` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveBaseline {
    /// Its name.
    pub name: String,
    /// Its newest version.
    pub version: u32,
    /// What it watches (`NAMESPACE` or `NAMESPACE/Kind/name`).
    pub scope: Vec<String>,
    /// The edges it holds.
    pub edges: usize,
    /// `flag` (the command line) or `api` (activated at run time).
    pub origin: String,
}

impl ActiveBaseline {
    fn of(b: &Baseline, origin: &str) -> Self {
        Self {
            name: b.name.clone(),
            version: b.version(),
            scope: b.scope.iter().map(ToString::to_string).collect(),
            edges: b.edges().len(),
            origin: origin.to_owned(),
        }
    }
}

/// Where the detectors are: idle (no baseline active), running on a
/// subscription, or lost to a panic.
enum Slot {
    Idle(Box<Worker>),
    Running {
        subscription: SubscriptionId,
        thread: JoinHandle<Worker>,
    },
    Gone,
}

/// What activation changes, under one lock.
struct Control {
    active: ActiveBaselines,
    slot: Slot,
}

/// The detectors and their sinks.
pub struct Alerts {
    history: Arc<History>,
    metrics: Arc<AlertMetrics>,
    alertmanager: Option<Arc<Alertmanager>>,
    statics: Vec<Baseline>,
    active_path: Option<PathBuf>,
    control: Mutex<Control>,
}

impl Alerts {
    /// Starts the sinks of `cfg` and the detectors of its baselines and
    /// the activated ones (`node` is the `node` label of their alerts,
    /// which also go into `timeline` if given); the automatic response
    /// writes to `quarantines`.
    pub fn start(
        cfg: &AlertsConfig,
        node: &str,
        history: Arc<History>,
        quarantines: Option<Arc<QuarantineStore>>,
        timeline: Option<Arc<Timeline>>,
    ) -> Result<Self, AlertsError> {
        let metrics = Arc::new(AlertMetrics::new(
            &[],
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
        let responder = quarantines
            .filter(|_| cfg.respond.enabled())
            .map(|q| Responder::new(cfg.respond.clone(), q));
        let worker = Worker {
            detectors: Vec::new(),
            detect: cfg.detect,
            node: node.to_owned(),
            jsonl,
            alertmanager: alertmanager.clone(),
            responder,
            metrics: Arc::clone(&metrics),
            lost_before: 0,
            timeline,
        };
        let alerts = Self {
            history,
            metrics,
            alertmanager,
            statics: cfg.baselines.clone(),
            active_path: cfg.active.clone(),
            control: Mutex::new(Control {
                active: ActiveBaselines::open(cfg.active.clone()),
                slot: Slot::Idle(Box::new(worker)),
            }),
        };
        let active = alerts.apply(&mut alerts.lock())?;
        tracing::info!(
            baselines = ?active.iter().map(|b| &b.name).collect::<Vec<_>>(),
            jsonl = ?cfg.jsonl,
            alertmanager = ?cfg.alertmanager.as_ref().map(|e| format!("{}:{}{}", e.host, e.port, e.path)),
            respond = ?cfg.respond.quarantine,
            "baseline alerts ready"
        );
        Ok(alerts)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The active baselines: the command line's, then the activated ones.
    pub fn active(&self) -> Vec<ActiveBaseline> {
        self.listed(&self.lock())
    }

    /// Which of `keys` are outside the active baselines: some baseline
    /// watches the edge ([`Baseline::watches_edge`]) and none holds it
    /// ([`Baseline::holds`]). The network map colours them.
    pub fn outside_baseline<'a>(
        &self,
        keys: impl Iterator<Item = &'a bulkhead_learn::EdgeKey>,
    ) -> std::collections::HashSet<bulkhead_learn::EdgeKey> {
        let control = self.lock();
        let active: Vec<&Baseline> = self.statics.iter().chain(control.active.list()).collect();
        if active.is_empty() {
            return Default::default();
        }
        keys.filter(|k| {
            active.iter().any(|b| b.watches_edge(k)) && !active.iter().any(|b| b.holds(k))
        })
        .cloned()
        .collect()
    }

    fn listed(&self, control: &Control) -> Vec<ActiveBaseline> {
        let statics = self.statics.iter().map(|b| ActiveBaseline::of(b, "flag"));
        let activated = control.active.list().map(|b| ActiveBaseline::of(b, "api"));
        statics.chain(activated).collect()
    }

    /// Activates `baseline` (replacing the activated one of its name):
    /// persisted, and checked against from the next record on.
    pub fn activate(&self, baseline: Baseline) -> Result<Vec<ActiveBaseline>, AlertsError> {
        if self.statics.iter().any(|b| b.name == baseline.name) {
            return Err(AlertsError::Static(baseline.name));
        }
        let mut control = self.lock();
        control
            .active
            .activate(baseline)
            .map_err(|source| self.persist_error(source))?;
        self.apply(&mut control)
    }

    /// Deactivates the activated baseline `name` (what its detector held
    /// is raised first): whether it was active, and the baselines now.
    pub fn deactivate(&self, name: &str) -> Result<(bool, Vec<ActiveBaseline>), AlertsError> {
        if self.statics.iter().any(|b| b.name == name) {
            return Err(AlertsError::Static(name.to_owned()));
        }
        let mut control = self.lock();
        let was = control
            .active
            .deactivate(name)
            .map_err(|source| self.persist_error(source))?;
        let now = if was {
            self.apply(&mut control)?
        } else {
            self.listed(&control)
        };
        Ok((was, now))
    }

    fn persist_error(&self, source: std::io::Error) -> AlertsError {
        AlertsError::Persist {
            path: self.active_path.clone().unwrap_or_default(),
            source,
        }
    }

    /// Runs the detectors of the active baselines (none: no thread, no
    /// subscription), taking the running ones' state over.
    fn apply(&self, control: &mut Control) -> Result<Vec<ActiveBaseline>, AlertsError> {
        let wanted: Vec<Baseline> = self
            .statics
            .iter()
            .chain(control.active.list())
            .cloned()
            .collect();
        // Subscribed before the old subscription ends: no record in between is missed.
        let subscription = (!wanted.is_empty()).then(|| {
            self.history
                .subscribe(Filter::default(), SUBSCRIPTION_QUEUE)
        });
        let mut worker = match std::mem::replace(&mut control.slot, Slot::Gone) {
            Slot::Idle(w) => *w,
            Slot::Running {
                subscription: old,
                thread,
            } => {
                self.history.unsubscribe(old);
                match thread.join() {
                    Ok(w) => w,
                    Err(_) => {
                        tracing::error!("the alert detectors panicked");
                        if let Some(s) = &subscription {
                            self.history.unsubscribe(s.id());
                        }
                        return Err(AlertsError::Gone);
                    }
                }
            }
            Slot::Gone => {
                if let Some(s) = &subscription {
                    self.history.unsubscribe(s.id());
                }
                return Err(AlertsError::Gone);
            }
        };
        worker.retarget(&wanted);
        control.slot = match subscription {
            None => Slot::Idle(Box::new(worker)),
            Some(sub) => {
                let id = sub.id();
                let thread = std::thread::Builder::new()
                    .name("bulkhead-alerts".into())
                    .spawn(move || worker.run(&sub))
                    .map_err(|e| {
                        self.history.unsubscribe(id);
                        AlertsError::Start(e)
                    })?;
                Slot::Running {
                    subscription: id,
                    thread,
                }
            }
        };
        Ok(self.listed(control))
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
        let slot = std::mem::replace(&mut self.lock().slot, Slot::Gone);
        let worker = match slot {
            Slot::Idle(w) => Some(*w),
            Slot::Running {
                subscription,
                thread,
            } => {
                self.history.unsubscribe(subscription);
                thread
                    .join()
                    .inspect_err(|_| tracing::error!("the alert detectors panicked"))
                    .ok()
            }
            Slot::Gone => None,
        };
        if let Some(mut w) = worker {
            w.finish();
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

#[cfg(test)]
mod tests;
