//! The lab's pods are wired by the real CNI reference plugins: each node's
//! chain `[ptp (host-local), bulkhead-cni]` (Debian's plugins under
//! /usr/lib/cni) runs as a runtime runs it. While the lab is up,
//! `host-local`'s data directory in the lab's own directory holds one
//! reservation per pod address, naming the pod's container; each pod's
//! `eth0`, addresses and routes are what `ptp` makes (the address with the
//! range's prefix, a link route to the gateway, a default route via it),
//! with the MAC and node-side veth the CNI result reports, and the agent
//! enforces every pod. `lab down` runs DEL for each pod and leaves nothing
//! behind. On two nodes, each node's `host-local` reserves its own pods,
//! one whose address lies outside the node's share included.
//!
//! Root only (skipped otherwise).

mod lab_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use lab_support::{Lab, bulkhead, bulkhead_ok, pods_yaml, privileged, serial, snapshot};
use serde_json::Value;

/// `ip -n NETNS -j ARGS...` as JSON.
fn ip_json(netns: &str, args: &[&str]) -> Value {
    let out = Command::new("ip")
        .args(["-n", netns, "-j"])
        .args(args)
        .output()
        .expect("ip");
    assert!(out.status.success(), "ip {args:?} in {netns}: {out:?}");
    serde_json::from_slice(&out.stdout).expect("ip -j")
}

/// Node `index`'s chain and `host-local`'s directory of the network.
fn chain(state: &Value, index: usize) -> (Value, PathBuf) {
    let conf = state["nodes"][index]["cni_conf"]
        .as_str()
        .expect("the node's CNI configuration");
    let list: Value = serde_json::from_slice(&std::fs::read(conf).expect("conflist")).unwrap();
    let data = Path::new(list["plugins"][0]["ipam"]["dataDir"].as_str().unwrap())
        .join(list["name"].as_str().unwrap());
    (list, data)
}

/// The lab's pods on node `index`.
fn pods_of(state: &Value, index: usize) -> Vec<Value> {
    state["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["external"] == false && h["node"] == index as u64)
        .cloned()
        .collect()
}

/// `host-local` reserved each address of `pod` for the pod's container.
fn assert_reserved(data: &Path, pod: &Value) {
    for ip in pod["ips"].as_array().unwrap() {
        let file = data.join(ip.as_str().unwrap());
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("no reservation {}: {e}", file.display()));
        let container = format!("lab-{}", pod["netns"].as_str().unwrap());
        assert_eq!(text.lines().next(), Some(container.as_str()), "{text}");
    }
}

#[test]
fn pods_are_wired_by_ptp_and_host_local_and_deleted_on_down() {
    if !privileged() {
        return;
    }
    let _serial = serial();
    let before = snapshot();
    let data;
    {
        let lab = Lab::new("tcn", &pods_yaml());
        let up = lab.up(&["--external", "192.0.2.10"]);
        assert!(up.status.success(), "lab up failed");
        let stderr = String::from_utf8_lossy(&up.stderr);
        assert!(
            stderr.contains("through the CNI chain ptp (host-local) → bulkhead-cni"),
            "{stderr}"
        );
        let state = lab.state();
        let (list, dir) = chain(&state, 0);
        data = dir;
        assert!(data.starts_with(lab.dir()), "{}", data.display());
        let types: Vec<&str> = list["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["ptp", "bulkhead-cni"]);
        let node = state["node"].as_str().unwrap();
        let pods = pods_of(&state, 0);
        assert_eq!(pods.len(), 3);
        for pod in &pods {
            assert_reserved(&data, pod);
            let netns = pod["netns"].as_str().unwrap();
            let veth = pod["veth"].as_str().unwrap();
            assert!(veth.starts_with("veth"), "ptp names the veth: {veth}");
            assert_eq!(pod["cni"]["interfaces"][0]["name"], veth);
            // The pod's side, as ptp leaves it.
            let link = &ip_json(netns, &["addr", "show", "dev", "eth0"])[0];
            assert_eq!(link["address"], pod["mac"], "{link}");
            let addrs: Vec<(String, u64)> = link["addr_info"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| a["scope"] == "global")
                .map(|a| {
                    (
                        a["local"].as_str().unwrap().to_owned(),
                        a["prefixlen"].as_u64().unwrap(),
                    )
                })
                .collect();
            let want: Vec<(String, u64)> = pod["ips"]
                .as_array()
                .unwrap()
                .iter()
                .map(|ip| {
                    let ip = ip.as_str().unwrap().to_owned();
                    let len = if ip.contains(':') { 64 } else { 16 };
                    (ip, len)
                })
                .collect();
            assert_eq!(addrs, want, "{link}");
            let routes = ip_json(netns, &["route", "show"]);
            let has =
                |dst: &str, gw: Option<&str>| {
                    routes.as_array().unwrap().iter().any(|r| {
                        r["dst"] == dst && r["dev"] == "eth0" && r["gateway"].as_str() == gw
                    })
                };
            assert!(has("default", Some("10.244.0.1")), "{routes}");
            assert!(has("10.244.0.1", None), "{routes}");
            assert!(has("10.244.0.0/16", Some("10.244.0.1")), "{routes}");
            // The node's side: the gateway on the veth, the pod routed to it.
            let host = &ip_json(node, &["addr", "show", "dev", veth])[0];
            assert!(
                host["addr_info"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|a| a["local"] == "10.244.0.1" && a["prefixlen"] == 32),
                "{host}"
            );
            let ip4 = pod["ips"][0].as_str().unwrap();
            let r = ip_json(node, &["route", "show", ip4]);
            assert_eq!(r[0]["dev"], veth, "{r}");
        }
        // bulkhead-cni returned only once the agent enforced each pod.
        let status: Value = serde_json::from_str(&bulkhead_ok(&[
            "status", "--lab", "tcn", "--output", "json",
        ]))
        .unwrap();
        assert_eq!(status["endpoints"].as_array().unwrap().len(), 3, "{status}");

        let down = bulkhead(&["lab", "down", "--name", "tcn"]);
        assert!(down.status.success());
        let stderr = String::from_utf8_lossy(&down.stderr);
        assert!(stderr.contains("CNI DEL of 3 pods"), "{stderr}");
        assert!(!stderr.contains("CNI DEL of pod"), "a DEL failed: {stderr}");
    }
    assert!(!data.exists(), "host-local's reservations survived down");
    assert_eq!(snapshot(), before, "lab down left something behind");
}

#[test]
fn each_node_reserves_its_own_pods() {
    if !privileged() {
        return;
    }
    let _serial = serial();
    let before = snapshot();
    {
        let lab = Lab::new("tcm", &pods_yaml());
        assert!(lab.up(&["--nodes", "2"]).status.success(), "lab up failed");
        let state = lab.state();
        for node in 0..2 {
            let (_, data) = chain(&state, node);
            assert!(
                data.starts_with(lab.dir().join(format!("n{node}"))),
                "{}",
                data.display()
            );
            let pods = pods_of(&state, node);
            assert!(!pods.is_empty());
            let mut reserved = 0;
            for pod in &pods {
                assert_reserved(&data, pod);
                reserved += pod["ips"].as_array().unwrap().len();
            }
            // Only this node's pods: one file per address, beside
            // host-local's own bookkeeping (`last_reserved_ip.*`, `lock`).
            let files = std::fs::read_dir(&data)
                .unwrap()
                .flatten()
                .filter(|e| {
                    e.file_name()
                        .to_str()
                        .is_some_and(|n| n.parse::<std::net::IpAddr>().is_ok())
                })
                .count();
            assert_eq!(files, reserved, "{}", data.display());
        }
        // x/b (10.244.0.3, assigned from the whole CIDR) sits on node-1,
        // whose share is 10.244.128.0/17: host-local reserved it there.
        let (_, data1) = chain(&state, 1);
        assert!(data1.join("10.244.0.3").exists());
        assert!(bulkhead(&["lab", "down", "--name", "tcm"]).status.success());
    }
    assert_eq!(snapshot(), before, "lab down left something behind");
}
