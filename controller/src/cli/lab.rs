//! `bulkhead lab`: pods as network namespaces on this machine, real
//! servers on their ports, and probes with real packets. See [`bulkhead_lab`].

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use ipnetwork::IpNetwork;

use super::agent::Switch;
use super::{CliError, ManifestArgs, Output};
use bulkhead_lab::kubeproxy::{self, ProxyMode};
use bulkhead_lab::naming::{DEFAULT_LAB, check_lab_name};
use bulkhead_lab::nodes::placement;
use bulkhead_lab::plan::{LabSpec, has_host_network, plan, with_agent_addresses};
use bulkhead_lab::probe::{
    ProbeOptions, ProbeResult, ServiceRoute, Via, run_helper, run_probes, service_routes,
    text_table, unmatched_pattern,
};
use bulkhead_lab::state::{AgentSource, LabState, Ports, state_path};
use bulkhead_lab::{LabError, agent, cluster, serve, setup};
use bulkhead_policy::model::addressing::AddressPlan;
use bulkhead_policy::model::{Mode, Model, Protocol};
use bulkhead_policy::source::manifest::content_hash;

mod status;
#[cfg(test)]
mod tests;
pub mod ui;
mod verify;

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
    /// Create the lab: a node namespace (or --nodes N of them on a routed
    /// fabric), one namespace per pod (and external host) behind them,
    /// servers on every container port, and an agent per node enforcing
    /// the manifests' policy. Returns once every server listens and every
    /// agent enforces.
    Up(Box<UpArgs>),
    /// Wait until the agent enforces the watched directory's current
    /// content (with the Kubernetes API as its source: everything the API
    /// had when asked, by resourceVersion); fails with the agent's error if
    /// it rejects it (the policy in force stays); then until every node's
    /// kube-proxy rules are those of the same content.
    Sync(SyncArgs),
    /// Probe every ordered pair of hosts with real packets.
    Probe(ProbeArgs),
    /// Compare live probes with `bulkhead connectivity` on the policy in
    /// force (the watched directory once the agent enforces it, or the
    /// Kubernetes API's objects read as the agent reads them); exit status
    /// 1 on any disagreement.
    Verify(VerifyArgs),
    /// Start the lab's agent again after it died (refused while it runs,
    /// unless --kubeconfig or --manifests switches its source): on the same
    /// pins, it adopts the pinned dataplane, which kept enforcing
    /// meanwhile. Returns once it enforces its source.
    RestartAgent(RestartArgs),
    /// What the lab is: its pods and addresses, its agent, and where the
    /// agent reads pods and policy from (the watched manifests or the
    /// Kubernetes API) and how that source is doing.
    Status(status::StatusArgs),
    /// Where each node agent serves its web UI (the network map): a URL
    /// on this host's loopback per node.
    Ui(ui::UiArgs),
    /// Stop the agent, remove its pins and the lab's bpffs, every
    /// namespace, veth and process (idempotent, also after a crash or
    /// without the state file).
    Down(NameArg),
    /// (internal) The servers of one lab host, run inside its namespace.
    #[command(hide = true)]
    Serve(ServeArgs),
    /// (internal) Runs probes read from stdin inside a source namespace.
    #[command(hide = true)]
    ProbeFrom,
    /// (internal) A node's kube-proxy, run inside its namespace: installs
    /// the Service NAT rules and follows the lab's source.
    #[command(hide = true)]
    KubeProxy(KubeProxyArgs),
}

/// Arguments of `lab kube-proxy`.
#[derive(Debug, Args)]
pub struct KubeProxyArgs {
    /// The lab.
    #[arg(long)]
    pub lab: String,
    /// The node's index.
    #[arg(long)]
    pub node: usize,
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
    /// The agent watches the --manifests directory itself (edits there take
    /// effect) rather than a copy in the lab's directory.
    #[arg(long)]
    pub watch: bool,
    /// Start no agent: nothing is enforced (probes show the bare network).
    #[arg(long)]
    pub no_agent: bool,
    /// Attach the agent's XDP prefilter to the pods' veths.
    #[arg(long, value_enum, default_value_t = Switch::Off)]
    pub xdp: Switch,
    /// The agent's host routing (see `bulkhead agent --help`).
    #[arg(long, value_enum, default_value_t = Switch::On)]
    pub host_routing: Switch,
    /// The agent exports flow records as IPFIX to this collector (an
    /// address in the node namespace, e.g. 127.0.0.1:4739).
    #[arg(long, value_name = "HOST:PORT")]
    pub ipfix: Option<std::net::SocketAddr>,
    /// The agent serves /metrics over TCP at this address in the node
    /// namespace (e.g. 127.0.0.1:9617).
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// The agent serves its web UI (the network map) at this loopback
    /// address of the host (one-node labs; default 127.0.0.1:0, a free
    /// port: `bulkhead lab ui` prints the URL).
    #[arg(long, value_name = "ADDR", conflicts_with_all = ["no_ui", "no_agent"])]
    pub ui: Option<std::net::SocketAddr>,
    /// The agents serve no web UI.
    #[arg(long)]
    pub no_ui: bool,
    /// The agent finishes flows idle this long, in seconds (default 15).
    #[arg(long, value_name = "SECS")]
    pub flow_idle_timeout: Option<u64>,
    /// The agents alert on connections outside this baseline (repeatable;
    /// see `bulkhead baseline take --lab`).
    #[arg(long = "baseline", value_name = "FILE", conflicts_with = "no_agent")]
    pub baselines: Vec<PathBuf>,
    /// The agents post their alerts to this Alertmanager (a URL reachable
    /// from the node namespace, e.g. http://127.0.0.1:9093).
    #[arg(long, value_name = "URL", conflicts_with = "no_agent")]
    pub alertmanager: Option<String>,
    /// The agents append their alerts to this file as JSON Lines.
    #[arg(long, value_name = "PATH", conflicts_with = "no_agent")]
    pub alerts_jsonl: Option<PathBuf>,
    /// The agents' scan window, in milliseconds (see `bulkhead agent --help`).
    #[arg(long, value_name = "MS", conflicts_with = "no_agent")]
    pub scan_window_ms: Option<u64>,
    /// The agents' automatic response: quarantine the source pods of these
    /// alert kinds (quarantine:KIND[,KIND...], see `bulkhead agent --help`).
    #[arg(
        long = "respond",
        value_name = "ACTION:KINDS",
        conflicts_with = "no_agent"
    )]
    pub respond: Vec<String>,
    /// The automatic quarantine still lets DNS through.
    #[arg(long, conflicts_with = "no_agent")]
    pub respond_allow_dns: bool,
    /// The agent's default policy mode: enforce, audit or learn (policies
    /// and namespaces may set their own with the `bulkhead.io/mode`
    /// annotation; see docs/learn.md).
    #[arg(long, value_name = "MODE", default_value = "enforce")]
    pub mode: Mode,
    /// The agent reads pods and policy from the Kubernetes API this
    /// kubeconfig points at (`agent --kubernetes`) instead of the watched
    /// manifests. The lab's pods are still made from --manifests, so the
    /// API's pods must carry the same addresses in status.podIP(s) (give
    /// the manifests' pods those addresses: `lab up` keeps them).
    #[arg(long, value_name = "PATH", conflicts_with = "no_agent")]
    pub kubeconfig: Option<PathBuf>,
    /// Nodes: N node namespaces joined by a routed fabric, each with its
    /// share of the pod CIDRs and its own agent. Pods go to the node their
    /// spec.nodeName names, the others round-robin in namespace/name order.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub nodes: u16,
    /// The nodes' Kubernetes names (default node-0, node-1, ...): with
    /// --kubeconfig, the names the API's pods carry in spec.nodeName.
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    pub node_names: Vec<String>,
    /// The Service NAT rules each node gets, written as kube-proxy writes
    /// them in that mode and kept up to date with the lab's Services and
    /// pods: iptables, nftables, or none.
    #[arg(long, value_name = "MODE", default_value = "iptables")]
    pub kube_proxy: ProxyMode,
    /// Lab name.
    #[command(flatten)]
    pub name: NameArg,
}

/// Arguments of `lab restart-agent`.
#[derive(Debug, Args)]
pub struct RestartArgs {
    /// Lab name.
    #[command(flatten)]
    pub name: NameArg,
    /// Switch the agent to the Kubernetes API this kubeconfig points at
    /// (a running agent is stopped first; the policy in force stays until
    /// the new one takes over).
    #[arg(long, value_name = "PATH", conflicts_with = "manifests")]
    pub kubeconfig: Option<PathBuf>,
    /// Switch the agent back to the lab's watched manifests (a running
    /// agent is stopped first).
    #[arg(long)]
    pub manifests: bool,
    /// Only this node's agent (its name or namespace); default: every
    /// node's agent that is not running (with a source switch: all).
    #[arg(long, value_name = "NODE")]
    pub node: Option<String>,
}

impl RestartArgs {
    /// The source to switch to, if any.
    fn source(&self) -> Result<Option<AgentSource>, LabError> {
        match &self.kubeconfig {
            Some(k) => kubernetes_source(k).map(Some),
            None => Ok(self.manifests.then_some(AgentSource::Manifests)),
        }
    }
}

/// The API source for `kubeconfig` (made absolute: the agent reads it).
fn kubernetes_source(kubeconfig: &std::path::Path) -> Result<AgentSource, LabError> {
    Ok(AgentSource::Kubernetes {
        kubeconfig: std::fs::canonicalize(kubeconfig).map_err(LabError::io(kubeconfig))?,
    })
}

/// Arguments of `lab sync`.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Lab name.
    #[command(flatten)]
    pub name: NameArg,
    /// How long to wait for the agent.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub timeout_ms: u64,
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
    /// Only probes from these hosts: `NS/NAME`, `NS/*`, `*/NAME`, `*`, or
    /// an address (of a pod or external host); repeat or comma-separate.
    #[arg(long, value_name = "HOST", value_delimiter = ',')]
    pub from: Vec<String>,
    /// Only probes to these hosts (patterns as for --from).
    #[arg(long, value_name = "HOST", value_delimiter = ',')]
    pub to: Vec<String>,
    /// Where probes to a pod go: its address (`pod`), the ClusterIP of a
    /// Service that selects only that pod on the probed port (`service`),
    /// or that Service's NodePort on the pod's node (`nodeport`); a pod
    /// without such a Service gets the outcome `no-service`.
    #[arg(long, value_enum, default_value_t = ViaArg::Pod)]
    pub via: ViaArg,
}

/// `--via`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ViaArg {
    /// The pod's own address.
    Pod,
    /// A ClusterIP.
    Service,
    /// A NodePort.
    Nodeport,
}

impl From<ViaArg> for Via {
    fn from(v: ViaArg) -> Via {
        match v {
            ViaArg::Pod => Via::Pod,
            ViaArg::Service => Via::Service,
            ViaArg::Nodeport => Via::Nodeport,
        }
    }
}

impl ProbeSelection {
    /// The Service routes `--via` needs, from `model` (none for `pod`).
    fn routes(
        &self,
        model: impl FnOnce() -> Result<Model, CliError>,
    ) -> Result<Vec<ServiceRoute>, CliError> {
        if self.via == ViaArg::Pod {
            return Ok(Vec::new());
        }
        Ok(service_routes(&model()?))
    }

    fn options(&self, family: Family, routes: Vec<ServiceRoute>) -> ProbeOptions {
        let mut protocols = self.protocols.clone();
        protocols.sort();
        protocols.dedup();
        ProbeOptions {
            ports: (!self.ports.is_empty()).then(|| self.ports.clone()),
            protocols,
            families: family.list(),
            timeout: Duration::from_millis(self.timeout_ms.max(1)),
            max_in_flight: self.max_in_flight.max(1),
            from: self.from.clone(),
            to: self.to.clone(),
            via: self.via.into(),
            hairpin: false,
            routes,
        }
    }

    /// Fails when a `--from` or `--to` pattern matches no host of `state`.
    fn check_hosts(&self, state: &LabState) -> Result<(), LabError> {
        for (flag, patterns) in [("--from", &self.from), ("--to", &self.to)] {
            if let Some(p) = unmatched_pattern(state, patterns) {
                return Err(LabError::NoSuchHost {
                    flag,
                    pattern: p.to_owned(),
                    lab: state.name.clone(),
                });
            }
        }
        Ok(())
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
    /// Each pod probes itself too (with --via service: hairpin).
    #[arg(long)]
    pub hairpin: bool,
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
    /// Serve on these addresses only (a hostNetwork pod: its node's), not
    /// on every address of the namespace.
    #[arg(long, value_delimiter = ',')]
    pub bind: Vec<IpAddr>,
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
        LabCommand::Sync(a) => sync(a),
        LabCommand::Probe(a) => probe(a),
        LabCommand::Verify(a) => verify::run(a),
        LabCommand::RestartAgent(a) => restart_agent(a),
        LabCommand::Status(a) => status::run(a),
        LabCommand::Ui(a) => ui::run(a),
        LabCommand::Down(a) => {
            let r = setup::down(&a.name, &progress)?;
            if r.namespaces == 0
                && r.processes == 0
                && !r.state
                && r.agent == agent::Teardown::default()
            {
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
            Ok(serve::serve(&a.host, &ports, &a.bind)?)
        }
        LabCommand::ProbeFrom => Ok(run_helper()?),
        LabCommand::KubeProxy(a) => {
            let state = load_state(&a.lab)?;
            if a.node >= state.nodes.len() {
                return Err(LabError::NoSuchNode {
                    node: a.node.to_string(),
                    lab: state.name.clone(),
                    nodes: state.nodes.iter().map(|n| n.name.clone()).collect(),
                }
                .into());
            }
            Ok(kubeproxy::daemon::run(&state, a.node)?)
        }
    }
}

fn up(args: &UpArgs) -> Result<(), CliError> {
    check_lab_name(&args.name.name)?;
    if let Some(addr) = args.ui {
        if !addr.ip().is_loopback() {
            return Err(super::ui::UiCliError::LabNotLoopback { addr }.into());
        }
        if args.nodes > 1 && addr.port() != 0 {
            return Err(LabError::Nodes {
                why: format!(
                    "--ui {addr} names one port, and each of the {} node agents needs its own \
                     (leave --ui out: each gets a free port, `bulkhead lab ui` prints them)",
                    args.nodes
                ),
            }
            .into());
        }
    }
    let mut model = args.manifests.load()?;
    if has_host_network(&model, args.manifests.assign_pod_ips) {
        let agents = args
            .manifests
            .load_for(bulkhead_policy::source::manifest::Purpose::Enforcement)?;
        model = with_agent_addresses(model, &agents);
    }
    let manifests = std::fs::canonicalize(&args.manifests.manifests)
        .map_err(LabError::io(&args.manifests.manifests))?;
    let spec = LabSpec {
        name: args.name.name.clone(),
        manifests,
        pod_cidrs: cidrs(&args.manifests),
        service_cidrs: args.manifests.service_cidr.clone(),
        assign_pod_ips: args.manifests.assign_pod_ips,
        externals: args.external.clone(),
        extra_ports: args.ports.clone(),
        watch_in_place: args.watch,
        agent: !args.no_agent,
        xdp: args.xdp == Switch::On,
        host_routing: args.host_routing == Switch::On,
        flow_args: flow_args(args),
        mode: args.mode,
        source: match &args.kubeconfig {
            Some(k) => kubernetes_source(k)?,
            None => AgentSource::Manifests,
        },
        nodes: usize::from(args.nodes),
        node_names: args.node_names.clone(),
        kube_proxy: args.kube_proxy,
    };
    let state = plan(&model, &spec)?;
    if state.nodes.len() > 1 {
        for w in placement(&model, &spec.names()).1 {
            progress(&format!("warning: {w}"));
        }
    }
    let state = setup::up(state, &exe()?, &progress)?;
    match state.agent.as_ref().map(|a| &a.source) {
        Some(AgentSource::Manifests) => progress(&format!(
            "policies: edit {}, then `bulkhead lab sync --name {n}`; \
             status: `bulkhead status --lab {n}`",
            state.watched().display(),
            n = state.name
        )),
        Some(AgentSource::Kubernetes { kubeconfig }) => progress(&format!(
            "policies: change them in the API (`kubectl --kubeconfig {}`), then \
             `bulkhead lab sync --name {n}`; status: `bulkhead lab status --name {n}`",
            kubeconfig.display(),
            n = state.name
        )),
        None => {}
    }
    for u in ui::node_uis(&state) {
        if let Some(url) = u.url {
            progress(&format!("web UI of {}: {url}", u.node));
        }
    }
    Ok(())
}

fn sync(args: &SyncArgs) -> Result<(), CliError> {
    let state = load_state(&args.name.name)?;
    let timeout = Duration::from_millis(args.timeout_ms);
    let revision = if state.agent.is_some() {
        let enforced = agent::wait(&state, timeout)?;
        if let Some((_, first)) = enforced.first() {
            agent::keep_enforced(&state, &first.source_revision)?;
        }
        report_enforced(&state, &enforced);
        enforced.first().map(|(_, s)| s.source_revision.clone())
    } else {
        None
    };
    // The Service NAT rules follow the same content as the agents.
    let revision = revision.unwrap_or_else(|| content_hash(state.watched()));
    kubeproxy::daemon::wait(&state, &revision, timeout)?;
    if state.kube_proxy != ProxyMode::None {
        progress(&format!(
            "kube-proxy ({} mode) rules of revision {revision} are in force",
            state.kube_proxy
        ));
    }
    Ok(())
}

/// Says what the agents enforce (node index, state).
fn report_enforced(state: &LabState, enforced: &[(usize, bulkhead_agent::AgentState)]) {
    for (i, s) in enforced {
        let what = match state.agent.as_ref().map(|a| &a.source) {
            Some(AgentSource::Kubernetes { .. }) => format!(
                "the Kubernetes API at {} up to resourceVersion {}",
                s.source.location,
                s.enforced_revision.as_deref().unwrap_or("-")
            ),
            _ => state.watched().display().to_string(),
        };
        let whose = if state.nodes.len() > 1 {
            format!("the agent of {}", state.nodes[*i].name)
        } else {
            "the agent".to_owned()
        };
        progress(&format!(
            "{whose} enforces {what} (revision {}, {} endpoints)",
            s.revision,
            s.endpoints.len()
        ));
    }
    if let Some(w) = cluster::endpoint_warning(state, enforced) {
        progress(&w);
    }
}

fn restart_agent(args: &RestartArgs) -> Result<(), CliError> {
    let mut state = load_state(&args.name.name)?;
    let source = args.source()?;
    let only = args
        .node
        .as_deref()
        .map(|n| state.node_index(n))
        .transpose()?;
    let enforced = setup::restart_agent(&mut state, only, source, &exe()?, &progress)?;
    report_enforced(&state, &enforced);
    Ok(())
}

fn probe(args: &ProbeArgs) -> Result<(), CliError> {
    let state = load_state(&args.name.name)?;
    args.selection.check_hosts(&state)?;
    let routes = args.selection.routes(|| source_model(&state))?;
    let mut opts = args.selection.options(args.family, routes);
    opts.hairpin = args.hairpin;
    let results = run_probes(&state, &opts, &exe()?)?;
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
    for line in text_table(results) {
        writeln!(out, "{line}")?;
    }
    let allowed = results.iter().filter(|r| r.allowed()).count();
    writeln!(
        out,
        "\n{} probes: {allowed} allowed, {} denied.",
        results.len(),
        results.len() - allowed
    )
}

/// The lab's current model as its agents and kube-proxies read it: the
/// watched manifests (with the lab's address plan), or the Kubernetes API.
fn source_model(state: &LabState) -> Result<Model, CliError> {
    if let Some(a) = &state.agent
        && let AgentSource::Kubernetes { kubeconfig } = &a.source
    {
        return Ok(cluster::read_model(
            Some(&state.node),
            kubeconfig,
            a.mode,
            Duration::from_secs(10),
        )?);
    }
    let manifests = ManifestArgs {
        manifests: state.watched().to_owned(),
        pod_cidr: state
            .pod_cidrs
            .iter()
            .filter_map(|c| c.parse().ok())
            .collect(),
        assign_pod_ips: state.assign_pod_ips,
        service_cidr: state
            .service_cidrs
            .iter()
            .filter_map(|c| c.parse().ok())
            .collect(),
    };
    Ok(manifests.load_for(bulkhead_policy::source::manifest::Purpose::Enforcement)?)
}

/// The agent flags for `lab up`'s flow options.
fn flow_args(args: &UpArgs) -> Vec<String> {
    let mut v = Vec::new();
    if let Some(a) = args.ipfix {
        v.extend(["--ipfix".to_owned(), a.to_string()]);
    }
    if let Some(a) = args.metrics_addr {
        v.extend(["--metrics-addr".to_owned(), a.to_string()]);
    }
    if let Some(s) = args.flow_idle_timeout {
        v.extend(["--flow-idle-timeout".to_owned(), s.to_string()]);
    }
    if !args.no_ui {
        let addr = args.ui.map(|a| a.to_string());
        let addr = addr.unwrap_or_else(|| ui::DEFAULT_UI_ADDR.to_owned());
        v.extend(["--ui-addr".to_owned(), addr]);
    }
    // Absolute: the agents need not run where `lab up` did.
    let absolute = |p: &PathBuf| std::path::absolute(p).unwrap_or_else(|_| p.clone());
    for b in &args.baselines {
        v.extend(["--baseline".to_owned(), absolute(b).display().to_string()]);
    }
    if let Some(u) = &args.alertmanager {
        v.extend(["--alertmanager".to_owned(), u.clone()]);
    }
    if let Some(p) = &args.alerts_jsonl {
        v.extend([
            "--alerts-jsonl".to_owned(),
            absolute(p).display().to_string(),
        ]);
    }
    if let Some(ms) = args.scan_window_ms {
        v.extend(["--scan-window-ms".to_owned(), ms.to_string()]);
    }
    for r in &args.respond {
        v.extend(["--respond".to_owned(), r.clone()]);
    }
    if args.respond_allow_dns {
        v.push("--respond-allow-dns".to_owned());
    }
    v
}
