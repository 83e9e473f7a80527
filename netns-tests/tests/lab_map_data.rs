//! The network map's data on real packets (issue 19), in one lab of the
//! demo app with its agent: the frontend connects to the api (allowed)
//! and to the db (denied: only the api may reach it). The agent's
//! `/v1/map` then holds both edges with their verdict classes and deciding
//! policies; `/v1/map/edge` of the denied one lists its denied flow records
//! and explains the denial; `/v1/map/workload` of the db names the
//! policies selecting it, in enforce mode; `/metrics` counts the map's
//! entries.

mod lab_support;
#[path = "lab_support/learning.rs"]
mod learning;
#[path = "lab_support/traffic.rs"]
mod traffic;

use std::io::Read as _;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use lab_support::{Lab, lab_metrics, privileged, serial, snapshot};
use learning::{connect, manifests};
use serde_json::Value;
use traffic::Pod;

fn get(lab: &Lab, target: &str) -> Value {
    let state = lab.state();
    let socket = state["nodes"][0]["agent"]["api_socket"]
        .as_str()
        .expect("api socket");
    let stream = UnixStream::connect(socket).expect("agent socket");
    let mut resp = bulkhead_agent::api::client::get(stream, target)
        .unwrap_or_else(|e| panic!("GET {target}: {e}"));
    let mut text = String::new();
    resp.read_to_string(&mut text).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{target}: {e}: {text}"))
}

/// The map's edge from the workload named `from` to the one named `to`
/// on `port`, once it holds it with `verdict`.
fn wait_for_edge(lab: &Lab, from: &str, to: &str, port: u16, verdict: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let map = get(lab, "/v1/map");
        let found = map["edges"].as_array().unwrap().iter().find(|e| {
            e["src"].as_str().unwrap().ends_with(&format!("/{from}"))
                && e["dst"].as_str().unwrap().ends_with(&format!("/{to}"))
                && e["port"] == port
                && e["verdict"] == verdict
        });
        if let Some(e) = found {
            return e.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no {verdict} edge {from} -> {to}:{port} in {map}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn the_map_shows_real_traffic_by_verdict_with_details() {
    if !privileged() {
        return;
    }
    let _serial = serial();
    let before = snapshot();
    {
        let name = format!("mp{}", std::process::id() % 10_000);
        let lab = Lab::new(&name, &manifests());
        let up = lab.up(&["--flow-idle-timeout", "1"]);
        assert!(up.status.success(), "lab up failed");
        let pods = Pod::all(&lab.state());
        assert!(
            (0..3).any(|_| connect(&pods, ("shop/frontend", "shop/api", 8080))),
            "the frontend reaches the api"
        );
        assert!(!connect(&pods, ("shop/frontend", "shop/db", 5432)));

        let allowed = wait_for_edge(&lab, "frontend", "api", 8080, "allowed");
        assert_eq!(allowed["protocol"], "TCP");
        assert!(allowed["classes"]["allowed"]["flows"].as_u64().unwrap() >= 1);
        let denied = wait_for_edge(&lab, "frontend", "db", 5432, "denied");
        let deciding = denied["policies"]["denied"].as_array().unwrap();
        assert!(!deciding.is_empty(), "{denied}");

        let (src, dst) = (
            denied["src"].as_str().unwrap(),
            denied["dst"].as_str().unwrap(),
        );
        let details = get(
            &lab,
            &format!("/v1/map/edge?src={src}&dst={dst}&protocol=TCP&port=5432"),
        );
        let flows = details["flows"].as_array().unwrap();
        assert!(!flows.is_empty(), "{details}");
        assert!(flows.iter().all(|f| f["verdict"] == "denied"), "{details}");
        let explain = &details["explain"];
        assert_eq!(explain["verdict"], "denied", "{details}");
        assert_eq!(explain["ingress"]["verdict"], "deny", "{details}");
        assert!(
            explain["text"].as_str().unwrap().contains("DENIED"),
            "{details}"
        );

        let db = get(&lab, &format!("/v1/map/workload?id={dst}"));
        assert_eq!(db["workload"]["mode"], "enforce", "{db}");
        let policies: Vec<&str> = db["policies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert!(policies.contains(&"shop/db"), "{db}");
        assert!(db["pods"][0]["local"].as_bool().unwrap(), "{db}");

        let metrics = lab_metrics(&lab);
        let entries = metrics
            .lines()
            .find_map(|l| l.strip_prefix("bulkhead_map_entries "))
            .unwrap_or_else(|| panic!("no bulkhead_map_entries in {metrics}"));
        assert!(entries.parse::<u64>().unwrap() >= 2, "{entries}");
    }
    assert_eq!(snapshot(), before, "the lab left something behind");
}
