//! `bulkhead agent`: the per-node daemon (see [`bulkhead_agent`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};
use ipnetwork::IpNetwork;

use super::baseline::BaselineCliError;
use super::{CliError, ManifestArgs};
use bulkhead_agent::alerts::AlertsConfig;
use bulkhead_agent::alerts::active::ActiveBaselines;
use bulkhead_agent::alerts::alertmanager::Endpoint;
use bulkhead_agent::alerts::respond::ResponseConfig;
use bulkhead_agent::api::ui::UiConfig;
use bulkhead_agent::api::{self, ApiConfig};
use bulkhead_agent::{self as agent, AgentConfig, FlowsConfig, SourceConfig};
use bulkhead_dataplane::{DEFAULT_PIN_DIR, TcMode};
use bulkhead_flows::PipelineConfig;
use bulkhead_flows::export::ipfix::IpfixConfig;
use bulkhead_flows::export::jsonl::{JsonlConfig, JsonlTarget};
use bulkhead_learn::baseline::Baseline;
use bulkhead_learn::baseline::detect::DetectConfig;
use bulkhead_learn::timeline::Retention;
use bulkhead_policy::model::Mode;
use bulkhead_policy::source::kubernetes::KubeConfig;
use bulkhead_policy::source::manifest::Purpose;
use bulkhead_policy::source::manifest::watch::Loader;

/// On or off.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    /// Enabled.
    On,
    /// Disabled.
    #[default]
    Off,
}

/// Arguments of `bulkhead agent`.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Directory (searched recursively) or file of Kubernetes manifests: the
    /// identity and policy source, watched for changes.
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present_any = ["cleanup", "kubernetes"],
        conflicts_with = "kubernetes"
    )]
    pub manifests: Option<PathBuf>,
    /// Read identities and policy from the Kubernetes API (watches of
    /// Namespaces, Pods, NetworkPolicies and Services) instead of manifests. The API
    /// is found as kube does it: --kubeconfig, else the in-cluster service
    /// account, else $KUBECONFIG or ~/.kube/config.
    #[arg(long)]
    pub kubernetes: bool,
    /// Kubeconfig file for --kubernetes.
    #[arg(long, value_name = "PATH", requires = "kubernetes")]
    pub kubeconfig: Option<PathBuf>,
    /// CIDR to assign pod addresses from when a pod has none in its status
    /// (one per family; repeat or comma-separate).
    #[arg(long, value_name = "CIDR", value_delimiter = ',')]
    pub pod_cidr: Vec<IpNetwork>,
    /// Ignore status.podIP(s) and assign every pod an address from --pod-cidr.
    #[arg(long)]
    pub assign_pod_ips: bool,
    /// CIDR to assign Service ClusterIPs from when a manifest Service has
    /// none (one per family, the first is the primary family; repeat or
    /// comma-separate). Default: 10.96.0.0/16 and fd00:10:96::/112.
    #[arg(long, value_name = "CIDR", value_delimiter = ',')]
    pub service_cidr: Vec<IpNetwork>,
    /// Pin directory on a bpffs (one per node / network namespace). Under
    /// `ip netns exec` (own /sys) the host's bpffs is used through
    /// /proc/1/root if mounted; else prefer --netns.
    #[arg(long = "bpffs", value_name = "DIR", default_value = DEFAULT_PIN_DIR)]
    pub pin_dir: PathBuf,
    /// Run in this named network namespace (/run/netns/NAME) while staying
    /// in the current mount namespace (so pins land in its bpffs).
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,
    /// Attach the XDP prefilter to pod veths.
    #[arg(long, value_enum, default_value_t = Switch::Off)]
    pub xdp: Switch,
    /// Host routing: a packet from one pod to another on this node is
    /// judged for both pods by the sender's `from_pod` and delivered
    /// straight into the receiver (bpf_redirect_peer), skipping the node's
    /// IP stack, netfilter and the receiver's host-veth egress. Off: every
    /// packet takes the node's stack.
    #[arg(long, value_enum, default_value_t = Switch::On)]
    pub host_routing: Switch,
    /// The service mark: the one skb->mark bit (hex or decimal) that hands
    /// the first packet of a connection to a Service (ClusterIP, NodePort,
    /// external address) from the client's veth to the program that sees it
    /// after kube-proxy's translation, which judges it on the backend pod.
    /// It must be a bit no other component of the node uses (kube-proxy
    /// uses 0x4000 and 0x8000); 0 judges Service traffic as the pod sent
    /// it, against the Service address.
    #[arg(long, value_name = "BIT", default_value = "0x400000", value_parser = parse_service_mark)]
    pub service_mark: u32,
    /// Also hook this device as an uplink (repeatable): where a Service
    /// connection the node translates to another node's pod is judged.
    /// Devices that routes through a gateway leave by are hooked anyway.
    #[arg(long = "uplink", value_name = "IFNAME")]
    pub uplinks: Vec<String>,
    /// How to attach TC programs: tcx links (kernel 6.6+) or netlink clsact filters.
    #[arg(long, value_enum, default_value_t = TcMode::Auto)]
    pub tc_attach: TcMode,
    /// Detach everything, remove every pin and the state file, and exit
    /// (idempotent; stop the agent first).
    #[arg(long)]
    pub cleanup: bool,
    /// Flow visibility: per-flow accounting in the kernel, the flow history
    /// behind `bulkhead flows`, and the exporters below.
    #[arg(long, value_enum, default_value_t = Switch::On)]
    pub flows: Switch,
    /// Local API socket (`bulkhead flows`, /metrics, /healthz, /readyz).
    #[arg(long, value_name = "PATH", default_value = api::DEFAULT_SOCKET)]
    pub api_socket: PathBuf,
    /// Also serve /metrics, /healthz and /readyz over TCP at this address,
    /// for Prometheus and probes (e.g. 127.0.0.1:9617).
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Serve the web UI (the network map, read-only) over TCP at this
    /// address, e.g. 127.0.0.1:9618 (port 0: any free port; `bulkhead
    /// status` and the lab print it). Bound before entering --netns. A
    /// non-loopback address needs --ui-token-file.
    #[arg(long, value_name = "ADDR")]
    pub ui_addr: Option<SocketAddr>,
    /// Require this token (the file's first line) on every request to the
    /// UI: open http://ADDR/ui/?token=TOKEN once (it sets a cookie), or
    /// send `Authorization: Bearer TOKEN`. Keep the file mode 0600.
    #[arg(long, value_name = "FILE", requires = "ui_addr")]
    pub ui_token_file: Option<PathBuf>,
    /// Write flow records as JSON Lines to this file (`-`: stdout), rotated
    /// by size (see docs/flows.md for the schema).
    #[arg(long, value_name = "PATH")]
    pub flow_log: Option<PathBuf>,
    /// Rotate the flow log when it would exceed this many MiB.
    #[arg(long, value_name = "MIB", default_value_t = 100)]
    pub flow_log_max_mib: u64,
    /// Rotated flow log files kept (FILE.1 .. FILE.N).
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub flow_log_files: usize,
    /// Keep observed connections (edges between workloads) in this
    /// embedded database, for `bulkhead propose` (see docs/learn.md).
    #[arg(long, value_name = "PATH")]
    pub history_db: Option<PathBuf>,
    /// Width of the history's time buckets, which `propose --since/--until`
    /// windows are rounded to (`10m`, `1h`; a new database's: an existing
    /// one keeps its own).
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = humantime::parse_duration)]
    pub history_bucket: Duration,
    /// Beyond this many (edge, bucket) entries the history's oldest
    /// buckets are evicted (a window reaching before them is reported
    /// partial).
    #[arg(long, value_name = "N", default_value_t = bulkhead_learn::StoreConfig::default().max_bucket_entries)]
    pub history_max_bucket_entries: u64,
    /// Keep the forensic timeline in this embedded database: per pod,
    /// every flow (allowed and denied), alert, quarantine, policy and mode
    /// change, for `bulkhead timeline` (read through the API while the
    /// agent runs; the agent holds the file).
    #[arg(long, value_name = "PATH")]
    pub timeline_db: Option<PathBuf>,
    /// Timeline events older than this are removed (`7d`, `36h`, `90m`).
    #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = humantime::parse_duration)]
    pub timeline_max_age: Duration,
    /// Beyond this many timeline events the oldest are removed.
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    pub timeline_max_events: u64,
    /// Width of the network map's time buckets (`/v1/map`; whole seconds:
    /// `1m`, `30s`), which its windows are rounded to.
    #[arg(long, value_name = "DURATION", default_value = "1m", value_parser = parse_map_bucket)]
    pub map_bucket: Duration,
    /// How long the network map keeps its buckets (`6h`, `1d`; at least
    /// one bucket).
    #[arg(long, value_name = "DURATION", default_value = "6h", value_parser = humantime::parse_duration)]
    pub map_retention: Duration,
    /// Beyond this many (edge, bucket) entries the network map's oldest
    /// buckets are evicted (a window reaching before them is reported
    /// partial).
    #[arg(long, value_name = "N", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub map_max_entries: u64,
    /// Export flow records as IPFIX (RFC 7011) over UDP to this collector.
    #[arg(long, value_name = "HOST:PORT")]
    pub ipfix: Option<SocketAddr>,
    /// A flow without packets for this long is finished, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 15)]
    pub flow_idle_timeout: u64,
    /// A long flow gets an interim record this often, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub flow_active_timeout: u64,
    /// How often the kernel flow tables are drained, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 250, hide = true)]
    pub flow_drain_ms: u64,
    /// This node's name: only pods scheduled on it (`spec.nodeName`) are
    /// enforced here, the others are identities; also written into flow
    /// records. Default: $NODE_NAME (set it from the downward API), else
    /// the host name.
    #[arg(long, value_name = "NAME", env = "NODE_NAME")]
    pub node_name: Option<String>,
    /// Mode of every NetworkPolicy that neither it nor its namespace sets
    /// with the `bulkhead.io/mode` annotation: enforce, audit (the kernel
    /// records what would be denied, passes everything) or learn (nothing
    /// enforced, flows recorded for `bulkhead propose`). See docs/learn.md.
    #[arg(long, value_name = "MODE", default_value = "enforce")]
    pub mode: Mode,
    /// Grace period after a policy switch before the old slot is rewritten, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 10, hide = true)]
    pub grace_ms: u64,
    /// Alert on live connections outside this baseline (repeatable; made
    /// by `bulkhead baseline take`).
    #[arg(long = "baseline", value_name = "FILE")]
    pub baselines: Vec<PathBuf>,
    /// Append baseline alerts to this file as JSON Lines.
    #[arg(long, value_name = "PATH")]
    pub alerts_jsonl: Option<PathBuf>,
    /// Post baseline alerts to this Alertmanager (its v2 API), e.g.
    /// http://alertmanager.monitoring:9093.
    #[arg(long, value_name = "URL")]
    pub alertmanager: Option<String>,
    /// An edge outside the baseline raises at most one alert per this many
    /// seconds (Alertmanager resolves it after as long without one).
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    pub alert_interval: u64,
    /// How long a source's deviations are held to tell a scan from a few
    /// new edges, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 2000)]
    pub scan_window_ms: u64,
    /// Distinct peers or ports outside the baseline within the scan window
    /// that make one scan alert.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub scan_targets: usize,
    /// The automatic response: quarantine the source pods of these alert
    /// kinds (quarantine:KIND[,KIND...]; kinds new_peer, new_port,
    /// new_external, scan). Off by default.
    #[arg(long = "respond", value_name = "ACTION:KINDS")]
    pub respond: Vec<String>,
    /// The automatic quarantine still lets the pod resolve names through
    /// the cluster's DNS (as `bulkhead quarantine --allow-dns`).
    #[arg(long)]
    pub respond_allow_dns: bool,
}

/// Runs `bulkhead agent`.
pub fn run(args: &AgentArgs) -> Result<(), CliError> {
    // Bound here, in the namespace the agent was started in.
    let ui = if args.cleanup {
        None
    } else {
        super::ui::listener(args.ui_addr, args.ui_token_file.as_deref())?
    };
    if let Some(ns) = &args.netns {
        agent::enter_netns(ns)?;
    }
    if args.cleanup {
        let r = agent::cleanup(&args.pin_dir)?;
        eprintln!(
            "cleanup: {} hooks detached ({} netlink filters), {} map/program pins removed from {}",
            r.links,
            r.netlink_filters,
            r.objects,
            args.pin_dir.display()
        );
        return Ok(());
    }
    let source = match &args.manifests {
        Some(path) => manifest_source(args, path),
        None => SourceConfig::Kubernetes(KubeConfig {
            kubeconfig: args.kubeconfig.clone(),
            default_mode: args.mode,
        }),
    };
    let cfg = AgentConfig {
        source,
        // In a cluster, pods of other nodes are identities only; with
        // manifests, --node-name narrows the same way when given.
        node_name: args.node_name.clone(),
        pin_dir: args.pin_dir.clone(),
        xdp: args.xdp == Switch::On,
        host_routing: args.host_routing == Switch::On,
        tc_mode: args.tc_attach,
        grace: Duration::from_millis(args.grace_ms),
        flows: flows_config(args, ui)?,
        service_mark: args.service_mark,
        uplinks: args.uplinks.clone(),
    };
    agent::run(cfg)?;
    Ok(())
}

/// A service mark: one bit, or 0 (hex with `0x`, or decimal).
fn parse_service_mark(text: &str) -> Result<u32, String> {
    let value = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => text.parse(),
    }
    .map_err(|e| format!("{text:?} is not a 32-bit number: {e}"))?;
    if value.count_ones() > 1 {
        return Err(format!(
            "{text} sets {} bits; the service mark is one bit (or 0 to turn it off)",
            value.count_ones()
        ));
    }
    Ok(value)
}

/// The manifest source: the CLI's loader (address options, default
/// mode), for enforcement.
fn manifest_source(args: &AgentArgs, path: &std::path::Path) -> SourceConfig {
    let manifests = ManifestArgs {
        manifests: path.to_owned(),
        pod_cidr: args.pod_cidr.clone(),
        assign_pod_ips: args.assign_pod_ips,
        service_cidr: args.service_cidr.clone(),
    };
    let mode = args.mode;
    let load: Loader = Arc::new(move || {
        let loaded = manifests.load_for(Purpose::Enforcement).map(|mut model| {
            model.default_mode = mode;
            model
        });
        if loaded.is_err() {
            // Nothing of a failed load stays in use: give its memory back.
            agent::memory::release_freed();
        }
        loaded
    });
    SourceConfig::Manifests {
        path: path.to_owned(),
        load,
    }
}

/// Alerting's configuration from the flags: the baselines read, the
/// Alertmanager URL checked (bad input stops the agent before it starts).
fn alerts_config(args: &AgentArgs) -> Result<AlertsConfig, BaselineCliError> {
    let baselines = args
        .baselines
        .iter()
        .map(|p| Baseline::read(p))
        .collect::<Result<Vec<_>, _>>()?;
    let alertmanager = args
        .alertmanager
        .as_deref()
        .map(Endpoint::parse)
        .transpose()?;
    Ok(AlertsConfig {
        baselines,
        detect: DetectConfig {
            interval_ms: args.alert_interval.max(1).saturating_mul(1000),
            scan_window_ms: args.scan_window_ms.max(1),
            scan_targets: args.scan_targets.max(2),
        },
        jsonl: args.alerts_jsonl.clone(),
        alertmanager,
        active: Some(ActiveBaselines::path_for(&args.pin_dir)),
        respond: respond_config(args)?,
    })
}

/// The automatic response from `--respond` and `--respond-allow-dns`.
fn respond_config(args: &AgentArgs) -> Result<ResponseConfig, BaselineCliError> {
    let mut cfg = ResponseConfig {
        allow_dns: args.respond_allow_dns,
        ..ResponseConfig::default()
    };
    for spec in &args.respond {
        cfg.add(spec)?;
    }
    Ok(cfg)
}

/// The flow side's configuration from the flags (the API's UI listener
/// already bound).
fn flows_config(args: &AgentArgs, ui: Option<UiConfig>) -> Result<FlowsConfig, BaselineCliError> {
    let node = args.node_name.clone().unwrap_or_else(|| {
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "node".to_owned())
    });
    let mut pipeline = PipelineConfig::new(node);
    pipeline.drain_interval = Duration::from_millis(args.flow_drain_ms.max(10));
    pipeline.aggregate.idle_timeout = Duration::from_secs(args.flow_idle_timeout.max(1));
    pipeline.aggregate.active_timeout = Duration::from_secs(args.flow_active_timeout.max(1));
    pipeline.jsonl = args.flow_log.as_ref().map(|p| {
        if p.as_os_str() == "-" {
            JsonlConfig::new(JsonlTarget::Stdout)
        } else {
            JsonlConfig::new(JsonlTarget::File {
                path: p.clone(),
                max_bytes: args.flow_log_max_mib.max(1) << 20,
                keep: args.flow_log_files,
            })
        }
    });
    pipeline.ipfix = args.ipfix.map(IpfixConfig::new);
    Ok(FlowsConfig {
        enabled: args.flows == Switch::On,
        pipeline,
        api: ApiConfig {
            socket: Some(args.api_socket.clone()),
            tcp: args.metrics_addr,
            ui,
            ..ApiConfig::default()
        },
        history_db: args.history_db.clone(),
        history_store: bulkhead_learn::StoreConfig {
            bucket_ms: u64::try_from(args.history_bucket.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
            max_bucket_entries: args.history_max_bucket_entries.max(1),
            ..bulkhead_learn::StoreConfig::default()
        },
        timeline_db: args.timeline_db.clone(),
        timeline_retention: Retention {
            max_age_ms: u64::try_from(args.timeline_max_age.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
            max_events: args.timeline_max_events.max(1),
        },
        alerts: alerts_config(args)?,
        map: bulkhead_learn::map::MapConfig {
            bucket: args.map_bucket,
            retention: args.map_retention.max(args.map_bucket),
            max_entries: usize::try_from(args.map_max_entries).unwrap_or(usize::MAX),
        },
    })
}

/// `--map-bucket`: a duration of whole seconds, at least one.
fn parse_map_bucket(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    bulkhead_learn::map::MapConfig {
        bucket: d,
        retention: d,
        max_entries: 1,
    }
    .validate()
    .map(|()| d)
    .map_err(|e| e.to_string())
}
