//! One run: a fresh ELF instance (own maps, nothing pinned) programmed
//! with the [`FlowPolicy`], the agent's pipeline over its flow maps with a
//! JSON Lines file exporter in a temporary directory, the driver at one
//! rate for one duration, then the pipeline stopped (both tables drained,
//! the ring read, every cached flow finished, the exporter flushed) and the
//! accounting and the flow log checked.
//!
//! A settling run keeps the pipeline running after the driver stops, with
//! no traffic, until it has exported every flow through its own timeouts
//! (the idle timeout: 15 s), as a running agent would, and stops it then;
//! a run without settling stops it at once, with the flow cache full. The
//! losses are split into those counted while running (the pipeline's
//! accounting just before the stop) and those of the stop.
//!
//! With alerting ([`run_with`]), the agent's baseline-deviation detectors
//! (`bulkhead_agent::alerts::Alerts`) run on the pipeline's history as in
//! the agent, their alerts appended to a JSON Lines file in the run's
//! temporary directory; after the stop the run waits until they have taken
//! every record the history offered them (or lost it, counted).
//!
//! CPU placement: with two or more CPUs the driver thread is pinned to the
//! last allowed CPU and the pipeline's threads (the collector and the JSON
//! Lines writer and the alert detectors, which inherit the affinity of the
//! thread that starts them) to the others, so the driver's syscalls and the pipeline do not
//! compete for a CPU.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use aya::programs::SchedClassifier;
use bulkhead_agent::alerts::{Alerts, AlertsConfig, AlertsStats};
use bulkhead_flows::accounting::Accounting;
use bulkhead_flows::export::{JsonlConfig, JsonlTarget};
use bulkhead_flows::{Pipeline, PipelineConfig, PipelineHandle};
use serde::Serialize;

use super::cpu;
use super::driver::{self, DrivePlan, Driven};
use super::policy::FlowPolicy;
use super::verify::{self, LogCheck};
use crate::elf::load_programmed;
use crate::machine::{peak_rss_kib, reset_peak_rss};

/// Policy revision the runs use.
pub const REVISION: u64 = 1;
/// Node name in the records.
pub const NODE: &str = "flow-bench";

/// How a run is set up.
#[derive(Clone, Debug, Serialize)]
pub struct RunPlan {
    /// What to drive.
    pub drive: DrivePlan,
    /// FLOW_CONFIG flags.
    pub flow_flags: u32,
    /// After driving, keep the pipeline running (no traffic) until it has
    /// exported every flow through its own timeouts, as a running agent
    /// does, before stopping it. Without: stop at once, with the flow cache
    /// full (what stopping an agent under load does).
    pub settle: bool,
}

/// Where the driver and the pipeline run.
#[derive(Clone, Debug, Serialize)]
pub struct Placement {
    /// The driver's CPUs.
    pub driver: Vec<usize>,
    /// The pipeline's CPUs.
    pub pipeline: Vec<usize>,
    /// Every CPU the process may use.
    pub all: Vec<usize>,
}

impl Placement {
    /// The last allowed CPU for the driver, the others for the pipeline
    /// (with one CPU, both share it).
    pub fn detect() -> Self {
        let all = cpu::allowed_cpus();
        match all.split_last() {
            Some((&last, rest)) if !rest.is_empty() => Self {
                driver: vec![last],
                pipeline: rest.to_vec(),
                all,
            },
            _ => Self {
                driver: all.clone(),
                pipeline: all.clone(),
                all,
            },
        }
    }
}

/// Records lost, by stage and reason (what the identity counts as loss).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Lost {
    /// Kernel: records neither the flow table nor the ring took
    /// (`fallback_lost`).
    pub kernel: u64,
    /// JSON Lines exporter, by reason (`queue_full`, `write_error`, ...).
    pub jsonl: BTreeMap<String, u64>,
}

impl Lost {
    /// The losses an accounting counts.
    pub fn of(a: &Accounting) -> Self {
        let jsonl = a
            .exporters
            .iter()
            .flat_map(|e| e.lost.iter())
            .filter(|(_, n)| **n > 0)
            .fold(BTreeMap::new(), |mut m, (r, n)| {
                *m.entry(r.clone()).or_default() += *n;
                m
            });
        Self {
            kernel: a.kernel.fallback_lost,
            jsonl,
        }
    }

    /// All records lost.
    pub fn total(&self) -> u64 {
        self.kernel + self.jsonl.values().sum::<u64>()
    }
}

/// The name of the alert detectors' thread (its `comm`).
pub const DETECTOR_THREAD: &str = "bulkhead-alerts";

/// How long the run waits after the stop for the detectors to take what
/// is queued for them.
const CATCH_UP: Duration = Duration::from_secs(30);

/// What alerting did in a run.
#[derive(Clone, Debug, Serialize)]
pub struct AlertingResult {
    /// Records the pipeline's history offered its subscribers (the
    /// detectors' subscription took part from before the first flow).
    pub offered: u64,
    /// The detectors' counts: records checked, records their subscription
    /// lost, the Alertmanager client's deliveries.
    pub stats: AlertsStats,
    /// Records lost by the detectors' subscription before the pipeline
    /// was stopped.
    pub lost_running: u64,
    /// The detectors had taken every offered record (checked or lost)
    /// before their CPU time was read.
    pub caught_up: bool,
    /// Alerts in the JSON Lines file, by kind.
    pub alerts: BTreeMap<String, u64>,
    /// Lines of the alerts file that are not a `bulkhead.alert/v1` alert.
    pub bad_lines: u64,
    /// CPU seconds of the detectors' thread, from its start until it had
    /// caught up.
    pub detector_seconds: Option<f64>,
}

impl AlertingResult {
    /// Alerts raised.
    pub fn alerts_total(&self) -> u64 {
        self.alerts.values().sum()
    }

    /// Every offered record reached the detectors.
    pub fn missed_none(&self) -> bool {
        self.caught_up && self.stats.records_lost == 0 && self.stats.records == self.offered
    }
}

/// Counts the alerts of a JSON Lines alerts file, by kind, and the lines
/// that are not alerts.
fn count_alerts(path: &Path) -> Result<(BTreeMap<String, u64>, u64)> {
    let text = std::fs::read_to_string(path)
        .or_else(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Ok(String::new())
            } else {
                Err(e)
            }
        })
        .with_context(|| format!("reading {}", path.display()))?;
    let mut kinds = BTreeMap::new();
    let mut bad = 0;
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
        match (v["schema"].as_str(), v["kind"].as_str()) {
            (Some("bulkhead.alert/v1"), Some(kind)) => {
                *kinds.entry(kind.to_owned()).or_default() += 1;
            }
            _ => bad += 1,
        }
    }
    Ok((kinds, bad))
}

/// CPU time of a run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CpuUse {
    /// The driver thread, while driving (its `BPF_PROG_TEST_RUN` syscalls,
    /// program runs included).
    pub driver_seconds: Option<f64>,
    /// The pipeline, from its start to the end of its stop: the process's
    /// CPU time minus the driving thread's.
    pub pipeline_seconds: Option<f64>,
    /// The collector thread, while the driver ran.
    pub collector_seconds: Option<f64>,
    /// The JSON Lines writer thread, while the driver ran.
    pub writer_seconds: Option<f64>,
    /// With alerting: the detectors' thread, until it had caught up (part
    /// of `pipeline_seconds`).
    pub detector_seconds: Option<f64>,
}

/// One run's results.
#[derive(Clone, Debug, Serialize)]
pub struct RunResult {
    /// What it was.
    pub plan: RunPlan,
    /// What the driver did.
    pub driven: Driven,
    /// The pipeline's final accounting.
    pub accounting: Accounting,
    /// Kernel side: records = received + lost (and packets, bytes).
    pub kernel_holds: bool,
    /// Exporters: finished = exported + lost (pending 0).
    pub exporters_hold: bool,
    /// Every stage (`Accounting::holds`).
    pub holds: bool,
    /// Kernel records created = flows driven (one record per flow).
    pub kernel_records_match: bool,
    /// Records the JSON Lines exporter delivered.
    pub exported: u64,
    /// Losses counted, in all.
    pub lost: Lost,
    /// Losses counted before the pipeline was stopped (its accounting as
    /// of its last drain); the rest were lost by the stop.
    pub lost_running: Lost,
    /// Seconds the pipeline ran on after driving until it had exported
    /// every flow (settling runs).
    pub settle_seconds: Option<f64>,
    /// Settling runs: the pipeline had exported every flow before the stop
    /// (else the settling time ran out).
    pub settled: bool,
    /// Notifications (new-flow events) lost in a full ring: outside the
    /// identity (their flows are in the table).
    pub events_lost: u64,
    /// Flows exported early because the flow cache was full.
    pub evicted: u64,
    /// The flow log.
    pub log: LogCheck,
    /// Lines in the log = `exported`.
    pub log_matches_exported: bool,
    /// Seconds `PipelineHandle::stop` took.
    pub stop_seconds: f64,
    /// Seconds from the pipeline's start to the end of its stop.
    pub pipeline_seconds: f64,
    /// CPU time.
    pub cpu: CpuUse,
    /// Peak RSS of the process during the run (`VmHWM`), KiB.
    pub peak_rss_kib: Option<u64>,
    /// Where the threads ran.
    pub placement: Placement,
    /// With alerting: what it did.
    pub alerting: Option<AlertingResult>,
}

impl RunResult {
    /// Records lost by the stop.
    pub fn lost_at_stop(&self) -> u64 {
        self.lost.total().saturating_sub(self.lost_running.total())
    }

    /// The whole identity held and the log matched it.
    pub fn identity_holds(&self) -> bool {
        self.holds && self.kernel_records_match && self.log_matches_exported
    }

    /// No loss, every driven flow in the log, the identity exact.
    pub fn zero_loss(&self) -> bool {
        self.lost.total() == 0 && self.log.complete(self.driven.flows) && self.identity_holds()
    }

    /// JSON Lines bytes per second at the driven rate: the log's size
    /// over the seconds driven (the write rate the run sustained; records
    /// of the last seconds are written while settling).
    pub fn jsonl_bytes_per_second(&self) -> f64 {
        self.log.bytes as f64 / self.driven.seconds.max(1e-9)
    }

    /// Pipeline CPU µs per exported record (with alerting, the
    /// detectors' thread included).
    pub fn pipeline_us_per_record(&self) -> Option<f64> {
        let s = self.cpu.pipeline_seconds?;
        (self.exported > 0).then(|| s * 1e6 / self.exported as f64)
    }

    /// Pipeline CPU µs per exported record without the detectors' thread
    /// (with alerting: what feeding the detectors costs the collector).
    pub fn pipeline_us_per_record_without_detector(&self) -> Option<f64> {
        let s = self.cpu.pipeline_seconds? - self.cpu.detector_seconds.unwrap_or(0.0);
        (self.exported > 0).then(|| s.max(0.0) * 1e6 / self.exported as f64)
    }

    /// The detectors' thread's CPU µs per exported record.
    pub fn detector_us_per_record(&self) -> Option<f64> {
        let s = self.cpu.detector_seconds?;
        (self.exported > 0).then(|| s * 1e6 / self.exported as f64)
    }

    /// Driver CPU µs per flow.
    pub fn driver_us_per_flow(&self) -> Option<f64> {
        let s = self.cpu.driver_seconds?;
        (self.driven.flows > 0).then(|| s * 1e6 / self.driven.flows as f64)
    }
}

/// How long a settling run waits at most: the idle timeout, a few drains
/// and a margin.
fn settle_limit() -> Duration {
    let c = PipelineConfig::new(NODE);
    c.aggregate.idle_timeout + 4 * c.drain_interval + Duration::from_secs(5)
}

/// Waits (at most `limit`) until the pipeline has received all `flows`
/// kernel records, holds no flow and has nothing pending in an exporter,
/// as of its last drain. Whether it got there.
fn settle(handle: &PipelineHandle, flows: u64, limit: Duration) -> bool {
    let start = Instant::now();
    loop {
        let a = handle.accounting();
        if a.accounted_records() >= flows
            && a.cache.flows == 0
            && a.exporters
                .iter()
                .all(|e| e.pending == 0 && e.submitted == a.cache.records)
        {
            return true;
        }
        if start.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sub(a: Option<Duration>, b: Option<Duration>) -> Option<f64> {
    Some(a?.saturating_sub(b?).as_secs_f64())
}

/// Runs `plan` with a fresh load of `elf`, compiled `policy` and threads
/// placed by `placement`. Progress goes to stderr.
pub fn run(
    elf: &Path,
    policy: &FlowPolicy,
    placement: &Placement,
    plan: &RunPlan,
) -> Result<RunResult> {
    run_with(elf, policy, placement, plan, None)
}

/// Waits (at most `limit`) until the detectors have taken `offered`
/// records, checked or lost. Whether they did.
fn catch_up(alerts: &Alerts, offered: u64, limit: Duration) -> bool {
    let start = Instant::now();
    loop {
        let s = alerts.stats();
        if s.records + s.records_lost >= offered {
            return true;
        }
        if start.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// [`run`], with the agent's alerting on when `alerts` is given: its
/// baselines, thresholds and Alertmanager as given, its JSON Lines file
/// replaced by one in the run's temporary directory.
pub fn run_with(
    elf: &Path,
    policy: &FlowPolicy,
    placement: &Placement,
    plan: &RunPlan,
    alerts: Option<&AlertsConfig>,
) -> Result<RunResult> {
    let slot = bulkhead_common::active_slot(REVISION);
    let mut dp = load_programmed(elf, &policy.image, slot, policy.subject, REVISION)?;
    let mut tap = dp
        .try_flow_tap()
        .context("the ELF has no flow maps (built before ABI v5)")?;
    tap.set_config(plan.flow_flags)
        .context("writing FLOW_CONFIG")?;

    let dir = tempfile::Builder::new()
        .prefix("bulkhead-flow-bench-")
        .tempdir()
        .context("creating a temporary directory for the flow log")?;
    let log = dir.path().join("flows.jsonl");
    let mut config = PipelineConfig::new(NODE);
    // Large enough never to rotate (the check reads rotated files anyway).
    config.jsonl = Some(JsonlConfig::new(JsonlTarget::File {
        path: log.clone(),
        max_bytes: u64::MAX,
        keep: 1,
    }));
    let enricher = Arc::new(RwLock::new(policy.enricher(REVISION)));

    // The pipeline's threads inherit this thread's affinity.
    cpu::pin(&placement.pipeline);
    reset_peak_rss();
    let process0 = cpu::process_cpu();
    let main0 = cpu::this_thread_cpu();
    let started = Instant::now();
    let handle =
        Pipeline::start(Box::new(tap), enricher, config).context("starting the pipeline")?;
    let alerts_file = dir.path().join("alerts.jsonl");
    let alerting = match alerts {
        Some(cfg) => {
            let mut cfg = cfg.clone();
            cfg.jsonl = Some(alerts_file.clone());
            Some(
                Alerts::start(&cfg, NODE, Arc::clone(&handle.history), None, None)
                    .context("starting the alert detectors")?,
            )
        }
        None => None,
    };
    cpu::pin(&placement.driver);

    let prog: &SchedClassifier = dp
        .ebpf()
        .program("from_pod")
        .context("no from_pod")?
        .try_into()?;
    let template = driver::template(policy.subject_mac, policy.subject_ip, &plan.drive.tuples);
    let driven = driver::drive(prog, template, &plan.drive);
    let collector = cpu::threads_cpu("flows-collector");
    let writer = cpu::threads_cpu("flows-jsonl");
    let (settle_seconds, settled) = match (&driven, plan.settle) {
        (Ok(d), true) => {
            let t = Instant::now();
            let done = settle(&handle, d.flows, settle_limit());
            (Some(t.elapsed().as_secs_f64()), done)
        }
        _ => (None, false),
    };
    let lost_running = Lost::of(&handle.accounting());
    let alerts_lost_running = alerting.as_ref().map(|a| a.stats().records_lost);
    let history = Arc::clone(&handle.history);
    let stop0 = Instant::now();
    let accounting = handle.stop();
    let stop_seconds = stop0.elapsed().as_secs_f64();
    let pipeline_seconds = started.elapsed().as_secs_f64();
    let offered = history.pushed();
    let caught_up = alerting.as_ref().map(|a| catch_up(a, offered, CATCH_UP));
    let detector = alerting
        .as_ref()
        .and_then(|_| cpu::threads_cpu(DETECTOR_THREAD));
    let process1 = cpu::process_cpu();
    let main1 = cpu::this_thread_cpu();
    cpu::pin(&placement.all);
    let peak_rss_kib = peak_rss_kib();
    let alerting = match alerting {
        Some(a) => {
            let stats = a.stats();
            a.stop();
            let (kinds, bad_lines) = count_alerts(&alerts_file)?;
            Some(AlertingResult {
                offered,
                stats,
                lost_running: alerts_lost_running.unwrap_or(0),
                caught_up: caught_up.unwrap_or(false),
                alerts: kinds,
                bad_lines,
                detector_seconds: detector.map(|d| d.as_secs_f64()),
            })
        }
        None => None,
    };
    let driven = driven?;

    let log_check =
        verify::check(&log, &plan.drive.tuples, driven.flows).context("checking the flow log")?;
    dir.close().context("removing the flow log's directory")?;
    drop(dp);

    let jsonl = accounting.exporters.first().cloned().unwrap_or_default();
    let k = &accounting.kernel;
    let lost = Lost::of(&accounting);
    let process = sub(process1, process0);
    let main = sub(main1, main0);
    Ok(RunResult {
        plan: plan.clone(),
        kernel_holds: accounting.kernel_holds(),
        exporters_hold: accounting.exporters_hold(),
        holds: accounting.holds(),
        kernel_records_match: accounting.kernel_records() == driven.flows,
        exported: jsonl.exported,
        events_lost: k.events_lost,
        evicted: accounting.cache.evicted,
        log_matches_exported: log_check.lines == jsonl.exported,
        lost,
        lost_running,
        settle_seconds,
        settled,
        log: log_check,
        stop_seconds,
        pipeline_seconds,
        cpu: CpuUse {
            driver_seconds: driven.cpu_seconds,
            pipeline_seconds: process.zip(main).map(|(p, m)| (p - m).max(0.0)),
            collector_seconds: collector.map(|d| d.as_secs_f64()),
            writer_seconds: writer.map(|d| d.as_secs_f64()),
            detector_seconds: alerting.as_ref().and_then(|a| a.detector_seconds),
        },
        peak_rss_kib,
        placement: placement.clone(),
        alerting,
        accounting,
        driven,
    })
}
