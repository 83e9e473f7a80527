//! `bulkhead baseline activate | deactivate | list`: the baselines a
//! running agent alerts on, changed through its API socket (in force when
//! the command returns, persisted by the agent across restarts).

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use super::BaselineCliError;
use crate::cli::flows::{agent_sockets, connect};
use crate::cli::quarantine::AgentSocketArgs;
use crate::cli::{CliError, Output};
use bulkhead_agent::alerts::ActiveBaseline;
use bulkhead_agent::api::client::{self, ClientError};
use bulkhead_learn::baseline::Baseline;

/// Arguments of `bulkhead baseline activate`.
#[derive(Debug, Args)]
pub struct ActivateArgs {
    /// The baseline file (`bulkhead baseline take` writes it); replaces an
    /// activated baseline of the same name.
    pub file: PathBuf,
    /// Which agent.
    #[command(flatten)]
    pub agent: AgentSocketArgs,
    /// Output format (JSON: the agent's answer, one line per agent).
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// Arguments of `bulkhead baseline deactivate`.
#[derive(Debug, Args)]
pub struct DeactivateArgs {
    /// The baseline's name.
    pub name: String,
    /// Which agent.
    #[command(flatten)]
    pub agent: AgentSocketArgs,
    /// Output format (JSON: the agent's answer, one line per agent).
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// Arguments of `bulkhead baseline list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Which agent.
    #[command(flatten)]
    pub agent: AgentSocketArgs,
    /// Output format (JSON: the agent's answer, one line per agent).
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// What one agent answered.
enum Answer {
    List(Vec<ActiveBaseline>),
    Deactivated(bulkhead_agent::api::DeactivateAnswer),
}

/// Sends `call` to every agent `agent` names, printing each answer.
fn each_agent(
    agent: &AgentSocketArgs,
    output: Output,
    what: &str,
    call: &dyn Fn(std::os::unix::net::UnixStream) -> Result<Answer, ClientError>,
) -> Result<(), CliError> {
    let (sockets, hint) =
        agent_sockets(&agent.socket, agent.lab.as_deref(), agent.node.as_deref())?;
    let many = sockets.len() > 1;
    let mut out = std::io::stdout().lock();
    for socket in &sockets {
        let stream = connect(socket, hint.clone()).map_err(BaselineCliError::from)?;
        let answer = call(stream).map_err(|source| BaselineCliError::Agent {
            socket: socket.clone(),
            source,
        })?;
        if output == Output::Json {
            match &answer {
                Answer::List(l) => serde_json::to_writer(&mut out, l),
                Answer::Deactivated(d) => serde_json::to_writer(&mut out, d),
            }
            .map_err(std::io::Error::from)?;
            writeln!(out)?;
            continue;
        }
        if many {
            writeln!(out, "agent {}:", socket.display())?;
        }
        let list = match answer {
            Answer::List(l) => {
                if !what.is_empty() {
                    writeln!(out, "{what}")?;
                }
                l
            }
            Answer::Deactivated(d) => {
                let said = if d.deactivated {
                    "deactivated"
                } else {
                    "was not active"
                };
                writeln!(out, "{what} {said}")?;
                d.active
            }
        };
        write_list(&mut out, &list)?;
    }
    Ok(())
}

fn write_list(out: &mut impl Write, list: &[ActiveBaseline]) -> std::io::Result<()> {
    if list.is_empty() {
        return writeln!(out, "no baseline active: no alerts");
    }
    writeln!(out, "active baselines:")?;
    for b in list {
        writeln!(
            out,
            "  {} v{}: {} edges of {} ({})",
            b.name,
            b.version,
            b.edges,
            b.scope.join(", "),
            if b.origin == "flag" {
                "--baseline"
            } else {
                "activated"
            }
        )?;
    }
    Ok(())
}

/// Runs `bulkhead baseline activate`.
pub fn activate(args: &ActivateArgs) -> Result<(), CliError> {
    // Read and checked here first: a bad file names itself, and no agent changes.
    let b = Baseline::read(&args.file).map_err(BaselineCliError::from)?;
    let bytes = serde_json::to_vec(&b).expect("a baseline serializes");
    let what = format!("baseline {} v{} activated", b.name, b.version());
    each_agent(&args.agent, args.output, &what, &|s| {
        client::activate_baseline(s, &bytes).map(Answer::List)
    })
}

/// Runs `bulkhead baseline deactivate`.
pub fn deactivate(args: &DeactivateArgs) -> Result<(), CliError> {
    let what = format!("baseline {}", args.name);
    each_agent(&args.agent, args.output, &what, &|s| {
        client::deactivate_baseline(s, &args.name).map(Answer::Deactivated)
    })
}

/// Runs `bulkhead baseline list`.
pub fn list(args: &ListArgs) -> Result<(), CliError> {
    each_agent(&args.agent, args.output, "", &|s| {
        client::baselines(s).map(Answer::List)
    })
}
