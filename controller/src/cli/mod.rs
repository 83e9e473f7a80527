//! The `bulkhead` command line.

pub mod agent;
pub mod audit;
pub mod baseline;
pub mod connectivity;
pub mod explain;
pub mod flows;
pub mod lab;
pub mod promote;
pub mod propose;
pub mod quarantine;
pub mod status;
pub mod timeline;
pub mod ui;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use ipnetwork::IpNetwork;

use bulkhead_policy::model::Model;
use bulkhead_policy::model::addressing::AddressPlan;
use bulkhead_policy::source::manifest::{self, ManifestErrors};

/// Bulkhead: network micro-segmentation for containers and Kubernetes.
#[derive(Debug, Parser)]
#[command(name = "bulkhead", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List every allowed connection under the manifests' NetworkPolicies.
    Connectivity(connectivity::ConnectivityArgs),
    /// Explain the verdict for one connection: which policies and rules decide it.
    Explain(explain::ExplainArgs),
    /// Pods as network namespaces with real servers: up, probe, verify, down.
    Lab(lab::LabArgs),
    /// The per-node agent: enforce the manifests' policy on local pod veths, follow changes.
    Agent(Box<agent::AgentArgs>),
    /// What the pinned dataplane enforces: revision, endpoints, map fill, drops.
    Status(status::StatusArgs),
    /// Recent and live flows from the agent, filtered: one line each, or JSON Lines.
    Flows(flows::FlowsArgs),
    /// Propose NetworkPolicies that allow exactly the observed flows, with a coverage proof.
    Propose(propose::ProposeArgs),
    /// Baselines of how workloads talk, for the agent's deviation alerts: take, accept, show.
    Baseline(baseline::BaselineArgs),
    /// Change the mode of NetworkPolicies in their manifests (audit → enforce), safely.
    Promote(promote::PromoteArgs),
    /// Policies in audit mode: every flow they would deny, grouped by policy and peer.
    Audit(audit::AuditArgs),
    /// Cut a pod off the network at once, established connections included, whatever the policies allow (or --list).
    Quarantine(quarantine::QuarantineArgs),
    /// Lift a pod's quarantine: its policies apply again, exactly as before.
    Unquarantine(quarantine::UnquarantineArgs),
    /// A pod's forensic timeline: its flows, alerts, quarantines, policy and mode changes, in time order.
    Timeline(timeline::TimelineArgs),
}

/// Output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// For people.
    #[default]
    Text,
    /// JSON (Lines where there are several records).
    Json,
}

/// Where the model comes from.
#[derive(Debug, Args)]
pub struct ManifestArgs {
    /// Directory (searched recursively) or file of Kubernetes manifests, YAML or JSON.
    #[arg(long, value_name = "DIR")]
    pub manifests: PathBuf,
    /// CIDR to assign pod addresses from when a pod has none in its status;
    /// give one per family (repeat or comma-separate). Default: 10.244.0.0/16 and fd00:10:244::/64.
    #[arg(long, value_name = "CIDR", value_delimiter = ',')]
    pub pod_cidr: Vec<IpNetwork>,
    /// Ignore status.podIP(s) and assign every pod an address from --pod-cidr.
    #[arg(long)]
    pub assign_pod_ips: bool,
    /// CIDR to assign Service ClusterIPs from when a Service has none, as
    /// the API server's --service-cluster-ip-range; one per family, the
    /// first is the primary family (repeat or comma-separate).
    /// Default: 10.96.0.0/16 and fd00:10:96::/112.
    #[arg(long, value_name = "CIDR", value_delimiter = ',')]
    pub service_cidr: Vec<IpNetwork>,
}

impl ManifestArgs {
    /// Loads and validates the manifests.
    pub fn load(&self) -> Result<Model, ManifestErrors> {
        self.load_for(manifest::Purpose::Analysis)
    }

    /// [`Self::load`] for `purpose`.
    pub fn load_for(&self, purpose: manifest::Purpose) -> Result<Model, ManifestErrors> {
        let mut plan = AddressPlan {
            ignore_status: self.assign_pod_ips,
            ..AddressPlan::default()
        };
        if !self.pod_cidr.is_empty() {
            plan.cidrs = self
                .pod_cidr
                .iter()
                .map(|c| IpNetwork::new(c.network(), c.prefix()).unwrap_or(*c))
                .collect();
        }
        if !self.service_cidr.is_empty() {
            plan.service_cidrs = self
                .service_cidr
                .iter()
                .map(|c| IpNetwork::new(c.network(), c.prefix()).unwrap_or(*c))
                .collect();
        }
        let model = manifest::load_dir_for(&self.manifests, &plan, purpose)?;
        tracing::info!(
            pods = model.pods.len(),
            namespaces = model.namespaces.len(),
            policies = model.policies.len(),
            services = model.services.len(),
            "loaded manifests"
        );
        Ok(model)
    }
}

/// Errors of a command, reported at the binary's edge with exit status 2.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The manifests are invalid.
    #[error(transparent)]
    Manifests(#[from] ManifestErrors),
    /// The explain query cannot be answered.
    #[error(transparent)]
    Explain(#[from] bulkhead_policy::eval::explain::ExplainError),
    /// A lab operation failed.
    #[error(transparent)]
    Lab(#[from] bulkhead_lab::LabError),
    /// `lab verify` found probes the policy does not predict (exit status 1).
    #[error("{count} of {probes} probes disagree with the policy")]
    Disagreements {
        /// Disagreeing probes.
        count: usize,
        /// All probes.
        probes: usize,
    },
    /// The agent failed.
    #[error(transparent)]
    Agent(#[from] bulkhead_agent::AgentError),
    /// The dataplane could not be read.
    #[error(transparent)]
    Dataplane(#[from] bulkhead_dataplane::DataplaneError),
    /// `bulkhead flows` could not read the agent's flows.
    #[error(transparent)]
    Flows(#[from] flows::FlowsError),
    /// `bulkhead quarantine` or `unquarantine` failed.
    #[error(transparent)]
    Quarantine(#[from] quarantine::QuarantineCliError),
    /// `bulkhead timeline` could not read the agent's timeline.
    #[error(transparent)]
    Timeline(#[from] timeline::TimelineCliError),
    /// `bulkhead propose` could not read its input or write its files.
    #[error(transparent)]
    Propose(#[from] propose::ProposeError),
    /// `bulkhead promote` changed nothing (or not everything, if writing failed).
    #[error(transparent)]
    Promote(#[from] bulkhead_learn::promote::PromoteError),
    /// `bulkhead audit` could not read its input, or found would-deny
    /// flows under `--fail-on-would-deny` (exit status 1).
    #[error(transparent)]
    Audit(#[from] audit::AuditError),
    /// The proposal does not allow every observed edge (exit status 1).
    #[error("{denied} of {replayed} observed edges are not allowed by the proposal")]
    Uncovered {
        /// Edges denied.
        denied: usize,
        /// Edges replayed.
        replayed: usize,
    },
    /// A baseline, its edges or alerts, or the agent's alerting flags.
    #[error(transparent)]
    Baseline(#[from] baseline::BaselineCliError),
    /// The agent's web UI flags.
    #[error(transparent)]
    Ui(#[from] ui::UiCliError),
    /// Writing output failed.
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Connectivity(args) => connectivity::run(&args),
        Command::Explain(args) => explain::run(&args),
        Command::Lab(args) => lab::run(&args),
        Command::Agent(args) => agent::run(&args),
        Command::Status(args) => status::run(&args),
        Command::Flows(args) => flows::run(&args),
        Command::Propose(args) => propose::run(&args),
        Command::Baseline(args) => baseline::run(&args),
        Command::Promote(args) => promote::run(&args),
        Command::Audit(args) => audit::run(&args),
        Command::Quarantine(args) => quarantine::run(&args),
        Command::Unquarantine(args) => quarantine::run_unquarantine(&args),
        Command::Timeline(args) => timeline::run(&args),
    }
}

impl CliError {
    /// Exit status: 1 for a finding the user asked about, 2 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Disagreements { .. } | CliError::Uncovered { .. } => 1,
            CliError::Audit(e) => e.exit_code(),
            _ => 2,
        }
    }
}
