//! `lab up`, `lab down` and `lab restart-agent`.
//!
//! `up` writes the state file before it creates anything, records each
//! server's PID as soon as it starts, and on any failure tears down what it
//! made. `down` works from the state file and also from the namespaces'
//! common prefix, so it cleans up after a crash, a failed start or a lost
//! state file, and does nothing (successfully) when there is nothing.

use std::io::BufRead;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::naming::{check_lab_name, netns_prefix};
use super::state::{AgentSource, LabState, lab_dir, remove_lab_dir};
use super::{LabError, agent, net, plan, serve};
use crate::agent::AgentState;

/// How long servers get to report ready.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the agent gets to enforce the manifests after it starts
/// (loading and verifying the programs takes most of it).
const AGENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Namespace sysctls of the node: it routes.
const NODE_SYSCTLS: [&str; 3] = [
    "net.ipv4.ip_forward=1",
    "net.ipv6.conf.all.forwarding=1",
    "net.ipv6.conf.default.accept_dad=0",
];

/// Namespace sysctls of every pod and external host: ICMP errors are not
/// rate-limited (the defaults allow a burst of about six port-unreachables
/// per peer, then one a second), so a UDP probe to a port where nothing
/// listens is reliably refused rather than seemingly dropped.
const HOST_SYSCTLS: [&str; 2] = ["net.ipv4.icmp_ratemask=0", "net.ipv6.icmp.ratemask="];

/// Creates the lab `state` describes (from [`plan::plan`]) and starts its
/// servers; returns the state with their PIDs once every one is listening.
pub fn up(mut state: LabState, exe: &Path, progress: &dyn Fn(&str)) -> Result<LabState, LabError> {
    check_lab_name(&state.name)?;
    if state.path().exists() {
        return Err(LabError::Exists {
            name: state.name.clone(),
            what: format!("state file {}", state.path().display()),
        });
    }
    let prefix = netns_prefix(&state.name);
    if let Some(ns) = net::netns_list()?
        .into_iter()
        .find(|n| n.starts_with(&prefix))
    {
        return Err(LabError::Exists {
            name: state.name.clone(),
            what: format!("network namespace {ns}"),
        });
    }
    state.save()?;
    match build(&mut state, exe, progress) {
        Ok(()) => Ok(state),
        Err(e) => {
            progress(&format!("failed ({e}); removing what was made"));
            if let Err(down_err) = down(&state.name, &|_| {}) {
                tracing::error!(error = %down_err, "cleaning up after a failed lab up");
            }
            Err(e)
        }
    }
}

fn build(state: &mut LabState, exe: &Path, progress: &dyn Fn(&str)) -> Result<(), LabError> {
    let start = Instant::now();
    let namespaces = state.namespaces();
    progress(&format!(
        "creating {} namespaces ({} hosts behind node {})",
        namespaces.len(),
        state.hosts.len(),
        state.node
    ));
    net::netns_add(&namespaces)?;
    net::sysctl(&state.node, &NODE_SYSCTLS)?;
    net::batch(Some(&state.node), &plan::node_link_batch(state))?;
    for h in &state.hosts {
        net::sysctl(&h.netns, &HOST_SYSCTLS)?;
        net::batch(Some(&h.netns), &plan::host_batch(state, h))?;
    }
    net::batch(Some(&state.node), &plan::node_route_batch(state))?;
    progress(&format!("starting {} servers", state.hosts.len()));
    let dir = lab_dir(&state.name);
    let mut pending = Vec::new();
    for i in 0..state.hosts.len() {
        let h = &state.hosts[i];
        let mut args = vec![
            "lab".to_owned(),
            "serve".to_owned(),
            "--lab".to_owned(),
            state.name.clone(),
            "--host".to_owned(),
            h.name.clone(),
        ];
        args.extend(state.served(h).serve_args());
        let log = dir.join(format!("{}.log", h.netns));
        let log_file = crate::private::create(&log).map_err(LabError::io(&log))?;
        let mut cmd = net::exec_in(&h.netns, exe, &args);
        // Its own process group: a terminal's ^C to `lab up` must not reach it later.
        cmd.process_group(0);
        let mut child = net::spawn(cmd, Stdio::null(), Stdio::from(log_file))?;
        state.hosts[i].server_pid = Some(child.id());
        state.save()?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let r = std::io::BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(r.map(|_| line));
        });
        pending.push((i, rx, log));
    }
    let deadline = Instant::now() + READY_TIMEOUT;
    for (i, rx, log) in pending {
        let netns = state.hosts[i].netns.clone();
        let left = deadline.saturating_duration_since(Instant::now());
        let why = match rx.recv_timeout(left) {
            Ok(Ok(line)) if line.trim() == serve::READY => continue,
            Ok(Ok(_)) => {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                format!("it exited: {}", text.trim())
            }
            Ok(Err(e)) => format!("reading its output: {e}"),
            Err(_) => format!("no answer within {READY_TIMEOUT:?}"),
        };
        return Err(LabError::ServerNotReady { netns, why });
    }
    if state.watch != state.manifests {
        agent::copy_manifests(&state.manifests, &state.watch)?;
    }
    if let Some(a) = state.agent.clone() {
        progress(&format!(
            "starting the agent in {} (pins {}, reading {})",
            state.node,
            a.pin_dir.display(),
            a.source.describe(&state.watch)
        ));
        let (pid, enforced) = launch_agent(state, &a, exe)?;
        progress(&format!(
            "the agent (pid {pid}) enforces revision {} on {} endpoints",
            enforced.revision,
            enforced.endpoints.len()
        ));
        if let Some(w) = super::cluster::endpoint_warning(state, &enforced) {
            progress(&w);
        }
    }
    progress(&format!(
        "lab {} is up: {} pods, {} external hosts, in {:.1} s",
        state.name,
        state.hosts.iter().filter(|h| !h.external).count(),
        state.hosts.iter().filter(|h| h.external).count(),
        start.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// Starts lab `state`'s agent again after it died: on the same pins,
/// bpffs and flags, so it adopts the pinned dataplane (which enforced the
/// last policy all along: fail-static). Refuses while an agent runs on the
/// lab's pins, unless `source` switches where it reads pods and policy
/// from: then the running agent is stopped first (its pins stay in force
/// until the new one takes over). Records the new PID and source, and
/// returns the agent's state once it enforces its source's content (or
/// fails as `lab sync` does).
pub fn restart_agent(
    state: &mut LabState,
    source: Option<AgentSource>,
    exe: &Path,
    progress: &dyn Fn(&str),
) -> Result<AgentState, LabError> {
    let mut a = state.agent.clone().ok_or_else(|| LabError::NoAgent {
        name: state.name.clone(),
    })?;
    if let Some(pid) = agent::running(&a) {
        if source.is_none() {
            return Err(LabError::AgentRunning {
                name: state.name.clone(),
                pid,
            });
        }
        agent::stop(&a.pin_dir, a.pid, progress);
    }
    if let Some(source) = source {
        a.source = source;
        state.agent = Some(a.clone());
        state.save()?;
    }
    progress(&format!(
        "starting the agent again in {} on pins {}, reading {}",
        state.node,
        a.pin_dir.display(),
        a.source.describe(state.watched())
    ));
    launch_agent(state, &a, exe).map(|(_, enforced)| enforced)
}

/// Starts the agent `a` of `state` (bpffs mounted first), records its PID
/// and waits until it enforces the watched content; its PID and state.
fn launch_agent(
    state: &mut LabState,
    a: &super::state::LabAgent,
    exe: &Path,
) -> Result<(u32, AgentState), LabError> {
    agent::mount_bpffs(a)?;
    let pid = agent::start(state, a, exe)?;
    if let Some(a) = state.agent.as_mut() {
        a.pid = Some(pid);
    }
    state.save()?;
    let enforced = agent::wait(state, AGENT_TIMEOUT)?;
    agent::keep_enforced(state, &enforced.source_revision)?;
    // As a runtime's chain would: the agent learns the pods' MACs.
    match super::cni::plugin(exe) {
        Some(plugin) => {
            super::cni::register_pods(state, &plugin, &a.log)?;
        }
        None => tracing::warn!(
            "no bulkhead-cni beside {}: the lab's pods are not registered over CNI, so their MACs are not checked",
            exe.display()
        ),
    }
    Ok((pid, enforced))
}

/// What `down` removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DownReport {
    /// The agent's teardown.
    pub agent: agent::Teardown,
    /// Processes killed.
    pub processes: usize,
    /// Namespaces deleted.
    pub namespaces: usize,
    /// Whether a state directory was removed.
    pub state: bool,
}

/// Whether `pid` runs `bulkhead lab serve --lab <lab>` (guards against a
/// recorded PID that has since been reused).
fn is_lab_server(pid: u32, lab: &str) -> bool {
    let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = raw.split(|b| *b == 0).collect();
    args.windows(2)
        .any(|w| w == [b"lab".as_slice(), b"serve".as_slice()])
        && args
            .windows(2)
            .any(|w| w == [b"--lab".as_slice(), lab.as_bytes()])
}

fn alive(pid: u32) -> bool {
    // A zombie has no cmdline and is as good as gone.
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())
}

/// Removes every process, namespace (and with them every veth) and the
/// state of lab `name`: first the agent (stopped, its pins cleaned up, the
/// lab's bpffs unmounted), then the servers and namespaces.
pub fn down(name: &str, progress: &dyn Fn(&str)) -> Result<DownReport, LabError> {
    check_lab_name(name)?;
    let mut report = DownReport::default();
    let state = match LabState::load(name) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "unreadable lab state; cleaning up by namespace prefix");
            None
        }
    };
    report.agent = agent::teardown(name, state.as_ref(), progress)?;
    let prefix = netns_prefix(name);
    let mut namespaces: Vec<String> = state.as_ref().map(LabState::namespaces).unwrap_or_default();
    for ns in net::netns_list()? {
        if ns.starts_with(&prefix) && !namespaces.contains(&ns) {
            namespaces.push(ns);
        }
    }
    let mut pids: Vec<u32> = state
        .iter()
        .flat_map(|s| s.hosts.iter().filter_map(|h| h.server_pid))
        .filter(|p| is_lab_server(*p, name))
        .collect();
    for ns in &namespaces {
        // Everything inside the lab's namespaces is the lab's.
        pids.extend(net::netns_pids(ns)?);
    }
    pids.sort_unstable();
    pids.dedup();
    if !pids.is_empty() || !namespaces.is_empty() {
        progress(&format!(
            "removing lab {name}: {} processes, {} namespaces",
            pids.len(),
            namespaces.len()
        ));
    }
    for &pid in &pids {
        let Ok(raw) = i32::try_from(pid) else {
            continue;
        };
        if kill(Pid::from_raw(raw), Signal::SIGKILL).is_ok() {
            report.processes += 1;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|p| alive(*p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    // Hosts first (their veth ends go, taking the node ends with them), node last.
    namespaces.sort_by_key(|n| *n == format!("{prefix}node"));
    for ns in &namespaces {
        if net::netns_exists(ns) {
            net::netns_del(ns)?;
            report.namespaces += 1;
        }
    }
    report.state = lab_dir(name).exists();
    remove_lab_dir(name)?;
    Ok(report)
}
