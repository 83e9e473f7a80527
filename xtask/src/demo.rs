//! `cargo xtask demo`: sets up, then runs the controller on the demo policies.

use anyhow::Result;

use crate::{cmd, cmd::step, setup};

/// Directory of the demo manifests, relative to the repository root.
const DEMO_MANIFESTS: &str = "policies/demo";

/// Runs setup, then the demo.
pub fn run() -> Result<()> {
    step("setup", setup::run)?;
    step("demo", run_demo)
}

/// The demo itself: each call of [`bulkhead`] is one scene.
pub fn run_demo() -> Result<()> {
    bulkhead(&["connectivity", "--manifests", DEMO_MANIFESTS])?;
    Ok(())
}

/// Runs `bulkhead ARGS...` (a release build) from the repository root.
fn bulkhead(args: &[&str]) -> Result<()> {
    cmd::run(
        cmd::clean("cargo")
            .current_dir(cmd::repo_root())
            .args(["run", "--quiet", "--release", "-p", "bulkhead", "--"])
            .args(args),
    )
}
