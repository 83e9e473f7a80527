//! The per-node agent: manifests → compile → local endpoints → the pinned
//! dataplane, kept in step with the manifest directory and the node's veths.
//!
//! Every `poll` it hashes the directory's content and rescans links and
//! routes; a change of either (or a periodic hook check) triggers a sync
//! (the slot protocol: a no-op when the active slot already holds the
//! image) and a hook reconcile. Invalid manifests or an image that does not
//! fit are logged and leave the policy in force. SIGTERM/SIGINT end the loop
//! and leave everything pinned and attached (fail-static).

pub mod flows;
pub mod memory;
pub mod process;
pub mod state;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::compile::{Compiled, compile};
use crate::dataplane::{
    self, Dataplane, DataplaneError, Desired, Origin, PinDir, SyncOutcome, TcMode,
};
use crate::model::Model;
use crate::node::{self, LocalEndpoint, NodeError, Snapshot};
use crate::source::manifest::ManifestErrors;
use crate::source::manifest::walk::{self, Limits, WalkError};

pub use flows::{AgentFlows, FlowsConfig};
pub use state::{AgentState, EndpointState, state_path};

/// How often hooks are re-checked when nothing else changed.
const HOOK_CHECK: Duration = Duration::from_secs(2);

/// Errors that stop the agent (everything else is logged and retried).
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The dataplane could not be opened or loaded.
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    /// Signal handlers could not be installed.
    #[error("installing signal handlers: {0}")]
    Signals(#[source] std::io::Error),
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
    /// The runtime that drives the netlink reads could not be built.
    #[error("building the netlink runtime: {0}")]
    Runtime(#[source] std::io::Error),
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

/// How the agent runs.
pub struct AgentConfig<'a> {
    /// The manifest directory (watched).
    pub manifests: PathBuf,
    /// Loads and validates the manifests.
    pub load: &'a dyn Fn() -> Result<Model, ManifestErrors>,
    /// The pin directory.
    pub pin_dir: PathBuf,
    /// Attach XDP.
    pub xdp: bool,
    /// Host routing (`CONFIG_F_HOST_ROUTING`).
    pub host_routing: bool,
    /// How TC attaches.
    pub tc_mode: TcMode,
    /// Poll interval (directory and links).
    pub poll: Duration,
    /// Grace period after a switch.
    pub grace: Duration,
    /// Flow visibility: accounting, pipeline, exporters, local API.
    pub flows: FlowsConfig,
}

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

/// A stable hash (CRC-64) of the manifest files under `path` (names and
/// contents, in path order), hex: the files the loader reads, found and
/// read by the same bounded walk ([`walk`]), contents streamed (never
/// held whole). Tools compare it with the state file's `enforced_hash` to
/// know a sync is done. When the walk or a read fails (a limit, an
/// unreadable file), the hash is that of the error's text: it still
/// changes, so the agent loads, fails with the same error and reports it.
pub fn content_hash(path: &Path) -> String {
    content_hash_within(path, &Limits::DEFAULT)
}

/// [`content_hash`] within `limits`.
pub fn content_hash_within(path: &Path, limits: &Limits) -> String {
    const CRC: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_ECMA_182);
    let mut digest = CRC.digest();
    if let Err(e) = hash_files(path, limits, &mut digest) {
        digest = CRC.digest();
        digest.update(b"error\0");
        digest.update(e.to_string().as_bytes());
    }
    format!("{:016x}", digest.finalize())
}

/// Feeds each file's name, content and length to `digest`.
fn hash_files(
    path: &Path,
    limits: &Limits,
    digest: &mut crc::Digest<'_, u64>,
) -> Result<(), WalkError> {
    let mut reader = walk::Reader::new(*limits);
    for file in walk::walk(path, limits)? {
        digest.update(file.as_os_str().as_encoded_bytes());
        digest.update(&[0]);
        let len = reader.stream(&file, |chunk| digest.update(chunk))?;
        digest.update(&len.to_le_bytes());
    }
    Ok(())
}

/// Whether `pid` is a live bulkhead process other than this one.
fn agent_alive(pid: u32) -> bool {
    pid != std::process::id() && process::is_bulkhead(pid)
}

struct Current {
    model: Model,
    compiled: Compiled,
    hash: String,
}

/// Runs the agent until SIGTERM or SIGINT.
pub fn run(cfg: &AgentConfig<'_>) -> Result<(), AgentError> {
    if let Some(s) = AgentState::read(&cfg.pin_dir).filter(|s| agent_alive(s.pid)) {
        return Err(AgentError::Running {
            pid: s.pid,
            pin_dir: cfg.pin_dir.clone(),
        });
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).map_err(AgentError::Signals)?;
    }
    let pins = PinDir::prepare(&cfg.pin_dir)?;
    let (mut dp, origin) =
        Dataplane::open(pins, dataplane::embedded_elf(), cfg.grace, cfg.tc_mode)?;
    let revision = dp.revision()?;
    dp.set_host_routing(cfg.host_routing)?;
    match origin {
        Origin::Adopted => {
            tracing::info!(revision, dir = %cfg.pin_dir.display(), "adopted the pinned dataplane")
        }
        Origin::Loaded => {
            tracing::info!(revision, dir = %cfg.pin_dir.display(), "loaded the dataplane")
        }
    }
    let mut state = AgentState {
        pid: std::process::id(),
        manifests: cfg.manifests.clone(),
        pin_dir: cfg.pin_dir.clone(),
        revision,
        xdp: cfg.xdp,
        host_routing: cfg.host_routing,
        ..AgentState::default()
    };
    if let Some(old) = AgentState::read(&cfg.pin_dir) {
        state.netlink_devices = old.netlink_devices;
    }
    // Reads the node view (netlink) on this thread, which is in the
    // agent's network namespace already.
    let netlink = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(AgentError::Runtime)?;
    let mut flows = AgentFlows::start(&dp, &cfg.flows);
    let mut current: Option<Current> = None;
    let mut seen_hash = String::new();
    let mut last_eps: Option<Vec<LocalEndpoint>> = None;
    let mut dirty = false;
    let mut last_hook_check = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let tick = Instant::now();
        let hash = content_hash(&cfg.manifests);
        let view = netlink.block_on(node::read());
        let node_ips = node_ips(&view, current.as_ref());
        if hash != seen_hash {
            seen_hash = hash.clone();
            state.content_hash = hash.clone();
            match (cfg.load)() {
                Ok(mut model) => {
                    model.node_ips = node_ips;
                    state.warnings = model.warnings.clone();
                    let compiled = compile(&model);
                    current = Some(Current {
                        model,
                        compiled,
                        hash,
                    });
                    dirty = true;
                }
                Err(e) => {
                    let text = format!("{:#}", anyhow::Error::from(e));
                    tracing::error!(error = %text, "invalid manifests; the policy in force stays");
                    state.error = Some(format!("invalid manifests: {text}"));
                    write_state(&mut state)?;
                }
            }
        } else if let Some(cur) = current.as_mut().filter(|c| c.model.node_ips != node_ips) {
            tracing::info!(addresses = ?node_ips, "the node's addresses changed");
            cur.model.node_ips = node_ips;
            cur.compiled = compile(&cur.model);
            dirty = true;
        }
        if let Some(cur) = &current {
            match discover(&view, &cur.model) {
                Ok(eps) => {
                    let hook_check = last_hook_check.elapsed() >= HOOK_CHECK;
                    if dirty || hook_check || last_eps.as_ref() != Some(&eps) {
                        step(
                            &mut dp,
                            cfg,
                            cur,
                            &eps,
                            &mut state,
                            dirty || last_eps.as_ref() != Some(&eps),
                            &flows,
                        );
                        dirty = false;
                        last_eps = Some(eps);
                        last_hook_check = Instant::now();
                        write_state(&mut state)?;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "reading links and routes"),
            }
        }
        flows.observe(&dp, &state);
        let spent = tick.elapsed();
        if spent < cfg.poll {
            std::thread::sleep(cfg.poll - spent);
        }
    }
    tracing::info!(
        revision = dp.revision().unwrap_or(0),
        "stopping; enforcement stays in place (pinned)"
    );
    flows.stop();
    state.pid = 0;
    write_state(&mut state)?;
    Ok(())
}

/// The node's addresses now; on a read error (logged), the ones in force.
fn node_ips(
    view: &Result<Snapshot, NodeError>,
    current: Option<&Current>,
) -> Vec<std::net::IpAddr> {
    match view {
        Ok(view) => view.node_addresses(),
        Err(e) => {
            tracing::warn!(error = %e, "keeping the node addresses in force");
            current
                .map(|c| c.model.node_ips.clone())
                .unwrap_or_default()
        }
    }
}

fn discover<'a>(
    view: &'a Result<Snapshot, NodeError>,
    model: &Model,
) -> Result<Vec<LocalEndpoint>, &'a NodeError> {
    let pods: Vec<(usize, Vec<std::net::IpAddr>)> = model
        .pods
        .iter()
        .enumerate()
        .map(|(i, p)| (i, p.ips.clone()))
        .collect();
    Ok(view.as_ref()?.local_endpoints(&pods))
}

/// One sync and hook reconcile; errors are logged into `state`.
#[allow(clippy::too_many_arguments)]
fn step(
    dp: &mut Dataplane,
    cfg: &AgentConfig<'_>,
    cur: &Current,
    eps: &[LocalEndpoint],
    state: &mut AgentState,
    changed: bool,
    flows: &AgentFlows,
) {
    let local: Vec<(usize, u32)> = eps.iter().map(|e| (e.pod, e.ifindex)).collect();
    let desired = Desired {
        compiled: &cur.compiled,
        local: &local,
    };
    let started = Instant::now();
    match dp.sync(&desired) {
        Ok(SyncOutcome::Switched { from, to, writes }) => {
            tracing::info!(from, to, writes, endpoints = eps.len(), took = ?started.elapsed(), "policy switched");
            state.revision = to;
            state.enforced_hash = Some(cur.hash.clone());
            flows.update_policy(&cur.model, &cur.compiled, &local, to);
        }
        Ok(SyncOutcome::Unchanged { revision }) => {
            if changed {
                tracing::info!(revision, "policy in force already matches");
            }
            state.revision = revision;
            state.enforced_hash = Some(cur.hash.clone());
            if changed {
                flows.update_policy(&cur.model, &cur.compiled, &local, revision);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "sync failed; the policy in force stays");
            state.error = Some(e.to_string());
            return;
        }
    }
    if state.content_hash == cur.hash {
        state.error = None;
    }
    match dp.reconcile_hooks(eps, cfg.xdp) {
        Ok(r) => {
            for (dev, hook) in &r.attached {
                tracing::info!(%dev, hook, "attached");
            }
            for d in r.netlink_devices {
                if !state.netlink_devices.contains(&d) {
                    state.netlink_devices.push(d);
                }
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "attaching hooks");
            state.error = Some(e.to_string());
        }
    }
    state.endpoints = eps
        .iter()
        .map(|e| EndpointState {
            pod: cur.model.pods[e.pod].key(),
            ifindex: e.ifindex,
            ifname: e.ifname.clone(),
        })
        .collect();
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
