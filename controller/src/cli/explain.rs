//! `bulkhead explain`: the verdict for one connection and the rules behind
//! it; for a connection to a Service, per backend.

use std::io::Write;

use clap::Args;

use super::{CliError, ManifestArgs, Output};
use bulkhead_agent::quarantine::QuarantineOrigin;
use bulkhead_policy::compile::compile;
use bulkhead_policy::eval::explain::text::{write_service, write_text};
use bulkhead_policy::eval::explain::{Answer, PeerArg, answer};
use bulkhead_policy::model::{Protocol, Quarantine};

/// Arguments of `bulkhead explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Manifests.
    #[command(flatten)]
    pub manifests: ManifestArgs,
    /// Source: `namespace/name` of a pod, an IP address, or `node` (the
    /// node's address of the family, from --node-ip).
    #[arg(long, value_name = "PEER")]
    pub from: PeerArg,
    /// Destination: `namespace/name` of a pod, an IP address, `node`, or
    /// a Service (`svc/NAMESPACE/NAME`, or one of its addresses: a
    /// ClusterIP, an external or load-balancer address, a node address
    /// with a NodePort), explained per backend pod.
    #[arg(long, value_name = "PEER")]
    pub to: PeerArg,
    /// The node's addresses (repeat or comma-separate), as the agent reads
    /// them from its network namespace: ingress from them is always
    /// allowed, as Kubernetes requires.
    #[arg(long, value_name = "IP", value_delimiter = ',')]
    pub node_ip: Vec<std::net::IpAddr>,
    /// TCP, UDP or SCTP.
    #[arg(long, default_value = "TCP")]
    pub protocol: Protocol,
    /// Destination port (for a Service: the Service port, or the NodePort
    /// on a node address).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
    /// Mode of policies that neither they nor their namespace annotate
    /// (`bulkhead.io/mode`), as the agent's `--mode`: only enforce-mode
    /// policies decide what is allowed.
    #[arg(long, value_name = "MODE", default_value = "enforce")]
    pub mode: bulkhead_policy::model::Mode,
    /// Explain as if these pods were quarantined (`bulkhead quarantine`;
    /// repeat or comma-separate), besides those their labels quarantine.
    #[arg(long, value_name = "NS/POD", value_delimiter = ',')]
    pub quarantined: Vec<String>,
    /// Also apply the quarantines the agent serving this API socket
    /// holds (`bulkhead quarantine --list`).
    #[arg(long, value_name = "PATH")]
    pub agent_socket: Option<std::path::PathBuf>,
}

/// The quarantines `args` ask to apply: `--quarantined` and the agent's.
fn quarantines(args: &ExplainArgs) -> Result<Vec<Quarantine>, CliError> {
    let mut out = Vec::new();
    for q in &args.quarantined {
        let (namespace, pod) = super::quarantine::parse_pod(q)?;
        out.push(Quarantine {
            namespace,
            pod,
            reason: "bulkhead explain --quarantined".to_owned(),
            allow_dns: false,
        });
    }
    if let Some(socket) = &args.agent_socket {
        let hint = "is the agent running with this --api-socket?".to_owned();
        let stream = super::flows::connect(socket, hint)
            .map_err(super::quarantine::QuarantineCliError::from)?;
        let list = bulkhead_agent::api::client::quarantines(stream).map_err(|source| {
            super::quarantine::QuarantineCliError::Api {
                socket: socket.clone(),
                source,
            }
        })?;
        for s in list.quarantines {
            if s.origin == QuarantineOrigin::Store && !out.iter().any(|q| q.key() == s.key()) {
                out.push(Quarantine {
                    namespace: s.namespace,
                    pod: s.pod,
                    reason: s.reason,
                    allow_dns: s.allow_dns,
                });
            }
        }
    }
    Ok(out)
}

/// Runs the command.
pub fn run(args: &ExplainArgs) -> Result<(), CliError> {
    let mut model = args.manifests.load()?;
    let quarantines = quarantines(args)?;
    if !quarantines.is_empty() {
        model.apply_quarantines(&quarantines);
    }
    model.default_mode = args.mode;
    model.node_ips = args.node_ip.clone();
    let compiled = compile(&model);
    let e = answer(
        &model,
        &compiled,
        &args.from,
        &args.to,
        args.protocol,
        args.port,
    )?;
    let mut out = std::io::stdout().lock();
    match (args.output, &e) {
        (Output::Json, _) => {
            serde_json::to_writer_pretty(&mut out, &e).map_err(std::io::Error::from)?;
            writeln!(out)?;
        }
        (Output::Text, Answer::Connection(c)) => write_text(&mut out, c)?,
        (Output::Text, Answer::Service(s)) => write_service(&mut out, s)?,
    }
    Ok(())
}
