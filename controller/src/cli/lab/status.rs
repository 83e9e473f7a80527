//! `bulkhead lab status`: what the lab is (pods, addresses, external
//! hosts), its agent, where the agent reads pods and policy from, and how
//! that source is doing (reachable, the view's age, revisions).

use std::io::Write;

use clap::Args;
use serde::Serialize;

use super::{NameArg, load_state};
use crate::agent::AgentState;
use crate::cli::status::{stale_seconds, write_source};
use crate::cli::{CliError, Output};
use crate::lab::agent;
use crate::lab::state::{AgentSource, LabState};
use crate::source::SourceStatus;

/// Arguments of `lab status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Lab name.
    #[command(flatten)]
    pub name: NameArg,
    /// Output: `text`, or `json` (one object).
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
}

/// One host of the report.
#[derive(Serialize)]
struct HostReport<'a> {
    name: &'a str,
    external: bool,
    netns: &'a str,
    ips: &'a [std::net::IpAddr],
    /// Whether the agent enforces on it (pods only).
    endpoint: bool,
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
    hosts: Vec<HostReport<'a>>,
}

/// Runs `lab status`.
pub fn run(args: &StatusArgs) -> Result<(), CliError> {
    let state = load_state(&args.name.name)?;
    let running = state.agent.as_ref().and_then(agent::running);
    let agent_state = state
        .agent
        .as_ref()
        .and_then(|a| AgentState::read(&a.pin_dir));
    let endpoint = |name: &str| {
        agent_state
            .as_ref()
            .is_some_and(|s| s.endpoints.iter().any(|e| e.pod == name))
    };
    let report = Report {
        name: &state.name,
        node: &state.node,
        source: state.agent.as_ref().map(|a| &a.source),
        watched: state.watched(),
        agent_running: running.is_some(),
        agent_pid: running,
        agent_source: agent_state.as_ref().map(|s| &s.source),
        agent_view_stale_seconds: agent_state.as_ref().and_then(stale_seconds),
        source_revision: agent_state.as_ref().map(|s| s.source_revision.as_str()),
        enforced_revision: agent_state
            .as_ref()
            .and_then(|s| s.enforced_revision.as_deref()),
        agent_error: agent_state.as_ref().and_then(|s| s.error.as_deref()),
        hosts: state
            .hosts
            .iter()
            .map(|h| HostReport {
                name: &h.name,
                external: h.external,
                netns: &h.netns,
                ips: &h.ips,
                endpoint: !h.external && endpoint(&h.name),
            })
            .collect(),
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match args.output {
        Output::Json => {
            serde_json::to_writer(&mut out, &report).map_err(std::io::Error::other)?;
            writeln!(out)?;
        }
        Output::Text => write_text(&mut out, &state, &report, agent_state.as_ref())?,
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
        }
    }
    if let Some(s) = agent_state {
        write_source(out, s)?;
        if let Some(e) = &s.error {
            writeln!(out, "error:     {e}")?;
        }
    }
    writeln!(out, "hosts:")?;
    for h in &report.hosts {
        let ips: Vec<String> = h.ips.iter().map(ToString::to_string).collect();
        let role = match (h.external, h.endpoint) {
            (true, _) => "external host",
            (false, true) => "enforced",
            (false, false) if state.agent.is_some() => "NOT an endpoint of the agent",
            (false, false) => "open (no agent)",
        };
        writeln!(
            out,
            "  {:<24} {:<12} {:<34} {role}",
            h.name,
            h.netns,
            ips.join(" ")
        )?;
    }
    Ok(())
}
