//! Runs one benchmark case: builds a synthetic cluster, compiles it several
//! times, counts what the compiler produced, and measures the evaluator's
//! throughput and the process's peak memory.
//!
//! Times are wall clock (`Instant`), taken at the call boundary of the
//! library (`bulkhead_policy::compile::compile`, `Compiled::map_image`,
//! `Compiled::allowed`, `Compiled::evaluate`); nothing inside the compiler is
//! instrumented.

use std::hint::black_box;
use std::time::Instant;

use bulkhead_common::{IDENTITY_ANY, POLICY_NODE_INNER};
use bulkhead_policy::compile::maps::MapImage;
use bulkhead_policy::compile::{Compiled, IdentityKind, TableId, compile};
use bulkhead_policy::model::Direction;
use serde::Serialize;

use crate::cluster::{ClusterSpec, LabelMode};
use crate::machine;
use crate::queries::{self, Query};

/// How much to measure in a case.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    /// Compile runs (the median is reported).
    pub compile_runs: usize,
    /// Queries in the fixed query set; 0 skips the evaluator.
    pub queries: usize,
    /// Passes of `allowed` over the query set (the median pass is reported).
    pub allowed_passes: usize,
    /// Queries of the set given to `evaluate` (a prefix of it).
    pub evaluate_queries: usize,
    /// Seed of the query set.
    pub query_seed: u64,
}

/// Wall-clock samples of one operation, milliseconds.
#[derive(Clone, Debug, Serialize)]
pub struct Timing {
    /// Every run, in order.
    pub runs_ms: Vec<f64>,
    /// Median run.
    pub median_ms: f64,
    /// Fastest run.
    pub min_ms: f64,
    /// Slowest run.
    pub max_ms: f64,
}

impl Timing {
    fn new(runs_ms: Vec<f64>) -> Self {
        let mut sorted = runs_ms.clone();
        sorted.sort_by(f64::total_cmp);
        Self {
            median_ms: median(&sorted),
            min_ms: sorted.first().copied().unwrap_or(0.0),
            max_ms: sorted.last().copied().unwrap_or(0.0),
            runs_ms,
        }
    }
}

/// Median of sorted samples (mean of the middle two for an even count).
fn median(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// What the compiler produced.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Counts {
    /// Pods in the model.
    pub pods: usize,
    /// Policies in the model.
    pub policies: usize,
    /// Namespaces in the model.
    pub namespaces: usize,
    /// Pod classes (pods no selector or named port tells apart).
    pub pod_classes: usize,
    /// Identities in total.
    pub identities: usize,
    /// Identities of pod addresses.
    pub pod_identities: usize,
    /// Identities of non-pod address regions.
    pub external_identities: usize,
    /// Distinct ipBlocks in force.
    pub ip_blocks: usize,
    /// Address regions those blocks cut.
    pub regions: usize,
    /// Rule tables.
    pub tables: usize,
    /// Ingress rule tables.
    pub ingress_tables: usize,
    /// Egress rule tables.
    pub egress_tables: usize,
    /// Port segments over all tables.
    pub segments: usize,
    /// Segments of the largest table.
    pub max_table_segments: usize,
    /// Rule registry entries (policy, direction, rule, peer, port).
    pub rules: usize,
    /// Endpoints isolated for ingress.
    pub isolated_ingress: usize,
    /// Endpoints isolated for egress.
    pub isolated_egress: usize,
    /// Map image: address → identity LPM entries.
    pub map_identities: usize,
    /// Map image: policy tree nodes (B-tree nodes).
    pub map_policy: usize,
    /// Map image: endpoint entries.
    pub map_endpoints: usize,
    /// policy tree nodes whose peer is `IDENTITY_ANY`.
    pub map_policy_any_peer: usize,
    /// policy tree nodes whose peer is a pod identity.
    pub map_policy_pod_peers: usize,
    /// policy tree nodes whose peer is an external (ipBlock region) identity.
    pub map_policy_external_peers: usize,
    /// policy tree nodes of the largest table.
    pub map_policy_max_table: usize,
    /// policy tree nodes one node needs (the tables its endpoints use),
    /// median over nodes of [`PODS_PER_NODE`] pods dealt round-robin.
    pub map_policy_per_node_median: usize,
    /// The same, largest node.
    pub map_policy_per_node_max: usize,
    /// Deepest policy tree (nodes a lookup visits for one peer).
    pub map_policy_max_depth: usize,
}

/// Pods per node for the per-node map estimate (the kubelet default limit).
pub const PODS_PER_NODE: usize = 110;

/// Evaluator throughput over the fixed query set.
#[derive(Clone, Debug, Serialize)]
pub struct Throughput {
    /// Queries per pass.
    pub queries: usize,
    /// Passes run.
    pub passes: usize,
    /// Queries per second of each pass.
    pub qps_runs: Vec<f64>,
    /// Median pass, queries per second.
    pub qps: f64,
    /// Share of queries allowed.
    pub allowed_fraction: f64,
}

/// Memory of the process, KiB (`/proc/self/status`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Memory {
    /// Whether the peak was reset at the start of the case; if not, peaks
    /// include earlier cases.
    pub peak_reset: bool,
    /// RSS at the start of the case (memory kept from earlier cases).
    pub rss_start_kib: Option<u64>,
    /// RSS once the model was built.
    pub rss_model_kib: Option<u64>,
    /// Peak RSS through build, compiles and map images.
    pub peak_compile_kib: Option<u64>,
    /// Peak RSS through the whole case (adds the query set and evaluator).
    pub peak_kib: Option<u64>,
}

/// Everything measured in one case.
#[derive(Clone, Debug, Serialize)]
pub struct CaseResult {
    /// Short name, e.g. `10k pods × 1k policies`.
    pub name: String,
    /// The cluster.
    pub spec: ClusterSpec,
    /// Workloads the pods are replicas of.
    pub workloads: usize,
    /// Distinct (namespace, label set) pairs among pods.
    pub distinct_label_sets: usize,
    /// Generating the model (normalize and address assignment included);
    /// not part of the compile time.
    pub build_ms: f64,
    /// `compile(&model)`.
    pub compile: Timing,
    /// `compiled.map_image(0)`.
    pub map_image: Timing,
    /// Counts.
    pub counts: Counts,
    /// `Compiled::allowed` (fast path).
    pub allowed: Option<Throughput>,
    /// `Compiled::evaluate` (with rule attribution).
    pub evaluate: Option<Throughput>,
    /// Queries where `evaluate(..).allowed()` and `allowed(..)` disagree
    /// (must be 0).
    pub evaluate_mismatches: Option<usize>,
    /// Memory.
    pub memory: Memory,
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

/// Short form of a count: 1000 → `1k`, 2500 → `2.5k`.
pub fn short(n: usize) -> String {
    if n >= 1000 && n.is_multiple_of(100) {
        let k = n as f64 / 1000.0;
        format!("{k}k")
    } else {
        n.to_string()
    }
}

fn counts(c: &Compiled, spec_namespaces: usize, policies: usize) -> Counts {
    let image = c.map_image(0);
    let pod_identities = c
        .identities
        .list
        .iter()
        .filter(|i| matches!(i.kind, IdentityKind::Pods { .. }))
        .count();
    let of = |d: Direction| c.tables.iter().filter(|t| t.direction == d).count();
    let policy = policy_entries(c, &image);
    Counts {
        map_policy_any_peer: policy.any_peer,
        map_policy_pod_peers: policy.pod_peers,
        map_policy_external_peers: policy.external_peers,
        map_policy_max_table: policy.per_table.iter().copied().max().unwrap_or(0),
        map_policy_per_node_median: policy.per_node_median,
        map_policy_per_node_max: policy.per_node_max,
        map_policy_max_depth: policy.max_depth,
        pods: c.endpoints.len(),
        policies,
        namespaces: spec_namespaces,
        pod_classes: c.classes.len(),
        identities: c.identities.list.len(),
        pod_identities,
        external_identities: c.identities.list.len() - pod_identities,
        ip_blocks: c.blocks.len(),
        regions: c.regions.regions.len(),
        tables: c.tables.len(),
        ingress_tables: of(Direction::Ingress),
        egress_tables: of(Direction::Egress),
        segments: c.tables.iter().map(|t| t.segment_count()).sum(),
        max_table_segments: c
            .tables
            .iter()
            .map(|t| t.segment_count())
            .max()
            .unwrap_or(0),
        rules: c.rules.len(),
        isolated_ingress: c.endpoints.iter().filter(|e| e.ingress.is_some()).count(),
        isolated_egress: c.endpoints.iter().filter(|e| e.egress.is_some()).count(),
        map_identities: image.identities.len(),
        map_policy: image.policy.len(),
        map_endpoints: image.endpoints.len(),
    }
}

/// Breakdown of the policy tree nodes.
struct PolicyEntries {
    any_peer: usize,
    pod_peers: usize,
    external_peers: usize,
    per_table: Vec<usize>,
    per_node_median: usize,
    per_node_max: usize,
    max_depth: usize,
}

fn policy_entries(c: &Compiled, image: &MapImage) -> PolicyEntries {
    let mut e = PolicyEntries {
        any_peer: 0,
        pod_peers: 0,
        external_peers: 0,
        per_table: vec![0; c.tables.len()],
        per_node_median: 0,
        per_node_max: 0,
        max_depth: 0,
    };
    let nodes: std::collections::HashMap<_, _> = image.policy.iter().copied().collect();
    for (key, node) in &image.policy {
        if key.node == 0 {
            // Every leaf is equally deep: follow the first child.
            let (mut depth, mut node, mut key) = (1, *node, *key);
            while node.kind == POLICY_NODE_INNER {
                key.node = node.ranges[0].target;
                node = nodes[&key];
                depth += 1;
            }
            e.max_depth = e.max_depth.max(depth);
        }
        // The image holds kernel numbers; the compiled tables internal ids.
        let table = c
            .kernel
            .internal_table(key.table)
            .expect("a table's number");
        e.per_table[table as usize] += 1;
        match key.identity {
            IDENTITY_ANY => e.any_peer += 1,
            k => match c
                .identities
                .get(c.kernel.internal_identity(k).expect("an identity's number"))
                .kind
            {
                IdentityKind::Pods { .. } => e.pod_peers += 1,
                IdentityKind::External { .. } | IdentityKind::Node { .. } => e.external_peers += 1,
            },
        }
    }
    let nodes = c.endpoints.len().div_ceil(PODS_PER_NODE).max(1);
    let mut per_node: Vec<usize> = (0..nodes)
        .map(|node| {
            let mut tables: Vec<TableId> = c
                .endpoints
                .iter()
                .skip(node)
                .step_by(nodes)
                .flat_map(|ep| [ep.ingress, ep.egress])
                .flatten()
                .collect();
            tables.sort_unstable();
            tables.dedup();
            tables.iter().map(|&t| e.per_table[t as usize]).sum()
        })
        .collect();
    per_node.sort_unstable();
    e.per_node_median = per_node[per_node.len() / 2];
    e.per_node_max = *per_node.last().expect("at least one node");
    e
}

fn allowed_pass(c: &Compiled, qs: &[Query]) -> (f64, usize) {
    let start = Instant::now();
    let mut allowed = 0usize;
    for q in qs {
        allowed += black_box(c.allowed(black_box(q.src), q.dst, q.proto, q.port)) as usize;
    }
    (start.elapsed().as_secs_f64(), allowed)
}

fn evaluate_pass(c: &Compiled, qs: &[Query]) -> (f64, usize) {
    let start = Instant::now();
    let mut allowed = 0usize;
    for q in qs {
        let v = black_box(c.evaluate(black_box(q.src), q.dst, q.proto, q.port));
        allowed += v.allowed() as usize;
    }
    (start.elapsed().as_secs_f64(), allowed)
}

fn throughput(passes: usize, qs: &[Query], pass: impl Fn(&[Query]) -> (f64, usize)) -> Throughput {
    let mut qps_runs = Vec::with_capacity(passes);
    let mut allowed = 0;
    for _ in 0..passes {
        let (secs, a) = pass(qs);
        qps_runs.push(qs.len() as f64 / secs);
        allowed = a;
    }
    let mut sorted = qps_runs.clone();
    sorted.sort_by(f64::total_cmp);
    Throughput {
        queries: qs.len(),
        passes,
        qps: median(&sorted),
        qps_runs,
        allowed_fraction: allowed as f64 / qs.len().max(1) as f64,
    }
}

/// Runs one case; progress goes to stderr.
pub fn run(name: &str, spec: &ClusterSpec, plan: &Plan) -> CaseResult {
    let mut memory = Memory {
        peak_reset: machine::reset_peak_rss(),
        rss_start_kib: machine::rss_kib(),
        ..Memory::default()
    };
    eprintln!(
        "[{name}] building model ({} pods, {} policies, labels {})",
        spec.pods,
        spec.policies,
        spec.labels.as_str()
    );
    let start = Instant::now();
    let cluster = spec.build();
    let build_ms = ms(start);
    memory.rss_model_kib = machine::rss_kib();
    let model = &cluster.model;

    let mut compile_runs = Vec::new();
    let mut image_runs = Vec::new();
    let mut last = None;
    for run in 0..plan.compile_runs.max(1) {
        drop(last.take());
        let start = Instant::now();
        let compiled = black_box(compile(black_box(model)));
        compile_runs.push(ms(start));
        let start = Instant::now();
        let image = black_box(compiled.map_image(0));
        image_runs.push(ms(start));
        drop(image);
        eprintln!(
            "[{name}] compile run {}: {:.1} ms",
            run + 1,
            compile_runs[run]
        );
        last = Some(compiled);
    }
    let compiled = last.expect("at least one compile run");
    memory.peak_compile_kib = machine::peak_rss_kib();
    let counts = counts(&compiled, model.namespaces.len(), model.policies.len());

    let (mut allowed, mut evaluate, mut mismatches) = (None, None, None);
    if plan.queries > 0 {
        let qs = queries::generate(model, plan.queries, plan.query_seed);
        eprintln!(
            "[{name}] allowed: {} passes of {} queries",
            plan.allowed_passes,
            qs.len()
        );
        allowed = Some(throughput(plan.allowed_passes.max(1), &qs, |q| {
            allowed_pass(&compiled, q)
        }));
        let eval_qs = &qs[..plan.evaluate_queries.min(qs.len())];
        eprintln!("[{name}] evaluate: {} queries", eval_qs.len());
        evaluate = Some(throughput(1, eval_qs, |q| evaluate_pass(&compiled, q)));
        mismatches = Some(
            eval_qs
                .iter()
                .filter(|q| {
                    compiled.evaluate(q.src, q.dst, q.proto, q.port).allowed()
                        != compiled.allowed(q.src, q.dst, q.proto, q.port)
                })
                .count(),
        );
    }
    memory.peak_kib = machine::peak_rss_kib();
    CaseResult {
        name: name.to_string(),
        spec: spec.clone(),
        workloads: cluster.workloads,
        distinct_label_sets: cluster.distinct_label_sets,
        build_ms,
        compile: Timing::new(compile_runs),
        map_image: Timing::new(image_runs),
        counts,
        allowed,
        evaluate,
        evaluate_mismatches: mismatches,
        memory,
    }
}

/// The standard name of a case: `10k pods × 1k policies` plus the label
/// mode when it is not the realistic default.
pub fn case_name(spec: &ClusterSpec) -> String {
    let base = format!(
        "{} pods × {} policies",
        short(spec.pods),
        short(spec.policies)
    );
    match spec.labels {
        LabelMode::Realistic => base,
        other => format!("{base} ({})", other.as_str()),
    }
}
