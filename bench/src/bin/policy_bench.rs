//! `policy_bench`: how long compiling NetworkPolicy takes and what it
//! produces, for synthetic clusters of 1k and 10k pods under 1k policies,
//! with scaling tables over pods, label diversity and policies.
//!
//! Writes `policy-compile.md` and `policy-compile.json` (with `--quick`,
//! `policy-compile-quick.*`) to `bench/results/`, prints the Markdown
//! report to stdout and progress to stderr.
//!
//! ```text
//! cargo run --release -p bulkhead-bench --bin policy_bench -- [--quick]
//! ```

use std::time::Instant;

use bulkhead_bench::cluster::{ClusterSpec, LabelMode};
use bulkhead_bench::measure::{self, CaseResult, Plan};
use bulkhead_bench::report::{Output, Report, TARGET_MS, Target};
use bulkhead_bench::run_info::RunInfo;
use clap::Parser;

/// Policy compile benchmark.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Short run: fewer compile runs and queries, no policy scaling.
    #[arg(long)]
    quick: bool,
    /// Seed of the synthetic cluster and the query set.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Namespaces (including kube-system and monitoring).
    #[arg(long, default_value_t = 50)]
    namespaces: usize,
    /// Workloads per application namespace.
    #[arg(long, default_value_t = 12)]
    apps_per_namespace: usize,
    /// Policies of the headline cases and the pod scaling table.
    #[arg(long, default_value_t = 1000)]
    policies: usize,
    /// Compile runs per headline case (default 7, or 3 with --quick).
    #[arg(long)]
    compile_runs: Option<usize>,
    /// Queries in the evaluator's query set (default 1,000,000, or
    /// 200,000 with --quick).
    #[arg(long)]
    queries: Option<usize>,
    /// Where to write the report.
    #[command(flatten)]
    output: Output,
    /// Profiling aid: build one cluster of PODSxPOLICIES (e.g. 10000x1000),
    /// compile it --compile-runs times (default 20) and print the times;
    /// no report. Run under `perf record` to see where compile time goes.
    #[arg(long, value_name = "PODSxPOLICIES", value_parser = parse_size)]
    profile: Option<(usize, usize)>,
}

fn parse_size(s: &str) -> Result<(usize, usize), String> {
    let (p, q) = s
        .split_once('x')
        .ok_or("expected PODSxPOLICIES, e.g. 10000x1000")?;
    let num = |v: &str| v.trim().parse::<usize>().map_err(|e| format!("{v:?}: {e}"));
    Ok((num(p)?, num(q)?))
}

/// `--profile`: compile one model repeatedly, print each time to stdout.
fn profile(spec: &ClusterSpec, runs: usize) {
    eprintln!("building {} pods x {} policies", spec.pods, spec.policies);
    let model = spec.build().model;
    for run in 1..=runs {
        let start = Instant::now();
        let compiled = std::hint::black_box(bulkhead_policy::compile::compile(&model));
        let ms = start.elapsed().as_secs_f64() * 1e3;
        println!(
            "compile run {run}: {ms:.1} ms ({} tables)",
            compiled.tables.len()
        );
    }
}

/// Runs `spec` unless an equal spec already ran (then reuses its result).
fn run_or_reuse(done: &mut Vec<CaseResult>, spec: &ClusterSpec, plan: &Plan) -> CaseResult {
    if let Some(c) = done.iter().find(|c| &c.spec == spec) {
        return c.clone();
    }
    let c = measure::run(&measure::case_name(spec), spec, plan);
    done.push(c.clone());
    c
}

fn main() -> anyhow::Result<()> {
    let started_at = Instant::now();
    let args = Args::parse();
    if let Some((pods, policies)) = args.profile {
        let spec = ClusterSpec {
            seed: args.seed,
            namespaces: args.namespaces,
            apps_per_namespace: args.apps_per_namespace,
            pods,
            policies,
            labels: LabelMode::Realistic,
        };
        profile(&spec, args.compile_runs.unwrap_or(20));
        return Ok(());
    }
    let mut run = RunInfo::start("policy-compile", "policy_bench", args.quick, started_at);

    let queries = args
        .queries
        .unwrap_or(if args.quick { 200_000 } else { 1_000_000 });
    let headline_plan = Plan {
        compile_runs: args.compile_runs.unwrap_or(if args.quick { 3 } else { 7 }),
        queries,
        allowed_passes: if args.quick { 1 } else { 3 },
        evaluate_queries: queries.min(if args.quick { 50_000 } else { 500_000 }),
        query_seed: args.seed ^ 0x0071_7565_7269_6573,
    };
    let scaling_plan = Plan {
        compile_runs: if args.quick { 1 } else { 3 },
        queries: 0,
        allowed_passes: 0,
        evaluate_queries: 0,
        ..headline_plan.clone()
    };
    let spec = |pods: usize, policies: usize, labels: LabelMode| ClusterSpec {
        seed: args.seed,
        namespaces: args.namespaces,
        apps_per_namespace: args.apps_per_namespace,
        pods,
        policies,
        labels,
    };

    let mut done: Vec<CaseResult> = Vec::new();
    let cases: Vec<CaseResult> = [1_000, 10_000]
        .into_iter()
        .map(|pods| {
            run_or_reuse(
                &mut done,
                &spec(pods, args.policies, LabelMode::Realistic),
                &headline_plan,
            )
        })
        .collect();
    let pod_counts: &[usize] = if args.quick {
        &[1_000, 10_000]
    } else {
        &[1_000, 2_000, 5_000, 10_000]
    };
    let pod_scaling = pod_counts
        .iter()
        .map(|&p| {
            run_or_reuse(
                &mut done,
                &spec(p, args.policies, LabelMode::Realistic),
                &scaling_plan,
            )
        })
        .collect();
    let label_modes = [
        LabelMode::Replicas,
        LabelMode::Realistic,
        LabelMode::Distinct,
    ]
    .into_iter()
    .map(|l| run_or_reuse(&mut done, &spec(10_000, args.policies, l), &scaling_plan))
    .collect();
    let policy_counts: &[usize] = if args.quick {
        &[]
    } else {
        &[250, 500, 1_000, 2_000]
    };
    let policy_scaling = policy_counts
        .iter()
        .map(|&q| {
            run_or_reuse(
                &mut done,
                &spec(10_000, q, LabelMode::Realistic),
                &scaling_plan,
            )
        })
        .collect();

    let target = cases
        .iter()
        .find(|c| c.spec.pods == 10_000 && c.spec.policies == 1_000)
        .map(|c| Target {
            case: c.name.clone(),
            compile_median_ms: c.compile.median_ms,
            limit_ms: TARGET_MS,
            met: c.compile.median_ms < TARGET_MS,
        });
    run.finish();
    let report = Report {
        run,
        plan: headline_plan,
        target,
        cases,
        pod_scaling,
        label_modes,
        policy_scaling,
    };
    args.output
        .publish("policy-compile", args.quick, &report.markdown(), &report)
}
