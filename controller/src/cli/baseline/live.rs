//! `bulkhead baseline activate | deactivate | list`: the baselines a
//! running agent alerts on, changed through its API socket (in force when
//! the command returns, persisted by the agent across restarts).

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use super::BaselineCliError;
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

fn write_list(out: &mut dyn Write, list: &[ActiveBaseline]) -> std::io::Result<()> {
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

fn refused(socket: PathBuf, source: ClientError) -> CliError {
    BaselineCliError::Agent { socket, source }.into()
}

/// Runs `bulkhead baseline activate`.
pub fn activate(args: &ActivateArgs) -> Result<(), CliError> {
    // Read and checked here first: a bad file names itself, and no agent changes.
    let b = Baseline::read(&args.file).map_err(BaselineCliError::from)?;
    let bytes = serde_json::to_vec(&b).expect("a baseline serializes");
    let said = format!("baseline {} v{} activated", b.name, b.version());
    args.agent.each(
        args.output,
        |s| client::activate_baseline(s, &bytes),
        refused,
        |out, list| {
            writeln!(out, "{said}")?;
            write_list(out, list)
        },
    )
}

/// Runs `bulkhead baseline deactivate`.
pub fn deactivate(args: &DeactivateArgs) -> Result<(), CliError> {
    let name = &args.name;
    args.agent.each(
        args.output,
        |s| client::deactivate_baseline(s, name),
        refused,
        |out, d| {
            let said = if d.deactivated {
                "deactivated"
            } else {
                "was not active"
            };
            writeln!(out, "baseline {name} {said}")?;
            write_list(out, &d.active)
        },
    )
}

/// Runs `bulkhead baseline list`.
pub fn list(args: &ListArgs) -> Result<(), CliError> {
    args.agent
        .each(args.output, client::baselines, refused, |out, l| {
            write_list(out, l)
        })
}
