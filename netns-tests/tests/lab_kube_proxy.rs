//! The lab's kube-proxy rules, in iptables and in nftables mode, on real
//! packets: pods reach each other through ClusterIPs (TCP, UDP, SCTP, both
//! families), a Service with two backends spreads connections over both,
//! an external host reaches a pod through a NodePort, a pod reaches
//! itself through its Service (hairpin), and once a Service selects no
//! pod its ClusterIP refuses connections (REJECT); across three nodes
//! (iptables and nftables alternating), a ClusterIP reaches a pod on another node and a
//! NodePort with `externalTrafficPolicy: Local` answers only on its
//! backend's node. No agent runs: these are the nodes' NAT rules alone.
//!
//! The Services are built in code and installed in the lab's node
//! namespace with the lab's own installer ([`install::apply`]): the lab's
//! manifests cannot carry Services yet.

mod lab_support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use bulkhead_lab::kubeproxy::{ProxyMode, install, node_view};
use bulkhead_lab::probe::{
    Outcome, ProbeOptions, ProbeResult, Via, probe_one, run_probes, service_routes,
};
use bulkhead_lab::state::LabState;
use bulkhead_netkit::NsHandle;
use bulkhead_policy::model::addressing::AddressPlan;
use bulkhead_policy::model::{
    Labels, Model, Origin, Protocol, Service, ServicePort, ServiceType, TargetPort, TrafficPolicy,
};
use bulkhead_policy::source::manifest;
use lab_support::{Lab, bulkhead_bin, privileged, serial, snapshot};

/// How long a probe waits (generous: a loaded 2-core machine).
const TIMEOUT: Duration = Duration::from_secs(3);

fn pod(name: &str, svc: &str) -> String {
    let ports: String = ["TCP", "UDP", "SCTP"]
        .iter()
        .map(|p| format!("      - {{containerPort: 80, protocol: {p}}}\n"))
        .collect();
    format!(
        "---\napiVersion: v1\nkind: Pod\nmetadata: {{namespace: x, name: {name}, \
         labels: {{app: {name}, svc: {svc}}}}}\nspec:\n  containers:\n  - name: c\n    ports:\n{ports}"
    )
}

/// x/a and x/b behind Service web; x/c a client of it.
fn pods() -> String {
    [pod("a", "web"), pod("b", "web"), pod("c", "none")].concat()
}

fn labels(k: &str, v: &str) -> Labels {
    [(k.to_owned(), v.to_owned())].into_iter().collect()
}

/// A NodePort Service `name` selecting `key=value`, on port 80 of every
/// protocol (NodePorts `node_port` + 0, 1, 2), with both families'
/// ClusterIPs `10.96.0.<n>` and `fd00:10:96::<n>`.
fn service(name: &str, key: &str, value: &str, n: u8, node_port: u16) -> Service {
    Service {
        namespace: "x".into(),
        name: name.into(),
        kind: ServiceType::NodePort,
        selector: Some(labels(key, value)),
        cluster_ips: vec![
            format!("10.96.0.{n}").parse().unwrap(),
            format!("fd00:10:96::{n}").parse().unwrap(),
        ],
        headless: false,
        ports: Protocol::ALL
            .iter()
            .zip(0..)
            .map(|(&protocol, i)| ServicePort {
                name: Some(protocol.as_str().to_ascii_lowercase()),
                protocol,
                port: 80,
                target_port: TargetPort::Number(80),
                node_port: Some(node_port + i),
            })
            .collect(),
        external_ips: Vec::new(),
        load_balancer_ips: Vec::new(),
        external_traffic_policy: TrafficPolicy::Cluster,
        internal_traffic_policy: TrafficPolicy::Cluster,
        origin: Origin::default(),
        ..Service::default()
    }
}

/// The lab's pods (as its agents load them) and the Services: a-svc and
/// b-svc select one pod each, web both.
fn model(state: &LabState) -> Model {
    let plan = AddressPlan::default();
    let mut m = manifest::load_dir(state.watched(), &plan).expect("the lab's manifests");
    m.services = vec![
        service("a-svc", "app", "a", 10, 30080),
        service("b-svc", "app", "b", 11, 30090),
        service("web", "svc", "web", 12, 30100),
    ];
    m.normalize();
    m
}

fn options(via: Via, from: &str, to: &str, routes: &Model) -> ProbeOptions {
    ProbeOptions {
        ports: Some(vec![80]),
        protocols: Protocol::ALL.to_vec(),
        families: vec![true, false],
        timeout: TIMEOUT,
        max_in_flight: 16,
        from: vec![from.into()],
        to: vec![to.into()],
        via,
        hairpin: from == to,
        routes: service_routes(routes),
    }
}

fn describe(r: &[ProbeResult]) -> String {
    r.iter().map(|r| format!("{}\n", r.to_json())).collect()
}

/// `n` TCP connections from `netns` to `to`: the lab servers' greetings
/// (`bulkhead <pod> tcp 80`).
fn greetings(netns: &str, to: SocketAddr, n: usize) -> Vec<String> {
    NsHandle::open(netns)
        .expect("pod namespace")
        .run(|| {
            (0..n)
                .map(|_| {
                    let mut s = TcpStream::connect_timeout(&to, TIMEOUT).expect("connect");
                    s.set_read_timeout(Some(TIMEOUT)).unwrap();
                    s.write_all(b"hi\n").unwrap();
                    let mut text = String::new();
                    s.read_to_string(&mut text).expect("greeting");
                    text.trim().to_owned()
                })
                .collect()
        })
        .expect("enter the pod namespace")
}

fn one_mode(name: &str, mode: ProxyMode) {
    let before = snapshot();
    {
        let lab = Lab::new(name, &pods());
        let up = lab.up(&[
            "--no-agent",
            "--kube-proxy",
            "none",
            "--external",
            "192.0.2.10,2001:db8::10",
        ]);
        assert!(up.status.success(), "lab up failed");
        let state = LabState::load(name).unwrap().expect("state");
        let node = &state.nodes[0].netns;
        let m = model(&state);
        install::apply(node, mode, &m, &node_view(&state, 0)).expect("install the rules");
        let exe = bulkhead_bin();

        // Pod to pod through a ClusterIP: every protocol, both families.
        let r = run_probes(&state, &options(Via::Service, "x/a", "x/b", &m), exe).unwrap();
        assert_eq!(r.len(), 6, "{}", describe(&r));
        for p in &r {
            assert_eq!(p.outcome, Outcome::Connected, "{}", describe(&r));
            assert_eq!(p.service.as_deref(), Some("x/b-svc"));
            let cip: IpAddr = if p.family == "IPv4" {
                "10.96.0.11"
            } else {
                "fd00:10:96::11"
            }
            .parse()
            .unwrap();
            assert_eq!(p.target, Some(SocketAddr::new(cip, 80)));
        }

        // Hairpin: x/a through its own Service.
        let r = run_probes(&state, &options(Via::Service, "x/a", "x/a", &m), exe).unwrap();
        assert!(!r.is_empty());
        assert!(
            r.iter().all(|p| p.outcome == Outcome::Connected),
            "{}",
            describe(&r)
        );

        // A NodePort from an external host (on the node's gateway address).
        let r = run_probes(&state, &options(Via::Nodeport, "*", "x/a", &m), exe).unwrap();
        let external: Vec<_> = r.iter().filter(|p| p.src.contains(['.', ':'])).collect();
        assert_eq!(external.len(), 6, "{}", describe(&r));
        assert!(
            r.iter().all(|p| p.outcome == Outcome::Connected),
            "{}",
            describe(&r)
        );

        // Two backends: 40 connections from x/c reach both.
        for cip in ["10.96.0.12", "fd00:10:96::12"] {
            let to = SocketAddr::new(cip.parse().unwrap(), 80);
            let seen: BTreeSet<String> = greetings(&state.hosts[2].netns, to, 40)
                .into_iter()
                .collect();
            let want: BTreeSet<String> = ["bulkhead x/a tcp 80", "bulkhead x/b tcp 80"]
                .map(str::to_owned)
                .into();
            assert_eq!(seen, want, "backends reached through {to}");
        }

        // b-svc selects no pod any more: its ClusterIP refuses (REJECT).
        let mut relabeled = m.clone();
        relabeled
            .services
            .iter_mut()
            .find(|s| s.name == "b-svc")
            .unwrap()
            .selector = Some(labels("app", "gone"));
        install::apply(node, mode, &relabeled, &node_view(&state, 0)).expect("replace the rules");
        let xa = NsHandle::open(&state.hosts[0].netns).unwrap();
        for cip in ["10.96.0.11", "fd00:10:96::11"] {
            let addr: IpAddr = cip.parse().unwrap();
            for proto in [Protocol::Tcp, Protocol::Udp] {
                let (outcome, detail) = xa.run(|| probe_one(addr, proto, 80, TIMEOUT)).unwrap();
                assert_eq!(outcome, Outcome::Refused, "{proto} to {cip}: {detail:?}");
            }
        }
        // The others still translate.
        let r = run_probes(
            &state,
            &options(Via::Service, "x/b", "x/a", &relabeled),
            exe,
        )
        .unwrap();
        assert!(
            r.iter().all(|p| p.outcome == Outcome::Connected),
            "{}",
            describe(&r)
        );
    }
    assert_eq!(snapshot(), before, "the lab left something behind");
}

#[test]
fn services_through_iptables_rules() {
    if !privileged() {
        return;
    }
    let _guard = serial();
    one_mode("kpipt", ProxyMode::Iptables);
}

#[test]
fn services_through_nftables_rules() {
    if !privileged() {
        return;
    }
    let _guard = serial();
    one_mode("kpnft", ProxyMode::Nftables);
}

/// One node's address of a family (its fabric address).
fn node_addr(state: &LabState, node: usize, v4: bool) -> IpAddr {
    bulkhead_lab::kubeproxy::node_addresses(state, node)
        .into_iter()
        .find(|a| a.is_ipv4() == v4)
        .expect("a node address of the family")
}

/// Three nodes (a, b, c one on each, in turn): a ClusterIP translated on
/// the client's node reaches a pod on another node; a NodePort answers on
/// every node with Cluster policy, and with `externalTrafficPolicy:
/// Local` only on the node of a backend (elsewhere it is dropped).
#[test]
fn services_across_three_nodes() {
    if !privileged() {
        return;
    }
    let _guard = serial();
    let before = snapshot();
    {
        let name = "kp3n";
        let lab = Lab::new(name, &pods());
        let up = lab.up(&[
            "--no-agent",
            "--nodes",
            "3",
            "--kube-proxy",
            "none",
            "--external",
            "192.0.2.10",
        ]);
        assert!(up.status.success(), "lab up failed");
        let state = LabState::load(name).unwrap().expect("state");
        let b_node = state.hosts[1].node;
        assert_ne!(state.hosts[0].node, b_node, "a and b on different nodes");
        let mut m = model(&state);
        let mut local = service("b-local", "app", "b", 20, 30200);
        local.external_traffic_policy = TrafficPolicy::Local;
        m.services.push(local);
        m.normalize();
        for (i, n) in state.nodes.iter().enumerate() {
            let mode = if i % 2 == 0 {
                ProxyMode::Iptables
            } else {
                ProxyMode::Nftables
            };
            install::apply(&n.netns, mode, &m, &node_view(&state, i)).expect("install");
        }
        let exe = bulkhead_bin();
        let r = run_probes(&state, &options(Via::Service, "x/a", "x/b", &m), exe).unwrap();
        assert_eq!(r.len(), 6, "{}", describe(&r));
        assert!(
            r.iter().all(|p| p.outcome == Outcome::Connected),
            "{}",
            describe(&r)
        );
        let r = run_probes(
            &state,
            &options(Via::Nodeport, "192.0.2.10", "x/b", &m),
            exe,
        )
        .unwrap();
        assert!(!r.is_empty());
        assert!(
            r.iter().all(|p| p.outcome == Outcome::Connected),
            "{}",
            describe(&r)
        );

        let ext = NsHandle::open(&state.hosts[3].netns).unwrap();
        for node in 0..state.nodes.len() {
            let addr = node_addr(&state, node, true);
            // b-svc (Cluster policy): every node forwards to b.
            let (o, d) = ext
                .run(|| probe_one(addr, Protocol::Tcp, 30090, TIMEOUT))
                .unwrap();
            assert_eq!(
                o,
                Outcome::Connected,
                "b-svc NodePort on node {node}: {d:?}"
            );
            // b-local: only b's node answers; the others drop.
            let (o, d) = ext
                .run(|| probe_one(addr, Protocol::Tcp, 30200, TIMEOUT))
                .unwrap();
            let want = if node == b_node {
                Outcome::Connected
            } else {
                Outcome::Timeout
            };
            assert_eq!(o, want, "b-local NodePort on node {node}: {d:?}");
        }
    }
    assert_eq!(snapshot(), before, "the lab left something behind");
}

/// A Service manifest: `name` selecting `app: <app>` on port 80 of every
/// protocol, both families' ClusterIPs `10.96.0.<n>` / `fd00:10:96::<n>`,
/// NodePorts `node_port` + 0, 1, 2.
fn service_yaml(name: &str, app: &str, n: u8, node_port: u16) -> String {
    let ports: String = ["TCP", "UDP", "SCTP"]
        .iter()
        .zip(0..)
        .map(|(p, i)| {
            format!(
                "  - {{name: {}, protocol: {p}, port: 80, targetPort: 80, nodePort: {}}}\n",
                p.to_ascii_lowercase(),
                node_port + i
            )
        })
        .collect();
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{namespace: x, name: {name}}}\nspec:\n  \
         type: NodePort\n  selector: {{app: {app}}}\n  ipFamilyPolicy: RequireDualStack\n  \
         clusterIPs: [10.96.0.{n}, 'fd00:10:96::{n}']\n  ports:\n{ports}"
    )
}

/// `lab probe ... --output json` as JSON objects.
fn probe_json(lab: &Lab, args: &[&str]) -> Vec<serde_json::Value> {
    // Generous: a loaded 2-core machine (the first packet of a family
    // also waits for neighbour discovery on the node).
    let mut all = vec![
        "--family",
        "both",
        "--ports",
        "80",
        "--timeout-ms",
        "3000",
        "--output",
        "json",
    ];
    all.extend_from_slice(args);
    lab_support::json_lines(&lab.ok("probe", &all))
}

/// The lab's own kube-proxy follows its manifests: Services written in
/// them are translated at `lab up`, probes `--via service` and `--via
/// nodeport` reach the pod behind them, and once a relabel leaves a
/// Service without pods, `lab sync` returns with its ClusterIP refusing.
fn follows_manifests(name: &str, mode: &str) {
    let before = snapshot();
    {
        let yaml = [pods(), service_yaml("a-svc", "a", 10, 30080)].concat();
        let lab = Lab::new(name, &yaml);
        let up = lab.up(&["--kube-proxy", mode, "--external", "192.0.2.10"]);
        assert!(up.status.success(), "lab up failed");
        let r = probe_json(&lab, &["--via", "service", "--from", "x/c", "--to", "x/a"]);
        assert_eq!(r.len(), 6, "{r:?}");
        for p in &r {
            assert_eq!(p["outcome"], "connected", "{p}");
            assert_eq!(p["via"], "service");
            assert_eq!(p["service"], "x/a-svc");
            let addr = p["addr"].as_str().unwrap();
            assert!(["10.96.0.10", "fd00:10:96::10"].contains(&addr), "{p}");
        }
        let r = probe_json(
            &lab,
            &["--via", "nodeport", "--from", "192.0.2.10", "--to", "x/a"],
        );
        assert_eq!(r.len(), 3, "{r:?}");
        assert!(
            r.iter()
                .all(|p| p["outcome"] == "connected" && p["addr"] == "10.244.0.1"),
            "{r:?}"
        );

        // x/a leaves the Service: its rules follow at `lab sync`.
        let moved = std::fs::read_to_string(lab.watched().join("manifests.yaml"))
            .expect("the watched manifests")
            .replace("app: a,", "app: moved,");
        lab.write_policy("manifests.yaml", &moved);
        lab.ok("sync", &[]);
        let state = LabState::load(name).unwrap().expect("state");
        let xc = NsHandle::open(&state.hosts[2].netns).unwrap();
        for cip in ["10.96.0.10", "fd00:10:96::10"] {
            let addr: IpAddr = cip.parse().unwrap();
            for proto in [Protocol::Tcp, Protocol::Udp] {
                let (outcome, detail) = xc.run(|| probe_one(addr, proto, 80, TIMEOUT)).unwrap();
                assert_eq!(outcome, Outcome::Refused, "{proto} to {cip}: {detail:?}");
            }
        }
        let r = probe_json(&lab, &["--via", "service", "--from", "x/c", "--to", "x/a"]);
        assert!(r.iter().all(|p| p["outcome"] == "no-service"), "{r:?}");
    }
    assert_eq!(snapshot(), before, "the lab left something behind");
}

#[test]
fn the_lab_kube_proxy_follows_manifests_iptables() {
    if !privileged() {
        return;
    }
    let _guard = serial();
    follows_manifests("kpfi", "iptables");
}

#[test]
fn the_lab_kube_proxy_follows_manifests_nftables() {
    if !privileged() {
        return;
    }
    let _guard = serial();
    follows_manifests("kpfn", "nftables");
}

/// Runs `args` in network namespace `netns`; its stdout.
fn in_netns(netns: &str, args: &[&str]) -> String {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", netns])
        .args(args)
        .output()
        .expect("ip netns exec");
    assert!(out.status.success(), "{args:?} in {netns}: {out:?}");
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// Neighbour solicitations that reach a pod and are dropped there, per
/// family, until the tables go.
const DEAF_TO_SOLICITATIONS: &str = "\
table arp deaf { chain input { type filter hook input priority 0; counter drop; }; }
table ip6 deaf { chain input { type filter hook input priority 0; icmpv6 type nd-neighbor-solicit counter drop; }; }
";

/// How many solicitations each family's table of [`DEAF_TO_SOLICITATIONS`]
/// dropped so far in `netns`.
fn deaf_drops(netns: &str) -> Vec<u64> {
    let text = in_netns(netns, &["nft", "list", "ruleset"]);
    text.lines()
        .filter_map(|l| l.split("counter packets ").nth(1))
        .map(|rest| rest.split(' ').next().unwrap().parse().unwrap())
        .collect()
}

/// The first packets of new Service connections can wait in the node's
/// neighbour queue (the backend's address not resolved yet) for a second
/// or more while other packets pass: the hand-off from the client's
/// `from_pod` to the backend's program still finds each one (by the
/// client's address and port), so none is dropped unjudged
/// (`service_unjudged`, as the per-CPU record alone did). Here the backend
/// ignores the node's solicitations until every family has been asked
/// twice (a second after the packets left the client), so all six
/// datagrams wait together.
#[test]
fn service_packets_that_wait_for_the_backends_neighbour() {
    if !privileged() {
        return;
    }
    let _guard = serial();
    let before = snapshot();
    {
        let yaml = [pods(), service_yaml("a-svc", "a", 10, 30080)].concat();
        let lab = Lab::new("kpnq", &yaml);
        let up = lab.up(&["--kube-proxy", "nftables"]);
        assert!(up.status.success(), "lab up failed");
        let state = LabState::load("kpnq").unwrap().expect("state");
        let host = |name: &str| state.hosts.iter().find(|h| h.name == name).unwrap();
        let (backend, client) = (&host("x/a").netns, &host("x/c").netns);
        let node = &state.nodes[0].netns;
        // Many solicitations before the node gives up on the backend (and
        // drops what waits): the test's own pace cannot outlast them.
        in_netns(
            node,
            &[
                "sh",
                "-c",
                "for f in /proc/sys/net/ipv[46]/neigh/*/mcast_solicit; do echo 30 > $f; done",
            ],
        );
        let mut nft = std::process::Command::new("ip")
            .args(["netns", "exec", backend, "nft", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        nft.stdin
            .take()
            .unwrap()
            .write_all(DEAF_TO_SOLICITATIONS.as_bytes())
            .unwrap();
        assert!(nft.wait().unwrap().success());
        in_netns(node, &["ip", "-4", "neigh", "flush", "all"]);
        in_netns(node, &["ip", "-6", "neigh", "flush", "all"]);

        let sent = NsHandle::open(client)
            .unwrap()
            .run(|| {
                ["10.96.0.10", "fd00:10:96::10"]
                    .iter()
                    .cycle()
                    .take(6)
                    .enumerate()
                    .map(|(i, cip)| {
                        let to = SocketAddr::new(cip.parse().unwrap(), 80);
                        let local: SocketAddr = if to.is_ipv4() {
                            "0.0.0.0:0".parse().unwrap()
                        } else {
                            "[::]:0".parse().unwrap()
                        };
                        let s = std::net::UdpSocket::bind(local).unwrap();
                        s.connect(to).unwrap();
                        let token = format!("datagram {i}");
                        s.send(token.as_bytes()).unwrap();
                        (s, token)
                    })
                    .collect::<Vec<_>>()
            })
            .unwrap();
        // Both families asked twice: every datagram has waited a second.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while deaf_drops(backend).iter().filter(|&&n| n >= 2).count() < 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "the node never asked for the backend: {:?}",
                deaf_drops(backend)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        in_netns(backend, &["nft", "delete", "table", "arp", "deaf"]);
        in_netns(backend, &["nft", "delete", "table", "ip6", "deaf"]);

        for (s, token) in &sent {
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut buf = [0u8; 64];
            let n = s
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("no echo of {token:?} via {:?}: {e}", s.peer_addr()));
            assert_eq!(&buf[..n], token.as_bytes());
        }
        let status = lab_support::bulkhead_ok(&["status", "--lab", "kpnq"]);
        assert!(
            status
                .lines()
                .any(|l| l.split_whitespace().eq(["service_unjudged", "0"])),
            "{status}"
        );
    }
    assert_eq!(snapshot(), before, "the lab left something behind");
}
