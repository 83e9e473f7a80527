//! Side-by-side benchmark (issue 6): Bulkhead against iptables (linear),
//! iptables + ipset and nftables, with the bare veth (B0) and an empty
//! program (hook floor) as baselines, on one client → node → server veth
//! topology, at allow-lists of N = 10, 1k, 10k and 100k entries.
//!
//! Needs root (namespaces, programs, netfilter in the benchmark's own
//! namespaces) and the tools `cargo xtask setup` installs. Writes
//! `compare.md`, `compare.json` and `compare-<metric>.png` (with
//! `--quick`: `compare-quick.*`) to `bench/results/`.
//!
//! ```text
//! cargo xtask compare [--quick]
//! cargo run --release -p bulkhead-bench --bin compare_bench -- [--quick]
//! cargo run --release -p bulkhead-bench --bin compare_bench -- --render bench/results/compare.json
//! ```

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context as _, bail};
use bulkhead_bench::compare::contender::tool_version;
use bulkhead_bench::compare::model::{CompareResult, Contender, Metric, Plan};
use bulkhead_bench::compare::run::{RunConfig, breakdown, run};
use bulkhead_bench::compare::{plot, report, summary};
use bulkhead_bench::elf;
use bulkhead_bench::report::Output;
use bulkhead_bench::run_info::RunInfo;
use clap::Parser;

/// Comparison benchmark (root only).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Short run (under 10 minutes): one round of 1 s measurements;
    /// writes `compare-quick.*`.
    #[arg(long)]
    quick: bool,
    /// The eBPF ELF (default: `$BULKHEAD_EBPF_ELF`, else where `cargo xtask
    /// build-ebpf` leaves it).
    #[arg(long)]
    elf: Option<PathBuf>,
    /// Allow-list sizes (default 10,1000,10000,100000).
    #[arg(long, value_delimiter = ',')]
    rules: Vec<usize>,
    /// Rounds (default 3; 1 with --quick).
    #[arg(long)]
    rounds: Option<usize>,
    /// Seconds of one rate measurement (default 2; 1 with --quick).
    #[arg(long)]
    seconds: Option<f64>,
    /// Contenders (default all): bare, hook-floor, iptables-linear,
    /// iptables-ipset, nftables, bulkhead-tc, bulkhead-tc-xdp.
    #[arg(long, value_delimiter = ',')]
    contenders: Vec<String>,
    /// Metrics (default all): packet_rate, cpu_per_packet,
    /// connection_rate, connect_time, deny_rate, latency_p50, latency_p99,
    /// throughput, update_one, update_full, update_drops. Metrics one
    /// measurement yields together (packet rate and CPU per packet,
    /// connection rate and connect time, the two latencies) cost as much
    /// alone as together.
    #[arg(long, value_delimiter = ',')]
    metrics: Vec<String>,
    /// Full reloads during the drops measurement (default 5; 2 with --quick).
    #[arg(long)]
    reloads: Option<usize>,
    /// Skip the `perf record` profile of Bulkhead's flood.
    #[arg(long)]
    no_profile: bool,
    /// Measure nothing: render the report and plots again from a run's
    /// raw JSON (`bench/results/compare.json`); no root needed.
    #[arg(long, value_name = "FILE.json")]
    render: Option<PathBuf>,
    /// Where to write the report.
    #[command(flatten)]
    output: Output,
}

fn main() -> anyhow::Result<()> {
    let started_at = Instant::now();
    let args = Args::parse();
    if let Some(json) = &args.render {
        let text =
            std::fs::read_to_string(json).with_context(|| format!("reading {}", json.display()))?;
        let result: CompareResult = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a compare_bench result", json.display()))?;
        return publish(&args, result);
    }
    if !elf::root_or_skip(
        "compare_bench",
        "creating network namespaces, loading eBPF programs, netfilter rules",
    ) {
        return Ok(());
    }
    let elf = elf::resolve(args.elf.clone())?;
    let mut info =
        RunInfo::start("compare", "compare_bench", args.quick, started_at).with_ebpf(&elf);
    let q = args.quick;
    let rules = if args.rules.is_empty() {
        vec![10, 1_000, 10_000, 100_000]
    } else {
        let mut r = args.rules.clone();
        r.sort_unstable();
        r.dedup();
        r
    };
    if rules.iter().any(|&n| !(1..=200_000).contains(&n)) {
        bail!("--rules: each N must be between 1 and 200,000");
    }
    let contenders = if args.contenders.is_empty() {
        Contender::ALL.to_vec()
    } else {
        args.contenders
            .iter()
            .map(|k| {
                Contender::ALL
                    .into_iter()
                    .find(|c| c.key() == k)
                    .with_context(|| format!("unknown contender {k:?}"))
            })
            .collect::<anyhow::Result<_>>()?
    };
    let metrics = if args.metrics.is_empty() {
        Metric::ALL.to_vec()
    } else {
        args.metrics
            .iter()
            .map(|k| {
                Metric::ALL
                    .into_iter()
                    .find(|m| m.key() == k)
                    .with_context(|| format!("unknown metric {k:?}"))
            })
            .collect::<anyhow::Result<_>>()?
    };
    let seconds = args.seconds.unwrap_or(if q { 1.0 } else { 2.0 });
    if !(0.2..=10.0).contains(&seconds) {
        bail!("--seconds must be between 0.2 and 10");
    }
    let plan = Plan {
        rules,
        rounds: args.rounds.unwrap_or(if q { 1 } else { 3 }).max(1),
        seconds,
        contenders,
        metrics,
    };
    let cfg = RunConfig {
        elf,
        plan: plan.clone(),
        reloads: args.reloads.unwrap_or(if q { 2 } else { 5 }).max(1),
        profile: !args.no_profile,
    };
    let measured = run(&cfg)?;
    let cells = summary::cells(&measured.samples);
    let breakdown = breakdown(&cells, &measured);
    info.finish();
    let tools = [
        ("iptables-legacy", &["--version"][..]),
        ("ipset", &["--version"][..]),
        ("nft", &["--version"][..]),
        ("sockperf", &["--version"][..]),
        ("iperf3", &["--version"][..]),
    ]
    .iter()
    .map(|(t, a)| (t.to_string(), tool_version(t, a)))
    .collect();
    let result = CompareResult {
        run: info,
        plan,
        tools,
        samples: measured.samples,
        cells,
        breakdown,
        notes: measured.notes,
    };
    publish(&args, result)
}

/// Writes the plots, the Markdown and the JSON (unless `--no-write`) and
/// prints the Markdown.
fn publish(args: &Args, mut result: CompareResult) -> anyhow::Result<()> {
    if !args.output.no_write {
        // A plot that cannot be drawn is a note, not a lost run.
        let prefix = report::file_stem(&result.run);
        match plot::plots(&result, &args.output.out_dir, &prefix) {
            Ok(pngs) => eprintln!("[compare] wrote {} plots", pngs.len()),
            Err(e) => result.notes.push(format!("plots: {e}")),
        }
    }
    args.output.publish(
        "compare",
        result.run.quick,
        &report::markdown(&result),
        &result,
    )
}
