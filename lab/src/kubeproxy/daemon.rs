//! The lab's kube-proxy: one `bulkhead lab kube-proxy` process per node,
//! started by `lab up` inside the node's namespace, that reads the same
//! source as the node's agent (the watched manifests through inotify, or
//! the Kubernetes API) and, like kube-proxy following Services and
//! EndpointSlices, writes the node's rules again ([`super::install`])
//! whenever the model changes. Nothing polls: it waits on the source.
//!
//! It records what it last installed in `kube-proxy.json` in the node's
//! directory ([`status_path`]): the source revision, or why the rules
//! could not be written. `lab sync` waits until every node's revision is
//! the one its agent enforces ([`wait`]). `lab down` ends it with the
//! node's other processes; the rules go with the node's namespace.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::install;
use crate::LabError;
use crate::state::{AgentSource, LabState, node_dir};
use bulkhead_policy::model::Model;
use bulkhead_policy::model::addressing::AddressPlan;
use bulkhead_policy::source::Feed;
use bulkhead_policy::source::kubernetes::{self, KubeConfig};
use bulkhead_policy::source::manifest::{self, Purpose, watch};

/// What a node's kube-proxy last did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyStatus {
    /// Its PID.
    pub pid: u32,
    /// The source revision whose rules are installed.
    #[serde(default)]
    pub revision: Option<String>,
    /// The source revision it last read, when its rules could not be
    /// installed (the previous ones stay), and why.
    #[serde(default)]
    pub error: Option<(String, String)>,
}

/// Where node `index`'s kube-proxy of `state` records its status.
pub fn status_path(state: &LabState, index: usize) -> PathBuf {
    node_dir(&state.name, index, state.nodes.len()).join("kube-proxy.json")
}

/// Reads a status file (`None`: none yet, or unreadable mid-write).
pub fn read_status(path: &Path) -> Option<ProxyStatus> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

fn write_status(path: &Path, status: &ProxyStatus) -> Result<(), LabError> {
    let text = serde_json::to_vec(status).expect("serializable");
    let tmp = path.with_extension("json.tmp");
    bulkhead_policy::private::write_atomic(path, &tmp, &text).map_err(LabError::io(path))
}

/// The manifests as the lab's agents load them (same address plan).
fn loader(state: &LabState) -> watch::Loader {
    let path = state.watched().to_owned();
    let mut plan = AddressPlan {
        ignore_status: state.assign_pod_ips,
        ..AddressPlan::default()
    };
    let cidrs: Vec<_> = state
        .pod_cidrs
        .iter()
        .filter_map(|c| c.parse().ok())
        .collect();
    if !cidrs.is_empty() {
        plan.cidrs = cidrs;
    }
    let service: Vec<_> = state
        .service_cidrs
        .iter()
        .filter_map(|c| c.parse().ok())
        .collect();
    if !service.is_empty() {
        plan.service_cidrs = service;
    }
    Arc::new(move || manifest::load_dir_for(&path, &plan, Purpose::Enforcement))
}

/// Runs node `index`'s kube-proxy of lab `name` until killed (inside the
/// node's namespace: `lab up` starts it there).
pub fn run(state: &LabState, index: usize) -> Result<(), LabError> {
    let node = super::node_view(state, index);
    let netns = state.nodes[index].netns.clone();
    let mode = state.kube_proxy;
    let path = status_path(state, index);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(LabError::Runtime)?;
    let source = state
        .agent
        .as_ref()
        .map(|a| a.source.clone())
        .unwrap_or_default();
    rt.block_on(async {
        let mut feed = match &source {
            AgentSource::Manifests => watch::spawn(state.watched().to_owned(), loader(state))
                .map_err(|e| LabError::KubeProxySource(e.to_string()))?,
            AgentSource::Kubernetes { kubeconfig } => kubernetes::spawn(KubeConfig {
                kubeconfig: Some(kubeconfig.clone()),
                default_mode: Default::default(),
            })
            .await
            .map_err(|e| LabError::KubeProxySource(e.to_string()))?,
        };
        let mut last: Option<(Arc<Model>, String)> = None;
        loop {
            let current: Feed = feed.borrow_and_update().clone();
            // Installing forks programs and opens netlink (with a runtime
            // of its own): off this runtime's thread.
            let (netns, node) = (netns.clone(), node.clone());
            let (status, now) = tokio::task::spawn_blocking(move || {
                let mut last = last;
                let status = sync(&netns, mode, &node, &current, &mut last);
                (status, last)
            })
            .await
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()));
            last = now;
            write_status(&path, &status)?;
            if feed.changed().await.is_err() {
                return Ok(());
            }
        }
    })
}

/// Installs the rules of `feed`'s model (when it changed since `last`)
/// and says what is in force.
fn sync(
    netns: &str,
    mode: super::ProxyMode,
    node: &super::NodeView,
    feed: &Feed,
    last: &mut Option<(Arc<Model>, String)>,
) -> ProxyStatus {
    let pid = std::process::id();
    let Some(model) = &feed.model else {
        return ProxyStatus {
            pid,
            ..ProxyStatus::default()
        };
    };
    let unchanged = last.as_ref().is_some_and(|(m, _)| Arc::ptr_eq(m, model));
    if !unchanged {
        if let Err(e) = install::apply(netns, mode, model, node) {
            tracing::error!(error = %e, "installing the kube-proxy rules");
            return ProxyStatus {
                pid,
                revision: last.as_ref().map(|(_, r)| r.clone()),
                error: Some((feed.revision.clone(), e.to_string())),
            };
        }
        *last = Some((Arc::clone(model), feed.revision.clone()));
    }
    ProxyStatus {
        pid,
        // A rejected revision keeps the model (and rules) before it.
        revision: last.as_ref().map(|(_, r)| r.clone()),
        error: None,
    }
}

/// Whether installed revision `have` covers `want`: the same content
/// hash (manifests), or a resourceVersion at least as high (the API).
fn caught_up(have: &str, want: &str) -> bool {
    match (have.parse::<u64>(), want.parse::<u64>()) {
        (Ok(h), Ok(w)) => h >= w,
        _ => have == want,
    }
}

/// Waits until every node's kube-proxy has installed `revision` (what
/// the agents enforce); fails with a kube-proxy's error, or after
/// `timeout`.
pub fn wait(state: &LabState, revision: &str, timeout: Duration) -> Result<(), LabError> {
    if state.kube_proxy == super::ProxyMode::None {
        return Ok(());
    }
    let deadline = Instant::now() + timeout;
    for i in 0..state.nodes.len() {
        let path = status_path(state, i);
        loop {
            let s = read_status(&path).unwrap_or_default();
            if s.revision
                .as_deref()
                .is_some_and(|r| caught_up(r, revision))
            {
                break;
            }
            if let Some((rev, why)) = &s.error
                && rev == revision
            {
                return Err(LabError::KubeProxy {
                    node: state.nodes[i].name.clone(),
                    why: why.clone(),
                });
            }
            if Instant::now() >= deadline {
                return Err(LabError::KubeProxy {
                    node: state.nodes[i].name.clone(),
                    why: format!(
                        "its rules are still those of revision {} after {timeout:?} (want {revision})",
                        s.revision.as_deref().unwrap_or("none")
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}
