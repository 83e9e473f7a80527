//! The reconcile loop: wakes on a source's feed, a node view change, a CNI
//! registration, a quarantine set or lifted, a signal, or the slow hook and
//! metrics timers; compiles what changed (the source's model with the
//! stored quarantines applied), syncs the dataplane, and tells waiting CNI
//! ADDs and quarantine requests where they stand.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use super::cnibind;
use super::nodeview::{self, NodeEvents, NodeSnapshot};
use super::{AgentConfig, AgentError, AgentFlows, AgentState, EndpointState, SourceConfig};
use crate::cni::{Registry, Stored};
use crate::quarantine::{self, Enforced, QuarantineStore};
use bulkhead_dataplane::node::{LocalEndpoint, Uplink};
use bulkhead_dataplane::{Dataplane, Desired, Origin, PinDir, SyncOutcome};
use bulkhead_policy::compile::{Compiled, compile_on_node};
use bulkhead_policy::model::{Model, Quarantine};
use bulkhead_policy::source::{Feed, kubernetes, manifest};

/// How often the hooks are checked to still be attached when nothing else
/// happened (drift repair: someone deleted a filter; no event says so).
const HOOK_CHECK: Duration = Duration::from_secs(10);

/// How often map fill and kernel drop counters are read for metrics.
const METRICS_REFRESH: Duration = Duration::from_secs(5);

/// The model in force, compiled.
struct Current {
    /// The source's model, shared with it (not copied: the node's
    /// addresses are compiled in beside it).
    source: Arc<Model>,
    /// What is compiled: the source's model, or a copy with addresses
    /// from CNI ADD for pods the source lists without (`overlay`) and the
    /// stored quarantines applied.
    model: Arc<Model>,
    /// (pod index, addresses) taken from CNI registrations.
    overlay: Vec<(usize, Vec<std::net::IpAddr>)>,
    /// The stored quarantines applied to `model`.
    quarantines: Vec<Quarantine>,
    /// The store generation `quarantines` are as of (a later generation
    /// with the same quarantines needs no compile).
    quarantine_generation: u64,
    compiled: Arc<Compiled>,
    /// The source revision it came from.
    revision: String,
}

struct Reconciler {
    cfg: AgentConfig,
    dp: Dataplane,
    flows: AgentFlows,
    state: AgentState,
    current: Option<Current>,
    node: NodeSnapshot,
    /// The uplinks hooked last (`leave_node`).
    uplinks: Vec<Uplink>,
    endpoints: Option<Vec<LocalEndpoint>>,
    /// MACs of the local endpoints' interfaces (from CNI ADD) in force.
    macs: BTreeMap<usize, [u8; 6]>,
    /// Whether `endpoints` are in the maps with their hooks attached, or
    /// why not.
    enforced: Result<(), String>,
    /// CNI registrations, shared with the local API.
    cni: Arc<Registry>,
    /// Quarantined pods, shared with the local API.
    quarantines: Arc<QuarantineStore>,
    /// A new model from the source, not compiled yet.
    pending: Option<(Arc<Model>, String)>,
    node_dirty: bool,
    hooks_due: bool,
    /// The last sync failed: the hook check retries it.
    sync_failed: bool,
}

/// Opens the dataplane and the sources, then reconciles until a signal.
pub(super) async fn run(cfg: AgentConfig) -> Result<(), AgentError> {
    let mut sigterm = signal(SignalKind::terminate()).map_err(AgentError::Signals)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(AgentError::Signals)?;
    let mut r = Reconciler::open(cfg)?;
    // The node watch before the first read, so no change falls between.
    let mut node_events = NodeEvents::open()?;
    let mut feed = open_source(&r.cfg.source).await?;
    let mut hook_check = tokio::time::interval(HOOK_CHECK);
    let mut metrics = tokio::time::interval(METRICS_REFRESH);
    let cni = Arc::clone(&r.cni);
    let quarantines = Arc::clone(&r.quarantines);
    loop {
        tokio::select! {
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
            changed = feed.changed() => {
                if changed.is_err() {
                    tracing::error!("the policy source stopped; the policy in force stays");
                    break;
                }
                let f = feed.borrow_and_update().clone();
                r.on_feed(f);
            }
            changed = node_events.changed() => {
                if let Err(e) = changed {
                    tracing::warn!(error = %e, "watching the node's links; reading them again");
                }
                r.node_dirty = true;
            }
            () = cni.changed() => {
                // The ADD's veth was made just before: read the node again.
                r.node_dirty = true;
            }
            // `compile_pending` reads the store.
            () = quarantines.changed() => {}
            _ = hook_check.tick() => r.hooks_due = true,
            _ = metrics.tick() => {
                r.flows.observe(&r.dp, &r.state);
                continue;
            }
        }
        r.reconcile().await?;
    }
    r.stop().await
}

async fn open_source(source: &SourceConfig) -> Result<watch::Receiver<Feed>, AgentError> {
    Ok(match source {
        SourceConfig::Manifests { path, load } => {
            manifest::watch::spawn(path.clone(), Arc::clone(load))?
        }
        SourceConfig::Kubernetes(k) => kubernetes::spawn(k.clone()).await?,
    })
}

impl Reconciler {
    fn open(cfg: AgentConfig) -> Result<Self, AgentError> {
        let pins = PinDir::prepare(&cfg.pin_dir)?;
        let (mut dp, origin) = Dataplane::open(
            pins,
            bulkhead_dataplane::embedded_elf(),
            cfg.grace,
            cfg.tc_mode,
        )?;
        let revision = dp.revision()?;
        dp.set_host_routing(cfg.host_routing)?;
        dp.set_service_mark(cfg.service_mark)?;
        let what = match origin {
            Origin::Adopted => "adopted the pinned dataplane",
            Origin::Loaded => "loaded the dataplane",
        };
        tracing::info!(revision, dir = %cfg.pin_dir.display(), "{what}");
        let mut state = AgentState {
            pid: std::process::id(),
            pin_dir: cfg.pin_dir.clone(),
            revision,
            xdp: cfg.xdp,
            host_routing: cfg.host_routing,
            ..AgentState::default()
        };
        if let SourceConfig::Manifests { path, .. } = &cfg.source {
            state.manifests.clone_from(path);
        }
        if let Some(old) = AgentState::read(&cfg.pin_dir) {
            state.netlink_devices = old.netlink_devices;
        }
        let cni = Arc::new(Registry::open(Some(Registry::path_for(&cfg.pin_dir))));
        let quarantines = Arc::new(QuarantineStore::open(Some(QuarantineStore::path_for(
            &cfg.pin_dir,
        ))));
        let flows = AgentFlows::start(
            &dp,
            &cfg.flows,
            Arc::clone(&cni),
            Arc::clone(&quarantines),
            &tokio::runtime::Handle::current(),
        );
        state.ui_addr = flows.ui_addr();
        Ok(Self {
            cfg,
            dp,
            flows,
            state,
            current: None,
            node: NodeSnapshot::default(),
            uplinks: Vec::new(),
            endpoints: None,
            macs: BTreeMap::new(),
            enforced: Err("not synced yet".into()),
            cni,
            quarantines,
            pending: None,
            node_dirty: true,
            hooks_due: true,
            sync_failed: false,
        })
    }

    /// Takes in what the source says now.
    fn on_feed(&mut self, feed: Feed) {
        self.state.source_revision = feed.revision.clone();
        self.state.source = feed.status;
        if let Some(error) = feed.error {
            self.state.error = Some(error);
            return;
        }
        let Some(model) = feed.model else { return };
        let known = self
            .current
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(&c.source, &model));
        if !known {
            self.pending = Some((model, feed.revision));
        }
    }

    /// Brings the dataplane in line with the source and the node.
    async fn reconcile(&mut self) -> Result<(), AgentError> {
        let mut recompile = false;
        if std::mem::take(&mut self.node_dirty) {
            match nodeview::read().await {
                Ok(node) => {
                    recompile = node.addresses != self.node.addresses;
                    if recompile && self.current.is_some() {
                        tracing::info!(addresses = ?node.addresses, "the node's addresses changed");
                    }
                    self.node = node;
                }
                Err(e) => tracing::warn!(error = %e, "reading links and routes"),
            }
        }
        let regs = self.cni.snapshot();
        let changed = self.compile_pending(recompile, &regs);
        if let Some(cur) = &self.current {
            let node_name = self.cfg.node_name.as_deref();
            let eps = local_endpoints(cur, &self.node, node_name);
            let (eps, macs) = cnibind::bind(eps, &cur.model, &self.node.links, &regs, node_name);
            let eps_changed = self.endpoints.as_ref() != Some(&eps) || self.macs != macs;
            let uplinks = self.node.links.uplinks(&eps, &self.cfg.uplinks);
            let hooks_due = std::mem::take(&mut self.hooks_due) || uplinks != self.uplinks;
            self.uplinks.clone_from(&uplinks);
            if changed || eps_changed || (hooks_due && self.sync_failed) {
                let (synced, attached) = step(
                    &mut self.dp,
                    &self.cfg,
                    cur,
                    (&eps, &uplinks, &macs),
                    &mut self.state,
                    &self.flows,
                );
                self.sync_failed = !synced;
                self.enforced = if synced && attached {
                    Ok(())
                } else {
                    Err(self.state.error.clone().unwrap_or_default())
                };
                self.endpoints = Some(eps);
                self.macs = macs;
            } else if hooks_due {
                // Only the hooks: the maps change only by our syncs, and
                // a sync builds and compares whole images (not idle work).
                if !attach(&mut self.dp, &self.cfg, (&eps, &uplinks), &mut self.state) {
                    self.enforced = Err(self.state.error.clone().unwrap_or_default());
                } else if !self.sync_failed {
                    self.enforced = Ok(());
                }
            }
        }
        self.publish(&regs);
        if changed {
            // A compile frees a whole model's worth of memory; give it back
            // rather than let the heap keep its high-water mark.
            super::memory::release_freed();
        }
        let enforced = self.quarantine_states();
        self.flows.observe(&self.dp, &self.state);
        super::write_state(&mut self.state)?;
        if let Some(e) = enforced {
            self.quarantines.publish(e);
        }
        Ok(())
    }

    /// The quarantines in force into the state, and what to tell waiting
    /// quarantine requests: `None` while the model compiled is not in the
    /// kernel (before the first sync, or after a failed one).
    fn quarantine_states(&mut self) -> Option<Enforced> {
        let cur = self.current.as_ref().filter(|_| !self.sync_failed)?;
        let local: BTreeSet<String> = self
            .endpoints
            .iter()
            .flatten()
            .map(|e| cur.model.pods[e.pod].key())
            .collect();
        let stored: Vec<_> = self
            .quarantines
            .list()
            .into_iter()
            .filter(|s| cur.quarantines.contains(&s.quarantine))
            .collect();
        let states = quarantine::wire::states(&cur.model, &stored, &local, self.enforced.is_ok());
        self.state.quarantines.clone_from(&states);
        Some(Enforced {
            generation: Some(cur.quarantine_generation),
            applied: cur.quarantines.clone(),
            quarantines: states,
        })
    }

    /// Tells the waiting CNI ADDs (and CHECKs) where their pods stand.
    fn publish(&self, regs: &[Stored]) {
        let model = self.current.as_ref().map(|c| &*c.model);
        let eps = self.endpoints.as_deref().unwrap_or_default();
        let enforced = self.enforced.as_ref().copied().map_err(String::as_str);
        let node_name = self.cfg.node_name.as_deref();
        self.cni
            .publish(cnibind::publication(model, eps, enforced, regs, node_name));
    }

    /// Compiles a new model from the source, or the current one again when
    /// the node's addresses, the addresses CNI ADD gave pods the source
    /// lists without, or the stored quarantines changed; whether anything
    /// was compiled.
    fn compile_pending(&mut self, addresses_changed: bool, regs: &[Stored]) -> bool {
        let (source, revision, fresh) = match (self.pending.take(), &self.current) {
            (Some((m, r)), _) => (m, r, true),
            (None, Some(c)) => (Arc::clone(&c.source), c.revision.clone(), false),
            (None, None) => return false,
        };
        let overlay = cnibind::address_overlay(&source, regs);
        let overlay_changed = self.current.as_ref().is_none_or(|c| c.overlay != overlay);
        let (quarantine_generation, quarantines) = self.quarantines.snapshot();
        let quarantines_changed = self
            .current
            .as_ref()
            .is_none_or(|c| c.quarantines != quarantines);
        if !fresh && !addresses_changed && !overlay_changed && !quarantines_changed {
            if let Some(c) = &mut self.current {
                c.quarantine_generation = quarantine_generation;
            }
            return false;
        }
        if quarantines_changed && self.current.is_some() {
            tracing::info!(
                quarantines = quarantines.len(),
                "the stored quarantines changed"
            );
        }
        if overlay_changed && !overlay.is_empty() {
            tracing::info!(
                pods = overlay.len(),
                "pods the source lists without addresses take them from CNI ADD"
            );
        }
        let mut model = cnibind::overlaid(&source, &overlay);
        if !quarantines.is_empty() {
            // On a copy: the source's model stays as the source made it
            // (its labels' quarantines applied, not the store's).
            let mut m = Arc::unwrap_or_clone(model);
            m.apply_quarantines(&quarantines);
            model = Arc::new(m);
        }
        self.state.warnings.clone_from(&model.warnings);
        let started = Instant::now();
        let compiled = compile_on_node(&model, &self.node.addresses);
        tracing::debug!(took = ?started.elapsed(), pods = model.pods.len(), "compiled");
        self.current = Some(Current {
            source,
            model,
            overlay,
            quarantines,
            quarantine_generation,
            compiled: Arc::new(compiled),
            revision,
        });
        true
    }

    async fn stop(mut self) -> Result<(), AgentError> {
        tracing::info!(
            revision = self.dp.revision().unwrap_or(0),
            "stopping; enforcement stays in place (pinned)"
        );
        self.flows.stop().await;
        self.state.pid = 0;
        super::write_state(&mut self.state)
    }
}

/// The model's pods that have a veth on this node (and, with a node name,
/// are scheduled here or nowhere).
fn local_endpoints(
    cur: &Current,
    node: &NodeSnapshot,
    node_name: Option<&str>,
) -> Vec<LocalEndpoint> {
    let pods: Vec<(usize, Vec<std::net::IpAddr>)> = cur
        .model
        .pods
        .iter()
        .enumerate()
        .filter(|(_, p)| match (node_name, p.node.as_deref()) {
            (Some(me), Some(theirs)) => me == theirs,
            _ => true,
        })
        .map(|(i, p)| (i, p.ips.clone()))
        .collect();
    node.local_endpoints(&pods)
}

/// One sync and hook reconcile of the endpoints `eps` with the MACs
/// `macs`; errors are logged into `state`. Whether the sync and the
/// attach succeeded.
fn step(
    dp: &mut Dataplane,
    cfg: &AgentConfig,
    cur: &Current,
    (eps, uplinks, macs): (&[LocalEndpoint], &[Uplink], &BTreeMap<usize, [u8; 6]>),
    state: &mut AgentState,
    flows: &AgentFlows,
) -> (bool, bool) {
    let local: Vec<(usize, u32)> = eps.iter().map(|e| (e.pod, e.ifindex)).collect();
    let desired = Desired {
        compiled: &cur.compiled,
        local: &local,
        macs,
    };
    let started = Instant::now();
    let started_unix_ms = super::flows::unix_ms();
    match dp.sync(&desired) {
        Ok(SyncOutcome::Switched { from, to, writes }) => {
            tracing::info!(from, to, writes, endpoints = eps.len(), took = ?started.elapsed(), "policy switched");
            state.revision = to;
            flows.update_policy(&cur.model, &cur.compiled, &local, to, started_unix_ms);
        }
        Ok(SyncOutcome::Unchanged { revision }) => {
            tracing::info!(revision, "policy in force already matches");
            flows.update_policy(&cur.model, &cur.compiled, &local, revision, started_unix_ms);
            state.revision = revision;
        }
        Err(e) => {
            tracing::error!(error = %e, "sync failed; the policy in force stays");
            state.error = Some(e.to_string());
            return (false, false);
        }
    }
    state.enforced_revision = Some(cur.revision.clone());
    if state.source_revision == cur.revision {
        state.error = None;
    }
    let attached = attach(dp, cfg, (eps, uplinks), state);
    state.endpoints = eps
        .iter()
        .map(|e| EndpointState {
            pod: cur.model.pods[e.pod].key(),
            ifindex: e.ifindex,
            ifname: e.ifname.clone(),
        })
        .collect();
    (true, attached)
}

/// Attaches the hooks to the endpoints' veths (and detaches the rest);
/// whether that succeeded.
fn attach(
    dp: &mut Dataplane,
    cfg: &AgentConfig,
    (eps, uplinks): (&[LocalEndpoint], &[Uplink]),
    state: &mut AgentState,
) -> bool {
    match dp.reconcile_hooks(eps, uplinks, cfg.xdp) {
        Ok(r) => {
            for (dev, hook) in &r.attached {
                tracing::info!(%dev, hook, "attached");
            }
            for d in r.netlink_devices {
                if !state.netlink_devices.contains(&d) {
                    state.netlink_devices.push(d);
                }
            }
            true
        }
        Err(e) => {
            tracing::error!(error = %e, "attaching hooks");
            state.error = Some(e.to_string());
            false
        }
    }
}
