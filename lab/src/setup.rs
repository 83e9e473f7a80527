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

use super::kubeproxy::{self, ProxyMode};
use super::naming::{check_lab_name, netns_prefix};
use super::state::{AgentSource, LabState, lab_dir, remove_lab_dir};
use super::{LabError, agent, net, nodes, plan, serve};
use bulkhead_agent::AgentState;
use bulkhead_policy::source::manifest::content_hash;

/// How long servers get to report ready.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the agent gets to enforce the manifests after it starts
/// (loading and verifying the programs takes most of it).
const AGENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Namespace sysctls of the node: it routes; as on the hosts (see
/// [`HOST_SYSCTLS`]), its ICMP errors are not rate-limited: the REJECT
/// of a Service without endpoints (the node's kube-proxy rules) answers
/// every probe, not the first few; and its conntrack is liberal, so that
/// the kube-proxy rules drop no packet of a flow the agent's host routing
/// kept out of the node's netfilter (see [`crate::kubeproxy`]).
const NODE_SYSCTLS: [&str; 6] = [
    "net.netfilter.nf_conntrack_tcp_be_liberal=1",
    "net.ipv4.ip_forward=1",
    "net.ipv6.conf.all.forwarding=1",
    "net.ipv6.conf.default.accept_dad=0",
    "net.ipv4.icmp_ratemask=0",
    "net.ipv6.icmp.ratemask=",
];

/// Namespace sysctls of every pod and external host: ICMP errors are not
/// rate-limited (the defaults allow a burst of about six port-unreachables
/// per peer, then one a second), so a UDP probe to a port where nothing
/// listens is reliably refused rather than seemingly dropped; and no
/// duplicate address detection on interfaces made later (a pod's `eth0`,
/// made by `ptp`), so IPv6 addresses are usable at once.
const HOST_SYSCTLS: [&str; 3] = [
    "net.ipv4.icmp_ratemask=0",
    "net.ipv6.icmp.ratemask=",
    "net.ipv6.conf.default.accept_dad=0",
];

/// Creates the lab `state` describes (from [`plan::plan`]) and starts its
/// servers; returns the state with their PIDs once every one is listening.
pub fn up(mut state: LabState, exe: &Path, progress: &dyn Fn(&str)) -> Result<LabState, LabError> {
    check_lab_name(&state.name)?;
    clear_left_behind(&state.name, progress)?;
    state.builder = Some(std::process::id());
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

/// Refuses to build over a lab that exists; removes one that a killed run
/// left behind: its state or namespaces exist, but no process runs in its
/// namespaces and no `lab up` is still building it.
fn clear_left_behind(name: &str, progress: &dyn Fn(&str)) -> Result<(), LabError> {
    let state_path = super::state::state_path(name);
    let prefix = netns_prefix(name);
    let namespaces: Vec<String> = net::netns_list()?
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect();
    let what = if state_path.exists() {
        format!("state file {}", state_path.display())
    } else if let Some(ns) = namespaces.first() {
        format!("network namespace {ns}")
    } else {
        return Ok(());
    };
    let exists = |why: &str| LabError::Exists {
        name: name.to_owned(),
        what: format!("{what}, {why}"),
    };
    let builder = LabState::load(name).ok().flatten().and_then(|s| s.builder);
    if builder.is_some_and(|pid| pid != std::process::id() && is_lab_up(pid, name)) {
        return Err(exists("still being built"));
    }
    let mut running = 0;
    for ns in &namespaces {
        running += net::netns_pids(ns)?.len();
    }
    if running > 0 {
        return Err(exists(&format!("{running} processes running")));
    }
    progress(&format!(
        "lab {name} was left behind by a run that did not finish ({what}, {} namespaces, no process); removing it",
        namespaces.len()
    ));
    down(name, &|_| {})?;
    Ok(())
}

fn build(state: &mut LabState, exe: &Path, progress: &dyn Fn(&str)) -> Result<(), LabError> {
    let start = Instant::now();
    let namespaces = state.namespaces();
    progress(&format!(
        "creating {} namespaces ({} hosts behind {})",
        namespaces.len(),
        state.hosts.len(),
        describe_nodes(state)
    ));
    let bulkhead_cni = super::cni::plugin(exe);
    let cni_path = super::cni::cni_path(bulkhead_cni.as_deref());
    super::cni::check_plugins(&cni_path)?;
    net::netns_add(&namespaces)?;
    for n in &state.nodes {
        net::sysctl(&n.netns, &NODE_SYSCTLS)?;
    }
    if let Some(fabric) = &state.fabric {
        net::apply(fabric, &nodes::fabric_batch(state))?;
    }
    for (i, n) in state.nodes.iter().enumerate() {
        net::apply(&n.netns, &plan::node_link_batch(state, i))?;
    }
    // A hostNetwork pod lives in its node's namespace (set up above).
    for h in state.hosts.iter().filter(|h| !h.host_network) {
        net::sysctl(&h.netns, &HOST_SYSCTLS)?;
        if h.external {
            net::apply(&h.netns, &plan::host_batch(state, h))?;
        }
    }
    for (i, n) in state.nodes.iter().enumerate() {
        net::apply(&n.netns, &plan::node_route_batch(state, i))?;
        net::apply(&n.netns, &nodes::fabric_route_batch(state, i))?;
    }
    if state.watch != state.manifests {
        agent::copy_manifests(&state.manifests, &state.watch)?;
    }
    if state.agents().next().is_some() && bulkhead_cni.is_none() {
        tracing::warn!(
            "no bulkhead-cni beside {}: the lab's pods are added without it, so ADD does not wait for the agent and their MACs are not checked",
            exe.display()
        );
    }
    super::cni::write_conflists(state, bulkhead_cni.is_some())?;
    state.save()?;
    // As on a running node: the agents first, then the pods.
    let nodes: Vec<usize> = state.agents().map(|(i, _, _)| i).collect();
    if !nodes.is_empty() {
        start_agents(state, &nodes, exe, progress)?;
        for &i in &nodes {
            agent::wait_node(state, i, AGENT_TIMEOUT)?;
        }
    }
    let pods = state.hosts.iter().filter(|h| h.is_pod()).count();
    progress(&format!(
        "adding {pods} pods through the CNI chain {}",
        chain_names(state)
    ));
    let all: Vec<usize> = (0..state.nodes.len()).collect();
    super::cni::add_pods(state, &all, &cni_path)?;
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
        let log = if h.host_network {
            // In its node's namespace, on its node's addresses only.
            let bind: Vec<String> = h.ips.iter().map(ToString::to_string).collect();
            args.extend(["--bind".to_owned(), bind.join(",")]);
            dir.join(format!("{}-hostnet.log", h.netns))
        } else {
            dir.join(format!("{}.log", h.netns))
        };
        let log_file = bulkhead_policy::private::create(&log).map_err(LabError::io(&log))?;
        let mut cmd = net::exec_in(&h.netns, exe, &args)?;
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
    let enforced = if nodes.is_empty() {
        None
    } else {
        report_enforced(state, &nodes, progress)?
            .first()
            .map(|(_, s)| s.source_revision.clone())
    };
    start_kube_proxies(state, exe, enforced, progress)?;
    let host_network = state.hosts.iter().filter(|h| h.host_network).count();
    progress(&format!(
        "lab {} is up: {} pods{}, {} external hosts, in {:.1} s",
        state.name,
        state.hosts.iter().filter(|h| !h.external).count(),
        if host_network > 0 {
            format!(" ({host_network} hostNetwork, not enforced on)")
        } else {
            String::new()
        },
        state.hosts.iter().filter(|h| h.external).count(),
        start.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// How long each node's kube-proxy gets to install its first rules.
const KUBE_PROXY_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts each node's kube-proxy ([`kubeproxy::daemon`]) in its namespace
/// and waits until every one has installed the rules of `revision` (what
/// the agents enforce; without agents, the watched content).
fn start_kube_proxies(
    state: &mut LabState,
    exe: &Path,
    revision: Option<String>,
    progress: &dyn Fn(&str),
) -> Result<(), LabError> {
    if state.kube_proxy == ProxyMode::None {
        return Ok(());
    }
    progress(&format!(
        "starting kube-proxy ({} mode) on {} node(s)",
        state.kube_proxy,
        state.nodes.len()
    ));
    for i in 0..state.nodes.len() {
        let log = kubeproxy::daemon::status_path(state, i).with_extension("log");
        if let Some(dir) = log.parent() {
            bulkhead_policy::private::create_dir_all(dir).map_err(LabError::io(dir))?;
        }
        let log_file = bulkhead_policy::private::create(&log).map_err(LabError::io(&log))?;
        let args = [
            "lab".to_owned(),
            "kube-proxy".to_owned(),
            "--lab".to_owned(),
            state.name.clone(),
            "--node".to_owned(),
            i.to_string(),
        ];
        let mut cmd = net::exec_in(&state.nodes[i].netns, exe, &args)?;
        // Its own process group: a terminal's ^C to `lab up` must not reach it later.
        cmd.process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file));
        let child = cmd.spawn().map_err(|source| LabError::Spawn {
            program: exe.display().to_string(),
            source,
        })?;
        state.nodes[i].kube_proxy_pid = Some(child.id());
        state.save()?;
    }
    let revision = revision.unwrap_or_else(|| content_hash(state.watched()));
    kubeproxy::daemon::wait(state, &revision, KUBE_PROXY_TIMEOUT)
}

/// A one-node lab: `node bh-<lab>-node`; else `3 nodes (node-0 in
/// bh-<lab>-n0, ...)`.
fn describe_nodes(state: &LabState) -> String {
    match state.nodes.as_slice() {
        [one] => format!("node {}", one.netns),
        nodes => format!(
            "{} nodes ({})",
            nodes.len(),
            nodes
                .iter()
                .map(|n| format!("{} in {}", n.name, n.netns))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Starts lab `state`'s agents again after they died (every node's, or
/// those of `only`): on the same pins, bpffs and flags, so each adopts its
/// node's pinned dataplane (which enforced the last policy all along:
/// fail-static). An agent that runs is left alone, and refused when it is
/// the only one asked for (or every one runs), unless `source` switches
/// where they read pods and policy from: then the running agents are
/// stopped first (their pins stay in force until the new ones take over).
/// Records the new PIDs and source, and returns each restarted agent's
/// state (node index, state) once it enforces its source's content (or
/// fails as `lab sync` does).
pub fn restart_agent(
    state: &mut LabState,
    only: Option<usize>,
    source: Option<AgentSource>,
    exe: &Path,
    progress: &dyn Fn(&str),
) -> Result<Vec<(usize, AgentState)>, LabError> {
    if state.agent.is_none() {
        return Err(LabError::NoAgent {
            name: state.name.clone(),
        });
    }
    let asked: Vec<usize> = match only {
        Some(i) => vec![i],
        None => (0..state.nodes.len()).collect(),
    };
    let mut restart = Vec::new();
    let mut first_running = None;
    for &i in &asked {
        let Some(mut a) = state.nodes[i].agent.clone() else {
            continue;
        };
        if let Some(pid) = agent::running(&a) {
            if source.is_none() {
                first_running.get_or_insert(pid);
                continue;
            }
            agent::stop(&a.pin_dir, a.pid, progress);
        }
        if let Some(source) = &source {
            a.source = source.clone();
            state.set_agent(i, Some(a));
        }
        restart.push(i);
    }
    if restart.is_empty() {
        return Err(LabError::AgentRunning {
            name: state.name.clone(),
            pid: first_running.unwrap_or_default(),
        });
    }
    state.save()?;
    let enforced = launch_agents(state, &restart, exe, progress)?;
    if source.is_some() {
        // The kube-proxies read the agents' source: they switch with them.
        stop_kube_proxies(state);
        let revision = enforced.first().map(|(_, s)| s.source_revision.clone());
        start_kube_proxies(state, exe, revision, progress)?;
    }
    Ok(enforced)
}

/// Stops every node's kube-proxy of `state` (the recorded PIDs that still
/// run `lab kube-proxy --lab <lab>`), waiting (bounded) until they are gone.
fn stop_kube_proxies(state: &mut LabState) {
    let mut pids = Vec::new();
    for n in &mut state.nodes {
        if let Some(pid) = n.kube_proxy_pid.take()
            && is_lab_process(pid, &state.name, b"kube-proxy")
            && let Ok(raw) = i32::try_from(pid)
            && kill(Pid::from_raw(raw), Signal::SIGTERM).is_ok()
        {
            pids.push(pid);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|p| alive(*p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Starts the agents of nodes `nodes` of `state` (each on its bpffs,
/// mounted first), records their PIDs and waits until each enforces the
/// watched content; their states. (Restarted agents adopt the pods' CNI
/// registrations from their pin directories: a runtime does not repeat
/// ADD for running pods.)
fn launch_agents(
    state: &mut LabState,
    nodes: &[usize],
    exe: &Path,
    progress: &dyn Fn(&str),
) -> Result<Vec<(usize, AgentState)>, LabError> {
    start_agents(state, nodes, exe, progress)?;
    report_enforced(state, nodes, progress)
}

/// Starts the agents of nodes `nodes` (each on its bpffs, mounted first)
/// and records their PIDs, all before any is waited for: loading and
/// verifying the programs takes most of the wait, and nodes do it side by
/// side.
fn start_agents(
    state: &mut LabState,
    nodes: &[usize],
    exe: &Path,
    progress: &dyn Fn(&str),
) -> Result<(), LabError> {
    for &i in nodes {
        let Some(mut a) = state.nodes[i].agent.clone() else {
            continue;
        };
        progress(&format!(
            "starting the agent in {} (pins {}, reading {})",
            state.nodes[i].netns,
            a.pin_dir.display(),
            a.source.describe(state.watched())
        ));
        agent::mount_bpffs(&a)?;
        a.pid = Some(agent::start(state, i, &a, exe)?);
        state.set_agent(i, Some(a));
        state.save()?;
    }
    Ok(())
}

/// Waits until the agents of `nodes` enforce the watched content, says
/// so, and keeps what they enforce for `verify`; their states.
fn report_enforced(
    state: &LabState,
    nodes: &[usize],
    progress: &dyn Fn(&str),
) -> Result<Vec<(usize, AgentState)>, LabError> {
    let mut enforced = Vec::new();
    for &i in nodes {
        let s = agent::wait_node(state, i, AGENT_TIMEOUT)?;
        let many = state.nodes.len() > 1;
        progress(&format!(
            "the agent{} (pid {}) enforces revision {} on {} endpoints",
            if many {
                format!(" of {}", state.nodes[i].name)
            } else {
                String::new()
            },
            s.pid,
            s.revision,
            s.endpoints.len()
        ));
        enforced.push((i, s));
    }
    if let Some((_, s)) = enforced.first() {
        agent::keep_enforced(state, &s.source_revision)?;
    }
    if let Some(w) = super::cluster::endpoint_warning(state, &enforced) {
        progress(&w);
    }
    Ok(enforced)
}

/// `ptp (host-local) → bulkhead-cni`, for people.
fn chain_names(state: &LabState) -> String {
    let Some(conf) = state.nodes.first().and_then(|n| n.cni_conf.as_ref()) else {
        return "?".into();
    };
    let list: serde_json::Value = std::fs::read(conf)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    list["plugins"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| match p["ipam"]["type"].as_str() {
            Some(ipam) => format!("{} ({ipam})", p["type"].as_str().unwrap_or("?")),
            None => p["type"].as_str().unwrap_or("?").to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" → ")
}

/// What `down` removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DownReport {
    /// Pods deleted cleanly through their node's CNI chain.
    pub cni_deleted: usize,
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
    is_lab_process(pid, lab, b"serve")
}

/// Whether `pid` runs `bulkhead lab <command> ... --lab <lab>`.
fn is_lab_process(pid: u32, lab: &str, command: &[u8]) -> bool {
    with_args(pid, |args| {
        args.windows(2).any(|w| w == [b"lab".as_slice(), command])
            && args
                .windows(2)
                .any(|w| w == [b"--lab".as_slice(), lab.as_bytes()])
    })
}

/// `test` of `pid`'s command line arguments; false when it is gone.
fn with_args(pid: u32, test: impl FnOnce(&[&[u8]]) -> bool) -> bool {
    let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = raw.split(|b| *b == 0).collect();
    test(&args)
}

/// Whether `pid` runs `bulkhead lab up --name <lab>`.
fn is_lab_up(pid: u32, lab: &str) -> bool {
    let joined = format!("--name={lab}");
    with_args(pid, |args| {
        args.windows(2).any(|w| w == [b"lab".as_slice(), b"up"])
            && (args.contains(&joined.as_bytes())
                || args
                    .windows(2)
                    .any(|w| w == [b"--name".as_slice(), lab.as_bytes()]))
    })
}

fn alive(pid: u32) -> bool {
    // A zombie has no cmdline and is as good as gone.
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())
}

/// Removes every process, namespace (and with them every veth) and the
/// state of lab `name`: first the agents of every node (stopped, their
/// pins cleaned up, the lab's bpffs mounts unmounted), then the servers
/// and namespaces (hosts, nodes, fabric).
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
    if let Some(s) = &state {
        // As a runtime removes sandboxes: DEL through each node's chain
        // while its agent still runs; what fails is removed below anyway.
        let pods = s.hosts.iter().filter(|h| h.is_pod()).count();
        if pods > 0 && s.nodes.iter().any(|n| n.cni_conf.is_some()) {
            progress(&format!("CNI DEL of {pods} pods"));
            report.cni_deleted = super::cni::del_pods(s, std::env::current_exe().ok().as_deref());
        }
    }
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
    // Hosts first (their veth ends go, taking the node ends with them),
    // then the nodes, the fabric last.
    let fabric = super::naming::fabric_netns(name);
    namespaces.sort_by_key(|n| {
        if *n == fabric {
            2
        } else if super::naming::node_index(name, n).is_some() {
            1
        } else {
            0
        }
    });
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
