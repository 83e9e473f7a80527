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
//! 5. **denied attempts**: `bulkhead propose --lab --since T` over the
//!    enforce phase alone (a time window of the flow log) lists the dropped
//!    connection under `denied_attempts` with the policy that decided it
//!    (as its flow record names it) and proposes no rule for it.

mod lab_support;
#[path = "lab_support/learning.rs"]
mod learning;
#[path = "lab_support/traffic.rs"]
mod traffic;

use std::collections::BTreeSet;

use serde_json::Value;

use lab_support::{Lab, bulkhead, bulkhead_ok, json_lines, privileged, serial, snapshot};
use learning::{LEARNED, UNLEARNED, connect, is, manifests, now_ms, wait_for_records};
use traffic::Pod;

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
        let t2 = now_ms();
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

        // 5. Denied attempts, from the enforce phase alone.
        let dropped = wait_for_denied(&lab, t2);
        let deciding: BTreeSet<String> = dropped["policies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect();
        assert!(
            deciding.iter().any(|p| p.starts_with("shop/bulkhead-")),
            "the enforced proposal decided: {dropped}"
        );
        wait_for_records(&lab, &LEARNED, t2);
        let since = bulkhead_flows::record::Timestamp(t2).to_string();
        let out = bulkhead(&[
            "propose",
            "--lab",
            &name,
            "--manifests",
            &watched,
            "--output",
            "json",
            "--since",
            &since,
        ]);
        assert!(out.status.success(), "propose: {out:?}");
        let v: Value = serde_json::from_slice(&out.stdout).expect("propose JSON");
        let proof = &v["proof"];
        assert_eq!(proof["window"]["since"], since.as_str(), "{proof}");
        let attempts = proof["denied_attempts"].as_array().unwrap();
        let attempt = attempts
            .iter()
            .find(|a| a["edge"] == "shop/Deployment/frontend → shop/StatefulSet/db TCP/5432")
            .unwrap_or_else(|| panic!("the dropped connection is listed: {proof}"));
        assert_eq!(attempt["allowed_flows"], 0, "{attempt}");
        assert!(attempt["flows"].as_u64().unwrap() >= 1, "{attempt}");
        let listed: BTreeSet<String> = attempt["policies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_owned())
            .collect();
        assert!(
            deciding.is_subset(&listed),
            "{listed:?} names the record's {deciding:?}"
        );
        let frontend = v["policies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "bulkhead-frontend")
            .unwrap_or_else(|| panic!("frontend's policy: {v}"));
        let yaml = frontend["yaml"].as_str().unwrap();
        assert!(
            !yaml.contains("5432"),
            "no rule for the denied attempt:\n{yaml}"
        );
        assert_eq!(proof["include_denied"], false);
        assert_eq!(proof["coverage_percent"], 100.0, "{proof}");
    }
    assert_eq!(snapshot(), before, "the lab left something behind");
}

/// The dropped frontend → db record of the enforce phase (the egress
/// record at the frontend, verdict `denied`).
fn wait_for_denied(lab: &Lab, since_ms: u64) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let found = learning::flow_log(lab).into_iter().find(|r| {
            is(r, UNLEARNED) && r["verdict"] == "denied" && learning::start_ms(r) >= since_ms
        });
        if let Some(r) = found {
            return r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no denied record of {UNLEARNED:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
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
