//! `alert_bench`: what baseline-deviation alerting costs the flow pipeline
//! (issue 17): at 100k new flows/s with a 10,000-edge baseline, the
//! detectors must miss no record and the pipeline must spend less than
//! 10% more CPU per record than without alerting.
//!
//! Plan: `--repetitions` (3) pairs of runs of `--seconds` (10) each at
//! `--rate` (100k/s), one without alerting (A) and one with the agent's
//! alerts path (B), back to back, alternating which goes first; each run
//! settles until every flow is exported (the idle timeout, 15 s), as the
//! flow benchmark's do. See [`bulkhead_bench::alerts`].
//!
//! Needs root (loading eBPF programs) and the ELF of `cargo xtask
//! build-ebpf`; without root it says so and exits 0 having measured
//! nothing. Writes `alerts.md` and `alerts.json` (with `--quick`,
//! `alerts-quick.*`) to `bench/results/`, prints the Markdown to stdout and
//! progress to stderr.
//!
//! ```text
//! cargo xtask build-ebpf
//! cargo run --release -p bulkhead-bench --bin alert_bench -- [--quick]
//! ```

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bulkhead_agent::alerts::SUBSCRIPTION_QUEUE;
use bulkhead_bench::alerts::Scenario;
use bulkhead_bench::alerts::report::{Pair, Report, Settings, Spread};
use bulkhead_bench::elf::{self, DEFAULT_FLOW_FLAGS};
use bulkhead_bench::flows::driver::DrivePlan;
use bulkhead_bench::flows::policy::{FlowPolicy, Tuples};
use bulkhead_bench::flows::report::rate;
use bulkhead_bench::flows::run::{self, Placement, REVISION, RunPlan, RunResult};
use bulkhead_bench::report::Output;
use bulkhead_bench::run_info::RunInfo;
use clap::Parser;

/// Alerting benchmark (root only).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Short runs (5 s each); writes `alerts-quick.*`.
    #[arg(long)]
    quick: bool,
    /// The eBPF ELF (default: `$BULKHEAD_EBPF_ELF`, else where `cargo xtask
    /// build-ebpf` leaves it).
    #[arg(long)]
    elf: Option<PathBuf>,
    /// Seconds driven per run (default 10; 5 with --quick; at most 60).
    #[arg(long)]
    seconds: Option<f64>,
    /// Pairs of runs (without, with alerting); at least 1.
    #[arg(long, default_value_t = 3)]
    repetitions: usize,
    /// New flows per second.
    #[arg(long, default_value_t = 100_000.0)]
    rate: f64,
    /// Edges in the baseline.
    #[arg(long, default_value_t = 10_000)]
    baseline_edges: u64,
    /// Share of flows deviating from the baseline (0 to 0.5; rounded to
    /// one in N).
    #[arg(long, default_value_t = 0.01)]
    deviation_share: f64,
    /// New edges per second the deviating flows reach (the default stays
    /// under the default scan threshold, so each raises its own alert).
    #[arg(long, default_value_t = 5.0)]
    new_edges_per_second: f64,
    /// No Alertmanager (default: one at a loopback port nobody listens on).
    #[arg(long)]
    no_alertmanager: bool,
    /// Where to write the report.
    #[command(flatten)]
    output: Output,
    /// FLOW_CONFIG flags the programs run with (default 7, as the agent
    /// runs them).
    #[arg(long, default_value_t = DEFAULT_FLOW_FLAGS)]
    flow_flags: u32,
}

fn progress(name: &str, r: &RunResult) {
    let alerting = r.alerting.as_ref().map_or_else(String::new, |a| {
        format!(
            ", detector offered {} received {} missed {}{}, alerts {}, detector {} µs/record",
            a.offered,
            a.stats.records,
            a.stats.records_lost,
            if a.caught_up { "" } else { " (NOT caught up)" },
            a.alerts_total(),
            r.detector_us_per_record()
                .map_or_else(|| "?".into(), |v| format!("{v:.3}")),
        )
    });
    eprintln!(
        "[alerts] {name}: {} flows at {:.0}/s (kept up: {}), exported {}, lost {}, identity {}, pipeline {} µs/record{alerting}",
        r.driven.flows,
        r.driven.achieved_rate,
        r.driven.kept_up,
        r.exported,
        r.lost.total(),
        if r.identity_holds() {
            "holds"
        } else {
            "BROKEN"
        },
        r.pipeline_us_per_record()
            .map_or_else(|| "?".into(), |v| format!("{v:.3}")),
    );
}

fn main() -> anyhow::Result<()> {
    let started_at = Instant::now();
    let args = Args::parse();
    if !elf::root_or_skip("alert_bench", "loading eBPF programs, BPF_PROG_TEST_RUN") {
        return Ok(());
    }
    let elf = elf::resolve(args.elf.clone())?;
    let mut info = RunInfo::start("alerts", "alert_bench", args.quick, started_at).with_ebpf(&elf);
    let seconds = args.seconds.unwrap_or(if args.quick { 5.0 } else { 10.0 });
    if !(1.0..=60.0).contains(&seconds) {
        bail!("--seconds must be between 1 and 60");
    }
    if args.repetitions == 0 {
        bail!("--repetitions must be at least 1");
    }
    if !(1.0..=1e7).contains(&args.rate) {
        bail!("--rate must be between 1 and 10,000,000 flows/s");
    }

    let policy = FlowPolicy::new(bulkhead_common::active_slot(REVISION));
    let scenario = Scenario::new(
        &policy,
        args.rate,
        args.baseline_edges,
        args.deviation_share,
        args.new_edges_per_second,
        !args.no_alertmanager,
    )?;
    let alerts = scenario.alerts()?;
    let placement = Placement::detect();
    let tuples = Tuples::Edges(scenario.layout);
    let drive = DrivePlan {
        rate: Some(args.rate),
        duration: Duration::from_secs_f64(seconds),
        tuples,
    };
    let plan = RunPlan {
        drive,
        flow_flags: args.flow_flags,
        settle: true,
    };
    eprintln!(
        "[alerts] ELF {}; driver on CPU {:?}, pipeline on CPU {:?}; {} pairs of {seconds:.0} s runs at {}; baseline {} edges, 1 in {} flows deviating, {} per new edge; Alertmanager {}",
        elf.display(),
        placement.driver,
        placement.pipeline,
        args.repetitions,
        rate(Some(args.rate)),
        scenario.layout.known,
        scenario.layout.every,
        scenario.layout.per_new,
        scenario.alertmanager.as_deref().unwrap_or("none"),
    );

    let one = |with: bool, label: &str| {
        eprintln!("[alerts] {label}");
        let r = run::run_with(&elf, &policy, &placement, &plan, with.then_some(&alerts))
            .with_context(|| format!("run {label}"))?;
        progress(label, &r);
        anyhow::Ok(r)
    };
    let mut pairs = Vec::new();
    for rep in 0..args.repetitions {
        let a_first = rep % 2 == 0;
        let n = rep + 1;
        let (a, b) = if a_first {
            let a = one(false, &format!("pair {n}: A (no alerting)"))?;
            (a, one(true, &format!("pair {n}: B (alerting)"))?)
        } else {
            let b = one(true, &format!("pair {n}: B (alerting)"))?;
            (one(false, &format!("pair {n}: A (no alerting)"))?, b)
        };
        let p = Pair {
            first: if a_first { "A" } else { "B" },
            a,
            b,
        };
        eprintln!(
            "[alerts] pair {n}: B/A {} (without the detectors' thread {})",
            p.ratio().map_or_else(|| "?".into(), |v| format!("{v:.3}")),
            p.ratio_without_detector()
                .map_or_else(|| "?".into(), |v| format!("{v:.3}")),
        );
        pairs.push(p);
    }

    let ratio = Spread::of(pairs.iter().filter_map(Pair::ratio).collect());
    let ratio_without = Spread::of(
        pairs
            .iter()
            .filter_map(Pair::ratio_without_detector)
            .collect(),
    );
    let detector = Spread::of(
        pairs
            .iter()
            .filter_map(|p| p.b.detector_us_per_record())
            .collect(),
    );
    let targets = Report::judge(&pairs, ratio, ratio_without, args.rate);
    info.finish();
    let d = scenario.detect;
    let report = Report {
        run: info,
        settings: Settings {
            seconds,
            repetitions: args.repetitions,
            flow_flags: args.flow_flags,
            subscription_queue: SUBSCRIPTION_QUEUE,
            detect: (d.interval_ms, d.scan_window_ms, d.scan_targets),
            scenario,
        },
        pairs,
        ratio,
        ratio_without_detector: ratio_without,
        detector_us_per_record: detector,
        targets,
        notes: Vec::new(),
    };
    args.output
        .publish("alerts", args.quick, &report.markdown(), &report)
}
