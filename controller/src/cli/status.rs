//! `bulkhead status`: what the pinned dataplane enforces (revision,
//! endpoints, map fill, drops), read from bpffs, with the agent's names and
//! last error from its state file.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use super::{CliError, Output};
use bulkhead_agent::AgentState;
use bulkhead_agent::quarantine::QuarantineState;
use bulkhead_dataplane::status::{self, MapStatus};
use bulkhead_dataplane::{DEFAULT_PIN_DIR, DataplaneError, PinDir};
use bulkhead_lab::LabError;
use bulkhead_lab::state::LabState;
use bulkhead_policy::source::SourceStatus;

/// Arguments of `bulkhead status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Pin directory of the agent.
    #[arg(long = "bpffs", value_name = "DIR", default_value = DEFAULT_PIN_DIR)]
    pub pin_dir: PathBuf,
    /// The agent of this lab (`bulkhead lab up --name LAB`) instead of --bpffs.
    #[arg(long, value_name = "LAB", conflicts_with = "pin_dir")]
    pub lab: Option<String>,
    /// With --lab: the agent of this node (its name or namespace; default
    /// the first node's).
    #[arg(long, value_name = "NODE", requires = "lab")]
    pub node: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Serialize)]
struct Report<'a> {
    pin_dir: &'a std::path::Path,
    /// Whether the agent runs ([`bulkhead_agent::process::is_bulkhead`]).
    agent_running: bool,
    /// Its PID while it runs.
    agent_pid: Option<u32>,
    agent_error: Option<&'a str>,
    /// Warnings about the manifests in force.
    agent_warnings: &'a [String],
    enforced_revision: Option<&'a str>,
    /// The policy source (manifests or the Kubernetes API) and its state.
    agent_source: Option<&'a SourceStatus>,
    /// Age of the view in force while the source cannot be read, seconds.
    agent_view_stale_seconds: Option<u64>,
    /// With --lab: where the lab's agent reads pods and policy from.
    #[serde(skip_serializing_if = "Option::is_none")]
    lab_source: Option<&'a str>,
    #[serde(flatten)]
    maps: &'a MapStatus,
    pods: Vec<(u32, &'a str, &'a str)>,
    /// The quarantines in force as of the agent's last sync.
    quarantines: &'a [QuarantineState],
    /// The agent's web UI (`--ui-addr`), while it runs.
    ui_url: Option<String>,
}

/// The pin directory of lab `name`'s agent, and where it reads pods and
/// policy from (for people).
fn lab_agent(name: &str, node: Option<&str>) -> Result<(PathBuf, String), CliError> {
    bulkhead_lab::naming::check_lab_name(name)?;
    let state = LabState::load(name)?.ok_or_else(|| LabError::NotUp {
        name: name.to_owned(),
        path: bulkhead_lab::state::state_path(name),
    })?;
    let index = node.map(|n| state.node_index(n)).transpose()?.unwrap_or(0);
    let agent = state.nodes[index]
        .agent
        .as_ref()
        .ok_or_else(|| LabError::NoAgent {
            name: name.to_owned(),
        })?;
    Ok((
        agent.pin_dir.clone(),
        agent.source.describe(state.watched()),
    ))
}

/// Runs `bulkhead status`.
pub fn run(args: &StatusArgs) -> Result<(), CliError> {
    let (pin_dir, lab_source) = match &args.lab {
        Some(lab) => {
            let (pins, source) = lab_agent(lab, args.node.as_deref())?;
            (pins, Some(source))
        }
        None => (args.pin_dir.clone(), None),
    };
    let args = &StatusArgs {
        pin_dir,
        lab: args.lab.clone(),
        node: args.node.clone(),
        output: args.output,
    };
    let pins = PinDir::existing(&args.pin_dir)?
        .filter(|p| p.map("CONFIG").exists())
        .ok_or_else(|| DataplaneError::Bpffs {
            path: args.pin_dir.clone(),
            reason: "nothing pinned here (is an agent running with this --bpffs?)".to_owned(),
        })?;
    let maps = status::read(&pins)?;
    let state = AgentState::read(&args.pin_dir);
    // Not merely a PID that exists: a killed agent may linger as a zombie.
    let alive = state
        .as_ref()
        .filter(|s| bulkhead_agent::process::is_bulkhead(s.pid));
    let pod_of = |ifindex: u32| {
        state
            .as_ref()
            .and_then(|s| s.endpoints.iter().find(|e| e.ifindex == ifindex))
    };
    let mut out = std::io::stdout().lock();
    match args.output {
        Output::Json => {
            let report = Report {
                pin_dir: &args.pin_dir,
                agent_running: alive.is_some(),
                agent_pid: alive.map(|s| s.pid),
                agent_error: state.as_ref().and_then(|s| s.error.as_deref()),
                agent_warnings: state.as_ref().map_or(&[], |s| s.warnings.as_slice()),
                enforced_revision: state.as_ref().and_then(|s| s.enforced_revision.as_deref()),
                agent_source: state.as_ref().map(|s| &s.source),
                agent_view_stale_seconds: state.as_ref().and_then(stale_seconds),
                lab_source: lab_source.as_deref(),
                maps: &maps,
                pods: maps
                    .endpoints
                    .iter()
                    .filter_map(|e| {
                        pod_of(e.ifindex).map(|p| (e.ifindex, p.pod.as_str(), p.ifname.as_str()))
                    })
                    .collect(),
                quarantines: state.as_ref().map_or(&[], |s| s.quarantines.as_slice()),
                ui_url: alive.and_then(|s| s.ui_addr).map(super::lab::ui::url),
            };
            serde_json::to_writer(&mut out, &report).map_err(std::io::Error::other)?;
            writeln!(out)?;
        }
        Output::Text => {
            writeln!(out, "pins:      {}", pins.root.display())?;
            match alive {
                Some(s) => {
                    writeln!(out, "agent:     running (pid {})", s.pid)?;
                    if let Some(addr) = s.ui_addr {
                        writeln!(out, "web UI:    {}", super::lab::ui::url(addr))?;
                    }
                }
                None => match &args.lab {
                    Some(lab) => writeln!(
                        out,
                        "agent:     not running (enforcement stays as pinned; \
                         `bulkhead lab restart-agent --name {lab}` starts it again)"
                    )?,
                    None => writeln!(out, "agent:     not running (enforcement stays as pinned)")?,
                },
            }
            if let (Some(lab), Some(source)) = (&args.lab, &lab_source) {
                writeln!(out, "lab:       {lab}: the agent reads {source}")?;
            }
            if let Some(s) = &state {
                write_source(&mut out, s)?;
            }
            if let Some(e) = state.as_ref().and_then(|s| s.error.as_deref()) {
                writeln!(out, "error:     {e}")?;
            }
            for w in state.iter().flat_map(|s| &s.warnings) {
                writeln!(out, "warning:   {w}")?;
            }
            writeln!(
                out,
                "revision:  {} (slot {})",
                maps.revision, maps.active_slot
            )?;
            writeln!(
                out,
                "routing:   {}",
                if maps.host_routing {
                    "host routing (pod to pod on this node: delivered by from_pod)"
                } else {
                    "the node's stack"
                }
            )?;
            writeln!(out, "maps:")?;
            for m in &maps.maps {
                writeln!(
                    out,
                    "  {:<11} {:>8} / {:<8} ({:.1}%)",
                    m.map,
                    m.entries,
                    m.capacity,
                    100.0 * m.entries as f64 / f64::from(m.capacity)
                )?;
            }
            writeln!(out, "endpoints: {}", maps.endpoints.len())?;
            for e in &maps.endpoints {
                let (pod, dev) =
                    pod_of(e.ifindex).map_or(("?", "?"), |p| (p.pod.as_str(), p.ifname.as_str()));
                let addrs: Vec<String> = e.addresses.iter().map(ToString::to_string).collect();
                // "isolated", "open", and "+audit" where staged policies
                // are checked beside the enforced ones.
                let side = |isolated: bool, audit: bool| {
                    let s = if isolated { "isolated" } else { "open" };
                    if audit {
                        format!("{s}+audit")
                    } else {
                        s.to_owned()
                    }
                };
                writeln!(
                    out,
                    "  {pod:<24} {dev:<14} ifindex {:<5} in:{:<14} out:{:<14} hooks:{:<24} {}",
                    e.ifindex,
                    side(e.isolated_ingress, e.audit_ingress),
                    side(e.isolated_egress, e.audit_egress),
                    e.hooks.join(","),
                    addrs.join(" ")
                )?;
            }
            let quarantines = state.as_ref().map_or(&[][..], |s| &s.quarantines);
            if quarantines.is_empty() {
                writeln!(out, "quarantines: none")?;
            } else {
                writeln!(out, "quarantines: {}", quarantines.len())?;
                for q in quarantines {
                    super::quarantine::write_state(&mut out, q)?;
                }
            }
            writeln!(out, "drops:")?;
            for (reason, n) in &maps.drops {
                writeln!(out, "  {reason:<22} {n}")?;
            }
            if !maps.flows.is_empty() {
                writeln!(out, "flow accounting:")?;
                for (counter, n) in &maps.flows {
                    writeln!(out, "  {counter:<22} {n}")?;
                }
            }
        }
    }
    Ok(())
}

/// Seconds since the source stopped answering, while it does not.
pub(crate) fn stale_seconds(state: &AgentState) -> Option<u64> {
    let since = state.source.stale_since_unix_ms?;
    Some(bulkhead_policy::source::now_unix_ms().saturating_sub(since) / 1000)
}

/// The source line(s) of the text report.
pub(crate) fn write_source(out: &mut impl Write, state: &AgentState) -> std::io::Result<()> {
    let source = &state.source;
    if source.kind.is_empty() {
        return Ok(());
    }
    let health = match (source.connected, stale_seconds(state)) {
        (true, _) => "current".to_owned(),
        (false, Some(age)) => format!("NOT REACHABLE: enforcing the view of {age} s ago"),
        (false, None) => "not reachable".to_owned(),
    };
    writeln!(
        out,
        "source:    {} {} ({health})",
        source.kind, source.location
    )?;
    if let Some(e) = &source.last_error {
        writeln!(out, "           last error: {e}")?;
    }
    writeln!(
        out,
        "           revision {} read, {} enforced",
        if state.source_revision.is_empty() {
            "-"
        } else {
            &state.source_revision
        },
        state.enforced_revision.as_deref().unwrap_or("-")
    )
}
