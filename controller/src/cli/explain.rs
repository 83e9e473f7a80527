//! `bulkhead explain`: the verdict for one connection and the rules behind
//! it; for a connection to a Service, per backend.

use std::io::Write;

use clap::Args;

use super::{CliError, ManifestArgs, Output};
use bulkhead_agent::quarantine::QuarantineOrigin;
use bulkhead_policy::compile::compile;
use bulkhead_policy::eval::explain::{
    Answer, Explanation, PeerArg, RuleRef, ServiceExplanation, SideExplanation, answer,
};
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

fn name(end: &bulkhead_policy::eval::explain::EndpointInfo) -> String {
    let addr = end.addr;
    match &end.pod {
        Some(p) => format!("{p} ({addr})"),
        None if end.node => format!("{addr} (the node)"),
        None => format!("{addr} (not a pod)"),
    }
}

fn rule_line(r: &RuleRef, direction: &str) -> String {
    let peers = if direction == "egress" { "to" } else { "from" };
    if let (Some(tier), Some(action)) = (r.tier, r.action) {
        // A cluster-admin rule: tier, priority, name and action first (its
        // port entries are the API's protocols, so no index).
        let mut at = format!(
            "{} ({tier} tier, priority {}) {direction}[{}]",
            r.policy,
            r.priority.unwrap_or_default(),
            r.rule
        );
        if let Some(n) = &r.name {
            at.push_str(&format!(" {n:?}"));
        }
        if let Some(p) = r.peer {
            at.push_str(&format!(".{peers}[{p}]"));
        }
        return format!("{at} {action}: {} · {}", r.peer_text, r.port_text);
    }
    let mut at = format!("{} {direction}[{}]", r.policy, r.rule);
    if let Some(p) = r.peer {
        at.push_str(&format!(".{peers}[{p}]"));
    }
    if let Some(p) = r.port {
        at.push_str(&format!(".ports[{p}]"));
    }
    format!("{at}: {} · {}", r.peer_text, r.port_text)
}

fn write_side(out: &mut impl Write, s: &SideExplanation, what: &str) -> std::io::Result<()> {
    write_enforced(out, s, what)?;
    let d = s.direction.as_str();
    if let Some(a) = &s.audit {
        let verdict = if a.verdict == "allowed" {
            format!("✓ would allow {what}")
        } else {
            format!("✗ would deny {what}")
        };
        writeln!(
            out,
            "  audit (staged: {}): {verdict} if promoted",
            a.policies.join(", ")
        )?;
    }
    if !s.learning.is_empty() {
        writeln!(
            out,
            "  learning (not enforced): {} select it for {d}",
            s.learning.join(", ")
        )?;
    }
    Ok(())
}

fn write_enforced(out: &mut impl Write, s: &SideExplanation, what: &str) -> std::io::Result<()> {
    let d = s.direction.as_str();
    let who = s.pod.as_deref().unwrap_or("the address");
    match s.verdict {
        "not-a-pod" => return writeln!(out, "{d}: ✓ not a pod, no {d} policy applies"),
        "not-isolated" if s.admin_policies.is_empty() => {
            return writeln!(
                out,
                "{d} of {who}: ✓ allowed: no policy selects it for {d} (not isolated)"
            );
        }
        _ => {}
    }
    if !s.admin_policies.is_empty() {
        writeln!(
            out,
            "{d} of {who}: cluster-admin policies {}",
            s.admin_policies.join(", ")
        )?;
    }
    if s.isolated {
        writeln!(out, "{d} of {who}: isolated by {}", s.policies.join(", "))?;
    } else {
        writeln!(out, "{d} of {who}: no NetworkPolicy selects it for {d}")?;
    }
    if s.verdict == "from-node" {
        return writeln!(
            out,
            "  ✓ allowed: the peer is the pod's own node, which Kubernetes always lets in"
        );
    }
    for r in &s.passed {
        writeln!(out, "  ↷ passed to the next tier by {}", rule_line(r, d))?;
    }
    if let Some(r) = &s.denied_by {
        writeln!(out, "  ✗ denied by {}", rule_line(r, d))?;
    } else if s.verdict == "not-isolated" {
        writeln!(out, "  ✓ allowed: no rule decides {what}")?;
    } else if s.allowed_by.is_empty() {
        writeln!(out, "  ✗ denied: no {d} rule allows {what}")?;
    } else {
        writeln!(out, "  ✓ allowed by:")?;
        for r in &s.allowed_by {
            writeln!(out, "      {}", rule_line(r, d))?;
        }
    }
    let near_misses = [
        (
            "rules that match the peer but not this protocol/port",
            &s.peer_matches_port_does_not,
        ),
        (
            "rules that match this protocol/port but not the peer",
            &s.port_matches_peer_does_not,
        ),
    ];
    for (title, rules) in near_misses {
        if !rules.is_empty() {
            writeln!(out, "  {title}:")?;
        }
        for r in rules {
            writeln!(out, "      {}", rule_line(r, d))?;
        }
    }
    Ok(())
}

fn write_text(out: &mut impl Write, e: &Explanation) -> std::io::Result<()> {
    let what = format!("{} {}", e.protocol, e.port);
    writeln!(out, "{what}  {} → {}", name(&e.src), name(&e.dst))?;
    writeln!(
        out,
        "verdict: {}\n",
        if e.allowed { "ALLOWED" } else { "DENIED" }
    )?;
    write_side(out, &e.egress, &what)?;
    write_side(out, &e.ingress, &what)
}

fn write_service(out: &mut impl Write, s: &ServiceExplanation) -> std::io::Result<()> {
    let f = &s.frontend;
    let at = match f.addr {
        Some(std::net::IpAddr::V6(a)) => format!(" [{a}]:{}", f.port),
        Some(a) => format!(" {a}:{}", f.port),
        None => format!(" port {}", f.port),
    };
    let client = s
        .backends
        .first()
        .map_or_else(String::new, |b| format!("{} → ", name(&b.explanation.src)));
    let n = s.backends.len();
    writeln!(
        out,
        "{} {}  {client}svc {}{at} ({n} backend{})",
        s.protocol,
        f.port,
        s.service,
        if n == 1 { "" } else { "s" }
    )?;
    let allowed = s.backends.iter().filter(|b| b.explanation.allowed).count();
    let verdict = match s.verdict {
        "allowed" => "ALLOWED to every backend".to_owned(),
        "denied" => "DENIED to every backend".to_owned(),
        "no-backends" => format!(
            "NO BACKENDS: {}",
            s.no_backends.as_deref().unwrap_or("none")
        ),
        _ => format!("ALLOWED to {allowed} of {n} backends, DENIED to the others"),
    };
    writeln!(out, "verdict: {verdict}")?;
    for b in &s.backends {
        let e = &b.explanation;
        let what = format!("{} {}", e.protocol, e.port);
        writeln!(
            out,
            "\nbackend {} → {what}: {}",
            name(&e.dst),
            if e.allowed { "ALLOWED" } else { "DENIED" }
        )?;
        // Each backend's sides, indented under it.
        let mut sides = Vec::new();
        write_side(&mut sides, &e.egress, &what)?;
        write_side(&mut sides, &e.ingress, &what)?;
        for line in String::from_utf8_lossy(&sides).lines() {
            writeln!(out, "  {line}")?;
        }
    }
    Ok(())
}
