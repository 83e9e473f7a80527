//! The lab's agent fed by the Kubernetes API (`lab up --kubeconfig`,
//! `lab restart-agent --kubeconfig`): the agent runs `--kubernetes
//! --kubeconfig F` in the node namespace, while the lab's pods stay the
//! namespaces `lab up` made from its manifests. The API's pods must carry
//! the same addresses (`status.podIP(s)`): the agent finds a pod's veth by
//! the route to its address.
//!
//! "In sync" means: everything the API had when we asked is enforced.
//! [`current_revision`] asks the API server for its resourceVersion (a
//! `list` of Namespaces with `limit=1`, whose list `resourceVersion` is the
//! current one), and [`wait`] waits until the agent's `enforced_revision`
//! (the highest resourceVersion of the view in force) is at least that,
//! with no error.
//!
//! [`model_in_force`] reads the API's objects as the agent does (the
//! [`bulkhead_policy::source::kubernetes`] source itself, until its first complete
//! model), for `lab verify`. Each call runs on a small current-thread
//! tokio runtime of its own (the lab's commands are synchronous), in a
//! thread inside the lab's node namespace: the kubeconfig's address is
//! the agent's, and the node namespace is cut off from the machine's
//! network, so the API server the lab uses listens there (or behind one
//! of the lab's veths).

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::ListParams;
use kube::{Api, Client};

use super::LabError;
use super::agent::{Sync, ensure_running, its_word};
use super::state::{LabAgent, LabState};
use bulkhead_agent::AgentState;
use bulkhead_policy::model::{Mode, Model};
use bulkhead_policy::source::error_chain;
use bulkhead_policy::source::kubernetes::{self, KubeConfig, KubeError};

/// How long one request to the API may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Pause between attempts while the API does not answer.
const RETRY: Duration = Duration::from_millis(200);

/// Runs the future `f` makes to completion on a current-thread runtime of
/// its own, in a thread inside network namespace `netns` (the lab's node
/// namespace: the API is reached from where the agent reaches it), or in
/// this one.
fn block_on<T, F>(netns: Option<&str>, f: impl FnOnce() -> F + Send) -> Result<T, LabError>
where
    T: Send,
    F: Future<Output = T>,
{
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                if let Some(ns) = netns {
                    bulkhead_agent::enter_netns(ns).map_err(LabError::NodeNetns)?;
                }
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(LabError::Runtime)?;
                Ok(rt.block_on(f()))
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// A client for the API `kubeconfig` points at (as the agent makes it).
async fn client(kubeconfig: &Path) -> Result<Client, LabError> {
    let bad = |source| KubeError::Kubeconfig {
        path: kubeconfig.to_owned(),
        source,
    };
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).map_err(bad)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .map_err(bad)?;
    Ok(Client::try_from(config).map_err(KubeError::Client)?)
}

/// The API server's current resourceVersion, asked from network
/// namespace `netns` (else this one) until it answers or `timeout` passes
/// (an API server that is still starting is waited for).
pub fn current_revision(
    netns: Option<&str>,
    kubeconfig: &Path,
    timeout: Duration,
) -> Result<u64, LabError> {
    let deadline = Instant::now() + timeout;
    block_on(netns, || async {
        let api: Api<Namespace> = Api::all(client(kubeconfig).await?);
        let params = ListParams::default().limit(1);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let last_error =
                match tokio::time::timeout(left.min(REQUEST_TIMEOUT), api.list(&params)).await {
                    Ok(Ok(list)) => match list.metadata.resource_version.as_deref() {
                        Some(rv) => match rv.parse() {
                            Ok(rv) => return Ok(rv),
                            Err(_) => format!("resourceVersion {rv:?} is not a number"),
                        },
                        None => "the list has no resourceVersion".to_owned(),
                    },
                    Ok(Err(e)) => error_chain(&e),
                    Err(_) => format!("no answer within {:?}", left.min(REQUEST_TIMEOUT)),
                };
            if Instant::now() + RETRY >= deadline {
                return Err(LabError::ApiUnreachable {
                    kubeconfig: kubeconfig.to_owned(),
                    what: "give its resourceVersion",
                    timeout,
                    last_error: Some(last_error),
                });
            }
            tokio::time::sleep(RETRY).await;
        }
    })?
}

/// The agent's state against the API's resourceVersion `rv`: enforced
/// when its `enforced_revision` is at least `rv` without an error;
/// rejected when it read that far but failed to enforce it.
pub fn judge(s: &AgentState, rv: u64) -> Sync {
    let revision = |r: Option<&str>| r.and_then(|r| r.parse::<u64>().ok());
    let enforced = revision(s.enforced_revision.as_deref()).is_some_and(|e| e >= rv);
    let read = revision(Some(&s.source_revision)).is_some_and(|r| r >= rv);
    match (&s.error, enforced) {
        (None, true) => Sync::Enforced(Box::new(s.clone())),
        (Some(e), false) if read => Sync::Rejected {
            error: e.clone(),
            enforced_revision: s.enforced_revision.clone(),
        },
        _ => Sync::Pending {
            error: s.error.clone(),
        },
    }
}

/// Waits until `agent`, in node namespace `node`, enforces everything the
/// API at `kubeconfig` had when asked; its state and that resourceVersion.
/// Fails at once when the agent rejects it or is not running, else after
/// `timeout` (asking the API counts against it).
pub fn wait(
    node: &str,
    agent: &LabAgent,
    kubeconfig: &Path,
    timeout: Duration,
) -> Result<(AgentState, u64), LabError> {
    let deadline = Instant::now() + timeout;
    let rv = current_revision(Some(node), kubeconfig, timeout)?;
    loop {
        let sync = match AgentState::read(&agent.pin_dir) {
            Some(s) if its_word(&s, agent) => judge(&s, rv),
            _ => Sync::Pending { error: None },
        };
        match sync {
            Sync::Enforced(s) => return Ok((*s, rv)),
            Sync::Rejected { error, .. } => {
                return Err(LabError::ApiRejected {
                    revision: rv,
                    error,
                });
            }
            Sync::Pending { error } => {
                ensure_running(agent)?;
                if Instant::now() >= deadline {
                    let s = AgentState::read(&agent.pin_dir).unwrap_or_default();
                    return Err(LabError::ApiSyncTimeout {
                        revision: rv,
                        timeout,
                        enforced: s.enforced_revision,
                        last_error: error.or(s.source.last_error),
                    });
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One complete model of the API at `kubeconfig`, read from network
/// namespace `netns` (else this one) as the agent reads it
/// ([`kubernetes::spawn`], until its first feed with a model).
pub fn read_model(
    netns: Option<&str>,
    kubeconfig: &Path,
    mode: Mode,
    timeout: Duration,
) -> Result<Model, LabError> {
    let cfg = KubeConfig {
        kubeconfig: Some(kubeconfig.to_owned()),
        default_mode: mode,
    };
    block_on(netns, || async {
        let mut feed = kubernetes::spawn(cfg).await?;
        let first = tokio::time::timeout(timeout, feed.wait_for(|f| f.model.is_some()))
            .await
            .ok()
            .and_then(Result::ok)
            .and_then(|f| f.model.clone());
        match first {
            Some(model) => Ok(Model::clone(&model)),
            None => Err(LabError::ApiUnreachable {
                kubeconfig: kubeconfig.to_owned(),
                what: "list its Namespaces, Pods and NetworkPolicies",
                timeout,
                last_error: feed.borrow().status.last_error.clone(),
            }),
        }
    })?
}

/// The model whose policy the lab's agent enforces, read from the API: the
/// agent is waited for until it enforces the API's current resourceVersion,
/// then the API is read; when the API moved on meanwhile, again.
pub fn model_in_force(
    node: &str,
    agent: &LabAgent,
    kubeconfig: &Path,
    timeout: Duration,
) -> Result<Model, LabError> {
    let deadline = Instant::now() + timeout;
    let left = || deadline.saturating_duration_since(Instant::now());
    let (_, mut rv) = wait(node, agent, kubeconfig, timeout)?;
    loop {
        let model = read_model(Some(node), kubeconfig, agent.mode, left())?;
        let now = current_revision(Some(node), kubeconfig, left())?;
        if now == rv {
            return Ok(model);
        }
        // A change came in while we read: the agent may not enforce it yet.
        rv = wait(node, agent, kubeconfig, left())?.1;
    }
}

/// The lab's pods their node's agent has no endpoint for (`enforced`:
/// each node's agent's state, by node index): the API has no pod with
/// their addresses (or the agent has not seen it, or it is scheduled on
/// another node).
pub fn missing_endpoints<'a>(
    state: &'a LabState,
    enforced: &[(usize, AgentState)],
) -> Vec<&'a str> {
    state
        .hosts
        .iter()
        .filter(|h| h.is_pod())
        .filter(|h| {
            enforced
                .iter()
                .find(|(i, _)| *i == h.node)
                .is_some_and(|(_, s)| !s.endpoints.iter().any(|e| e.pod == h.name))
        })
        .map(|h| h.name.as_str())
        .collect()
}

/// A warning when the agents read the API and some of the lab's pods are
/// no endpoints of their node's agent (their addresses are no pod's in
/// the API, or the API schedules them elsewhere).
pub fn endpoint_warning(state: &LabState, enforced: &[(usize, AgentState)]) -> Option<String> {
    let agent = state.agent.as_ref()?;
    agent.source.kubeconfig()?;
    let missing = missing_endpoints(state, enforced);
    (!missing.is_empty()).then(|| {
        format!(
            "warning: no pod of the Kubernetes API has the address of lab pod(s) {} in its \
             status{}, so no agent enforces on them (the API's pods must carry the \
             lab's addresses; `bulkhead lab status --name {}` lists them)",
            missing.join(", "),
            if state.nodes.len() > 1 {
                " and its node's name in spec.nodeName (or none)"
            } else {
                ""
            },
            state.name
        )
    })
}

#[cfg(test)]
mod tests;
