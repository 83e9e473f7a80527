//! The demo's "learning a real application" scene: an eleven-service shop
//! (`policies/boutique/`: a call graph of sixteen edges, kube-dns, a
//! frontend behind a LoadBalancer, an idle `reports` workload) learnt in
//! its own lab, with what a real window holds besides the app's traffic:
//! DNS through the kube-dns ClusterIP, an internet client, a stray
//! connection seen once and a port scan. `propose` with default
//! thresholds leaves the scan out, flags the stray RARE, names `reports`
//! (no proposal: nothing seen) and what its peers would deny it, gives
//! the DNS server ingress from every pod, and opens the frontend to every
//! external address. Applied in enforce, checked on real packets: the call
//! graph connects, `reports` resolves names, a new internet client reaches
//! the frontend, the scanner no longer reaches the port its scan found.
//!
//! Every verdict told is checked (probes, the proof's JSON); the lab is
//! taken down whatever happens.

use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, Result, ensure};
use serde_json::Value;

use super::checks::{self, BOTH, Logged, check, check_on, expect_all, probes};
use super::{Demo, WorkDir, scene};

/// The shop's call graph and the rest of its learning window, as the
/// acceptance lab test has them.
#[path = "../../../netns-tests/tests/lab_support/boutique.rs"]
mod app;
use app::*;

/// The lab's name.
const LAB: &str = "btq";
/// The shop's manifests.
const MANIFESTS: &str = "policies/boutique";

/// Runs the scene, then `lab down`.
pub fn run(demo: &Demo<'_>) -> Result<()> {
    demo.quiet(&["lab", "down", "--name", LAB])?;
    let work = WorkDir::new(LAB)?;
    let story = story(demo, &work);
    scene("Lab down: the shop's namespaces, veths, pins and processes go");
    let down = demo.bulkhead(&["lab", "down", "--name", LAB]);
    drop(work);
    story.and(down)
}

fn story(demo: &Demo<'_>, work: &WorkDir) -> Result<()> {
    scene(
        "Learning a real application: an eleven-service shop (policies/boutique), kube-dns, a \
         frontend behind a LoadBalancer, two internet hosts, and a `reports` workload that will \
         stay idle; in learn mode, no NetworkPolicy",
    );
    let externals = format!("{CLIENT},{NEW_CLIENT}");
    demo.lab_up_learning(LAB, MANIFESTS, "1", &["--external", &externals])?;
    learn(demo)?;
    let proposed = work.join("proposed");
    propose(demo, &proposed)?;
    scene("Apply the proposals in enforce: copy them into the watched directory, then lab sync");
    let watched = super::watched_dir_of(LAB);
    for entry in std::fs::read_dir(&proposed).context("the proposals")? {
        let path = entry?.path();
        let name = path.file_name().context("a proposal file")?;
        std::fs::copy(&path, watched.join(name))
            .with_context(|| format!("copying {}", path.display()))?;
    }
    println!("$ cp {}/*.yaml {}/", proposed.display(), watched.display());
    demo.bulkhead(&["lab", "sync", "--name", LAB])?;
    enforced(demo)
}

/// Probes `args` quietly, insisting that every probe got through.
fn all_pass(demo: &Demo<'_>, args: &[&str]) -> Result<Vec<checks::Probe>> {
    let mut all = args.to_vec();
    all.extend_from_slice(&["--family", "4"]);
    let found = probes(demo, LAB, &all)?;
    expect_all(&found, true).context("learn mode drops nothing")?;
    Ok(found)
}

/// One TCP connection `(from, to, port)` in learn mode (it connects).
fn connect(demo: &Demo<'_>, (from, to, port): (&str, &str, u16)) -> Result<()> {
    let port = port.to_string();
    let args = [
        "--from",
        from,
        "--to",
        to,
        "--ports",
        &port,
        "--protocols",
        "TCP",
    ];
    all_pass(demo, &args).map(drop)
}

/// The app's traffic in rounds, then the stray once and the scan; waits
/// until the flow logs hold all of it.
fn learn(demo: &Demo<'_>) -> Result<()> {
    scene(&format!(
        "The shop's traffic on real packets, {ROUNDS} rounds: every call-graph edge, DNS from \
         every pod through the kube-dns ClusterIP, the internet client to the frontend"
    ));
    let dns_from = dns_clients().into_iter().collect::<Vec<_>>().join(",");
    for _ in 0..ROUNDS {
        for edge in CALL_GRAPH {
            connect(demo, edge)?;
        }
        let dns = [
            "--from",
            &dns_from,
            "--to",
            DNS_SERVER,
            "--ports",
            "53",
            "--protocols",
            "UDP",
            "--via",
            "service",
        ];
        all_pass(demo, &dns)?;
        connect(demo, (CLIENT, FRONTEND, FRONTEND_PORT))?;
    }
    for (from, to, port) in CALL_GRAPH {
        println!("  {from} → {to} TCP/{port}: ✓ ×{ROUNDS}");
    }
    println!("  every pod → kube-dns ({KUBE_DNS}) UDP/53: ✓ ×{ROUNDS}");
    println!("  {CLIENT} (internet) → {FRONTEND} TCP/{FRONTEND_PORT}: ✓ ×{ROUNDS}");

    scene(&format!(
        "What else a real window holds: a stray connection, once, and \
         {SCANNER} scanning ports {SCAN_FIRST}-{SCAN_LAST} of three pods"
    ));
    connect(demo, STRAY)?;
    let (from, to, port) = STRAY;
    println!("  {from} → {to} TCP/{port}: ✓ once");
    let ports: Vec<String> = (SCAN_FIRST..=SCAN_LAST).map(|p| p.to_string()).collect();
    let (targets, ports) = (SCANNED.join(","), ports.join(","));
    let scan = all_pass(
        demo,
        &[
            "--from",
            SCANNER,
            "--to",
            &targets,
            "--ports",
            &ports,
            "--protocols",
            "TCP",
        ],
    )?;
    let (_, listener, listener_port) = SCAN_LISTENER;
    let open: Vec<&checks::Probe> = scan.iter().filter(|p| p.outcome == "connected").collect();
    let shown: Vec<String> = open.iter().map(|p| p.describe()).collect();
    println!(
        "  {} probes, all refused but: {}",
        scan.len(),
        shown.join(", ")
    );
    let found = |p: &&checks::Probe| {
        (p.dst == listener || p.dst.starts_with(&format!("{listener}-")))
            && p.port == u64::from(listener_port)
    };
    ensure!(
        scan.len() == SCANNED.len() * usize::from(SCAN_LAST - SCAN_FIRST + 1)
            && open.len() == 1
            && open.iter().all(found),
        "the scan should probe {} ports and find only {listener}:{listener_port} open: \
         {} probes, open {shown:?}",
        SCANNED.len() * usize::from(SCAN_LAST - SCAN_FIRST + 1),
        scan.len()
    );

    checks::wait_for_logged(LAB, &window_records())
}

/// The proof's sections this scene is about (by their first words).
const SHOWN: [&str; 7] = [
    "Proposal:",
    "Coverage:",
    "Rare or recent:",
    "Scans:",
    "Workloads without a proposal:",
    "Infrastructure",
    "Internet-facing",
];

/// `propose` with default thresholds in enforce mode into `dir`, the
/// proof's relevant sections shown and its JSON checked.
fn propose(demo: &Demo<'_>, dir: &Path) -> Result<()> {
    scene(
        "Propose with default thresholds: the scan is left out, the stray is proposed but \
         flagged RARE for review, `reports` gets no proposal (never seen) and the proof says \
         what its peers' policies would deny it, the DNS server takes DNS from every pod, the \
         frontend's port is open to every internet address (it is behind a LoadBalancer)",
    );
    let d = dir.display().to_string();
    let proposing = [
        "propose",
        "--lab",
        LAB,
        "--manifests",
        MANIFESTS,
        "--mode",
        "enforce",
    ];
    let args = [&proposing[..], &["--output-dir", &d]].concat();
    println!(
        "$ bulkhead {}   # the proof (stderr), its sections of interest",
        args.join(" ")
    );
    let out = Command::new(demo.bin)
        .args(&args)
        .current_dir(crate::cmd::repo_root())
        .output()
        .context("running bulkhead propose")?;
    let proof = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.success(), "`bulkhead propose` failed: {proof}");
    let mut shown = false;
    for line in proof.lines() {
        if !line.starts_with(' ') {
            shown = SHOWN.iter().any(|s| line.starts_with(s));
        }
        if shown {
            println!("{line}");
        }
    }
    let json = demo.output(&[&proposing[..], &["--output", "json"]].concat())?;
    let out: Value = serde_json::from_str(&json).context("propose JSON")?;
    check_proof(&out["proof"])
}

/// The proof's list `field`.
fn list<'a>(proof: &'a Value, field: &str) -> &'a [Value] {
    proof[field].as_array().map_or(&[], Vec::as_slice)
}

/// What the scene says of the proof, checked on its JSON.
fn check_proof(proof: &Value) -> Result<()> {
    ensure!(
        proof["coverage_percent"] == 100.0,
        "coverage is {}",
        proof["coverage_percent"]
    );
    let scan = list(proof, "scans").iter().any(|s| {
        s["source"] == workload(SCANNER).as_str()
            && s["ports"] == format!("{SCAN_FIRST}-{SCAN_LAST}")
            && s["peers"].as_array().map(Vec::len) == Some(SCANNED.len())
    });
    ensure!(scan, "the scan is not left out: {:?}", list(proof, "scans"));
    let stray = [workload(STRAY.0), workload(STRAY.1)];
    let rare = list(proof, "flagged").iter().any(|f| {
        let ends = [&f["subject"], &f["peer"]].map(|e| e.as_str().unwrap_or("").to_owned());
        (ends == stray || ends == [stray[1].clone(), stray[0].clone()])
            && f["port"] == STRAY.2
            && f["rare"] == true
    });
    ensure!(
        rare,
        "the stray is not flagged rare: {:?}",
        list(proof, "flagged")
    );
    let idle = list(proof, "unproposed_workloads").iter().any(|w| {
        w["workload"] == workload(IDLE).as_str()
            && w["reason"] == "not_seen"
            && w["denied_by"].as_array().is_some_and(|d| !d.is_empty())
    });
    ensure!(
        idle,
        "reports is not named without a proposal, with what denies it: {:?}",
        list(proof, "unproposed_workloads")
    );
    let dns = list(proof, "infrastructure")
        .iter()
        .any(|i| i["workload"] == workload(DNS_SERVER).as_str() && i["role"] == "dns_server");
    ensure!(dns, "no DNS server: {:?}", list(proof, "infrastructure"));
    let facing = list(proof, "internet_facing").iter().any(|i| {
        i["workload"] == workload(FRONTEND).as_str()
            && i["open_to_all"] == true
            && i["services"]
                .as_array()
                .is_some_and(|s| s.iter().any(|s| s == FRONTEND_LB))
            && i["ports"]
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p == &format!("TCP/{FRONTEND_PORT}")))
    });
    ensure!(
        facing,
        "the frontend is not open to all: {:?}",
        list(proof, "internet_facing")
    );
    Ok(())
}

/// The proposals enforced, on real packets.
fn enforced(demo: &Demo<'_>) -> Result<()> {
    scene("Enforced: the call graph still connects; a connection the shop never makes is dropped");
    for (from, to, port) in CALL_GRAPH {
        check(demo, LAB, from, to, &port.to_string(), true)?;
    }
    let (from, to, port) = UNLEARNED;
    check(demo, LAB, from, to, &port.to_string(), false)?;
    scene(
        "What learning alone would have got wrong: `reports` (never seen) still resolves names \
         through kube-dns, an internet client never seen reaches the frontend, and the scanner \
         no longer reaches the port its scan found open",
    );
    check_on(
        demo,
        LAB,
        (IDLE, DNS_SERVER, "UDP", "53"),
        &["--via", "service"],
        true,
    )?;
    let port = FRONTEND_PORT.to_string();
    check_on(demo, LAB, (NEW_CLIENT, FRONTEND, "TCP", &port), &[], true)?;
    let (scanner, listener, port) = SCAN_LISTENER;
    check(demo, LAB, scanner, listener, &port.to_string(), false)?;
    scene("The stray was proposed (flagged RARE, for a person to keep or drop): it connects");
    let (from, to, port) = STRAY;
    check(demo, LAB, from, to, &port.to_string(), STRAY_PROPOSED)
}
