//! `bulkhead lab status`: what the lab is (pods, addresses, external
//! hosts), its agent, where the agent reads pods and policy from, and how
//! that source is doing (reachable, the view's age, revisions).

use std::io::Write;

use clap::Args;
use serde::Serialize;

use super::{NameArg, load_state};
use crate::cli::status::{stale_seconds, write_source};
use crate::cli::{CliError, Output};
use bulkhead_agent::AgentState;
use bulkhead_lab::agent;
use bulkhead_lab::kubeproxy::ProxyMode;
use bulkhead_lab::kubeproxy::daemon::{self, ProxyStatus};
use bulkhead_lab::state::{AgentSource, LabState};
use bulkhead_policy::source::SourceStatus;

/// Arguments of `lab status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Lab name.
    #[command(flatten)]
    pub name: NameArg,
    /// Output: `text`, or `json` (one object).
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
    /// Only this node (its name or namespace) and its hosts.
    #[arg(long, value_name = "NODE")]
    pub node: Option<String>,
}

/// One host of the report.
#[derive(Serialize)]
struct HostReport<'a> {
    name: &'a str,
    external: bool,
    netns: &'a str,
    ips: &'a [std::net::IpAddr],
    /// Whether its node's agent enforces on it (pods only).
    endpoint: bool,
    /// The node it is wired to.
    node: &'a str,
    /// A hostNetwork pod (in its node's namespace, never enforced on).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    host_network: bool,
}

impl HostReport<'_> {
    /// Its addresses, space-separated.
    fn addresses(&self) -> String {
        let ips: Vec<String> = self.ips.iter().map(ToString::to_string).collect();
        ips.join(" ")
    }

    /// What it is to the lab: an external host, or a pod enforced (or
    /// not) by `whose` agent, when the lab runs one.
    fn role(&self, agent: bool, whose: &str) -> String {
        match (self.external, self.endpoint) {
            (true, _) => "external host".to_owned(),
            _ if self.host_network => {
                "hostNetwork (its node's address; not enforced on)".to_owned()
            }
            (false, true) => "enforced".to_owned(),
            (false, false) if agent => format!("NOT an endpoint of {whose}"),
            (false, false) => "open (no agent)".to_owned(),
        }
    }
}

/// One node of the report.
#[derive(Serialize)]
struct NodeReport<'a> {
    name: &'a str,
    netns: &'a str,
    fabric_ips: &'a [std::net::IpAddr],
    pod_cidrs: &'a [String],
    agent_running: bool,
    agent_pid: Option<u32>,
    pin_dir: Option<&'a std::path::Path>,
    api_socket: Option<&'a std::path::Path>,
    source_revision: Option<&'a str>,
    enforced_revision: Option<&'a str>,
    agent_error: Option<&'a str>,
    endpoints: usize,
    /// Its agent's web UI (`lab ui`), while it runs one.
    ui_url: Option<String>,
}

/// The JSON report.
#[derive(Serialize)]
struct Report<'a> {
    name: &'a str,
    node: &'a str,
    /// Where the lab's agent reads pods and policy from (`None`: no agent).
    source: Option<&'a AgentSource>,
    /// The watched manifests.
    watched: &'a std::path::Path,
    agent_running: bool,
    agent_pid: Option<u32>,
    /// The agent's word on its source.
    agent_source: Option<&'a SourceStatus>,
    /// Age of the view in force while the source cannot be read, seconds.
    agent_view_stale_seconds: Option<u64>,
    source_revision: Option<&'a str>,
    enforced_revision: Option<&'a str>,
    agent_error: Option<&'a str>,
    /// The web UI's URL.
    ui_url: Option<String>,
    /// Every node (or the one --node names); the fields above are the
    /// first one's.
    /// The Service NAT rules the nodes get (`--kube-proxy`).
    kube_proxy: ProxyMode,
    /// Each shown node's kube-proxy: the revision its rules are of, and
    /// its error (`None` while none ran).
    kube_proxy_status: Vec<Option<ProxyStatus>>,
    nodes: Vec<NodeReport<'a>>,
    hosts: Vec<HostReport<'a>>,
}

/// Runs `lab status`.
pub fn run(args: &StatusArgs) -> Result<(), CliError> {
    let state = load_state(&args.name.name)?;
    let shown = state.node_indices(args.node.as_deref())?;
    let running: Vec<Option<u32>> = state
        .nodes
        .iter()
        .map(|n| n.agent.as_ref().and_then(agent::running))
        .collect();
    let agent_states: Vec<Option<AgentState>> = state
        .nodes
        .iter()
        .map(|n| n.agent.as_ref().and_then(|a| AgentState::read(&a.pin_dir)))
        .collect();
    let endpoint = |node: usize, name: &str| {
        agent_states[node]
            .as_ref()
            .is_some_and(|s| s.endpoints.iter().any(|e| e.pod == name))
    };
    let first = shown[0];
    let agent_state = agent_states[first].as_ref();
    let ui_url = |i: usize| {
        running[i]
            .and(agent_states[i].as_ref())
            .and_then(|s| s.ui_addr)
            .map(super::ui::url)
    };
    let report = Report {
        name: &state.name,
        node: &state.nodes[first].netns,
        source: state.agent.as_ref().map(|a| &a.source),
        watched: state.watched(),
        agent_running: running[first].is_some(),
        agent_pid: running[first],
        agent_source: agent_state.map(|s| &s.source),
        agent_view_stale_seconds: agent_state.and_then(stale_seconds),
        source_revision: agent_state.map(|s| s.source_revision.as_str()),
        enforced_revision: agent_state.and_then(|s| s.enforced_revision.as_deref()),
        agent_error: agent_state.and_then(|s| s.error.as_deref()),
        ui_url: ui_url(first),
        kube_proxy: state.kube_proxy,
        kube_proxy_status: shown
            .iter()
            .map(|&i| daemon::read_status(&daemon::status_path(&state, i)))
            .collect(),
        nodes: shown
            .iter()
            .map(|&i| {
                let n = &state.nodes[i];
                let s = agent_states[i].as_ref();
                NodeReport {
                    name: &n.name,
                    netns: &n.netns,
                    fabric_ips: &n.fabric_ips,
                    pod_cidrs: &n.pod_cidrs,
                    agent_running: running[i].is_some(),
                    agent_pid: running[i],
                    pin_dir: n.agent.as_ref().map(|a| a.pin_dir.as_path()),
                    api_socket: n.agent.as_ref().map(|a| a.api_socket.as_path()),
                    source_revision: s.map(|s| s.source_revision.as_str()),
                    enforced_revision: s.and_then(|s| s.enforced_revision.as_deref()),
                    agent_error: s.and_then(|s| s.error.as_deref()),
                    endpoints: s.map_or(0, |s| s.endpoints.len()),
                    ui_url: ui_url(i),
                }
            })
            .collect(),
        hosts: state
            .hosts
            .iter()
            .filter(|h| shown.contains(&h.node))
            .map(|h| HostReport {
                name: &h.name,
                external: h.external,
                netns: &h.netns,
                ips: &h.ips,
                endpoint: h.is_pod() && endpoint(h.node, &h.name),
                host_network: h.host_network,
                node: &state.node_of(h).name,
            })
            .collect(),
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match args.output {
        Output::Json => {
            serde_json::to_writer(&mut out, &report).map_err(std::io::Error::other)?;
            writeln!(out)?;
        }
        Output::Text => write_text(&mut out, &state, &report, agent_state)?,
    }
    out.flush()?;
    Ok(())
}

fn write_text(
    out: &mut impl Write,
    state: &LabState,
    report: &Report<'_>,
    agent_state: Option<&AgentState>,
) -> std::io::Result<()> {
    let pods = report.hosts.iter().filter(|h| !h.external).count();
    if state.nodes.len() > 1 {
        return write_nodes_text(out, state, report, pods);
    }
    writeln!(
        out,
        "lab:       {} (node namespace {}): {pods} pods, {} external hosts",
        report.name,
        report.node,
        report.hosts.len() - pods
    )?;
    match (&state.agent, report.agent_pid) {
        (None, _) => writeln!(out, "agent:     none (made with --no-agent)")?,
        (Some(a), pid) => {
            match pid {
                Some(pid) => writeln!(out, "agent:     running (pid {pid})")?,
                None => writeln!(
                    out,
                    "agent:     not running (enforcement stays as pinned; \
                     `bulkhead lab restart-agent --name {}` starts it again)",
                    report.name
                )?,
            }
            writeln!(out, "reads:     {}", a.source.describe(state.watched()))?;
            if let Some(url) = &report.ui_url {
                writeln!(out, "web UI:    {url}")?;
            }
        }
    }
    if let Some(s) = agent_state {
        write_source(out, s)?;
        if let Some(e) = &s.error {
            writeln!(out, "error:     {e}")?;
        }
    }
    write_kube_proxy(out, report)?;
    writeln!(out, "hosts:")?;
    for h in &report.hosts {
        writeln!(
            out,
            "  {:<24} {:<12} {:<34} {}",
            h.name,
            h.netns,
            h.addresses(),
            h.role(state.agent.is_some(), "the agent")
        )?;
    }
    Ok(())
}

/// `write_text` for a lab of several nodes: a line per node and its
/// agent, then the hosts with their nodes.
fn write_nodes_text(
    out: &mut impl Write,
    state: &LabState,
    report: &Report<'_>,
    pods: usize,
) -> std::io::Result<()> {
    writeln!(
        out,
        "lab:       {}: {} nodes, {pods} pods, {} external hosts (behind {})",
        report.name,
        state.nodes.len(),
        report.hosts.iter().filter(|h| h.external).count(),
        state.nodes[0].name
    )?;
    if let Some(a) = &state.agent {
        writeln!(out, "reads:     {}", a.source.describe(state.watched()))?;
    }
    writeln!(out, "nodes:")?;
    for n in &report.nodes {
        let ips: Vec<String> = n.fabric_ips.iter().map(ToString::to_string).collect();
        let agent = match (state.agent.is_some(), n.agent_pid) {
            (false, _) => "no agent".to_owned(),
            (true, Some(pid)) => format!(
                "agent pid {pid}, enforces {} on {} endpoints{}{}",
                n.enforced_revision.unwrap_or("nothing yet"),
                n.endpoints,
                n.agent_error
                    .map(|e| format!(" (error: {e})"))
                    .unwrap_or_default(),
                n.ui_url
                    .as_ref()
                    .map(|u| format!(", web UI {u}"))
                    .unwrap_or_default()
            ),
            (true, None) => format!(
                "agent NOT running (enforcement stays as pinned; \
                 `bulkhead lab restart-agent --name {} --node {}` starts it again)",
                report.name, n.name
            ),
        };
        writeln!(
            out,
            "  {:<10} {:<12} fabric {:<28} pods {:<32} {agent}",
            n.name,
            n.netns,
            ips.join(" "),
            n.pod_cidrs.join(" ")
        )?;
    }
    write_kube_proxy(out, report)?;
    writeln!(out, "hosts:")?;
    for h in &report.hosts {
        writeln!(
            out,
            "  {:<24} {:<10} {:<12} {:<34} {}",
            h.name,
            h.node,
            h.netns,
            h.addresses(),
            h.role(state.agent.is_some(), "its node's agent")
        )?;
    }
    Ok(())
}

/// `services:` the kube-proxy mode and what each shown node's rules are of.
fn write_kube_proxy(out: &mut impl Write, report: &Report<'_>) -> std::io::Result<()> {
    if report.kube_proxy == ProxyMode::None {
        return writeln!(
            out,
            "services:  not translated (made with --kube-proxy none)"
        );
    }
    for (n, s) in report.nodes.iter().zip(&report.kube_proxy_status) {
        let what = match s {
            None => "no rules yet".to_owned(),
            Some(s) => {
                let rules = match &s.revision {
                    Some(r) => format!("rules of revision {r}"),
                    None => "no rules yet".to_owned(),
                };
                match &s.error {
                    Some((rev, e)) => format!("{rules} (revision {rev} failed: {e})"),
                    None => rules,
                }
            }
        };
        writeln!(
            out,
            "services:  kube-proxy {} mode on {}: {what}",
            report.kube_proxy, n.name
        )?;
    }
    Ok(())
}
