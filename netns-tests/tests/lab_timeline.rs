//! The forensic timeline (issue 17) through a real lab agent and the real
//! CLI, on the demo app in enforce mode. For `shop/frontend`:
//!
//! 1. an allowed connection (→ api:8080) and a denied one (→ db:5432);
//! 2. a policy added (`shop/frontend-db`, `lab sync`): a policy change
//!    naming it, with the revision the agent enforces;
//! 3. that policy switched to audit mode (`lab sync`): a mode change;
//! 4. `bulkhead quarantine`, attempts after it (→ api:8080), dropped;
//! 5. `bulkhead unquarantine`.
//!
//! `bulkhead timeline --pod ... --output json --lab` lists them in this
//! order while the agent runs; after a SIGKILL of the agent and `lab
//! restart-agent`, they are all still there.

mod lab_support;
#[path = "lab_support/learning.rs"]
mod learning;
#[path = "lab_support/traffic.rs"]
mod traffic;

use std::time::{Duration, Instant};

use serde_json::Value;

use lab_support::{Lab, bulkhead_ok, lab_metrics, privileged, serial, snapshot};
use learning::{connect, manifests, pod};
use traffic::Pod;

/// A policy letting frontend reach db:5432, in `mode` (none: the lab's).
fn frontend_db(mode: Option<&str>) -> String {
    let annotations = mode.map_or(String::new(), |m| {
        format!("\n  annotations: {{bulkhead.io/mode: {m}}}")
    });
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
         metadata:\n  name: frontend-db\n  namespace: shop{annotations}\n\
         spec:\n  podSelector: {{matchLabels: {{app: frontend}}}}\n  policyTypes: [Egress]\n  \
         egress:\n  - to: [{{podSelector: {{matchLabels: {{app: db}}}}}}]\n    \
         ports: [{{protocol: TCP, port: 5432}}]\n"
    )
}

/// `bulkhead timeline --pod POD --output json --lab LAB`.
fn timeline(lab: &Lab, pod: &str) -> Value {
    let text = bulkhead_ok(&[
        "timeline", "--pod", pod, "--output", "json", "--lab", &lab.name,
    ]);
    let page: Value = serde_json::from_str(&text).expect("one JSON page");
    assert_eq!(page["schema"], "bulkhead.timeline/v1");
    assert_eq!(page["pod"], pod);
    page
}

/// The revision the lab's agent enforces.
fn revision(lab: &Lab) -> u64 {
    let state = lab.state();
    let pins = state["nodes"][0]["agent"]["pin_dir"]
        .as_str()
        .expect("pin dir");
    bulkhead_agent::AgentState::read(std::path::Path::new(pins))
        .expect("agent state")
        .revision
}

/// What the test looks for, in the order it must be found.
#[derive(Debug)]
enum Want {
    Flow {
        to: &'static str,
        port: u64,
        verdict: &'static str,
    },
    PolicyAdded(u64),
    ModeChanged(u64),
    Quarantined,
    Unquarantined,
}

impl Want {
    fn matches(&self, e: &Value, pod: &str) -> bool {
        match self {
            Want::Flow { to, port, verdict } => {
                let r = &e["record"];
                e["type"] == "flow"
                    && format!(
                        "{}/{}",
                        r["src"]["namespace"].as_str().unwrap_or(""),
                        r["src"]["pod"].as_str().unwrap_or("")
                    ) == pod
                    && r["dst"]["pod"].as_str().is_some_and(|p| p.starts_with(to))
                    && r["dst"]["port"] == *port
                    && r["verdict"] == *verdict
            }
            Want::PolicyAdded(rev) => {
                e["type"] == "policy_change"
                    && e["revision"] == *rev
                    && e["added"] == serde_json::json!(["shop/frontend-db"])
            }
            Want::ModeChanged(rev) => {
                e["type"] == "mode_change"
                    && e["revision"] == *rev
                    && e["policy"] == "shop/frontend-db"
                    && (e["from"].as_str(), e["to"].as_str()) == (Some("enforce"), Some("audit"))
            }
            Want::Quarantined => e["type"] == "quarantined" && e["reason"] == "timeline test",
            Want::Unquarantined => e["type"] == "unquarantined",
        }
    }
}

/// The index of each wanted event in `events` (each after the previous
/// one), or the first missing.
fn find_in_order(events: &[Value], wants: &[Want], pod: &str) -> Result<Vec<usize>, String> {
    let mut at = 0;
    let mut found = Vec::new();
    for w in wants {
        match events[at..].iter().position(|e| w.matches(e, pod)) {
            Some(i) => {
                found.push(at + i);
                at += i + 1;
            }
            None => return Err(format!("{w:?} missing after index {at}")),
        }
    }
    Ok(found)
}

#[test]
fn a_pods_timeline_holds_its_flows_policy_mode_and_quarantine_in_order_across_a_kill() {
    if !privileged() {
        return;
    }
    let _serial = serial();
    let before = snapshot();
    {
        let name = format!("tl{}", std::process::id() % 10_000);
        let lab = Lab::new(&name, &manifests());
        let up = lab.up(&["--flow-idle-timeout", "1"]);
        assert!(up.status.success(), "lab up failed");
        let pods = Pod::all(&lab.state());
        let frontend = pod(&pods, "shop/frontend").name.clone();

        // 1. Allowed and denied.
        assert!(connect(&pods, ("shop/frontend", "shop/api", 8080)));
        assert!(!connect(&pods, ("shop/frontend", "shop/db", 5432)));

        // 2. A policy added.
        let first = revision(&lab);
        lab.write_policy("frontend-db.yaml", &frontend_db(None));
        lab.ok("sync", &[]);
        let added = revision(&lab);
        assert!(added > first, "a new revision: {first} -> {added}");

        // 3. Its mode changed.
        lab.write_policy("frontend-db.yaml", &frontend_db(Some("audit")));
        lab.ok("sync", &[]);
        let audited = revision(&lab);
        assert!(audited > added, "a new revision: {added} -> {audited}");

        // 4. Quarantined; attempts after it dropped.
        bulkhead_ok(&[
            "quarantine",
            &frontend,
            "--reason",
            "timeline test",
            "--lab",
            &name,
        ]);
        for _ in 0..3 {
            assert!(!connect(&pods, ("shop/frontend", "shop/api", 8080)));
        }
        // The drops' flow record ends (idle timeout) before the lift.
        std::thread::sleep(Duration::from_secs(3));

        // 5. Lifted.
        bulkhead_ok(&["unquarantine", &frontend, "--lab", &name]);

        // The two first flows may end in the same millisecond (in
        // either order); everything else in this order.
        let first_flows = [
            Want::Flow {
                to: "api",
                port: 8080,
                verdict: "allowed",
            },
            Want::Flow {
                to: "db",
                port: 5432,
                verdict: "denied",
            },
        ];
        let wants = [
            Want::PolicyAdded(added),
            Want::ModeChanged(audited),
            Want::Quarantined,
            Want::Flow {
                to: "api",
                port: 8080,
                verdict: "quarantined",
            },
            Want::Unquarantined,
        ];
        // Flow records reach the timeline in batches: wait for them.
        let deadline = Instant::now() + Duration::from_secs(30);
        let events = loop {
            let page = timeline(&lab, &frontend);
            let events = page["events"].as_array().expect("events").clone();
            let found = find_in_order(&events, &wants, &frontend).and_then(|at| {
                first_flows
                    .iter()
                    .all(|w| events[..at[0]].iter().any(|e| w.matches(e, &frontend)))
                    .then_some(())
                    .ok_or_else(|| format!("{first_flows:?} not all before the policy change"))
            });
            match found {
                Ok(()) => break events,
                Err(why) => assert!(
                    Instant::now() < deadline,
                    "{why} in {:#}",
                    Value::Array(events)
                ),
            }
            std::thread::sleep(Duration::from_millis(500));
        };
        let times: Vec<u64> = events
            .iter()
            .map(|e| e["at_unix_ms"].as_u64().expect("a time"))
            .collect();
        assert!(times.is_sorted(), "time order: {times:?}");
        // Every event concerns the pod.
        assert!(events.iter().all(|e| {
            e["pods"]
                .as_array()
                .unwrap()
                .contains(&Value::from(frontend.as_str()))
        }),);
        // Text output: one line per event.
        let text = bulkhead_ok(&["timeline", "--pod", &frontend, "--lab", &name]);
        assert_eq!(text.lines().count(), events.len(), "{text}");
        assert!(text.contains("quarantined   timeline test"), "{text}");
        assert!(
            text.contains(&format!(
                "mode          revision {audited}: shop/frontend-db enforce -> audit"
            )),
            "{text}"
        );

        eprintln!("{text}");
        // The timeline's exporter is counted as every exporter is.
        let metrics = lab_metrics(&lab);
        let exported = metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix("bulkhead_flow_records_exported_total{exporter=\"timeline\"} ")
            })
            .unwrap_or_else(|| panic!("no timeline exporter in:\n{metrics}"));
        assert!(exported.trim().parse::<u64>().unwrap() > 0, "{exported}");

        // A SIGKILL, then a restart: the events are still there.
        let pid = lab.state()["nodes"][0]["agent"]["pid"]
            .as_u64()
            .expect("agent pid") as i32;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("kill the agent");
        let gone = Instant::now() + Duration::from_secs(10);
        while std::path::Path::new(&format!("/proc/{pid}")).exists() {
            assert!(Instant::now() < gone, "agent {pid} still there");
            std::thread::sleep(Duration::from_millis(50));
        }
        lab.ok("restart-agent", &[]);
        let after = timeline(&lab, &frontend);
        let after = after["events"].as_array().expect("events");
        assert!(
            after.len() >= events.len() && after[..events.len()] == events[..],
            "before the kill: {:#}\nafter: {:#}",
            Value::Array(events.clone()),
            Value::Array(after.clone())
        );
        find_in_order(after, &wants, &frontend).expect("all still in order");
    }
    assert_eq!(snapshot(), before, "the lab left something behind");
}
