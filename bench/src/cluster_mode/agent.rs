//! The real agent binary, run as a child process: `bulkhead agent
//! --kubernetes` in the node namespace (`--netns`, so it keeps this mount
//! namespace and its private bpffs), its log in a file, its memory and CPU
//! read from `/proc`.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

/// The log filter the agent runs with: info, plus the reconciler's debug
/// lines (compile time and pod count of every model).
pub const LOG_FILTER: &str = "info,bulkhead_agent::reconcile=debug";

static BINARY: OnceLock<PathBuf> = OnceLock::new();

/// Chooses the `bulkhead` binary: `explicit` (`--agent`), else
/// `$BULKHEAD_BIN`, else a release build made now with cargo (a no-op when
/// up to date). Call once before [`binary_path`].
pub fn resolve_binary(explicit: Option<PathBuf>) -> Result<&'static Path> {
    if let Some(p) = BINARY.get() {
        return Ok(p);
    }
    let path = match explicit.or_else(|| std::env::var_os("BULKHEAD_BIN").map(PathBuf::from)) {
        Some(p) => p,
        None => build_release()?,
    };
    if !path.is_file() {
        bail!("no bulkhead binary at {}", path.display());
    }
    Ok(BINARY.get_or_init(|| path))
}

/// The binary chosen by [`resolve_binary`] (`bulkhead` on `$PATH` if none
/// was).
pub fn binary_path() -> &'static Path {
    BINARY.get().map_or(Path::new("bulkhead"), PathBuf::as_path)
}

/// `cargo build --release -p bulkhead --bin bulkhead`, located from
/// cargo's own report.
fn build_release() -> Result<PathBuf> {
    eprintln!("[cluster] building the agent: cargo build --release -p bulkhead --bin bulkhead");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .args(["build", "--release", "-p", "bulkhead", "--bin", "bulkhead"])
        .arg("--message-format=json")
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo build")?;
    if !out.status.success() {
        bail!("cargo build --release -p bulkhead failed");
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["reason"] == "compiler-artifact" && v["target"]["name"] == "bulkhead")
        .find_map(|v| v["executable"].as_str().map(PathBuf::from))
        .context("cargo reported no bulkhead executable")
}

/// How to start the agent.
pub struct AgentSpec<'a> {
    /// Node network namespace (`--netns`).
    pub netns: &'a str,
    /// Pin directory (`--bpffs`).
    pub pins: &'a Path,
    /// Kubeconfig of the API server.
    pub kubeconfig: &'a Path,
    /// `--node-name`.
    pub node_name: &'a str,
    /// Local API socket (`--api-socket`).
    pub socket: &'a Path,
    /// Log file (stderr, appended).
    pub log: &'a Path,
}

/// A running agent; stopped when dropped.
pub struct Agent {
    child: Child,
    /// Its PID.
    pub pid: u32,
    /// When it was started.
    pub started: Instant,
}

impl Agent {
    /// Starts the agent. It gets SIGTERM if this process dies.
    pub fn start(spec: &AgentSpec) -> Result<Self> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(spec.log)
            .with_context(|| format!("opening {}", spec.log.display()))?;
        let mut cmd = Command::new(binary_path());
        cmd.arg("agent")
            .arg("--kubernetes")
            .arg("--kubeconfig")
            .arg(spec.kubeconfig)
            .args(["--node-name", spec.node_name, "--netns", spec.netns])
            .arg("--bpffs")
            .arg(spec.pins)
            .arg("--api-socket")
            .arg(spec.socket)
            .env("BULKHEAD_LOG", LOG_FILTER)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        // SAFETY: prctl is async-signal-safe; nothing else runs between
        // fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
                    .map_err(std::io::Error::from)
            });
        }
        let started = Instant::now();
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", binary_path().display()))?;
        Ok(Self {
            pid: child.id(),
            child,
            started,
        })
    }

    /// Its exit status, if it exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM, then SIGKILL after 10 s; reaps it.
    pub fn stop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.pid as i32);
        if self.exited().is_some() {
            return;
        }
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.exited().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop();
    }
}
