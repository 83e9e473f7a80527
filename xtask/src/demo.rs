//! `cargo xtask demo`: sets up, builds, then tells the story on real
//! packets: the demo shop as a lab (pods as network namespaces, the agent
//! enforcing in the node namespace), open; least privilege applied; the
//! denied connections; why; a guardrail; Services; a compromised pod
//! quarantined and restored; what the dataplane counts; verify; down. Then
//! three nodes ([`nodes`]): learnt on every node, proposed from the merged
//! history, enforced at both ends of cross-node connections. Then cluster
//! mode ([`cluster`]): a lab whose agent reads the Kubernetes API, changed
//! with kubectl.
//!
//! Needs root (namespaces, veths, bpffs, eBPF). The lab is always taken
//! down at the end, also when a scene fails, and a lab left by an
//! interrupted run is taken down first; all traffic stays inside the lab's
//! own namespaces.

//! `cargo xtask demo`: sets up, builds, then tells the story on real
//! packets, each step a scene ([`shop`]): the demo shop as a lab (pods as
//! network namespaces, the agent in the node namespace) in learn mode,
//! the app's own traffic recorded; `propose` writes least-privilege
//! policies from it, with their proof; staged in audit, where the stray
//! pod's attempts are what `audit report` says enforcement would deny;
//! promoted to enforce: the app's paths connect, the rest is dropped, and
//! flows and explain say why; the same on the network map in headless
//! Chromium ([`map`]); a guardrail, Services, the node. Then
//! detection and response ([`incident`]): the shop's baseline activated,
//! a real Alertmanager in the node namespace, a compromised pod that
//! reaches for a new peer and scans, its alerts (JSON Lines and
//! Alertmanager), the agent quarantining it by itself, the drops after,
//! its timeline, and the quarantine lifted. Then status, fail-static,
//! verify, down. Then learning a real application ([`boutique`]): an
//! eleven-service shop learnt with a stray connection and a scan in its
//! window, proposed (the scan left out, the stray flagged, the idle
//! workload, the DNS server and the internet-facing frontend in the proof)
//! and enforced. Then three nodes ([`nodes`]): learnt on every node,
//! proposed from the merged history, enforced at both ends of cross-node
//! connections. Then cluster mode ([`cluster`]): a lab whose agent reads
//! the Kubernetes API, changed with kubectl.
//!
//! The verdicts the stories tell are checked, not only shown ([`checks`]):
//! a scene fails when a probe, a report, an alert or a quarantine is not
//! what it says. Waits are on real conditions (records in the flow log,
//! an alert in Alertmanager), bounded, never fixed sleeps.
//!
//! Needs root (namespaces, veths, bpffs, eBPF). Each lab is always taken
//! down at the end, also when a scene fails, and a lab left by an
//! interrupted run is taken down first; the processes the demo starts
//! (Alertmanager, the API server) are stopped and their files removed
//! whatever happens; all traffic stays inside the labs' own namespaces.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};

use crate::{cmd, cmd::step, ebpf, setup, test::EBPF_ELF};

mod alertmanager;
mod boutique;
mod checks;
mod cluster;
mod incident;
mod map;
mod nodes;
mod shop;

/// The demo manifests, relative to the repository root.
const WORKLOADS: &str = "policies/demo/workloads.yaml";

/// The demo lab's name.
const LAB: &str = "demo";

/// Checks for root, runs setup, builds, then the demo.
pub fn run() -> Result<()> {
    if !cmd::is_root() {
        bail!(
            "the demo needs root: it creates network namespaces and veth pairs and loads eBPF \
             programs (everything stays inside its own namespaces). Run it as root, e.g. \
             `sudo -E cargo xtask demo`"
        );
    }
    step("setup", setup::run)?;
    // Before the controller is built: bulkhead-dataplane embeds the ELF (dataplane/build.rs).
    let elf = step("build-ebpf", ebpf::build)?;
    // And the web UI's bundle, which the agent embeds (agent/build.rs).
    step("build-ui", crate::ui::build)?;
    let bin = step("build", || build(&elf))?;
    let fake_apiserver = step("build-fake-apiserver", || {
        cluster::build_fake_apiserver(&elf)
    })?;
    step("demo", || run_demo(&bin, &fake_apiserver))
}

/// Cargo's target directory.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| cmd::repo_root().join("target"))
}

/// Builds the release `bulkhead` and `bulkhead-cni` binaries; returns the
/// path of `bulkhead`.
fn build(elf: &Path) -> Result<PathBuf> {
    cmd::run(
        cmd::clean("cargo")
            .current_dir(cmd::repo_root())
            .env(EBPF_ELF, elf)
            // The lab registers its pods through the chained CNI plugin,
            // found beside `bulkhead`.
            .args(["build", "--quiet", "--release", "-p", "bulkhead"])
            .args(["-p", "bulkhead-cni"]),
    )?;
    let bin = target_dir().join("release").join("bulkhead");
    if !bin.is_file() {
        bail!("built, but {} is missing", bin.display());
    }
    Ok(bin)
}

/// The directory the lab's agent watches: `lab up` copies the manifests
/// there (`$BULKHEAD_LAB_DIR/<lab>/manifests`, default under /run/bulkhead/lab).
fn watched_dir() -> PathBuf {
    watched_dir_of(LAB)
}

/// The directory the agents of lab `lab` watch.
fn watched_dir_of(lab: &str) -> PathBuf {
    std::env::var_os("BULKHEAD_LAB_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/bulkhead/lab"))
        .join(lab)
        .join("manifests")
}

/// The shop's story, then `lab down` whatever happened; then learning a
/// real application, three nodes and cluster mode (each its own lab, taken down the same way).
pub fn run_demo(bin: &Path, fake_apiserver: &Path) -> Result<()> {
    let demo = Demo { bin };
    // A lab left by an interrupted run would make `lab up` refuse (and
    // `lab down` stops what ran in its namespaces, an Alertmanager too).
    demo.quiet(&["lab", "down", "--name", LAB])?;
    let work = WorkDir::new(LAB)?;
    let story = shop::run(&demo, &work);
    scene("Lab down: every namespace, veth, pin, mount and process goes");
    let down = demo.bulkhead(&["lab", "down", "--name", LAB]);
    drop(work);
    story.and(down)?;
    boutique::run(&demo)?;
    nodes::run(&demo)?;
    cluster::run(&demo, fake_apiserver)
}

/// A story's own temporary directory (proposals, baseline, alerts,
/// Alertmanager's data), removed when dropped, whatever happened.
struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    /// A fresh `$TMPDIR/bulkhead-demo-NAME-PID`.
    fn new(name: &str) -> Result<WorkDir> {
        let path =
            std::env::temp_dir().join(format!("bulkhead-demo-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(WorkDir { path })
    }

    /// `NAME` inside it.
    fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

struct Demo<'a> {
    bin: &'a Path,
}

impl Demo<'_> {
    /// Runs `bulkhead lab up --name LAB --manifests MANIFESTS --mode learn
    /// --flow-idle-timeout SECS ARGS...`, showing the command: a lab that
    /// records everything and drops nothing.
    fn lab_up_learning(&self, lab: &str, manifests: &str, secs: &str, args: &[&str]) -> Result<()> {
        let mut all = vec![
            "lab",
            "up",
            "--name",
            lab,
            "--manifests",
            manifests,
            "--mode",
            "learn",
            "--flow-idle-timeout",
            secs,
        ];
        all.extend_from_slice(args);
        self.bulkhead(&all)
    }

    /// Runs `bulkhead ARGS...`, showing the command.
    fn bulkhead(&self, args: &[&str]) -> Result<()> {
        println!("$ bulkhead {}", args.join(" "));
        self.status(Command::new(self.bin).args(args), args)
    }

    /// Runs `bulkhead lab probe --name LAB ARGS... --output json`, showing
    /// the command and each probe's verdict (✓ got through, ✗ dropped).
    fn probe(&self, lab: &str, args: &[&str]) -> Result<Vec<checks::Probe>> {
        println!(
            "$ bulkhead lab probe --name {lab} {} --output json",
            args.join(" ")
        );
        let probes = checks::probes(self, lab, args)?;
        for p in &probes {
            let mark = if p.allowed { "✓" } else { "✗" };
            println!("  {mark} {}", p.describe());
        }
        Ok(probes)
    }

    /// Runs `bulkhead ARGS...` quietly; its stdout (stderr shown on failure).
    fn output(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(self.bin)
            .args(args)
            .current_dir(cmd::repo_root())
            .output()
            .with_context(|| format!("cannot start {}", self.bin.display()))?;
        if !out.status.success() {
            bail!(
                "`bulkhead {}` failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim_end()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs `bulkhead ARGS...` with its output hidden.
    fn quiet(&self, args: &[&str]) -> Result<()> {
        let mut c = Command::new(self.bin);
        c.args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        self.status(&mut c, args)
    }

    fn status(&self, c: &mut Command, args: &[&str]) -> Result<()> {
        let status = c
            .current_dir(cmd::repo_root())
            .status()
            .with_context(|| format!("cannot start {:?}", c.get_program()))?;
        if !status.success() {
            bail!("`bulkhead {}` failed ({status})", args.join(" "));
        }
        Ok(())
    }
}

/// The demo lab's state file, parsed.
fn lab_state() -> Result<serde_json::Value> {
    lab_state_of(LAB)
}

/// Lab `lab`'s state file, parsed.
fn lab_state_of(lab: &str) -> Result<serde_json::Value> {
    let path = watched_dir_of(lab).with_file_name("state.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).context("lab state")
}

/// Prints a scene header.
fn scene(title: &str) {
    println!("\n━━ {title}\n");
}

/// Copies `from` to `to`, showing it as `cp`.
fn copy_shown(from: &Path, to: &Path) -> Result<()> {
    println!("$ cp {} {}", from.display(), to.display());
    std::fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    Ok(())
}
