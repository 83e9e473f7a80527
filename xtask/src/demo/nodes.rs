//! The demo's many-nodes scene: the shop spread over three node
//! namespaces on a routed fabric, one agent per node, every pod added
//! through its node's real CNI chain (`ptp` and `host-local`, then the
//! chained `bulkhead-cni`, which returns once the pod is enforced).
//! Learnt on all three nodes, proposed from their merged flow logs,
//! enforced everywhere: a cross-node connection is judged at both ends
//! (egress on the client's node, ingress on the server's), and `lab
//! verify` finds every node's kernel agreeing with the evaluator.
//!
//! The verdicts the story tells are checked, not only shown: the scene
//! fails when a probe disagrees. The lab is taken down whatever happens.

use anyhow::{Context as _, Result};

use super::checks::{APP_TRAFFIC, wait_for_both_ends};
use super::{Demo, WORKLOADS, scene};

/// The lab's name.
const LAB: &str = "nodes";

/// Runs the scene, then `lab down`.
pub fn run(demo: &Demo<'_>) -> Result<()> {
    demo.quiet(&["lab", "down", "--name", LAB])?;
    let proposed = std::env::temp_dir().join("bulkhead-demo-proposed");
    let story = story(demo, &proposed);
    scene("Lab down: every node, the fabric, every agent and its pins go");
    let down = demo.bulkhead(&["lab", "down", "--name", LAB]);
    let _ = std::fs::remove_dir_all(&proposed);
    story.and(down)
}

fn story(demo: &Demo<'_>, proposed: &std::path::Path) -> Result<()> {
    scene(
        "Three nodes: the shop spread over three node namespaces joined by a routed fabric \
         (host-gw), an agent on each, in learn mode; each pod is added through its node's CNI \
         chain as kubelet adds it: ptp and host-local wire it, then the chained bulkhead-cni \
         returns once the node's agent enforces it",
    );
    demo.lab_up_learning(LAB, WORKLOADS, "1", &["--nodes", "3"])?;
    demo.bulkhead(&["lab", "status", "--name", LAB])?;
    scene("The app's own traffic, across nodes: frontend → api → db, DNS");
    for (from, to, port) in APP_TRAFFIC {
        check(demo, from, to, port, true)?;
    }
    wait_for_both_ends(LAB)?;
    scene(
        "Propose from all three nodes' flow logs, merged (each node saw only its own pods' ends)",
    );
    let dir = proposed.display().to_string();
    let _ = std::fs::remove_dir_all(proposed);
    demo.bulkhead(&[
        "propose",
        "--lab",
        LAB,
        "--manifests",
        WORKLOADS,
        "--mode",
        "enforce",
        "--output-dir",
        &dir,
    ])?;
    scene("Apply the proposals on every node, then lab sync (every agent enforces them)");
    let watched = super::watched_dir_of(LAB);
    for entry in std::fs::read_dir(proposed).context("the proposals")? {
        let path = entry?.path();
        let name = path.file_name().context("a proposal file")?;
        std::fs::copy(&path, watched.join(name))
            .with_context(|| format!("copying {}", path.display()))?;
    }
    println!("$ cp {dir}/*.yaml {}/", watched.display());
    demo.bulkhead(&["lab", "sync", "--name", LAB])?;
    scene("The learned paths still connect; what was never learned is dropped (✗)");
    check(demo, "shop/frontend", "shop/api", "8080", true)?;
    check(demo, "shop/frontend", "shop/db", "5432", false)?;
    check(demo, "sandbox/stray", "shop/api", "8080", false)?;
    scene("Verify: every node's kernel against the evaluator, every pod pair");
    demo.bulkhead(&["lab", "verify", "--name", LAB])
}

/// Probes `from` → `to` on TCP `port` in this lab: see [`super::checks::check`].
fn check(demo: &Demo<'_>, from: &str, to: &str, port: &str, connects: bool) -> Result<()> {
    super::checks::check(demo, LAB, from, to, port, connects)
}
