//! The flow benchmark's report: one serializable value written as JSON,
//! and the same numbers as Markdown, with the target judged.

use std::fmt::Write as _;

use serde::Serialize;

use super::cache::CacheProbe;
use super::run::{Lost, RunResult};
use crate::report::int;
use crate::run_info::RunInfo;

/// The target: zero loss at this many new flows per second.
pub const TARGET_RATE: f64 = 100_000.0;
/// ... sustained for this long (the full run's duration).
pub const TARGET_SECONDS: f64 = 60.0;

/// The settings every run shared.
#[derive(Clone, Debug, Serialize)]
pub struct Settings {
    /// FLOW_CONFIG flags.
    pub flow_flags: u32,
    /// Pipeline drain interval, ms.
    pub drain_ms: u64,
    /// Idle timeout, s.
    pub idle_timeout_s: u64,
    /// Active timeout, s.
    pub active_timeout_s: u64,
    /// Flow cache capacity.
    pub cache_capacity: usize,
    /// JSON Lines queue (records).
    pub jsonl_queue: usize,
    /// Entries of each kernel flow table.
    pub flow_table_capacity: u32,
    /// Bytes of the EVENTS ring.
    pub events_ring_bytes: u32,
    /// Seconds per run.
    pub seconds: f64,
    /// Rate steps planned (new flows/s), up from the target.
    pub rates: Vec<f64>,
    /// Rate steps down, if the target lost records.
    pub down_rates: Vec<f64>,
    /// Wall-time budget of the whole benchmark, s.
    pub budget_seconds: f64,
    /// IDENTITIES entries of the policy image.
    pub identity_entries: usize,
    /// Pods in the model.
    pub pods: usize,
}

/// The target's verdict.
#[derive(Clone, Debug, Serialize)]
pub struct Target {
    /// New flows per second.
    pub rate: f64,
    /// Seconds it must be sustained.
    pub seconds: f64,
    /// A run at the rate or above, for the target's seconds (or the quick
    /// run's), with zero loss and the driver keeping up.
    pub met: bool,
    /// Judged on a run shorter than [`TARGET_SECONDS`] (`--quick`).
    pub short: bool,
    /// Why, in words.
    pub detail: String,
}

/// A whole benchmark.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The run: command, machine, time, load, ELF (top-level fields in
    /// JSON).
    #[serde(flatten)]
    pub run: RunInfo,
    /// Shared settings.
    pub settings: Settings,
    /// Every run, in order.
    pub runs: Vec<RunResult>,
    /// Highest target rate with zero loss and the driver keeping up.
    pub zero_loss_capacity: Option<f64>,
    /// Highest rate the driver reached in any run.
    pub driver_max_rate: f64,
    /// The target.
    pub target: Target,
    /// Notes on the plan (why stepping stopped).
    pub notes: Vec<String>,
    /// The flow cache's merge cost below and at capacity.
    pub cache_probe: Option<CacheProbe>,
}

/// `123456.7` → `123k/s`; `None` → `max`.
pub fn rate(r: Option<f64>) -> String {
    match r {
        None => "max".into(),
        Some(r) if r >= 1e6 => format!("{:.2}M/s", r / 1e6),
        Some(r) => format!("{:.0}k/s", r / 1e3),
    }
}

fn opt(v: Option<f64>, digits: usize, unit: &str) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{v:.digits$}{unit}"))
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "**no**" }
}

impl Report {
    /// Judges the target on `runs`.
    pub fn judge(runs: &[RunResult], quick: bool) -> Target {
        let steps = || {
            runs.iter()
                .filter(|r| r.plan.settle && r.plan.drive.rate.is_some_and(|x| x >= TARGET_RATE))
        };
        let good = steps().find(|r| r.driven.kept_up && r.zero_loss());
        let tried = steps().next();
        let detail = match (good, tried) {
            (Some(r), _) => format!(
                "{} for {:.0} s: {} flows driven at {:.0}/s, all {} records exported to JSON Lines, 0 lost, identity exact",
                rate(r.plan.drive.rate),
                r.plan.drive.duration.as_secs_f64(),
                int(r.driven.flows as usize),
                r.driven.achieved_rate,
                int(r.exported as usize)
            ),
            (None, Some(r)) if !r.driven.kept_up => format!(
                "the driver reached only {:.0} flows/s of {}",
                r.driven.achieved_rate,
                rate(r.plan.drive.rate)
            ),
            (None, Some(r)) => format!(
                "{} records lost at {} ({} in the kernel, {} by the JSON Lines exporter; {} of them at the stop)",
                int(r.lost.total() as usize),
                rate(r.plan.drive.rate),
                int(r.lost.kernel as usize),
                int(r.lost.jsonl.values().sum::<u64>() as usize),
                int(r.lost_at_stop() as usize),
            ),
            (None, None) => "no run at the target rate".into(),
        };
        Target {
            rate: TARGET_RATE,
            seconds: TARGET_SECONDS,
            met: good.is_some(),
            short: quick
                || good.is_some_and(|r| r.plan.drive.duration.as_secs_f64() < TARGET_SECONDS),
            detail,
        }
    }

    /// The report as Markdown.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        self.run
            .markdown_header(&mut s, "Flow-record capacity benchmark", false);
        self.targets(&mut s);
        self.tables(&mut s);
        self.cache(&mut s);
        self.method(&mut s);
        s
    }

    fn targets(&self, s: &mut String) {
        let _ = writeln!(s, "## Targets\n");
        let t = &self.target;
        let verdict = if t.met { "met" } else { "missed" };
        let short = if t.short {
            format!(
                " (judged on {:.0} s runs of `--quick`; the issue's {:.0} s are the full run's)",
                self.settings.seconds, t.seconds
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "- Zero loss at 100k new flows/s: **{verdict}**{short}. {}.",
            t.detail
        );
        let _ = writeln!(
            s,
            "- Highest zero-loss rate measured: {}; the driver's highest rate: {:.0} flows/s.",
            self.zero_loss_capacity
                .map_or_else(|| "none".into(), |r| format!("**{}**", rate(Some(r)))),
            self.driver_max_rate
        );
        let all_hold = self.runs.iter().all(RunResult::identity_holds);
        let _ = writeln!(
            s,
            "- Accounting identity exact in every run: {}{}.",
            yes(all_hold),
            if self.runs.iter().any(|r| r.lost.total() > 0) {
                ", losses included (counted by stage and reason)"
            } else {
                " (no run lost a record)"
            }
        );
        for r in self.runs.iter().filter(|r| !r.plan.settle) {
            let cached = r.exported + r.lost.total() - r.evicted;
            let outcome = if r.lost.total() == 0 {
                format!(
                    "no loss: all {} records exported, {} of them finished by the stop",
                    int(r.exported as usize),
                    int(cached as usize)
                )
            } else {
                format!(
                    "**loss**: {} of {} records lost, {} of them by the stop ({})",
                    int(r.lost.total() as usize),
                    int(r.driven.flows as usize),
                    int(r.lost_at_stop() as usize),
                    reasons(&r.lost)
                )
            };
            let _ = writeln!(
                s,
                "- Stopping the pipeline under load (driven at {} for {:.0} s, stopped at once with {} flows cached): {outcome}; the identity {}.",
                rate(r.plan.drive.rate),
                r.driven.seconds,
                int(cached as usize),
                if !r.identity_holds() {
                    "**does not hold**"
                } else if r.lost.total() > 0 {
                    "holds exactly, the losses counted"
                } else {
                    "holds exactly"
                },
            );
        }
        for n in &self.notes {
            let _ = writeln!(s, "- {n}");
        }
        if let Some(r) = self
            .runs
            .iter()
            .filter(|r| r.plan.settle)
            .max_by(|a, b| a.driven.achieved_rate.total_cmp(&b.driven.achieved_rate))
        {
            let _ = writeln!(
                s,
                "- Where the time goes at the highest rate driven ({:.0} flows/s): {}.",
                r.driven.achieved_rate,
                where_time_goes(r)
            );
        }
        if let Some(r) = self
            .runs
            .iter()
            .find(|r| r.plan.settle && r.lost_running.total() > 0)
        {
            let _ = writeln!(
                s,
                "- Why records were lost at {}: {}",
                rate(r.plan.drive.rate),
                self.why_lost(r)
            );
        }
        s.push('\n');
    }

    /// The mechanism of a settling run's losses, from its counters.
    fn why_lost(&self, r: &RunResult) -> String {
        let st = &self.settings;
        let mut parts = Vec::new();
        if r.lost.kernel > 0 {
            let gap = r
                .plan
                .drive
                .rate
                .map(|x| f64::from(st.flow_table_capacity) / x);
            parts.push(format!(
                "the kernel lost {} records: a flow table ({} entries) filled between two drains{}, so {} records went to the EVENTS ring instead, which also carries the new-flow notifications ({} of them lost in it); the ring took {} and had no room for the rest. The collector drained late (collector thread busy {} of the driving time)",
                int(r.lost.kernel as usize),
                int(st.flow_table_capacity as usize),
                gap.map_or_else(String::new, |g| format!(
                    " (at this rate: more than {g:.2} s between drains; the schedule is every {} ms)",
                    st.drain_ms
                )),
                int(r.accounting.kernel.fallback_sent as usize + r.lost.kernel as usize),
                int(r.events_lost as usize),
                int(r.accounting.kernel.fallback_sent as usize),
                opt(
                    r.cpu
                        .collector_seconds
                        .map(|c| 100.0 * c / r.driven.seconds.max(1e-9)),
                    0,
                    "%"
                ),
            ));
        }
        if r.lost.kernel == 0 && r.accounting.kernel.fallback_sent > 0 {
            parts.push(format!(
                "a flow table ({} entries) filled between two drains and {} records went through the EVENTS ring instead (none lost there)",
                int(st.flow_table_capacity as usize),
                int(r.accounting.kernel.fallback_sent as usize)
            ));
        }
        let jsonl: u64 = r.lost_running.jsonl.values().sum();
        if jsonl > 0 {
            parts.push(format!(
                "the JSON Lines exporter lost {} records while running ({})",
                int(jsonl as usize),
                reasons(&Lost {
                    kernel: 0,
                    jsonl: r.lost_running.jsonl.clone(),
                })
            ));
        }
        if r.evicted > 0
            && let Some(p) = &self.cache_probe
            && let Some(x) = p.ratio()
        {
            let growth = match (p.at_capacity.first(), p.at_capacity.last()) {
                (Some(a), Some(b)) if b.ns_per_merge > 1.5 * a.ns_per_merge => {
                    "growing with the evictions done"
                }
                _ => "flat as evictions accumulate",
            };
            parts.push(format!(
                "{} of the flows were evicted from the full flow cache, and a merge that evicts costs ×{x:.1} one with room, {growth} (see \"Flow cache\" below)",
                int(r.evicted as usize)
            ));
        }
        let mut out = parts.join("; ");
        out.push('.');
        out
    }

    fn tables(&self, s: &mut String) {
        let _ = writeln!(s, "## Runs\n");
        let _ = writeln!(
            s,
            "Every run but the last settles: after driving, the pipeline runs on until it has exported every flow, then stops. The last run stops at once.\n"
        );
        let _ = writeln!(
            s,
            "| run | target rate | achieved rate | driver kept up | flows driven | records exported | lost while running | lost at stop | evicted | identity holds | every flow in the log | JSON Lines MB/s | pipeline CPU µs/record | peak RSS |"
        );
        let _ = writeln!(s, "| --- |{}", " ---: |".repeat(13));
        for r in &self.runs {
            let stop = int(r.lost_at_stop() as usize);
            let _ = writeln!(
                s,
                "| {} | {} | {:.0}/s | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} | {} | {} |",
                kind(r),
                rate(r.plan.drive.rate),
                r.driven.achieved_rate,
                yes(r.driven.kept_up),
                int(r.driven.flows as usize),
                int(r.exported as usize),
                reasons(&r.lost_running),
                stop,
                int(r.evicted as usize),
                yes(r.identity_holds()),
                yes(r.log.complete(r.driven.flows)),
                r.jsonl_bytes_per_second() / 1e6,
                opt(r.pipeline_us_per_record(), 2, ""),
                r.peak_rss_kib
                    .map_or_else(|| "–".into(), |k| format!("{:.0} MiB", k as f64 / 1024.0)),
            );
        }
        s.push('\n');
        let _ = writeln!(s, "### Detail\n");
        let _ = writeln!(
            s,
            "| run | target rate | seconds driven | settling | end reasons | losses by reason | new-flow notifications lost (outside the identity) | kernel: table entries / ring fallbacks | driver CPU µs/flow | driver CPU | collector CPU | JSON Lines writer CPU | stop | log size |"
        );
        let _ = writeln!(s, "| --- |{}", " ---: |".repeat(13));
        for r in &self.runs {
            let ends: Vec<String> = r
                .log
                .end_reasons
                .iter()
                .map(|(k, v)| format!("{k} {}", int(*v as usize)))
                .collect();
            let busy = |c: Option<f64>| opt(c.map(|c| 100.0 * c / r.driven.seconds), 0, "%");
            let settling = match r.settle_seconds {
                None => "none".into(),
                Some(t) if r.settled => format!("{t:.1} s"),
                Some(t) => format!("**ran out** after {t:.1} s"),
            };
            let _ = writeln!(
                s,
                "| {} | {} | {:.1} | {} | {} | {} | {} | {} / {} | {} | {} | {} | {} | {:.2} s | {:.0} MB |",
                kind(r),
                rate(r.plan.drive.rate),
                r.driven.seconds,
                settling,
                ends.join(", "),
                reasons(&r.lost),
                int(r.events_lost as usize),
                int(r.accounting.kernel.entries_created as usize),
                int(r.accounting.kernel.fallback_sent as usize),
                opt(r.driver_us_per_flow(), 2, ""),
                busy(r.cpu.driver_seconds),
                busy(r.cpu.collector_seconds),
                busy(r.cpu.writer_seconds),
                r.stop_seconds,
                r.log.bytes as f64 / 1e6,
            );
        }
        s.push('\n');
    }

    fn cache(&self, s: &mut String) {
        let Some(p) = &self.cache_probe else {
            return;
        };
        let _ = writeln!(s, "## Flow cache: merge cost below and at capacity\n");
        let _ = writeln!(
            s,
            "The agent's `FlowCache` alone (default configuration, {} flows at most), one new flow per merge, timed in windows of {} merges: one with room, then windows after it is full (each merge evicts one flow).\n",
            int(p.capacity),
            int(p.below.merges as usize)
        );
        let _ = writeln!(
            s,
            "| window | evictions before it | ns per merge | × below capacity |"
        );
        let _ = writeln!(s, "| --- | ---: | ---: | ---: |");
        let _ = writeln!(
            s,
            "| below capacity | 0 | {:.0} | ×1.00 |",
            p.below.ns_per_merge
        );
        for (i, w) in p.at_capacity.iter().enumerate() {
            let _ = writeln!(
                s,
                "| at capacity, window {} | {} | {:.0} | ×{:.2} |",
                i + 1,
                int(w.evicted_before as usize),
                w.ns_per_merge,
                w.ns_per_merge / p.below.ns_per_merge.max(1e-9)
            );
        }
        s.push('\n');
    }

    fn method(&self, s: &mut String) {
        let st = &self.settings;
        let _ = writeln!(s, "## Method and reading\n");
        let _ = writeln!(
            s,
            "- Each run loads its own instance of the ELF (own maps; nothing pinned or attached) and writes a compiled policy (`bench/src/flows/policy.rs`: {} pods, {} IDENTITIES entries) in which the pod under test, bound to ifindex 1 as `BPF_PROG_TEST_RUN` runs TC programs on loopback, is isolated in both directions and its egress allows UDP ports 1024–65535 to `198.18.0.0/15`. FLOW_CONFIG flags {} (the agent's default: accounting, new-flow and drop notifications).",
            st.pods,
            int(st.identity_entries),
            st.flow_flags
        );
        let _ = writeln!(
            s,
            "- The pipeline is the agent's (`Pipeline::start` over a `FlowTap` of the instance's maps, `PipelineConfig::new`: drain every {} ms, idle timeout {} s, active timeout {} s, flow cache {} flows) with an enricher for the compiled model and a JSON Lines file exporter (queue {} records) into a temporary directory on disk, rotation size set so it never rotates. The kernel tables hold {} entries each; the EVENTS ring is {} MiB.",
            st.drain_ms,
            st.idle_timeout_s,
            st.active_timeout_s,
            int(st.cache_capacity),
            int(st.jsonl_queue),
            int(st.flow_table_capacity as usize),
            st.events_ring_bytes >> 20
        );
        let _ = writeln!(
            s,
            "- The driver (one thread, pinned to its own CPU; the pipeline's threads get the others) runs `from_pod` once per new flow: one UDP datagram whose tuple never repeats within the run (destination port, then destination address, then source port). It is paced to the target rate in batches of a millisecond's flows, catching up when behind, bounded by the count rate × {:.0} s and by the time; it kept up if it reached 99% of the count in time. `max` runs unpaced: the driver's own limit.",
            st.seconds
        );
        let _ = writeln!(
            s,
            "- Settling: after driving, the pipeline runs on with no traffic until its accounting (published at every drain) shows every kernel record received, no flow cached and nothing pending in the exporter, i.e. until the idle timeout has exported the last flows, as a running agent would; then it is stopped. The stop run instead stops the pipeline at once with the flow cache full. Losses are split into those the pipeline had counted before the stop (its accounting as of its last drain) and those of the stop."
        );
        let _ = writeln!(
            s,
            "- After driving, the pipeline is stopped (both tables drained, the ring read, every cached flow finished as `agent_stop`, the writer flushed). Checked exactly: the kernel's side (`entries_created + fallback_sent + fallback_lost = drained + fallback events read + fallback_lost`, packets and bytes likewise), kernel records = flows driven, the cache (packets in = packets out, none left), the exporter (finished = exported + lost, none pending), and the log: every line parsed, each a `bulkhead.flow/v1` flow record of `bench/subject` (enriched) with one packet and a driven tuple, every driven flow exactly once. Loss is kernel `fallback_lost` + the exporter's losses (no subscribers). `evicted` flows were exported early because the flow cache was full; they are in the log, not lost."
        );
        let _ = writeln!(
            s,
            "- CPU: the driver is its thread's run time while driving (the `BPF_PROG_TEST_RUN` syscalls, program runs included); the pipeline is the process's CPU time from the pipeline's start to the end of its stop minus the driving thread's (so it includes the final drain and flush); collector and writer columns are those threads' run time while the driver ran, as a share of the driving time. JSON Lines MB/s is the log's size over the seconds driven (the write rate the driven rate demands; the last records are written while settling). Peak RSS is `VmHWM`, reset at each run's start: the loaded maps' user side, the flow cache, the history and the JSON Lines queue (the log check runs after it is read)."
        );
        s.push('\n');
    }
}

/// What a run was: a rate step, the driver's maximum, or the stop run.
fn kind(r: &RunResult) -> &'static str {
    match (r.plan.settle, r.plan.drive.rate) {
        (false, _) => "stop at once",
        (true, None) => "driver max",
        (true, Some(_)) => "step",
    }
}

/// Losses by stage and reason, in words (`0` for none).
fn reasons(l: &Lost) -> String {
    let mut parts = Vec::new();
    if l.kernel > 0 {
        parts.push(format!("{} kernel fallback_lost", int(l.kernel as usize)));
    }
    for (k, v) in &l.jsonl {
        parts.push(format!("{} jsonl {k}", int(*v as usize)));
    }
    if parts.is_empty() {
        "0".into()
    } else {
        parts.join(", ")
    }
}

/// Where a run's time went, in words: which thread was busy.
pub fn where_time_goes(r: &RunResult) -> String {
    let secs = r.driven.seconds.max(1e-9);
    let share = |c: Option<f64>| c.map(|c| 100.0 * c / secs);
    let mut parts = Vec::new();
    if let Some(d) = share(r.cpu.driver_seconds) {
        parts.push(format!(
            "driver thread {d:.0}% of its CPU ({} µs per flow in `BPF_PROG_TEST_RUN`)",
            opt(r.driver_us_per_flow(), 2, "")
        ));
    }
    if let Some(c) = share(r.cpu.collector_seconds) {
        parts.push(format!("collector {c:.0}%"));
    }
    if let Some(w) = share(r.cpu.writer_seconds) {
        parts.push(format!("JSON Lines writer {w:.0}%"));
    }
    if let Some(p) = r.pipeline_us_per_record() {
        parts.push(format!("pipeline {p:.2} µs CPU per record in all"));
    }
    parts.join("; ")
}
