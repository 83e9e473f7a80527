//! The per-node agent (`bulkhead agent`): a reconciler on one tokio runtime. A policy source
//! (the manifest directory through inotify, or the Kubernetes API through
//! watches; see [`bulkhead_policy::source`]) publishes complete models; the node
//! view says which pods are local and what the node's addresses are; the
//! reconciler compiles, syncs the pinned dataplane (the slot protocol: a
//! no-op when the active slot already holds the image) and attaches hooks.
//! Nothing polls for changes: the loop sleeps until a source, the node
//! view, a CNI registration (the chained plugin's ADD or DEL, through the
//! local API; see [`crate::cni`]) or a signal wakes it (plus a slow check that the hooks are still
//! attached, and a metrics refresh).
//!
//! A source that fails (invalid manifests, an unreachable API) leaves the
//! policy in force (fail-static) and says why in the state file. SIGTERM
//! and SIGINT end the loop and leave everything pinned and attached.
//!
//! Beside it, in this crate: [`api`], the local API (axum on a Unix
//! socket) the CLI and the CNI plugin talk to, [`cni`], the registry of
//! what the chained CNI plugin reported, and [`quarantine`], the pods an
//! operator cut off (`bulkhead quarantine`), which wake the loop too.

pub mod alerts;
pub mod api;
pub mod cni;
mod cnibind;
pub mod flows;
pub mod map;
pub mod memory;
mod nodeview;
mod persisted;
pub mod process;
pub mod quarantine;
mod reconcile;
pub mod state;
#[cfg(test)]
mod tests;
pub mod timeline;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bulkhead_dataplane::{self as dataplane, DataplaneError, TcMode};
use bulkhead_policy::source::kubernetes::{KubeConfig, KubeError};
use bulkhead_policy::source::manifest::watch::{Loader, WatchError};

pub use flows::{AgentFlows, FlowsConfig};
pub use state::{AgentState, EndpointState, state_path};

/// Errors that stop the agent (everything else is logged and retried).
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The dataplane could not be opened or loaded.
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    /// Signal handlers could not be installed.
    #[error("installing signal handlers: {0}")]
    Signals(#[source] std::io::Error),
    /// The runtime could not be built.
    #[error("starting the tokio runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The manifest directory cannot be watched.
    #[error(transparent)]
    Watch(#[from] WatchError),
    /// The Kubernetes client cannot be configured.
    #[error(transparent)]
    Kubernetes(#[from] KubeError),
    /// The node's links cannot be watched.
    #[error("watching the node's links and routes: {0}")]
    Node(#[from] bulkhead_dataplane::node::NodeError),
    /// Entering the network namespace failed.
    #[error("entering network namespace {name}: {reason}")]
    Netns {
        /// Its name.
        name: String,
        /// Why.
        reason: String,
    },
    /// Another agent runs on these pins.
    #[error("an agent (pid {pid}) is running on {pin_dir}; stop it first")]
    Running {
        /// Its PID.
        pid: u32,
        /// The pin directory.
        pin_dir: PathBuf,
    },
    /// Writing the state file failed.
    #[error("writing the state file {path}: {source}")]
    State {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Where the model comes from.
#[derive(Clone)]
pub enum SourceConfig {
    /// A manifest directory (or file), watched with inotify.
    Manifests {
        /// The path.
        path: PathBuf,
        /// Loads and validates it.
        load: Loader,
    },
    /// The Kubernetes API.
    Kubernetes(KubeConfig),
}

/// How the agent runs.
pub struct AgentConfig {
    /// The policy source.
    pub source: SourceConfig,
    /// This node's name: when set, only pods scheduled on it
    /// (`spec.nodeName`), or not scheduled at all, can be local endpoints.
    pub node_name: Option<String>,
    /// The pin directory.
    pub pin_dir: PathBuf,
    /// Attach XDP.
    pub xdp: bool,
    /// Host routing (`CONFIG_F_HOST_ROUTING`).
    pub host_routing: bool,
    /// How TC attaches.
    pub tc_mode: TcMode,
    /// Grace period after a switch.
    pub grace: Duration,
    /// Flow visibility: accounting, pipeline, exporters, local API.
    pub flows: FlowsConfig,
    /// The service mark: the `skb->mark` bit that hands a Service
    /// connection's first packet to the program after kube-proxy's
    /// translation (see `bulkhead_common::CONFIG_SERVICE_MARK_SHIFT`); 0
    /// judges Service traffic as the pod sent it.
    pub service_mark: u32,
    /// Devices to hook as uplinks beyond those the routes say lead to
    /// other nodes (see `Snapshot::uplinks`).
    pub uplinks: Vec<String>,
}

/// The default service mark: bit 22, clear of kube-proxy's 0x4000 and
/// 0x8000.
pub const DEFAULT_SERVICE_MARK: u32 = 0x0040_0000;

/// Enters the named network namespace (`/run/netns/NAME`) for this thread
/// and the threads it starts; the mount namespace (and so bpffs) stays.
pub fn enter_netns(name: &str) -> Result<(), AgentError> {
    let err = |reason: String| AgentError::Netns {
        name: name.to_owned(),
        reason,
    };
    let file =
        std::fs::File::open(Path::new("/run/netns").join(name)).map_err(|e| err(e.to_string()))?;
    nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| err(e.to_string()))
}

/// Whether `pid` is a live bulkhead process other than this one.
fn agent_alive(pid: u32) -> bool {
    pid != std::process::id() && process::is_bulkhead(pid)
}

/// Runs the agent until SIGTERM or SIGINT, on one tokio runtime.
pub fn run(cfg: AgentConfig) -> Result<(), AgentError> {
    if let Some(s) = AgentState::read(&cfg.pin_dir).filter(|s| agent_alive(s.pid)) {
        return Err(AgentError::Running {
            pid: s.pid,
            pin_dir: cfg.pin_dir.clone(),
        });
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bulkhead-agent")
        .enable_all()
        .build()
        .map_err(AgentError::Runtime)?;
    runtime.block_on(reconcile::run(cfg))
}

fn write_state(state: &mut AgentState) -> Result<(), AgentError> {
    state.updated_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    state.write().map_err(|source| AgentError::State {
        path: state_path(&state.pin_dir),
        source,
    })
}

/// `--cleanup`: detaches everything, removes every pin and the state file.
/// Idempotent; refuses while an agent runs on these pins.
pub fn cleanup(pin_dir: &Path) -> Result<dataplane::CleanupReport, AgentError> {
    let state = AgentState::read(pin_dir);
    if let Some(s) = state.as_ref().filter(|s| agent_alive(s.pid)) {
        return Err(AgentError::Running {
            pid: s.pid,
            pin_dir: pin_dir.to_owned(),
        });
    }
    let devices = state.map(|s| s.netlink_devices).unwrap_or_default();
    let report = dataplane::cleanup(pin_dir, &devices)?;
    AgentState::remove(pin_dir).map_err(|source| AgentError::State {
        path: state_path(pin_dir),
        source,
    })?;
    Ok(report)
}
