//! The window of a new pod, with the real CNI plugins: a node namespace
//! runs `bulkhead agent --kubernetes` against the test kit's API server;
//! a peer pod on the node floods the new pod's address (UDP and TCP
//! connects) while the new pod is created the way kubelet and a runtime
//! create it: its Pod object (labels, `spec.nodeName`, no `status.podIP`
//! yet) is in the API, then the CNI chain runs (Debian's `ptp` with
//! `host-local`, then `bulkhead-cni`), and only after ADD returns does the
//! pod's server start (a runtime starts containers after ADD). What the
//! pod receives from the peer, whose packets its policy denies, is counted
//! three ways: accepted TCP connections, UDP datagrams, and an AF_PACKET
//! capture on the pod's interface from right after ADD.
//!
//! - With `bulkhead-cni` in the chain: zero, then (allowing the peer)
//!   traffic flows, so the zero was the policy's.
//! - Without it, the agent learns the pod's address only when kubelet
//!   (the test) patches `status.podIP`, after the flood: packets get in.
//! - With the agent stopped, ADD fails after `timeout` (fail-closed), and
//!   passes with `failurePolicy: ignore`; DEL works with the agent down;
//!   CHECK fails for an unknown container and passes once enforced.
//!
//! Root only (skipped otherwise); one test at a time.

mod agent_support;

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use agent_support::{Node, allow, deny_ingress, enter, in_netns, privileged, serial};
use bulkhead_netns_tests::apiserver::{FakeApiServer, Options};
use bulkhead_netns_tests::cniexec::{Attach, CNI_PLUGIN_DIR, Chain};
use bulkhead_netns_tests::raw::RawLink;
use serde_json::{Value, json};

/// Generous bound for a change to show (not a speed target).
const PATIENCE: Duration = Duration::from_secs(30);
/// The node's name in the API and the agent's `--node-name`.
const NODE_NAME: &str = "n1";
/// The new pod's address: host-local's first in the range (.1 is the gateway).
const WEB_IP: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 2);
/// How long the pod's side counts after ADD.
const MEASURE: Duration = Duration::from_secs(3);

/// The node, its API server and the new pod's network namespace.
struct Cluster {
    node: Node,
    server: FakeApiServer,
    kubeconfig: PathBuf,
    web_netns: NetnsGuard,
}

/// A network namespace removed on drop.
struct NetnsGuard(String);

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn web_pod(ip: Option<Ipv4Addr>) -> Value {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "x", "labels": {"app": "web"}},
        "spec": {"nodeName": NODE_NAME, "containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80}]}]},
        "status": {"phase": "Pending"},
    });
    if let Some(ip) = ip {
        pod["status"] = json!({"phase": "Running", "podIP": ip.to_string(), "podIPs": [{"ip": ip.to_string()}]});
    }
    pod
}

impl Cluster {
    /// The node with the peer pod, the API holding it, the pending `web`
    /// pod and a policy isolating `web` for ingress; the agent running.
    fn new() -> Self {
        let mut node = Node::new(&["peer"]);
        let listener = in_netns(&node.node, || TcpListener::bind("127.0.0.1:0").unwrap());
        let server = FakeApiServer::serve(listener, Options::default()).unwrap();
        let kubeconfig = node.dir.join("kubeconfig");
        server.write_kubeconfig(&kubeconfig).unwrap();
        server
            .apply_yaml("apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n")
            .unwrap();
        server.apply_yaml(&node.pods_yaml()).unwrap();
        server.apply(web_pod(None)).unwrap();
        server.apply_yaml(&deny_ingress("web")).unwrap();
        let web_netns = NetnsGuard(format!("{}-web", node.node.trim_end_matches("-node")));
        run(Command::new("ip").args(["netns", "add", &web_netns.0]));
        node.start_kubernetes_agent(
            &kubeconfig,
            server.resource_version(),
            &["--node-name", NODE_NAME],
        );
        Self {
            node,
            server,
            kubeconfig,
            web_netns,
        }
    }

    fn start_agent(&mut self) {
        let rv = self.server.resource_version();
        self.node
            .start_kubernetes_agent(&self.kubeconfig, rv, &["--node-name", NODE_NAME]);
    }

    /// The chain: ptp with host-local (its own dataDir), then, when
    /// `bulkhead` is given, bulkhead-cni with those settings.
    fn chain(&self, bulkhead: Option<Value>) -> Chain {
        let data_dir = self.node.dir.join("host-local");
        let mut plugins = vec![json!({
            "type": "ptp",
            "ipMasq": false,
            "mtu": 1500,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": "10.78.0.0/24"}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": data_dir,
            },
        })];
        if let Some(mut b) = bulkhead {
            b["type"] = "bulkhead-cni".into();
            b["socket"] = self
                .node
                .dir
                .join("agent.sock")
                .display()
                .to_string()
                .into();
            plugins.push(b);
        }
        Chain {
            cni_version: "1.0.0".into(),
            name: "bhnet".into(),
            plugins,
        }
    }

    fn attach(&self, container_id: &str) -> Attach {
        Attach {
            node_netns: self.node.node.clone(),
            container_id: container_id.into(),
            netns_path: format!("/run/netns/{}", self.web_netns.0),
            ifname: "eth0".into(),
            args:
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=x;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=c"
                    .into(),
        }
    }

    /// Applies `obj` as kubelet or a user would and waits until enforced.
    fn change(&mut self, obj: Value) {
        self.server.apply(obj).unwrap();
        self.node
            .wait_revision(self.server.resource_version(), PATIENCE);
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The address of a CNI result's first IP.
fn result_ip(result: &Value) -> Ipv4Addr {
    let a = result["ips"][0]["address"].as_str().expect("an address");
    a.split('/').next().unwrap().parse().unwrap()
}

/// The peer flooding `to`: one UDP datagram a millisecond and TCP
/// connects back to back, to port 80, bounded in count and time.
struct Flood {
    stop: Arc<AtomicBool>,
    udp_sent: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
}

impl Flood {
    const MAX_FOR: Duration = Duration::from_secs(90);
    const MAX_DATAGRAMS: u64 = 90_000;

    fn start(peer_netns: &str, to: Ipv4Addr) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let udp_sent = Arc::new(AtomicU64::new(0));
        let (s, sent, ns) = (
            Arc::clone(&stop),
            Arc::clone(&udp_sent),
            peer_netns.to_owned(),
        );
        let udp = std::thread::spawn(move || {
            enter(&ns);
            let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
            let start = Instant::now();
            while !s.load(Ordering::Relaxed)
                && start.elapsed() < Self::MAX_FOR
                && sent.load(Ordering::Relaxed) < Self::MAX_DATAGRAMS
            {
                // Unreachable until the route exists: errors are expected.
                // Numbered, so a measurement can leave out the datagrams
                // sent before it began (still in flight then).
                let seq = sent.load(Ordering::Relaxed);
                if sock.send_to(&flood_payload(seq), (to, 80)).is_ok() {
                    sent.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        let (s, ns) = (Arc::clone(&stop), peer_netns.to_owned());
        let tcp = std::thread::spawn(move || {
            enter(&ns);
            let start = Instant::now();
            while !s.load(Ordering::Relaxed) && start.elapsed() < Self::MAX_FOR {
                let addr = SocketAddr::from((to, 80));
                if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        });
        Self {
            stop,
            udp_sent,
            threads: vec![udp, tcp],
        }
    }

    fn sent(&self) -> u64 {
        self.udp_sent.load(Ordering::Relaxed)
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The flood's datagram number `seq`: `flood` and the number (big endian).
fn flood_payload(seq: u64) -> [u8; 13] {
    let mut p = [0u8; 13];
    p[..5].copy_from_slice(b"flood");
    p[5..].copy_from_slice(&seq.to_be_bytes());
    p
}

/// The number of a flood datagram's payload.
fn flood_seq(payload: &[u8]) -> Option<u64> {
    let n = payload.strip_prefix(b"flood")?.get(..8)?;
    Some(u64::from_be_bytes(n.try_into().ok()?))
}

/// Whether an Ethernet frame is an IPv4 packet from `peer`.
fn from_peer(f: &[u8], peer: Ipv4Addr) -> bool {
    f.len() >= 34 && f[12..14] == [0x08, 0x00] && f[26..30] == peer.octets()
}

/// The flood number of an Ethernet frame holding an IPv4 UDP flood
/// datagram from `peer`.
fn frame_flood_seq(f: &[u8], peer: Ipv4Addr) -> Option<u64> {
    if !from_peer(f, peer) || f[23] != 17 {
        return None;
    }
    let udp = 14 + usize::from(f[14] & 0x0f) * 4;
    flood_seq(f.get(udp + 8..)?)
}

/// What the new pod received from the peer.
#[derive(Debug, Default, Clone, Copy)]
struct Received {
    tcp_accepted: u64,
    udp_datagrams: u64,
    captured: u64,
}

impl Received {
    fn total(self) -> u64 {
        self.tcp_accepted + self.udp_datagrams + self.captured
    }
}

/// The pod's side, started right after ADD: a capture on its interface
/// and its TCP and UDP servers on port 80, counting what comes from `peer`
/// for `measure`: connections accepted, datagrams received and frames
/// captured. With `from_seq` above 0, only flood datagrams numbered
/// `from_seq` or later count (sent once the measurement began: one sent
/// before may still be on its way through the veth when it begins).
fn receive(netns: &str, peer: Ipv4Addr, measure: Duration, from_seq: u64) -> Received {
    let link = RawLink::open(netns, "eth0").expect("AF_PACKET on the pod's interface");
    let capture = std::thread::spawn(move || {
        link.capture(measure, usize::MAX)
            .iter()
            .filter(|f| from_peer(f, peer))
            .filter(|f| from_seq == 0 || frame_flood_seq(f, peer).is_some_and(|n| n >= from_seq))
            .count() as u64
    });
    let ns = netns.to_owned();
    let servers = std::thread::spawn(move || {
        enter(&ns);
        let tcp = TcpListener::bind("0.0.0.0:80").unwrap();
        tcp.set_nonblocking(true).unwrap();
        let udp = UdpSocket::bind("0.0.0.0:80").unwrap();
        udp.set_read_timeout(Some(Duration::from_millis(2)))
            .unwrap();
        let (mut accepted, mut datagrams) = (0, 0);
        let mut buf = [0u8; 64];
        let end = Instant::now() + measure;
        while Instant::now() < end {
            while let Ok((_, from)) = tcp.accept() {
                accepted += u64::from(from.ip() == peer);
            }
            if let Ok((n, from)) = udp.recv_from(&mut buf) {
                let counted =
                    from_seq == 0 || flood_seq(&buf[..n]).is_some_and(|seq| seq >= from_seq);
                datagrams += u64::from(from.ip() == peer && counted);
            }
        }
        (accepted, datagrams)
    });
    let (tcp_accepted, udp_datagrams) = servers.join().unwrap();
    Received {
        tcp_accepted,
        udp_datagrams,
        captured: capture.join().unwrap(),
    }
}

fn plugins_present() -> bool {
    let ok = ["ptp", "host-local"]
        .iter()
        .all(|p| std::path::Path::new(CNI_PLUGIN_DIR).join(p).exists());
    if !ok {
        bulkhead_netns_tests::skip(&format!(
            "{CNI_PLUGIN_DIR}/ptp and host-local are missing (run `cargo xtask setup`)"
        ));
    }
    ok
}

#[test]
fn with_bulkhead_cni_chained_the_denied_peer_never_reaches_the_new_pod() {
    if !privileged() || !plugins_present() {
        return;
    }
    let _serial = serial();
    let mut c = Cluster::new();
    let peer = c.node.pod("peer").clone();
    let flood = Flood::start(&peer.netns, WEB_IP);
    let chain = c.chain(Some(json!({"timeout": "30s"})));
    let attach = c.attach("c-web-1");
    let result = chain
        .add(&attach)
        .unwrap_or_else(|f| panic!("{f}\n{}", c.node.agent_log()));
    assert_eq!(result_ip(&result), WEB_IP, "{result}");
    assert!(
        result["interfaces"]
            .as_array()
            .is_some_and(|i| i.len() == 2),
        "ptp's result passed through: {result}"
    );
    let sent_before = flood.sent();
    let got = receive(&c.web_netns.0, peer.ip, MEASURE, 0);
    let sent = flood.sent() - sent_before;
    assert!(
        sent > 500,
        "the peer flooded while the pod listened ({sent} datagrams)"
    );
    assert_eq!(
        got.total(),
        0,
        "the denied peer reached the new pod: {got:?}"
    );
    // CHECK: enforced.
    chain
        .check(&attach, &result)
        .unwrap_or_else(|f| panic!("{f}"));
    // The zero was the policy's: allowing the peer lets the flood in.
    c.change(
        serde_yaml_ng::from_str::<Value>(&allow("peer-to-web", "peer", "web", &[80])).unwrap(),
    );
    let got = receive(&c.web_netns.0, peer.ip, MEASURE, 0);
    assert!(
        got.udp_datagrams > 0 && got.captured > 0,
        "allowed now: {got:?}"
    );
    drop(flood);
    // DEL, then CHECK of the gone container fails (code 3: unknown).
    chain
        .del(&attach, Some(&result))
        .unwrap_or_else(|f| panic!("{f}"));
    let f = chain.check(&attach, &result).expect_err("CHECK after DEL");
    assert_eq!(
        f.plugin, "ptp",
        "ptp's own CHECK fails first once its veth is gone: {f}"
    );
    let only_ours = Chain {
        plugins: chain.plugins[1..].to_vec(),
        ..chain.clone()
    };
    let f = only_ours
        .check(&attach, &result)
        .expect_err("CHECK of an unknown container");
    assert_eq!(
        f.error.as_ref().and_then(|e| e["code"].as_u64()),
        Some(3),
        "{f}"
    );
}

#[test]
fn without_bulkhead_cni_the_window_exists_until_kubelet_reports_the_address() {
    if !privileged() || !plugins_present() {
        return;
    }
    let _serial = serial();
    let mut c = Cluster::new();
    let peer = c.node.pod("peer").clone();
    let flood = Flood::start(&peer.netns, WEB_IP);
    let chain = c.chain(None);
    let attach = c.attach("c-web-1");
    let result = chain.add(&attach).unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(result_ip(&result), WEB_IP);
    let got = receive(&c.web_netns.0, peer.ip, MEASURE, 0);
    assert!(
        got.udp_datagrams > 0 && got.captured > 0,
        "the window: before status.podIP the agent cannot know the pod: {got:?}"
    );
    // kubelet reports the address after the flood: from then on, enforced
    // (for datagrams sent from then on: one already past the hooks may
    // still be delivered).
    c.change(web_pod(Some(WEB_IP)));
    let enforced_from = flood.sent().max(1);
    let got = receive(&c.web_netns.0, peer.ip, MEASURE, enforced_from);
    assert_eq!(
        got.udp_datagrams + got.captured,
        0,
        "enforced once known: {got:?}"
    );
    drop(flood);
    chain
        .del(&attach, Some(&result))
        .unwrap_or_else(|f| panic!("{f}"));
}

#[test]
fn add_fails_closed_without_the_agent_and_passes_with_failure_policy_ignore() {
    if !privileged() || !plugins_present() {
        return;
    }
    let _serial = serial();
    let mut c = Cluster::new();
    c.node.stop_agent(nix::sys::signal::Signal::SIGTERM);
    let timeout = Duration::from_secs(2);
    let chain = c.chain(Some(json!({"timeout": "2s"})));
    let attach = c.attach("c-web-1");
    let started = Instant::now();
    let f = chain
        .add(&attach)
        .expect_err("ADD without an agent fails closed");
    assert_eq!(f.plugin, "bulkhead-cni", "{f}");
    assert!(
        started.elapsed() >= timeout,
        "it waited for the timeout: {f}"
    );
    assert_ne!(f.status, Some(0));
    let err = f.error.as_ref().expect("an error result on stdout");
    assert_eq!(err["code"], 100, "{err}");
    assert_eq!(err["cniVersion"], "1.0.0");
    assert!(err["details"].as_str().unwrap().contains("x/web"), "{err}");
    // The runtime cleans up a failed ADD with DEL: works without the agent.
    chain.del(&attach, None).unwrap_or_else(|f| panic!("{f}"));
    // failurePolicy ignore: the pod starts, unenforced, and says so.
    let ignore = c.chain(Some(json!({"timeout": "1s", "failurePolicy": "ignore"})));
    let result = ignore.add(&attach).unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(result_ip(&result).octets()[..3], [10, 78, 0], "{result}");
    ignore
        .del(&attach, Some(&result))
        .unwrap_or_else(|f| panic!("{f}"));
    // With the agent back, the same chain passes and CHECK agrees.
    c.start_agent();
    let result = chain
        .add(&attach)
        .unwrap_or_else(|f| panic!("{f}\n{}", c.node.agent_log()));
    chain
        .check(&attach, &result)
        .unwrap_or_else(|f| panic!("{f}"));
    // A restarted agent adopts the registration (CHECK still passes).
    c.node.stop_agent(nix::sys::signal::Signal::SIGTERM);
    c.start_agent();
    let deadline = Instant::now() + PATIENCE;
    while let Err(f) = chain.check(&attach, &result) {
        assert!(Instant::now() < deadline, "CHECK after a restart: {f}");
        std::thread::sleep(Duration::from_millis(100));
    }
    chain
        .del(&attach, Some(&result))
        .unwrap_or_else(|f| panic!("{f}"));
}
