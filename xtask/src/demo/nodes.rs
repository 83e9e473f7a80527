//! The demo's many-nodes scene: the shop spread over three node
//! namespaces on a routed fabric, one agent per node, every pod registered
//! with its node's agent through the real `bulkhead-cni` chained plugin.
//! Learnt on all three nodes, proposed from their merged flow logs,
//! enforced everywhere: a cross-node connection is judged at both ends
//! (egress on the client's node, ingress on the server's), and `lab
//! verify` finds every node's kernel agreeing with the evaluator.
//!
//! The verdicts the story tells are checked, not only shown: the scene
//! fails when a probe disagrees. The lab is taken down whatever happens.

use anyhow::{Context as _, Result, ensure};

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
         (host-gw), an agent on each, in learn mode; each pod is registered with its node's \
         agent by the bulkhead-cni chained plugin, as a runtime's CNI ADD does",
    );
    demo.bulkhead(&[
        "lab",
        "up",
        "--name",
        LAB,
        "--manifests",
        WORKLOADS,
        "--nodes",
        "3",
        "--mode",
        "learn",
        "--flow-idle-timeout",
        "1",
    ])?;
    demo.bulkhead(&["lab", "status", "--name", LAB])?;
    scene("The app's own traffic, across nodes: frontend → api → db, DNS");
    for (from, to, port) in [
        ("shop/frontend", "shop/api", "8080"),
        ("shop/api", "shop/db", "5432"),
        ("shop/frontend", "kube-system/coredns", "53"),
        ("shop/api", "kube-system/coredns", "53"),
    ] {
        check(demo, from, to, port, true)?;
    }
    // Both ends' records are flushed after the idle timeout.
    std::thread::sleep(std::time::Duration::from_secs(3));
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

/// Probes `from` → `to` on TCP `port` (IPv4) with real packets, shows the
/// verdict and insists on the expected one.
fn check(demo: &Demo<'_>, from: &str, to: &str, port: &str, connects: bool) -> Result<()> {
    let args = [
        "lab",
        "probe",
        "--name",
        LAB,
        "--from",
        from,
        "--to",
        to,
        "--ports",
        port,
        "--protocols",
        "TCP",
        "--family",
        "4",
        "--output",
        "json",
    ];
    let text = demo.output(&args)?;
    let mut verdicts = Vec::new();
    for line in text.lines() {
        let p: serde_json::Value = serde_json::from_str(line).context("a probe's JSON")?;
        verdicts.push(p["allowed"].as_bool().unwrap_or_default());
    }
    let mark = if connects { "✓" } else { "✗" };
    println!("  {from} → {to} TCP/{port}: {mark}");
    ensure!(!verdicts.is_empty(), "no probe {from} → {to}:{port}");
    ensure!(
        verdicts.iter().all(|a| *a == connects),
        "{from} → {to}:{port} should {}connect",
        if connects { "" } else { "not " }
    );
    Ok(())
}
