//! The CNI commands. ADD registers the pod with the agent and returns the
//! previous result unchanged once the agent enforces the pod (or, with
//! `failurePolicy: ignore`, when it cannot confirm in time); DEL tells the
//! agent to forget the container and never fails on an absent agent or
//! pod; CHECK fails unless the agent enforces the container's pod; GC
//! and STATUS (spec 1.1.0) forward to the agent.

use std::path::Path;
use std::time::Duration;

use hyper::Method;
use serde_json::Value;
use tokio::time::Instant;

use crate::client::{self, ClientError};
use crate::spec::{self, CniError, Command, Env, FailurePolicy, NetConf, code};
use crate::wire::{
    AddRequest, DeleteResponse, ENDPOINTS_PATH, EndpointStatus, GC_PATH, GcRequest, GcResponse,
    Registration,
};

/// Longest pause between two attempts to reach an agent that is not
/// there yet (it may be restarting) during an ADD.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Longest a DEL, GC or STATUS waits for the agent.
const SHORT_CALL: Duration = Duration::from_secs(10);

/// What an invocation prints on stdout on success.
pub type Output = Option<Value>;

/// Runs `command` with the environment `var` and `stdin`. On error, the
/// second value is the version to write the error result in.
pub fn run(
    command: Command,
    var: impl Fn(&str) -> Option<String>,
    stdin: &[u8],
) -> Result<Output, (CniError, String)> {
    let fallback = spec::SUPPORTED_VERSIONS[spec::SUPPORTED_VERSIONS.len() - 1].to_owned();
    if command == Command::Version {
        let requested = serde_json::from_slice::<Value>(stdin).ok().and_then(|v| {
            v.get("cniVersion")
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
        return spec::version_result(requested.as_deref())
            .map(Some)
            .map_err(|e| (e, fallback));
    }
    let conf = NetConf::parse(stdin).map_err(|e| (e, fallback))?;
    let version = conf.cni_version.clone();
    let env = Env::read(command, var).map_err(|e| (e, version.clone()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            let e = CniError::new(code::IO_FAILURE, "starting the runtime", e.to_string());
            (e, version.clone())
        })?;
    runtime
        .block_on(dispatch(command, &conf, &env))
        .map_err(|e| (e, version))
}

async fn dispatch(command: Command, conf: &NetConf, env: &Env) -> Result<Output, CniError> {
    match command {
        Command::Add => add(conf, env).await.map(Some),
        Command::Del => {
            del(conf, env).await;
            Ok(None)
        }
        Command::Check => check(conf, env).await.map(|()| None),
        Command::Gc => {
            gc(conf).await;
            Ok(None)
        }
        Command::Status => status(conf).await.map(|()| None),
        Command::Version => unreachable!("answered before the configuration is read"),
    }
}

/// The registration of this ADD, from the environment and `prevResult`.
pub fn registration(conf: &NetConf, env: &Env) -> Result<Registration, CniError> {
    let prev = conf.prev_result.as_ref().ok_or_else(|| {
        CniError::new(
            code::INVALID_CONFIG,
            "no prevResult",
            "bulkhead-cni is a chained plugin: list it after the plugin that makes the pod's \
             interface (e.g. ptp or bridge) in a network configuration list",
        )
    })?;
    let (ns, name) = env.pod().ok_or_else(|| {
        CniError::new(
            code::INVALID_ENV,
            "no pod name",
            "CNI_ARGS carries no K8S_POD_NAMESPACE and K8S_POD_NAME: bulkhead-cni enforces \
             Kubernetes pods",
        )
    })?;
    let a = spec::attachment(prev, &env.ifname)?;
    Ok(Registration {
        container_id: env.container_id.clone(),
        pod_namespace: ns.to_owned(),
        pod_name: name.to_owned(),
        ips: a.ips,
        mac: a.mac,
        host_interfaces: a.host_interfaces,
        netns: env.netns.clone(),
        ifname: env.ifname.clone(),
    })
}

async fn add(conf: &NetConf, env: &Env) -> Result<Value, CniError> {
    let reg = registration(conf, env)?;
    let prev = conf.prev_result.clone().unwrap_or_default();
    match register(Path::new(&conf.socket), reg, conf.timeout()).await {
        Ok(()) => Ok(prev),
        Err(e) if conf.failure_policy == FailurePolicy::Ignore => {
            eprintln!(
                "bulkhead-cni: ADD of container {} passes unenforced (failurePolicy ignore): {e}",
                env.container_id
            );
            Ok(prev)
        }
        Err(e) => Err(e),
    }
}

/// Registers `reg` and waits until the agent enforces it, for at most
/// `timeout`; an agent that is not there (yet) is tried again.
pub async fn register(socket: &Path, reg: Registration, timeout: Duration) -> Result<(), CniError> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(100);
    let mut last = String::from("no answer yet");
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(not_enforced(&reg, timeout, &last));
        }
        // The agent answers (with its reason) a little before our deadline.
        let wait = left.saturating_sub((left / 10).min(Duration::from_secs(1)));
        let req = AddRequest {
            registration: reg.clone(),
            wait_ms: wait.as_millis() as u64,
        };
        let call = client::call::<EndpointStatus>(socket, Method::POST, ENDPOINTS_PATH, Some(&req));
        let err = match tokio::time::timeout(left, call).await {
            Err(_) => return Err(not_enforced(&reg, timeout, &last)),
            Ok(Ok(s)) if s.enforced => return Ok(()),
            Ok(Ok(s)) => {
                last = s.waiting_for.unwrap_or_else(|| "not enforced".into());
                continue;
            }
            Ok(Err(e)) => e,
        };
        match err.status() {
            // The agent's own deadline: the loop's decides.
            Some(504) => {}
            Some(s) if (400..500).contains(&s) => {
                return Err(CniError::new(
                    code::AGENT_ERROR,
                    "the agent refused the registration",
                    err.to_string(),
                ));
            }
            _ => {
                let left = deadline.saturating_duration_since(Instant::now());
                tokio::time::sleep(pause.min(left)).await;
                pause = (pause * 2).min(MAX_RETRY_PAUSE);
            }
        }
        last = err.to_string();
    }
}

fn not_enforced(reg: &Registration, timeout: Duration, last: &str) -> CniError {
    CniError::new(
        code::NOT_ENFORCED,
        "the pod's policy is not enforced",
        format!(
            "the Bulkhead agent did not confirm enforcement of pod {} (container {}) within {}: {last}",
            reg.pod_key(),
            reg.container_id,
            humantime::format_duration(timeout)
        ),
    )
}

/// Tells the agent to forget the container. Never fails: DEL must succeed
/// when the agent is down or the pod already gone (the agent drops
/// registrations of containers it never sees again at GC).
async fn del(conf: &NetConf, env: &Env) {
    let path = format!("{ENDPOINTS_PATH}/{}", env.container_id);
    let call =
        client::call::<DeleteResponse>(Path::new(&conf.socket), Method::DELETE, &path, None::<&()>);
    match tokio::time::timeout(conf.timeout().min(SHORT_CALL), call).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) if e.is_unreachable() => {}
        Ok(Err(e)) => eprintln!("bulkhead-cni: DEL of {}: {e}", env.container_id),
        Err(_) => eprintln!(
            "bulkhead-cni: DEL of {}: the agent did not answer",
            env.container_id
        ),
    }
}

async fn check(conf: &NetConf, env: &Env) -> Result<(), CniError> {
    if !conf.has_check() {
        return Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            "no CHECK before 0.4.0",
            format!("cniVersion {} has no CHECK", conf.cni_version),
        ));
    }
    let path = format!("{ENDPOINTS_PATH}/{}", env.container_id);
    let call =
        client::call::<EndpointStatus>(Path::new(&conf.socket), Method::GET, &path, None::<&()>);
    let status = match tokio::time::timeout(conf.timeout().min(SHORT_CALL), call).await {
        Ok(Ok(s)) => s,
        Ok(Err(ClientError::Status { status: 404, .. })) => {
            return Err(CniError::new(
                code::UNKNOWN_CONTAINER,
                "unknown container",
                format!(
                    "the agent has no registration of container {}",
                    env.container_id
                ),
            ));
        }
        Ok(Err(e)) => {
            return Err(CniError::new(
                code::TRY_AGAIN_LATER,
                "asking the agent",
                e.to_string(),
            ));
        }
        Err(_) => {
            return Err(CniError::new(
                code::TRY_AGAIN_LATER,
                "asking the agent",
                "it did not answer",
            ));
        }
    };
    if status.enforced {
        return Ok(());
    }
    Err(CniError::new(
        code::NOT_ENFORCED,
        "the pod's policy is not enforced",
        format!(
            "pod {} (container {}): {}",
            status.pod,
            status.container_id,
            status.waiting_for.unwrap_or_default()
        ),
    ))
}

/// Forwards the runtime's valid attachments; best effort.
async fn gc(conf: &NetConf) {
    let Some(valid) = &conf.valid_attachments else {
        return;
    };
    let req = GcRequest {
        valid_container_ids: valid.iter().map(|a| a.container_id.clone()).collect(),
    };
    let call =
        client::call::<GcResponse>(Path::new(&conf.socket), Method::POST, GC_PATH, Some(&req));
    match tokio::time::timeout(SHORT_CALL, call).await {
        Ok(Ok(r)) if !r.forgotten.is_empty() => {
            eprintln!("bulkhead-cni: GC forgot {}", r.forgotten.join(", "));
        }
        Ok(Ok(_)) => {}
        Ok(Err(e)) => eprintln!("bulkhead-cni: GC: {e}"),
        Err(_) => eprintln!("bulkhead-cni: GC: the agent did not answer"),
    }
}

/// Ready when the agent answers `/readyz`.
async fn status(conf: &NetConf) -> Result<(), CniError> {
    let call = client::call::<Value>(Path::new(&conf.socket), Method::GET, "/readyz", None::<&()>);
    match tokio::time::timeout(SHORT_CALL, call).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(CniError::new(
            code::NOT_AVAILABLE,
            "the Bulkhead agent is not ready",
            e.to_string(),
        )),
        Err(_) => Err(CniError::new(
            code::NOT_AVAILABLE,
            "the Bulkhead agent is not ready",
            "it did not answer",
        )),
    }
}
