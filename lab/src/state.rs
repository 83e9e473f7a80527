//! The lab's state file: what `lab up` made, so `probe`, `verify` and
//! `down` can find it. The lab's directory and everything in it are the
//! owner's only (see [`bulkhead_policy::private`]).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::LabError;
use super::kubeproxy::ProxyMode;
use bulkhead_policy::model::{Mode, Protocol};

/// Environment variable overriding the directory labs keep state in.
pub const LAB_DIR_ENV: &str = "BULKHEAD_LAB_DIR";

/// Default directory labs keep state in.
pub const DEFAULT_LAB_DIR: &str = "/run/bulkhead/lab";

/// Version of the state file format: 2 added the nodes (`nodes`, the
/// fabric, each host's node, each agent's socket and flow log); version 1
/// files are read as one-node labs. (Each pod's CNI result and each
/// node's CNI configuration are optional fields of version 2.)
pub const STATE_VERSION: u32 = 2;

/// The directory holding every lab's state directory.
pub fn labs_dir() -> PathBuf {
    std::env::var_os(LAB_DIR_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_LAB_DIR))
}

/// The state directory of lab `name`.
pub fn lab_dir(name: &str) -> PathBuf {
    labs_dir().join(name)
}

/// Ports per protocol.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ports {
    /// TCP ports.
    #[serde(default)]
    pub tcp: BTreeSet<u16>,
    /// UDP ports.
    #[serde(default)]
    pub udp: BTreeSet<u16>,
    /// SCTP ports.
    #[serde(default)]
    pub sctp: BTreeSet<u16>,
}

impl Ports {
    /// The ports of one protocol.
    pub fn get(&self, p: Protocol) -> &BTreeSet<u16> {
        match p {
            Protocol::Tcp => &self.tcp,
            Protocol::Udp => &self.udp,
            Protocol::Sctp => &self.sctp,
        }
    }

    /// The ports of one protocol, mutably.
    pub fn get_mut(&mut self, p: Protocol) -> &mut BTreeSet<u16> {
        match p {
            Protocol::Tcp => &mut self.tcp,
            Protocol::Udp => &mut self.udp,
            Protocol::Sctp => &mut self.sctp,
        }
    }

    /// These and `extra` on every protocol.
    pub fn with_extra(&self, extra: &[u16]) -> Ports {
        let mut p = self.clone();
        for proto in Protocol::ALL {
            p.get_mut(proto).extend(extra.iter().copied());
        }
        p
    }

    /// `--tcp 80,81` style arguments for `lab serve`.
    pub fn serve_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        for (flag, set) in [
            ("--tcp", &self.tcp),
            ("--udp", &self.udp),
            ("--sctp", &self.sctp),
        ] {
            if !set.is_empty() {
                args.push(flag.to_owned());
                args.push(set.iter().map(u16::to_string).collect::<Vec<_>>().join(","));
            }
        }
        args
    }
}

/// A pod or external host of the lab.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    /// `namespace/name` of a pod; the address of an external host.
    pub name: String,
    /// Whether this is an external host rather than a pod.
    pub external: bool,
    /// Whether this is a hostNetwork pod (`spec.hostNetwork: true`): it
    /// lives in its node's namespace (`netns` is the node's; no veth, no
    /// CNI ADD), its addresses are its node's, and its server listens on
    /// them there. No agent ever enforces on it (it has no veth); as a
    /// peer it is its node's address. (Labs recorded before: none.)
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub host_network: bool,
    /// Its network namespace.
    pub netns: String,
    /// The node-side end of its veth (its own end is `eth0`): for a pod,
    /// the name `ptp` gave it (from the CNI result; empty until ADD).
    pub veth: String,
    /// MAC address of its `eth0` (for a pod, from the CNI result).
    pub mac: String,
    /// Its addresses.
    pub ips: Vec<IpAddr>,
    /// Declared container ports (pods), or the ports served (external hosts).
    pub ports: Ports,
    /// PID of its `lab serve` process, once started.
    #[serde(default)]
    pub server_pid: Option<u32>,
    /// Index of the node it is wired to (in [`LabState::nodes`]).
    #[serde(default)]
    pub node: usize,
    /// The result of the pod's CNI ADD through its node's chain (what DEL
    /// gets as `prevResult`); none for external hosts and before ADD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cni: Option<serde_json::Value>,
}

/// A node of the lab: a namespace that routes for its pods.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabNode {
    /// Its Kubernetes name (`spec.nodeName` of the pods placed on it).
    pub name: String,
    /// Its network namespace.
    pub netns: String,
    /// Its addresses on the fabric (one per family; none in a one-node lab).
    #[serde(default)]
    pub fabric_ips: Vec<IpAddr>,
    /// Its share of the pod CIDRs (one per family), routed to it by the
    /// other nodes; the whole pod CIDRs in a one-node lab.
    #[serde(default)]
    pub pod_cidrs: Vec<String>,
    /// Its agent, unless the lab runs none.
    #[serde(default)]
    pub agent: Option<LabAgent>,
    /// Its CNI network configuration list (the chain its pods are added
    /// through), once written; `host-local`'s data directory is beside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cni_conf: Option<PathBuf>,
    /// PID of its kube-proxy ([`super::kubeproxy::daemon`]), once started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube_proxy_pid: Option<u32>,
}

impl Host {
    /// Whether this is a pod in a namespace of its own, wired through its
    /// node's CNI chain: not an external host, not a hostNetwork pod.
    pub fn is_pod(&self) -> bool {
        !self.external && !self.host_network
    }

    /// The address of one family.
    pub fn ip(&self, v4: bool) -> Option<IpAddr> {
        self.ips.iter().copied().find(|a| a.is_ipv4() == v4)
    }
}

/// Everything a lab is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabState {
    /// [`STATE_VERSION`].
    pub version: u32,
    /// The lab's name.
    pub name: String,
    /// The manifests it was made from (absolute).
    pub manifests: PathBuf,
    /// The directory (or file) the agent watches and `verify` compares
    /// with: a copy of the manifests in the lab's directory, or the
    /// manifests themselves (`lab up --watch`). Empty in labs made before
    /// the agent was wired in: then the manifests.
    #[serde(default)]
    pub watch: PathBuf,
    /// The first node's agent, unless started with `--no-agent` (a copy of
    /// `nodes[0].agent`, written for readers of version 1; the agents'
    /// settings but pins, logs and PID are the same on every node).
    #[serde(default)]
    pub agent: Option<LabAgent>,
    /// The pod CIDRs addresses were assigned from.
    pub pod_cidrs: Vec<String>,
    /// The Service CIDRs manifest Services without ClusterIPs get theirs
    /// from (`--service-cidr`; empty: the defaults), as the agents and the
    /// kube-proxies load them.
    #[serde(default)]
    pub service_cidrs: Vec<String>,
    /// Whether status addresses were ignored.
    pub assign_pod_ips: bool,
    /// Ports served on every host and protocol beyond the declared ones.
    pub extra_ports: Vec<u16>,
    /// The first node's namespace (a copy of `nodes[0].netns`).
    pub node: String,
    /// Every node (version 2; read from `node` and `agent` for version 1).
    #[serde(default)]
    pub nodes: Vec<LabNode>,
    /// The fabric namespace joining the nodes (labs of several nodes).
    #[serde(default)]
    pub fabric: Option<String>,
    /// Gateway addresses (one per family) on every node-side veth.
    pub gateways: Vec<IpAddr>,
    /// Pods (in namespace/name order), then external hosts.
    pub hosts: Vec<Host>,
    /// The Service NAT rules each node gets (`lab up --kube-proxy`);
    /// labs recorded before it had none.
    #[serde(default = "no_kube_proxy")]
    pub kube_proxy: ProxyMode,
    /// PID of the `bulkhead lab up` that builds the lab, so a second `up`
    /// can tell a lab being built (no process in its namespaces yet) from
    /// one a killed run left behind.
    #[serde(default)]
    pub builder: Option<u32>,
}

/// Labs recorded before `--kube-proxy` translate no Service.
fn no_kube_proxy() -> ProxyMode {
    ProxyMode::None
}

/// How the lab runs its agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabAgent {
    /// Mount point of the lab's private bpffs.
    pub bpffs: PathBuf,
    /// The agent's pin directory (inside `bpffs`).
    pub pin_dir: PathBuf,
    /// The agent's log.
    pub log: PathBuf,
    /// Whether it attaches the XDP prefilter.
    pub xdp: bool,
    /// Whether it routes pod-to-pod packets itself (`--host-routing`).
    /// (Labs recorded before `--host-routing` ran without it: false.)
    #[serde(default)]
    pub host_routing: bool,
    /// Flow export and API flags passed on to the agent (`--ipfix`,
    /// `--metrics-addr`, `--ui-addr`, `--flow-idle-timeout`, ...).
    #[serde(default)]
    pub flow_args: Vec<String>,
    /// Its default policy mode (`--mode`): the mode of policies that
    /// neither they nor their namespace annotate.
    #[serde(default)]
    pub mode: Mode,
    /// Where it reads pods and policy from. (Labs recorded before the
    /// API source: the watched manifests.)
    #[serde(default)]
    pub source: AgentSource,
    /// Its PID, once started.
    #[serde(default)]
    pub pid: Option<u32>,
    /// Its local API socket (`bulkhead flows`). (Version 1: the lab's
    /// [`api_socket`].)
    #[serde(default)]
    pub api_socket: PathBuf,
    /// Its JSON Lines flow log. (Version 1: the lab's [`flow_log`].)
    #[serde(default)]
    pub flow_log: PathBuf,
    /// Its forensic timeline (`agent --timeline-db`, read by `bulkhead
    /// timeline --lab`). (Labs recorded before it: none.)
    #[serde(default)]
    pub timeline_db: PathBuf,
    /// Its `--node-name`, if it gets one (labs of several nodes).
    #[serde(default)]
    pub node_name: Option<String>,
}

/// Where the lab's agent reads pods and policy from. Either way the lab's
/// pods are the namespaces `lab up` made from its manifests.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum AgentSource {
    /// The lab's watched manifests ([`LabState::watched`]).
    #[default]
    Manifests,
    /// The Kubernetes API a kubeconfig points at (`agent --kubernetes`);
    /// its pods must carry the lab's addresses in `status.podIP(s)`.
    Kubernetes {
        /// The kubeconfig (absolute).
        kubeconfig: PathBuf,
    },
}

impl AgentSource {
    /// The agent's source arguments, `watched` being the lab's watched
    /// manifests.
    pub fn agent_args(&self, watched: &Path) -> Vec<std::ffi::OsString> {
        match self {
            Self::Manifests => vec!["--manifests".into(), watched.into()],
            Self::Kubernetes { kubeconfig } => vec![
                "--kubernetes".into(),
                "--kubeconfig".into(),
                kubeconfig.into(),
            ],
        }
    }

    /// The kubeconfig, for the API source.
    pub fn kubeconfig(&self) -> Option<&Path> {
        match self {
            Self::Manifests => None,
            Self::Kubernetes { kubeconfig } => Some(kubeconfig),
        }
    }

    /// For people: `the manifests in DIR`, `the Kubernetes API (kubeconfig F)`.
    pub fn describe(&self, watched: &Path) -> String {
        match self {
            Self::Manifests => format!("the manifests in {}", watched.display()),
            Self::Kubernetes { kubeconfig } => {
                format!("the Kubernetes API (kubeconfig {})", kubeconfig.display())
            }
        }
    }
}

impl LabState {
    /// The directory (or file) the agent watches.
    pub fn watched(&self) -> &Path {
        if self.watch.as_os_str().is_empty() {
            &self.manifests
        } else {
            &self.watch
        }
    }

    /// The ports `host` serves.
    pub fn served(&self, host: &Host) -> Ports {
        host.ports.with_extra(&self.extra_ports)
    }

    /// Every namespace of the lab: nodes first, then the fabric and the
    /// hosts (hostNetwork pods have none of their own: their node's).
    pub fn namespaces(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| n.netns.clone())
            .chain(self.fabric.clone())
            .chain(
                self.hosts
                    .iter()
                    .filter(|h| !h.host_network)
                    .map(|h| h.netns.clone()),
            )
            .collect()
    }

    /// The node `host` is wired to.
    pub fn node_of(&self, host: &Host) -> &LabNode {
        &self.nodes[host.node.min(self.nodes.len() - 1)]
    }

    /// The index of the node named `name` (its Kubernetes name or its
    /// namespace).
    pub fn node_index(&self, name: &str) -> Result<usize, LabError> {
        self.nodes
            .iter()
            .position(|n| n.name == name || n.netns == name)
            .ok_or_else(|| LabError::NoSuchNode {
                node: name.to_owned(),
                lab: self.name.clone(),
                nodes: self.nodes.iter().map(|n| n.name.clone()).collect(),
            })
    }

    /// The indices of the nodes `only` names (every node for `None`).
    pub fn node_indices(&self, only: Option<&str>) -> Result<Vec<usize>, LabError> {
        match only {
            Some(name) => Ok(vec![self.node_index(name)?]),
            None => Ok((0..self.nodes.len()).collect()),
        }
    }

    /// The nodes that run an agent: index, node and agent.
    pub fn agents(&self) -> impl Iterator<Item = (usize, &LabNode, &LabAgent)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| Some((i, n, n.agent.as_ref()?)))
    }

    /// Records node `index`'s agent (and mirrors the first node's into
    /// `agent`, `node`).
    pub fn set_agent(&mut self, index: usize, agent: Option<LabAgent>) {
        self.nodes[index].agent = agent;
        self.mirror();
    }

    /// `node` and `agent` as copies of the first node's.
    fn mirror(&mut self) {
        if let Some(first) = self.nodes.first() {
            self.node = first.netns.clone();
            self.agent = first.agent.clone();
        }
    }

    /// A version 1 state as a one-node lab of version 2.
    fn upgrade(&mut self) {
        if self.nodes.is_empty() {
            self.nodes.push(LabNode {
                name: super::naming::default_node_name(0),
                netns: self.node.clone(),
                fabric_ips: Vec::new(),
                pod_cidrs: self.pod_cidrs.clone(),
                agent: self.agent.clone(),
                cni_conf: None,
                kube_proxy_pid: None,
            });
        }
        for n in &mut self.nodes {
            if let Some(a) = &mut n.agent {
                if a.api_socket.as_os_str().is_empty() {
                    a.api_socket = api_socket(&self.name);
                }
                if a.flow_log.as_os_str().is_empty() {
                    a.flow_log = flow_log(&self.name);
                }
            }
        }
        self.mirror();
    }

    /// The state file of this lab.
    pub fn path(&self) -> PathBuf {
        state_path(&self.name)
    }

    /// Writes the state file atomically (temporary file, then rename),
    /// owner-only; the lab's directory is made (or tightened to) 0700.
    pub fn save(&self) -> Result<(), LabError> {
        self.save_at(&self.path())
    }

    /// [`LabState::save`] to `path`.
    pub(crate) fn save_at(&self, path: &Path) -> Result<(), LabError> {
        let dir = path.parent().expect("state file has a directory");
        bulkhead_policy::private::own_dir(dir).map_err(LabError::io(dir))?;
        let tmp = path.with_extension("json.tmp");
        let mut mirrored = self.clone();
        mirrored.mirror();
        let text = serde_json::to_string_pretty(&mirrored).map_err(|source| LabError::State {
            path: path.to_owned(),
            source,
        })?;
        bulkhead_policy::private::write_atomic(path, &tmp, (text + "\n").as_bytes())
            .map_err(LabError::io(path))
    }

    /// Reads the state of lab `name`; `Ok(None)` if there is none.
    pub fn load(name: &str) -> Result<Option<LabState>, LabError> {
        load_from(&state_path(name))
    }
}

/// Mount point of lab `name`'s private bpffs.
pub fn bpffs_dir(name: &str) -> PathBuf {
    lab_dir(name).join("bpf")
}

/// The directory of node `index`'s agent in a lab of `nodes` nodes: the
/// lab's own for a one-node lab (as before there were several), else
/// `n<index>/` in it, holding that agent's bpffs (`bpf/`, pins in
/// `bpf/bulkhead/`), `agent.log`, `flows.jsonl` and API socket.
pub fn node_dir(name: &str, index: usize, nodes: usize) -> PathBuf {
    if nodes <= 1 {
        lab_dir(name)
    } else {
        lab_dir(name).join(format!("n{index}"))
    }
}

/// Every agent pin directory lab `name` may have made, found on disk
/// (for `lab down` without a state file): `bpf/bulkhead` in the lab's
/// directory and in each `n<index>/`, with the node namespace it belongs
/// to.
pub fn pin_dirs_on_disk(name: &str) -> Vec<(PathBuf, String)> {
    let dir = lab_dir(name);
    let mut out = vec![(pin_dir(name), super::naming::node_netns(name))];
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return out;
    };
    for e in entries.flatten() {
        let file = e.file_name();
        let Some(sub) = file.to_str() else { continue };
        let ns = format!("{}{sub}", super::naming::netns_prefix(name));
        if super::naming::node_index(name, &ns).is_some() && sub != "node" {
            out.push((e.path().join("bpf").join("bulkhead"), ns));
        }
    }
    out.sort();
    out
}

/// The local API socket of lab `name`'s agent (`bulkhead flows --lab`).
pub fn api_socket(name: &str) -> PathBuf {
    lab_dir(name).join(bulkhead_agent::api::SOCKET_NAME)
}

/// The JSON Lines flow log of the lab's agent.
pub fn flow_log(name: &str) -> PathBuf {
    lab_dir(name).join("flows.jsonl")
}

/// The flow logs of every node's agent of lab `name` (that of a one-node
/// lab, or of one whose state is gone, is [`flow_log`]).
pub fn flow_logs(name: &str) -> Result<Vec<PathBuf>, LabError> {
    let logs: Vec<PathBuf> = LabState::load(name)?
        .iter()
        .flat_map(|s| s.nodes.iter())
        .filter_map(|n| n.agent.as_ref().map(|a| a.flow_log.clone()))
        .collect();
    Ok(if logs.is_empty() {
        vec![flow_log(name)]
    } else {
        logs
    })
}

/// The pin directory of lab `name`'s agent: a directory on its bpffs (not
/// the mount point itself, so `agent --cleanup` can remove it).
pub fn pin_dir(name: &str) -> PathBuf {
    bpffs_dir(name).join("bulkhead")
}

/// Where `lab up` copies the manifests for the agent to watch.
pub fn watch_copy_dir(name: &str) -> PathBuf {
    lab_dir(name).join("manifests")
}

/// The state file of lab `name`.
pub fn state_path(name: &str) -> PathBuf {
    lab_dir(name).join("state.json")
}

/// Reads a state file; `Ok(None)` if it does not exist.
pub fn load_from(path: &Path) -> Result<Option<LabState>, LabError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(LabError::io(path)(e)),
    };
    let mut state: LabState = serde_json::from_str(&text).map_err(|source| LabError::State {
        path: path.to_owned(),
        source,
    })?;
    state.upgrade();
    Ok(Some(state))
}

/// Removes lab `name`'s state directory, then the labs directory and its
/// parent if that left them empty (so a machine looks as before the lab).
pub fn remove_lab_dir(name: &str) -> Result<(), LabError> {
    let dir = lab_dir(name);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(LabError::io(&dir)(e)),
    }
    let labs = labs_dir();
    // Only empty directories go; failure means something else lives there.
    if std::fs::remove_dir(&labs).is_ok()
        && std::env::var_os(LAB_DIR_ENV).is_none()
        && let Some(parent) = labs.parent()
    {
        let _ = std::fs::remove_dir(parent);
    }
    Ok(())
}
