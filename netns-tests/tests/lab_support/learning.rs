//! The demo app's traffic for the learning tests (`lab_audit`,
//! `lab_nodes_learn`): its manifests, the connections it makes, and its
//! flow records, read from every node's flow log.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bulkhead_flows::record::Timestamp;
use serde_json::Value;

use crate::lab_support::{Lab, json_lines};
use crate::traffic::{Attempt, Pod, tcp_attempt};

/// The demo app, with its own policies.
pub fn manifests() -> String {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/demo");
    ["workloads.yaml", "netpol.yaml"]
        .iter()
        .map(|f| std::fs::read_to_string(demo.join(f)).expect("demo manifests"))
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
        .find(|p| p.name == prefix || p.name.starts_with(&format!("{prefix}-")))
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

/// (client workload prefix, server prefix, port) of a record's
/// connection, by pod names.
pub fn connection(r: &Value) -> (String, String, u64) {
    let name = |a: &Value| {
        format!(
            "{}/{}",
            a["namespace"].as_str().unwrap_or("?"),
            a["pod"].as_str().unwrap_or("?")
        )
    };
    (
        name(&r["src"]),
        name(&r["dst"]),
        r["dst"]["port"].as_u64().unwrap_or(0),
    )
}

/// Whether a record is of the connection `c` (pod names by prefix).
pub fn is(r: &Value, (from, to, port): (&str, &str, u16)) -> bool {
    let (src, dst, p) = connection(r);
    let matches =
        |name: &str, prefix: &str| name == prefix || name.starts_with(&format!("{prefix}-"));
    matches(&src, from) && matches(&dst, to) && p == u64::from(port)
}

/// Waits until the flow log holds, for each connection, a record at both
/// ends (egress at the client, ingress at the server) that started at or
/// after `since_ms`; returns those records.
pub fn wait_for_records(lab: &Lab, conns: &[(&str, &str, u16)], since_ms: u64) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let records: Vec<Value> = flow_log(lab)
            .into_iter()
            .filter(|r| start_ms(r) >= since_ms)
            .filter(|r| conns.iter().any(|&c| is(r, c)))
            .collect();
        let complete = conns.iter().all(|&c| {
            ["egress", "ingress"]
                .iter()
                .all(|d| records.iter().any(|r| is(r, c) && r["direction"] == *d))
        });
        if complete {
            return records;
        }
        assert!(
            Instant::now() < deadline,
            "flow records of {conns:?} missing; have {:?}",
            records
                .iter()
                .map(|r| (connection(r), r["direction"].clone()))
                .collect::<Vec<_>>()
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
