//! The map scene: the lab's network map (the agent's web UI, on the host's
//! loopback) opened in headless Chromium, what it draws counted and
//! checked (the shop's workloads, the stray pod's connection to the
//! database red and naming the policy that denied it, its details listing
//! the denied flows), a screenshot saved, and the URL shown for the user to
//! open.
//!
//! The browser is Debian's chromium driven by `ui/tests/driver.mjs`
//! (playwright-core, installed by `cargo xtask build-ui`); this module
//! speaks the driver's JSON lines itself ([`Driver`]), as the test kit's
//! `Browser` does, so that xtask does not link the test kit.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use anyhow::{Context as _, Result, bail, ensure};
use serde_json::{Value, json};

use super::{Demo, LAB, scene, target_dir};
use crate::cmd;

/// The connection the enforced proposals deny, as the map names it.
const STRAY: &str = "sandbox/Pod/stray";
const DB: &str = "shop/StatefulSet/db";
/// The shop's workloads, as the map names them.
const WORKLOADS: [&str; 5] = [
    "kube-system/Deployment/coredns",
    "sandbox/Pod/stray",
    "shop/Deployment/api",
    "shop/Deployment/frontend",
    "shop/StatefulSet/db",
];
/// The colour of a denied edge.
const RED: &str = "#c62828";
/// Longest a driver command may take (the driver's own timeout; it answers
/// with an error then).
const TIMEOUT_MS: u64 = 30_000;

/// The scene (the lab is up, the proposals enforced, the stray's
/// connections dropped).
pub fn run(demo: &Demo<'_>) -> Result<()> {
    scene(
        "The map: the same story in a browser. The agent serves a web UI on the host's \
         loopback; headless Chromium opens it and we read what it draws",
    );
    demo.bulkhead(&["lab", "ui", "--name", LAB])?;
    let out = demo.output(&["lab", "ui", "--name", LAB, "--output", "json"])?;
    let url = first_url(&serde_json::from_str(out.trim()).context("lab ui --output json")?)
        .context("lab ui gave no URL")?;
    let mut browser = Driver::launch()?;
    let status = browser.command(json!({"cmd": "goto", "url": url}))?;
    ensure!(status == json!(200), "GET {url}: {status}");
    let view = browser.eval(
        "window.bulkhead.whenReady().then(() => {
           const v = window.bulkhead.view();
           return {
             ready_ms: window.bulkhead.readyAt,
             workloads: v.nodes.filter((n) => n.kind === 'workload').map((n) => n.id).sort(),
             namespaces: v.nodes.filter((n) => n.kind === 'namespace').length,
             edges: v.edges.map((e) => ({ id: e.id, source: e.source, target: e.target,
                                          verdict: e.verdict, color: e.color, policies: e.policies })),
           };
         })",
    )?;
    let edges = view["edges"].as_array().context("edges")?;
    let count = |verdict: &str| edges.iter().filter(|e| e["verdict"] == verdict).count();
    println!(
        "  ready in {:.0} ms: {} workloads in {} namespaces, {} edges: {} allowed (green), {} \
         would-deny in audit (orange), {} denied (red)",
        view["ready_ms"].as_f64().unwrap_or(f64::NAN),
        view["workloads"].as_array().map_or(0, Vec::len),
        view["namespaces"],
        edges.len(),
        count("allowed"),
        count("would_deny"),
        count("denied")
    );
    ensure!(
        view["workloads"] == json!(WORKLOADS),
        "the map draws the shop's five workloads, not {}",
        view["workloads"]
    );
    let denied = edges
        .iter()
        .find(|e| e["source"] == STRAY && e["target"] == DB)
        .with_context(|| format!("no edge {STRAY} → {DB} on the map"))?;
    ensure!(
        denied["verdict"] == "denied" && denied["color"] == RED,
        "{STRAY} → {DB} is drawn denied in red: {denied}"
    );
    let policies = denied["policies"].as_array().cloned().unwrap_or_default();
    ensure!(!policies.is_empty(), "the denied edge names its policy");
    println!(
        "  ✗ {STRAY} → {DB}: denied, red ({RED}), by {}",
        policies
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let js = format!(
        "window.bulkhead.select({}).then(() => [...document.querySelectorAll(
           '#details [data-testid=flows] tr[data-verdict=denied]')].length)",
        denied["id"]
    );
    let rows = browser.eval(&js)?;
    ensure!(
        rows.as_u64().is_some_and(|n| n > 0),
        "the edge's details list its denied flows: {rows}"
    );
    println!("  its details (a click on the edge): {rows} denied flows, explain for each side");
    let shot = target_dir().join("artifacts").join("demo-map.png");
    std::fs::create_dir_all(shot.parent().unwrap_or(Path::new(".")))?;
    browser.command(json!({"cmd": "screenshot", "path": shot}))?;
    let errors = browser.command(json!({"cmd": "console"}))?;
    ensure!(
        errors.as_array().is_some_and(Vec::is_empty),
        "the page logged errors: {errors}"
    );
    browser.close();
    println!("  screenshot: {}", shot.display());
    println!(
        "  open it yourself while the demo runs (the lab goes down at its end): {url}\n  \
         (from another machine: ssh -L PORT:127.0.0.1:PORT to this one)"
    );
    Ok(())
}

/// The first `http://` URL in `lab ui --output json`'s answer.
fn first_url(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if s.starts_with("http://") => Some(s.clone()),
        Value::Array(a) => a.iter().find_map(first_url),
        Value::Object(o) => o.values().find_map(first_url),
        _ => None,
    }
}

/// `node ui/tests/driver.mjs`: one command per line, one answer per line.
struct Driver {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Driver {
    /// Starts the driver (a fresh temporary profile, removed at its exit)
    /// and waits for its browser.
    fn launch() -> Result<Driver> {
        let driver = cmd::repo_root().join("ui/tests/driver.mjs");
        let mut child = Command::new("node")
            .arg(&driver)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("node {}", driver.display()))?;
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().context("driver stdout")?);
        let mut d = Driver {
            child,
            stdin,
            stdout,
        };
        d.answer("launch")
            .context("headless Chromium (`cargo xtask setup` installs it)")?;
        Ok(d)
    }

    /// Sends `c` (with the driver's timeout) and returns its answer's value.
    fn command(&mut self, mut c: Value) -> Result<Value> {
        c["timeout_ms"] = json!(TIMEOUT_MS);
        let stdin = self.stdin.as_mut().context("the driver is closed")?;
        writeln!(stdin, "{c}")?;
        stdin.flush()?;
        self.answer(c["cmd"].as_str().unwrap_or("?"))
    }

    /// The value of JavaScript `js` in the page (promises awaited).
    fn eval(&mut self, js: &str) -> Result<Value> {
        self.command(json!({"cmd": "eval", "js": js}))
    }

    fn answer(&mut self, cmd: &str) -> Result<Value> {
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            bail!("the browser driver exited during {cmd}");
        }
        let mut v: Value = serde_json::from_str(&line)
            .with_context(|| format!("the driver's answer to {cmd}: {line}"))?;
        if v["ok"] != true {
            bail!("{cmd}: {}", v["error"]);
        }
        Ok(v["value"].take())
    }

    /// Closes the browser and waits for the driver.
    fn close(mut self) {
        let _ = self.command(json!({"cmd": "close"}));
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // End of stdin: the driver closes its browser and exits.
        self.stdin = None;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
