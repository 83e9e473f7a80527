//! The agent's side of the forensic timeline (see
//! [`bulkhead_learn::timeline`]): what changed for each local pod between
//! two enforced revisions, as timeline events.
//!
//! At each revision the agent enforces, [`Enforced::of`] reads, from the
//! compiled tables (the one representation of policy semantics), which
//! policies select each local pod (in the enforced view and the audit
//! view) and whether a quarantine does; [`diff`] compares that with the
//! previous revision's, pod by pod (maps keyed by pod, so the work is the
//! local pods times the policies selecting each, plus one pass over the
//! policies), and says:
//! - [`EventKind::Quarantined`] / [`EventKind::Unquarantined`]: a
//!   quarantine (stored or from the pod's label) began, changed or ended;
//! - [`EventKind::PolicyChange`]: policies that newly select the pod, no
//!   longer do, or still do with other rules or selectors;
//! - [`EventKind::ModeChange`]: a policy selecting the pod changed mode.
//!   Learn-mode policies are in neither compiled view (they do nothing), so
//!   a policy that enters or leaves learn mode with its content unchanged
//!   is a mode change, not an addition or removal.
//!
//! Quarantine policies are reported as quarantines, not as policies. The
//! first revision a process enforces is the reference, not a change.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use crate::api::{TimelineError, TimelineQuery};
use bulkhead_learn::timeline::{Event, EventKind, Timeline};
use bulkhead_policy::compile::{Compiled, Endpoint};
use bulkhead_policy::model::{AdminPolicy, Mode, Model, Policy, Quarantine, Tier};

/// The timeline as `GET /v1/timeline` serves it.
#[derive(Clone, Debug)]
pub enum TimelineSource {
    /// The agent runs without `--timeline-db`.
    None,
    /// `--timeline-db` was given but it did not open.
    NotOpen {
        /// The configured file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The open timeline, shared with its writers.
    Open(Arc<Timeline>),
}

impl TimelineSource {
    /// The open timeline, if any.
    pub fn timeline(&self) -> Option<&Arc<Timeline>> {
        match self {
            TimelineSource::Open(t) => Some(t),
            _ => None,
        }
    }

    /// The page `query` asks for, as JSON (`bulkhead.timeline/v1`), read
    /// in one read transaction beside the writers.
    pub fn json(&self, query: &TimelineQuery) -> Result<String, TimelineError> {
        match self {
            TimelineSource::None => Err(TimelineError::NotKept),
            TimelineSource::NotOpen { path, reason } => Err(TimelineError::NotOpen {
                path: path.clone(),
                reason: reason.clone(),
            }),
            TimelineSource::Open(t) => {
                let page = t
                    .page(
                        &query.pod,
                        query.since_unix_ms,
                        query.until_unix_ms,
                        query.limit,
                    )
                    .map_err(|e| TimelineError::Read(Box::new(e)))?;
                Ok(serde_json::to_string(&page).expect("timeline types serialize"))
            }
        }
    }
}

/// A policy selecting a pod: which one (in its model) and in what mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Selecting {
    /// A cluster-admin policy (index into `admin_policies`), else a
    /// NetworkPolicy (index into `policies`).
    admin: bool,
    index: usize,
    mode: Mode,
}

/// What one local pod is subject to in one revision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct PodView {
    quarantine: Option<Quarantine>,
    /// By policy name (`namespace/name`, `Kind/name`).
    policies: BTreeMap<Arc<str>, Selecting>,
}

/// What an enforced revision subjects each local pod to.
#[derive(Clone, Debug)]
pub struct Enforced {
    model: Arc<Model>,
    /// By pod (`namespace/name`).
    pods: HashMap<String, PodView>,
}

impl Enforced {
    /// The views of the local pods `local` (indices into `model.pods`) of
    /// `model` compiled as `compiled`.
    pub fn of(model: &Arc<Model>, compiled: &Compiled, local: &[usize]) -> Self {
        let np_keys: Vec<Arc<str>> = model.policies.iter().map(|p| p.key().into()).collect();
        let admin_keys: Vec<Arc<str>> = model
            .admin_policies
            .iter()
            .map(|p| p.key().into())
            .collect();
        let mut pods = HashMap::with_capacity(local.len());
        for &p in local {
            let mut view = PodView::default();
            let endpoints = [compiled.endpoints.get(p), compiled.audit_endpoints.get(p)];
            let tables = endpoints
                .into_iter()
                .flatten()
                .flat_map(|e: &Endpoint| [e.ingress, e.egress])
                .flatten()
                .filter_map(|t| compiled.tables.get(t as usize));
            for table in tables {
                for &i in &table.policies {
                    let mode = compiled.modes.get(i).copied().unwrap_or_default();
                    view.policies
                        .entry(np_keys[i].clone())
                        .or_insert(Selecting {
                            admin: false,
                            index: i,
                            mode,
                        });
                }
                for &i in &table.admin {
                    let policy = &model.admin_policies[i];
                    if policy.tier == Tier::Quarantine {
                        view.quarantine = Quarantine::of_policy(policy);
                        continue;
                    }
                    let mode = compiled.admin_modes.get(i).copied().unwrap_or_default();
                    view.policies
                        .entry(admin_keys[i].clone())
                        .or_insert(Selecting {
                            admin: true,
                            index: i,
                            mode,
                        });
                }
            }
            pods.insert(model.pods[p].key(), view);
        }
        Self {
            model: Arc::clone(model),
            pods,
        }
    }
}

/// The policies of a model by name, built when a diff needs them.
struct ByName<'m> {
    model: &'m Model,
    index: Option<HashMap<String, (bool, usize)>>,
}

impl<'m> ByName<'m> {
    fn new(model: &'m Model) -> Self {
        Self { model, index: None }
    }

    /// The policy named `key`, with its effective mode.
    fn get(&mut self, key: &str) -> Option<(Content<'m>, Mode)> {
        let model = self.model;
        let index = self.index.get_or_insert_with(|| {
            let np = model
                .policies
                .iter()
                .enumerate()
                .map(|(i, p)| (p.key(), (false, i)));
            let admin = model
                .admin_policies
                .iter()
                .enumerate()
                .map(|(i, p)| (p.key(), (true, i)));
            np.chain(admin).collect()
        });
        let &(admin, i) = index.get(key)?;
        Some(content(model, admin, i))
    }
}

/// A policy's content: what it selects and its rules (not its mode nor
/// where it was read from).
#[derive(Clone, Copy)]
enum Content<'m> {
    Np(&'m Policy),
    Admin(&'m AdminPolicy),
}

impl PartialEq for Content<'_> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Content::Np(a), Content::Np(b)) => {
                (
                    &a.namespace,
                    &a.name,
                    &a.pod_selector,
                    &a.ingress,
                    &a.egress,
                ) == (
                    &b.namespace,
                    &b.name,
                    &b.pod_selector,
                    &b.ingress,
                    &b.egress,
                )
            }
            (Content::Admin(a), Content::Admin(b)) => {
                (
                    a.kind, &a.name, a.tier, a.priority, &a.subject, &a.ingress, &a.egress,
                ) == (
                    b.kind, &b.name, b.tier, b.priority, &b.subject, &b.ingress, &b.egress,
                )
            }
            _ => false,
        }
    }
}

fn content(model: &Model, admin: bool, i: usize) -> (Content<'_>, Mode) {
    if admin {
        let p = &model.admin_policies[i];
        (Content::Admin(p), model.admin_mode_of(p))
    } else {
        let p = &model.policies[i];
        (Content::Np(p), model.mode_of(p))
    }
}

/// The policy change of one pod: (added, removed, changed).
type Change = (Vec<String>, Vec<String>, Vec<String>);

/// What changed for each local pod from `before` to `after` (the
/// revision `revision` made live at `at_unix_ms`), as timeline events:
/// quarantines per pod; policy and mode changes, each event naming every
/// pod it applies to.
pub fn diff(before: &Enforced, after: &Enforced, revision: u64, at_unix_ms: u64) -> Vec<Event> {
    let empty = PodView::default();
    let mut old_names = ByName::new(&before.model);
    let mut new_names = ByName::new(&after.model);
    // Whether a policy's content changed, once per policy.
    let mut changed_memo: HashMap<Arc<str>, bool> = HashMap::new();
    let mut quarantines = Vec::new();
    let mut changes: BTreeMap<Change, BTreeSet<String>> = BTreeMap::new();
    let mut modes: BTreeMap<(String, Mode, Mode), BTreeSet<String>> = BTreeMap::new();
    let mut pods: Vec<(&String, &PodView)> = after.pods.iter().collect();
    pods.sort_unstable_by_key(|(k, _)| *k);
    for (pod, new) in pods {
        let old = before.pods.get(pod).unwrap_or(&empty);
        let kind = match (&old.quarantine, &new.quarantine) {
            (None, Some(q)) => Some(quarantined(q)),
            (Some(a), Some(b)) if (&a.reason, a.allow_dns) != (&b.reason, b.allow_dns) => {
                Some(quarantined(b))
            }
            (Some(_), None) => Some(EventKind::Unquarantined),
            _ => None,
        };
        if let Some(kind) = kind {
            quarantines.push(Event {
                at_unix_ms,
                pods: vec![pod.clone()],
                kind,
            });
        }
        let (mut added, mut removed, mut changed) = (Vec::new(), Vec::new(), Vec::new());
        let mut mode_change = |policy: &str, from: Mode, to: Mode| {
            modes
                .entry((policy.to_owned(), from, to))
                .or_default()
                .insert(pod.clone());
        };
        for (key, s) in &new.policies {
            let Some(o) = old.policies.get(key) else {
                // Newly selecting: out of learn mode, or new.
                match old_names.get(key) {
                    Some((c, Mode::Learn)) if c == content(&after.model, s.admin, s.index).0 => {
                        mode_change(key, Mode::Learn, s.mode);
                    }
                    _ => added.push(key.to_string()),
                }
                continue;
            };
            let differs = *changed_memo.entry(key.clone()).or_insert_with(|| {
                content(&before.model, o.admin, o.index).0
                    != content(&after.model, s.admin, s.index).0
            });
            if differs {
                changed.push(key.to_string());
            }
            if o.mode != s.mode {
                mode_change(key, o.mode, s.mode);
            }
        }
        for (key, o) in &old.policies {
            if new.policies.contains_key(key) {
                continue;
            }
            // No longer selecting: into learn mode, or gone.
            match new_names.get(key) {
                Some((c, Mode::Learn)) if c == content(&before.model, o.admin, o.index).0 => {
                    mode_change(key, o.mode, Mode::Learn);
                }
                _ => removed.push(key.to_string()),
            }
        }
        if !(added.is_empty() && removed.is_empty() && changed.is_empty()) {
            changes
                .entry((added, removed, changed))
                .or_default()
                .insert(pod.clone());
        }
    }
    let policy_changes = changes
        .into_iter()
        .map(|((added, removed, changed), pods)| Event {
            at_unix_ms,
            pods: pods.into_iter().collect(),
            kind: EventKind::PolicyChange {
                revision,
                added,
                removed,
                changed,
            },
        });
    let mode_changes = modes.into_iter().map(|((policy, from, to), pods)| Event {
        at_unix_ms,
        pods: pods.into_iter().collect(),
        kind: EventKind::ModeChange {
            revision,
            policy,
            from: from.to_string(),
            to: to.to_string(),
        },
    });
    quarantines
        .into_iter()
        .chain(policy_changes)
        .chain(mode_changes)
        .collect()
}

fn quarantined(q: &Quarantine) -> EventKind {
    EventKind::Quarantined {
        reason: q.reason.clone(),
        allow_dns: q.allow_dns,
    }
}

#[cfg(test)]
mod tests;
