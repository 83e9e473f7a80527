//! `bulkhead baseline`: take a named baseline of chosen namespaces or
//! workloads from the flow history (the sources `propose` reads), accept
//! reviewed edges into it (a new version), and show it. The agent alerts
//! on live connections outside it (`bulkhead agent --baseline FILE`, or
//! `bulkhead baseline activate FILE` into a running agent: [`live`]).

use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{ArgGroup, Args, Subcommand};
use serde::Deserialize;

use super::propose::{ProposeError, WindowArgs, history_from};
use super::{CliError, Output};
use bulkhead_agent::alerts::alertmanager::AlertmanagerError;
use bulkhead_agent::alerts::jsonl::SCHEMA as ALERT_SCHEMA;
use bulkhead_agent::api::DEFAULT_SOCKET;
use bulkhead_flows::record::IpProtocol;
use bulkhead_learn::baseline::{Baseline, BaselineError, Scope};
use bulkhead_learn::edge::{EdgeKey, End, WorkloadId};

mod live;

/// Arguments of `bulkhead baseline`.
#[derive(Debug, Args)]
pub struct BaselineArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: BaselineCommand,
}

/// `bulkhead baseline` subcommands.
#[derive(Debug, Subcommand)]
pub enum BaselineCommand {
    /// Save the learned edges of namespaces or workloads as a named baseline (version 1).
    Take(TakeArgs),
    /// Accept edges into a baseline (a new version): named, or from an alerts file.
    Accept(AcceptArgs),
    /// Show a baseline: its scope, versions and edges.
    Show(ShowArgs),
    /// Make a running agent alert on a baseline (in force when this
    /// returns; the agent keeps it across restarts).
    Activate(live::ActivateArgs),
    /// Stop a running agent alerting on a baseline it was given by `activate`.
    Deactivate(live::DeactivateArgs),
    /// The baselines a running agent alerts on.
    List(live::ListArgs),
}

/// Arguments of `bulkhead baseline take`.
#[derive(Debug, Args)]
#[command(group(
    ArgGroup::new("history")
        .required(true)
        .multiple(true)
        .args(["flows", "history_db", "socket", "lab"])
))]
pub struct TakeArgs {
    /// The baseline's name (the `baseline` label of its alerts).
    pub name: String,
    /// What it watches: NAMESPACE or NAMESPACE/Kind/name (repeatable, or
    /// comma-separated).
    #[arg(long, value_name = "SCOPE", required = true, value_delimiter = ',')]
    pub scope: Vec<String>,
    /// Flow records, JSON Lines (as the agent's `--flow-log` writes them).
    #[arg(long, value_name = "FILE.jsonl")]
    pub flows: Vec<PathBuf>,
    /// The agent's durable flow history (not while the agent holds it
    /// open: use --socket then).
    #[arg(long, value_name = "PATH")]
    pub history_db: Vec<PathBuf>,
    /// The running agent's durable flow history, over its API socket.
    #[arg(long, value_name = "PATH", num_args = 0..=1, default_missing_value = DEFAULT_SOCKET)]
    pub socket: Vec<PathBuf>,
    /// A lab's flow logs (every node's).
    #[arg(long, value_name = "NAME")]
    pub lab: Option<String>,
    /// Write the baseline here.
    #[arg(long = "output", short = 'o', value_name = "FILE")]
    pub file: PathBuf,
    /// Replace an existing file (its versions are lost).
    #[arg(long)]
    pub force: bool,
    /// Take denied and quarantined connection attempts into the baseline
    /// too. By default a baseline is normal traffic: what the policies in
    /// force let pass (as `propose` observes it).
    #[arg(long)]
    pub include_denied: bool,
    /// The time window to take the baseline from.
    #[command(flatten)]
    pub window: WindowArgs,
}

/// Arguments of `bulkhead baseline accept`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("edges").required(true).multiple(true).args(["edge", "from_alerts"])))]
pub struct AcceptArgs {
    /// The baseline file (rewritten with the new version).
    pub file: PathBuf,
    /// An edge: SRC,DST,PROTO/PORT, each end NAMESPACE/Kind/name or an
    /// address (e.g. shop/Deployment/web,shop/Deployment/db,TCP/5432;
    /// ICMP without a port). Repeatable.
    #[arg(long, value_name = "EDGE")]
    pub edge: Vec<String>,
    /// The edges of this baseline's alerts in an alerts file (the agent's
    /// `--alerts-jsonl`); scan alerts name no single edge and are skipped.
    #[arg(long, value_name = "FILE.jsonl")]
    pub from_alerts: Vec<PathBuf>,
    /// Why they are accepted (kept with the version).
    #[arg(long, value_name = "TEXT")]
    pub note: Option<String>,
}

/// Arguments of `bulkhead baseline show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The baseline file.
    pub file: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
}

/// Why a `baseline` command (or the agent's `--baseline` and
/// `--alertmanager`) could not use its input.
#[derive(Debug, thiserror::Error)]
pub enum BaselineCliError {
    /// A baseline file or scope.
    #[error(transparent)]
    Baseline(#[from] BaselineError),
    /// The Alertmanager URL.
    #[error(transparent)]
    Alertmanager(#[from] AlertmanagerError),
    /// A `--respond` value.
    #[error(transparent)]
    Respond(#[from] bulkhead_agent::alerts::respond::ResponseSpecError),
    /// The flow history.
    #[error(transparent)]
    History(#[from] ProposeError),
    /// The lab name.
    #[error(transparent)]
    Lab(#[from] bulkhead_lab::LabError),
    /// An `--edge` that does not parse.
    #[error("edge {text:?}: {reason} (expected SRC,DST,PROTO/PORT)")]
    Edge {
        /// The argument.
        text: String,
        /// What is wrong.
        reason: String,
    },
    /// A line of an alerts file that is not an alert.
    #[error("{}:{line}: not a {ALERT_SCHEMA} alert: {reason}", path.display())]
    Alerts {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// Why.
        reason: String,
    },
    /// Reading an alerts file failed.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// No agent could be reached.
    #[error(transparent)]
    Connect(#[from] super::flows::FlowsError),
    /// The agent refused or failed the request.
    #[error("agent {}: {source}", socket.display())]
    Agent {
        /// Its socket.
        socket: PathBuf,
        /// What it answered.
        #[source]
        source: bulkhead_agent::api::client::ClientError,
    },
    /// `take` would overwrite a baseline.
    #[error("{} exists: accept edges into it with `bulkhead baseline accept`, or replace it with --force", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
}

/// Runs `bulkhead baseline`.
pub fn run(args: &BaselineArgs) -> Result<(), CliError> {
    match &args.command {
        BaselineCommand::Take(a) => take(a)?,
        BaselineCommand::Accept(a) => accept(a)?,
        BaselineCommand::Show(a) => show(a)?,
        BaselineCommand::Activate(a) => live::activate(a)?,
        BaselineCommand::Deactivate(a) => live::deactivate(a)?,
        BaselineCommand::List(a) => live::list(a)?,
    }
    Ok(())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn take(args: &TakeArgs) -> Result<(), BaselineCliError> {
    if let Some(lab) = &args.lab {
        bulkhead_lab::naming::check_lab_name(lab)?;
    }
    let scope = args
        .scope
        .iter()
        .map(|s| Scope::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    if args.file.exists() && !args.force {
        return Err(BaselineCliError::Exists {
            path: args.file.clone(),
        });
    }
    let (all, window) = history_from(
        &args.flows,
        &args.history_db,
        &args.socket,
        args.lab.as_deref(),
        args.window.window(),
    )?;
    for n in &window.notes {
        eprintln!("window: {n}");
    }
    // Normal traffic: what passed, as `propose` observes it.
    let history = all.observed(args.include_denied);
    let b = Baseline::take(&args.name, scope, &history, now_ms())?;
    b.write(&args.file)?;
    eprintln!(
        "baseline {} v{}: {} edges of {} (from {} in the history), written to {}",
        b.name,
        b.version(),
        b.edges().len(),
        scope_text(&b),
        history.edges.len(),
        args.file.display()
    );
    Ok(())
}

fn scope_text(b: &Baseline) -> String {
    b.scope
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parses `NAMESPACE/Kind/name` or an address.
fn parse_end(s: &str) -> Option<End> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(End::External(ip));
    }
    match s.split('/').collect::<Vec<_>>()[..] {
        [ns, kind, name] if !ns.is_empty() && !kind.is_empty() && !name.is_empty() => {
            Some(End::Workload(WorkloadId {
                namespace: ns.to_owned(),
                workload: format!("{kind}/{name}"),
            }))
        }
        _ => None,
    }
}

/// Parses `SRC,DST,PROTO/PORT` (`PROTO` alone for a protocol without ports).
pub fn parse_edge(text: &str) -> Result<EdgeKey, BaselineCliError> {
    let bad = |reason: String| BaselineCliError::Edge {
        text: text.to_owned(),
        reason,
    };
    let [src, dst, pp] = text.split(',').collect::<Vec<_>>()[..] else {
        return Err(bad("three comma-separated parts needed".into()));
    };
    let end = |s: &str| {
        parse_end(s.trim()).ok_or_else(|| {
            bad(format!(
                "{s:?} is neither NAMESPACE/Kind/name nor an address"
            ))
        })
    };
    let (proto, port) = match pp.trim().split_once('/') {
        Some((p, port)) => (
            p,
            port.parse::<u16>()
                .map_err(|_| bad(format!("port {port:?}")))?,
        ),
        None => (pp.trim(), 0),
    };
    let protocol = IpProtocol::parse(proto).ok_or_else(|| bad(format!("protocol {proto:?}")))?;
    if port != 0 && !matches!(protocol.0, 6 | 17 | 132) {
        return Err(bad(format!("{protocol} has no ports")));
    }
    Ok(EdgeKey {
        src: end(src)?,
        dst: end(dst)?,
        protocol: protocol.0,
        port,
    })
}

/// The fields of an alert line `accept --from-alerts` needs.
#[derive(Debug, Deserialize)]
struct AlertLine {
    schema: String,
    kind: String,
    baseline: String,
    src: End,
    dst: End,
    protocol: u8,
    port: u16,
}

/// The edges of `baseline`'s non-scan alerts in `path`, and how many
/// alerts were skipped (other baselines', scans).
fn edges_of_alerts(path: &Path, baseline: &str) -> Result<(Vec<EdgeKey>, usize), BaselineCliError> {
    let read = |source| BaselineCliError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read)?;
    let (mut edges, mut skipped) = (Vec::new(), 0);
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(read)?;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |reason: String| BaselineCliError::Alerts {
            path: path.to_owned(),
            line: i + 1,
            reason,
        };
        let a: AlertLine = serde_json::from_str(&line).map_err(|e| bad(e.to_string()))?;
        if a.schema != ALERT_SCHEMA {
            return Err(bad(format!("schema {:?}", a.schema)));
        }
        if a.baseline != baseline || a.kind == "scan" {
            skipped += 1;
            continue;
        }
        edges.push(EdgeKey {
            src: a.src,
            dst: a.dst,
            protocol: a.protocol,
            port: a.port,
        });
    }
    Ok((edges, skipped))
}

fn accept(args: &AcceptArgs) -> Result<(), BaselineCliError> {
    let mut b = Baseline::read(&args.file)?;
    let mut edges = args
        .edge
        .iter()
        .map(|e| parse_edge(e))
        .collect::<Result<Vec<_>, _>>()?;
    for path in &args.from_alerts {
        let (from, skipped) = edges_of_alerts(path, &b.name)?;
        if skipped > 0 {
            eprintln!(
                "{}: {skipped} alerts skipped (scans, or another baseline's)",
                path.display()
            );
        }
        edges.extend(from);
    }
    let (watched, outside): (Vec<_>, Vec<_>) = edges.into_iter().partition(|k| b.watches_edge(k));
    for k in &outside {
        eprintln!(
            "not accepted: {} has no end in the scope of {} ({})",
            edge_text(k),
            b.name,
            scope_text(&b)
        );
    }
    let note = args.note.clone().unwrap_or_else(|| {
        if args.from_alerts.is_empty() {
            "accepted".to_owned()
        } else {
            let files: Vec<_> = args
                .from_alerts
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            format!("accepted from alerts in {}", files.join(", "))
        }
    });
    let added = b.accept(watched, &note, now_ms());
    if added > 0 {
        b.write(&args.file)?;
        eprintln!(
            "baseline {} v{}: {added} edges accepted, {} in all",
            b.name,
            b.version(),
            b.edges().len()
        );
    } else {
        eprintln!(
            "baseline {} v{}: nothing new to accept; unchanged",
            b.name,
            b.version()
        );
    }
    Ok(())
}

/// `SRC -> DST PROTO/PORT`.
pub fn edge_text(k: &EdgeKey) -> String {
    let proto = IpProtocol(k.protocol);
    if matches!(k.protocol, 6 | 17 | 132) {
        format!("{} -> {} {proto}/{}", k.src, k.dst, k.port)
    } else {
        format!("{} -> {} {proto}", k.src, k.dst)
    }
}

fn show(args: &ShowArgs) -> Result<(), CliError> {
    let b = Baseline::read(&args.file).map_err(BaselineCliError::from)?;
    let mut out = std::io::stdout().lock();
    match args.output {
        Output::Json => {
            serde_json::to_writer(&mut out, &b).expect("a baseline serializes");
            writeln!(out)?;
        }
        Output::Text => out.write_all(show_text(&b).as_bytes())?,
    }
    Ok(())
}

/// The text form of `show`.
fn show_text(b: &Baseline) -> String {
    let mut s = format!(
        "baseline {} v{}: {} edges\nscope: {}\n",
        b.name,
        b.version(),
        b.edges().len(),
        scope_text(b)
    );
    for v in &b.versions {
        let when = humantime::format_rfc3339_seconds(
            UNIX_EPOCH + std::time::Duration::from_millis(v.created_unix_ms),
        );
        s.push_str(&format!(
            "\nv{} ({when}, {}): {} edges\n",
            v.version,
            v.note,
            v.added.len()
        ));
        for k in &v.added {
            s.push_str(&format!("  {}\n", edge_text(k)));
        }
    }
    s
}

#[cfg(test)]
mod tests;
