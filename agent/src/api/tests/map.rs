//! The network map's routes, through the real router on a Unix socket,
//! over a real [`MapSource`] (the demo shop's policy, a flow map and the
//! recent-flows ring fed with its records).

use std::io::{BufRead, BufReader};
use std::sync::Mutex;

use bulkhead_flows::record::{FlowRecord, FlowVerdict, PolicyRef};
use bulkhead_learn::map::{MapBatch, MapConfig, SharedMap};
use bulkhead_testkit::learn::{Peer, conn, demo, demo_model};
use serde_json::Value;

use super::*;
use crate::map::{MapBackend, MapSource};
use crate::quarantine::{Enforced, QuarantineOrigin, QuarantineState, QuarantineStore};

fn now_ms() -> u64 {
    crate::flows::unix_ms()
}

fn denied(mut records: Vec<FlowRecord>, policy: &str) -> Vec<FlowRecord> {
    for r in &mut records {
        r.verdict = FlowVerdict::Denied;
        r.policies = vec![PolicyRef {
            name: policy.into(),
            ..Default::default()
        }]
        .into();
    }
    records
}

fn feed(map: &SharedMap, ring: &bulkhead_flows::History, records: &[FlowRecord]) {
    let mut b = MapBatch::default();
    records.iter().for_each(|r| b.add_record(r));
    map.merge(b, now_ms());
    let arcs: Vec<Arc<FlowRecord>> = records.iter().cloned().map(Arc::new).collect();
    ring.push_all(&arcs);
}

/// The demo shop's policy in force; traffic of the last minute: the
/// frontend to the api (allowed), the frontend to the db (denied), the api
/// to two addresses of one /24; the db quarantined.
fn source() -> (Arc<MapSource>, Arc<SharedMap>, Arc<bulkhead_flows::History>) {
    let model = demo_model();
    let compiled = bulkhead_policy::compile::compile(&model);
    let local: Vec<usize> = (0..model.pods.len())
        .filter(|&i| model.pods[i].namespace == "shop")
        .collect();
    let map = SharedMap::new(MapConfig::default()).unwrap();
    let ring = Arc::new(bulkhead_flows::History::new(1000));
    let store = Arc::new(QuarantineStore::open(None));
    store.publish(Enforced {
        generation: Some(1),
        applied: Vec::new(),
        quarantines: vec![QuarantineState {
            namespace: "shop".into(),
            pod: "db".into(),
            reason: "test".into(),
            allow_dns: false,
            origin: QuarantineOrigin::Store,
            labelled: false,
            since_unix_ms: Some(1),
            in_model: true,
            local: true,
            enforced: true,
        }],
    });
    let source = Arc::new(MapSource::new(
        Arc::clone(&map),
        "node-a",
        Some(Arc::clone(&ring)),
        Some(store),
        Arc::new(Mutex::new(None)),
    ));
    source.update_policy(&Arc::new(model), &Arc::new(compiled), &local);
    let d = demo();
    let t = now_ms() - 30_000;
    let mut records = conn(t, &d.frontend, &d.api, 6, 8080);
    records.extend(denied(
        conn(t + 1, &d.frontend, &d.db, 6, 5432),
        "shop/default-deny",
    ));
    for a in ["198.51.100.7", "198.51.100.8"] {
        records.extend(conn(t + 2, &d.api, &Peer::Ext(a.parse().unwrap()), 6, 443));
    }
    feed(&map, &ring, &records);
    (source, map, ring)
}

fn get_json(sock: &Path, target: &str) -> Value {
    let (ct, body) = get_unix(sock, target).unwrap();
    assert_eq!(ct, "application/json");
    serde_json::from_str(&body).unwrap()
}

fn find<'a>(list: &'a Value, id: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == id)
        .unwrap_or_else(|| panic!("no {id} in {list}"))
}

#[test]
fn the_map_shows_workloads_ranges_and_edges_by_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let (source, _, _) = source();
    let api = start(unix_config(dir.path()), Arc::new(MapBackend(source)));
    let sock = api.socket_path().unwrap().to_owned();
    let v = get_json(&sock, "/v1/map");
    assert_eq!(v["schema"], "bulkhead.map/v1");
    assert_eq!(v["node"], "node-a");
    assert_eq!(v["window"]["bucket_ms"], 60_000);
    assert_eq!(v["window"]["partial"], false);
    let frontend = find(&v["workloads"], "shop/Deployment/frontend");
    assert_eq!(frontend["mode"], "enforce");
    assert_eq!(frontend["quarantined"], false);
    assert_eq!(frontend["short"], "frontend");
    assert_eq!(
        find(&v["workloads"], "shop/StatefulSet/db")["quarantined"],
        true
    );
    assert_eq!(v["namespaces"][0]["name"], "shop");
    assert_eq!(v["namespaces"][0]["workloads"], 3);
    let ext = find(&v["externals"], "cidr:198.51.100.0/24");
    assert_eq!(ext["addresses"], 2);
    let e = find(
        &v["edges"],
        "shop/Deployment/frontend>shop/StatefulSet/db:TCP/5432",
    );
    assert_eq!(e["verdict"], "denied");
    assert_eq!(e["policies"]["denied"][0], "shop/default-deny");
    assert_eq!(e["classes"]["denied"]["flows"], 1);
    assert!(e["classes"].get("allowed").is_none());
    let e = find(
        &v["edges"],
        "shop/Deployment/api>cidr:198.51.100.0/24:TCP/443",
    );
    assert_eq!(e["verdict"], "allowed");
    assert_eq!(e["classes"]["allowed"]["flows"], 2);
    // A window before any traffic: nothing.
    let v = get_json(&sock, "/v1/map?since=1000&until=2000");
    assert_eq!(v["edges"].as_array().unwrap().len(), 0);
    assert_eq!(
        (v["window"]["since"].as_u64(), v["window"]["until"].as_u64()),
        (Some(0), Some(60_000))
    );
    for (target, names) in [
        ("/v1/map?since=x", "since"),
        ("/v1/map?since=5&until=4", "since"),
        ("/v1/map?window=1", "window"),
    ] {
        let (status, msg) = status_of(get_unix(&sock, target));
        assert_eq!(status, 400, "{target}");
        assert!(msg.contains(names), "{target}: {msg}");
    }
    stop(api);
}

#[test]
fn an_edge_shows_its_flows_and_what_policy_says_now() {
    let dir = tempfile::tempdir().unwrap();
    let (source, map, ring) = source();
    let d = demo();
    let ghost =
        bulkhead_testkit::learn::pod("shop", "ghost-1", "Deployment/ghost", &[], "10.9.9.9");
    feed(
        &map,
        &ring,
        &conn(now_ms() - 1_000, &d.frontend, &d.api, 1, 0),
    );
    feed(
        &map,
        &ring,
        &conn(now_ms() - 1_000, &ghost, &d.api, 6, 8080),
    );
    let api = start(unix_config(dir.path()), Arc::new(MapBackend(source)));
    let sock = api.socket_path().unwrap().to_owned();
    let v = get_json(
        &sock,
        "/v1/map/edge?src=shop/Deployment/frontend&dst=shop/StatefulSet/db&protocol=TCP&port=5432",
    );
    assert_eq!(v["schema"], "bulkhead.map.edge/v1");
    assert_eq!(v["edge"]["verdict"], "denied");
    let flows = v["flows"].as_array().unwrap();
    assert_eq!(flows.len(), 2, "both ends' records");
    assert!(flows.iter().all(|f| f["verdict"] == "denied"));
    let x = &v["explain"];
    assert_eq!(x["verdict"], "denied", "{x}");
    assert_eq!(x["ingress"]["verdict"], "deny");
    assert!(
        x["ingress"]["policies"]
            .as_array()
            .unwrap()
            .contains(&Value::from("shop/db"))
    );
    assert_eq!(
        x["ingress"]["rules"],
        serde_json::json!([]),
        "no rule decides"
    );
    assert_eq!(x["ingress"]["near_misses"][0]["policy"], "shop/db");
    assert_eq!(x["example"]["from"], "shop/frontend");
    assert_eq!(x["example"]["to"], "shop/db");
    assert!(x["text"].as_str().unwrap().contains("DENIED"), "{x}");
    assert!(v["explain_unavailable"].is_null());

    let v = get_json(
        &sock,
        "/v1/map/edge?src=shop/Deployment/frontend&dst=shop/Deployment/api&protocol=6&port=8080",
    );
    let x = &v["explain"];
    assert_eq!(x["verdict"], "allowed", "{x}");
    assert_eq!(x["ingress"]["rules"][0]["policy"], "shop/api");
    assert!(
        !x["ingress"]["rules"][0]["text"]
            .as_str()
            .unwrap()
            .is_empty()
    );

    // An external range: explained for an address of it.
    let v = get_json(
        &sock,
        "/v1/map/edge?src=shop/Deployment/api&dst=cidr:198.51.100.0/24&protocol=TCP&port=443",
    );
    assert_eq!(v["flows"].as_array().unwrap().len(), 2);
    assert!(
        v["explain"]["example"]["to"]
            .as_str()
            .unwrap()
            .starts_with("198.51.100.")
    );

    // What explain cannot say, and why.
    for (target, why) in [
        (
            "/v1/map/edge?src=shop/Deployment/frontend&dst=shop/Deployment/api&protocol=ICMP&port=0",
            "NetworkPolicy cannot name ICMP",
        ),
        (
            "/v1/map/edge?src=shop/Deployment/ghost&dst=shop/Deployment/api&protocol=TCP&port=8080",
            "no pod of shop/Deployment/ghost exists now",
        ),
    ] {
        let v = get_json(&sock, target);
        assert!(v["explain"].is_null(), "{v}");
        let reason = v["explain_unavailable"].as_str().unwrap();
        assert!(reason.starts_with(why), "{reason}");
        assert_eq!(v["flows"].as_array().unwrap().len(), 2, "{v}");
    }

    let (status, msg) = status_of(get_unix(
        &sock,
        "/v1/map/edge?src=shop/Deployment/api&dst=shop/Deployment/frontend&protocol=TCP&port=1",
    ));
    assert_eq!(status, 404);
    assert!(msg.contains("no edge"), "{msg}");
    for (target, names) in [
        (
            "/v1/map/edge?src=shop/Deployment/a&dst=shop/Deployment/b&protocol=TCP",
            "port",
        ),
        (
            "/v1/map/edge?src=shop/Deployment/a&dst=shop/Deployment/b&protocol=XTP&port=1",
            "protocol",
        ),
        (
            "/v1/map/edge?src=shop/a&dst=shop/Deployment/b&protocol=TCP&port=1",
            "src",
        ),
        (
            "/v1/map/edge?src=shop/Deployment/a&dst=cidr:nope&protocol=TCP&port=1",
            "dst",
        ),
        (
            "/v1/map/edge?src=shop/Deployment/a&dst=shop/Deployment/b&protocol=TCP&port=70000",
            "port",
        ),
        (
            "/v1/map/edge?src=shop/Deployment/a&dst=shop/Deployment/b&protocol=TCP&port=1&until=x",
            "until",
        ),
        (
            "/v1/map/edge?src=shop/Deployment/a&dst=shop/Deployment/b&protocol=TCP&port=1&x=1",
            "\"x\"",
        ),
    ] {
        let (status, msg) = status_of(get_unix(&sock, target));
        assert_eq!(status, 400, "{target}");
        assert!(msg.contains(names), "{target}: {msg}");
    }
    stop(api);
}

#[test]
fn a_workload_shows_its_pods_policies_quarantine_and_proposal() {
    let dir = tempfile::tempdir().unwrap();
    let (source, _, _) = source();
    let api = start(unix_config(dir.path()), Arc::new(MapBackend(source)));
    let sock = api.socket_path().unwrap().to_owned();
    let v = get_json(&sock, "/v1/map/workload?id=shop/StatefulSet/db");
    assert_eq!(v["schema"], "bulkhead.map.workload/v1");
    assert_eq!(v["workload"]["id"], "shop/StatefulSet/db");
    assert_eq!(v["workload"]["quarantined"], true);
    assert_eq!(v["pods"][0]["name"], "db");
    assert_eq!(v["pods"][0]["local"], true);
    let db = find_by_name(&v["policies"], "shop/db");
    assert_eq!(db["kind"], "NetworkPolicy");
    assert_eq!(db["mode"], "enforce");
    assert_eq!(db["directions"], serde_json::json!(["ingress"]));
    let deny = find_by_name(&v["policies"], "shop/default-deny");
    assert_eq!(deny["directions"], serde_json::json!(["ingress", "egress"]));
    assert_eq!(v["quarantine"][0]["pod"], "db");
    // The db's only traffic was denied: nothing to propose from it.
    assert!(v["proposal"].is_null());
    assert!(
        v["proposal_unavailable"]
            .as_str()
            .unwrap()
            .contains("shop/StatefulSet/db")
    );

    let v = get_json(&sock, "/v1/map/workload?id=shop/Deployment/api");
    let p = &v["proposal"];
    assert_eq!(p["policy_name"], "shop/bulkhead-api", "{v}");
    assert_eq!(p["in_force"], false);
    assert!(p["yaml"].as_str().unwrap().contains("kind: NetworkPolicy"));
    let diff = p["diff"].as_str().unwrap();
    assert!(diff.lines().all(|l| l.starts_with('+')), "{diff}");
    assert_eq!(
        p["changes"].as_u64().unwrap() as usize,
        diff.lines().count()
    );
    assert!(v["quarantine"].is_null());

    let (status, _) = status_of(get_unix(&sock, "/v1/map/workload?id=shop/Deployment/gone"));
    assert_eq!(status, 404);
    for (target, names) in [
        ("/v1/map/workload", "id"),
        ("/v1/map/workload?id=shop/api", "id"),
        ("/v1/map/workload?id=shop/Deployment/api&since=-1", "since"),
    ] {
        let (status, msg) = status_of(get_unix(&sock, target));
        assert_eq!(status, 400, "{target}");
        assert!(msg.contains(names), "{target}: {msg}");
    }
    stop(api);
}

fn find_by_name<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {list}"))
}

/// The next non-heartbeat line of a stream, parsed.
fn next_json(r: &mut impl BufRead) -> Value {
    let mut line = String::new();
    loop {
        line.clear();
        assert!(r.read_line(&mut line).unwrap() > 0, "the stream ended");
        if !line.trim().is_empty() {
            return serde_json::from_str(&line).unwrap();
        }
    }
}

#[test]
fn follow_streams_the_window_then_increments() {
    let dir = tempfile::tempdir().unwrap();
    let (source, map, ring) = source();
    let api = start(unix_config(dir.path()), Arc::new(MapBackend(source)));
    let sock = api.socket_path().unwrap().to_owned();
    let conn_ = UnixStream::connect(&sock).unwrap();
    conn_
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let resp = client::get(
        conn_,
        &format!("/v1/map/follow?since={}", now_ms() - 120_000),
    )
    .unwrap();
    assert_eq!(resp.header("content-type"), Some(JSON_LINES));
    let mut r = BufReader::new(resp);
    // The window: 3 workloads, 1 range, 3 edges (in that order).
    let backlog: Vec<Value> = (0..7).map(|_| next_json(&mut r)).collect();
    let types: Vec<&str> = backlog
        .iter()
        .map(|v| v["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "workload", "workload", "workload", "external", "edge", "edge", "edge"
        ]
    );
    // Live: a new workload first, then the edge, counts as increments.
    let d = demo();
    feed(&map, &ring, &conn(now_ms(), &d.api, &d.dns, 17, 53));
    let w = next_json(&mut r);
    assert_eq!(
        (w["type"].as_str(), w["id"].as_str()),
        (Some("workload"), Some("kube-system/Deployment/coredns"))
    );
    let e = next_json(&mut r);
    assert_eq!(e["type"], "edge");
    assert_eq!(
        e["id"],
        "shop/Deployment/api>kube-system/Deployment/coredns:UDP/53"
    );
    // The backlog is the map as of its revision; the live merge is the next.
    let base = backlog[0]["revision"]
        .as_u64()
        .expect("lines carry revisions");
    assert!(backlog.iter().all(|l| l["revision"] == base));
    assert_eq!(e["revision"].as_u64(), Some(base + 1));
    assert_eq!(w["revision"], e["revision"]);
    assert_eq!(e["classes"]["allowed"]["flows"], 1);
    feed(&map, &ring, &conn(now_ms(), &d.api, &d.dns, 17, 53));
    let e = next_json(&mut r);
    assert_eq!(e["type"], "edge", "no workload line the second time");
    assert_eq!(e["classes"]["allowed"]["flows"], 1, "an increment");
    drop(r);
    let (status, msg) = status_of(get_unix(&sock, "/v1/map/follow?until=1"));
    assert_eq!(status, 400);
    assert!(msg.contains("until"), "{msg}");
    stop(api);
}

#[test]
fn an_agent_without_a_map_answers_404() {
    let dir = tempfile::tempdir().unwrap();
    let api = start(unix_config(dir.path()), fake(0));
    let sock = api.socket_path().unwrap().to_owned();
    for target in [
        "/v1/map",
        "/v1/map/follow",
        "/v1/map/edge?src=a/B/c&dst=a/B/d&protocol=TCP&port=1",
        "/v1/map/workload?id=a/B/c",
    ] {
        let (status, msg) = status_of(get_unix(&sock, target));
        assert_eq!(status, 404, "{target}");
        assert!(msg.contains("keeps no flow map"), "{target}: {msg}");
    }
    stop(api);
    // Over TCP without tcp_all_endpoints: Unix socket only.
    let api = start(tcp_config(false), fake(0));
    let (status, msg) = status_of(get_tcp(api.tcp_addr().unwrap(), "/v1/map"));
    assert_eq!(status, 404);
    assert!(msg.contains("Unix socket only"), "{msg}");
    stop(api);
}
