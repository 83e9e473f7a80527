//! `bulkhead propose`: NetworkPolicies that allow exactly the observed
//! edges, with the coverage proof. See `docs/learn.md`.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{ArgGroup, Args, ValueEnum};
use ipnetwork::IpNetwork;
use serde_json::json;

use super::{CliError, ManifestArgs};
use bulkhead_agent::api::DEFAULT_SOCKET;
use bulkhead_agent::api::client::{self, ClientError};
use bulkhead_learn::store::Stored;
use bulkhead_learn::{
    self as learn, History, Proof, Proposal, ReadError, StoreError, Thresholds, Window,
    WindowFacts, render,
};

mod window;
use bulkhead_policy::model::{Mode, Model};
pub use window::{TimeArg, WindowArgs, parse_time};

/// How long the agent may take to answer `/v1/history` (it reads and
/// encodes the whole store first: seconds for a million edges).
const AGENT_TIMEOUT: Duration = Duration::from_secs(120);

/// Output format of `propose`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum ProposeOutput {
    /// The policies as YAML (stdout unless --output-dir); the proof on stderr.
    #[default]
    Yaml,
    /// One JSON object on stdout: the policies (YAML text each) and the proof.
    Json,
}

/// Arguments of `bulkhead propose`.
#[derive(Debug, Args)]
#[command(group(
    ArgGroup::new("history")
        .required(true)
        .multiple(true)
        .args(["flows", "history_db", "socket", "lab"])
))]
pub struct ProposeArgs {
    /// The current manifests (workloads, namespaces, existing policies).
    #[command(flatten)]
    pub manifests: ManifestArgs,
    /// Flow records, JSON Lines (`bulkhead.flow/v1`, as the agent's
    /// `--flow-log` or `bulkhead flows --output json` write them).
    /// Repeatable, like every history source: the histories of several
    /// nodes are merged.
    #[arg(long, value_name = "FILE.jsonl")]
    pub flows: Vec<PathBuf>,
    /// The agent's durable flow history (read-only; not while the agent
    /// holds it open: use --socket then).
    #[arg(long, value_name = "PATH")]
    pub history_db: Vec<PathBuf>,
    /// The running agent's durable flow history (`agent --history-db`),
    /// read over its API socket: what it has committed (it commits every
    /// second). Without PATH, the agent's default socket
    /// (/run/bulkhead/agent.sock).
    #[arg(
        long,
        value_name = "PATH",
        num_args = 0..=1,
        default_missing_value = DEFAULT_SOCKET
    )]
    pub socket: Vec<PathBuf>,
    /// A lab's flow logs (every node's): /run/bulkhead/lab/NAME/flows.jsonl,
    /// and `nN/flows.jsonl` of each further node.
    #[arg(long, value_name = "NAME")]
    pub lab: Option<String>,
    /// Write one file per policy (`<namespace>.<name>.yaml`) here instead
    /// of YAML to stdout.
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub output: ProposeOutput,
    /// Set every proposed policy's own mode (annotation `bulkhead.io/mode`):
    /// enforce, audit or learn. Apply a proposal in audit first, then
    /// `bulkhead promote` it. Default: no annotation (the namespace's or
    /// the agent's mode applies).
    #[arg(long, value_name = "MODE")]
    pub mode: Option<Mode>,
    /// Propose rules also for traffic the Admin tier of the cluster-admin
    /// policies already accepts (a ClusterNetworkPolicy or
    /// AdminNetworkPolicy `Accept`/`Allow`). By default such traffic is
    /// only reported: the Admin tier decides before NetworkPolicy, so the
    /// rule is never consulted while the guardrail stands.
    #[arg(long)]
    pub include_admin_accepted: bool,
    /// Flag an observed (peer, port) entry with fewer flows than N as
    /// RARE, in its comment and in the proof.
    #[arg(long, value_name = "N", default_value_t = Thresholds::default().rare_below)]
    pub rare_below: u64,
    /// Flag an entry first seen in the last PERCENT of the history's span
    /// as RECENT, in its comment and in the proof.
    #[arg(
        long,
        value_name = "PERCENT",
        default_value_t = Thresholds::default().recent_percent,
        value_parser = clap::value_parser!(u8).range(0..=100)
    )]
    pub recent_share: u8,
    /// Leave edges with fewer flows than N out of the proposal (listed in
    /// the proof, not counted against coverage). 1 keeps all.
    #[arg(long, value_name = "N", default_value_t = Thresholds::default().min_flows)]
    pub min_flows: u64,
    /// A source with at least N probe edges (at most 2 flows each, no
    /// payload: one per peer, protocol and port) is a scan: its probes are
    /// left out of the proposal and listed in the proof.
    #[arg(
        long,
        value_name = "N",
        default_value_t = Thresholds::default().scan_targets,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub scan_targets: u64,
    /// Propose the scans' probe edges too (they are still listed).
    #[arg(long)]
    pub keep_scans: bool,
    /// Propose denied and quarantined connection attempts too, as
    /// observed edges. By default only what the policies in force let
    /// pass is observed; denied attempts are listed in the proof with the
    /// policies that denied them.
    #[arg(long)]
    pub include_denied: bool,
    /// The time window to learn from.
    #[command(flatten)]
    pub window: WindowArgs,
    /// Infrastructure: DNS servers, the API server, internet-facing
    /// sources.
    #[command(flatten)]
    pub infra: InfraArgs,
}

/// What `propose` is told about the cluster's infrastructure (see
/// `docs/learn.md`, "Infrastructure").
#[derive(Debug, Default, Args)]
pub struct InfraArgs {
    /// The pods of NAMESPACE labelled LABEL=VALUE are a DNS server
    /// (besides those labelled k8s-app=kube-dns): ingress from all pods on
    /// UDP and TCP 53, no egress section, and every other policy's egress
    /// allows DNS to them. Repeatable.
    #[arg(long, value_name = "NAMESPACE/LABEL=VALUE")]
    pub dns_server: Vec<learn::DnsServerSpec>,
    /// The API server's addresses (besides the ClusterIPs of Service
    /// default/kubernetes): observed edges with them are control plane,
    /// never left out by a threshold. Repeatable or comma-separated.
    #[arg(long, value_name = "CIDR", value_delimiter = ',')]
    pub api_server: Vec<IpNetwork>,
    /// Keep an internet-facing workload's ports (LoadBalancer, NodePort,
    /// externalIPs, Ingress backends) to the sources observed, instead of
    /// opening them to all external addresses.
    #[arg(long)]
    pub keep_observed_sources: bool,
}

impl InfraArgs {
    /// The learner's options.
    pub fn options(&self) -> learn::InfraOptions {
        learn::InfraOptions {
            dns_servers: self.dns_server.clone(),
            api_servers: self.api_server.clone(),
            keep_observed_sources: self.keep_observed_sources,
        }
    }
}

/// Why `propose` could not read its input.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    /// The flow file.
    #[error(transparent)]
    Flows(#[from] ReadError),
    /// The history database.
    #[error(transparent)]
    History(#[from] StoreError),
    /// No socket at the path.
    #[error(
        "no agent API socket at {}: start the agent with --history-db PATH, \
         or name its socket with --socket PATH",
        path.display()
    )]
    SocketMissing {
        /// The socket path.
        path: PathBuf,
    },
    /// Nobody listens on the socket.
    #[error("nothing listens on {} (connection refused): is the agent running?", path.display())]
    Refused {
        /// The socket path.
        path: PathBuf,
    },
    /// Connecting failed otherwise.
    #[error("connecting to {}{}", path.display(),
        if source.kind() == std::io::ErrorKind::PermissionDenied { " (the agent's API is root-only: run as root)" } else { "" })]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The agent did not serve its history (none kept, or failed).
    #[error("reading the flow history from the agent at {}", path.display())]
    Agent {
        /// The socket path.
        path: PathBuf,
        /// The error (the agent's message for an error status).
        #[source]
        source: ClientError,
    },
    /// The agent's answer is not a history this version reads.
    #[error(
        "the agent at {} answered /v1/history with no bulkhead.history/v1 document \
         (agent and CLI of different versions?)",
        path.display()
    )]
    AgentAnswer {
        /// The socket path.
        path: PathBuf,
        /// The error.
        #[source]
        source: serde_json::Error,
    },
    /// A window was asked of an agent that serves none.
    #[error(
        "the agent at {} answered /v1/history without a window (an earlier version): \
         upgrade it, or propose without --since/--until",
        path.display()
    )]
    AgentWithoutWindows {
        /// The socket path.
        path: PathBuf,
    },
    /// The lab's state.
    #[error(transparent)]
    Lab(#[from] bulkhead_lab::LabError),
    /// `--since` is not before `--until`.
    #[error("the window is empty: --since {since} is not before --until {until}")]
    EmptyWindow {
        /// The start.
        since: bulkhead_flows::record::Timestamp,
        /// The end.
        until: bulkhead_flows::record::Timestamp,
    },
    /// Writing a policy file.
    #[error("writing {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Runs the command.
pub fn run(args: &ProposeArgs) -> Result<(), CliError> {
    if let Some(lab) = &args.lab {
        bulkhead_lab::naming::check_lab_name(lab)?;
    }
    let model = args.manifests.load()?;
    let (history, window) = read_history(args)?;
    tracing::info!(
        records = history.records,
        edges = history.edges.len(),
        workloads = history.workloads.len(),
        "read flow history"
    );
    let (proposal, mut proof) = propose(args, &history, &model);
    proof.window = window;
    if let Some(dir) = &args.output_dir {
        let io = |path: PathBuf| move |source| ProposeError::Write { path, source };
        std::fs::create_dir_all(dir).map_err(io(dir.clone()))?;
        for p in &proposal.policies {
            let path = dir.join(render::file_name(p));
            std::fs::write(&path, render::policy_yaml_in(p, args.mode))
                .map_err(io(path.clone()))?;
        }
        eprintln!(
            "wrote {} policies to {}",
            proposal.policies.len(),
            dir.display()
        );
    }
    let rendered = rendered(args, &proposal, &proof);
    let mut out = std::io::stdout().lock();
    out.write_all(&rendered.stdout)?;
    out.flush()?;
    eprint!("{}", rendered.stderr);
    if !proof.complete() {
        return Err(CliError::Uncovered {
            denied: proof.denied.len(),
            replayed: proof.replayed as usize,
        });
    }
    Ok(())
}

/// The proposal for `history` against `model`, as `args` ask, and its
/// proof.
fn propose(args: &ProposeArgs, history: &History, model: &Model) -> (Proposal, Proof) {
    let options = learn::Options {
        include_admin_accepted: args.include_admin_accepted,
        keep_scans: args.keep_scans,
        thresholds: Thresholds {
            rare_below: args.rare_below,
            recent_percent: args.recent_share,
            min_flows: args.min_flows,
            scan_targets: args.scan_targets,
        },
        include_denied: args.include_denied,
        infra: args.infra.options(),
    };
    let proposal = learn::propose_with(history, model, options);
    let proof = learn::prove(history, model, &proposal);
    (proposal, proof)
}

/// What `propose` prints.
struct Rendered {
    stdout: Vec<u8>,
    stderr: String,
}

fn rendered(args: &ProposeArgs, proposal: &Proposal, proof: &Proof) -> Rendered {
    let mut out = Rendered {
        stdout: Vec::new(),
        stderr: String::new(),
    };
    match args.output {
        ProposeOutput::Yaml => {
            if args.output_dir.is_none() {
                out.stdout = render::proposal_yaml_in(proposal, args.mode).into_bytes();
            }
            out.stderr = learn::coverage::text(proof, proposal);
        }
        ProposeOutput::Json => {
            let policies: Vec<_> = proposal
                .policies
                .iter()
                .map(|p| {
                    let mut v = json!({
                        "namespace": p.namespace,
                        "name": p.name,
                        "workload": p.subject.workload,
                        "yaml": render::policy_yaml_in(p, args.mode),
                    });
                    // Only with --mode, so output without it is unchanged.
                    if let Some(mode) = args.mode {
                        v["mode"] = json!(mode.as_str());
                    }
                    v
                })
                .collect();
            let v = json!({ "policies": policies, "proof": proof });
            out.stdout = serde_json::to_vec(&v).expect("a proposal serializes");
            out.stdout.push(b'\n');
        }
    }
    out
}

/// Every history the arguments name, merged: a cluster's nodes each see
/// their own pods' traffic (a cross-node connection once at each end), and
/// the union is what the cluster did.
fn read_history(args: &ProposeArgs) -> Result<(History, WindowFacts), ProposeError> {
    history_from(
        &args.flows,
        &args.history_db,
        &args.socket,
        args.lab.as_deref(),
        args.window.window(),
    )
}

/// The histories of flow logs, history databases, agents' sockets and a
/// lab's flow logs within `window`, merged (`propose`'s and `baseline
/// take`'s sources), and what window they cover.
pub(super) fn history_from(
    flows: &[PathBuf],
    history_db: &[PathBuf],
    socket: &[PathBuf],
    lab: Option<&str>,
    window: Window,
) -> Result<(History, WindowFacts), ProposeError> {
    if let (Some(since), Some(until)) = (window.since, window.until)
        && since >= until
    {
        return Err(ProposeError::EmptyWindow { since, until });
    }
    let mut history = History::default();
    let mut facts = WindowFacts::exact(window);
    let mut stored = |s: Stored, facts: &mut WindowFacts| {
        history.merge(&s.history);
        if let Some(w) = s.window {
            facts.widen(Window {
                since: w.since,
                until: w.until,
            });
            facts.partial |= w.partial;
            facts.notes.extend(w.notes);
        }
    };
    for path in history_db {
        stored(learn::store::read_window(path, window)?, &mut facts);
    }
    for path in socket {
        stored(from_agent(path, window)?, &mut facts);
    }
    let mut logs = flows.to_vec();
    if let Some(name) = lab {
        // Every node's agent logs its own pods' flows.
        logs.extend(bulkhead_lab::state::flow_logs(name)?);
    }
    for path in &logs {
        history.merge(&learn::read_jsonl_window(path, window)?);
    }
    Ok((history, facts))
}

/// The running agent's committed history, from `GET /v1/history`.
fn from_agent(path: &Path, window: Window) -> Result<Stored, ProposeError> {
    let stream = UnixStream::connect(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => ProposeError::SocketMissing {
            path: path.to_owned(),
        },
        std::io::ErrorKind::ConnectionRefused => ProposeError::Refused {
            path: path.to_owned(),
        },
        _ => ProposeError::Connect {
            path: path.to_owned(),
            source,
        },
    })?;
    let agent = |source| ProposeError::Agent {
        path: path.to_owned(),
        source,
    };
    stream
        .set_read_timeout(Some(AGENT_TIMEOUT))
        .map_err(|e| agent(e.into()))?;
    let mut query = Vec::new();
    for (name, t) in [("since", window.since), ("until", window.until)] {
        if let Some(t) = t {
            query.push(format!("{name}={}", t.0));
        }
    }
    let uri = if query.is_empty() {
        "/v1/history".to_owned()
    } else {
        format!("/v1/history?{}", query.join("&"))
    };
    let mut resp = client::get(stream, &uri).map_err(agent)?;
    let mut body = Vec::new();
    resp.read_to_end(&mut body).map_err(|e| agent(e.into()))?;
    let stored: Stored =
        serde_json::from_slice(&body).map_err(|source| ProposeError::AgentAnswer {
            path: path.to_owned(),
            source,
        })?;
    if !window.is_all() && stored.window.is_none() {
        // An agent of an earlier version ignores the query: its answer is
        // the whole history, which no window can be cut from.
        return Err(ProposeError::AgentWithoutWindows {
            path: path.to_owned(),
        });
    }
    Ok(stored)
}

#[cfg(test)]
mod tests;
