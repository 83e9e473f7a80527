//! Host routing on real packets: with it (the agent's default), a packet
//! from one pod to another on the node is judged for both pods by the
//! sender's `from_pod` (and its tail call `deliver`) and delivered straight
//! into the receiver, so the node's stack never transmits it on the
//! receiver's host veth; without it (`--host-routing off`), every packet
//! crosses the node's stack. Either way the verdicts are the same:
//!
//! - allowed TCP and UDP between x/a and y/b (IPv4 and IPv6) get through,
//!   and the node's TX counter of y/b's veth shows which path they took;
//! - datagrams y/a's egress lets out but y/b's ingress denies are dropped
//!   and counted at y/b (`policy_denied` in its flow record), so the
//!   destination's judgement happens on the host-routing path too;
//! - a connection to a "Service" address the node DNATs to y/b (an
//!   iptables rule in the node, as kube-proxy writes them) works: its
//!   original packets take the stack (the address is no pod's), so its
//!   replies do too and netfilter undoes the NAT;
//! - `lab verify` finds the kernel and the evaluator agreeing on every
//!   pod pair;
//! - `bulkhead status` and the lab's state say which routing is on.
//!
//! The other lab tests (flow records, the Kubernetes e2e scenarios,
//! updates, fail-static) run with host routing on, as the agent does.

mod lab_support;
#[path = "lab_support/traffic.rs"]
mod traffic;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use bulkhead_netns_tests::tx_packets;
use lab_support::{Lab, bulkhead_ok, json_lines, privileged, serial, snapshot};
use traffic::{Pod, TcpServer, UdpEcho, tcp_exchange, udp_blackhole, udp_exchange};

/// Allowed TCP port of y/b.
const TCP_PORT: u16 = 80;
/// Allowed UDP port of y/b.
const UDP_PORT: u16 = 81;
/// Datagrams of the allowed UDP exchange (each echoed).
const UDP_COUNT: usize = 200;
/// Datagrams y/a sends to y/b (denied at y/b's ingress).
const DENIED_COUNT: u64 = 5;
/// What else the node may send on y/b's veth during a measurement with
/// host routing (neighbour probes).
const CHATTER: u64 = 8;
/// The "Service" address the node DNATs to y/b's TCP port (no pod's, no
/// route's: only the DNAT rule gives it meaning, in the node only).
const SERVICE_IP: &str = "10.96.0.10";
/// Its port.
const SERVICE_PORT: u16 = 8080;

/// x/a may reach y/b on TCP 80 and UDP 81; y's pods are isolated for
/// ingress; nobody is isolated for egress (so y/a's packets pass its
/// `from_pod` and are judged at y/b).
fn manifests() -> String {
    lab_support::xa_into_yb()
}

/// `iptables -t nat <op> <rule>` in namespace `ns`.
fn iptables(ns: &str, op: &str, rule: &[String]) {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "iptables", "-t", "nat", op])
        .args(rule)
        .output()
        .expect("iptables");
    assert!(
        out.status.success(),
        "iptables -t nat {op} {}: {}",
        rule.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// y/b's flow record at its ingress for datagrams from `client`, once it
/// shows `n` dropped packets.
fn denied_record(lab: &Lab, client: SocketAddr, n: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(lab.dir().join("flows.jsonl")).unwrap_or_default();
        let found = json_lines(&text).into_iter().find(|r| {
            r["type"] == "flow"
                && r["direction"] == "ingress"
                && r["src"]["ip"] == client.ip().to_string()
                && r["src"]["port"] == client.port()
                && r["dropped"]["packets"].as_u64().unwrap_or(0) >= n
        });
        if let Some(r) = found {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "no ingress record of y/b dropping {n} datagrams from {client}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One lab with host routing `on` or off: traffic, path, verdicts.
fn run(on: bool) {
    // Lab names are at most 6 characters.
    let name = format!(
        "h{}{}",
        if on { "n" } else { "f" },
        std::process::id() % 10_000
    );
    let lab = Lab::new(&name, &manifests());
    let up = lab.up(&[
        "--host-routing",
        if on { "on" } else { "off" },
        "--flow-idle-timeout",
        "1",
    ]);
    assert!(up.status.success(), "lab up failed");
    let state = lab.state();
    assert_eq!(state["agent"]["host_routing"], on, "lab state");
    let node = state["node"].as_str().expect("node").to_owned();
    let status = bulkhead_ok(&["status", "--lab", &name]);
    let routing = status
        .lines()
        .find(|l| l.starts_with("routing:"))
        .unwrap_or_else(|| panic!("status has no routing line:\n{status}"));
    assert_eq!(routing.contains("host routing"), on, "{routing}");

    let pods = Pod::all(&state);
    let pod = |n: &str| pods.iter().find(|p| p.name == n).expect(n).clone();
    let (xa, ya, yb) = (pod("x/a"), pod("y/a"), pod("y/b"));
    let yb_veth = state["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .find(|h| h["name"] == "y/b")
        .and_then(|h| h["veth"].as_str())
        .expect("y/b's veth")
        .to_owned();

    for v4 in [true, false] {
        let ip = yb.ip(v4);
        let _tcp = TcpServer::start(&yb.netns, SocketAddr::new(ip, TCP_PORT));
        let _udp = UdpEcho::start(&yb.netns, SocketAddr::new(ip, UDP_PORT));
        let udp = SocketAddr::new(ip, UDP_PORT);
        // Resolves the node's neighbour entry of y/b (host routing takes
        // the stack until it is).
        udp_exchange(&xa, udp, 3, 64);

        let before = tx_packets(&node, &yb_veth).unwrap();
        udp_exchange(&xa, udp, UDP_COUNT, 64);
        let tcp = tcp_exchange(&xa, SocketAddr::new(ip, TCP_PORT), 1000);
        let sent = tx_packets(&node, &yb_veth).unwrap() - before;
        let carried = UDP_COUNT as u64 + tcp.segs_in;
        eprintln!(
            "host routing {}, IPv{}: {carried} packets into y/b, {sent} sent by the node's stack",
            if on { "on" } else { "off" },
            if v4 { 4 } else { 6 }
        );
        if on {
            assert!(
                sent <= CHATTER,
                "host routing: {sent} of {carried} packets into y/b crossed the node's stack"
            );
        } else {
            assert!(
                sent >= carried,
                "host routing off: only {sent} of {carried} packets into y/b crossed the node's stack"
            );
        }

        // Allowed out of y/a (not isolated for egress), denied into y/b.
        let (client, answers) = udp_blackhole(
            &ya,
            udp,
            DENIED_COUNT as usize,
            64,
            Duration::from_millis(300),
        );
        assert_eq!(answers, 0, "y/a → y/b:{UDP_PORT} must be dropped");
        let r = denied_record(&lab, client, DENIED_COUNT);
        assert_eq!(r["verdict"], "denied", "{r}");
        assert_eq!(r["drop_reason"], "policy_denied", "{r}");

        if v4 {
            // kube-proxy's way to a backend: DNAT in the node.
            let dnat = [
                "PREROUTING",
                "-d",
                SERVICE_IP,
                "-p",
                "tcp",
                "--dport",
                &SERVICE_PORT.to_string(),
                "-j",
                "DNAT",
                "--to-destination",
                &format!("{ip}:{TCP_PORT}"),
            ]
            .map(str::to_owned);
            iptables(&node, "-A", &dnat);
            let service = SocketAddr::new(SERVICE_IP.parse().unwrap(), SERVICE_PORT);
            let tcp = tcp_exchange(&xa, service, 1000);
            iptables(&node, "-D", &dnat);
            assert!(tcp.segs_in > 2, "x/a → {service} (DNAT to y/b)");
        }
    }

    let verify = lab_support::bulkhead(&["lab", "verify", "--name", &name]);
    assert!(
        verify.status.success(),
        "lab verify (host routing {}) found disagreements:\n{}",
        if on { "on" } else { "off" },
        String::from_utf8_lossy(&verify.stdout)
    );
}

#[test]
fn host_routing_delivers_pod_to_pod_with_the_same_verdicts_as_the_stack() {
    if !privileged() {
        return;
    }
    let _serial = serial();
    let before = snapshot();
    run(true);
    run(false);
    assert_eq!(snapshot(), before, "something was left behind");
}
