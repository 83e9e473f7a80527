//! A cluster-admin guardrail on real packets (issue 16), in one lab of the
//! demo app with its agent: `policies/guardrail/db-guardrail.yaml`
//! (ClusterNetworkPolicy, Admin tier: Pass from shop/api, Deny from every
//! other pod to shop/db) against a namespace owner's allow-all
//! NetworkPolicy (`oops-allow-all.yaml`).
//!
//! 1. **staged**: the guardrail annotated `bulkhead.io/mode: audit`: every
//!    connection to the db still succeeds (the allow-all), and the
//!    frontend's record at the db says the audit view would deny it,
//!    naming the guardrail;
//! 2. **enforced**: the annotation goes (a live change): the frontend,
//!    coredns and stray are dropped at the db's ingress although
//!    NetworkPolicy allows them, the api still connects (Pass, then
//!    NetworkPolicy allows), and the drop's flow record names the
//!    guardrail's rule, tier and action; `explain` says the same;
//! 3. `lab verify` finds the kernel and the evaluator agreeing on every pod
//!    pair.

mod lab_support;
#[path = "lab_support/learning.rs"]
mod learning;
#[path = "lab_support/traffic.rs"]
mod traffic;

use std::path::Path;

use lab_support::{Lab, bulkhead_ok, privileged, serial, snapshot};
use learning::{connect, flow_log, is, manifests, now_ms, start_ms};
use serde_json::Value;
use traffic::Pod;

fn guardrail_file(name: &str) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/guardrail");
    std::fs::read_to_string(dir.join(name)).expect("guardrail manifests")
}

/// The guardrail, staged (audit mode) or enforced.
fn guardrail(staged: bool) -> String {
    let text = guardrail_file("db-guardrail.yaml");
    if !staged {
        return text;
    }
    text.replace(
        "  name: db-guardrail\n",
        "  name: db-guardrail\n  annotations:\n    bulkhead.io/mode: audit\n",
    )
}

/// The newest record of `conn` at the db's ingress started since `t0`,
/// waited for (flow records end by idle timeout).
fn ingress_record(lab: &Lab, conn: (&str, &str, u16), t0: u64) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if let Some(r) = flow_log(lab)
            .into_iter()
            .rev()
            .find(|r| start_ms(r) >= t0 && is(r, conn) && r["direction"] == "ingress")
        {
            return r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no ingress record of {conn:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// An allowed connection, tried up to three times (one attempt waits
/// 500 ms: a busy machine may miss it); a denied one is never retried.
fn connects(pods: &[Pod], c: (&str, &str, u16)) -> bool {
    (0..3).any(|_| connect(pods, c))
}

const FRONTEND_DB: (&str, &str, u16) = ("shop/frontend", "shop/db", 5432);
const API_DB: (&str, &str, u16) = ("shop/api", "shop/db", 5432);

#[test]
fn a_guardrail_holds_against_an_allow_all_networkpolicy() {
    if !privileged() {
        return;
    }
    let _serial = serial();
    let before = snapshot();
    {
        let name = format!("gr{}", std::process::id() % 10_000);
        let lab = Lab::new(&name, &manifests());
        let up = lab.up(&["--flow-idle-timeout", "1"]);
        assert!(up.status.success(), "lab up failed");
        let pods = Pod::all(&lab.state());
        lab.write_policy("oops.yaml", &guardrail_file("oops-allow-all.yaml"));
        lab.write_policy("guardrail.yaml", &guardrail(true));
        lab.ok("sync", &[]);

        // 1. Staged: nothing dropped, the would-deny names the guardrail.
        let t0 = now_ms();
        assert!(
            connects(&pods, FRONTEND_DB),
            "staged: the allow-all decides"
        );
        assert!(connects(&pods, API_DB));
        let r = ingress_record(&lab, FRONTEND_DB, t0);
        assert_eq!(r["verdict"], "allowed", "{r}");
        assert_eq!(r["audit"]["verdict"], "would_deny", "{r}");
        let staged = r["audit"]["policies"].to_string();
        assert!(staged.contains("ClusterNetworkPolicy/db-guardrail"), "{r}");

        // 2. Enforced: the Admin Deny holds whatever NetworkPolicy says.
        lab.write_policy("guardrail.yaml", &guardrail(false));
        lab.ok("sync", &[]);
        let t1 = now_ms();
        assert!(
            !connect(&pods, FRONTEND_DB),
            "the guardrail denies the frontend"
        );
        assert!(!connect(&pods, ("kube-system/coredns", "shop/db", 5432)));
        assert!(!connect(&pods, ("sandbox/stray", "shop/db", 5432)));
        assert!(
            connects(&pods, API_DB),
            "Pass, then NetworkPolicy allows the api"
        );
        let r = ingress_record(&lab, FRONTEND_DB, t1);
        assert_eq!(r["verdict"], "denied", "{r}");
        let by = &r["policies"][0];
        assert_eq!(by["name"], "ClusterNetworkPolicy/db-guardrail", "{r}");
        assert_eq!(
            (&by["tier"], &by["action"], &by["rule_name"]),
            (
                &Value::from("Admin"),
                &Value::from("Deny"),
                &Value::from("nobody-else-reaches-the-db")
            ),
            "{r}"
        );
        let watched = lab.watched().display().to_string();
        let why = bulkhead_ok(&[
            "explain",
            "--manifests",
            &watched,
            "--from",
            "shop/frontend",
            "--to",
            "shop/db",
            "--port",
            "5432",
        ]);
        assert!(
            why.contains("denied by ClusterNetworkPolicy/db-guardrail (Admin tier, priority 10)"),
            "{why}"
        );

        // 3. The kernel and the evaluator agree on every pair.
        lab.ok("verify", &[]);
    }
    assert_eq!(snapshot(), before, "the lab left something behind");
}
