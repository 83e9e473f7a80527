//! `cargo xtask demo`: sets up, then runs the controller on the demo policies.

use anyhow::Result;

use crate::{cmd, cmd::step, ebpf, setup};

/// Directory of the demo manifests, relative to the repository root.
const DEMO_MANIFESTS: &str = "policies/demo";

/// Runs setup, then the demo.
pub fn run() -> Result<()> {
    step("setup", setup::run)?;
    // Before the controller is built: it embeds the ELF (controller/build.rs).
    step("build-ebpf", ebpf::build)?;
    step("demo", run_demo)
}

/// The demo itself: each call of [`bulkhead`] is one scene.
pub fn run_demo() -> Result<()> {
    let workloads = format!("{DEMO_MANIFESTS}/workloads.yaml");
    scene(
        "The shop (frontend → api → db, DNS, a stray debug pod) with no NetworkPolicy: everything is open",
    );
    bulkhead(&["connectivity", "--manifests", &workloads])?;
    scene("With policies/demo/netpol.yaml: least privilege, exactly the paths the app uses");
    bulkhead(&["connectivity", "--manifests", DEMO_MANIFESTS])?;
    scene("Why can the stray pod not reach the database?");
    bulkhead(&[
        "explain",
        "--manifests",
        DEMO_MANIFESTS,
        "--from",
        "sandbox/stray",
        "--to",
        "shop/db",
        "--port",
        "5432",
    ])?;
    scene("And why can the api?");
    bulkhead(&[
        "explain",
        "--manifests",
        DEMO_MANIFESTS,
        "--from",
        "shop/api",
        "--to",
        "shop/db",
        "--port",
        "5432",
    ])?;
    Ok(())
}

/// Prints a scene header.
fn scene(title: &str) {
    println!("\n━━ {title}\n");
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
