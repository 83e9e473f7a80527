//! The demo app's traffic for the learning tests (`lab_audit`,
//! `lab_nodes_learn`): its manifests, the connections it makes, and its
//! flow records, read from every node's flow log.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bulkhead_flows::record::Timestamp;
use serde_json::Value;

use crate::lab_support::{Lab, json_lines};
use crate::traffic::{Attempt, Pod, tcp_attempt};

/// The demo app, with its own policies.
pub fn manifests() -> String {
    policies("demo", &["workloads.yaml", "netpol.yaml"])
}

/// Files of `policies/<dir>/`, as one multi-document YAML.
pub fn policies(dir: &str, files: &[&str]) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../policies")
        .join(dir);
    files
        .iter()
        .map(|f| {
            std::fs::read_to_string(dir.join(f))
                .unwrap_or_else(|e| panic!("{}: {e}", dir.join(f).display()))
        })
        .collect::<Vec<_>>()
        .join("\n---\n")
}

/// The connections the app makes: (client, server, port).
pub const LEARNED: [(&str, &str, u16); 4] = [
    ("shop/frontend", "shop/api", 8080),
    ("shop/api", "shop/db", 5432),
    ("shop/frontend", "kube-system/coredns", 53),
    ("shop/api", "kube-system/coredns", 53),
];
/// A connection the app never made while learning.
pub const UNLEARNED: (&str, &str, u16) = ("shop/frontend", "shop/db", 5432);

/// The lab's pod whose name starts with `prefix` (`shop/api` finds the
/// Deployment's pod `shop/api-...`).
pub fn pod<'a>(pods: &'a [Pod], prefix: &str) -> &'a Pod {
    pods.iter()
        .find(|p| names(&p.name, prefix))
        .unwrap_or_else(|| panic!("no pod {prefix}"))
}

/// One TCP connection attempt over IPv4: `true` when it connected.
pub fn connect(pods: &[Pod], (from, to, port): (&str, &str, u16)) -> bool {
    let server = SocketAddr::new(pod(pods, to).ip(true), port);
    match tcp_attempt(pod(pods, from), server, Duration::from_millis(500)) {
        Attempt::Answered(a) if a == "connected" => true,
        Attempt::TimedOut => false,
        Attempt::Answered(other) => panic!("{from} -> {to}:{port}: {other}"),
    }
}

/// Flow records (`type: flow`) of the lab's flow logs (every node's).
pub fn flow_log(lab: &Lab) -> Vec<Value> {
    let state = lab.state();
    let nodes = state["nodes"].as_array().expect("nodes");
    nodes
        .iter()
        .filter_map(|n| n["agent"]["flow_log"].as_str())
        .flat_map(|log| json_lines(&std::fs::read_to_string(log).unwrap_or_default()))
        .filter(|r| r["type"] == "flow")
        .collect()
}

/// (client, server, port) of a record's connection: pods by
/// `namespace/name`, other ends by address. The server of a client's
/// connection to a Service is the backend it was translated to (as the
/// learner takes it), on the backend's port.
pub fn connection(r: &Value) -> (String, String, u64) {
    let name = |a: &Value| match (a["namespace"].as_str(), a["pod"].as_str()) {
        (Some(ns), Some(pod)) => format!("{ns}/{pod}"),
        _ => a["ip"].as_str().unwrap_or("?").to_owned(),
    };
    let backend = &r["service"]["backend"];
    let server = if r["direction"] == "egress" && backend.is_object() {
        backend
    } else {
        &r["dst"]
    };
    (
        name(&r["src"]),
        name(server),
        server["port"].as_u64().unwrap_or(0),
    )
}

/// Whether `name` is the pod (or address) `prefix` names: equal, or a
/// workload's pod (`shop/api` names `shop/api-...`).
pub fn names(name: &str, prefix: &str) -> bool {
    name == prefix || name.starts_with(&format!("{prefix}-"))
}

/// Whether a record is of the connection `c` (pod names by prefix).
pub fn is(r: &Value, (from, to, port): (&str, &str, u16)) -> bool {
    let (src, dst, p) = connection(r);
    names(&src, from) && names(&dst, to) && p == u64::from(port)
}

#[path = "logged.rs"]
mod logged;
pub use logged::{BOTH, Logged};

/// Waits until the flow log holds, for each connection, a record at both
/// ends (egress at the client, ingress at the server) that started at or
/// after `since_ms`; returns those records.
pub fn wait_for_records(lab: &Lab, conns: &[(&str, &str, u16)], since_ms: u64) -> Vec<Value> {
    let wanted: Vec<Logged> = conns
        .iter()
        .map(|&conn| Logged {
            conn,
            sides: BOTH,
            at_least: 1,
        })
        .collect();
    wait_for_logged(lab, &wanted, since_ms, Duration::from_secs(20))
}

/// Waits (at most `timeout`) until the flow log holds every [`Logged`]
/// count among records that started at or after `since_ms`; returns the
/// records of those connections.
pub fn wait_for_logged(
    lab: &Lab,
    wanted: &[Logged],
    since_ms: u64,
    timeout: Duration,
) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut counts: HashMap<(String, String, u64, String), usize> = HashMap::new();
        let records: Vec<Value> = flow_log(lab)
            .into_iter()
            .filter(|r| start_ms(r) >= since_ms)
            .filter(|r| {
                let (src, dst, port) = connection(r);
                let side = r["direction"].as_str().unwrap_or("?").to_owned();
                let of = |l: &Logged| {
                    names(&src, l.conn.0) && names(&dst, l.conn.1) && port == u64::from(l.conn.2)
                };
                let keep = wanted.iter().any(of);
                if keep {
                    *counts.entry((src, dst, port, side)).or_default() += 1;
                }
                keep
            })
            .collect();
        let missing: Vec<String> = wanted
            .iter()
            .flat_map(|l| l.sides.iter().map(move |side| (l, *side)))
            .filter_map(|(l, side)| {
                let (from, to, port) = l.conn;
                let have: usize = counts
                    .iter()
                    .filter(|((s, d, p, sd), _)| {
                        names(s, from) && names(d, to) && *p == u64::from(port) && sd == side
                    })
                    .map(|(_, n)| n)
                    .sum();
                (have < l.at_least).then(|| {
                    format!(
                        "{from} -> {to}:{port} {side}: {have} of {} records",
                        l.at_least
                    )
                })
            })
            .collect();
        if missing.is_empty() {
            return records;
        }
        assert!(
            Instant::now() < deadline,
            "flow records missing after {timeout:?}: {missing:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A record's start, ms since the epoch (records carry RFC 3339).
pub fn start_ms(r: &Value) -> u64 {
    serde_json::from_value::<Timestamp>(r["start"].clone())
        .expect("RFC 3339 start")
        .unix_ms()
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        // Records start at the coarse clock's tick: allow for it.
        - 50
}
