//! The demo's cluster-mode scene: the lab's agent reads the Kubernetes API
//! instead of a manifest directory. The API server is the test kit's
//! stand-in for kube-apiserver (`fake-apiserver`, from netns-tests: no
//! real one can be had on a demo machine), started inside the lab's node
//! namespace where the agent runs, loaded with `policies/cluster/`, whose
//! pods carry the lab's addresses in `status.podIP`. Real `kubectl` (run
//! in the node namespace, where the server listens) applies a policy and
//! relabels a pod; `lab sync` waits until the agent enforces what the API
//! had; probes show each change. Then the server is stopped: the agent
//! says the API is unreachable and how old its view is, and enforcement
//! stays as it was (fail-static).
//!
//! The verdicts the story tells are checked, not only shown: the scene
//! fails when a probe disagrees. The server process is stopped and the
//! lab taken down whatever happens.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};

use super::{Demo, scene};
use crate::cmd;

/// The cluster's manifests, loaded by the lab and by the API server.
const CLUSTER: &str = "policies/cluster/";
/// The policy applied with kubectl.
const NETPOL: &str = "policies/kubectl/web-from-access-web.yaml";
/// The lab's name.
const LAB: &str = "k8s";
/// The node namespace, where the agent and the API server run.
const NODE: &str = "bh-k8s-node";
/// The API server's address in the node namespace.
const LISTEN: &str = "127.0.0.1:6443";
/// How long the API server gets to come up.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Builds the test kit's `fake-apiserver` (release); returns its path.
pub fn build_fake_apiserver(elf: &Path) -> Result<PathBuf> {
    cmd::run(
        cmd::clean("cargo")
            .current_dir(cmd::repo_root())
            .env(crate::test::EBPF_ELF, elf)
            .args([
                "build",
                "--quiet",
                "--release",
                "-p",
                "bulkhead-netns-tests",
            ])
            .args(["--bin", "fake-apiserver"]),
    )?;
    let bin = super::target_dir().join("release").join("fake-apiserver");
    if !bin.is_file() {
        bail!("built, but {} is missing", bin.display());
    }
    Ok(bin)
}

/// The API server, stopped (and waited for) when dropped.
struct ApiServer {
    child: Option<Child>,
    dir: PathBuf,
}

impl ApiServer {
    /// Starts `fake-apiserver` in the node namespace, loaded with
    /// [`CLUSTER`]; returns once its kubeconfig is written (after loading).
    fn start(bin: &Path) -> Result<ApiServer> {
        let dir = std::env::temp_dir().join(format!("bulkhead-demo-{LAB}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let kubeconfig = dir.join("kubeconfig");
        let log = std::fs::File::create(dir.join("apiserver.log")).context("the server's log")?;
        println!(
            "$ ip netns exec {NODE} fake-apiserver --listen {LISTEN} --kubeconfig {k} --load {CLUSTER} &",
            k = kubeconfig.display()
        );
        let child = Command::new("ip")
            .args(["netns", "exec", NODE])
            .arg(bin)
            .args(["--listen", LISTEN, "--kubeconfig"])
            .arg(&kubeconfig)
            .args(["--load", CLUSTER])
            .current_dir(cmd::repo_root())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting fake-apiserver")?;
        let mut server = ApiServer {
            child: Some(child),
            dir,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while !kubeconfig.is_file() {
            if let Some(status) = server
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!("fake-apiserver exited ({status}): {}", server.log());
            }
            ensure!(
                Instant::now() < deadline,
                "fake-apiserver did not come up within {START_TIMEOUT:?}: {}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("apiserver.log")).unwrap_or_default()
    }

    /// Stops the server (SIGTERM, as ^C would) and reaps it.
    fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = child.id().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status();
        if !killed.is_ok_and(|s| s.success()) {
            child.kill().context("stopping fake-apiserver")?;
        }
        child.wait().context("reaping fake-apiserver")?;
        Ok(())
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The scene, then `lab down` whatever happened (a lab left by an
/// interrupted run is taken down first).
pub fn run(demo: &Demo<'_>, fake_apiserver: &Path) -> Result<()> {
    demo.quiet(&["lab", "down", "--name", LAB])?;
    let story = story(demo, fake_apiserver);
    scene("Lab down: the cluster-mode lab goes too (its API server with it)");
    let down = demo.bulkhead(&["lab", "down", "--name", LAB]);
    story.and(down)
}

fn story(demo: &Demo<'_>, fake_apiserver: &Path) -> Result<()> {
    scene(
        "Cluster mode: a lab whose pods carry their addresses in status.podIP \
         (policies/cluster/: store/web, store/orders, ops/monitor, and one policy)",
    );
    demo.bulkhead(&["lab", "up", "--name", LAB, "--manifests", CLUSTER])?;
    scene(
        "An API server in the node namespace, where the agent runs: the test kit's stand-in \
         for kube-apiserver (it speaks the list/watch protocol), loaded with the same objects",
    );
    let mut server = ApiServer::start(fake_apiserver)?;
    let kubeconfig = server.kubeconfig();
    let k = kubeconfig.display().to_string();
    scene("The lab's agent switches to the Kubernetes API (it adopts the pinned policy)");
    demo.bulkhead(&["lab", "restart-agent", "--name", LAB, "--kubeconfig", &k])?;
    demo.bulkhead(&["lab", "status", "--name", LAB])?;
    let kubectl = Kubectl::find(&kubeconfig)?;
    kubectl.run(&["get", "pods", "-A", "-o", "wide"])?;
    check(demo, "ops/monitor", "store/web", true)?;
    scene(&format!(
        "kubectl apply {NETPOL}: web takes connections only from pods labeled access=web"
    ));
    kubectl.run(&["apply", "--validate=false", "-f", NETPOL])?;
    demo.bulkhead(&["lab", "sync", "--name", LAB])?;
    demo.bulkhead(&["lab", "probe", "--name", LAB])?;
    check(demo, "ops/monitor", "store/web", false)?;
    scene("kubectl label: ops/monitor joins the allowed group; after lab sync it is let in");
    kubectl.run(&["label", "pod", "-n", "ops", "monitor", "access=web"])?;
    demo.bulkhead(&["lab", "sync", "--name", LAB])?;
    demo.bulkhead(&["lab", "probe", "--name", LAB])?;
    check(demo, "ops/monitor", "store/web", true)?;
    check(demo, "store/orders", "store/web", false)?;
    scene("Verify: live probes against the policy the API holds, read as the agent reads it");
    demo.bulkhead(&["lab", "verify", "--name", LAB])?;
    scene(
        "The API server goes away: the agent keeps enforcing its last complete view \
         (fail-static), and says since when that view may be stale",
    );
    let before = verdicts(demo)?;
    println!("$ kill -TERM <fake-apiserver>");
    server.stop()?;
    wait_status(
        demo,
        "the agent did not notice the API server was gone",
        |s| s["agent_source"]["connected"] == false,
    )?;
    // The view's age is counted in seconds: until it says some passed.
    wait_status(demo, "the agent's view did not age", |s| {
        s["agent_view_stale_seconds"].as_u64() >= Some(1)
    })?;
    demo.bulkhead(&["status", "--lab", LAB])?;
    demo.bulkhead(&["lab", "probe", "--name", LAB])?;
    ensure!(
        verdicts(demo)? == before,
        "the verdicts changed while the API server was gone"
    );
    Ok(())
}

/// `kubectl --kubeconfig F`, run in the node namespace (where the API
/// server listens), with its cache in the server's directory.
struct Kubectl {
    kubeconfig: PathBuf,
}

impl Kubectl {
    /// Fails (with what to do) when no `kubectl` runs here.
    fn find(kubeconfig: &Path) -> Result<Kubectl> {
        ensure!(
            cmd::output(Command::new("kubectl").args(["version", "--client"])).is_some(),
            "no kubectl: `cargo xtask setup` installs Debian's {}",
            crate::setup::KUBECTL_PACKAGE
        );
        Ok(Kubectl {
            kubeconfig: kubeconfig.to_owned(),
        })
    }

    fn run(&self, args: &[&str]) -> Result<()> {
        let k = self.kubeconfig.display().to_string();
        println!(
            "$ ip netns exec {NODE} kubectl --kubeconfig {k} {}",
            args.join(" ")
        );
        let cache = self.kubeconfig.with_file_name("kube-cache");
        let status = Command::new("ip")
            .args(["netns", "exec", NODE, "kubectl", "--kubeconfig", &k])
            .arg("--cache-dir")
            .arg(&cache)
            .args(args)
            .current_dir(cmd::repo_root())
            .status()
            .context("running kubectl")?;
        ensure!(
            status.success(),
            "`kubectl {}` failed ({status})",
            args.join(" ")
        );
        Ok(())
    }
}

/// Every probe's (source, destination, port, allowed), from `lab probe`.
fn verdicts(demo: &Demo<'_>) -> Result<Vec<(String, String, u64, bool)>> {
    let text = demo.output(&["lab", "probe", "--name", LAB, "--output", "json"])?;
    let mut v = Vec::new();
    for line in text.lines() {
        let p: serde_json::Value = serde_json::from_str(line).context("a probe's JSON")?;
        v.push((
            p["src"].as_str().unwrap_or_default().to_owned(),
            p["dst"].as_str().unwrap_or_default().to_owned(),
            p["port"].as_u64().unwrap_or_default(),
            p["allowed"].as_bool().unwrap_or_default(),
        ));
    }
    v.sort();
    Ok(v)
}

/// Fails unless probes from `src` to `dst` are `allowed` (or denied).
fn check(demo: &Demo<'_>, src: &str, dst: &str, allowed: bool) -> Result<()> {
    let found: Vec<bool> = verdicts(demo)?
        .into_iter()
        .filter(|(s, d, _, _)| s == src && d == dst)
        .map(|(_, _, _, a)| a)
        .collect();
    ensure!(!found.is_empty(), "no probe {src} → {dst}");
    ensure!(
        found.iter().all(|a| *a == allowed),
        "{src} → {dst} should be {}",
        if allowed { "allowed" } else { "denied" }
    );
    Ok(())
}

/// Waits (at most [`START_TIMEOUT`]) until `lab status --output json`
/// satisfies `done`; fails saying `what`.
fn wait_status(
    demo: &Demo<'_>,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let text = demo.output(&["lab", "status", "--name", LAB, "--output", "json"])?;
        let status: serde_json::Value = serde_json::from_str(&text).context("lab status JSON")?;
        if done(&status) {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "{what}: {status}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
