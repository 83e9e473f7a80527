//! The alerting benchmark (issue 17; needs root and the eBPF ELF): what
//! the agent's baseline-deviation alerting costs the flow pipeline at 100k
//! new flows/s, and whether its detectors keep up.
//!
//! Runs of the flow benchmark's pipeline and driver ([`crate::flows::run`])
//! side by side, alternating: without alerting (A) and with the agent's
//! alerts path (B: `bulkhead_agent::alerts::Alerts` on the pipeline's
//! history, a JSON Lines sink and, unless told otherwise, an Alertmanager
//! at a loopback port nobody listens on). The flows spread over the edges
//! of a baseline ([`Scenario`]), a share of them deviating to new edges.
//!
//! - [`Scenario`]: the flows' layout and the baseline;
//! - [`report`]: the report.

pub mod report;

use std::net::TcpListener;

use anyhow::{Context as _, Result, ensure};
use bulkhead_agent::alerts::AlertsConfig;
use bulkhead_agent::alerts::alertmanager::Endpoint;
use bulkhead_flows::record::Timestamp;
use bulkhead_learn::baseline::detect::DetectConfig;
use bulkhead_learn::baseline::{Baseline, Scope};
use bulkhead_learn::edge::{EdgeKey, EdgeStats, End, History, SideCounts, WorkloadId};
use serde::Serialize;

use crate::flows::policy::{EdgeLayout, FlowPolicy};

/// The baseline's name.
pub const BASELINE: &str = "alert-bench";
/// IP protocol of the driven flows (UDP).
const UDP: u8 = 17;

/// What the runs drive and check against.
#[derive(Clone, Debug, Serialize)]
pub struct Scenario {
    /// How flows map to edges.
    pub layout: EdgeLayout,
    /// The driven rate, new flows/s.
    pub rate: f64,
    /// Share of flows that deviate (`1 / layout.every`; 0: none).
    pub deviation_share: f64,
    /// New edges per second the deviations reach.
    pub new_edges_per_second: f64,
    /// The subject's workload (the source of every flow).
    pub subject: WorkloadId,
    /// The detectors' thresholds (the agent's defaults).
    #[serde(skip)]
    pub detect: DetectConfig,
    /// The baseline.
    #[serde(skip)]
    pub baseline: Baseline,
    /// Alertmanager's address, if any (`None`: not configured).
    pub alertmanager: Option<String>,
}

impl Scenario {
    /// `known` baseline edges, a share `deviation_share` of the flows at
    /// `rate` deviating, spread over `new_edges_per_second` new edges per
    /// second; an Alertmanager on a dead loopback port if `alertmanager`.
    pub fn new(
        policy: &FlowPolicy,
        rate: f64,
        known: u64,
        deviation_share: f64,
        new_edges_per_second: f64,
        alertmanager: bool,
    ) -> Result<Self> {
        ensure!(
            (0.0..=0.5).contains(&deviation_share),
            "the deviation share must be between 0 and 0.5"
        );
        ensure!(
            new_edges_per_second > 0.0,
            "new edges per second must be positive"
        );
        let every = if deviation_share == 0.0 {
            0
        } else {
            (1.0 / deviation_share).round() as u64
        };
        let deviating_per_second = rate / every.max(1) as f64;
        let per_new = (deviating_per_second / new_edges_per_second)
            .round()
            .clamp(1.0, EdgeLayout::MAX_PER_NEW as f64) as u64;
        let layout = EdgeLayout::new(known, every, per_new)
            .with_context(|| format!("{known} baseline edges do not fit the address block"))?;
        let subject = subject(policy);
        let baseline = baseline(&subject, known)?;
        let alertmanager = alertmanager.then(dead_port).transpose()?;
        Ok(Self {
            layout,
            rate,
            deviation_share: if every == 0 { 0.0 } else { 1.0 / every as f64 },
            new_edges_per_second: if every == 0 {
                0.0
            } else {
                deviating_per_second / per_new as f64
            },
            subject,
            detect: DetectConfig::default(),
            baseline,
            alertmanager: alertmanager.map(|p| format!("http://127.0.0.1:{p}")),
        })
    }

    /// The agent's alerting configuration of the runs with alerting (the
    /// run adds the JSON Lines file).
    pub fn alerts(&self) -> Result<AlertsConfig> {
        Ok(AlertsConfig {
            baselines: vec![self.baseline.clone()],
            detect: self.detect,
            jsonl: None,
            alertmanager: self
                .alertmanager
                .as_deref()
                .map(Endpoint::parse)
                .transpose()
                .context("the Alertmanager URL")?,
            ..AlertsConfig::default()
        })
    }
}

/// The subject's workload, as its flow records name it.
pub fn subject(policy: &FlowPolicy) -> WorkloadId {
    let pod = &policy.model.pods[policy.subject_index];
    WorkloadId {
        namespace: pod.namespace.clone(),
        workload: bulkhead_flows::enrich::workload(pod)
            .unwrap_or_else(|| format!("Pod/{}", pod.name)),
    }
}

/// The edge of `e` (see [`EdgeLayout::edge`]) from `subject`.
pub fn edge_key(subject: &WorkloadId, e: u64) -> EdgeKey {
    let (dst, port) = EdgeLayout::edge(e);
    EdgeKey {
        src: End::Workload(subject.clone()),
        dst: End::External(dst.into()),
        protocol: UDP,
        port,
    }
}

/// A baseline of the subject's namespace holding edges `0..known`, taken
/// from a history of them as `bulkhead baseline take` does.
pub fn baseline(subject: &WorkloadId, known: u64) -> Result<Baseline> {
    let mut history = History::default();
    let counts = SideCounts {
        flows: 1,
        packets: 1,
        bytes: 64,
    };
    for e in 0..known {
        history.edges.insert(
            edge_key(subject, e),
            EdgeStats {
                first_seen: Timestamp(0),
                last_seen: Timestamp(0),
                at_src: counts,
                at_dst: SideCounts::default(),
                denied: None,
            },
        );
    }
    let b = Baseline::take(
        BASELINE,
        vec![Scope::Namespace(subject.namespace.clone())],
        &history,
        0,
    )?;
    ensure!(
        b.edges().len() as u64 == known,
        "the baseline holds {} edges, not {known}",
        b.edges().len()
    );
    Ok(b)
}

/// A loopback TCP port nobody listens on (bound, then released).
fn dead_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("binding a loopback port")?;
    Ok(l.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulkhead_learn::baseline::detect::{AlertKind, Detector};
    use bulkhead_learn::key_of;
    use bulkhead_testkit::flows::flow_record;

    #[test]
    fn the_baseline_holds_the_known_edges_and_a_deviation_alerts() {
        let policy = FlowPolicy::new(0);
        let s = Scenario::new(&policy, 100e3, 1_000, 0.01, 5.0, false).unwrap();
        assert_eq!(s.layout.every, 100);
        assert_eq!(s.layout.per_new, 200);
        assert_eq!(s.baseline.edges().len(), 1_000);
        assert!(s.baseline.holds(&edge_key(&s.subject, 999)));
        assert!(!s.baseline.holds(&edge_key(&s.subject, 1_000)));
        // A record of a known edge and one of a new edge, as the enricher
        // names the subject.
        let mut d = Detector::new(s.baseline.clone(), s.detect);
        let mut r = flow_record();
        let pod = r.src.pod.as_mut().map(std::sync::Arc::make_mut).unwrap();
        pod.namespace = s.subject.namespace.clone().into();
        pod.workload = Some(s.subject.workload.clone().into());
        r.dst.pod = None;
        r.protocol.0 = UDP;
        let (dst, port) = EdgeLayout::edge(5);
        (r.dst.ip, r.dst.port) = (dst.into(), port);
        assert_eq!(key_of(&r).unwrap(), edge_key(&s.subject, 5));
        assert!(d.observe(&r).is_empty());
        let (dst, port) = EdgeLayout::edge(1_000);
        (r.dst.ip, r.dst.port) = (dst.into(), port);
        assert!(d.observe(&r).is_empty(), "held for the scan window");
        let alerts = d.flush(u64::MAX);
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].kind, AlertKind::NewExternal);
    }
}
