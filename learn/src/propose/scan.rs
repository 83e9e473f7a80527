//! Scan-like fan-out: a source that probed many targets is left out of
//! the proposal by default (`--keep-scans` proposes it), and listed in the
//! proof. Pure: a function of the [`History`] alone.
//!
//! **A probe** is an edge with at most [`PROBE_MAX_FLOWS`] flows that
//! carried no payload: at most [`PROBE_MAX_PACKET_BYTES`] bytes per packet
//! on average, as the history counts them (both directions, passed and
//! dropped, the Ethernet header included). That ceiling is the largest
//! bare header of what a probe sends and draws:
//!
//! - a TCP connect to a closed port: SYN (74 bytes over IPv4 with the 20
//!   option bytes Linux sends, 94 over IPv6), RST (54, 74);
//! - to an open port closed at once: SYN, SYN-ACK, then ACK, FIN, FIN,
//!   ACK (66, 86 with timestamps): about 69 (89) on average;
//! - to a filtered port: the SYN and its retries, dropped;
//! - a UDP probe: one datagram, 42 (62) bytes empty, a few bytes more for
//!   the small payloads scanners send to known UDP ports.
//!
//! Any exchange of data raises the average above the ceiling over IPv6;
//! over IPv4 it leaves room for about 20 bytes of payload a packet, so a
//! single tiny exchange (a one-off health check answering `ok`) can look
//! like a probe. A repeated call cannot: it has more than two flows.
//!
//! **A scanner** is a source (a workload or an external address) with at
//! least [`super::Thresholds::scan_targets`] probe edges, that is distinct
//! (peer, protocol, port) targets. Its probe edges are a [`Scan`]: in no
//! rule, on neither side, and not counted against coverage; its other
//! edges are proposed as usual. A workload whose only edges are left-out
//! probes (a pod that was only scanned, or a scanner that did nothing
//! else) counts as not seen: no policy, listed with the workloads without
//! a proposal (a deny-all policy built from probes alone would cut its
//! real traffic, which the window did not show).
//!
//! The default, [`DEFAULT_SCAN_TARGETS`] = 10: a client that opens ten or
//! more distinct (peer, port) connections at most twice each without a
//! byte of payload is not an application's call pattern; a connect-only
//! health check repeats (more than two flows per target in any window
//! longer than two of its periods), and the smallest port scan (nmap's
//! `--top-ports 10`) or a sweep of one port over a /28 reaches it. The
//! alert detector (`crate::baseline::detect`) has a scan of its own, a
//! different notion: live deviations from a baseline, any payload, within
//! seconds (20 in 2 s by default); the history keeps no order of records
//! to window it, so neither its logic nor its threshold applies here.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde::Serialize;

use super::edge_text;
use crate::edge::{EdgeKey, EdgeStats, End, History, WorkloadId};
use bulkhead_flows::record::Timestamp;

/// Most flows a probe edge has.
pub const PROBE_MAX_FLOWS: u64 = 2;

/// Most bytes per packet, on average, of an edge without payload: the
/// largest bare header of a probe's packets (an IPv6 SYN with Linux's 20
/// option bytes: Ethernet 14 + IPv6 40 + TCP 20 + 20).
pub const PROBE_MAX_PACKET_BYTES: u64 = 94;

/// Default of [`super::Thresholds::scan_targets`] (see the module doc).
pub const DEFAULT_SCAN_TARGETS: u64 = 10;

/// Whether an edge looks like a probe: few flows, no payload.
pub fn is_probe(stats: &EdgeStats) -> bool {
    stats.flows() <= PROBE_MAX_FLOWS
        && stats.bytes() <= stats.packets().max(1) * PROBE_MAX_PACKET_BYTES
}

/// One source's probes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Scan {
    /// The source (`namespace/Kind/name` or an address).
    pub source: String,
    /// Flows of its probe edges.
    pub probes: u64,
    /// Probe edges: distinct (peer, protocol, port) targets.
    pub targets: u64,
    /// The peers probed, sorted.
    pub peers: Vec<String>,
    /// The lowest and highest port probed (`1-100`; `80` for one port;
    /// `none` when no probe had a port).
    pub ports: String,
    /// First probe seen.
    pub first: Timestamp,
    /// Last probe seen.
    pub last: Timestamp,
    /// The probe edges, sorted.
    pub edges: Vec<String>,
    /// Their keys, in the same order.
    #[serde(skip)]
    pub keys: Vec<EdgeKey>,
}

/// The scans of a history, and what leaving them out leaves out.
#[derive(Debug, Default)]
pub(super) struct Scans<'h> {
    /// Every scan, by source.
    pub(super) list: Vec<Scan>,
    /// The probe edges left out (none with `--keep-scans`).
    left_out: HashSet<EdgeKey>,
    /// Workloads at an end of some edge that is not left out.
    seen: HashSet<&'h WorkloadId>,
}

impl<'h> Scans<'h> {
    /// The scans of `history`: sources with at least `min_targets` probe
    /// edges, edges `exempt` says are no probes aside (the control
    /// plane's). With `keep`, they are listed but nothing is left out.
    pub(super) fn detect(
        history: &'h History,
        min_targets: u64,
        keep: bool,
        exempt: impl Fn(&EdgeKey) -> bool,
    ) -> Self {
        let mut by_source: BTreeMap<&End, Vec<(&EdgeKey, &EdgeStats)>> = BTreeMap::new();
        for (key, stats) in &history.edges {
            if is_probe(stats) && !exempt(key) {
                by_source.entry(&key.src).or_default().push((key, stats));
            }
        }
        let list: Vec<Scan> = by_source
            .into_iter()
            .filter(|(_, probes)| probes.len() as u64 >= min_targets.max(1))
            .map(|(source, mut probes)| {
                probes.sort_by(|a, b| a.0.cmp(b.0));
                scan(source, &probes)
            })
            .collect();
        let left_out: HashSet<EdgeKey> = if keep {
            HashSet::new()
        } else {
            list.iter().flat_map(|s| s.keys.iter().cloned()).collect()
        };
        let seen = history
            .edges
            .keys()
            .filter(|k| !left_out.contains(*k))
            .flat_map(|k| [&k.src, &k.dst])
            .filter_map(|e| match e {
                End::Workload(w) => Some(w),
                End::External(_) => None,
            })
            .collect();
        Scans {
            list,
            left_out,
            seen,
        }
    }

    /// Whether the proposal leaves this edge out as a scan's probe.
    pub(super) fn leaves_out(&self, key: &EdgeKey) -> bool {
        self.left_out.contains(key)
    }

    /// Whether a workload is at an end of an edge the proposal keeps.
    pub(super) fn seen(&self, id: &WorkloadId) -> bool {
        self.seen.contains(id)
    }
}

fn scan(source: &End, probes: &[(&EdgeKey, &EdgeStats)]) -> Scan {
    let peers: BTreeSet<String> = probes.iter().map(|(k, _)| k.dst.to_string()).collect();
    let ports = probes
        .iter()
        .map(|(k, _)| k.port)
        .filter(|p| *p != 0)
        .fold(None, |acc: Option<(u16, u16)>, p| {
            Some(acc.map_or((p, p), |(lo, hi)| (lo.min(p), hi.max(p))))
        });
    Scan {
        source: source.to_string(),
        probes: probes.iter().map(|(_, s)| s.flows()).sum(),
        targets: probes.len() as u64,
        peers: peers.into_iter().collect(),
        ports: match ports {
            None => "none".to_owned(),
            Some((lo, hi)) if lo == hi => lo.to_string(),
            Some((lo, hi)) => format!("{lo}-{hi}"),
        },
        first: probes
            .iter()
            .map(|(_, s)| s.first_seen)
            .min()
            .unwrap_or_default(),
        last: probes
            .iter()
            .map(|(_, s)| s.last_seen)
            .max()
            .unwrap_or_default(),
        edges: probes.iter().map(|(k, _)| edge_text(k)).collect(),
        keys: probes.iter().map(|(k, _)| (*k).clone()).collect(),
    }
}

#[cfg(test)]
mod tests;
