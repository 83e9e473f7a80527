//! `bulkhead agent`: the per-node daemon (see [`crate::agent`]).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use ipnetwork::IpNetwork;

use super::{CliError, ManifestArgs};
use crate::agent::{self, AgentConfig};
use crate::dataplane::{DEFAULT_PIN_DIR, TcMode};

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
    #[arg(long, value_name = "DIR", required_unless_present = "cleanup")]
    pub manifests: Option<PathBuf>,
    /// CIDR to assign pod addresses from when a pod has none in its status
    /// (one per family; repeat or comma-separate).
    #[arg(long, value_name = "CIDR", value_delimiter = ',')]
    pub pod_cidr: Vec<IpNetwork>,
    /// Ignore status.podIP(s) and assign every pod an address from --pod-cidr.
    #[arg(long)]
    pub assign_pod_ips: bool,
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
    /// How to attach TC programs: tcx links (kernel 6.6+) or netlink clsact filters.
    #[arg(long, value_enum, default_value_t = TcMode::Auto)]
    pub tc_attach: TcMode,
    /// Detach everything, remove every pin and the state file, and exit
    /// (idempotent; stop the agent first).
    #[arg(long)]
    pub cleanup: bool,
    /// Poll interval of the manifest directory and links, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 200, hide = true)]
    pub poll_ms: u64,
    /// Grace period after a policy switch before the old slot is rewritten, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 10, hide = true)]
    pub grace_ms: u64,
}

/// Runs `bulkhead agent`.
pub fn run(args: &AgentArgs) -> Result<(), CliError> {
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
    let manifests = args
        .manifests
        .clone()
        .expect("clap requires --manifests without --cleanup");
    let source = ManifestArgs {
        manifests: manifests.clone(),
        pod_cidr: args.pod_cidr.clone(),
        assign_pod_ips: args.assign_pod_ips,
    };
    let load = || source.load();
    let cfg = AgentConfig {
        manifests,
        load: &load,
        pin_dir: args.pin_dir.clone(),
        xdp: args.xdp == Switch::On,
        tc_mode: args.tc_attach,
        poll: Duration::from_millis(args.poll_ms.max(1)),
        grace: Duration::from_millis(args.grace_ms),
    };
    agent::run(&cfg)?;
    Ok(())
}
