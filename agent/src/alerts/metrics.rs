//! The alerts' Prometheus metrics, in a registry of their own that the
//! agent's `/metrics` appends to the flow metrics ([`AlertMetrics::append`]).
//!
//! - `bulkhead_alerts_total{kind,baseline}`: alerts raised;
//! - `bulkhead_alerts_lost_total{sink,reason}`: alerts a sink could not
//!   take (`jsonl`: `write`; `alertmanager`: the client's reasons, see
//!   [`LossReason`]);
//! - `bulkhead_alerts_delivered_total{sink}`: alerts a sink took;
//! - `bulkhead_alerts_records_lost_total`: live records the detectors never
//!   saw (their subscription's queue was full);
//! - `bulkhead_alerts_suppressed_total{baseline}`: deviating records that
//!   raised nothing (the edge alerted this interval, or folded into a scan);
//! - `bulkhead_alert_responses_total{action,kind,outcome}`: the automatic
//!   response's pods (`quarantine`; `quarantined`, `already`, `failed`).
//!
//! Counters that mirror counts kept elsewhere (the Alertmanager client's,
//! the subscription's) are set to those values when rendered, so they
//! stay exact.

use std::sync::atomic::Ordering;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::alertmanager::{DeliveryStats, LossReason};
use super::respond::Response;
use bulkhead_learn::baseline::detect::AlertKind;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlertLabels {
    kind: &'static str,
    baseline: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LostLabels {
    sink: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkLabel {
    sink: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResponseLabels {
    action: &'static str,
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BaselineLabel {
    baseline: String,
}

/// The JSON Lines sink's name in `sink` labels.
pub const SINK_JSONL: &str = "jsonl";
/// Alertmanager's name in `sink` labels.
pub const SINK_ALERTMANAGER: &str = "alertmanager";

/// The alerts' metrics.
#[derive(Debug)]
pub struct AlertMetrics {
    registry: Registry,
    alerts: Family<AlertLabels, Counter>,
    lost: Family<LostLabels, Counter>,
    delivered: Family<SinkLabel, Counter>,
    records_lost: Counter,
    suppressed: Family<BaselineLabel, Counter>,
    responses: Family<ResponseLabels, Counter>,
}

impl AlertMetrics {
    /// Every metric registered; a zero series for each baseline's kinds
    /// and each sink in use, so a dashboard sees them before the first alert.
    pub fn new(baselines: &[String], jsonl: bool, alertmanager: bool) -> Self {
        let mut registry = Registry::default();
        let alerts = Family::<AlertLabels, Counter>::default();
        let lost = Family::<LostLabels, Counter>::default();
        let delivered = Family::<SinkLabel, Counter>::default();
        let records_lost = Counter::default();
        let suppressed = Family::<BaselineLabel, Counter>::default();
        let responses = Family::<ResponseLabels, Counter>::default();
        registry.register(
            "bulkhead_alerts",
            "Baseline-deviation alerts raised",
            alerts.clone(),
        );
        registry.register(
            "bulkhead_alerts_lost",
            "Alerts a sink could not take, by reason",
            lost.clone(),
        );
        registry.register(
            "bulkhead_alerts_delivered",
            "Alerts a sink took",
            delivered.clone(),
        );
        registry.register(
            "bulkhead_alerts_records_lost",
            "Live flow records the baseline detectors never saw (their queue was full)",
            records_lost.clone(),
        );
        registry.register(
            "bulkhead_alerts_suppressed",
            "Deviating records that raised no alert (already alerted this interval, or part of a scan)",
            suppressed.clone(),
        );
        registry.register(
            "bulkhead_alert_responses",
            "Pods the automatic response acted on, by action, alert kind and outcome",
            responses.clone(),
        );
        let m = Self {
            registry,
            alerts,
            lost,
            delivered,
            records_lost,
            suppressed,
            responses,
        };
        m.add_baselines(baselines);
        m.add_sinks(jsonl, alertmanager);
        m
    }

    /// Zero series of `baselines` (their alert kinds, their suppressed
    /// records), so a dashboard sees a baseline before its first alert.
    pub fn add_baselines(&self, baselines: &[String]) {
        let (alerts, suppressed) = (&self.alerts, &self.suppressed);
        for b in baselines {
            for kind in [
                AlertKind::NewPeer,
                AlertKind::NewPort,
                AlertKind::NewExternal,
                AlertKind::Scan,
            ] {
                let _ = alerts.get_or_create(&AlertLabels {
                    kind: kind.as_str(),
                    baseline: b.clone(),
                });
            }
            let _ = suppressed.get_or_create(&BaselineLabel {
                baseline: b.clone(),
            });
        }
    }

    fn add_sinks(&self, jsonl: bool, alertmanager: bool) {
        let (lost, delivered) = (&self.lost, &self.delivered);
        if jsonl {
            let _ = lost.get_or_create(&LostLabels {
                sink: SINK_JSONL,
                reason: "write",
            });
            let _ = delivered.get_or_create(&SinkLabel { sink: SINK_JSONL });
        }
        if alertmanager {
            for r in LossReason::ALL {
                let _ = lost.get_or_create(&LostLabels {
                    sink: SINK_ALERTMANAGER,
                    reason: r.as_str(),
                });
            }
            let _ = delivered.get_or_create(&SinkLabel {
                sink: SINK_ALERTMANAGER,
            });
        }
    }

    /// One pod the automatic response acted on.
    pub fn response(&self, kind: AlertKind, r: &Response) {
        self.responses
            .get_or_create(&ResponseLabels {
                action: "quarantine",
                kind: kind.as_str(),
                outcome: r.outcome(),
            })
            .inc();
    }

    /// One alert raised.
    pub fn alert(&self, kind: AlertKind, baseline: &str) {
        self.alerts
            .get_or_create(&AlertLabels {
                kind: kind.as_str(),
                baseline: baseline.to_owned(),
            })
            .inc();
    }

    /// One alert written to the JSON Lines file, or not.
    pub fn jsonl(&self, written: bool) {
        if written {
            self.delivered
                .get_or_create(&SinkLabel { sink: SINK_JSONL })
                .inc();
        } else {
            self.lost
                .get_or_create(&LostLabels {
                    sink: SINK_JSONL,
                    reason: "write",
                })
                .inc();
        }
    }

    /// Sets the records the detectors' subscription lost.
    pub fn set_records_lost(&self, n: u64) {
        self.records_lost.inner().store(n, Ordering::Relaxed);
    }

    /// Sets the records a baseline's detector suppressed.
    pub fn set_suppressed(&self, baseline: &str, n: u64) {
        self.suppressed
            .get_or_create(&BaselineLabel {
                baseline: baseline.to_owned(),
            })
            .inner()
            .store(n, Ordering::Relaxed);
    }

    /// Sets the Alertmanager client's counts.
    pub fn set_alertmanager(&self, s: &DeliveryStats) {
        self.delivered
            .get_or_create(&SinkLabel {
                sink: SINK_ALERTMANAGER,
            })
            .inner()
            .store(s.delivered, Ordering::Relaxed);
        for r in LossReason::ALL {
            let n = s.lost.get(r.as_str()).copied().unwrap_or(0);
            self.lost
                .get_or_create(&LostLabels {
                    sink: SINK_ALERTMANAGER,
                    reason: r.as_str(),
                })
                .inner()
                .store(n, Ordering::Relaxed);
        }
    }

    /// `text` (an OpenMetrics exposition ending in `# EOF`) with these
    /// metrics inserted before its end.
    pub fn append(&self, text: String) -> String {
        let mut out = match text.strip_suffix("# EOF\n") {
            Some(body) => body.to_owned(),
            None => text,
        };
        prometheus_client::encoding::text::encode_registry(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        prometheus_client::encoding::text::encode_eof(&mut out)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_before_the_end_of_the_exposition() {
        let m = AlertMetrics::new(&["shop".into()], true, true);
        m.alert(AlertKind::Scan, "shop");
        m.jsonl(false);
        let mut stats = DeliveryStats {
            delivered: 4,
            ..DeliveryStats::default()
        };
        stats.lost.insert("queue_full", 7);
        m.set_alertmanager(&stats);
        m.set_records_lost(3);
        let text = m.append("# TYPE bulkhead_up gauge\nbulkhead_up 1\n# EOF\n".into());
        assert!(text.starts_with("# TYPE bulkhead_up gauge\nbulkhead_up 1\n"));
        assert!(text.ends_with("# EOF\n"));
        assert_eq!(text.matches("# EOF").count(), 1);
        for line in [
            "bulkhead_alerts_total{kind=\"scan\",baseline=\"shop\"} 1",
            "bulkhead_alerts_total{kind=\"new_peer\",baseline=\"shop\"} 0",
            "bulkhead_alerts_lost_total{sink=\"jsonl\",reason=\"write\"} 1",
            "bulkhead_alerts_lost_total{sink=\"alertmanager\",reason=\"queue_full\"} 7",
            "bulkhead_alerts_lost_total{sink=\"alertmanager\",reason=\"connect\"} 0",
            "bulkhead_alerts_delivered_total{sink=\"alertmanager\"} 4",
            "bulkhead_alerts_records_lost_total 3",
        ] {
            assert!(text.contains(line), "{line} missing in:\n{text}");
        }
    }
}
