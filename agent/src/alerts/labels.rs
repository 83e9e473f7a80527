//! A detector [`Alert`] as Alertmanager sees it: labels that identify it
//! (Alertmanager groups, deduplicates and routes by them) and annotations
//! that describe it.
//!
//! Labels: `alertname` ([`ALERTNAME`]), `kind`, `baseline` (its name: a new
//! version of it keeps the alerts' identity), the subject's `namespace` and
//! `workload` (`Kind/name`), `direction` (`egress` when the subject opened
//! the connection, else `ingress`), `peer` (the other end: `ns/Kind/name`
//! or an address), `protocol` and `port`, and `node`. A scan has no `peer`,
//! `protocol` or `port` label: it is one alert per scanning source, its
//! targets and ports are in the annotations. So re-sending an alert
//! (the same edge, the next interval) updates the one Alertmanager holds.
//!
//! `endsAt` is `startsAt` plus the detector's interval: the detector sends
//! an edge at most once per interval, so Alertmanager resolves the alert
//! when the deviation stopped recurring.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use bulkhead_flows::record::IpProtocol;
use bulkhead_learn::baseline::detect::{Alert, AlertKind};
use bulkhead_learn::edge::{End, WorkloadId};

use super::alertmanager::{PostableAlert, rfc3339};

/// The `alertname` label of every baseline alert.
pub const ALERTNAME: &str = "BulkheadBaselineDeviation";

/// Whether the alert's subject opened the connection.
pub fn subject_is_source(a: &Alert) -> bool {
    matches!(&a.src, End::Workload(w) if *w == a.subject)
}

/// The end that is not the subject.
pub fn peer(a: &Alert) -> &End {
    if subject_is_source(a) { &a.dst } else { &a.src }
}

/// A one-line description.
pub fn summary(a: &Alert) -> String {
    let proto = IpProtocol(a.protocol);
    let subject = &a.subject;
    match a.kind {
        AlertKind::Scan => format!(
            "{subject} reached {} peers or ports outside baseline {} (v{}) within the scan window \
             ({proto} ports {}-{}, first {})",
            a.targets, a.baseline, a.version, a.port, a.port_max, a.dst
        ),
        kind => {
            let what = match kind {
                AlertKind::NewPeer => "a new peer",
                AlertKind::NewPort => "a new port of a known peer",
                _ => "a new external address",
            };
            if subject_is_source(a) {
                format!(
                    "{subject} connected to {what}: {} {proto}/{} (outside baseline {} v{})",
                    a.dst, a.port, a.baseline, a.version
                )
            } else {
                format!(
                    "{subject} was reached from {what}: {} on {proto}/{} (outside baseline {} v{})",
                    a.src, a.port, a.baseline, a.version
                )
            }
        }
    }
}

fn workload_label(w: &WorkloadId) -> String {
    w.workload.clone()
}

/// The alert's Alertmanager labels (see the module doc).
pub fn labels(a: &Alert, node: &str) -> BTreeMap<String, String> {
    let mut l = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        l.insert(k.to_owned(), v);
    };
    put("alertname", ALERTNAME.to_owned());
    put("kind", a.kind.as_str().to_owned());
    put("baseline", a.baseline.clone());
    put("namespace", a.subject.namespace.clone());
    put("workload", workload_label(&a.subject));
    put(
        "direction",
        if subject_is_source(a) {
            "egress"
        } else {
            "ingress"
        }
        .to_owned(),
    );
    if a.kind != AlertKind::Scan {
        put("peer", peer(a).to_string());
        put("protocol", IpProtocol(a.protocol).to_string());
        put("port", a.port.to_string());
    }
    if !node.is_empty() {
        put("node", node.to_owned());
    }
    l
}

/// The alert's annotations: `summary`, `verdict`, `policies` (the deciding
/// policies, comma-separated), `baseline_version`, `source`,
/// `destination`, `first_seen` and `last_seen`; for a scan also `targets`
/// and `ports`.
pub fn annotations(a: &Alert) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        m.insert(k.to_owned(), v);
    };
    put("summary", summary(a));
    put("verdict", a.verdict.as_str().to_owned());
    put("policies", a.policies.join(", "));
    put("baseline_version", a.version.to_string());
    put("source", a.src.to_string());
    put("destination", a.dst.to_string());
    put("first_seen", rfc3339(at(a.first_seen_unix_ms)));
    put("last_seen", rfc3339(at(a.last_seen_unix_ms)));
    if a.kind == AlertKind::Scan {
        put("targets", a.targets.to_string());
        put("ports", format!("{}-{}", a.port, a.port_max));
        put("protocol", IpProtocol(a.protocol).to_string());
    }
    m
}

fn at(unix_ms: u64) -> std::time::SystemTime {
    UNIX_EPOCH + Duration::from_millis(unix_ms)
}

/// The alert as posted to Alertmanager: `startsAt` its first record,
/// `endsAt` one `interval` later.
pub fn postable(a: &Alert, node: &str, interval: Duration) -> PostableAlert {
    let starts = at(a.first_seen_unix_ms);
    PostableAlert {
        labels: labels(a, node),
        annotations: annotations(a),
        starts_at: rfc3339(starts),
        ends_at: rfc3339(starts + interval),
        generator_url: None,
    }
}

#[cfg(test)]
mod tests;
