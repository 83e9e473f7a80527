//! `cluster_bench`: the agent in cluster mode (issue 13). The real
//! `bulkhead agent --kubernetes` reads a synthetic cluster (namespaces,
//! remote pods, 1k NetworkPolicies) from a list/watch API server inside a
//! node network namespace with two real local pods, and the benchmark
//! measures: pod created in the API → its policy enforced (p50/p99) at 1k
//! and 10k pods; 100 pod changes/s for 60 s at 10k pods with an allowed
//! flow that must lose nothing; agent memory per remote pod (10k → 100k
//! pods); agent CPU when idle.
//!
//! Needs root (namespaces, bpffs, eBPF); without root it says so and exits
//! 0 having measured nothing. Writes `cluster.md` and `cluster.json` (with
//! `--quick`, `cluster-quick.*`) to `bench/results/`, prints the Markdown to
//! stdout and progress to stderr. The agent is `--agent`, else
//! `$BULKHEAD_BIN`, else built now (`cargo build --release -p bulkhead`,
//! with the eBPF ELF of `$BULKHEAD_EBPF_ELF` or `cargo xtask build-ebpf`
//! embedded).
//!
//! ```text
//! cargo xtask build-ebpf
//! cargo run --release -p bulkhead-bench --bin cluster_bench -- [--quick]
//! ```

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bulkhead_bench::cluster::{ClusterSpec, LabelMode};
use bulkhead_bench::cluster_mode::churn::{self, ChurnPlan};
use bulkhead_bench::cluster_mode::report::{ApiCounts, PerPod, Plan, Report, ScaleResult};
use bulkhead_bench::cluster_mode::state_watch::StateWatch;
use bulkhead_bench::cluster_mode::{agent, logstats, measure, node::Node, synth};
use bulkhead_bench::elf;
use bulkhead_bench::report::Output;
use bulkhead_bench::run_info::{ElfIdentity, RunInfo};
use bulkhead_netns_tests::apiserver::Options;
use clap::Parser;

/// Cluster-mode benchmark (root only).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Short run (a few minutes): 1k and 10k pods for memory, fewer
    /// latency rounds, 10 s of churn and of idle; writes `cluster-quick.*`.
    #[arg(long)]
    quick: bool,
    /// The `bulkhead` binary (default: `$BULKHEAD_BIN`, else a release
    /// build made now).
    #[arg(long)]
    agent: Option<PathBuf>,
    /// Seed of the synthetic cluster and the churn.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Namespaces (including kube-system and monitoring).
    #[arg(long, default_value_t = 50)]
    namespaces: usize,
    /// Workloads per application namespace.
    #[arg(long, default_value_t = 12)]
    apps_per_namespace: usize,
    /// Synthetic NetworkPolicies.
    #[arg(long, default_value_t = 1000)]
    policies: usize,
    /// Latency rounds (each: a pod created, a relabel, a delete) at 1k
    /// pods (default 200; 30 with --quick).
    #[arg(long)]
    rounds_1k: Option<usize>,
    /// Latency rounds at 10k pods (default 100; 20 with --quick).
    #[arg(long)]
    rounds_10k: Option<usize>,
    /// Pod changes per second of the churn.
    #[arg(long, default_value_t = 100)]
    churn_rate: u32,
    /// Seconds of churn (default 60; 10 with --quick; at most 600).
    #[arg(long)]
    churn_seconds: Option<u64>,
    /// Requests per second of the allowed flow during the churn.
    #[arg(long, default_value_t = 1000)]
    flow_rate: u32,
    /// Seconds of the idle CPU window (default 30; 10 with --quick).
    #[arg(long)]
    idle_seconds: Option<u64>,
    /// The two pod counts memory per pod is computed from (default
    /// 10000,100000; 1000,10000 with --quick).
    #[arg(long, value_delimiter = ',', num_args = 2)]
    memory_pods: Option<Vec<usize>>,
    /// Limit on one initial sync, seconds.
    #[arg(long, default_value_t = 900)]
    sync_timeout: u64,
    /// Where to write the report.
    #[command(flatten)]
    output: Output,
}

/// Limit on one change's enforcement in the latency rounds.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(60);

fn main() -> anyhow::Result<()> {
    let started_at = Instant::now();
    let args = Args::parse();
    if !elf::root_or_skip("cluster_bench", "network namespaces, bpffs, eBPF programs") {
        return Ok(());
    }
    let binary = agent::resolve_binary(args.agent.clone())?;
    let mut run = RunInfo::start("cluster", "cluster_bench", args.quick, started_at);
    let plan = plan(&args)?;
    let loadavg_start = bulkhead_bench::machine::loadavg();
    let mut scales = Vec::new();
    for pods in scale_list(&plan) {
        eprintln!("[cluster] {pods} remote pods");
        let result = scale(&args, &plan, pods).with_context(|| format!("the {pods}-pod scale"))?;
        scales.push(result);
    }
    let find = |n: usize| scales.iter().find(|s: &&ScaleResult| s.remote_pods == n);
    let per_pod = match (find(plan.memory_pods.0), find(plan.memory_pods.1)) {
        (Some(a), Some(b)) => PerPod::of(a, b),
        _ => None,
    };
    run.finish();
    let report = Report {
        run,
        agent: ElfIdentity::of(binary),
        plan,
        scales,
        per_pod,
        loadavg: (loadavg_start, bulkhead_bench::machine::loadavg()),
    };
    args.output
        .publish("cluster", args.quick, &report.markdown(), &report)
}

fn plan(args: &Args) -> anyhow::Result<Plan> {
    let q = args.quick;
    let seconds = args.churn_seconds.unwrap_or(if q { 10 } else { 60 });
    if !(1..=600).contains(&seconds) || args.churn_rate == 0 || args.flow_rate == 0 {
        bail!("--churn-seconds must be 1..=600, the rates above 0");
    }
    let memory = args.memory_pods.clone().unwrap_or(if q {
        vec![1000, 10_000]
    } else {
        vec![10_000, 100_000]
    });
    Ok(Plan {
        seed: args.seed,
        namespaces: args.namespaces,
        apps_per_namespace: args.apps_per_namespace,
        policies: args.policies,
        latency: vec![
            (1000, args.rounds_1k.unwrap_or(if q { 30 } else { 200 })),
            (10_000, args.rounds_10k.unwrap_or(if q { 20 } else { 100 })),
        ],
        churn_pods: 10_000,
        churn: ChurnPlan {
            rate: args.churn_rate,
            seconds,
            flow_rate: args.flow_rate,
            catch_up_limit_s: 120,
        },
        idle_seconds: args
            .idle_seconds
            .unwrap_or(if q { 10 } else { 30 })
            .clamp(1, 600),
        memory_pods: (memory[0].min(memory[1]), memory[0].max(memory[1])),
        settle_seconds: if q { 3 } else { 5 },
    })
}

/// Every pod count some phase needs, smallest first.
fn scale_list(plan: &Plan) -> BTreeSet<usize> {
    let mut s: BTreeSet<usize> = plan.latency.iter().map(|l| l.0).collect();
    s.extend([plan.churn_pods, plan.memory_pods.0, plan.memory_pods.1]);
    s
}

/// One scale: a fresh node, API server and agent; the phases it needs.
fn scale(args: &Args, plan: &Plan, pods: usize) -> anyhow::Result<ScaleResult> {
    let spec = ClusterSpec {
        seed: plan.seed,
        namespaces: plan.namespaces,
        apps_per_namespace: plan.apps_per_namespace,
        pods,
        policies: plan.policies,
        labels: LabelMode::Realistic,
    };
    let mut synth = synth::generate(&spec).context("the pod CIDR cannot hold the pods")?;
    let api = Options {
        bookmark_interval: Duration::from_secs(60),
        ..Options::default()
    };
    let mut node = Node::create(api)?;
    let load_seconds = measure::load(&node, &synth.objects)?;
    let rv = node.api().resource_version();
    let watch = StateWatch::new(&node.pins)?;
    eprintln!("[cluster]   starting the agent, waiting for resourceVersion {rv}");
    let timeout = Duration::from_secs(args.sync_timeout);
    let initial_sync = measure::start_agent(&mut node, &watch, rv, timeout)?;
    eprintln!(
        "[cluster]   initial sync {:.1} s (enforced: {})",
        initial_sync.seconds, initial_sync.enforced
    );
    let enforcement = if initial_sync.enforced {
        Some(measure::enforcement(&node)?)
    } else {
        None
    };
    if let Some(e) = enforcement.filter(|e| !e.ok()) {
        // Recorded (the report marks it), not fatal: the rest still tells.
        eprintln!("[cluster]   WRONG: the policy is not in force on the wire: {e:?}");
    }
    let memory = measure::memory(&node, Duration::from_secs(plan.settle_seconds))?;
    let mut result = ScaleResult {
        remote_pods: pods,
        namespaces: synth.namespaces,
        policies: synth.policies,
        objects_mib: synth.json_bytes as f64 / (1 << 20) as f64,
        load_seconds,
        initial_sync,
        enforcement,
        memory,
        idle_cpu: None,
        latency: Vec::new(),
        memory_after_latency: None,
        latency_steps: None,
        churn: None,
        api: ApiCounts::default(),
    };
    // Memory is all a scale that cannot enforce its view can give.
    synth.objects = Vec::new();
    if result.initial_sync.enforced {
        phases(plan, pods, &mut node, &watch, &mut synth, &mut result)?;
    }
    let stats = node.api().stats();
    result.api = ApiCounts {
        lists: stats.lists,
        watches_opened: stats.watches_opened,
        gone_sent: stats.gone_sent,
        writes: stats.writes,
    };
    Ok(result)
}

/// Idle CPU, latency and churn, where the plan has them at this scale.
fn phases(
    plan: &Plan,
    pods: usize,
    node: &mut Node,
    watch: &StateWatch,
    synth: &mut synth::Synthetic,
    result: &mut ScaleResult,
) -> anyhow::Result<()> {
    if pods == plan.churn_pods {
        eprintln!("[cluster]   idle CPU over {} s", plan.idle_seconds);
        result.idle_cpu = Some(measure::idle_cpu(
            node,
            Duration::from_secs(plan.idle_seconds),
        )?);
    }
    if let Some(&(_, rounds)) = plan.latency.iter().find(|l| l.0 == pods) {
        let mark = logstats::mark(&node.agent_log());
        result.latency = measure::latency(node, watch, synth, rounds, CHANGE_TIMEOUT)?;
        result.latency_steps = Some(logstats::since(&node.agent_log(), mark));
        result.memory_after_latency = Some(measure::memory(node, Duration::from_secs(1))?);
    }
    if pods == plan.churn_pods {
        eprintln!(
            "[cluster]   churn: {} changes/s for {} s, flow {} requests/s",
            plan.churn.rate, plan.churn.seconds, plan.churn.flow_rate
        );
        result.churn = Some(churn::run(node, synth, plan.churn)?);
    }
    Ok(())
}
