//! Learn → propose → audit → enforce (issue 5) on real packets, in one lab
//! of the demo app (`policies/demo/`: shop/frontend → shop/api → shop/db,
//! DNS in kube-system, sandbox/stray) with its agent:
//!
//! 1. **learn**: the agent runs with `--mode learn`, so the demo's own
//!    policies are not enforced; TCP connections between the tiers
//!    (frontend → api:8080, api → db:5432, frontend and api → DNS) are
//!    recorded in the lab's flow log, unaudited.
//! 2. **propose**: `bulkhead propose --lab --mode audit` writes one policy
//!    per workload that allows exactly what was observed (coverage 100%),
//!    each annotated `bulkhead.io/mode: audit`; they go into the watched
//!    directory.
//! 3. **audit**: the learned connections again, plus an unlearned one
//!    (frontend → db:5432). Every connection succeeds (audit never drops);
//!    `bulkhead audit report` shows no would-deny for the learned ones and
//!    would-deny for the unlearned one, at both of its ends, naming the
//!    proposed policy of frontend (egress) and of db (ingress).
//! 4. **enforce**: `bulkhead promote --all` turns the proposals to
//!    enforce: the learned connections still succeed, the unlearned one is
//!    dropped (counted `policy_denied`), and `lab verify` finds the kernel
//!    and the evaluator agreeing on every pod pair under the mixed modes
//!    (demo policies learnt, proposals enforced).

mod lab_support;
#[path = "lab_support/traffic.rs"]
mod traffic;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bulkhead::flows::record::Timestamp;
use serde_json::Value;

use lab_support::{Lab, bulkhead, bulkhead_ok, json_lines, privileged, serial, snapshot};
use traffic::{Attempt, Pod, tcp_attempt};

/// The demo app, with its own policies.
fn manifests() -> String {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/demo");
    ["workloads.yaml", "netpol.yaml"]
        .iter()
        .map(|f| std::fs::read_to_string(demo.join(f)).expect("demo manifests"))
        .collect::<Vec<_>>()
        .join("\n---\n")
}

/// The connections the app makes: (client, server, port).
const LEARNED: [(&str, &str, u16); 4] = [
    ("shop/frontend", "shop/api", 8080),
    ("shop/api", "shop/db", 5432),
    ("shop/frontend", "kube-system/coredns", 53),
    ("shop/api", "kube-system/coredns", 53),
];
/// A connection the app never made while learning.
const UNLEARNED: (&str, &str, u16) = ("shop/frontend", "shop/db", 5432);

/// The lab's pod whose name starts with `prefix` (`shop/api` finds the
/// Deployment's pod `shop/api-...`).
fn pod<'a>(pods: &'a [Pod], prefix: &str) -> &'a Pod {
    pods.iter()
        .find(|p| p.name == prefix || p.name.starts_with(&format!("{prefix}-")))
        .unwrap_or_else(|| panic!("no pod {prefix}"))
}

/// One TCP connection attempt over IPv4: `true` when it connected.
fn connect(pods: &[Pod], (from, to, port): (&str, &str, u16)) -> bool {
    let server = SocketAddr::new(pod(pods, to).ip(true), port);
    match tcp_attempt(pod(pods, from), server, Duration::from_millis(500)) {
        Attempt::Answered(a) if a == "connected" => true,
        Attempt::TimedOut => false,
        Attempt::Answered(other) => panic!("{from} -> {to}:{port}: {other}"),
    }
}

/// Flow records (`type: flow`) of the lab's flow log.
fn flow_log(lab: &Lab) -> Vec<Value> {
    let text = std::fs::read_to_string(lab.dir().join("flows.jsonl")).unwrap_or_default();
    json_lines(&text)
        .into_iter()
        .filter(|r| r["type"] == "flow")
        .collect()
}

/// (client workload prefix, server prefix, port) of a record's
/// connection, by pod names.
fn connection(r: &Value) -> (String, String, u64) {
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
fn is(r: &Value, (from, to, port): (&str, &str, u16)) -> bool {
    let (src, dst, p) = connection(r);
    let matches =
        |name: &str, prefix: &str| name == prefix || name.starts_with(&format!("{prefix}-"));
    matches(&src, from) && matches(&dst, to) && p == u64::from(port)
}

/// Waits until the flow log holds, for each connection, a record at both
/// ends (egress at the client, ingress at the server) that started at or
/// after `since_ms`; returns those records.
fn wait_for_records(lab: &Lab, conns: &[(&str, &str, u16)], since_ms: u64) -> Vec<Value> {
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
fn start_ms(r: &Value) -> u64 {
    serde_json::from_value::<Timestamp>(r["start"].clone())
        .expect("RFC 3339 start")
        .unix_ms()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        // Records start at the coarse clock's tick: allow for it.
        - 50
}

#[test]
fn learn_propose_audit_enforce() {
    if !privileged() {
        return;
    }
    let _serial = serial();
    let before = snapshot();
    {
        let name = format!("au{}", std::process::id() % 10_000);
        let lab = Lab::new(&name, &manifests());
        let up = lab.up(&["--mode", "learn", "--flow-idle-timeout", "1"]);
        assert!(up.status.success(), "lab up failed");
        let pods = Pod::all(&lab.state());

        // 1. Learn: the demo's policies are not enforced.
        let t0 = now_ms();
        for c in LEARNED {
            assert!(connect(&pods, c), "learn mode: {c:?} must connect");
        }
        let learned = wait_for_records(&lab, &LEARNED, t0);
        for r in &learned {
            assert_eq!(r["verdict"], "allowed", "{r}");
            assert!(r.get("audit").is_none(), "nothing is audited yet: {r}");
        }

        // 2. Propose from the flow log, in audit mode, into the watched
        // directory.
        let proposed = lab_support::tempdir::Dir::new(&format!("{name}-proposed"));
        let manifests = lab.manifests.path().display().to_string();
        let out_dir = proposed.path().display().to_string();
        let out = bulkhead(&[
            "propose",
            "--lab",
            &name,
            "--manifests",
            &manifests,
            "--mode",
            "audit",
            "--output-dir",
            &out_dir,
        ]);
        assert!(out.status.success(), "propose: coverage must be 100%");
        let mut files: Vec<_> = std::fs::read_dir(proposed.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(files.len() >= 3, "a policy per workload: {files:?}");
        for f in &files {
            let text = std::fs::read_to_string(f).unwrap();
            assert!(
                text.contains("bulkhead.io/mode: audit"),
                "{}:\n{text}",
                f.display()
            );
            lab.write_policy(f.file_name().unwrap().to_str().unwrap(), &text);
        }
        lab.ok("sync", &[]);

        // 3. Audit: everything passes, the unlearned connection is marked.
        let t1 = now_ms();
        for c in LEARNED {
            assert!(connect(&pods, c), "audit mode: {c:?} must connect");
        }
        assert!(connect(&pods, UNLEARNED), "audit never drops");
        let mut all = LEARNED.to_vec();
        all.push(UNLEARNED);
        let audited = wait_for_records(&lab, &all, t1);
        for r in &audited {
            let want = if is(r, UNLEARNED) {
                "would_deny"
            } else {
                "allowed"
            };
            assert_eq!(r["audit"]["verdict"], want, "{r}");
        }
        let report = bulkhead_ok(&["audit", "report", "--lab", &name, "--output", "json"]);
        let lines = json_lines(&report);
        let groups: Vec<&Value> = lines.iter().filter(|l| l["type"] == "group").collect();
        let would_deny: Vec<&Value> = groups
            .iter()
            .copied()
            .filter(|g| g["verdict"] == "would_deny")
            .collect();
        let policies: BTreeSet<&str> = would_deny
            .iter()
            .map(|g| g["policy"].as_str().unwrap())
            .collect();
        assert_eq!(
            would_deny.len(),
            2,
            "the unlearned connection at both ends, nothing else:\n{report}"
        );
        for g in &would_deny {
            assert_eq!(g["port"], 5432, "{g}");
            assert_eq!(g["protocol"], "TCP", "{g}");
        }
        // The proposals are named after their workloads.
        assert!(
            policies
                .iter()
                .any(|p| p.starts_with("shop/") && p.contains("frontend"))
                && policies
                    .iter()
                    .any(|p| p.starts_with("shop/") && p.contains("db")),
            "the frontend's (egress) and db's (ingress) proposals: {policies:?}"
        );
        assert!(
            groups.iter().any(|g| g["verdict"] == "allowed"),
            "learned connections are audited and allowed:\n{report}"
        );
        let fail = bulkhead(&["audit", "report", "--lab", &name, "--fail-on-would-deny"]);
        assert_eq!(fail.status.code(), Some(1), "--fail-on-would-deny");

        // 4. Enforce: promote the proposals in the watched directory.
        let watched = lab.watched().display().to_string();
        bulkhead_ok(&["promote", "--manifests", &watched, "--all"]);
        lab.ok("sync", &[]);
        let denied_before = policy_denied(&lab);
        for c in LEARNED {
            assert!(connect(&pods, c), "enforced: learned {c:?} must connect");
        }
        assert!(
            !connect(&pods, UNLEARNED),
            "enforced: the unlearned connection is dropped"
        );
        assert!(
            policy_denied(&lab) > denied_before,
            "counted as policy_denied"
        );
        lab.ok("verify", &[]);
    }
    assert_eq!(snapshot(), before, "the lab left something behind");
}

/// The agent's `policy_denied` drop counter (`bulkhead status --output json`).
fn policy_denied(lab: &Lab) -> u64 {
    let status = bulkhead_ok(&["status", "--lab", &lab.name, "--output", "json"]);
    let v: Value = serde_json::from_str(&status).expect("status JSON");
    v["drops"]
        .as_array()
        .expect("drops")
        .iter()
        .find(|d| d[0] == "policy_denied")
        .and_then(|d| d[1].as_u64())
        .unwrap_or_else(|| panic!("no policy_denied in {v}"))
}
