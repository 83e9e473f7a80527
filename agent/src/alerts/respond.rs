//! The automatic response (`--respond quarantine:KIND[,KIND...]`, off by
//! default): an alert of a chosen kind quarantines the pods that opened
//! its connections (the alert's `src_pods`), through the same store
//! `bulkhead quarantine` writes, so it is enforced at the reconciler's
//! next sync, persisted, listed and lifted (`bulkhead unquarantine`) like
//! any other quarantine.
//!
//! A pod the store already holds is left as it is (a person's reason is
//! not overwritten, and a scan alert that repeats does not rewrite the
//! file). The store's write is a small file on the detectors' thread, never
//! on the pipeline's.

use std::collections::BTreeSet;
use std::sync::Arc;

use bulkhead_learn::baseline::detect::{Alert, AlertKind};

use super::labels;
use crate::quarantine::{MAX_REASON, QuarantineRequest, QuarantineStore};

/// The alert kinds, as `--respond` spells them.
const KINDS: [AlertKind; 4] = [
    AlertKind::NewPeer,
    AlertKind::NewPort,
    AlertKind::NewExternal,
    AlertKind::Scan,
];

/// What the agent does on its own when it raises an alert.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResponseConfig {
    /// Kinds whose alerts quarantine their source pods (empty: none).
    pub quarantine: BTreeSet<AlertKind>,
    /// Those quarantines still let DNS through (as `--allow-dns`).
    pub allow_dns: bool,
}

/// A `--respond` value that does not parse.
#[derive(Debug, thiserror::Error)]
#[error(
    "--respond {spec:?}: {reason} (expected quarantine:KIND[,KIND...], kinds: new_peer, new_port, new_external, scan)"
)]
pub struct ResponseSpecError {
    /// The value.
    pub spec: String,
    /// What is wrong.
    pub reason: String,
}

impl ResponseConfig {
    /// Whether any alert triggers a response.
    pub fn enabled(&self) -> bool {
        !self.quarantine.is_empty()
    }

    /// Adds one `--respond` value: `quarantine:KIND[,KIND...]`.
    pub fn add(&mut self, spec: &str) -> Result<(), ResponseSpecError> {
        let err = |reason: String| ResponseSpecError {
            spec: spec.to_owned(),
            reason,
        };
        let (action, kinds) = spec
            .split_once(':')
            .ok_or_else(|| err("no action".into()))?;
        if action != "quarantine" {
            return Err(err(format!("unknown action {action:?}")));
        }
        for k in kinds.split(',').map(str::trim) {
            let kind = KINDS
                .into_iter()
                .find(|c| c.as_str() == k)
                .ok_or_else(|| err(format!("unknown alert kind {k:?}")))?;
            self.quarantine.insert(kind);
        }
        Ok(())
    }
}

/// One pod's response to one alert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// Quarantined now.
    Quarantined(String),
    /// The store already held it: left as it was.
    Already(String),
    /// The store refused it (invalid name, or its file not written).
    Failed(String, String),
}

impl Response {
    /// As the alerts file records it: `quarantined NS/POD`,
    /// `already quarantined NS/POD`, `quarantine failed NS/POD: why`.
    pub fn describe(&self) -> String {
        match self {
            Response::Quarantined(p) => format!("quarantined {p}"),
            Response::Already(p) => format!("already quarantined {p}"),
            Response::Failed(p, e) => format!("quarantine failed {p}: {e}"),
        }
    }

    /// The metrics' `outcome` label.
    pub fn outcome(&self) -> &'static str {
        match self {
            Response::Quarantined(_) => "quarantined",
            Response::Already(_) => "already",
            Response::Failed(..) => "failed",
        }
    }
}

/// Acts on alerts as configured.
pub struct Responder {
    cfg: ResponseConfig,
    store: Arc<QuarantineStore>,
}

impl Responder {
    /// A responder writing to `store`.
    pub fn new(cfg: ResponseConfig, store: Arc<QuarantineStore>) -> Self {
        Self { cfg, store }
    }

    /// Quarantines `alert`'s source pods if its kind calls for it.
    pub fn respond(&self, alert: &Alert) -> Vec<Response> {
        if !self.cfg.quarantine.contains(&alert.kind) {
            return Vec::new();
        }
        let held: BTreeSet<String> = self
            .store
            .list()
            .into_iter()
            .map(|s| s.quarantine.key())
            .collect();
        alert
            .src_pods
            .iter()
            .map(|key| {
                if held.contains(key) {
                    return Response::Already(key.clone());
                }
                let (namespace, pod) = key.split_once('/').unwrap_or(("", key));
                let request = QuarantineRequest {
                    namespace: namespace.to_owned(),
                    pod: pod.to_owned(),
                    reason: Some(reason(alert)),
                    allow_dns: self.cfg.allow_dns,
                };
                match self.store.set(request) {
                    Ok(_) => Response::Quarantined(key.clone()),
                    Err(e) => Response::Failed(key.clone(), e.to_string()),
                }
            })
            .collect()
    }
}

/// The quarantine's reason: the alert, in a line the store accepts.
fn reason(alert: &Alert) -> String {
    let text = format!(
        "automatic response to a {} alert: {}",
        alert.kind.as_str(),
        labels::summary(alert)
    );
    text.chars().take(MAX_REASON).collect()
}

#[cfg(test)]
mod tests;
