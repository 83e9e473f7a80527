//! `dataplane_bench`: per-packet cost of the eBPF programs by
//! `BPF_PROG_TEST_RUN` at 10 to 100k policy entries, the same with 1,000
//! cluster-admin rules against none (`--no-admin` skips it), and veth
//! packet rate with the programs attached relative to bare veths.
//!
//! Needs root (loading programs, namespaces) and the ELF of `cargo xtask
//! build-ebpf`; without root it says so and exits 0 having measured
//! nothing. Writes `dataplane.md` and `dataplane.json` (with `--quick`,
//! `dataplane-quick.*`) to `bench/results/`, prints the Markdown to stdout
//! and progress to stderr.
//!
//! With `--baseline-elf PATH` the program-cost cases are also loaded from
//! that ELF and measured against it, interleaved on the same CPU; the
//! report adds "Against the baseline ELF" (per program, path and rule
//! case: both ELFs' ns and the ratio) and is written as
//! `dataplane-baseline.*` instead, so the recorded full run stays. With
//! `--admin-only` only the cluster-admin comparison runs, written as
//! `dataplane-admin.*`.
//!
//! ```text
//! cargo xtask build-ebpf
//! cargo run --release -p bulkhead-bench --bin dataplane_bench -- [--quick]
//! cargo run --release -p bulkhead-bench --bin dataplane_bench -- --no-veth --baseline-elf OLD.elf
//! cargo run --release -p bulkhead-bench --bin dataplane_bench -- --admin-only
//! ```

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bulkhead_bench::dataplane::baseline::BaselineCost;
use bulkhead_bench::dataplane::flood::FloodSpec;
use bulkhead_bench::dataplane::prog_cost::{self, CaseCost, CostPlan};
use bulkhead_bench::dataplane::report::Report;
use bulkhead_bench::dataplane::rules::SHAPES;
use bulkhead_bench::dataplane::veth::{self, VethPlan};
use bulkhead_bench::elf::{self, DEFAULT_FLOW_FLAGS};
use bulkhead_bench::report::Output;
use bulkhead_bench::run_info::RunInfo;
use clap::Parser;

/// Dataplane benchmark (root only).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Short run (well under a minute); writes `dataplane-quick.*`.
    #[arg(long)]
    quick: bool,
    /// The eBPF ELF (default: `$BULKHEAD_EBPF_ELF`, else where `cargo xtask
    /// build-ebpf` leaves it).
    #[arg(long)]
    elf: Option<PathBuf>,
    /// Also load every program-cost case from this ELF and measure this
    /// ELF against it (interleaved, same CPU); writes
    /// `dataplane-baseline.*` instead of `dataplane.*`.
    #[arg(long, value_name = "PATH", conflicts_with = "no_prog_cost")]
    baseline_elf: Option<PathBuf>,
    /// Skip the BPF_PROG_TEST_RUN program-cost benchmark.
    #[arg(long)]
    no_prog_cost: bool,
    /// Skip the program cost with 1,000 cluster-admin rules against none.
    #[arg(long)]
    no_admin: bool,
    /// Only the cluster-admin comparison (no rule-count cases, no veth);
    /// writes `dataplane-admin.*`.
    #[arg(long, conflicts_with_all = ["no_admin", "no_prog_cost", "baseline_elf"])]
    admin_only: bool,
    /// Skip the veth packet-rate benchmark.
    #[arg(long)]
    no_veth: bool,
    /// `repeat` of one program-cost sample (default 1,000,000; 100,000
    /// with --quick).
    #[arg(long)]
    repeat: Option<u32>,
    /// Program-cost rounds (default 7; 3 with --quick).
    #[arg(long)]
    rounds: Option<usize>,
    /// Pairs of single runs per round for new flows (default 2,000; 500
    /// with --quick).
    #[arg(long)]
    pairs: Option<usize>,
    /// Repetitions of each veth configuration (default 11; 3 with --quick).
    #[arg(long)]
    reps: Option<usize>,
    /// Seconds of one veth flood (default 2; 1 with --quick; at most 10).
    #[arg(long)]
    seconds: Option<f64>,
    /// UDP payload bytes of the flood.
    #[arg(long, default_value_t = 18)]
    payload: usize,
    /// Where to write the report.
    #[command(flatten)]
    output: Output,
    /// FLOW_CONFIG flags the programs run with: 1 accounting, 2 new-flow
    /// events, 4 drop events (default 7, as the agent runs them; 0: no
    /// flow accounting).
    #[arg(long, default_value_t = DEFAULT_FLOW_FLAGS)]
    flow_flags: u32,
}

fn main() -> anyhow::Result<()> {
    let started_at = Instant::now();
    let args = Args::parse();
    if !elf::root_or_skip(
        "dataplane_bench",
        "loading eBPF programs, creating network namespaces",
    ) {
        return Ok(());
    }
    let elf = elf::resolve(args.elf.clone())?;
    let baseline = args.baseline_elf.as_deref().map(baseline_elf).transpose()?;
    let mut run =
        RunInfo::start("dataplane", "dataplane_bench", args.quick, started_at).with_ebpf(&elf);
    if let Some(b) = &baseline {
        run = run.with_baseline(b);
    }

    let q = args.quick;
    let cost_plan = CostPlan {
        repeat: args.repeat.unwrap_or(if q { 100_000 } else { 1_000_000 }),
        rounds: args.rounds.unwrap_or(if q { 3 } else { 7 }).max(1),
        pairs: args.pairs.unwrap_or(if q { 500 } else { 2_000 }).max(1),
        flow_flags: args.flow_flags,
    };
    let seconds = args.seconds.unwrap_or(if q { 1.0 } else { 2.0 });
    if !(0.1..=10.0).contains(&seconds) {
        bail!("--seconds must be between 0.1 and 10");
    }
    let veth_plan = VethPlan {
        reps: args.reps.unwrap_or(if q { 3 } else { 11 }).max(1),
        warmup: Duration::from_millis(if q { 200 } else { 500 }),
        flood: FloodSpec {
            duration: Duration::from_secs_f64(seconds),
            // A count bound as well as the time bound: 20 Mpps is beyond
            // what one core pushes through two veths.
            max_packets: (seconds * 20e6) as u64,
            payload: args.payload.clamp(1, 1400),
            // No netfilter in this path: a reply would change nothing.
            reply_first: false,
        },
        flow_flags: args.flow_flags,
    };

    let (prog_cost, baseline_cost) = if args.no_prog_cost || args.admin_only {
        (Vec::new(), None)
    } else {
        program_cost(&elf, baseline.as_deref(), &cost_plan).context("program-cost benchmark")?
    };
    let admin = if args.no_prog_cost || args.no_admin {
        None
    } else {
        Some(
            prog_cost::measure_admin(&elf, &cost_plan)
                .context("program cost with cluster-admin policies")?,
        )
    };
    let veth = if args.no_veth || args.admin_only {
        None
    } else {
        Some(veth::measure(&elf, &veth_plan).context("veth benchmark")?)
    };

    if let Some(changed) = run.ebpf.as_ref().map(|e| e.changed_elfs())
        && !changed.is_empty()
    {
        bail!(
            "{} changed during the run (rebuilt?): the report would not describe what was measured; run again",
            changed.join(" and ")
        );
    }
    run.finish();
    let report = Report {
        run,
        cost_plan: (!args.no_prog_cost).then_some(cost_plan),
        prog_cost,
        veth,
        baseline: baseline_cost,
        admin,
    };
    let name = if baseline.is_some() {
        "dataplane-baseline"
    } else if args.admin_only {
        "dataplane-admin"
    } else {
        "dataplane"
    };
    args.output.publish(name, q, &report.markdown(), &report)
}

/// `--baseline-elf`'s ELF, canonical when it can be; an error if it is
/// not a file.
fn baseline_elf(path: &Path) -> anyhow::Result<PathBuf> {
    if !path.is_file() {
        bail!("no baseline eBPF ELF at {}", path.display());
    }
    Ok(path.canonicalize().unwrap_or_else(|_| path.to_owned()))
}

/// The program cost of every case of [`SHAPES`], and with a `baseline`
/// ELF the same measured against it.
fn program_cost(
    elf: &Path,
    baseline: Option<&Path>,
    plan: &CostPlan,
) -> anyhow::Result<(Vec<CaseCost>, Option<BaselineCost>)> {
    let Some(baseline) = baseline else {
        return Ok((prog_cost::measure(elf, &SHAPES, plan)?, None));
    };
    let paired = prog_cost::measure_paired(elf, baseline, &SHAPES, plan)?;
    let compared = BaselineCost::new(&paired.cases, paired.baseline);
    Ok((paired.cases, Some(compared)))
}
