//! Deviation detection: live flow records (notifications and flow records)
//! checked against a [`Baseline`], turned into alerts.
//!
//! - An edge with an end in the baseline's scope that the baseline does not
//!   hold is a deviation, of kind [`AlertKind::NewExternal`] (an address no
//!   pod owns), [`AlertKind::NewPort`] (the two ends are in the baseline on
//!   other ports) or [`AlertKind::NewPeer`].
//! - Deviations are held per source for `scan_window` before they become
//!   alerts: a source that reached `scan_targets` distinct (peer, port)
//!   pairs outside the baseline in that window raises one
//!   [`AlertKind::Scan`] alert (and its further deviations fold into it for
//!   `interval`), not one alert per probe.
//! - Each edge raises at most one alert per `interval`; the records of one
//!   connection (its notification, then its flow record) raise one.
//!
//! Time is the records' own (their `end`), and [`Detector::flush`] takes
//! the caller's clock, so the detector is deterministic and has no timer
//! of its own: the caller wakes it at [`Detector::next_deadline`].

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use super::Baseline;
use crate::edge::{EdgeKey, End, WorkloadId, key_of};
use bulkhead_flows::record::{FlowRecord, FlowVerdict, PodInfo};

/// Thresholds and intervals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DetectConfig {
    /// An edge raises at most one alert per interval (milliseconds).
    pub interval_ms: u64,
    /// How long a source's deviations are held to tell a scan from a few
    /// new edges (milliseconds).
    pub scan_window_ms: u64,
    /// Distinct (peer, port) pairs outside the baseline within the window
    /// that make a scan.
    pub scan_targets: usize,
}

impl Default for DetectConfig {
    fn default() -> Self {
        Self {
            interval_ms: 3_600_000,
            scan_window_ms: 2_000,
            scan_targets: 20,
        }
    }
}

/// What kind of deviation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A peer the workload never talked to (in that direction).
    NewPeer,
    /// A known peer, on a protocol or port never used with it.
    NewPort,
    /// An address outside the cluster the workload never reached.
    NewExternal,
    /// One source, many peers or ports outside the baseline, quickly.
    Scan,
}

impl AlertKind {
    /// The JSON and label spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::NewPeer => "new_peer",
            AlertKind::NewPort => "new_port",
            AlertKind::NewExternal => "new_external",
            AlertKind::Scan => "scan",
        }
    }
}

/// One alert.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// What kind.
    pub kind: AlertKind,
    /// The baseline's name and version it deviates from.
    pub baseline: String,
    /// Its version.
    pub version: u32,
    /// The workload in scope the alert is about (the source when it is in
    /// scope, else the destination).
    pub subject: WorkloadId,
    /// The connection's opener.
    pub src: End,
    /// Its destination (for a scan: the first one seen).
    pub dst: End,
    /// IP protocol number.
    pub protocol: u8,
    /// Destination port (for a scan: the lowest seen).
    pub port: u16,
    /// For a scan: distinct (peer, port) pairs seen in the window (at
    /// least); else 1.
    pub targets: usize,
    /// For a scan: the highest port seen; else `port`.
    pub port_max: u16,
    /// The verdict of the (first) connection.
    pub verdict: FlowVerdict,
    /// The policies that decided it, as flow records name them.
    pub policies: Vec<String>,
    /// Milliseconds since the epoch of the first record.
    pub first_seen_unix_ms: u64,
    /// Of the last record.
    pub last_seen_unix_ms: u64,
    /// The pods (`namespace/name`) that opened the deviating connections
    /// (at most [`MAX_PODS`]): what a response acts on, what a timeline
    /// files the alert under.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub src_pods: Vec<String>,
    /// The pods they reached (at most [`MAX_PODS`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dst_pods: Vec<String>,
}

/// Most pods an alert names at either end (a scan of a whole namespace
/// names the first ones).
pub const MAX_PODS: usize = 16;

/// One held deviation.
#[derive(Clone, Debug)]
struct Sample {
    verdict: FlowVerdict,
    policies: Vec<String>,
    first_ms: u64,
    last_ms: u64,
    /// The pods at either end of its records (each at most [`MAX_PODS`]).
    pods: Pods,
}

/// The pods at the two ends of held records, bounded.
#[derive(Clone, Debug, Default)]
struct Pods {
    src: BTreeSet<String>,
    dst: BTreeSet<String>,
}

impl Pods {
    fn of(r: &FlowRecord) -> Self {
        let mut p = Self::default();
        p.add(r);
        p
    }

    fn add(&mut self, r: &FlowRecord) {
        let name = |i: &PodInfo| format!("{}/{}", i.namespace, i.pod);
        if let Some(i) = &r.src.pod
            && self.src.len() < MAX_PODS
        {
            self.src.insert(name(i));
        }
        if let Some(i) = r
            .backend()
            .and_then(|b| b.address.pod.as_ref())
            .or(r.dst.pod.as_ref())
            && self.dst.len() < MAX_PODS
        {
            self.dst.insert(name(i));
        }
    }

    fn merge(&mut self, other: &Pods) {
        for (mine, theirs) in [(&mut self.src, &other.src), (&mut self.dst, &other.dst)] {
            for p in theirs {
                if mine.len() >= MAX_PODS {
                    break;
                }
                mine.insert(p.clone());
            }
        }
    }
}

/// A source's deviations within its window.
#[derive(Debug, Default)]
struct Held {
    first_ms: u64,
    /// At most `scan_targets` samples: enough to decide.
    edges: BTreeMap<EdgeKey, Sample>,
    /// Distinct pairs beyond those kept (a lower bound).
    more: usize,
}

/// The detector of one baseline.
#[derive(Debug)]
pub struct Detector {
    baseline: Baseline,
    cfg: DetectConfig,
    /// When each edge last raised (or folded into) an alert.
    alerted: HashMap<EdgeKey, u64>,
    /// Sources with a scan alert, until when their deviations fold into it.
    scanning: HashMap<End, u64>,
    held: HashMap<End, Held>,
    /// Records that were deviations but raised nothing (deduplicated or
    /// folded into a scan).
    suppressed: u64,
}

impl Detector {
    /// A detector of `baseline`.
    pub fn new(baseline: Baseline, cfg: DetectConfig) -> Self {
        Self {
            baseline,
            cfg,
            alerted: HashMap::new(),
            scanning: HashMap::new(),
            held: HashMap::new(),
            suppressed: 0,
        }
    }

    /// The baseline checked against.
    pub fn baseline(&self) -> &Baseline {
        &self.baseline
    }

    /// Deviating records that raised nothing (deduplicated, or folded into
    /// a scan alert).
    pub fn suppressed(&self) -> u64 {
        self.suppressed
    }

    /// Takes one record; the alerts now due (held windows that ended by
    /// the record's time).
    pub fn observe(&mut self, r: &FlowRecord) -> Vec<Alert> {
        let now = r.end.unix_ms();
        // Windows that ended first: their edges are alerted, and this
        // record folds into them.
        let mut alerts = self.flush(now);
        if let Ok(key) = key_of(r)
            && self.baseline.watches_edge(&key)
            && !self.baseline.holds(&key)
        {
            self.hold(key, r, now);
        }
        alerts.extend(self.flush(now));
        alerts
    }

    fn hold(&mut self, key: EdgeKey, r: &FlowRecord, now: u64) {
        let interval = self.cfg.interval_ms;
        if self
            .scanning
            .get(&key.src)
            .is_some_and(|&until| now < until)
            || self
                .alerted
                .get(&key)
                .is_some_and(|&t| now < t.saturating_add(interval))
        {
            self.suppressed += 1;
            return;
        }
        let held = self.held.entry(key.src.clone()).or_insert_with(|| Held {
            first_ms: now,
            ..Held::default()
        });
        if let Some(s) = held.edges.get_mut(&key) {
            s.last_ms = s.last_ms.max(now);
            s.pods.add(r);
            self.suppressed += 1;
            return;
        }
        if held.edges.len() >= self.cfg.scan_targets {
            held.more += 1;
            return;
        }
        let policies = r.policies.iter().map(|p| p.name.to_string()).collect();
        held.edges.insert(
            key,
            Sample {
                verdict: r.verdict,
                policies,
                first_ms: r.start.unix_ms().min(now),
                last_ms: now,
                pods: Pods::of(r),
            },
        );
    }

    /// The alerts of every held window that ended by `now_ms`.
    pub fn flush(&mut self, now_ms: u64) -> Vec<Alert> {
        let window = self.cfg.scan_window_ms;
        let due: Vec<End> = self
            .held
            .iter()
            .filter(|(_, h)| now_ms >= h.first_ms.saturating_add(window))
            .map(|(src, _)| src.clone())
            .collect();
        let mut alerts = Vec::new();
        for src in due {
            let held = self.held.remove(&src).expect("listed above");
            self.raise(src, held, now_ms, &mut alerts);
        }
        self.forget_before(now_ms);
        alerts.sort_by(|a, b| {
            (a.first_seen_unix_ms, &a.src, &a.dst).cmp(&(b.first_seen_unix_ms, &b.src, &b.dst))
        });
        alerts
    }

    /// When the next held window ends (milliseconds since the epoch).
    pub fn next_deadline(&self) -> Option<u64> {
        self.held
            .values()
            .map(|h| h.first_ms.saturating_add(self.cfg.scan_window_ms))
            .min()
    }

    fn raise(&mut self, src: End, held: Held, now: u64, out: &mut Vec<Alert>) {
        let targets = held.edges.len() + held.more;
        // An edge's interval runs from its first deviating record.
        for (key, s) in &held.edges {
            self.alerted.insert(key.clone(), s.first_ms);
        }
        if targets >= self.cfg.scan_targets {
            self.scanning
                .insert(src, now.saturating_add(self.cfg.interval_ms));
            out.push(self.scan_alert(&held, targets));
            return;
        }
        for (key, s) in held.edges {
            let kind = self.kind_of(&key);
            out.push(self.alert(kind, &key, &s, 1, key.port));
        }
    }

    fn scan_alert(&self, held: &Held, targets: usize) -> Alert {
        let (first_key, first) = held
            .edges
            .iter()
            .min_by_key(|(k, s)| (s.first_ms, (*k).clone()))
            .expect("a scan holds edges");
        let port = held.edges.keys().map(|k| k.port).min().unwrap_or(0);
        let port_max = held.edges.keys().map(|k| k.port).max().unwrap_or(0);
        let mut a = self.alert(AlertKind::Scan, first_key, first, targets, port_max);
        a.port = port;
        a.last_seen_unix_ms = held.edges.values().map(|s| s.last_ms).max().unwrap_or(0);
        let mut pods = Pods::default();
        for s in held.edges.values() {
            pods.merge(&s.pods);
        }
        (a.src_pods, a.dst_pods) = (
            pods.src.into_iter().collect(),
            pods.dst.into_iter().collect(),
        );
        a
    }

    fn alert(
        &self,
        kind: AlertKind,
        key: &EdgeKey,
        s: &Sample,
        targets: usize,
        port_max: u16,
    ) -> Alert {
        Alert {
            kind,
            baseline: self.baseline.name.clone(),
            version: self.baseline.version(),
            subject: self.subject(key),
            src: key.src.clone(),
            dst: key.dst.clone(),
            protocol: key.protocol,
            port: key.port,
            targets,
            port_max,
            verdict: s.verdict,
            policies: s.policies.clone(),
            first_seen_unix_ms: s.first_ms,
            last_seen_unix_ms: s.last_ms,
            src_pods: s.pods.src.iter().cloned().collect(),
            dst_pods: s.pods.dst.iter().cloned().collect(),
        }
    }

    /// The end in scope (the source first).
    fn subject(&self, key: &EdgeKey) -> WorkloadId {
        [&key.src, &key.dst]
            .into_iter()
            .find_map(|e| match e {
                End::Workload(w) if self.baseline.watches(w) => Some(w.clone()),
                _ => None,
            })
            .expect("only edges with an end in scope are held")
    }

    fn kind_of(&self, key: &EdgeKey) -> AlertKind {
        let subject_is_src = matches!(&key.src, End::Workload(w) if self.baseline.watches(w));
        if subject_is_src && matches!(key.dst, End::External(_)) {
            AlertKind::NewExternal
        } else if self.baseline.knows_pair(&key.src, &key.dst) {
            AlertKind::NewPort
        } else {
            AlertKind::NewPeer
        }
    }

    /// Drops dedup state older than the interval (bounded memory).
    fn forget_before(&mut self, now: u64) {
        let interval = self.cfg.interval_ms;
        self.alerted.retain(|_, t| now < t.saturating_add(interval));
        self.scanning.retain(|_, until| now < *until);
    }
}

#[cfg(test)]
mod tests;
