//! The detectors' thread: live records in, alerts out to the sinks and the
//! automatic response. It sleeps until a record comes or the next held
//! scan window ends ([`Detector::next_deadline`]); nothing polls.
//!
//! The thread ends when its subscription does and hands the [`Worker`]
//! back (detectors with their held windows and dedup state, and the
//! sinks), so a change of the active baselines goes on where it was
//! rather than starting over ([`Worker::retarget`]).

use std::sync::Arc;
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

use bulkhead_flows::Subscription;
use bulkhead_learn::baseline::Baseline;
use bulkhead_learn::baseline::detect::{Alert, DetectConfig, Detector};

use super::alertmanager::Alertmanager;
use super::jsonl::{AlertLine, JsonlSink};
use super::metrics::AlertMetrics;
use super::respond::{Responder, Response};
use super::{labels, now_ms};

/// The detectors and where their alerts go.
pub(super) struct Worker {
    pub(super) detectors: Vec<Detector>,
    pub(super) detect: DetectConfig,
    pub(super) node: String,
    pub(super) jsonl: Option<JsonlSink>,
    pub(super) alertmanager: Option<Arc<Alertmanager>>,
    pub(super) responder: Option<Responder>,
    pub(super) metrics: Arc<AlertMetrics>,
    /// Records lost by the subscriptions of earlier runs.
    pub(super) lost_before: u64,
}

impl Worker {
    /// Checks against `wanted` from now on: a detector whose baseline is
    /// unchanged keeps its state, one whose baseline went (or changed) is
    /// flushed first (what it held is raised), new ones start empty.
    pub(super) fn retarget(&mut self, wanted: &[Baseline]) {
        let (kept, gone): (Vec<Detector>, Vec<Detector>) = std::mem::take(&mut self.detectors)
            .into_iter()
            .partition(|d| wanted.contains(d.baseline()));
        let mut flushed: Vec<Alert> = Vec::new();
        for mut d in gone {
            flushed.extend(d.flush(u64::MAX));
        }
        self.emit(&flushed);
        let mut kept = kept;
        self.detectors = wanted
            .iter()
            .map(|b| match kept.iter().position(|d| d.baseline() == b) {
                Some(i) => kept.swap_remove(i),
                None => Detector::new(b.clone(), self.detect),
            })
            .collect();
        let names: Vec<String> = wanted.iter().map(|b| b.name.clone()).collect();
        self.metrics.add_baselines(&names);
    }

    /// Runs on `sub` until it ends; hands itself back (nothing flushed).
    pub(super) fn run(mut self, sub: &Subscription) -> Self {
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
            let alerts: Vec<Alert> = match sub.recv_timeout(wait) {
                Ok(r) => self
                    .detectors
                    .iter_mut()
                    .flat_map(|d| d.observe(&r))
                    .collect(),
                Err(RecvTimeoutError::Timeout) => {
                    let now = now_ms();
                    self.detectors
                        .iter_mut()
                        .flat_map(|d| d.flush(now))
                        .collect()
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            self.emit(&alerts);
            self.metrics.set_records_lost(self.lost_before + sub.lost());
        }
        self.lost_before += sub.lost();
        self.metrics.set_records_lost(self.lost_before);
        self
    }

    /// Stopping: what is held is raised now rather than lost.
    pub(super) fn finish(&mut self) {
        let alerts: Vec<Alert> = self
            .detectors
            .iter_mut()
            .flat_map(|d| d.flush(u64::MAX))
            .collect();
        self.emit(&alerts);
    }

    fn emit(&mut self, alerts: &[Alert]) {
        for d in &self.detectors {
            self.metrics
                .set_suppressed(&d.baseline().name, d.suppressed());
        }
        if alerts.is_empty() {
            return;
        }
        let now = now_ms();
        let interval = Duration::from_millis(self.detect.interval_ms);
        for a in alerts {
            self.metrics.alert(a.kind, &a.baseline);
            tracing::info!(
                kind = a.kind.as_str(),
                baseline = %a.baseline,
                summary = %labels::summary(a),
                "baseline alert"
            );
            let responses = self.respond(a);
            if let Some(sink) = &mut self.jsonl {
                let mut line = AlertLine::new(a, &self.node, now);
                line.responses = responses;
                let written = sink.write(&line);
                self.metrics.jsonl(written);
            }
            if let Some(am) = &self.alertmanager {
                am.send(labels::postable(a, &self.node, interval));
            }
        }
    }

    /// The automatic response to `a`, logged and counted; what it did, as
    /// the alerts file records it.
    fn respond(&self, a: &Alert) -> Vec<String> {
        let Some(responder) = &self.responder else {
            return Vec::new();
        };
        let responses = responder.respond(a);
        for r in &responses {
            self.metrics.response(a.kind, r);
            match r {
                Response::Quarantined(pod) => tracing::warn!(
                    pod = %pod, kind = a.kind.as_str(), "quarantined automatically"
                ),
                Response::Already(_) => {}
                Response::Failed(pod, e) => tracing::error!(
                    pod = %pod, error = %e, "the automatic quarantine failed"
                ),
            }
        }
        responses.iter().map(Response::describe).collect()
    }
}
