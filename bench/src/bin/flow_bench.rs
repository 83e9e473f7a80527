//! `flow_bench`: flow-record capacity (issue 4). The highest sustained
//! rate of new flows per second, driven in the kernel by
//! `BPF_PROG_TEST_RUN`, that the agent's flow pipeline exports to JSON
//! Lines with zero loss, with the accounting identity exact at every rate
//! (above the capacity too, losses counted).
//!
//! Plan: runs of `--seconds` (60; 10 with `--quick`) at 100k new flows/s,
//! then stepping up until a run loses records or the driver cannot reach
//! the rate, within a wall-time budget (6 minutes; 1.5 with `--quick`);
//! if the first step already loses records, stepping down instead until a
//! run does not.
//! Each keeps the pipeline running after driving until it has exported
//! every flow (the idle timeout, 15 s), then stops it. If no step got
//! there, one run drives as fast as the driver can. A last run drives at
//! 100k/s until the flow cache is full and stops the pipeline at once:
//! what stopping an agent under load does.
//!
//! Needs root (loading eBPF programs) and the ELF of `cargo xtask
//! build-ebpf`; without root it says so and exits 0 having measured
//! nothing. Writes `flows.md` and `flows.json` (with `--quick`,
//! `flows-quick.*`) to `bench/results/`, prints the Markdown to stdout and
//! progress to stderr. Nothing is pinned; the flow logs live in temporary
//! directories removed after each run.
//!
//! ```text
//! cargo xtask build-ebpf
//! cargo run --release -p bulkhead-bench --bin flow_bench -- [--quick]
//! ```

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bulkhead_bench::elf::{self, DEFAULT_FLOW_FLAGS};
use bulkhead_bench::flows::cache;
use bulkhead_bench::flows::driver::DrivePlan;
use bulkhead_bench::flows::policy::{BACKGROUND_PODS, FlowPolicy, Tuples};
use bulkhead_bench::flows::report::{Report, Settings, TARGET_RATE, rate};
use bulkhead_bench::flows::run::{self, Placement, REVISION, RunPlan, RunResult};
use bulkhead_bench::report::Output;
use bulkhead_bench::run_info::RunInfo;
use bulkhead_common::{EVENTS_RING_BYTES, FLOWS_CAPACITY};
use bulkhead_flows::AggregateConfig;
use bulkhead_flows::PipelineConfig;
use bulkhead_flows::export::{JsonlConfig, JsonlTarget};
use clap::Parser;

/// Flow-record capacity benchmark (root only).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Short run (about a minute); writes `flows-quick.*`.
    #[arg(long)]
    quick: bool,
    /// The eBPF ELF (default: `$BULKHEAD_EBPF_ELF`, else where `cargo xtask
    /// build-ebpf` leaves it).
    #[arg(long)]
    elf: Option<PathBuf>,
    /// Seconds driven per run (default 60; 10 with --quick; at most 60).
    #[arg(long)]
    seconds: Option<f64>,
    /// Rate steps, new flows/s, comma-separated, the first the target
    /// (default 100k, 150k, 200k, 300k, 400k, 600k, 800k, 1M; 100k, 200k,
    /// 300k with --quick).
    #[arg(long, value_delimiter = ',')]
    rates: Option<Vec<f64>>,
    /// Rates to step down through when the first step loses records
    /// (default 70k, 50k, 35k, 25k, 18k; 50k, 25k with --quick).
    #[arg(long, value_delimiter = ',')]
    down_rates: Option<Vec<f64>>,
    /// Wall-time budget of the whole benchmark, seconds (default 360; 90
    /// with --quick). A step that would not fit is not started.
    #[arg(long)]
    budget: Option<f64>,
    /// Where to write the report.
    #[command(flatten)]
    output: Output,
    /// FLOW_CONFIG flags the programs run with: 1 accounting, 2 new-flow
    /// events, 4 drop events (default 7, as the agent runs them). Other
    /// values are for diagnosis: the report is then not the agent's.
    #[arg(long, default_value_t = DEFAULT_FLOW_FLAGS)]
    flow_flags: u32,
}

fn progress(r: &RunResult) {
    eprintln!(
        "[flows] {}: {} flows at {:.0}/s (kept up: {}), exported {}, lost {} (kernel {}, jsonl {:?}), evicted {}, identity {}, log complete {}, pipeline {} µs/record, stop {:.2} s",
        rate(r.plan.drive.rate),
        r.driven.flows,
        r.driven.achieved_rate,
        r.driven.kept_up,
        r.exported,
        r.lost.total(),
        r.lost.kernel,
        r.lost.jsonl,
        r.evicted,
        if r.identity_holds() {
            "holds"
        } else {
            "BROKEN"
        },
        r.log.complete(r.driven.flows),
        r.pipeline_us_per_record()
            .map_or_else(|| "?".into(), |v| format!("{v:.2}")),
        r.stop_seconds,
    );
}

fn main() -> anyhow::Result<()> {
    let started_at = Instant::now();
    let args = Args::parse();
    if !elf::root_or_skip("flow_bench", "loading eBPF programs, BPF_PROG_TEST_RUN") {
        return Ok(());
    }
    let elf = elf::resolve(args.elf.clone())?;
    let mut info = RunInfo::start("flows", "flow_bench", args.quick, started_at).with_ebpf(&elf);

    let q = args.quick;
    let seconds = args.seconds.unwrap_or(if q { 10.0 } else { 60.0 });
    if !(1.0..=60.0).contains(&seconds) {
        bail!("--seconds must be between 1 and 60");
    }
    let rates = args.rates.clone().unwrap_or_else(|| {
        if q {
            vec![100e3, 200e3, 300e3]
        } else {
            vec![100e3, 150e3, 200e3, 300e3, 400e3, 600e3, 800e3, 1e6]
        }
    });
    let down_rates = args.down_rates.clone().unwrap_or_else(|| {
        if q {
            vec![50e3, 25e3]
        } else {
            vec![70e3, 50e3, 35e3, 25e3, 18e3]
        }
    });
    if rates.is_empty() {
        bail!("--rates needs at least one rate");
    }
    if rates
        .iter()
        .chain(&down_rates)
        .any(|r| !(1.0..=1e8).contains(r))
    {
        bail!("--rates must be between 1 and 100,000,000 flows/s");
    }
    let budget = args.budget.unwrap_or(if q { 90.0 } else { 360.0 });
    let duration = Duration::from_secs_f64(seconds);

    let policy = FlowPolicy::new(bulkhead_common::active_slot(REVISION));
    let placement = Placement::detect();
    eprintln!(
        "[flows] ELF {}; driver on CPU {:?}, pipeline on CPU {:?}; {seconds:.0} s per run, budget {budget:.0} s",
        elf.display(),
        placement.driver,
        placement.pipeline
    );
    let defaults = PipelineConfig::new(run::NODE);
    let aggregate = AggregateConfig::default();
    let jsonl = JsonlConfig::new(JsonlTarget::Stdout);
    let settings = Settings {
        flow_flags: args.flow_flags,
        drain_ms: defaults.drain_interval.as_millis() as u64,
        idle_timeout_s: aggregate.idle_timeout.as_secs(),
        active_timeout_s: aggregate.active_timeout.as_secs(),
        cache_capacity: aggregate.capacity,
        jsonl_queue: jsonl.queue,
        flow_table_capacity: FLOWS_CAPACITY,
        events_ring_bytes: EVENTS_RING_BYTES,
        seconds,
        rates: rates.clone(),
        down_rates: down_rates.clone(),
        budget_seconds: budget,
        identity_entries: policy.identity_entries,
        pods: 2 + BACKGROUND_PODS,
    };

    eprintln!("[flows] flow cache probe (merge cost below and at capacity)");
    let cache_probe = cache::measure(50_000, if q { 4 } else { 8 });
    eprintln!(
        "[flows] flow cache: {:.0} ns per merge below capacity, {:.0} ns in the last window at capacity",
        cache_probe.below.ns_per_merge,
        cache_probe
            .at_capacity
            .last()
            .map_or(0.0, |w| w.ns_per_merge)
    );
    let mut runs: Vec<RunResult> = Vec::new();
    let mut notes = Vec::new();
    // A settling run's time beyond driving: the idle timeout and a margin.
    let settle = aggregate.idle_timeout.as_secs_f64() + 1.0;
    // Setup, stop and log check of a run: a guess until one was measured.
    let overhead = std::cell::Cell::new(seconds * 0.2 + 3.0);
    let do_run = |drive: DrivePlan, settle_after: bool, runs: &mut Vec<RunResult>| {
        let t = Instant::now();
        eprintln!(
            "[flows] run at {} for {:.0} s{}",
            rate(drive.rate),
            drive.duration.as_secs_f64(),
            if settle_after {
                ", then settle"
            } else {
                ", then stop at once"
            }
        );
        let plan = RunPlan {
            drive,
            flow_flags: args.flow_flags,
            settle: settle_after,
        };
        let r = run::run(&elf, &policy, &placement, &plan)
            .with_context(|| format!("the run at {}", rate(drive.rate)))?;
        progress(&r);
        overhead.set(
            (t.elapsed().as_secs_f64()
                - drive.duration.as_secs_f64()
                - r.settle_seconds.unwrap_or(0.0))
            .max(1.0)
                * 1.2,
        );
        let over = !r.driven.kept_up || !r.zero_loss();
        runs.push(r);
        anyhow::Ok(over)
    };
    let left = || budget - started_at.elapsed().as_secs_f64() - overhead.get();
    // The stop run at the end: the target rate until the flow cache is
    // full, then an immediate stop.
    let stop_secs =
        (f64::from(u32::try_from(aggregate.capacity).unwrap_or(u32::MAX)) / TARGET_RATE * 1.5)
            .clamp(1.0, seconds);
    let reserve = stop_secs + 5.0;
    let fits = |notes: &mut Vec<String>, r: f64| {
        let ok = seconds + settle <= left() - reserve;
        if !ok {
            notes.push(format!(
                "Stepping stopped before {} by the time budget ({budget:.0} s).",
                rate(Some(r))
            ));
        }
        ok
    };
    let paced = |r: f64| DrivePlan {
        rate: Some(r),
        duration,
        tuples: Tuples::Distinct,
    };
    // Up from the target rate until a run loses records or outruns the
    // driver.
    let mut over_capacity = false;
    for &r in &rates {
        if !fits(&mut notes, r) {
            break;
        }
        if do_run(paced(r), true, &mut runs)? {
            over_capacity = true;
            break;
        }
    }
    // The first step already lost records: down until one does not, to
    // find the capacity.
    let first_lost = runs
        .first()
        .is_some_and(|r| r.driven.kept_up && !r.zero_loss());
    if first_lost {
        let below: Vec<f64> = down_rates
            .iter()
            .copied()
            .filter(|&d| d < rates[0])
            .collect();
        notes.push(format!(
            "The first step lost records, so the steps went down (planned: {}) until one did not.",
            below
                .iter()
                .map(|&d| rate(Some(d)))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        for d in below {
            if !fits(&mut notes, d) {
                break;
            }
            do_run(paced(d), true, &mut runs)?;
            if runs
                .last()
                .is_some_and(|r| r.driven.kept_up && r.zero_loss())
            {
                break;
            }
        }
    } else if !over_capacity {
        // No step lost records or outran the driver: drive as fast as it
        // can, for what the budget leaves (a few seconds at least).
        let secs = (left() - reserve - settle).clamp(seconds.min(5.0), seconds);
        notes.push(format!(
            "No rate step lost records or outran the driver, so one run drives unpaced for {secs:.0} s (the driver's maximum)."
        ));
        let drive = DrivePlan {
            rate: None,
            duration: Duration::from_secs_f64(secs),
            tuples: Tuples::Distinct,
        };
        do_run(drive, true, &mut runs)?;
    }
    let drive = DrivePlan {
        rate: Some(TARGET_RATE),
        duration: Duration::from_secs_f64(stop_secs),
        tuples: Tuples::Distinct,
    };
    do_run(drive, false, &mut runs)?;

    let zero_loss_capacity = runs
        .iter()
        .filter(|r| r.plan.settle && r.driven.kept_up && r.zero_loss())
        .filter_map(|r| r.plan.drive.rate)
        .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.max(r))));
    let driver_max_rate = runs
        .iter()
        .map(|r| r.driven.achieved_rate)
        .fold(0.0, f64::max);
    let target = Report::judge(&runs, q);
    info.finish();
    let report = Report {
        run: info,
        settings,
        runs,
        zero_loss_capacity,
        driver_max_rate,
        target,
        notes,
        cache_probe: Some(cache_probe),
    };
    args.output.publish("flows", q, &report.markdown(), &report)
}
