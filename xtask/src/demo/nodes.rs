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
         (host-gw), an agent on each, in learn mode; each pod is added through its node's CNI \
         chain as kubelet adds it: ptp and host-local wire it, then the chained bulkhead-cni \
         returns once the node's agent enforces it",
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
    for (from, to, port) in APP_TRAFFIC {
        check(demo, from, to, port, true)?;
    }
    wait_for_both_ends(&super::watched_dir_of(LAB))?;
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

/// The app's own connections: (client, server, TCP port).
const APP_TRAFFIC: [(&str, &str, &str); 4] = [
    ("shop/frontend", "shop/api", "8080"),
    ("shop/api", "shop/db", "5432"),
    ("shop/frontend", "kube-system/coredns", "53"),
    ("shop/api", "kube-system/coredns", "53"),
];

/// Waits (at most a minute) until the nodes' flow logs hold every app
/// connection at both ends, egress at the client's node and ingress at the
/// server's: records are written once a connection has been idle for the
/// flow timeout, and `propose` should see them all.
fn wait_for_both_ends(watched: &std::path::Path) -> Result<()> {
    let state_path = watched.with_file_name("state.json");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let missing = missing_ends(&state_path)?;
        if missing.is_empty() {
            return Ok(());
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "flow records still missing after a minute: {missing:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

/// The (client, server, port, direction) of the app's connections that no
/// node's flow log has a record of yet.
fn missing_ends(state_path: &std::path::Path) -> Result<Vec<String>> {
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(state_path)
            .with_context(|| format!("reading {}", state_path.display()))?,
    )
    .with_context(|| format!("parsing {}", state_path.display()))?;
    let mut records = Vec::new();
    let logs = state["nodes"].as_array().into_iter().flatten();
    for log in logs.filter_map(|n| n["agent"]["flow_log"].as_str()) {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        records.extend(text.lines().filter_map(|l| serde_json::from_str(l).ok()));
    }
    let mut missing = Vec::new();
    for (from, to, port) in APP_TRAFFIC {
        for direction in ["egress", "ingress"] {
            let end = (from, to, port, direction);
            if !records.iter().any(|r| is_end(r, end)) {
                missing.push(format!("{from} → {to}:{port} {direction}"));
            }
        }
    }
    Ok(missing)
}

/// Whether a flow record is of (client workload, server workload, port,
/// direction); a pod is its workload's name, or that name and a suffix.
fn is_end(
    record: &serde_json::Value,
    (from, to, port, direction): (&str, &str, &str, &str),
) -> bool {
    let is_pod = |a: &serde_json::Value, workload: &str| {
        let name = format!(
            "{}/{}",
            a["namespace"].as_str().unwrap_or("?"),
            a["pod"].as_str().unwrap_or("?")
        );
        name == workload || name.starts_with(&format!("{workload}-"))
    };
    record["type"] == "flow"
        && is_pod(&record["src"], from)
        && is_pod(&record["dst"], to)
        && record["dst"]["port"].as_u64() == port.parse().ok()
        && record["direction"] == direction
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
