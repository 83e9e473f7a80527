//! Attacks from inside lab pods, each seen by an observer in the target
//! pod that does not depend on Bulkhead (a capture on its interface, its
//! own sockets), on real packets through the real agent:
//!
//! - neighbour discovery and MLD messages addressed across the node to
//!   another pod (with a spoofed or the attacker's own source) never reach
//!   it, while IPv6 between allowed pods (which needs neighbour discovery
//!   with the node) keeps working;
//! - an ICMP error injected by a pod that is not a connection's peer never
//!   reaches the connection's socket (v4 and v6), while the peer's own
//!   error still does;
//! - the pod's own node reaches an isolated pod (a TCP probe and an HTTP
//!   GET, as kubelet's probes do), and a denied pod still does not;
//! - a reused fragment ID does not let a denied datagram's later fragments
//!   through on the record of an allowed one.
//!
//! Every crafted frame carries the attacker's own MAC and goes to the
//! node's end of its veth, as the pod's stack would send it.

mod lab_support;
#[path = "lab_support/traffic.rs"]
mod traffic;

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use bulkhead_netns_tests::collectors::in_netns;
use bulkhead_netns_tests::packet::{V4, ether, ipv4, ipv6};
use bulkhead_netns_tests::raw::{RawLink, fill_checksums, internet_checksum};
use lab_support::{Lab, privileged, serial};
use traffic::{IO_TIMEOUT, Pod, UdpEcho, udp_client, udp_exchange};

/// The marker every attack payload carries, so the observer counts only
/// the attacker's frames.
const MARKER: &[u8; 16] = b"BULKHEAD-ATTACK!";
/// The marker of traffic that must arrive.
const ALLOWED_MARKER: &[u8; 16] = b"BULKHEAD-ALLOWED";

/// x/a may only send UDP 81 to y/v; y is isolated for ingress: y/c lets
/// y/b in on UDP 81-82, y/v lets x/a in on UDP 81, y/b lets nobody in.
fn manifests() -> String {
    lab_support::bare_pods(&[("x", "a"), ("y", "b"), ("y", "c"), ("y", "v")])
        + "\
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: x, name: a-egress}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress:
  - to:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: y}}
      podSelector: {matchLabels: {pod: v}}
    ports: [{protocol: UDP, port: 81}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: y, name: default-deny}
spec: {podSelector: {}, policyTypes: [Ingress]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: y, name: c-from-b}
spec:
  podSelector: {matchLabels: {pod: c}}
  ingress:
  - from: [{podSelector: {matchLabels: {pod: b}}}]
    ports: [{protocol: UDP, port: 81}, {protocol: UDP, port: 82}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: y, name: v-from-a}
spec:
  podSelector: {matchLabels: {pod: v}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: x}}
      podSelector: {matchLabels: {pod: a}}
    ports: [{protocol: UDP, port: 81}]
"
}

/// A lab of [`manifests`] and what the attacks need from it.
struct Scene {
    lab: Lab,
    state: serde_json::Value,
    pods: Vec<Pod>,
}

impl Scene {
    fn up(name: &str) -> Scene {
        let lab = Lab::new(name, &manifests());
        let out = lab.up(&[]);
        assert!(
            out.status.success(),
            "lab up: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let state = lab.state();
        let pods = Pod::all(&state);
        Scene { lab, state, pods }
    }

    fn pod(&self, name: &str) -> &Pod {
        self.pods.iter().find(|p| p.name == name).expect("pod")
    }

    fn host(&self, name: &str) -> &serde_json::Value {
        self.state["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["name"] == name)
            .expect("host")
    }

    fn node(&self) -> String {
        self.state["node"].as_str().unwrap().to_owned()
    }

    /// The pod's MAC.
    fn mac(&self, pod: &str) -> [u8; 6] {
        parse_mac(self.host(pod)["mac"].as_str().unwrap())
    }

    /// The MAC of the node's end of the pod's veth.
    fn gateway_mac(&self, pod: &str) -> [u8; 6] {
        let veth = self.host(pod)["veth"].as_str().unwrap();
        let out = std::process::Command::new("ip")
            .args(["-n", &self.node(), "-j", "link", "show", "dev", veth])
            .output()
            .expect("ip link");
        let links: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j");
        parse_mac(links[0]["address"].as_str().expect("address"))
    }

    /// A frame from `pod` (its MAC) to the node's end of its veth.
    fn frame_from(&self, pod: &str, ether_type: u16, ip_packet: &[u8]) -> Vec<u8> {
        let mut f = ether(self.mac(pod), ether_type, ip_packet);
        f[..6].copy_from_slice(&self.gateway_mac(pod));
        f
    }

    /// The drop counters of `status --lab`.
    fn drops(&self, reason: &str) -> u64 {
        let out =
            lab_support::bulkhead_ok(&["status", "--lab", &self.lab.name, "--output", "json"]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("status JSON");
        v["drops"]
            .as_array()
            .expect("drops")
            .iter()
            .find(|d| d[0] == reason)
            .and_then(|d| d[1].as_u64())
            .unwrap_or(0)
    }
}

fn parse_mac(s: &str) -> [u8; 6] {
    let v: Vec<u8> = s
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).expect("hex"))
        .collect();
    v.try_into().expect("six bytes")
}

fn v6(p: &Pod) -> Ipv6Addr {
    match p.ip(false) {
        IpAddr::V6(a) => a,
        IpAddr::V4(_) => unreachable!(),
    }
}

fn v4(p: &Pod) -> Ipv4Addr {
    match p.ip(true) {
        IpAddr::V4(a) => a,
        IpAddr::V6(_) => unreachable!(),
    }
}

/// How long any wait for the lab to act may last: generous, so a loaded
/// machine passes; reached only when something is wrong.
const PATIENCE: Duration = Duration::from_secs(20);

/// The frames carrying `marker` that `observer` captures until `done()`
/// holds (checked between short reads) or [`PATIENCE`] runs out, and for a
/// moment after.
fn captured_until(observer: &RawLink, marker: &[u8], done: impl Fn() -> bool) -> usize {
    let deadline = Instant::now() + PATIENCE;
    let mut seen = 0;
    loop {
        let finished = done() || Instant::now() > deadline;
        let wait = if finished { 200 } else { 50 };
        seen += with_marker(
            &observer.capture(Duration::from_millis(wait), 10_000),
            marker,
        );
        if finished {
            return seen;
        }
    }
}

/// Waits until `done()` holds, at most [`PATIENCE`]; whether it did.
fn eventually(done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
    true
}

fn with_marker(frames: &[Vec<u8>], marker: &[u8]) -> usize {
    frames
        .iter()
        .filter(|f| f.windows(marker.len()).any(|w| w == marker))
        .count()
}

/// Whether a frame carrying `marker` reaches `observer` within [`PATIENCE`].
fn arrives(observer: &RawLink, marker: &[u8]) -> bool {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if with_marker(&observer.capture(Duration::from_millis(50), 10_000), marker) > 0 {
            return true;
        }
    }
    false
}

/// An ICMPv6 message of `ty` with a 1 KB payload that starts with the
/// marker (the target address field of an NS/NA holds it too).
fn icmpv6_message(ty: u8) -> Vec<u8> {
    let mut m = vec![ty, 0, 0, 0, 0, 0, 0, 0];
    m.extend(MARKER);
    m.resize(8 + 1024, 0x55);
    m
}

#[test]
fn neighbour_discovery_and_mld_stay_on_the_link() {
    if !privileged() {
        return;
    }
    let _serial = serial();
    let s = Scene::up("atknd");
    let (a, b, v) = (s.pod("x/a"), s.pod("y/b"), s.pod("y/v"));
    let observer = RawLink::open(&v.netns, "eth0").expect("capture in y/v");
    let attacker = RawLink::open(&a.netns, "eth0").expect("raw socket in x/a");
    // 40 of each type 130-137 and 143, from another pod's address
    // (spoofed) and from the attacker's own, to the victim's address.
    let (spoofed0, denied0) = (s.drops("spoofed_ip"), s.drops("policy_denied"));
    let mut sent = 0;
    for src in [v6(b), v6(a)] {
        for ty in [130u8, 131, 132, 133, 134, 135, 136, 137, 143] {
            let mut packet = ipv6(src, v6(v), 58, &icmpv6_message(ty));
            packet[7] = 255; // the hop limit neighbour discovery requires
            let mut f = s.frame_from("x/a", 0x86dd, &packet);
            fill_checksums(&mut f);
            for _ in 0..20 {
                attacker.send(&f).expect("send");
                sent += 1;
            }
        }
    }
    // Until both halves are dropped where they leave x/a: then none is
    // on its way any more.
    let seen = captured_until(&observer, MARKER, || {
        s.drops("spoofed_ip") >= spoofed0 + 180 && s.drops("policy_denied") >= denied0 + 180
    });
    assert_eq!(seen, 0, "{seen} of {sent} ND/MLD frames reached y/v");
    assert!(
        s.drops("spoofed_ip") >= spoofed0 + 180,
        "the spoofed ones are counted"
    );
    // IPv6 between allowed pods still works: it needs neighbour discovery
    // between each pod and the node.
    let mut echo = UdpEcho::start(&v.netns, SocketAddr::new(v.ip(false), 81));
    udp_exchange(a, echo.addr(), 3, 100);
    echo.stop();
}

/// A port-unreachable from `from` (crafted) to `victim` about the UDP flow
/// `victim_addr` → `peer_addr`.
fn port_unreachable(
    s: &Scene,
    from: &str,
    sender: IpAddr,
    victim_addr: SocketAddr,
    peer_addr: SocketAddr,
) -> Vec<u8> {
    let mut udp = Vec::new();
    udp.extend(victim_addr.port().to_be_bytes());
    udp.extend(peer_addr.port().to_be_bytes());
    udp.extend(16u16.to_be_bytes());
    udp.extend([0, 0]);
    udp.extend(b"datagram");
    let (ether_type, packet) = match (sender, victim_addr.ip(), peer_addr.ip()) {
        (IpAddr::V4(s4), IpAddr::V4(v), IpAddr::V4(p)) => {
            let mut inner = ipv4(v, p, 17, &udp, &V4::default());
            let c = internet_checksum(&inner[..20]);
            inner[10..12].copy_from_slice(&c.to_be_bytes());
            let mut icmp = vec![3, 3, 0, 0, 0, 0, 0, 0];
            icmp.extend(inner);
            (0x0800, ipv4(s4, v, 1, &icmp, &V4::default()))
        }
        (IpAddr::V6(s6), IpAddr::V6(v), IpAddr::V6(p)) => {
            let inner = ipv6(v, p, 17, &udp);
            let mut icmp = vec![1, 4, 0, 0, 0, 0, 0, 0];
            icmp.extend(inner);
            (0x86dd, ipv6(s6, v, 58, &icmp))
        }
        _ => unreachable!("one family"),
    };
    let mut f = s.frame_from(from, ether_type, &packet);
    fill_checksums(&mut f);
    f
}

/// A UDP socket of `from` connected to `to` that has exchanged one
/// datagram with it (so conntrack knows the flow).
fn connected(from: &Pod, to: SocketAddr) -> UdpSocket {
    let sock = udp_client(from, to);
    sock.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    sock.send(b"hello").expect("send");
    let mut buf = [0u8; 64];
    sock.recv(&mut buf).expect("echo");
    sock
}

#[test]
fn icmp_errors_come_only_from_the_peer_or_the_path() {
    if !privileged() {
        return;
    }
    let _serial = serial();
    let s = Scene::up("atkicm");
    let (a, b, c) = (s.pod("x/a"), s.pod("y/b"), s.pod("y/c"));
    let attacker = RawLink::open(&a.netns, "eth0").expect("raw socket in x/a");
    for v4 in [true, false] {
        let mut echo = UdpEcho::start(&c.netns, SocketAddr::new(c.ip(v4), 81));
        let sock = connected(b, echo.addr());
        let victim = sock.local_addr().unwrap();
        let before = s.drops("icmp_error_sender");
        let f = port_unreachable(&s, "x/a", a.ip(v4), victim, echo.addr());
        for _ in 0..5 {
            attacker.send(&f).expect("send");
        }
        // Dropped where they leave x/a: then none is on its way any more.
        assert!(
            eventually(|| s.drops("icmp_error_sender") >= before + 5),
            "the injected errors are dropped and counted"
        );
        assert_eq!(
            sock.take_error().expect("SO_ERROR").map(|e| e.kind()),
            None,
            "IPv{}: x/a's injected port-unreachable reached y/b's socket",
            if v4 { 4 } else { 6 }
        );
        // The flow still works, and the drops are counted.
        sock.send(b"again").expect("send");
        let mut buf = [0u8; 64];
        sock.recv(&mut buf).expect("echo after the attack");
        echo.stop();
        // The peer's own error still arrives: nothing listens on UDP 82.
        let refused = in_netns(&b.netns, move || -> std::io::Result<Option<ErrorKind>> {
            let u = UdpSocket::bind(SocketAddr::new(victim.ip(), 0))?;
            u.connect(SocketAddr::new(c.ip(v4), 82))?;
            u.set_read_timeout(Some(IO_TIMEOUT))?;
            u.send(b"anyone?")?;
            let mut buf = [0u8; 16];
            Ok(u.recv(&mut buf).err().map(|e| e.kind()))
        })
        .unwrap()
        .unwrap();
        assert_eq!(
            refused,
            Some(ErrorKind::ConnectionRefused),
            "the peer's error"
        );
    }
}

/// An HTTP server in `netns` on `addr` answering every GET with 200 "ok".
fn http_server(netns: &str, addr: SocketAddr) -> thread::JoinHandle<usize> {
    let listener = in_netns(netns, move || TcpListener::bind(addr))
        .unwrap()
        .expect("bind");
    listener.set_nonblocking(true).unwrap();
    thread::spawn(move || {
        let mut served = 0;
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline && served < 4 {
            match listener.accept() {
                Ok((mut conn, _)) => {
                    conn.set_nonblocking(false).unwrap();
                    conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                    let mut buf = [0u8; 1024];
                    let _ = conn.read(&mut buf);
                    let _ = conn.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    );
                    served += 1;
                }
                Err(_) => thread::sleep(Duration::from_millis(5)),
            }
        }
        served
    })
}

/// From `netns`: GET / on `addr`, connecting within `connect`; the
/// status line, or the error.
fn http_get(netns: &str, addr: SocketAddr, connect: Duration) -> Result<String, String> {
    in_netns(netns, move || {
        let mut c = TcpStream::connect_timeout(&addr, connect).map_err(|e| e.to_string())?;
        c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        write!(
            c,
            "GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .map_err(|e| e.to_string())?;
        let mut body = String::new();
        c.read_to_string(&mut body).map_err(|e| e.to_string())?;
        Ok(body.lines().next().unwrap_or_default().to_owned())
    })
    .unwrap()
}

#[test]
fn the_node_reaches_isolated_pods_and_denied_pods_still_do_not() {
    if !privileged() {
        return;
    }
    let _serial = serial();
    let s = Scene::up("atknod");
    let (a, b, v) = (s.pod("x/a"), s.pod("y/b"), s.pod("y/v"));
    let node = s.node();
    for v4 in [true, false] {
        let addr = SocketAddr::new(v.ip(v4), 8080);
        let server = http_server(&v.netns, addr);
        // A TCP probe (connect and close), then an HTTP GET, from the node.
        in_netns(&node, move || TcpStream::connect_timeout(&addr, IO_TIMEOUT))
            .unwrap()
            .unwrap_or_else(|e| panic!("TCP probe from the node to {addr}: {e}"));
        assert_eq!(
            http_get(&node, addr, IO_TIMEOUT).expect("GET from the node"),
            "HTTP/1.1 200 OK"
        );
        // Pods the policy does not allow still cannot (one SYN, dropped).
        for denied in [a, b] {
            let got = http_get(&denied.netns, addr, Duration::from_millis(700));
            assert!(got.is_err(), "{} reached {addr}: {got:?}", denied.name);
        }
        // Wake the server so it ends on time.
        drop(in_netns(&node, move || TcpStream::connect(addr)));
        drop(in_netns(&node, move || TcpStream::connect(addr)));
        server.join().unwrap();
    }
    a_new_node_address_is_let_in(&s, v);
}

/// An address added to the node (here the preferred source of its route
/// to `v`) is let in once the agent has read it: the agent follows the
/// node's addresses as they change.
fn a_new_node_address_is_let_in(s: &Scene, v: &Pod) {
    let (node, veth) = (
        s.node(),
        s.host(&v.name)["veth"].as_str().unwrap().to_owned(),
    );
    let added: IpAddr = "10.244.255.250".parse().unwrap();
    let ip = |args: &[&str]| {
        let out = std::process::Command::new("ip")
            .args(["-n", &node])
            .args(args)
            .output()
            .expect("ip");
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ip(&["addr", "add", "10.244.255.250/32", "dev", &veth]);
    let to = format!("{}/32", v.ip(true));
    ip(&[
        "route",
        "replace",
        &to,
        "dev",
        &veth,
        "src",
        "10.244.255.250",
    ]);
    let addr = SocketAddr::new(v.ip(true), 8081);
    let listener = in_netns(&v.netns, move || TcpListener::bind(addr))
        .unwrap()
        .expect("bind");
    // Each attempt waits out one SYN retransmission (1 s), so the agent's
    // update lands within an attempt.
    let connected = eventually(|| {
        in_netns(&node, move || {
            TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        })
        .unwrap()
        .is_ok()
    });
    assert!(connected, "the node reaches {addr} from its new address");
    let (_, peer) = listener.accept().expect("accept");
    assert_eq!(peer.ip(), added, "the connection came from the new address");
}

#[test]
fn a_reused_fragment_id_does_not_open_a_denied_datagram() {
    if !privileged() {
        return;
    }
    let _serial = serial();
    let s = Scene::up("atkfrg");
    let (a, v) = (s.pod("x/a"), s.pod("y/v"));
    let observer = RawLink::open(&v.netns, "eth0").expect("capture in y/v");
    let attacker = RawLink::open(&a.netns, "eth0").expect("raw socket in x/a");
    let id = 0x4242;
    // A datagram of 16 + 24 bytes in two fragments: UDP header and 8
    // payload bytes, then 24 bytes at offset 16 (two 8-byte units).
    let fragments = |dport: u16, marker: bool| {
        let mut first = Vec::new();
        first.extend(40000u16.to_be_bytes());
        first.extend(dport.to_be_bytes());
        first.extend(40u16.to_be_bytes());
        first.extend([0, 0]);
        first.extend(b"firstpt!");
        let mut rest = vec![b'r'; 24];
        rest[..16].copy_from_slice(if marker { MARKER } else { ALLOWED_MARKER });
        let frag = |payload: &[u8], offset: u16, more: bool| {
            let o = V4 {
                id,
                frag_offset: offset,
                more,
                ..V4::default()
            };
            let mut f = s.frame_from("x/a", 0x0800, &ipv4(v4(a), v4(v), 17, payload, &o));
            fill_checksums(&mut f);
            f
        };
        (frag(&first, 0, true), frag(&rest, 2, false))
    };
    // The allowed datagram (UDP 81), whole: it reaches y/v.
    let (first, last) = fragments(81, false);
    attacker.send(&first).unwrap();
    attacker.send(&last).unwrap();
    assert!(
        arrives(&observer, ALLOWED_MARKER),
        "the allowed datagram's last fragment reached y/v"
    );
    // The denied one (UDP 82) under the same ID: its first fragment is
    // dropped; its later fragment must not pass on the old record.
    let untracked0 = s.drops("fragment_untracked");
    let (first, last) = fragments(82, true);
    attacker.send(&first).unwrap();
    attacker.send(&last).unwrap();
    let seen = captured_until(&observer, MARKER, || {
        s.drops("fragment_untracked") > untracked0
    });
    assert_eq!(seen, 0, "the denied datagram's later fragment reached y/v");
    assert!(s.drops("fragment_untracked") > untracked0);
}

#[test]
fn a_frame_from_another_pods_mac_is_dropped_as_spoofed() {
    if !privileged() {
        return;
    }
    let _serial = serial();
    // `lab up` registers each pod over CNI (the real bulkhead-cni, with
    // the pod's wiring as prevResult): the agent checks the MACs it learnt.
    let s = Scene::up("atkmac");
    let (a, v) = (s.pod("x/a"), s.pod("y/v"));
    let observer = RawLink::open(&v.netns, "eth0").expect("capture in y/v");
    let attacker = RawLink::open(&a.netns, "eth0").expect("raw socket in x/a");
    let datagram = |marker: &[u8; 16]| {
        let mut udp = Vec::new();
        udp.extend(40000u16.to_be_bytes());
        udp.extend(81u16.to_be_bytes());
        udp.extend(24u16.to_be_bytes());
        udp.extend([0, 0]);
        udp.extend(marker);
        s.frame_from("x/a", 0x0800, &ipv4(v4(a), v4(v), 17, &udp, &V4::default()))
    };
    // Allowed (UDP 81 to y/v) from x/a's own address and MAC: it arrives.
    let mut own = datagram(ALLOWED_MARKER);
    fill_checksums(&mut own);
    attacker.send(&own).unwrap();
    assert!(
        arrives(&observer, ALLOWED_MARKER),
        "x/a's own frame reached y/v"
    );
    // The same datagram from y/b's MAC: dropped where it leaves x/a.
    let spoofed0 = s.drops("spoofed_mac");
    let mut spoofed = datagram(MARKER);
    spoofed[6..12].copy_from_slice(&s.mac("y/b"));
    fill_checksums(&mut spoofed);
    for _ in 0..20 {
        attacker.send(&spoofed).unwrap();
    }
    let seen = captured_until(&observer, MARKER, || {
        s.drops("spoofed_mac") >= spoofed0 + 20
    });
    assert_eq!(seen, 0, "a frame from another pod's MAC reached y/v");
    assert!(
        s.drops("spoofed_mac") >= spoofed0 + 20,
        "counted as spoofed_mac"
    );
}
