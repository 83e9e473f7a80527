//! The lab's agent: `bulkhead agent` in the node namespace, on a private
//! bpffs in the lab's directory, watching the lab's manifest directory.
//!
//! ```text
//! /run/bulkhead/lab/<name>/
//!   state.json         the lab (records the agent's PID, pins, watched directory)
//!   manifests/         a copy of `lab up --manifests` the agent watches (unless --watch)
//!   enforced/          the watched content last confirmed enforced (for verify)
//!   enforced.hash      its content hash, as the agent saw it
//!   bpf/               a bpffs mounted by `lab up`, private to this lab
//!   bpf/bulkhead/      the agent's pin directory
//!   agent.log          the agent's log
//! ```
//!
//! Everything in it is the owner's only (files 0600, directories 0700; see
//! [`bulkhead_policy::private`]): it holds flows, logs and state.
//!
//! The agent runs with `--netns bh-<lab>-node` (so it stays in this mount
//! namespace and sees the bpffs) and finds the pods' host-side veths there
//! by route, as on a real node. "Enforced" means the agent's state file
//! says `enforced_revision == content_hash(watched)` ([`wait`]); with the
//! Kubernetes API as its source (`lab up --kubeconfig`), that it enforces
//! the API's resourceVersion of when we asked ([`super::cluster`]).
//!
//! Teardown ([`teardown`]) works without the lab's state file: the agent
//! is found by its command line (`agent ... --bpffs <the lab's pin dir>`),
//! the bpffs by `/proc/self/mountinfo`.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::LabError;
use super::naming::{netns_prefix, node_index, node_netns};
use super::net;
use super::state::{AgentSource, LabAgent, LabState, lab_dir, pin_dirs_on_disk};
use bulkhead_agent::AgentState;
use bulkhead_policy::private;
use bulkhead_policy::source::manifest::content_hash;
use bulkhead_policy::source::manifest::walk::{self, Limits};

/// How long the agent gets to stop on SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Copies the manifests (a file or a directory tree) to `to`, which must
/// not exist: the files the loader reads, found and read by its bounded
/// walk ([`walk`]), relative paths kept, owner-only (0600 files in 0700
/// directories).
pub fn copy_manifests(from: &Path, to: &Path) -> Result<(), LabError> {
    private::create_dir_all(to).map_err(LabError::io(to))?;
    let limits = Limits::DEFAULT;
    let mut reader = walk::Reader::new(limits);
    for file in walk::walk(from, &limits)? {
        let rel = match file.strip_prefix(from) {
            Ok(rel) if !rel.as_os_str().is_empty() => rel,
            // `from` is the file itself.
            _ => Path::new(from.file_name().unwrap_or(from.as_os_str())),
        };
        let dst = to.join(rel);
        if let Some(dir) = dst.parent() {
            private::create_dir_all(dir).map_err(LabError::io(dir))?;
        }
        let bytes = reader.read(&file)?;
        private::write(&dst, &bytes).map_err(LabError::io(&dst))?;
    }
    Ok(())
}

/// Whether `path` is the mount point of a bpffs.
fn is_bpffs(path: &Path) -> bool {
    mount_points().iter().any(|m| m == path) && bulkhead_dataplane::pins::on_bpffs(path)
}

/// Mounts the lab's private bpffs (if it is not mounted yet).
pub fn mount_bpffs(agent: &LabAgent) -> Result<(), LabError> {
    let at = &agent.bpffs;
    private::create_dir_all(at).map_err(LabError::io(at))?;
    if is_bpffs(at) {
        return Ok(());
    }
    nix::mount::mount(
        Some("bpf"),
        at,
        Some("bpf"),
        nix::mount::MsFlags::empty(),
        Some("mode=0700"),
    )
    .map_err(|source| LabError::Mount {
        what: "mounting bpffs at",
        path: at.clone(),
        source,
    })
}

/// Starts node `node`'s agent `agent` of `state` (its bpffs mounted) and
/// returns its PID.
pub fn start(state: &LabState, node: usize, agent: &LabAgent, exe: &Path) -> Result<u32, LabError> {
    let log = private::open_append(&agent.log).map_err(LabError::io(&agent.log))?;
    let mut cmd = Command::new(exe);
    cmd.arg("agent")
        .args(agent.source.agent_args(state.watched()))
        .arg("--bpffs")
        .arg(&agent.pin_dir)
        .args(["--netns", &state.nodes[node].netns])
        .args(["--xdp", if agent.xdp { "on" } else { "off" }])
        .args([
            "--host-routing",
            if agent.host_routing { "on" } else { "off" },
        ])
        .arg("--api-socket")
        .arg(&agent.api_socket)
        .arg("--flow-log")
        .arg(&agent.flow_log)
        .args(["--mode", agent.mode.as_str()])
        .args(&agent.flow_args);
    if !agent.timeline_db.as_os_str().is_empty() {
        cmd.arg("--timeline-db").arg(&agent.timeline_db);
    }
    if !state.pod_cidrs.is_empty() {
        cmd.arg("--pod-cidr").arg(state.pod_cidrs.join(","));
    }
    if !state.service_cidrs.is_empty() {
        cmd.arg("--service-cidr").arg(state.service_cidrs.join(","));
    }
    if state.assign_pod_ips {
        cmd.arg("--assign-pod-ips");
    }
    // No node name from the environment narrows the pods: a one-node lab
    // has every pod on its node, whatever `spec.nodeName` says; the nodes
    // of a larger one get theirs (see `LabAgent::node_name`).
    cmd.env_remove("NODE_NAME");
    if let Some(name) = &agent.node_name {
        cmd.args(["--node-name", name]);
    }
    if std::env::var_os("BULKHEAD_LOG").is_none() {
        cmd.env("BULKHEAD_LOG", "info");
    }
    // Its own process group: a terminal's ^C to `lab up` must not reach it.
    cmd.process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log));
    let child = cmd.spawn().map_err(|source| LabError::Spawn {
        program: exe.display().to_string(),
        source,
    })?;
    // Not waited for: it outlives `lab up`; `lab down` stops it.
    Ok(child.id())
}

/// The last lines of the agent's log, for error messages.
fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(5)..].join("\n  ");
    if tail.is_empty() {
        String::new()
    } else {
        format!(":\n  {tail}")
    }
}

/// Whether `pid` is a live (not zombie) agent on the pins of `pin_dir`.
fn is_agent(pid: u32, pin_dir: &Path) -> bool {
    let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = raw.split(|b| *b == 0).collect();
    let pins = pin_dir.as_os_str().as_encoded_bytes();
    args.contains(&b"agent".as_slice())
        && args
            .windows(2)
            .any(|w| w[0] == b"--bpffs".as_slice() && w[1] == pins)
}

/// Every live agent process on `pin_dir`, found by command line.
fn find_agents(pin_dir: &Path) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != std::process::id() && is_agent(pid, pin_dir))
        .collect()
}

/// The PID of an agent running on `agent`'s pins (the recorded one, or
/// any found by its command line), if there is one.
pub fn running(agent: &LabAgent) -> Option<u32> {
    agent
        .pid
        .filter(|&p| is_agent(p, &agent.pin_dir))
        .or_else(|| find_agents(&agent.pin_dir).first().copied())
}

/// What the agent reports about the watched content right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sync {
    /// It enforces exactly the watched content.
    Enforced(Box<AgentState>),
    /// It saw the content and rejected it (the policy in force stays).
    Rejected {
        /// Its error.
        error: String,
        /// What it enforces instead (`None`: nothing yet).
        enforced_revision: Option<String>,
    },
    /// It has not caught up yet.
    Pending {
        /// Its last error, if any.
        error: Option<String>,
    },
}

/// Whether state `s` is the word of the agent the lab started last: its
/// own, or written by an agent that stopped (PID 0) once that one is gone
/// too (the pins it left are in force). A state of an agent before a
/// restart is not.
pub fn its_word(s: &AgentState, agent: &LabAgent) -> bool {
    match agent.pid {
        None => true,
        Some(p) if s.pid == p => true,
        Some(p) => s.pid == 0 && !is_agent(p, &agent.pin_dir),
    }
}

/// Reads the agent's state against the watched content's hash `want`.
pub fn check(agent: &LabAgent, want: &str) -> Sync {
    let Some(s) = AgentState::read(&agent.pin_dir) else {
        return Sync::Pending { error: None };
    };
    if !its_word(&s, agent) {
        return Sync::Pending { error: None };
    }
    let enforced = s.enforced_revision.as_deref() == Some(want);
    if s.source_revision == want {
        match (&s.error, enforced) {
            (None, true) => return Sync::Enforced(Box::new(s)),
            (Some(e), false) => {
                return Sync::Rejected {
                    error: e.clone(),
                    enforced_revision: s.enforced_revision.clone(),
                };
            }
            _ => {}
        }
    }
    Sync::Pending {
        error: s.error.clone(),
    }
}

/// `Err` when the agent the lab started last is not running.
pub fn ensure_running(agent: &LabAgent) -> Result<(), LabError> {
    if agent.pid.is_some_and(|p| is_agent(p, &agent.pin_dir)) {
        return Ok(());
    }
    Err(LabError::Agent {
        why: format!(
            "is not running{}",
            agent
                .pid
                .map(|p| format!(" (pid {p} exited)"))
                .unwrap_or_default()
        ) + &log_tail(&agent.log),
        log: agent.log.clone(),
    })
}

/// Waits until every node's agent enforces its source's current content
/// (see [`wait_node`]); each one's state (node index, state), in node
/// order.
pub fn wait(state: &LabState, timeout: Duration) -> Result<Vec<(usize, AgentState)>, LabError> {
    if state.agent.is_none() {
        return Err(LabError::NoAgent {
            name: state.name.clone(),
        });
    }
    let deadline = Instant::now() + timeout;
    state
        .agents()
        .map(|(i, _, _)| {
            let left = deadline.saturating_duration_since(Instant::now());
            wait_node(state, i, left).map(|s| (i, s))
        })
        .collect()
}

/// Waits until node `node`'s agent enforces its source's current content
/// (the watched manifests, or everything the Kubernetes API had when
/// asked: [`super::cluster::wait`]); the agent's state on success. Fails
/// at once when the agent rejects the content or is not running, else
/// after `timeout`.
pub fn wait_node(state: &LabState, node: usize, timeout: Duration) -> Result<AgentState, LabError> {
    let netns = &state.nodes[node].netns;
    let agent = state.nodes[node]
        .agent
        .as_ref()
        .ok_or_else(|| LabError::NoAgent {
            name: state.name.clone(),
        })?;
    if let AgentSource::Kubernetes { kubeconfig } = &agent.source {
        return super::cluster::wait(netns, agent, kubeconfig, timeout).map(|(s, _)| s);
    }
    let watched = state.watched().to_owned();
    let deadline = Instant::now() + timeout;
    loop {
        // Hashed each round: content that changes while we wait is waited for.
        let want = content_hash(&watched);
        match check(agent, &want) {
            Sync::Enforced(s) => return Ok(*s),
            Sync::Rejected { error, .. } => return Err(LabError::Rejected { watched, error }),
            Sync::Pending { error } => {
                ensure_running(agent)?;
                if Instant::now() >= deadline {
                    return Err(LabError::SyncTimeout {
                        watched,
                        timeout,
                        last_error: error,
                    });
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn enforced_dir(name: &str) -> PathBuf {
    lab_dir(name).join("enforced")
}

fn enforced_revision_file(name: &str) -> PathBuf {
    lab_dir(name).join("enforced.hash")
}

/// Keeps a copy of the watched content, which the agent enforces under
/// content hash `hash`, so `verify` can compare with the policy in force
/// after the watched directory turns invalid. Nothing is kept (and the
/// old copy stays) when the content changed meanwhile, or when the agent
/// reads the Kubernetes API (whose past content cannot be copied).
pub fn keep_enforced(state: &LabState, hash: &str) -> Result<(), LabError> {
    if state
        .agent
        .as_ref()
        .is_some_and(|a| a.source != AgentSource::Manifests)
    {
        return Ok(());
    }
    let dir = enforced_dir(&state.name);
    let tmp = dir.with_extension("tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    copy_manifests(state.watched(), &tmp)?;
    if content_hash(state.watched()) != hash {
        let _ = std::fs::remove_dir_all(&tmp);
        return Ok(());
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&tmp, &dir).map_err(LabError::io(&dir))?;
    let file = enforced_revision_file(&state.name);
    private::write(&file, hash.as_bytes()).map_err(LabError::io(&file))
}

/// The kept copy of the content the agent enforces under `hash`, if any.
pub fn enforced_copy(name: &str, hash: &str) -> Option<PathBuf> {
    let kept = std::fs::read_to_string(enforced_revision_file(name)).ok()?;
    (kept.trim() == hash).then(|| enforced_dir(name))
}

/// What [`teardown`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Teardown {
    /// Agent processes stopped.
    pub stopped: usize,
    /// Pins removed by the cleanup.
    pub pins: usize,
    /// Mounts removed.
    pub unmounted: usize,
}

/// Stops lab `name`'s agents (SIGTERM, then SIGKILL after a while), runs
/// the agent's cleanup on each node's pins (inside that node's namespace,
/// where its devices are), and unmounts every mount under the lab's
/// directory. Works from `state` if there is one, else from what is on
/// disk (each node's pin directory, [`pin_dirs_on_disk`]) and the agents'
/// command lines; errors of the cleanup are logged, not returned, so
/// teardown goes on.
pub fn teardown(
    name: &str,
    state: Option<&LabState>,
    progress: &dyn Fn(&str),
) -> Result<Teardown, LabError> {
    let mut report = Teardown::default();
    // (pins, node namespace, recorded PID)
    let mut agents: Vec<(PathBuf, String, Option<u32>)> = state
        .map(|s| {
            s.agents()
                .map(|(_, n, a)| (a.pin_dir.clone(), n.netns.clone(), a.pid))
                .collect()
        })
        .unwrap_or_default();
    for (pins, netns) in pin_dirs_on_disk(name) {
        if !agents.iter().any(|(p, _, _)| *p == pins) {
            agents.push((pins, netns, None));
        }
    }
    let lab = lab_dir(name);
    // Agents on pins of the lab the state does not know (a crash while
    // the state file was being written, a lost state file).
    for pins in find_agent_pins_under(&lab) {
        if !agents.iter().any(|(p, _, _)| *p == pins) {
            let netns = pins
                .parent()
                .and_then(Path::parent)
                .and_then(|d| d.file_name())
                .and_then(|d| d.to_str())
                .map(|d| format!("{}{d}", netns_prefix(name)))
                .filter(|ns| node_index(name, ns).is_some())
                .unwrap_or_else(|| node_netns(name));
            agents.push((pins, netns, None));
        }
    }
    for (pins, _, pid) in &agents {
        report.stopped += stop(pins, *pid, progress);
    }
    for (pins, netns, _) in &agents {
        report.pins += cleanup_pins(netns, pins);
    }
    let mut mounts: Vec<PathBuf> = mount_points()
        .into_iter()
        .filter(|m| m.starts_with(&lab))
        .collect();
    // Deepest first.
    mounts.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    mounts.dedup();
    for m in &mounts {
        nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH).map_err(|source| {
            LabError::Mount {
                what: "unmounting",
                path: m.clone(),
                source,
            }
        })?;
        report.unmounted += 1;
    }
    Ok(report)
}

/// The pin directories (`--bpffs`) of every live agent process whose pins
/// lie under `dir`.
fn find_agent_pins_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = procs
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != std::process::id())
        .filter_map(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let args: Vec<&[u8]> = raw.split(|b| *b == 0).collect();
            if !args.contains(&b"agent".as_slice()) {
                return None;
            }
            let pins = args.windows(2).find(|w| w[0] == b"--bpffs".as_slice())?[1];
            let pins =
                PathBuf::from(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(pins));
            pins.starts_with(dir).then_some(pins)
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Stops every agent on `pins` (found by command line, and `recorded` if
/// it runs there): SIGTERM, then SIGKILL after a while. Their pins stay,
/// and with them the policy in force. Returns how many were signalled.
pub fn stop(pins: &Path, recorded: Option<u32>, progress: &dyn Fn(&str)) -> usize {
    let mut pids = find_agents(pins);
    if let Some(p) = recorded
        && is_agent(p, pins)
        && !pids.contains(&p)
    {
        pids.push(p);
    }
    if !pids.is_empty() {
        let list: Vec<String> = pids.iter().map(u32::to_string).collect();
        progress(&format!("stopping the agent (pid {})", list.join(", ")));
    }
    let mut stopped = 0;
    for &pid in &pids {
        if let Ok(raw) = i32::try_from(pid)
            && kill(Pid::from_raw(raw), Signal::SIGTERM).is_ok()
        {
            stopped += 1;
        }
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    while pids.iter().any(|p| is_agent(*p, pins)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    for &pid in pids.iter().filter(|p| is_agent(**p, pins)) {
        tracing::warn!(pid, "the agent ignored SIGTERM; killing it");
        if let Ok(raw) = i32::try_from(pid) {
            let _ = kill(Pid::from_raw(raw), Signal::SIGKILL);
        }
    }
    while pids.iter().any(|p| is_agent(*p, pins)) && Instant::now() < deadline + STOP_TIMEOUT {
        std::thread::sleep(Duration::from_millis(10));
    }
    stopped
}

/// The agent's cleanup (no agent runs any more): netlink filters it
/// recorded are detached inside its node namespace `node`, pins removed,
/// the agent's state file removed. Returns the pins removed.
fn cleanup_pins(node: &str, pins: &Path) -> usize {
    if !pins.exists() {
        return 0;
    }
    let node = node.to_owned();
    let devices = AgentState::read(pins)
        .map(|s| s.netlink_devices)
        .unwrap_or_default();
    let in_node = net::netns_exists(&node);
    let pins_owned = pins.to_owned();
    let result = std::thread::scope(|s| {
        s.spawn(|| {
            // Devices are named in the node namespace: never look them up
            // in this one. Without the node there are none left anyway.
            let devices: &[String] = if in_node { &devices } else { &[] };
            if in_node && let Err(e) = bulkhead_agent::enter_netns(&node) {
                tracing::warn!(error = %e, "cleanup outside the node namespace");
                return bulkhead_dataplane::cleanup(&pins_owned, &[]);
            }
            bulkhead_dataplane::cleanup(&pins_owned, devices)
        })
        .join()
    });
    if let Err(e) = AgentState::remove(pins) {
        tracing::warn!(error = %e, "removing the agent's state file");
    }
    match result {
        Ok(Ok(r)) => r.objects + r.links,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "agent cleanup; unmounting the bpffs removes the pins");
            0
        }
        Err(_) => {
            tracing::warn!("agent cleanup panicked");
            0
        }
    }
}

/// Mount points of this mount namespace (`/proc/self/mountinfo`, with
/// its octal escapes undone).
pub fn mount_points() -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(unescape_mountinfo(m)))
        .collect()
}

/// `\040` and friends back to bytes.
pub fn unescape_mountinfo(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
