//! The network map UI (issue 19) end to end, in real headless Chromium
//! (Debian's `chromium` driven by `playwright-core`, through
//! [`bulkhead_testkit::browser::Browser`]) against a lab with real traffic:
//!
//! 1. A lab of the demo app's workloads in three namespaces (shop/frontend,
//!    shop/api, shop/db, kube-system/coredns, sandbox/stray), no policy at
//!    first, its agent with a short `--flow-idle-timeout` and its UI on the
//!    host's loopback (`bulkhead lab ui --output json` gives the URL).
//! 2. Real TCP connections frontend → api:8080, api → db:5432,
//!    frontend → coredns:53 and stray → db:5432, all allowed. The page
//!    draws exactly those five workloads, grouped by namespace, and those
//!    four edges, all allowed (green), as `/v1/map` over the socket says.
//! 3. A policy (`shop/db-from-api`: db's ingress only from api) is applied;
//!    stray → db is now dropped while api → db still connects. Without a
//!    reload, the live stream turns the stray → db edge denied (red,
//!    naming the policy) and the other edges stay allowed.
//! 4. Selecting the denied edge lists its flows (a denied one among them),
//!    names the denying policy, and explain says deny on the ingress side
//!    (db's), not the egress side (stray's); selecting db shows its mode
//!    and the policy that selects it. The page logged no console error.
//!    A screenshot is saved under `target/artifacts/`.

mod lab_support;
#[path = "lab_support/learning.rs"]
mod learning;
#[path = "lab_support/map_ui.rs"]
mod map_ui;
#[path = "lab_support/traffic.rs"]
mod traffic;

use std::collections::BTreeSet;
use std::time::Duration;

use bulkhead_testkit::browser::Browser;

use lab_support::{Lab, privileged, serial, snapshot};
use learning::{connect, now_ms, policies, wait_for_records};
use map_ui::{ALLOWED, DENIED, View};
use traffic::Pod;

const FRONTEND: &str = "shop/Deployment/frontend";
const API: &str = "shop/Deployment/api";
const DB: &str = "shop/StatefulSet/db";
const DNS: &str = "kube-system/Deployment/coredns";
const STRAY: &str = "sandbox/Pod/stray";

/// The connections made while nothing is isolated: (client, server, port).
const ALLOWED_CONNS: [(&str, &str, u16); 3] = [
    ("shop/frontend", "shop/api", 8080),
    ("shop/api", "shop/db", 5432),
    ("shop/frontend", "kube-system/coredns", 53),
];
/// The connection the policy denies once applied.
const DENIED_CONN: (&str, &str, u16) = ("sandbox/stray", "shop/db", 5432);

/// db accepts only api (ingress isolated): stray → db is denied by it.
const DB_FROM_API: &str = "\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: shop, name: db-from-api}
spec:
  podSelector: {matchLabels: {app: db}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - podSelector: {matchLabels: {app: api}}
    ports: [{protocol: TCP, port: 5432}]
";
const POLICY: &str = "shop/db-from-api";

/// How long the map may take to show what the flow log already holds.
const MAP_WAIT: Duration = Duration::from_secs(20);

/// The edges the traffic makes: (src, dst, PROTO/port).
fn expected_edges() -> BTreeSet<(String, String, String)> {
    [
        (FRONTEND, API, "TCP/8080"),
        (API, DB, "TCP/5432"),
        (FRONTEND, DNS, "TCP/53"),
        (STRAY, DB, "TCP/5432"),
    ]
    .iter()
    .map(|(s, d, p)| (s.to_string(), d.to_string(), p.to_string()))
    .collect()
}

fn expected_workloads() -> BTreeSet<String> {
    [FRONTEND, API, DB, DNS, STRAY]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

#[test]
fn map_shows_flows_and_a_denying_policy_live() {
    // Without a browser: a failure under `cargo xtask test` (it sets
    // BULKHEAD_REQUIRE_BROWSER), else skipped with the reason.
    if !privileged() || Browser::skip() {
        return;
    }
    let _serial = serial();
    let before = snapshot();
    {
        let name = format!("mu{}", std::process::id() % 10_000);
        let lab = Lab::new(&name, &policies("demo", &["workloads.yaml"]));
        let up = lab.up(&["--flow-idle-timeout", "1"]);
        assert!(up.status.success(), "lab up failed");
        let pods = Pod::all(&lab.state());
        let clock = std::time::Instant::now();
        let phase = |what: &str| eprintln!("[{:>5.1} s] {what}", clock.elapsed().as_secs_f64());

        // 2. Allowed traffic: every connection passes, nothing is isolated.
        let t0 = now_ms();
        let mut all = ALLOWED_CONNS.to_vec();
        all.push(DENIED_CONN);
        for c in &all {
            assert!(connect(&pods, *c), "no policy yet: {c:?} must connect");
        }
        wait_for_records(&lab, &all, t0);
        phase("the four connections are in the flow log");
        let map = map_ui::wait_map(&lab, "the four edges", MAP_WAIT, |m| {
            map_ui::map_edge_set(m) == expected_edges()
        });
        phase("/v1/map has the four edges");
        assert_eq!(map["schema"], "bulkhead.map/v1", "{map:#}");
        assert_eq!(map_ui::map_workloads(&map), expected_workloads(), "{map:#}");
        for e in map["edges"].as_array().unwrap() {
            assert_eq!(e["verdict"], "allowed", "{e}");
        }

        let url = map_ui::ui_url(&lab);
        eprintln!("map UI: {url}");
        let mut browser = Browser::launch().expect("launch headless Chromium");
        browser.goto(&url).expect("open the map");
        let ready: f64 = browser
            .eval("window.bulkhead.whenReady().then(() => window.bulkhead.readyAt)")
            .expect("whenReady");
        eprintln!("map ready {ready:.0} ms after navigation");
        phase("the page is ready");
        let first = map_ui::view(&mut browser);
        let overlaps: Vec<(String, String)> = browser
            .eval("window.bulkhead.labelOverlaps()")
            .expect("labelOverlaps");
        assert!(
            overlaps.is_empty(),
            "readable at the default zoom: {overlaps:?}"
        );
        assert_drawn(&first);
        for e in &first.edges {
            assert_eq!(e.verdict, "allowed", "{e:?}");
            assert_eq!(map_ui::hex(&e.color), ALLOWED, "{e:?}");
        }
        let ids: BTreeSet<String> = map["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect();
        let members: BTreeSet<String> = first
            .edges
            .iter()
            .flat_map(|e| e.members.iter().cloned())
            .collect();
        assert_eq!(members, ids, "the page draws the map's edges");
        let updates_before: u64 = browser.eval("window.bulkhead.updates").expect("updates");

        // 3. The policy: stray → db is denied, api → db still passes.
        lab.write_policy("db-from-api.yaml", DB_FROM_API);
        lab.ok("sync", &[]);
        let t1 = now_ms();
        assert!(
            !connect(&pods, DENIED_CONN),
            "db accepts only api: {DENIED_CONN:?} is dropped"
        );
        for c in ALLOWED_CONNS {
            assert!(connect(&pods, c), "still allowed: {c:?}");
        }
        wait_for_records(&lab, &ALLOWED_CONNS, t1);
        phase("the policy's traffic is in the flow log");
        let live = map_ui::wait_view(&mut browser, "stray → db denied", MAP_WAIT, |v| {
            v.edges
                .iter()
                .any(|e| e.source == STRAY && e.target == DB && e.verdict == "denied")
        });
        phase("the page shows stray → db denied");
        assert_drawn(&live);
        let denied = live.edge(STRAY, DB);
        assert_eq!(map_ui::hex(&denied.color), DENIED, "{denied:?}");
        assert!(
            denied.policies.iter().any(|p| p == POLICY),
            "the edge names the denying policy: {denied:?}"
        );
        for e in live.edges.iter().filter(|e| e.id != denied.id) {
            assert_eq!(e.verdict, "allowed", "stays allowed: {e:?}");
            assert_eq!(map_ui::hex(&e.color), ALLOWED, "{e:?}");
        }
        let updates: u64 = browser.eval("window.bulkhead.updates").expect("updates");
        assert!(
            updates > updates_before,
            "the change came by the live stream ({updates_before} → {updates} lines)"
        );
        let map = map_ui::api_json(&lab, "/v1/map");
        assert_eq!(map_ui::map_edge_set(&map), expected_edges(), "{map:#}");
        let map_denied = map_ui::map_edge(&map, STRAY, DB);
        assert_eq!(map_denied["verdict"], "denied", "{map_denied}");
        assert!(
            map_denied["policies"]["denied"]
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p == POLICY)),
            "{map_denied}"
        );
        for e in map["edges"].as_array().unwrap() {
            if e["src"] != STRAY {
                assert_eq!(e["verdict"], "allowed", "{e}");
            }
        }

        // The map alone, before any details open.
        let overview = map_ui::artifacts_dir().join("map-ui-overview.png");
        browser.screenshot(&overview).expect("screenshot");
        eprintln!("screenshot: {}", overview.display());

        // 4. Details of the denied edge, opened by a real mouse click on
        // its line: its flows, the policy, explain.
        let details = map_ui::click_edge(&mut browser, &denied.id);
        assert_eq!(details.kind.as_deref(), Some("edge"), "{details:?}");
        assert!(
            details.flows.iter().any(|v| v == "denied"),
            "a denied flow is listed: {details:?}"
        );
        assert!(details.policies.contains(POLICY), "{details:?}");
        assert!(
            details.ingress.to_lowercase().contains("deny"),
            "db's ingress denies: {details:?}"
        );
        assert!(
            !details.egress.to_lowercase().contains("deny"),
            "stray's egress does not deny: {details:?}"
        );
        let edge = map_ui::api_json(
            &lab,
            &format!("/v1/map/edge?src={STRAY}&dst={DB}&protocol=TCP&port=5432"),
        );
        assert_eq!(edge["schema"], "bulkhead.map.edge/v1", "{edge:#}");
        assert_eq!(edge["explain"]["ingress"]["verdict"], "deny", "{edge:#}");
        assert_ne!(edge["explain"]["egress"]["verdict"], "deny", "{edge:#}");
        assert_eq!(edge["explain"]["verdict"], "denied", "{edge:#}");
        assert!(
            edge["flows"]
                .as_array()
                .is_some_and(|f| f.iter().any(|r| r["verdict"] == "denied")),
            "{edge:#}"
        );

        // A workload: its mode and the policies that select it.
        let db = map_ui::select(&mut browser, DB);
        assert_eq!(db.kind.as_deref(), Some("workload"), "{db:?}");
        assert!(db.mode.contains("enforce"), "{db:?}");
        assert!(db.policies.contains(POLICY), "{db:?}");
        let workload = map_ui::api_json(&lab, &format!("/v1/map/workload?id={DB}"));
        assert_eq!(workload["workload"]["mode"], "enforce", "{workload:#}");
        assert!(
            workload["policies"]
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p["name"] == POLICY)),
            "{workload:#}"
        );

        phase("details checked");
        let errors = browser.console_errors().expect("console");
        assert!(errors.is_empty(), "console errors: {errors:#?}");
        map_ui::select(&mut browser, &denied.id);
        let shot = map_ui::artifacts_dir().join("map-ui.png");
        browser.screenshot(&shot).expect("screenshot");
        let size = std::fs::metadata(&shot).expect("screenshot written").len();
        assert!(size > 10_000, "a real picture: {size} bytes");
        eprintln!("screenshot: {}", shot.display());
    }
    assert_eq!(snapshot(), before, "the lab left something behind");
}

/// The page draws exactly the expected workloads (each inside its
/// namespace), namespaces and edges, and no external peer.
fn assert_drawn(v: &View) {
    assert_eq!(v.workloads(), expected_workloads(), "{v:#?}");
    assert_eq!(v.edge_set(), expected_edges(), "{v:#?}");
    let namespaces: BTreeSet<&str> = v
        .of_kind("namespace")
        .iter()
        .map(|n| n.id.as_str())
        .collect();
    assert_eq!(
        namespaces,
        BTreeSet::from(["ns:kube-system", "ns:sandbox", "ns:shop"]),
        "{v:#?}"
    );
    for n in v.of_kind("workload") {
        let ns = n.id.split('/').next().unwrap();
        assert_eq!(
            n.parent.as_deref(),
            Some(format!("ns:{ns}").as_str()),
            "{n:?}"
        );
    }
    assert!(v.of_kind("external").is_empty(), "{v:#?}");
    assert_eq!(v.edges.len(), 4, "one drawn edge per pair: {v:#?}");
}
