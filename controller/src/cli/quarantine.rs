//! `bulkhead quarantine NS/POD` and `bulkhead unquarantine NS/POD`: cut a
//! pod off the network (overriding every allow, established connections
//! included) or restore it, through the agent's API socket; each returns
//! once the agent enforces the change, and prints what is in force.
//! `bulkhead quarantine --list` only prints it.
//!
//! The agent keeps its quarantines beside its state file (they survive
//! restarts and policy changes). In cluster mode a pod's own node's agent
//! enforces it; the label `bulkhead.io/quarantine=true` (or `allow-dns`)
//! quarantines a pod on whichever node it runs.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use super::flows::{FlowsError, agent_sockets, connect};
use super::{CliError, Output};
use bulkhead_agent::api::DEFAULT_SOCKET;
use bulkhead_agent::api::client::{self, ClientError};
use bulkhead_agent::quarantine::{
    QuarantineList, QuarantineOrigin, QuarantineRequest, QuarantineState, StoredQuarantine,
};

/// Which agent to talk to.
#[derive(Debug, Args)]
pub struct AgentSocketArgs {
    /// The agent's API socket.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// The agents of this lab (`bulkhead lab up --name LAB`) instead of
    /// --socket: every node's, one after the other.
    #[arg(long, value_name = "LAB", conflicts_with = "socket")]
    pub lab: Option<String>,
    /// With --lab: only this node's agent (its name or namespace).
    #[arg(long, value_name = "NODE", requires = "lab")]
    pub node: Option<String>,
}

impl AgentSocketArgs {
    /// Sends `call` to every agent these arguments name, one after the
    /// other, and prints each answer: as one JSON line, or as `text` writes
    /// it (headed by the agent's socket when there are several). An agent
    /// that refuses stops it with `refused(socket, error)`.
    pub fn each<T: serde::Serialize>(
        &self,
        output: Output,
        call: impl Fn(std::os::unix::net::UnixStream) -> Result<T, ClientError>,
        refused: impl Fn(PathBuf, ClientError) -> CliError,
        text: impl Fn(&mut dyn Write, &T) -> std::io::Result<()>,
    ) -> Result<(), CliError> {
        let (sockets, hint) =
            agent_sockets(&self.socket, self.lab.as_deref(), self.node.as_deref())?;
        let many = sockets.len() > 1;
        let mut out = std::io::stdout().lock();
        for socket in &sockets {
            let stream = connect(socket, hint.clone()).map_err(QuarantineCliError::from)?;
            let answer = call(stream).map_err(|e| refused(socket.clone(), e))?;
            if output == Output::Json {
                serde_json::to_writer(&mut out, &answer).map_err(std::io::Error::other)?;
                writeln!(out)?;
                continue;
            }
            if many {
                writeln!(out, "agent {}:", socket.display())?;
            }
            text(&mut out, &answer)?;
        }
        Ok(())
    }
}

/// Arguments of `bulkhead quarantine`.
#[derive(Debug, Args)]
pub struct QuarantineArgs {
    /// The pod to cut off: every connection to and from it stops (its own
    /// node's kubelet probes excepted), whatever the policies allow.
    #[arg(value_name = "NS/POD", required_unless_present = "list")]
    pub pod: Option<String>,
    /// Why (shown by `status`, flow records and `explain`; one line).
    #[arg(long, value_name = "TEXT", conflicts_with = "list")]
    pub reason: Option<String>,
    /// Let the pod still resolve names: DNS (UDP and TCP 53) to the
    /// cluster's DNS pods (kube-system, k8s-app=kube-dns).
    #[arg(long, conflicts_with = "list")]
    pub allow_dns: bool,
    /// Only list the quarantines in force.
    #[arg(long, conflicts_with = "pod")]
    pub list: bool,
    /// Which agent.
    #[command(flatten)]
    pub agent: AgentSocketArgs,
    /// Output format (JSON: the agent's answer, one line per agent).
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// Arguments of `bulkhead unquarantine`.
#[derive(Debug, Args)]
pub struct UnquarantineArgs {
    /// The pod to restore: its connections are judged by the policies
    /// again, exactly as before its quarantine.
    #[arg(value_name = "NS/POD")]
    pub pod: String,
    /// Which agent.
    #[command(flatten)]
    pub agent: AgentSocketArgs,
    /// Output format (JSON: the agent's answer, one line per agent).
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// Errors of `bulkhead quarantine` and `unquarantine` (exit status 2).
#[derive(Debug, thiserror::Error)]
pub enum QuarantineCliError {
    /// The pod argument is not `NAMESPACE/NAME`.
    #[error("expected the pod as NAMESPACE/NAME, not {value:?}")]
    PodArg {
        /// What was given.
        value: String,
    },
    /// No agent could be reached.
    #[error(transparent)]
    Connect(#[from] FlowsError),
    /// The agent refused or failed the request.
    #[error("agent {}: {source}", socket.display())]
    Api {
        /// Its socket.
        socket: PathBuf,
        /// What it answered.
        #[source]
        source: ClientError,
    },
}

/// `NAMESPACE/NAME` split.
pub fn parse_pod(value: &str) -> Result<(String, String), QuarantineCliError> {
    match value.split_once('/') {
        Some((ns, pod)) if !ns.is_empty() && !pod.is_empty() && !pod.contains('/') => {
            Ok((ns.to_owned(), pod.to_owned()))
        }
        _ => Err(QuarantineCliError::PodArg {
            value: value.to_owned(),
        }),
    }
}

/// Runs `bulkhead quarantine`.
pub fn run(args: &QuarantineArgs) -> Result<(), CliError> {
    let request = match (&args.pod, args.list) {
        (Some(pod), false) => {
            let (namespace, pod) = parse_pod(pod)?;
            Some(QuarantineRequest {
                namespace,
                pod,
                reason: args.reason.clone(),
                allow_dns: args.allow_dns,
            })
        }
        _ => None,
    };
    args.agent.each(
        args.output,
        |stream| match &request {
            Some(r) => client::quarantine(stream, r),
            None => client::quarantines(stream),
        },
        api_error,
        |out, answer| {
            if let Some(r) = &request {
                write_outcome(out, answer, &r.namespace, &r.pod)?;
            }
            write_list(out, answer)
        },
    )
}

/// Runs `bulkhead unquarantine`.
pub fn run_unquarantine(args: &UnquarantineArgs) -> Result<(), CliError> {
    let (namespace, pod) = parse_pod(&args.pod)?;
    args.agent.each(
        args.output,
        |stream| client::unquarantine(stream, &namespace, &pod),
        api_error,
        |out, answer| {
            if answer.removed {
                writeln!(
                    out,
                    "{namespace}/{pod}: quarantine lifted; its policies apply again"
                )?;
            } else {
                writeln!(out, "{namespace}/{pod} was not quarantined by this agent")?;
            }
            write_list(out, &answer.in_force)
        },
    )
}

fn api_error(socket: PathBuf, source: ClientError) -> CliError {
    QuarantineCliError::Api { socket, source }.into()
}

/// What became of the quarantine of `namespace/pod`, for people.
fn write_outcome(
    out: &mut dyn Write,
    list: &QuarantineList,
    namespace: &str,
    pod: &str,
) -> std::io::Result<()> {
    let Some(q) = list.find(namespace, pod) else {
        return writeln!(
            out,
            "{namespace}/{pod}: quarantine stored, not in force yet"
        );
    };
    writeln!(
        out,
        "{}: quarantined ({}{})",
        q.key(),
        q.reason,
        if q.allow_dns { "; DNS allowed" } else { "" }
    )?;
    writeln!(out, "  {}", where_(q))
}

/// Where a quarantine is enforced, for people.
fn where_(q: &QuarantineState) -> &'static str {
    match (q.in_model, q.local, q.enforced) {
        (_, true, true) => "enforced on this node: established connections are cut",
        (_, true, false) => {
            "on this node, NOT enforced: the agent's hooks are failing (see `bulkhead status`)"
        }
        (true, false, _) => {
            "not on this node: its own node's agent enforces it (quarantine it there, or label the pod bulkhead.io/quarantine=true)"
        }
        (false, false, _) => "pod unknown to the policy source: takes effect when it appears",
    }
}

/// The quarantines in force (and pending), for people.
pub(crate) fn write_list(out: &mut dyn Write, list: &QuarantineList) -> std::io::Result<()> {
    if list.quarantines.is_empty() && list.pending.is_empty() {
        return writeln!(out, "quarantines: none");
    }
    writeln!(out, "quarantines: {}", list.quarantines.len())?;
    for q in &list.quarantines {
        write_state(out, q)?;
    }
    for p in &list.pending {
        write_pending(out, p)?;
    }
    Ok(())
}

/// One quarantine in force, one line.
pub(crate) fn write_state(out: &mut dyn Write, q: &QuarantineState) -> std::io::Result<()> {
    let origin = match (q.origin, q.labelled) {
        (QuarantineOrigin::Store, false) => "agent",
        (QuarantineOrigin::Store, true) => "agent+label",
        (QuarantineOrigin::Label, _) => "label",
    };
    let here = match (q.local, q.enforced) {
        (true, true) => "enforced here",
        (true, false) => "here, NOT ENFORCED",
        (false, _) if q.in_model => "elsewhere",
        (false, _) => "unknown pod",
    };
    writeln!(
        out,
        "  {:<28} {:<11} {:<20} {:<18} {}{}",
        q.key(),
        origin,
        q.since_unix_ms.map_or_else(|| "-".to_owned(), since),
        here,
        q.reason,
        if q.allow_dns { " (DNS allowed)" } else { "" }
    )
}

fn write_pending(out: &mut dyn Write, p: &StoredQuarantine) -> std::io::Result<()> {
    writeln!(
        out,
        "  {:<28} {:<11} {:<20} {:<18} {}",
        p.quarantine.key(),
        "agent",
        since(p.since_unix_ms),
        "PENDING",
        p.quarantine.reason
    )
}

/// `2026-12-07T10:40:01Z` (UTC).
fn since(unix_ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(unix_ms);
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn state(pod: &str, origin: QuarantineOrigin, local: bool) -> QuarantineState {
        QuarantineState {
            namespace: "x".into(),
            pod: pod.into(),
            reason: "test".into(),
            allow_dns: false,
            origin,
            labelled: origin == QuarantineOrigin::Label,
            since_unix_ms: (origin == QuarantineOrigin::Store).then_some(1_796_640_001_000),
            in_model: true,
            local,
            enforced: local,
        }
    }

    #[test]
    fn pods_are_namespace_slash_name() {
        assert_eq!(parse_pod("x/a").unwrap(), ("x".into(), "a".into()));
        for bad in ["a", "/a", "x/", "x/a/b", ""] {
            assert!(matches!(
                parse_pod(bad),
                Err(QuarantineCliError::PodArg { .. })
            ));
        }
    }

    #[test]
    fn arguments_need_a_pod_or_list_not_both() {
        let parse = |args: &[&str]| Cli::try_parse_from([&["bulkhead"], args].concat());
        let Command::Quarantine(q) = parse(&["quarantine", "x/a", "--reason", "r", "--allow-dns"])
            .unwrap()
            .command
        else {
            panic!("not quarantine")
        };
        assert_eq!(
            (q.pod.as_deref(), q.reason.as_deref(), q.allow_dns, q.list),
            (Some("x/a"), Some("r"), true, false)
        );
        assert!(parse(&["quarantine", "--list"]).is_ok());
        assert!(parse(&["quarantine"]).is_err(), "a pod or --list");
        assert!(parse(&["quarantine", "x/a", "--list"]).is_err());
        assert!(parse(&["quarantine", "--list", "--reason", "r"]).is_err());
        assert!(parse(&["unquarantine"]).is_err());
        assert!(parse(&["unquarantine", "x/a", "--lab", "l", "--node", "n"]).is_ok());
        assert!(
            parse(&["unquarantine", "x/a", "--node", "n"]).is_err(),
            "--node needs --lab"
        );
    }

    #[test]
    fn the_list_says_where_each_quarantine_is_enforced() {
        let list = QuarantineList {
            generation: 3,
            enforced_generation: Some(2),
            quarantines: vec![
                state("a", QuarantineOrigin::Store, true),
                state("b", QuarantineOrigin::Label, false),
            ],
            pending: vec![StoredQuarantine {
                quarantine: bulkhead_policy::model::Quarantine {
                    namespace: "x".into(),
                    pod: "c".into(),
                    reason: "later".into(),
                    allow_dns: true,
                },
                since_unix_ms: 1_796_640_002_000,
            }],
        };
        let mut out = Vec::new();
        write_outcome(&mut out, &list, "x", "a").unwrap();
        write_list(&mut out, &list).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "x/a: quarantined (test)\n  \
             enforced on this node: established connections are cut\n\
             quarantines: 2\n  \
             x/a                          agent       2026-12-07T10:40:01Z enforced here      test\n  \
             x/b                          label       -                    elsewhere          test\n  \
             x/c                          agent       2026-12-07T10:40:02Z PENDING            later\n"
        );
        let mut out = Vec::new();
        write_list(&mut out, &QuarantineList::default()).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "quarantines: none\n");
    }
}
