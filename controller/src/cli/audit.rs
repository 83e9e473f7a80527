//! `bulkhead audit`: what the policies in audit mode would do if enforced.
//! `audit report` reads flow records (files, a lab's flow log, the agent's
//! history) and groups every flow they would deny; see [`bulkhead_learn::audit`].

use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use clap::{ArgGroup, Args, Subcommand};

use super::flows::FlowsError;
use super::{CliError, Output};
use bulkhead_agent::api::DEFAULT_SOCKET;
use bulkhead_agent::api::client::{self, ClientError};
use bulkhead_lab::LabError;
use bulkhead_learn::audit::filter::parse_policy;
use bulkhead_learn::audit::render::plural;
use bulkhead_learn::audit::{self, Filter, ReadError, Report, Since, render};

/// Arguments of `bulkhead audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: AuditCommand,
}

/// Subcommands of `bulkhead audit`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Every flow the policies in audit mode would deny, grouped by policy
    /// and peer, and whether each policy is ready to enforce.
    Report(ReportArgs),
}

/// Arguments of `bulkhead audit report`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("source").required(true).multiple(true).args(["flows", "lab", "socket"])))]
pub struct ReportArgs {
    /// Flow records, JSON Lines (`bulkhead.flow/v1`, as the agent's
    /// `--flow-log` or `bulkhead flows --output json` write them); repeat
    /// for several files.
    #[arg(long, value_name = "FILE.jsonl")]
    pub flows: Vec<PathBuf>,
    /// A lab's flow log: /run/bulkhead/lab/NAME/flows.jsonl.
    #[arg(long, value_name = "NAME")]
    pub lab: Option<String>,
    /// The recent history of the agent serving this API socket; `--socket`
    /// alone: /run/bulkhead/agent.sock.
    #[arg(long, value_name = "PATH", num_args = 0..=1, default_missing_value = DEFAULT_SOCKET)]
    pub socket: Option<PathBuf>,
    /// Only this policy (repeatable): `namespace/name`, or `Kind/name` for
    /// a cluster-admin policy; it is reported even with no audited flows.
    #[arg(long = "policy", value_name = "NS/NAME", value_parser = parse_policy)]
    pub policies: Vec<String>,
    /// Only records that ended at or after this time (RFC 3339 UTC,
    /// `2025-01-02T03:04:05Z`) or this long ago (`90m`, `2h`, `7d`).
    #[arg(long, value_name = "TIME|DURATION", value_parser = Since::parse)]
    pub since: Option<Since>,
    /// Output format (times are UTC); JSON Lines are described in the
    /// docs of `bulkhead::audit`.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// Exit with status 1 when any flow would be denied.
    #[arg(long)]
    pub fail_on_would_deny: bool,
}

/// Errors of `bulkhead audit` (exit status 2, except [`AuditError::WouldDeny`]).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A flow file (or the agent's answer) could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The agent's API could not be reached or refused the query.
    #[error(transparent)]
    Agent(#[from] FlowsError),
    /// The lab name is invalid.
    #[error(transparent)]
    Lab(#[from] LabError),
    /// `--fail-on-would-deny` and some flows would be denied (exit status 1).
    #[error(
        "{} in {} of {} (--fail-on-would-deny)",
        plural(*flows, "would-deny flow", "would-deny flows"),
        plural(*groups as u64, "group", "groups"),
        plural(*policies as u64, "policy", "policies"),
    )]
    WouldDeny {
        /// Would-deny flows.
        flows: u64,
        /// Would-deny groups.
        groups: usize,
        /// Policies with would-deny groups.
        policies: usize,
    },
}

impl AuditError {
    /// Exit status: 1 for the finding asked about, 2 for bad usage or input.
    pub fn exit_code(&self) -> u8 {
        match self {
            AuditError::WouldDeny { .. } => 1,
            _ => 2,
        }
    }
}

/// Runs `bulkhead audit`.
pub fn run(args: &AuditArgs) -> Result<(), CliError> {
    match &args.command {
        AuditCommand::Report(args) => report(args),
    }
}

fn report(args: &ReportArgs) -> Result<(), CliError> {
    let filter = Filter {
        policies: args.policies.iter().cloned().collect(),
        since: args.since.map(|s| s.resolve(SystemTime::now())),
    };
    let mut report = Report::new(filter);
    for path in &args.flows {
        audit::read_file(path, |r| report.add(&r)).map_err(AuditError::from)?;
    }
    if let Some(lab) = &args.lab {
        bulkhead_lab::naming::check_lab_name(lab).map_err(AuditError::from)?;
        for path in bulkhead_lab::state::flow_logs(lab).map_err(AuditError::from)? {
            audit::read_file(&path, |r| report.add(&r)).map_err(AuditError::from)?;
        }
    }
    if let Some(socket) = &args.socket {
        read_agent(socket, &mut report)?;
    }
    let c = report.counts();
    tracing::info!(
        records = c.records,
        grouped = c.grouped,
        events = c.events,
        unaudited = c.unaudited,
        before_since = c.before_since,
        other_policies = c.other_policies,
        duplicates = c.duplicates,
        "read flow records"
    );
    let policies = report.policies();
    let text = match args.output {
        Output::Text => render::text(&policies),
        Output::Json => render::json_lines(&policies),
    };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    let denying: Vec<_> = policies
        .iter()
        .filter(|p| !p.would_deny.is_empty())
        .collect();
    if args.fail_on_would_deny && !denying.is_empty() {
        return Err(AuditError::WouldDeny {
            flows: denying.iter().map(|p| p.summary.would_deny_flows).sum(),
            groups: denying.iter().map(|p| p.would_deny.len()).sum(),
            policies: denying.len(),
        }
        .into());
    }
    Ok(())
}

/// Reads the agent's recent history (`GET /v1/flows`, everything it keeps:
/// the server clamps `limit` to its own maximum).
fn read_agent(path: &Path, report: &mut Report) -> Result<(), AuditError> {
    let hint = "start the agent (`bulkhead agent --manifests DIR`), or name another \
                with --socket PATH (a lab's: /run/bulkhead/lab/NAME/agent.sock)"
        .to_owned();
    let stream = super::flows::connect(path, hint)?;
    let resp = client::get(stream, &format!("/v1/flows?limit={}", usize::MAX))
        .map_err(|e: ClientError| FlowsError::Api(e))?;
    let origin = format!("the agent's API at {}", path.display());
    audit::read_lines(BufReader::new(resp), &origin, |r| report.add(&r))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn parse(args: &[&str]) -> Result<ReportArgs, clap::Error> {
        let cli = Cli::try_parse_from(["bulkhead", "audit", "report"].iter().chain(args))?;
        match cli.command {
            Command::Audit(AuditArgs {
                command: AuditCommand::Report(r),
            }) => Ok(r),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn needs_a_source_and_takes_several() {
        let e = parse(&[]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        assert_eq!(e.exit_code(), 2);
        let r = parse(&[
            "--flows", "a.jsonl", "--flows", "b.jsonl", "--lab", "x", "--socket",
        ])
        .unwrap();
        assert_eq!(r.flows.len(), 2);
        assert_eq!(r.socket.as_deref(), Some(Path::new(DEFAULT_SOCKET)));
        let r = parse(&["--socket", "/tmp/a.sock", "--policy", "prod/p"]).unwrap();
        assert_eq!(r.socket.as_deref(), Some(Path::new("/tmp/a.sock")));
        assert_eq!(r.policies, ["prod/p"]);
    }

    #[test]
    fn rejects_bad_policies_and_times_as_usage_errors() {
        for bad in [
            &["--lab", "x", "--policy", "p"][..],
            &["--lab", "x", "--since", "soon"],
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation, "{e}");
            assert_eq!(e.exit_code(), 2);
        }
    }

    #[test]
    fn would_deny_exits_1_and_bad_input_2() {
        let e = CliError::from(AuditError::WouldDeny {
            flows: 3,
            groups: 2,
            policies: 1,
        });
        assert_eq!(e.exit_code(), 1);
        let dir = tempfile::tempdir().unwrap();
        let args = parse(&["--flows", &dir.path().join("none.jsonl").to_string_lossy()]).unwrap();
        let e = report(&args).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("none.jsonl"), "{e}");
    }
}
