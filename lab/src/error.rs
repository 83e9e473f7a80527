//! Errors of the lab.

use std::net::IpAddr;
use std::path::PathBuf;

/// Why a lab operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The lab name is not usable in interface-sized names.
    #[error("invalid lab name {name:?}: use 1 to 6 characters of [a-z0-9]")]
    InvalidName {
        /// The name given.
        name: String,
    },
    /// `lab up` on a lab that exists (state or namespaces).
    #[error("lab {name:?} already exists ({what}); run `bulkhead lab down --name {name}` first")]
    Exists {
        /// The lab.
        name: String,
        /// What was found.
        what: String,
    },
    /// A command that needs a running lab found none.
    #[error("lab {name:?} is not up (no state at {})", path.display())]
    NotUp {
        /// The lab.
        name: String,
        /// Where the state was looked for.
        path: PathBuf,
    },
    /// A helper program could not be started.
    #[error("running {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The error.
        source: std::io::Error,
    },
    /// A helper program failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Exit status.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// The lab's kube-proxy could not read its source.
    #[error("the lab's kube-proxy cannot read its source: {0}")]
    KubeProxySource(String),
    /// A node's kube-proxy rules are not in force.
    #[error("the kube-proxy rules of node {node}: {why}")]
    KubeProxy {
        /// The node.
        node: String,
        /// Why.
        why: String,
    },
    /// A namespace operation failed (netkit).
    #[error(transparent)]
    Netns(#[from] bulkhead_netkit::NetnsError),
    /// A link, address or route operation failed (netkit).
    #[error(transparent)]
    Netlink(#[from] bulkhead_netkit::NetlinkError),
    /// A CNI plugin of a node's chain failed for a pod.
    #[error("CNI {command} of pod {pod} on node {node}: plugin {plugin} failed: {why}")]
    Cni {
        /// `ADD` or `DEL`.
        command: &'static str,
        /// The pod (`namespace/name`).
        pod: String,
        /// The node's name.
        node: String,
        /// The plugin's type.
        plugin: String,
        /// Its error result or what else went wrong.
        why: String,
    },
    /// A MAC address that is not six hex bytes.
    #[error("invalid MAC address {mac:?}")]
    Mac {
        /// The text.
        mac: String,
    },
    /// A CNI plugin binary is not installed.
    #[error(
        "CNI plugin {plugin} not found in {path} (Debian's containernetworking-plugins; `cargo xtask setup` installs it)"
    )]
    CniPlugin {
        /// The plugin's type.
        plugin: String,
        /// The directories looked in (`CNI_PATH`).
        path: String,
    },
    /// Reading or writing a file.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The state file is not valid JSON of the expected shape.
    #[error("state file {}: {source}", path.display())]
    State {
        /// The file.
        path: PathBuf,
        /// The error.
        source: serde_json::Error,
    },
    /// A pod address has no gateway, collides with one, or is otherwise unusable.
    #[error("pod {pod}: address {addr} {why}")]
    PodAddress {
        /// The pod.
        pod: String,
        /// The address.
        addr: IpAddr,
        /// What is wrong.
        why: &'static str,
    },
    /// An external host address is unusable.
    #[error("external host {addr}: {why}")]
    External {
        /// The address.
        addr: IpAddr,
        /// What is wrong.
        why: String,
    },
    /// `--node` names no node of the lab.
    #[error("lab {lab:?} has no node {node:?} (its nodes: {})", nodes.join(", "))]
    NoSuchNode {
        /// The name given.
        node: String,
        /// The lab.
        lab: String,
        /// Its nodes' names.
        nodes: Vec<String>,
    },
    /// The nodes asked for cannot be made.
    #[error("nodes: {why}")]
    Nodes {
        /// What is wrong.
        why: String,
    },
    /// A Node object of the manifests that is a node of the lab declares
    /// an address the lab does not give that node.
    #[error(
        "Node {node}: {field} has {addr}, but the lab gives node {node} {}; \
         declare the lab's addresses (they are what a `nodes` peer resolves to)",
        lab.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    )]
    NodeAddress {
        /// The Node's name.
        node: String,
        /// The field (`status.addresses`).
        field: &'static str,
        /// The address it declares.
        addr: IpAddr,
        /// The addresses the lab gives that node.
        lab: Vec<IpAddr>,
    },
    /// A hostNetwork pod the lab cannot host.
    #[error("hostNetwork pod {pod}: {why}")]
    HostNetwork {
        /// The pod (`namespace/name`).
        pod: String,
        /// Why.
        why: String,
    },
    /// Two hosts hash to one veth name (astronomically unlikely).
    #[error("hosts {first} and {second} both get veth name {veth}")]
    VethCollision {
        /// The name.
        veth: String,
        /// One host.
        first: String,
        /// The other.
        second: String,
    },
    /// A server did not report ready.
    #[error("server in {netns} did not become ready: {why}")]
    ServerNotReady {
        /// Its namespace.
        netns: String,
        /// Why.
        why: String,
    },
    /// The manifests no longer give the pods the lab was made with.
    #[error(
        "the manifests in {} changed since `lab up` ({what}); recreate the lab",
        manifests.display()
    )]
    ManifestsChanged {
        /// The directory.
        manifests: PathBuf,
        /// What differs.
        what: String,
    },
    /// The Kubernetes API's pods do not give the lab's pods their addresses.
    #[error(
        "the Kubernetes API's pods do not carry the lab's addresses ({what}); give them the \
         lab's addresses in status.podIP(s) (`bulkhead lab status` lists them)"
    )]
    ApiAddresses {
        /// What differs.
        what: String,
    },
    /// A `--from`/`--to` pattern names no host of the lab.
    #[error("{flag} {pattern:?} matches no host of lab {lab:?}")]
    NoSuchHost {
        /// `--from` or `--to`.
        flag: &'static str,
        /// The pattern.
        pattern: String,
        /// The lab.
        lab: String,
    },
    /// A probe helper printed something unreadable.
    #[error("probe helper in {netns}: {why}")]
    ProbeHelper {
        /// Its namespace.
        netns: String,
        /// Why.
        why: String,
    },
    /// Socket set-up of a server or probe failed.
    #[error("{what}: {source}")]
    Socket {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// The lab's agent did not start, exited, or cannot be reached.
    #[error("the lab's agent {why} (log: {})", log.display())]
    Agent {
        /// What happened.
        why: String,
        /// Its log.
        log: PathBuf,
    },
    /// The agent rejected the watched directory's content; the policy in
    /// force stays.
    #[error("the agent did not enforce {}: {error}; the policy in force stays", watched.display())]
    Rejected {
        /// The watched directory.
        watched: PathBuf,
        /// The agent's error.
        error: String,
    },
    /// The agent did not enforce the watched content in time.
    #[error(
        "the agent did not enforce {} within {timeout:?}{}",
        watched.display(),
        last_error.as_deref().map(|e| format!(" (last error: {e})")).unwrap_or_default()
    )]
    SyncTimeout {
        /// The watched directory.
        watched: PathBuf,
        /// How long was waited.
        timeout: std::time::Duration,
        /// The agent's last error, if any.
        last_error: Option<String>,
    },
    /// The lab runs no agent (`lab up --no-agent`).
    #[error("lab {name:?} runs no agent (it was made with --no-agent)")]
    NoAgent {
        /// The lab.
        name: String,
    },
    /// The lab's agent runs, so there is nothing to restart.
    #[error(
        "the agent of lab {name:?} is running (pid {pid}); nothing to restart \
         (--kubeconfig or --manifests switches its source)"
    )]
    AgentRunning {
        /// The lab.
        name: String,
        /// Its PID.
        pid: u32,
    },
    /// The kubeconfig of the lab's agent could not be read or used.
    #[error(transparent)]
    Kube(#[from] bulkhead_policy::source::kubernetes::KubeError),
    /// The Kubernetes API of the lab's agent did not answer.
    #[error(
        "the Kubernetes API of {} did not {what} within {timeout:?}{}",
        kubeconfig.display(),
        last_error.as_deref().map(|e| format!(" (last error: {e})")).unwrap_or_default()
    )]
    ApiUnreachable {
        /// Its kubeconfig.
        kubeconfig: PathBuf,
        /// What was asked.
        what: &'static str,
        /// How long was waited.
        timeout: std::time::Duration,
        /// The last error, if any.
        last_error: Option<String>,
    },
    /// The agent read the API's content and could not enforce it; the
    /// policy in force stays.
    #[error(
        "the agent did not enforce the Kubernetes API's resourceVersion {revision}: {error}; \
         the policy in force stays"
    )]
    ApiRejected {
        /// The API's resourceVersion waited for.
        revision: u64,
        /// The agent's error.
        error: String,
    },
    /// The agent did not enforce the API's content in time.
    #[error(
        "the agent did not enforce the Kubernetes API's resourceVersion {revision} within \
         {timeout:?} (it enforces {}){}",
        enforced.as_deref().unwrap_or("nothing yet"),
        last_error.as_deref().map(|e| format!("; last error: {e}")).unwrap_or_default()
    )]
    ApiSyncTimeout {
        /// The API's resourceVersion waited for.
        revision: u64,
        /// How long was waited.
        timeout: std::time::Duration,
        /// What the agent enforces.
        enforced: Option<String>,
        /// The agent's (or its source's) last error, if any.
        last_error: Option<String>,
    },
    /// The lab's node namespace (where its API is reached) could not be entered.
    #[error("entering the lab's node namespace: {0}")]
    NodeNetns(#[source] bulkhead_agent::AgentError),
    /// A tokio runtime for talking to the API could not be made.
    #[error("starting a tokio runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// Walking or reading the manifests went over a limit or failed.
    #[error(transparent)]
    Manifests(#[from] bulkhead_policy::source::manifest::WalkError),
    /// Mounting or unmounting the lab's bpffs.
    #[error("{what} {}: {source}", path.display())]
    Mount {
        /// `mounting bpffs at`, `unmounting`.
        what: &'static str,
        /// The mount point.
        path: PathBuf,
        /// The error.
        source: nix::Error,
    },
}

impl LabError {
    /// An [`LabError::Io`].
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> LabError {
        let path = path.into();
        move |source| LabError::Io { path, source }
    }
}
