//! `bulkhead lab`: pods as network namespaces on this machine, real
//! servers on their ports, and probes with real packets. See [`crate::lab`].

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use ipnetwork::IpNetwork;

use super::connectivity::json_line;
use super::{CliError, ManifestArgs, Output};
use crate::compile::compile;
use crate::eval::connectivity::connectivity;
use crate::lab::naming::{DEFAULT_LAB, check_lab_name};
use crate::lab::plan::{LabSpec, plan};
use crate::lab::probe::{ProbeOptions, ProbeResult, run_helper, run_probes, text_line};
use crate::lab::state::{LabState, Ports, state_path};
use crate::lab::verify::{ConnectivityLine, disagreements};
use crate::lab::{LabError, serve, setup};
use crate::model::Protocol;
use crate::model::addressing::AddressPlan;
use crate::source::manifest;

/// Arguments of `bulkhead lab`.
#[derive(Debug, Args)]
pub struct LabArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: LabCommand,
}

/// `bulkhead lab` subcommands.
#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Create the lab: a node namespace, one namespace per pod (and external
    /// host) behind it, servers on every container port. Returns once every
    /// server listens.
    Up(UpArgs),
    /// Probe every ordered pair of hosts with real packets.
    Probe(ProbeArgs),
    /// Compare live probes with `bulkhead connectivity` on the lab's
    /// manifests; exit status 1 on any disagreement.
    Verify(VerifyArgs),
    /// Remove every namespace, veth and process of the lab (idempotent,
    /// also after a crash or without the state file).
    Down(NameArg),
    /// (internal) The servers of one lab host, run inside its namespace.
    #[command(hide = true)]
    Serve(ServeArgs),
    /// (internal) Runs probes read from stdin inside a source namespace.
    #[command(hide = true)]
    ProbeFrom,
}

/// The lab's name.
#[derive(Debug, Args)]
pub struct NameArg {
    /// Lab name: 1 to 6 characters of [a-z0-9] (names every namespace `bh-<name>-...`).
    #[arg(long, default_value = DEFAULT_LAB)]
    pub name: String,
}

/// Arguments of `lab up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Manifests.
    #[command(flatten)]
    pub manifests: ManifestArgs,
    /// Addresses of external hosts (outside the pod CIDRs), one namespace
    /// each behind the node; repeat or comma-separate.
    #[arg(long, value_name = "IP", value_delimiter = ',')]
    pub external: Vec<IpAddr>,
    /// Extra ports served on every host, for TCP, UDP and SCTP.
    #[arg(long, value_name = "PORT", value_delimiter = ',',
          value_parser = clap::value_parser!(u16).range(1..))]
    pub ports: Vec<u16>,
    /// Lab name.
    #[command(flatten)]
    pub name: NameArg,
}

/// IP families to probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Family {
    /// IPv4 only.
    #[value(name = "4")]
    V4,
    /// IPv6 only.
    #[value(name = "6")]
    V6,
    /// Both.
    Both,
}

impl Family {
    fn list(self) -> Vec<bool> {
        match self {
            Family::V4 => vec![true],
            Family::V6 => vec![false],
            Family::Both => vec![true, false],
        }
    }
}

/// What to probe and how.
#[derive(Debug, Args)]
pub struct ProbeSelection {
    /// Destination ports (default: each destination's container ports of the protocol).
    #[arg(long, value_name = "PORT", value_delimiter = ',',
          value_parser = clap::value_parser!(u16).range(1..))]
    pub ports: Vec<u16>,
    /// Protocols.
    #[arg(long, value_name = "PROTO", value_delimiter = ',', default_values = ["TCP", "UDP", "SCTP"])]
    pub protocols: Vec<Protocol>,
    /// How long to wait for an answer before calling a probe a timeout.
    #[arg(long, value_name = "MS", default_value_t = 500)]
    pub timeout_ms: u64,
    /// Most probes in flight at once.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub max_in_flight: usize,
}

impl ProbeSelection {
    fn options(&self, family: Family) -> ProbeOptions {
        let mut protocols = self.protocols.clone();
        protocols.sort();
        protocols.dedup();
        ProbeOptions {
            ports: (!self.ports.is_empty()).then(|| self.ports.clone()),
            protocols,
            families: family.list(),
            timeout: Duration::from_millis(self.timeout_ms.max(1)),
            max_in_flight: self.max_in_flight.max(1),
        }
    }
}

/// Arguments of `lab probe`.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// Lab name.
    #[command(flatten)]
    pub name: NameArg,
    /// What to probe.
    #[command(flatten)]
    pub selection: ProbeSelection,
    /// IP family.
    #[arg(long, value_enum, default_value = "4")]
    pub family: Family,
    /// Output: `text`, or `json` (JSON Lines, one object per probe).
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
}

/// Arguments of `lab verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Lab name.
    #[command(flatten)]
    pub name: NameArg,
    /// What to probe.
    #[command(flatten)]
    pub selection: ProbeSelection,
    /// IP family.
    #[arg(long, value_enum, default_value = "both")]
    pub family: Family,
    /// Output: `text`, or `json` (JSON Lines, one object per disagreement).
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
}

/// Arguments of `lab serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The lab (lets `lab down` recognise the process).
    #[arg(long)]
    pub lab: String,
    /// The host served.
    #[arg(long)]
    pub host: String,
    /// TCP ports.
    #[arg(long, value_delimiter = ',')]
    pub tcp: Vec<u16>,
    /// UDP ports.
    #[arg(long, value_delimiter = ',')]
    pub udp: Vec<u16>,
    /// SCTP ports.
    #[arg(long, value_delimiter = ',')]
    pub sctp: Vec<u16>,
}

fn progress(msg: &str) {
    eprintln!("lab: {msg}");
}

fn exe() -> Result<PathBuf, LabError> {
    std::env::current_exe().map_err(LabError::io("/proc/self/exe"))
}

fn cidrs(args: &ManifestArgs) -> Vec<IpNetwork> {
    if args.pod_cidr.is_empty() {
        AddressPlan::default().cidrs
    } else {
        args.pod_cidr
            .iter()
            .map(|c| IpNetwork::new(c.network(), c.prefix()).unwrap_or(*c))
            .collect()
    }
}

fn load_state(name: &str) -> Result<LabState, CliError> {
    check_lab_name(name)?;
    LabState::load(name)?.ok_or_else(|| {
        CliError::Lab(LabError::NotUp {
            name: name.to_owned(),
            path: state_path(name),
        })
    })
}

/// Runs `bulkhead lab ...`.
pub fn run(args: &LabArgs) -> Result<(), CliError> {
    match &args.command {
        LabCommand::Up(a) => up(a),
        LabCommand::Probe(a) => probe(a),
        LabCommand::Verify(a) => verify(a),
        LabCommand::Down(a) => {
            let r = setup::down(&a.name, &progress)?;
            if r.namespaces == 0 && r.processes == 0 && !r.state {
                progress(&format!("lab {} is not up; nothing to remove", a.name));
            } else {
                progress(&format!("lab {} is down", a.name));
            }
            Ok(())
        }
        LabCommand::Serve(a) => {
            let ports = Ports {
                tcp: a.tcp.iter().copied().collect(),
                udp: a.udp.iter().copied().collect(),
                sctp: a.sctp.iter().copied().collect(),
            };
            Ok(serve::serve(&a.host, &ports)?)
        }
        LabCommand::ProbeFrom => Ok(run_helper()?),
    }
}

fn up(args: &UpArgs) -> Result<(), CliError> {
    check_lab_name(&args.name.name)?;
    let model = args.manifests.load()?;
    let manifests = std::fs::canonicalize(&args.manifests.manifests)
        .map_err(LabError::io(&args.manifests.manifests))?;
    let spec = LabSpec {
        name: args.name.name.clone(),
        manifests,
        pod_cidrs: cidrs(&args.manifests),
        assign_pod_ips: args.manifests.assign_pod_ips,
        externals: args.external.clone(),
        extra_ports: args.ports.clone(),
    };
    let state = plan(&model, &spec)?;
    setup::up(state, &exe()?, &progress)?;
    Ok(())
}

fn probe(args: &ProbeArgs) -> Result<(), CliError> {
    let state = load_state(&args.name.name)?;
    let results = run_probes(&state, &args.selection.options(args.family), &exe()?)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match args.output {
        Output::Json => {
            for r in &results {
                serde_json::to_writer(&mut out, &r.to_json()).map_err(std::io::Error::from)?;
                writeln!(out)?;
            }
        }
        Output::Text => write_probe_text(&mut out, &results)?,
    }
    out.flush()?;
    Ok(())
}

fn write_probe_text(out: &mut impl Write, results: &[ProbeResult]) -> std::io::Result<()> {
    for r in results {
        writeln!(out, "{}", text_line(r))?;
    }
    let allowed = results.iter().filter(|r| r.allowed()).count();
    writeln!(
        out,
        "\n{} probes: {allowed} allowed, {} denied.",
        results.len(),
        results.len() - allowed
    )
}

/// The connectivity lines of the lab's manifests, checking that they still
/// give the pods and addresses the lab was made with.
fn expected_lines(state: &LabState) -> Result<Vec<ConnectivityLine>, CliError> {
    let plan = AddressPlan {
        cidrs: state
            .pod_cidrs
            .iter()
            .filter_map(|c| c.parse().ok())
            .collect(),
        ignore_status: state.assign_pod_ips,
    };
    let model = manifest::load_dir(&state.manifests, &plan)?;
    let now: Vec<(String, Vec<IpAddr>)> = model
        .pods
        .iter()
        .map(|p| (p.key(), p.ips.clone()))
        .collect();
    let then: Vec<(String, Vec<IpAddr>)> = state
        .hosts
        .iter()
        .filter(|h| !h.external)
        .map(|h| (h.name.clone(), h.ips.clone()))
        .collect();
    if now != then {
        let what = match now.iter().zip(&then).find(|(a, b)| a != b) {
            Some((a, b)) => format!("{} {:?} was {} {:?}", a.0, a.1, b.0, b.1),
            None => format!("{} pods, was {}", now.len(), then.len()),
        };
        return Err(LabError::ManifestsChanged {
            manifests: state.manifests.clone(),
            what,
        }
        .into());
    }
    let compiled = compile(&model);
    connectivity(&model, &compiled)
        .iter()
        .map(|c| ConnectivityLine::from_json(json_line(c)).map_err(|e| CliError::Output(e.into())))
        .collect()
}

fn verify(args: &VerifyArgs) -> Result<(), CliError> {
    let state = load_state(&args.name.name)?;
    let lines = expected_lines(&state)?;
    let results = run_probes(&state, &args.selection.options(args.family), &exe()?)?;
    let found = disagreements(&results, &lines);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match args.output {
        Output::Json => {
            for d in &found {
                serde_json::to_writer(&mut out, &d.to_json()).map_err(std::io::Error::from)?;
                writeln!(out)?;
            }
        }
        Output::Text => {
            for d in &found {
                writeln!(out, "{}", d.text())?;
            }
            writeln!(
                out,
                "{} probes, {} disagreement{} with the policy.",
                results.len(),
                found.len(),
                if found.len() == 1 { "" } else { "s" }
            )?;
        }
    }
    out.flush()?;
    if found.is_empty() {
        Ok(())
    } else {
        Err(CliError::Disagreements {
            count: found.len(),
            probes: results.len(),
        })
    }
}
