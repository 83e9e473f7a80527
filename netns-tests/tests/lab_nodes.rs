//! A lab of three nodes (`lab up --nodes 3`): pods placed by
//! `spec.nodeName`, one agent per node. Cross-node connections are judged
//! at the client's node on egress and at the server's on ingress, each
//! agent knowing the other nodes' pods as identities only, and both
//! nodes' agents record the connection, with the verdict and deciding
//! policies of their side (as a one-node lab records both sides). A
//! killed agent leaves its node's pinned enforcement in place and the
//! other nodes untouched, and `lab restart-agent --node` adopts it.

mod lab_support;

use std::time::{Duration, Instant};

use lab_support::{Lab, bulkhead, json_lines, privileged, serial, snapshot};
use serde_json::Value;

/// Pods x/a on node-0, y/a on node-1, y/b on node-2 (by `spec.nodeName`),
/// each serving TCP 80 and 81; `y/p` isolates namespace y both ways: in,
/// only from y/a on TCP 80; out, only to y/b on TCP 80 and 81.
fn manifests() -> String {
    let pod = |ns: &str, name: &str, node: &str| {
        format!(
            "---\napiVersion: v1\nkind: Pod\n\
             metadata: {{namespace: {ns}, name: {name}, labels: {{pod: {name}}}}}\n\
             spec:\n  nodeName: {node}\n  containers:\n  - name: c\n    ports:\n\
             \x20   - {{containerPort: 80}}\n    - {{containerPort: 81}}\n"
        )
    };
    pod("x", "a", "node-0")
        + &pod("y", "a", "node-1")
        + &pod("y", "b", "node-2")
        + "\
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: y, name: p}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
  ingress:
  - from: [{podSelector: {matchLabels: {pod: a}}}]
    ports: [{protocol: TCP, port: 80}]
  egress:
  - to: [{podSelector: {matchLabels: {pod: b}}}]
    ports: [{protocol: TCP, port: 80}, {protocol: TCP, port: 81}]
"
}

/// How long records may take (idle timeout 1 s, drained every 250 ms).
const WAIT: Duration = Duration::from_secs(30);

/// One TCP probe from `from` to `to`:`port` (IPv4); its outcome.
fn probe(lab: &Lab, from: &str, to: &str, port: u16) -> String {
    let port = port.to_string();
    let out = lab.ok(
        "probe",
        &[
            "--from",
            from,
            "--to",
            to,
            "--protocols",
            "TCP",
            "--ports",
            &port,
            "--output",
            "json",
            "--timeout-ms",
            "1500",
        ],
    );
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1, "one probe: {out}");
    lines[0]["outcome"].as_str().unwrap().to_owned()
}

/// `bulkhead flows --lab LAB --node NODE --output json`.
fn flows(lab: &Lab, node: &str) -> Vec<Value> {
    let out = bulkhead(&[
        "flows", "--lab", &lab.name, "--node", node, "--last", "1000", "--output", "json",
    ]);
    assert!(out.status.success(), "flows --node {node}");
    json_lines(&String::from_utf8(out.stdout).unwrap())
}

fn pod_of(v: &Value) -> String {
    format!(
        "{}/{}",
        v["namespace"].as_str().unwrap_or("?"),
        v["pod"].as_str().unwrap_or("?")
    )
}

/// Waits for the flow record of `src` → `dst`:`port` (TCP) at `endpoint`
/// in `direction`, from `node`'s agent.
fn record(
    lab: &Lab,
    node: &str,
    endpoint: &str,
    direction: &str,
    src: &str,
    dst: &str,
    port: u16,
) -> Value {
    let start = Instant::now();
    loop {
        let records = flows(lab, node);
        if let Some(r) = records.iter().find(|r| {
            r["type"] == "flow"
                && pod_of(&r["endpoint"]) == endpoint
                && r["direction"] == direction
                && r["protocol"] == "TCP"
                && pod_of(&r["src"]) == src
                && pod_of(&r["dst"]) == dst
                && r["dst"]["port"] == port
        }) {
            return r.clone();
        }
        assert!(
            start.elapsed() < WAIT,
            "no {direction} record of {src} -> {dst}:{port} at {endpoint} on {node} within \
             {WAIT:?}: {records:#?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn policies(r: &Value) -> Vec<(String, Option<u64>)> {
    r["policies"]
        .as_array()
        .expect("policies")
        .iter()
        .map(|p| (p["name"].as_str().unwrap().to_owned(), p["rule"].as_u64()))
        .collect()
}

/// The agents' PIDs by node name, from `lab status --output json`.
fn agent_pids(lab: &Lab) -> Vec<(String, Option<u64>)> {
    let status: Value = serde_json::from_str(&lab.ok("status", &["--output", "json"])).unwrap();
    status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["name"].as_str().unwrap().to_owned(),
                n["agent_pid"].as_u64(),
            )
        })
        .collect()
}

#[test]
fn cross_node_flows_are_judged_and_recorded_at_both_ends_and_a_killed_agent_keeps_its_node_enforced()
 {
    if !privileged() {
        return;
    }
    let _serial = serial();
    let before = snapshot();
    {
        let lab = Lab::new("nod", &manifests());
        let up = lab.up(&["--nodes", "3", "--flow-idle-timeout", "1"]);
        assert!(up.status.success(), "lab up --nodes 3");
        let state = lab.state();
        assert_eq!(state["version"], 2);
        let placed: Vec<(String, u64)> = state["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h["name"].as_str().unwrap().to_owned(),
                    h["node"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            placed,
            [("x/a".into(), 0), ("y/a".into(), 1), ("y/b".into(), 2)],
            "placed by spec.nodeName"
        );
        // Each agent enforces its own node's pod, and only that one.
        let status: Value = serde_json::from_str(&lab.ok("status", &["--output", "json"])).unwrap();
        for h in status["hosts"].as_array().unwrap() {
            assert_eq!(h["endpoint"], true, "{h}");
        }
        for n in status["nodes"].as_array().unwrap() {
            assert_eq!(n["endpoints"], 1, "{n}");
            assert!(n["agent_running"].as_bool().unwrap(), "{n}");
        }

        // Allowed across nodes: y/a (node-1) -> y/b (node-2) TCP 80.
        assert_eq!(probe(&lab, "y/a", "y/b", 80), "connected");
        // Denied on the server's node (ingress): y/a -> y/b TCP 81.
        assert_eq!(probe(&lab, "y/a", "y/b", 81), "timeout");
        // Denied on the client's node (egress): y/a -> x/a TCP 80.
        assert_eq!(probe(&lab, "y/a", "x/a", 80), "timeout");
        // Denied on the server's node from a pod without policy.
        assert_eq!(probe(&lab, "x/a", "y/b", 80), "timeout");

        let p = |rule: Option<u64>| vec![("y/p".to_owned(), rule)];
        // The allowed connection: both nodes' agents record it, allowed by
        // y/p (its egress rule at the client, its ingress rule at the server).
        let c = record(&lab, "node-1", "y/a", "egress", "y/a", "y/b", 80);
        let s = record(&lab, "node-2", "y/b", "ingress", "y/a", "y/b", 80);
        for (r, node) in [(&c, "node-1"), (&s, "node-2")] {
            assert_eq!(r["verdict"], "allowed", "{r}");
            assert_eq!(policies(r), p(Some(0)), "{r}");
            assert_eq!(r["node"], node, "{r}");
        }
        assert_eq!(
            c["src"]["port"], s["src"]["port"],
            "one connection:\n{c}\n{s}"
        );
        assert_eq!(
            c["packets"], s["packets"],
            "the same packets at both ends:\n{c}\n{s}"
        );

        // Denied at the server's node: the client's node let it out (y/p's
        // egress rule allows 81), the server's node dropped it (y/p isolates
        // y/b for ingress and no rule allows 81); both records name y/p.
        let c = record(&lab, "node-1", "y/a", "egress", "y/a", "y/b", 81);
        let s = record(&lab, "node-2", "y/b", "ingress", "y/a", "y/b", 81);
        assert_eq!(c["verdict"], "allowed", "{c}");
        assert_eq!(policies(&c), p(Some(0)), "{c}");
        assert_eq!(c["packets"]["reply"], 0, "{c}");
        assert_eq!(s["verdict"], "denied", "{s}");
        assert_eq!(s["drop_reason"], "policy_denied", "{s}");
        assert_eq!(policies(&s), p(None), "{s}");
        assert_eq!(
            c["src"]["port"], s["src"]["port"],
            "one connection:\n{c}\n{s}"
        );

        // Denied at the client's node: dropped there by y/p, and never seen
        // by the server's node.
        let c = record(&lab, "node-1", "y/a", "egress", "y/a", "x/a", 80);
        assert_eq!(c["verdict"], "denied", "{c}");
        assert_eq!(policies(&c), p(None), "{c}");
        assert!(
            !flows(&lab, "node-0")
                .iter()
                .any(|r| pod_of(&r["src"]) == "y/a" && r["dst"]["port"] == 80),
            "a packet denied at the client's node reached the server's"
        );

        // From a pod without policy: allowed out of node-0 (no policy),
        // dropped into node-2 by y/p.
        let c = record(&lab, "node-0", "x/a", "egress", "x/a", "y/b", 80);
        let s = record(&lab, "node-2", "y/b", "ingress", "x/a", "y/b", 80);
        assert_eq!(
            (&c["verdict"], policies(&c)),
            (&"allowed".into(), vec![]),
            "{c}"
        );
        assert_eq!(
            (&s["verdict"], policies(&s)),
            (&"denied".into(), p(None)),
            "{s}"
        );

        // Across every node, every protocol and family: no disagreement.
        lab.ok("verify", &[]);

        // Kill node-1's agent: its pins keep enforcing, the others run on.
        let pids = agent_pids(&lab);
        let pid = pids[1].1.expect("node-1's agent runs");
        assert!(
            std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status()
                .unwrap()
                .success()
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while agent_pids(&lab)[1].1.is_some() {
            assert!(
                Instant::now() < deadline,
                "node-1's agent still reported running"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let after = agent_pids(&lab);
        assert_eq!(after[0], pids[0], "node-0's agent untouched");
        assert_eq!(after[2], pids[2], "node-2's agent untouched");
        // node-1's egress (y/a -> x/a) and ingress (x/a -> y/a) stay denied,
        // what it allows stays allowed.
        assert_eq!(probe(&lab, "y/a", "x/a", 80), "timeout");
        assert_eq!(probe(&lab, "x/a", "y/a", 80), "timeout");
        assert_eq!(probe(&lab, "y/a", "y/b", 80), "connected");
        // verify compares with the policy last enforced.
        lab.ok("verify", &[]);
        let text = lab.ok("status", &[]);
        assert!(text.contains("agent NOT running"), "{text}");

        // Restarting node-1's agent adopts its pins; the others stay.
        let running = bulkhead(&[
            "lab",
            "restart-agent",
            "--name",
            &lab.name,
            "--node",
            "node-0",
        ]);
        assert_eq!(
            running.status.code(),
            Some(2),
            "node-0's agent runs: refused"
        );
        lab.ok("restart-agent", &["--node", "node-1"]);
        let restarted = agent_pids(&lab);
        assert!(restarted[1].1.is_some_and(|p| p != pid), "{restarted:?}");
        assert_eq!((&restarted[0], &restarted[2]), (&pids[0], &pids[2]));
        let log = std::fs::read_to_string(lab.dir().join("n1/agent.log")).unwrap();
        assert!(
            log.contains("adopt"),
            "node-1's agent adopted its pins:\n{log}"
        );
        lab.ok("verify", &[]);
    }
    assert_eq!(snapshot(), before, "lab down left something behind");
}
