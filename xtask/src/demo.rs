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

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context as _, Result, bail};

use crate::{cmd, cmd::step, ebpf, setup, test::EBPF_ELF};

mod cluster;
mod nodes;

/// The demo manifests, relative to the repository root.
const WORKLOADS: &str = "policies/demo/workloads.yaml";
const NETPOL: &str = "policies/demo/netpol.yaml";
/// A permissive NetworkPolicy a namespace owner might write.
const OOPS: &str = "policies/guardrail/oops-allow-all.yaml";
/// The cluster-admin guardrail no NetworkPolicy overrides.
const GUARDRAIL: &str = "policies/guardrail/db-guardrail.yaml";

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
fn build(elf: &std::path::Path) -> Result<PathBuf> {
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

/// The scenes, then `lab down` whatever happened; then three nodes and
/// cluster mode (each its own lab, taken down the same way).
pub fn run_demo(bin: &std::path::Path, fake_apiserver: &std::path::Path) -> Result<()> {
    let demo = Demo { bin };
    // A lab left by an interrupted run would make `lab up` refuse.
    demo.quiet(&["lab", "down", "--name", LAB])?;
    let scenes = demo.scenes();
    scene("Lab down: every namespace, veth, pin, mount and process goes");
    let down = demo.bulkhead(&["lab", "down", "--name", LAB]);
    scenes.and(down)?;
    nodes::run(&demo)?;
    cluster::run(&demo, fake_apiserver)
}

struct Demo<'a> {
    bin: &'a std::path::Path,
}

impl Demo<'_> {
    fn scenes(&self) -> Result<()> {
        let watched = watched_dir();
        let w = watched.display().to_string();
        scene(
            "Lab up: the shop (frontend → api → db, DNS, a stray debug pod) as network namespaces, \
             with no NetworkPolicy; the agent enforces in the node namespace",
        );
        self.bulkhead(&[
            "lab",
            "up",
            "--name",
            LAB,
            "--manifests",
            WORKLOADS,
            "--flow-idle-timeout",
            "2",
        ])?;
        scene("Real packets between every pod pair: everything is open");
        self.bulkhead(&["lab", "probe", "--name", LAB])?;
        scene(&format!(
            "Apply least privilege: copy {NETPOL} into the watched directory, then lab sync"
        ));
        println!("$ cp {NETPOL} {w}/");
        std::fs::copy(cmd::repo_root().join(NETPOL), watched.join("netpol.yaml"))
            .with_context(|| format!("copying {NETPOL} into {w}"))?;
        self.bulkhead(&["lab", "sync", "--name", LAB])?;
        scene("Real packets again: only the app's own paths connect; the rest is dropped (✗)");
        self.bulkhead(&["lab", "probe", "--name", LAB])?;
        scene("Flows: what the probes did, each with its verdict and the deciding policy");
        // Probes' UDP flows end by idle timeout (2 s in this lab).
        std::thread::sleep(std::time::Duration::from_secs(3));
        self.bulkhead(&["flows", "--lab", LAB, "--pod", "shop/db", "--last", "12"])?;
        scene("Only the drops, from the stray pod");
        self.bulkhead(&[
            "flows",
            "--lab",
            LAB,
            "--pod",
            "sandbox/stray",
            "--verdict",
            "denied",
            "--last",
            "8",
        ])?;
        scene("Why can the stray pod not reach the database?");
        self.bulkhead(&[
            "explain",
            "--manifests",
            &w,
            "--from",
            "sandbox/stray",
            "--to",
            "shop/db",
            "--port",
            "5432",
        ])?;
        scene("And why can the api?");
        self.bulkhead(&[
            "explain",
            "--manifests",
            &w,
            "--from",
            "shop/api",
            "--to",
            "shop/db",
            "--port",
            "5432",
        ])?;
        self.guardrail_scene(&watched)?;
        self.service_scene(&w)?;
        self.node_scene(&w)?;
        self.quarantine_scene(&w)?;
        scene("What the dataplane enforces: revision, endpoints, map fill, drop counters");
        self.bulkhead(&["status", "--lab", LAB])?;
        self.agent_death_scene()?;
        scene("Verify: live probes (TCP, UDP, SCTP; IPv4 and IPv6) against the policy");
        self.bulkhead(&["lab", "verify", "--name", LAB])
    }

    /// A cluster-admin guardrail (ClusterNetworkPolicy, Admin tier) holds
    /// against a namespace owner's allow-all NetworkPolicy: staged in audit
    /// and reported on first, then promoted to enforce; real packets,
    /// explain naming the tier and rule, the drop's flow record naming
    /// the rule; then the allow-all goes (the guardrail stays).
    fn guardrail_scene(&self, watched: &std::path::Path) -> Result<()> {
        let w = watched.display().to_string();
        let copy = |from: &str, to: &std::path::Path| -> Result<()> {
            println!("$ cp {from} {}", to.display());
            std::fs::copy(cmd::repo_root().join(from), to)
                .with_context(|| format!("copying {from} to {}", to.display()))?;
            Ok(())
        };
        scene(&format!(
            "A namespace owner's mistake: {OOPS} allows everything in shop; now every pod reaches the db"
        ));
        copy(OOPS, &watched.join("oops-allow-all.yaml"))?;
        self.bulkhead(&["lab", "sync", "--name", LAB])?;
        self.bulkhead(&["lab", "probe", "--name", LAB, "--to", "shop/db"])?;
        scene(&format!(
            "The security team's guardrail: {GUARDRAIL} (ClusterNetworkPolicy, Admin tier) lets only the api reach the db; no NetworkPolicy can override it"
        ));
        let guardrail = "ClusterNetworkPolicy/db-guardrail";
        scene(
            "Staged first: promote sets the copy to audit before it goes live; the kernel marks what it would deny, drops nothing",
        );
        // Staged beside the watched directory, so the agent never sees it enforced.
        let staged = watched.with_file_name("db-guardrail.yaml");
        let s = staged.display().to_string();
        copy(GUARDRAIL, &staged)?;
        self.bulkhead(&["promote", "--manifests", &s, guardrail, "--to", "audit"])?;
        println!("$ mv {s} {w}/");
        std::fs::rename(&staged, watched.join("db-guardrail.yaml"))
            .with_context(|| format!("moving {s} into {w}"))?;
        self.bulkhead(&["lab", "sync", "--name", LAB])?;
        self.bulkhead(&["lab", "probe", "--name", LAB, "--to", "shop/db"])?;
        // The flow log is written once a second; give it time to hold the probes.
        std::thread::sleep(std::time::Duration::from_secs(3));
        self.bulkhead(&["audit", "report", "--lab", LAB, "--policy", guardrail])?;
        scene("The report is what the security team expected: promote it to enforce");
        self.bulkhead(&["promote", "--manifests", &w, guardrail])?;
        self.bulkhead(&["lab", "sync", "--name", LAB])?;
        self.bulkhead(&["lab", "probe", "--name", LAB, "--to", "shop/db"])?;
        scene(
            "Why is the frontend denied, although shop's NetworkPolicy allows it? explain names the tier and rule",
        );
        self.bulkhead(&[
            "explain",
            "--manifests",
            &w,
            "--from",
            "shop/frontend",
            "--to",
            "shop/db",
            "--port",
            "5432",
        ])?;
        scene("The drop's flow record names the guardrail's rule");
        std::thread::sleep(std::time::Duration::from_secs(3));
        self.bulkhead(&[
            "flows",
            "--lab",
            LAB,
            "--pod",
            "shop/db",
            "--verdict",
            "denied",
            "--last",
            "3",
        ])?;
        scene("The allow-all goes; the shop's least privilege is back, under the guardrail");
        println!("$ rm {w}/oops-allow-all.yaml");
        std::fs::remove_file(watched.join("oops-allow-all.yaml"))
            .with_context(|| format!("removing oops-allow-all.yaml from {w}"))?;
        self.bulkhead(&["lab", "sync", "--name", LAB])
    }

    /// A compromised pod cut off in one command: above every tier and
    /// mode, established connections stopped, flow records and explain
    /// naming the quarantine, then lifted: the verdicts of before.
    fn quarantine_scene(&self, watched: &str) -> Result<()> {
        scene(
            "The api pod is compromised: one command quarantines it in the kernel, above every \
             policy and tier (DNS still allowed, to watch what it resolves)",
        );
        self.bulkhead(&[
            "quarantine",
            "shop/api",
            "--reason",
            "beaconing to an unknown address",
            "--allow-dns",
            "--lab",
            LAB,
        ])?;
        scene("Real packets: nothing reaches the api, and the api reaches only the cluster's DNS");
        self.bulkhead(&["lab", "probe", "--name", LAB, "--to", "shop/api"])?;
        self.bulkhead(&["lab", "probe", "--name", LAB, "--from", "shop/api"])?;
        scene("Its flow records say quarantined, and why");
        // The probes' connections end by idle timeout (2 s in this lab).
        std::thread::sleep(std::time::Duration::from_secs(3));
        self.bulkhead(&[
            "flows",
            "--lab",
            LAB,
            "--pod",
            "shop/api",
            "--verdict",
            "quarantined",
            "--last",
            "4",
        ])?;
        scene("Why can the frontend no longer reach the api? explain names the quarantine");
        self.bulkhead(&[
            "explain",
            "--manifests",
            watched,
            "--quarantined",
            "shop/api",
            "--from",
            "shop/frontend",
            "--to",
            "shop/api",
            "--port",
            "8080",
        ])?;
        scene("Lifted: the api's connections are judged by the policies again, exactly as before");
        self.bulkhead(&["unquarantine", "shop/api", "--lab", LAB])?;
        self.bulkhead(&["lab", "probe", "--name", LAB, "--to", "shop/api"])
    }

    /// Through Services: the same verdicts when clients connect to
    /// ClusterIPs (the lab's node runs kube-proxy's rules), `explain` per
    /// backend, and the flow record naming the Service and the backend.
    fn service_scene(&self, watched: &str) -> Result<()> {
        scene(
            "Through Services: every pod connects to the db's ClusterIP (kube-proxy's rules on the node \
             translate it); the verdict is the one for the pod it lands on",
        );
        self.bulkhead(&[
            "lab", "probe", "--name", LAB, "--via", "service", "--to", "shop/db",
        ])?;
        scene("Why not the stray pod, through the db Service? explain answers per backend");
        self.bulkhead(&[
            "explain",
            "--manifests",
            watched,
            "--from",
            "sandbox/stray",
            "--to",
            "svc/shop/db",
            "--port",
            "5432",
        ])?;
        scene("The api's flow record names the Service and the backend its connection reached");
        // The probes' connections end by idle timeout (2 s in this lab).
        std::thread::sleep(std::time::Duration::from_secs(3));
        self.bulkhead(&["flows", "--lab", LAB, "--pod", "shop/api", "--last", "4"])
    }

    /// The node (where kubelet's probes come from) reaches the isolated
    /// database on real packets, and `explain` says why.
    fn node_scene(&self, watched: &str) -> Result<()> {
        scene(
            "The node always reaches its pods (kubelet's probes come from there): a TCP probe \
             from the node namespace into the isolated shop/db, then explain",
        );
        let state = lab_state()?;
        let db = state["hosts"]
            .as_array()
            .and_then(|h| h.iter().find(|h| h["name"] == "shop/db"))
            .and_then(|h| h["ips"][0].as_str())
            .context("shop/db's address in the lab state")?;
        let node = state["node"].as_str().context("the node namespace")?;
        let gateways: Vec<&str> = state["gateways"]
            .as_array()
            .context("the node's addresses")?
            .iter()
            .filter_map(|g| g.as_str())
            .collect();
        let probe = format!("exec 3<>/dev/tcp/{db}/5432 && echo connected from the node");
        println!("$ ip netns exec {node} timeout 3 bash -c '{probe}'");
        self.status(
            Command::new("ip").args(["netns", "exec", node, "timeout", "3", "bash", "-c", &probe]),
            &["(probe from the node)"],
        )?;
        self.bulkhead(&[
            "explain",
            "--manifests",
            watched,
            "--node-ip",
            &gateways.join(","),
            "--from",
            "node",
            "--to",
            "shop/db",
            "--port",
            "5432",
        ])
    }

    /// The agent is killed: enforcement stays pinned, `status` says it is
    /// not running, `lab restart-agent` brings it back (verify follows).
    fn agent_death_scene(&self) -> Result<()> {
        scene(
            "Fail-static: the agent is killed, enforcement stays as pinned; \
             lab restart-agent adopts it again",
        );
        let state = lab_state()?;
        let pid = state["agent"]["pid"]
            .as_u64()
            .context("the agent's PID in the lab state")?
            .to_string();
        println!("$ kill -KILL {pid}");
        self.status(
            Command::new("kill").args(["-KILL", &pid]),
            &["(kill the agent)"],
        )?;
        self.bulkhead(&["status", "--lab", LAB])?;
        self.bulkhead(&["lab", "restart-agent", "--name", LAB])
    }

    /// Runs `bulkhead ARGS...`, showing the command.
    fn bulkhead(&self, args: &[&str]) -> Result<()> {
        println!("$ bulkhead {}", args.join(" "));
        self.status(Command::new(self.bin).args(args), args)
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
    let path = watched_dir().with_file_name("state.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).context("lab state")
}

/// Prints a scene header.
fn scene(title: &str) {
    println!("\n━━ {title}\n");
}
