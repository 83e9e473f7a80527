//! `bulkhead lab ui`: where each node agent of the lab serves its web UI
//! (the network map). `lab up` starts the agents with `--ui-addr
//! 127.0.0.1:0` (a free port each, on the host's loopback: the listener is
//! bound before the agent enters its node's namespace), and each agent
//! records the address it got in its state file.

use std::io::Write;
use std::net::SocketAddr;

use clap::Args;
use serde::Serialize;

use super::{NameArg, load_state};
use crate::cli::{CliError, Output};
use bulkhead_agent::AgentState;
use bulkhead_lab::LabError;
use bulkhead_lab::state::LabState;

/// The default `lab up --ui`: loopback, any free port.
pub const DEFAULT_UI_ADDR: &str = "127.0.0.1:0";

/// Arguments of `lab ui`.
#[derive(Debug, Args)]
pub struct UiArgs {
    /// Lab name.
    #[command(flatten)]
    pub name: NameArg,
    /// Output: `text` (a line per node), or `json` (one object).
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
}

/// One node agent's UI.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct NodeUi {
    /// The node's name.
    pub node: String,
    /// Its network namespace.
    pub netns: String,
    /// The address its agent's UI listener serves, if it has one and runs.
    pub addr: Option<SocketAddr>,
    /// The UI's URL, if it has one.
    pub url: Option<String>,
}

/// The UI's URL at `addr`.
pub fn url(addr: SocketAddr) -> String {
    format!("http://{addr}/ui/")
}

/// Each node agent's UI, as its state file records it.
pub fn node_uis(state: &LabState) -> Vec<NodeUi> {
    state
        .agents()
        .map(|(_, node, agent)| {
            let addr = bulkhead_lab::agent::running(agent)
                .and_then(|_| AgentState::read(&agent.pin_dir))
                .and_then(|s| s.ui_addr);
            NodeUi {
                node: node.name.clone(),
                netns: node.netns.clone(),
                addr,
                url: addr.map(url),
            }
        })
        .collect()
}

/// The JSON of `lab ui`.
#[derive(Serialize)]
struct Report<'a> {
    lab: &'a str,
    uis: &'a [NodeUi],
}

/// Runs `lab ui`.
pub fn run(args: &UiArgs) -> Result<(), CliError> {
    let state = load_state(&args.name.name)?;
    if state.agent.is_none() {
        return Err(LabError::NoAgent {
            name: state.name.clone(),
        }
        .into());
    }
    let uis = node_uis(&state);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match args.output {
        Output::Json => {
            let report = Report {
                lab: &state.name,
                uis: &uis,
            };
            serde_json::to_writer(&mut out, &report).map_err(std::io::Error::other)?;
            writeln!(out)?;
        }
        Output::Text => {
            for u in &uis {
                let what = u.url.clone().unwrap_or_else(|| {
                    "no UI (started with --no-ui, or its agent is not running)".to_owned()
                });
                writeln!(out, "{:<10} {what}", u.node)?;
            }
        }
    }
    out.flush()?;
    Ok(())
}
