//! The node under test, made for one scale and removed after it, also on
//! failure: the dataplane benchmark's three namespaces ([`Topology`]: a
//! node namespace and two pod namespaces joined by veths), a private bpffs
//! for the agent's pins, a scratch directory (kubeconfig, agent log and
//! API socket), the pods' UDP echo servers, the list/watch API server
//! listening inside the node namespace, and the agent.
//!
//! Dropping the [`Node`] stops the agent (SIGTERM, then SIGKILL), runs
//! `bulkhead agent --cleanup` on its pins, stops the echo servers and the
//! API server, unmounts the bpffs, deletes the namespaces and the scratch
//! directory and the agent's state file. A run first removes what a
//! killed run left (scratch directories of dead PIDs; namespaces are
//! reaped by [`netns::remove_stale`]); the agent dies with the benchmark
//! (parent-death signal).

use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context as _, Result};
use bulkhead_agent::AgentState;
use bulkhead_netns_tests::apiserver::{FakeApiServer, Options};

use super::agent::Agent;
use crate::dataplane::netns::{self, Topology};

/// Prefix of the scratch directories under the temporary directory.
const SCRATCH_PREFIX: &str = "bulkhead-cluster-bench-";

/// UDP port of the allowed flow (the server's `echo` port).
pub const ECHO_PORT: u16 = 80;
/// UDP port no policy allows (the server answers on it too: an answer
/// would mean the policy is not enforced).
pub const DENIED_PORT: u16 = 81;

/// One node with its pods, API server and agent.
pub struct Node {
    /// The namespaces.
    pub topo: Topology,
    /// Scratch directory.
    pub dir: PathBuf,
    /// Pin directory passed to the agent (inside the private bpffs).
    pub pins: PathBuf,
    /// The API server (listening in the node namespace).
    pub server: Option<FakeApiServer>,
    /// The agent, once started.
    pub agent: Option<Agent>,
    bpffs: PathBuf,
    mounted: bool,
    stop: Arc<AtomicBool>,
    echo: Vec<JoinHandle<()>>,
}

impl Node {
    /// Makes the namespaces, mounts the bpffs, starts the echo servers in
    /// the server pod and an empty API server in the node namespace.
    pub fn create(api: Options) -> Result<Self> {
        remove_stale_scratch();
        netns::remove_stale();
        let topo = Topology::create()?;
        let dir = std::env::temp_dir().join(format!("{SCRATCH_PREFIX}{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let bpffs = dir.join("bpffs");
        std::fs::create_dir_all(&bpffs).with_context(|| format!("creating {}", bpffs.display()))?;
        let mut node = Node {
            topo,
            pins: bpffs.join("pins"),
            bpffs,
            dir,
            server: None,
            agent: None,
            mounted: false,
            stop: Arc::new(AtomicBool::new(false)),
            echo: Vec::new(),
        };
        nix::mount::mount(
            Some("bpf"),
            &node.bpffs,
            Some("bpf"),
            nix::mount::MsFlags::empty(),
            Some("mode=0700"),
        )
        .context("mounting a private bpffs")?;
        node.mounted = true;
        for port in [ECHO_PORT, DENIED_PORT] {
            let handle = echo_server(&node.topo.server, port, Arc::clone(&node.stop))?;
            node.echo.push(handle);
        }
        let listener = in_netns(&node.topo.node, || TcpListener::bind("127.0.0.1:0"))??;
        node.server = Some(FakeApiServer::serve(listener, api).context("starting the API server")?);
        Ok(node)
    }

    /// The API server.
    pub fn api(&self) -> &FakeApiServer {
        self.server
            .as_ref()
            .expect("the API server runs until drop")
    }

    /// Writes a kubeconfig for the API server; its path.
    pub fn kubeconfig(&self) -> Result<PathBuf> {
        let path = self.dir.join("kubeconfig");
        self.api().write_kubeconfig(&path)?;
        Ok(path)
    }

    /// The agent's log file.
    pub fn agent_log(&self) -> PathBuf {
        self.dir.join("agent.log")
    }

    /// The agent's state file, if it wrote one.
    pub fn state(&self) -> Option<AgentState> {
        AgentState::read(&self.pins)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut agent) = self.agent.take() {
            agent.stop();
        }
        let cleanup = Command::new(super::agent::binary_path())
            .args(["agent", "--cleanup", "--netns", &self.topo.node, "--bpffs"])
            .arg(&self.pins)
            .output();
        if let Ok(out) = &cleanup
            && !out.status.success()
        {
            eprintln!(
                "[cluster] agent --cleanup failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        self.stop.store(true, Ordering::Relaxed);
        for h in self.echo.drain(..) {
            let _ = h.join();
        }
        drop(self.server.take());
        if self.mounted {
            let _ = nix::mount::umount2(&self.bpffs, nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = AgentState::remove(&self.pins);
        let _ = std::fs::remove_dir_all(&self.dir);
        // `topo` deletes the namespaces (and the veths) when it drops.
    }
}

/// Runs `f` on a thread inside network namespace `ns`.
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> Result<T> {
    Ok(bulkhead_netkit::NsHandle::open(ns)?.run(f)?)
}

/// A UDP echo server on `port` inside `ns`, until `stop`.
fn echo_server(ns: &str, port: u16, stop: Arc<AtomicBool>) -> Result<JoinHandle<()>> {
    let sock = in_netns(ns, move || UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)))??;
    sock.set_read_timeout(Some(Duration::from_millis(20)))?;
    Ok(std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        while !stop.load(Ordering::Relaxed) {
            if let Ok((n, from)) = sock.recv_from(&mut buf) {
                let _ = sock.send_to(&buf[..n], from);
            }
        }
    }))
}

/// Removes scratch directories of benchmark processes that are gone
/// (their bpffs unmounted first).
fn remove_stale_scratch() {
    let tmp = std::env::temp_dir();
    for entry in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(SCRATCH_PREFIX)
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let pins = entry.path().join("bpffs");
        let _ = nix::mount::umount2(&pins, nix::mount::MntFlags::MNT_DETACH);
        let _ = AgentState::remove(&pins.join("pins"));
        if std::fs::remove_dir_all(entry.path()).is_ok() {
            eprintln!("[cluster] removed {name} left by a dead run");
        }
    }
}
