//! `cargo xtask bench`: the benchmarks, results written under bench/results/.

use anyhow::Result;

use crate::{cmd, cmd::step};

/// Runs the policy compile benchmark (`--quick` for a short run that does
/// not overwrite the recorded results).
pub fn run(quick: bool) -> Result<()> {
    step("policy compile benchmark", || {
        let mut c = cmd::clean("cargo");
        c.current_dir(cmd::repo_root()).args([
            "run",
            "--quiet",
            "--release",
            "-p",
            "bulkhead-bench",
            "--bin",
            "policy_bench",
            "--",
        ]);
        if quick {
            c.arg("--quick");
        }
        cmd::run(&mut c)
    })
}
