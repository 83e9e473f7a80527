//! `incremental_bench`: how long the incremental compiler takes to turn
//! one change into its map writes, beside a full compile of the same model
//! in the same run (see `bulkhead_bench::incremental`). Pure: no root.
//!
//! Writes `incremental.md` and `incremental.json` (with `--quick`,
//! `incremental-quick.*`) to `bench/results/`.
//!
//! ```text
//! cargo run --release -p bulkhead-bench --bin incremental_bench -- [--quick]
//! ```

use std::fmt::Write as _;
use std::time::Instant;

use bulkhead_bench::incremental::{self, CaseResult};
use bulkhead_bench::report::Output;
use bulkhead_bench::run_info::RunInfo;
use clap::Parser;
use serde::Serialize;

/// Incremental compile benchmark.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Short run: 30 changes per case, one full compile each.
    #[arg(long)]
    quick: bool,
    /// Changes per case (default 300; 30 with --quick).
    #[arg(long)]
    samples: Option<usize>,
    /// Seed of the synthetic cluster.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where to write the report.
    #[command(flatten)]
    output: Output,
}

#[derive(Serialize)]
struct Report {
    run: RunInfo,
    cases: Vec<CaseResult>,
}

fn main() -> anyhow::Result<()> {
    let started_at = Instant::now();
    let args = Args::parse();
    let mut run = RunInfo::start("incremental", "incremental_bench", args.quick, started_at);
    let samples = args.samples.unwrap_or(if args.quick { 30 } else { 300 });
    let runs = if args.quick { 1 } else { 3 };
    let mut cases = Vec::new();
    for n in [10, 1_000, 10_000, 100_000] {
        eprintln!("allow-list of {n} entries");
        cases.extend(incremental::allow_list(n, samples, runs)?);
    }
    for pods in [1_000, 10_000] {
        eprintln!("cluster of {pods} pods");
        cases.extend(incremental::cluster(pods, samples, runs, args.seed)?);
    }
    run.finish();
    let markdown = render(&run, &cases);
    args.output
        .publish("incremental", args.quick, &markdown, &Report { run, cases })
}

fn render(run: &RunInfo, cases: &[CaseResult]) -> String {
    let mut s = String::new();
    run.markdown_header(&mut s, "Incremental compile benchmark", true);
    s.push_str(
        "\nOne change turned into its map writes by the incremental compiler \
         (`Incremental::apply`, every sample on the fast path), beside a full compile of the \
         same model (compile, map image and the incremental index: what every change cost \
         before) in the same run. After each case the incremental image equals the full \
         compile's. Writing the delta into the kernel and switching is measured by \
         `compare_bench` (one entry until enforced).\n\n",
    );
    s.push_str(
        "| change | model | full compile (median) | change p50 | change p99 | change max | \
         full / p99 | writes (median) | samples |\n\
         | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for c in cases {
        let _ = writeln!(
            s,
            "| {} | {} | {:.1} ms | {:.1} µs | {:.1} µs | {:.1} µs | ×{:.0} | {} | {} |",
            c.case,
            c.size,
            c.full_ms,
            c.change_us.p50,
            c.change_us.p99,
            c.change_us.max,
            c.full_ms * 1e3 / c.change_us.p99,
            c.writes,
            c.samples
        );
    }
    s
}
