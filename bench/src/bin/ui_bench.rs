//! `ui_bench`: the network map at scale in a real browser. A synthetic
//! cluster of 500 workloads in 50 namespaces whose flow records make
//! 5,000 edges is merged into the agent's flow map and served by the
//! agent's real API on its UI listener (127.0.0.1, an ephemeral port, the
//! embedded bundle); headless Chromium (Debian's, through the test kit's
//! browser driver) loads the page `--runs` times and reports, per load,
//! navigation → `whenReady()` (the page's `readyAt`), and the time from
//! selecting an edge to its details panel being filled; the default view
//! (the all-namespaces view at this size) is checked for overlapping
//! labels (`labelOverlaps()`, from the layout's own bounding boxes).
//! Target (issue 19): interactive in under 2 s. Measured, not asserted.
//!
//! Writes `ui.md` and `ui.json` to `bench/results/`.
//!
//! ```text
//! cargo xtask build-ui    # the bundle embedded in the agent, and playwright-core
//! cargo run --release -p bulkhead-bench --bin ui_bench
//! ```

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use bulkhead_bench::report::Output;
use bulkhead_bench::run_info::RunInfo;
use bulkhead_bench::ui::report::{Report, Run, TARGET_MS, max, median};
use bulkhead_bench::ui::serve::serve;
use bulkhead_bench::ui::synthetic::{self, Shape};
use bulkhead_testkit::browser::Browser;
use clap::Parser;
use serde::Deserialize;
use serde_json::Value;

/// UI benchmark.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Page loads measured.
    #[arg(long, default_value_t = 7)]
    runs: usize,
    /// Namespaces.
    #[arg(long, default_value_t = 50)]
    namespaces: usize,
    /// Workloads per namespace.
    #[arg(long, default_value_t = 10)]
    per_namespace: usize,
    /// Distinct edges.
    #[arg(long, default_value_t = 5000)]
    edges: usize,
    /// `cargo xtask bench --quick`: 3 loads, results written as `ui-quick.*`.
    #[arg(long)]
    quick: bool,
    #[command(flatten)]
    output: Output,
}

/// How long one load may take before the run fails.
const LOAD_TIMEOUT: Duration = Duration::from_secs(60);

/// What the page says of its default view.
#[derive(Deserialize)]
struct First {
    nodes: usize,
    edges: usize,
    workloads_drawn: usize,
    namespaces_collapsed: bool,
    overlaps: Vec<(String, String)>,
}

/// The drawn edge the details are timed on, and the time.
#[derive(Deserialize)]
struct Details {
    id: String,
    ms: f64,
    kind: Option<String>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let mut run = RunInfo::start("ui", "ui_bench", args.quick, Instant::now());
    let runs = if args.quick { 3 } else { args.runs };
    let shape = Shape {
        namespaces: args.namespaces,
        per_namespace: args.per_namespace,
        edges: args.edges,
    };
    let (model, peers) = synthetic::cluster(shape);
    let edges = synthetic::edges(shape);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as u64;
    let records = synthetic::records(&peers, &edges, now);
    let served = serve(model, &records, now)?;
    let map: Value = serde_json::from_str(&served.get("/v1/map")?).context("/v1/map JSON")?;
    let count = |k: &str| map[k].as_array().map_or(0, Vec::len);
    let namespaces: BTreeSet<&str> = map["workloads"]
        .as_array()
        .context("workloads")?
        .iter()
        .filter_map(|w| w["namespace"].as_str())
        .collect();
    ensure!(
        count("workloads") == shape.workloads() && count("edges") == shape.edges,
        "the served map has {} workloads and {} edges, not {} and {}",
        count("workloads"),
        count("edges"),
        shape.workloads(),
        shape.edges
    );
    let map_bytes = serde_json::to_string(&map)?.len();
    let url = served.url();
    eprintln!(
        "serving {} workloads, {} edges at {url}",
        count("workloads"),
        count("edges")
    );

    let mut browser = Browser::launch().context("headless Chromium")?;
    eprintln!("browser: {}", browser.version);
    let mut loads = Vec::new();
    let mut first = None;
    for i in 0..runs {
        let t = Instant::now();
        let status = browser.goto(&url)?;
        if status != Some(200) {
            bail!("GET {url}: {status:?}");
        }
        let ready_ms: f64 = browser.eval_within(
            "window.bulkhead.whenReady().then(() => window.bulkhead.readyAt)",
            LOAD_TIMEOUT,
        )?;
        let driver_ms = t.elapsed().as_secs_f64() * 1e3;
        if i == 0 {
            first = Some(browser.eval::<First>(
                "(() => {
                   const v = window.bulkhead.view();
                   const ns = v.nodes.filter((n) => n.kind === 'namespace');
                   return {
                     nodes: v.nodes.filter((n) => !n.hidden).length,
                     edges: v.edges.length,
                     workloads_drawn: v.nodes.filter((n) => n.kind === 'workload' && !n.hidden).length,
                     namespaces_collapsed: ns.length > 0 && ns.every((n) => n.collapsed),
                     overlaps: window.bulkhead.labelOverlaps(),
                   };
                 })()",
            )?);
        }
        // The most severe drawn edge between two namespaces: what a user
        // would click first.
        let d: Details = browser.eval_within(
            "(async () => {
               const order = ['allowed', 'would_deny', 'revoked', 'denied', 'quarantined'];
               const edges = window.bulkhead.view().edges.filter((e) => e.source !== e.target);
               edges.sort((a, b) => order.indexOf(b.verdict) - order.indexOf(a.verdict) || (a.id < b.id ? -1 : 1));
               const t0 = performance.now();
               await window.bulkhead.select(edges[0].id);
               const ms = performance.now() - t0;
               return { id: edges[0].id, ms, kind: document.querySelector('#details')?.dataset.kind ?? null };
             })()",
            LOAD_TIMEOUT,
        )?;
        ensure!(
            d.kind.as_deref() == Some("edge"),
            "selecting {} did not open an edge's details ({:?})",
            d.id,
            d.kind
        );
        eprintln!(
            "load {}: ready {ready_ms:.0} ms, driver {driver_ms:.0} ms, details of {} {:.0} ms",
            i + 1,
            d.id,
            d.ms
        );
        loads.push(Run {
            ready_ms,
            driver_ms,
            details_ms: d.ms,
        });
    }
    let console_errors = browser.console_errors()?;
    let first = first.context("no load measured (--runs 0)")?;
    let ready: Vec<f64> = loads.iter().map(|r| r.ready_ms).collect();
    let details: Vec<f64> = loads.iter().map(|r| r.details_ms).collect();
    run.finish();
    let report = Report {
        run,
        source: format!(
            "{} synthetic flow records (one connection per edge, recorded at both ends; most \
             allowed, every 40th denied by its destination namespace's policy, every 60th \
             would-deny in audit, every 250th revoked; each workload calls DNS, peers of its own \
             namespace and of three neighbouring ones) merged into the agent's flow map \
             (`bulkhead_learn::map`, default bounds) and served by the agent's API \
             (`bulkhead_agent::api::Api` with `MapSource`, the UI listener on 127.0.0.1 and the \
             embedded bundle), the model's policy in force. Headless Chromium ({}) through the \
             test kit's driver (`ui/tests/driver.mjs`, playwright-core) loads `/ui/` {} times in \
             one browser (the first load with a cold cache, the others with the bundle cached, \
             the map fetched each time); `readyAt` is the page's `performance.now()` when \
             `whenReady()` resolves (laid out, rendered, interactive), i.e. from the start of \
             navigation. Details: `select()` of the most severe drawn namespace-to-namespace \
             edge, to the panel filled with its members' `/v1/map/edge` answers.",
            bulkhead_bench::report::int(records.len()),
            browser.version,
            runs
        ),
        workloads: count("workloads"),
        namespaces: namespaces.len(),
        edges: count("edges"),
        map_bytes,
        records: records.len(),
        drawn_nodes: first.nodes,
        drawn_edges: first.edges,
        all_namespaces_view: first.namespaces_collapsed && first.workloads_drawn == 0,
        label_overlaps: first.overlaps.len(),
        overlap_examples: first.overlaps.iter().take(5).cloned().collect(),
        ready_median_ms: median(&ready),
        ready_max_ms: max(&ready),
        details_median_ms: median(&details),
        details_max_ms: max(&details),
        met: max(&ready) < TARGET_MS,
        target_ms: TARGET_MS,
        runs: loads,
        console_errors,
    };
    args.output
        .publish("ui", args.quick, &report.markdown(), &report)?;
    Ok(())
}
