//! Baseline-deviation alerts on real packets (issue 17), in a lab of the
//! demo app with a real Alertmanager in the node namespace:
//!
//! 1. **learn**: the app's connections (frontend → api:8080, api →
//!    db:5432, both to DNS) are recorded in the lab's flow log;
//!    `bulkhead baseline take shop --scope shop --lab` saves them.
//! 2. The lab comes up again, its agent with `--baseline` and
//!    `--alertmanager` pointing at an Alertmanager in the node namespace,
//!    and `--alerts-jsonl`.
//! 3. The learned connections again: no alert.
//! 4. One new edge (frontend → db:5432), its notification and flow
//!    records at both ends: exactly one alert, visible through
//!    Alertmanager's API with the edge's labels.
//! 5. api scans 100 ports of db: one scan alert, not 100, also in api's
//!    forensic timeline (`bulkhead timeline`).

mod lab_support;
#[path = "lab_support/learning.rs"]
mod learning;
#[path = "lab_support/traffic.rs"]
mod traffic;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bulkhead_netns_tests::collectors::Alertmanager;
use serde_json::Value;

use lab_support::{Lab, bulkhead_ok, json_lines, lab_metrics, privileged, serial, snapshot};
use learning::{LEARNED, UNLEARNED, connect, manifests, now_ms, pod, wait_for_records};
use traffic::{Pod, tcp_attempt};

/// Alertmanager's port in the node namespace (fresh: nothing else there).
const AM_PORT: u16 = 9093;

/// The scan window the agent runs with.
const SCAN_WINDOW_MS: u64 = 3_000;

fn alert_lines(path: &Path) -> Vec<Value> {
    json_lines(&std::fs::read_to_string(path).unwrap_or_default())
}

#[test]
fn learned_traffic_is_quiet_a_new_edge_alerts_once_a_scan_once() {
    if !privileged() {
        return;
    }
    let _serial = serial();
    let before = snapshot();
    {
        let name = format!("al{}", std::process::id() % 10_000);
        let work = lab_support::tempdir::Dir::new(&format!("{name}-alerts"));
        let baseline = work.path().join("shop.baseline.json");
        let alerts_jsonl = work.path().join("alerts.jsonl");

        // 1. Learn, and take the baseline from the lab's flow logs.
        {
            let lab = Lab::new(&name, &manifests());
            let up = lab.up(&["--mode", "learn", "--flow-idle-timeout", "1"]);
            assert!(up.status.success(), "lab up failed");
            let pods = Pod::all(&lab.state());
            let t0 = now_ms();
            for c in LEARNED {
                assert!(connect(&pods, c), "learn mode: {c:?} must connect");
            }
            wait_for_records(&lab, &LEARNED, t0);
            let file = baseline.display().to_string();
            bulkhead_ok(&[
                "baseline", "take", "shop", "--scope", "shop", "--lab", &name, "--output", &file,
            ]);
            let shown = bulkhead_ok(&["baseline", "show", &file]);
            assert!(shown.starts_with("baseline shop v1: "), "{shown}");
            for (from, to, port) in LEARNED {
                let (fw, tw) = (
                    from.split('/').nth(1).unwrap(),
                    to.split('/').nth(1).unwrap(),
                );
                assert!(
                    shown.lines().any(|l| l.contains(&format!("/{fw} -> "))
                        && l.contains(&format!("/{tw} TCP/{port}"))),
                    "{from} -> {to}:{port} missing in:\n{shown}"
                );
            }
        }

        // 2. The agent with the baseline and Alertmanager.
        let lab = Lab::new(&name, &manifests());
        let am_url = format!("http://127.0.0.1:{AM_PORT}");
        let up = lab.up(&[
            "--mode",
            "learn",
            "--flow-idle-timeout",
            "1",
            "--baseline",
            &baseline.display().to_string(),
            "--alertmanager",
            &am_url,
            "--alerts-jsonl",
            &alerts_jsonl.display().to_string(),
            "--scan-window-ms",
            &SCAN_WINDOW_MS.to_string(),
        ]);
        assert!(up.status.success(), "lab up with the baseline failed");
        let state = lab.state();
        let node_ns = state["nodes"][0]["netns"].as_str().expect("node netns");
        let am = Alertmanager::start_on(node_ns, AM_PORT).expect("alertmanager");
        let pods = Pod::all(&state);

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
        assert!(am.alerts().unwrap().is_empty(), "{:#?}", am.alerts());

        // 4. One new edge: one alert.
        let t2 = now_ms();
        assert!(connect(&pods, UNLEARNED), "learn mode: it connects");
        wait_for_records(&lab, &[UNLEARNED], t2);
        let got = am
            .wait_for(|a| !a.is_empty(), Duration::from_secs(20))
            .expect("the new edge's alert in Alertmanager");
        std::thread::sleep(Duration::from_millis(SCAN_WINDOW_MS + 1_000));
        let got_again = am.alerts().unwrap();
        assert_eq!(got.len(), 1, "{got:#?}");
        assert_eq!(got_again.len(), 1, "{got_again:#?}");
        let l = &got[0]["labels"];
        assert_eq!(l["alertname"], "BulkheadBaselineDeviation");
        assert_eq!(l["kind"], "new_peer");
        assert_eq!(l["baseline"], "shop");
        assert_eq!(l["namespace"], "shop");
        assert_eq!(l["workload"], "Deployment/frontend");
        assert_eq!(l["peer"], "shop/StatefulSet/db");
        assert_eq!(
            (l["protocol"].as_str(), l["port"].as_str()),
            (Some("TCP"), Some("5432"))
        );
        assert_eq!(got[0]["annotations"]["verdict"], "allowed");
        let lines = alert_lines(&alerts_jsonl);
        assert_eq!(lines.len(), 1, "{lines:#?}");

        // 5. A scan of 100 ports: one scan alert.
        let db = pod(&pods, "shop/db");
        let api = pod(&pods, "shop/api");
        for port in 1..=100u16 {
            let to = SocketAddr::new(db.ip(true), port);
            let _ = tcp_attempt(api, to, Duration::from_millis(200));
        }
        let got = am
            .wait_for(|a| a.len() >= 2, Duration::from_secs(20))
            .expect("the scan's alert in Alertmanager");
        std::thread::sleep(Duration::from_millis(SCAN_WINDOW_MS + 1_000));
        let got_again = am.alerts().unwrap();
        assert_eq!(got.len(), 2, "{got:#?}");
        assert_eq!(got_again.len(), 2, "{got_again:#?}");
        let scan = got
            .iter()
            .find(|a| a["labels"]["kind"] == "scan")
            .unwrap_or_else(|| panic!("no scan alert in {got:#?}"));
        assert_eq!(scan["labels"]["workload"], "Deployment/api");
        assert!(scan["labels"].get("port").is_none(), "{scan:#}");
        let targets: u64 = scan["annotations"]["targets"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(targets >= 20, "{scan:#}");
        let lines = alert_lines(&alerts_jsonl);
        assert_eq!(
            lines.len(),
            2,
            "one scan alert, not one per port: {lines:#?}"
        );

        // The alerts are in the timelines of the pods whose records
        // raised them (the lab's agent keeps one): api's has the scan.
        let text = bulkhead_ok(&[
            "timeline", "--pod", &api.name, "--output", "json", "--lab", &name,
        ]);
        let page: Value = serde_json::from_str(&text).expect("a timeline page");
        let alerts: Vec<&str> = page["events"]
            .as_array()
            .expect("events")
            .iter()
            .filter(|e| e["type"] == "alert")
            .filter_map(|e| e["alert"]["kind"].as_str())
            .collect();
        assert_eq!(alerts, ["scan"], "{page:#}");

        // The agent's counters agree.
        let metrics = lab_metrics(&lab);
        assert!(
            metrics.contains("bulkhead_alerts_total{kind=\"scan\",baseline=\"shop\"} 1"),
            "{metrics}"
        );
        assert!(
            metrics.contains("bulkhead_alerts_total{kind=\"new_peer\",baseline=\"shop\"} 1"),
            "{metrics}"
        );
        assert!(
            metrics.contains("bulkhead_alerts_delivered_total{sink=\"alertmanager\"} 2"),
            "{metrics}"
        );
        drop(am);
    }
    assert_eq!(snapshot(), before, "the lab left something behind");
}
