//! The agent's Alertmanager client against a real Alertmanager
//! (`prometheus-alertmanager`, API v2) in a network namespace of its own:
//! baseline alerts arrive with their labels as sent and an alert sent twice
//! is one alert there; with nobody listening, sends fail and are counted
//! and the caller is never blocked.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bulkhead_agent::alerts::alertmanager::{Alertmanager as Client, AlertmanagerConfig, Endpoint};
use bulkhead_agent::alerts::labels::{ALERTNAME, postable};
use bulkhead_flows::record::FlowVerdict;
use bulkhead_learn::baseline::detect::{Alert, AlertKind};
use bulkhead_learn::edge::{End, WorkloadId};
use bulkhead_netns_tests::collectors::{Alertmanager, in_netns};
use bulkhead_netns_tests::privileged;
use serde_json::Value;

/// A network namespace with `lo` up, deleted on drop (its name in `.0`).
struct Netns(String, #[allow(dead_code)] bulkhead_netkit::Netns);

impl Netns {
    fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "bham-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let ns = bulkhead_netkit::Netns::recreate(&name).expect("a namespace");
        ns.netlink().unwrap().set_up("lo").unwrap();
        Self(name, ns)
    }
}

const INTERVAL: Duration = Duration::from_secs(3600);

fn workload(ns: &str, w: &str) -> WorkloadId {
    WorkloadId {
        namespace: ns.into(),
        workload: w.into(),
    }
}

/// A new-port alert of `shop/Deployment/web` to `shop/Deployment/db`,
/// first seen now.
fn alert(port: u16) -> Alert {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    Alert {
        kind: AlertKind::NewPort,
        baseline: "shop".into(),
        version: 2,
        subject: workload("shop", "Deployment/web"),
        src: End::Workload(workload("shop", "Deployment/web")),
        dst: End::Workload(workload("shop", "Deployment/db")),
        protocol: 6,
        port,
        targets: 1,
        port_max: port,
        verdict: FlowVerdict::Allowed,
        policies: vec!["shop/allow-web".into()],
        first_seen_unix_ms: now,
        last_seen_unix_ms: now,
        src_pods: vec!["shop/web-1".into()],
        dst_pods: Vec::new(),
    }
}

fn client(netns: &str, url: &str, cfg: impl FnOnce(&mut AlertmanagerConfig)) -> Client {
    let mut c = AlertmanagerConfig::new(Endpoint::parse(url).unwrap());
    c.backoff = Duration::from_millis(100);
    cfg(&mut c);
    // The sender thread is started from a thread in the namespace, so its
    // connections are made there.
    in_netns(netns, move || Client::start(c)).unwrap().unwrap()
}

fn labels_of(v: &Value) -> BTreeMap<String, String> {
    v["labels"]
        .as_object()
        .expect("labels")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect()
}

#[test]
fn alerts_arrive_as_sent_and_an_alert_sent_twice_is_one() {
    if !privileged() {
        return;
    }
    let ns = Netns::new();
    let am = Alertmanager::start(&ns.0).expect("start alertmanager");
    let c = client(&ns.0, &am.url(), |_| {});

    let a = postable(&alert(8080), "node-a", INTERVAL);
    let b = postable(&alert(9090), "node-a", INTERVAL);
    assert!(c.send(a.clone()));
    assert!(c.send(b.clone()));
    // The same alert again (the next interval re-sends it so).
    assert!(c.send(a.clone()));
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.stats().delivered < 3 {
        assert!(Instant::now() < deadline, "not delivered: {:?}", c.stats());
        std::thread::sleep(Duration::from_millis(20));
    }
    let alerts = am
        .wait_for(|a| a.len() >= 2, Duration::from_secs(10))
        .expect("alerts in Alertmanager");
    // A moment more: a duplicate would show up as a third alert by now.
    std::thread::sleep(Duration::from_millis(500));
    let alerts_again = am.alerts().unwrap();
    assert_eq!(alerts.len(), 2, "{alerts:#?}");
    assert_eq!(alerts_again.len(), 2, "{alerts_again:#?}");

    let mut got: Vec<BTreeMap<String, String>> = alerts.iter().map(labels_of).collect();
    got.sort_by(|x, y| x["port"].cmp(&y["port"]));
    assert_eq!(got, vec![a.labels.clone(), b.labels.clone()]);
    assert_eq!(got[0]["alertname"], ALERTNAME);
    assert_eq!(got[0]["kind"], "new_port");
    assert_eq!(got[0]["peer"], "shop/Deployment/db");
    let held = alerts_again
        .iter()
        .find(|v| v["labels"]["port"] == "8080")
        .unwrap();
    assert_eq!(held["annotations"]["verdict"], "allowed");
    assert_eq!(held["annotations"]["policies"], "shop/allow-web");
    assert_eq!(held["status"]["state"], "active", "{held:#}");
    let ends = humantime::parse_rfc3339(held["endsAt"].as_str().unwrap()).unwrap();
    let starts = humantime::parse_rfc3339(held["startsAt"].as_str().unwrap()).unwrap();
    assert_eq!(ends.duration_since(starts).unwrap(), INTERVAL);

    let stats = c.stop();
    assert_eq!(stats.lost_total(), 0, "{stats:?}");
    assert_eq!(stats.delivered, 3);
}

#[test]
fn nobody_listening_sends_fail_counted_and_the_caller_never_waits() {
    if !privileged() {
        return;
    }
    let ns = Netns::new();
    // A port free in the namespace: nothing listens there.
    let port = in_netns(&ns.0, || {
        TcpListener::bind("127.0.0.1:0").map(|l| l.local_addr().unwrap().port())
    })
    .unwrap()
    .unwrap();
    let c = client(&ns.0, &format!("http://127.0.0.1:{port}"), |c| {
        c.queue = 16;
        c.batch = 4;
    });
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut queued = 0u64;
    for i in 0..2_000u16 {
        let t = Instant::now();
        queued += u64::from(c.send(postable(&alert(i), "node-a", INTERVAL)));
        slowest = slowest.max(t.elapsed());
    }
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "2000 sends took {:?}",
        started.elapsed()
    );
    assert!(
        slowest < Duration::from_millis(50),
        "a send took {slowest:?}"
    );
    let stats = c.stats();
    assert_eq!(stats.lost["queue_full"], 2_000 - queued, "{stats:?}");
    assert_eq!(stats.delivered, 0);
    // Let the first batch go through its retries.
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.stats().retries < 3 {
        assert!(Instant::now() < deadline, "no retries: {:?}", c.stats());
        std::thread::sleep(Duration::from_millis(20));
    }
    let stats = c.stop();
    assert_eq!(stats.delivered, 0);
    assert_eq!(stats.lost["connect"], queued, "{stats:?}");
    assert_eq!(stats.lost_total(), 2_000, "{stats:?}");
}
