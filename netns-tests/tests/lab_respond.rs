//! Detect and respond in one running lab of the demo app (issue 17), on
//! real packets, with no restart between learning and alerting:
//!
//! 1. `lab up --mode learn --respond quarantine:scan`: the agent alerts on
//!    nothing yet (no baseline active).
//! 2. The app's connections are learnt; `bulkhead baseline take --lab`
//!    saves them; `bulkhead baseline activate --lab` makes the running
//!    agent alert on them.
//! 3. The learned connections again: no alert.
//! 4. The api scans 100 ports of the db: one scan alert, whose automatic
//!    response quarantines the api: its learned connection to the db and
//!    the frontend's to it stop.
//! 5. The agent is killed and restarted: the activated baseline and the
//!    quarantine are both still in force.
//! 6. Deactivated and unquarantined: the api reaches the db again.

mod lab_support;
#[path = "lab_support/learning.rs"]
mod learning;
#[path = "lab_support/traffic.rs"]
mod traffic;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use lab_support::{Lab, bulkhead_ok, json_lines, privileged, serial, snapshot};
use learning::{LEARNED, connect, manifests, now_ms, pod, wait_for_records};
use traffic::{Pod, tcp_attempt};

/// The scan window the agent runs with.
const SCAN_WINDOW_MS: u64 = 3_000;

fn alert_lines(path: &Path) -> Vec<Value> {
    json_lines(&std::fs::read_to_string(path).unwrap_or_default())
}

/// Waits (bounded) until the alerts file holds `n` lines.
fn wait_for_alerts(path: &Path, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = alert_lines(path);
        if got.len() >= n || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn quarantines(lab: &Lab) -> Value {
    let out = bulkhead_ok(&[
        "quarantine",
        "--list",
        "--lab",
        &lab.name,
        "--output",
        "json",
    ]);
    serde_json::from_str(&out).expect("quarantine list JSON")
}

fn active_baselines(lab: &Lab) -> Vec<Value> {
    let out = bulkhead_ok(&["baseline", "list", "--lab", &lab.name, "--output", "json"]);
    serde_json::from_str::<Value>(&out)
        .expect("baseline list JSON")
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Kills the lab's agent and waits until `status` says so.
fn kill_agent(lab: &Lab) {
    let pid = lab.state()["agent"]["pid"].as_u64().expect("agent pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = bulkhead_ok(&["status", "--lab", &lab.name, "--output", "json"]);
        let s: Value = serde_json::from_str(&out).expect("status JSON");
        if s["agent_running"] == false {
            return;
        }
        assert!(Instant::now() < deadline, "the agent still runs: {s}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_activated_baseline_alerts_and_a_scan_quarantines_its_source_across_a_restart() {
    if !privileged() {
        return;
    }
    let _serial = serial();
    let before = snapshot();
    {
        let name = format!("rs{}", std::process::id() % 10_000);
        let work = lab_support::tempdir::Dir::new(&format!("{name}-respond"));
        let baseline = work.path().join("shop.baseline.json");
        let alerts_jsonl = work.path().join("alerts.jsonl");
        let file = baseline.display().to_string();

        // 1. Up, learning, responding to scans; no baseline yet.
        let lab = Lab::new(&name, &manifests());
        let up = lab.up(&[
            "--mode",
            "learn",
            "--flow-idle-timeout",
            "1",
            "--alerts-jsonl",
            &alerts_jsonl.display().to_string(),
            "--scan-window-ms",
            &SCAN_WINDOW_MS.to_string(),
            "--respond",
            "quarantine:scan",
        ]);
        assert!(up.status.success(), "lab up failed");
        assert!(active_baselines(&lab).is_empty());
        let pods = Pod::all(&lab.state());

        // 2. Learn, take, activate in the running agent.
        let t0 = now_ms();
        for c in LEARNED {
            assert!(connect(&pods, c), "learn mode: {c:?} must connect");
        }
        wait_for_records(&lab, &LEARNED, t0);
        bulkhead_ok(&[
            "baseline", "take", "shop", "--scope", "shop", "--lab", &name, "--output", &file,
        ]);
        let said = bulkhead_ok(&["baseline", "activate", &file, "--lab", &name]);
        assert!(said.contains("baseline shop v1 activated"), "{said}");
        let active = active_baselines(&lab);
        assert_eq!(active.len(), 1, "{active:?}");
        assert_eq!(
            (&active[0]["name"], &active[0]["origin"]),
            (&"shop".into(), &"api".into())
        );

        // 3. Learned traffic: quiet.
        let t1 = now_ms();
        for c in LEARNED {
            assert!(connect(&pods, c), "{c:?} must connect");
        }
        wait_for_records(&lab, &LEARNED, t1);
        std::thread::sleep(Duration::from_millis(SCAN_WINDOW_MS + 1_000));
        assert!(
            alert_lines(&alerts_jsonl).is_empty(),
            "{:#?}",
            alert_lines(&alerts_jsonl)
        );

        // 4. The api scans the db: one scan alert, and the api is cut off.
        let (db, api) = (pod(&pods, "shop/db"), pod(&pods, "shop/api"));
        for port in 1..=100u16 {
            let _ = tcp_attempt(
                api,
                SocketAddr::new(db.ip(true), port),
                Duration::from_millis(200),
            );
        }
        let lines = wait_for_alerts(&alerts_jsonl, 1);
        assert_eq!(
            lines.len(),
            1,
            "one scan alert, not one per port: {lines:#?}"
        );
        assert_eq!(lines[0]["kind"], "scan");
        let api_key = api.name.clone();
        assert_eq!(lines[0]["src_pods"], serde_json::json!([api_key]));
        assert_eq!(
            lines[0]["responses"],
            serde_json::json!([format!("quarantined {api_key}")])
        );
        // Stored by the detectors' thread, enforced at the next sync: wait for it.
        let deadline = Instant::now() + Duration::from_secs(20);
        let q = loop {
            let q = quarantines(&lab);
            if q["quarantines"].as_array().is_some_and(|a| !a.is_empty()) {
                break q;
            }
            assert!(Instant::now() < deadline, "no quarantine in force: {q}");
            std::thread::sleep(Duration::from_millis(100));
        };
        let held = &q["quarantines"][0];
        assert_eq!(
            format!(
                "{}/{}",
                held["namespace"].as_str().unwrap(),
                held["pod"].as_str().unwrap()
            ),
            api_key
        );
        assert!(
            held["reason"]
                .as_str()
                .unwrap()
                .starts_with("automatic response to a scan alert"),
            "{held}"
        );
        assert!(
            !connect(&pods, ("shop/api", "shop/db", 5432)),
            "the api is cut off from the db"
        );
        assert!(
            !connect(&pods, ("shop/frontend", "shop/api", 8080)),
            "and the frontend from it"
        );
        assert!(
            connect(&pods, ("shop/frontend", "kube-system/coredns", 53)),
            "the rest goes on"
        );

        // 5. Killed and restarted: both still in force.
        kill_agent(&lab);
        lab.ok("restart-agent", &[]);
        let active = active_baselines(&lab);
        assert_eq!(
            active.len(),
            1,
            "the activated baseline survives: {active:?}"
        );
        assert_eq!(
            quarantines(&lab)["quarantines"].as_array().map(Vec::len),
            Some(1)
        );
        assert!(
            !connect(&pods, ("shop/api", "shop/db", 5432)),
            "still cut off"
        );

        // 6. Deactivated and lifted.
        let said = bulkhead_ok(&["baseline", "deactivate", "shop", "--lab", &name]);
        assert!(said.contains("baseline shop deactivated"), "{said}");
        assert!(active_baselines(&lab).is_empty());
        bulkhead_ok(&["unquarantine", &api_key, "--lab", &name]);
        assert!(connect(&pods, ("shop/api", "shop/db", 5432)), "restored");
    }
    assert_eq!(snapshot(), before, "the lab left something behind");
}
