//! `cargo xtask bench`: the benchmarks, results written under bench/results/.
//!
//! - the policy compile benchmark (`policy_bench`, any user);
//! - the incremental compile benchmark (`incremental_bench`, any user: one
//!   change turned into its map writes beside a full compile, allow-lists
//!   of 10 to 100k entries and 1k/10k-pod clusters);
//! - the proposal benchmark (`propose_bench`, any user: 1M flow records to
//!   policies and their coverage proof);
//! - the UI benchmark (`ui_bench`, any user, with the setup's chromium and
//!   the bundle `build-ui` makes: a synthetic 500-workload, 5,000-edge map
//!   served by the agent's API, loaded in headless Chromium: time to
//!   interactive, click to details, overlapping labels);
//! - the dataplane benchmark (`dataplane_bench`: program cost by
//!   `BPF_PROG_TEST_RUN`, veth packet rate in private network namespaces);
//! - the flow-record capacity benchmark (`flow_bench`: new flows/s driven
//!   by `BPF_PROG_TEST_RUN` and exported to JSON Lines by the agent's
//!   pipeline with zero loss; about 6 minutes, 1 with `--quick`);
//! - the alerting benchmark (`alert_bench`: the flow pipeline at 100k new
//!   flows/s with and without baseline-deviation alerting, side by side:
//!   records the detectors miss, CPU per record B/A; about 3 minutes, 2
//!   with `--quick`);
//! - the cluster-mode benchmark (`cluster_bench`: the agent against a
//!   Kubernetes list/watch API server at 1k to 100k pods: change →
//!   enforced latency, churn with an allowed flow, memory per pod, idle
//!   CPU; about 15 minutes, 5 with `--quick`).
//!
//! The last four need **root** (loading eBPF programs, creating
//! namespaces); as another user they are skipped with a message. The eBPF
//! ELF is built first.

use anyhow::Result;

use crate::{cmd, cmd::step, ebpf, test::EBPF_ELF, ui};

/// Runs the benchmarks (`--quick` for a short run that does not overwrite
/// the recorded results).
pub fn run(quick: bool) -> Result<()> {
    step("policy compile benchmark", || {
        cmd::run(bench_bin("policy_bench", quick).current_dir(cmd::repo_root()))
    })?;
    step("incremental compile benchmark", || {
        cmd::run(bench_bin("incremental_bench", quick).current_dir(cmd::repo_root()))
    })?;
    step("proposal benchmark", || {
        cmd::run(bench_bin("propose_bench", quick).current_dir(cmd::repo_root()))
    })?;
    // Before the benchmark is built: the agent crate embeds the bundle.
    step("build-ui", ui::build)?;
    step("UI benchmark", || {
        cmd::run(bench_bin("ui_bench", quick).current_dir(cmd::repo_root()))
    })?;
    if !cmd::is_root() {
        eprintln!(
            "bench: skipping the dataplane, flow, alerting and cluster-mode benchmarks: they need root (loading eBPF programs, creating network namespaces); run `cargo xtask bench` as root"
        );
        return Ok(());
    }
    let elf = step("build-ebpf", ebpf::build)?;
    step("dataplane benchmark", || {
        cmd::run(
            bench_bin("dataplane_bench", quick)
                .current_dir(cmd::repo_root())
                .env(EBPF_ELF, &elf),
        )
    })?;
    step("flow-record capacity benchmark", || {
        cmd::run(
            bench_bin("flow_bench", quick)
                .current_dir(cmd::repo_root())
                .env(EBPF_ELF, &elf),
        )
    })?;
    step("alerting benchmark", || {
        cmd::run(
            bench_bin("alert_bench", quick)
                .current_dir(cmd::repo_root())
                .env(EBPF_ELF, &elf),
        )
    })?;
    // The agent binary it runs is built with this ELF embedded.
    step("cluster-mode benchmark", || {
        cmd::run(
            bench_bin("cluster_bench", quick)
                .current_dir(cmd::repo_root())
                .env(EBPF_ELF, &elf),
        )
    })
}

/// Runs the comparison benchmark (root only): the Debian tools it drives
/// (`cargo xtask setup`'s packages), the ELF, then `compare_bench`.
pub fn compare(quick: bool) -> Result<()> {
    if !cmd::is_root() {
        anyhow::bail!(
            "the comparison benchmark needs root (network namespaces, eBPF, netfilter in its namespaces): run `cargo xtask compare` as root"
        );
    }
    step("setup", || crate::setup::run().map(drop))?;
    let elf = step("build-ebpf", ebpf::build)?;
    step("comparison benchmark", || {
        cmd::run(
            bench_bin("compare_bench", quick)
                .current_dir(cmd::repo_root())
                .env(EBPF_ELF, &elf),
        )
    })
}

/// `cargo run --release -p bulkhead-bench --bin NAME -- [--quick]`.
fn bench_bin(name: &str, quick: bool) -> std::process::Command {
    let mut c = cmd::clean("cargo");
    c.args([
        "run",
        "--quiet",
        "--release",
        "-p",
        "bulkhead-bench",
        "--bin",
        name,
        "--",
    ]);
    if quick {
        c.arg("--quick");
    }
    c
}
