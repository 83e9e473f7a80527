//! Time to build and tear down a node with `BULKHEAD_NETKIT_PODS` pods
//! (default 50): one namespace per pod, a veth from the node into it
//! (MAC set), an address, links up, a default route in the pod and a host
//! route in the node; once through the toolkit, once through `ip`
//! processes doing the same steps. Prints the figures (run with
//! `--nocapture`); asserts only that both built the same thing.

mod support;

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use bulkhead_netkit::{Netns, Route, Veth};
use support::{assert_gone, name, privileged};

fn pods() -> usize {
    std::env::var("BULKHEAD_NETKIT_PODS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50)
}

fn addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 202, (i / 250) as u8, (i % 250 + 2) as u8)
}

fn mac(i: usize) -> [u8; 6] {
    [2, 0xbb, 0, 0, (i >> 8) as u8, i as u8]
}

/// Builds through the toolkit; returns the guards (node last to drop).
fn build_toolkit(tag: &str, n: usize) -> (Vec<Netns>, Netns) {
    let node = Netns::create(&name(&format!("{tag}n"))).unwrap();
    let nl = node.netlink().unwrap();
    let mut pods = Vec::new();
    for i in 0..n {
        let pod = Netns::create(&name(&format!("{tag}{i}"))).unwrap();
        let veth = format!("vp{i}");
        nl.add_veth(&Veth::new(&veth, "eth0").peer_in(&pod).peer_mac(mac(i)))
            .unwrap();
        nl.set_up(&veth).unwrap();
        nl.add_route(&Route::to(format!("{}/32", addr(i)).parse().unwrap()).dev(&veth))
            .unwrap();
        let pl = pod.netlink().unwrap();
        pl.add_address("eth0", format!("{}/32", addr(i)).parse().unwrap())
            .unwrap();
        pl.set_up("eth0").unwrap();
        pl.add_route(&Route::to("0.0.0.0/0".parse().unwrap()).dev("eth0"))
            .unwrap();
        pods.push(pod);
    }
    (pods, node)
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Builds through `ip`, one process per step, as the old helpers did.
fn build_ip(tag: &str, n: usize) -> (Vec<String>, String) {
    let node = name(&format!("{tag}n"));
    ip(&["netns", "add", &node]);
    let mut pods = Vec::new();
    for i in 0..n {
        let pod = name(&format!("{tag}{i}"));
        let veth = format!("vp{i}");
        let a = addr(i);
        let m = mac(i)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":");
        ip(&["netns", "add", &pod]);
        ip(&[
            "-n", &node, "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns",
            &pod,
        ]);
        ip(&["-n", &pod, "link", "set", "eth0", "address", &m]);
        ip(&["-n", &node, "link", "set", &veth, "up"]);
        ip(&[
            "-n",
            &node,
            "route",
            "add",
            &format!("{a}/32"),
            "dev",
            &veth,
        ]);
        ip(&["-n", &pod, "addr", "add", &format!("{a}/32"), "dev", "eth0"]);
        ip(&["-n", &pod, "link", "set", "eth0", "up"]);
        ip(&["-n", &pod, "route", "add", "default", "dev", "eth0"]);
        pods.push(pod);
    }
    (pods, node)
}

fn per(d: Duration, n: usize) -> String {
    format!(
        "{:>8.1} ms total, {:>6.2} ms per pod",
        d.as_secs_f64() * 1e3,
        d.as_secs_f64() * 1e3 / n as f64
    )
}

#[test]
fn toolkit_versus_ip_processes() {
    if !privileged() {
        return;
    }
    let n = pods();

    let t = Instant::now();
    let (pods, node) = build_toolkit("tk", n);
    let kit_build = t.elapsed();
    let last = pods
        .last()
        .unwrap()
        .netlink()
        .unwrap()
        .link("eth0")
        .unwrap();
    assert_eq!((last.mac, last.up), (Some(mac(n - 1)), true));
    let names: Vec<String> = pods.iter().map(|p| p.name().to_owned()).collect();
    let t = Instant::now();
    drop(pods);
    drop(node);
    let kit_down = t.elapsed();
    for p in &names {
        assert_gone(p);
    }

    let t = Instant::now();
    let (pods, node) = build_ip("ip", n);
    let ip_build = t.elapsed();
    let t = Instant::now();
    for ns in pods.iter().chain([&node]) {
        ip(&["netns", "del", ns]);
    }
    let ip_down = t.elapsed();
    for p in &pods {
        assert_gone(p);
    }

    eprintln!("{n} pods (namespace, veth, MAC, address, 2 routes, links up):");
    eprintln!("  build    toolkit {}", per(kit_build, n));
    eprintln!("  build    ip      {}", per(ip_build, n));
    eprintln!(
        "  teardown toolkit {} (incl. /proc scan and kill of processes inside)",
        per(kit_down, n)
    );
    eprintln!("  teardown ip      {}", per(ip_down, n));
    eprintln!(
        "  build ratio ip/toolkit {:.1}x, teardown ratio {:.1}x",
        ip_build.as_secs_f64() / kit_build.as_secs_f64(),
        ip_down.as_secs_f64() / kit_down.as_secs_f64()
    );
}
