//! Quarantine (issue 17) through a real agent and the real CLI: with
//! allow-all policies in force (a NetworkPolicy and a cluster-admin
//! Accept), `bulkhead quarantine x/a` stops an established TCP connection
//! and a UDP stream in each direction between `a` and `b`; nothing new
//! passes; the quarantine survives a SIGKILL and restart of the agent; and
//! `bulkhead unquarantine x/a` restores exactly the verdicts of before
//! (an admin Deny of c → a included).
//!
//! The time from the command's start until the last echo of any stream is
//! measured and printed (the acceptance figure is 10 ms), not asserted: no
//! timing assertions on a loaded 2-core machine.

mod agent_support;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use agent_support::{Conn, Node, PodNs, bulkhead_bin, enter, in_netns, privileged, serial, tcp_ok};
use nix::sys::signal::Signal;

/// Allow-all in every tier: a NetworkPolicy allowing everything in and out
/// of every pod of x, a cluster-admin Accept of everything to and from x,
/// and, above it, a cluster-admin Deny of c → a (so "exactly as before"
/// has a deny to restore).
const POLICY: &str = "\
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-all, namespace: x}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
  ingress: [{}]
  egress: [{}]
---
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: accept-x}
spec:
  tier: Admin
  priority: 10
  subject: {namespaces: {matchLabels: {kubernetes.io/metadata.name: x}}}
  ingress:
  - {action: Accept, from: [{namespaces: {}}]}
  egress:
  - {action: Accept, to: [{networks: [0.0.0.0/0]}]}
---
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: no-c-to-a}
spec:
  tier: Admin
  priority: 0
  subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: a}}}}
  ingress:
  - {action: Deny, from: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: c}}}}]}
";

/// Runs `bulkhead ARGS --socket SOCK` from the test's namespace (the
/// socket is a file); its stdout, after asserting it succeeded.
fn cli(socket: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new(bulkhead_bin())
        .args(args)
        .arg("--socket")
        .arg(socket)
        .output()
        .expect("run bulkhead");
    assert!(
        out.status.success(),
        "bulkhead {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether a datagram from `from` to `to`:80 is echoed within `timeout`.
fn udp_ok(from: &PodNs, to: Ipv4Addr, timeout: Duration) -> bool {
    in_netns(&from.netns, move || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        s.connect(SocketAddr::from((to, 80))).unwrap();
        s.set_read_timeout(Some(timeout)).unwrap();
        let mut buf = [0u8; 16];
        s.send(b"probe").is_ok() && s.recv(&mut buf).is_ok_and(|n| &buf[..n] == b"probe")
    })
}

/// Every ordered pair of `pods`, TCP and UDP: (from, to, tcp, udp).
fn matrix(pods: &[&PodNs]) -> Vec<(String, String, bool, bool)> {
    let t = Duration::from_millis(300);
    let mut out = Vec::new();
    for from in pods {
        for to in pods {
            if from.name != to.name {
                out.push((
                    from.name.clone(),
                    to.name.clone(),
                    tcp_ok(from, to.ip, t),
                    udp_ok(from, to.ip, t),
                ));
            }
        }
    }
    out
}

/// Sends a message and reads what came back (0: nothing, for now).
type Exchange = Box<dyn FnMut(&[u8], &mut [u8]) -> usize>;

/// A stream from a pod to another pod's echo server, a message every half
/// millisecond or so: how many echoes came back, and when the last did.
struct Stream {
    name: &'static str,
    stop: Arc<AtomicBool>,
    echoed: Arc<AtomicU64>,
    /// Nanoseconds after `base` of the last echo (0: none yet).
    last_ns: Arc<AtomicU64>,
    handle: Option<JoinHandle<()>>,
}

impl Stream {
    /// Starts it: TCP (one connection, established before this returns)
    /// or UDP (one connected socket).
    fn start(name: &'static str, tcp: bool, from: &PodNs, to: Ipv4Addr, base: Instant) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let echoed = Arc::new(AtomicU64::new(0));
        let last_ns = Arc::new(AtomicU64::new(0));
        let (stop2, echoed2, last2) = (stop.clone(), echoed.clone(), last_ns.clone());
        let netns = from.netns.clone();
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let handle = std::thread::spawn(move || {
            enter(&netns);
            let to = SocketAddr::from((to, 80));
            let mut io: Exchange = if tcp {
                let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(1))
                    .expect("connect the TCP stream");
                s.set_nodelay(true).unwrap();
                s.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
                s.set_write_timeout(Some(Duration::from_millis(5))).unwrap();
                Box::new(move |msg, buf| {
                    // After the cut the send buffer fills: a timeout, fine.
                    let _ = s.write_all(msg);
                    s.read(buf).unwrap_or(0)
                })
            } else {
                let s = UdpSocket::bind("0.0.0.0:0").unwrap();
                s.connect(to).unwrap();
                s.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
                Box::new(move |msg, buf| {
                    let _ = s.send(msg);
                    // Nothing within the timeout (or refused): no echo.
                    s.recv(buf).unwrap_or(0)
                })
            };
            ready_tx.send(()).unwrap();
            let mut buf = [0u8; 4096];
            while !stop2.load(Ordering::Relaxed) {
                if io(b"ping", &mut buf) > 0 {
                    echoed2.fetch_add(1, Ordering::Relaxed);
                    last2.store(base.elapsed().as_nanos() as u64, Ordering::Relaxed);
                }
                // Paced: four streams must not starve the agent of CPU.
                std::thread::sleep(Duration::from_micros(500));
            }
        });
        ready
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|_| panic!("stream {name} did not start"));
        Self {
            name,
            stop,
            echoed,
            last_ns,
            handle: Some(handle),
        }
    }

    fn echoed(&self) -> u64 {
        self.echoed.load(Ordering::Relaxed)
    }

    /// When the last echo came, after `base`.
    fn last(&self) -> Option<Duration> {
        match self.last_ns.load(Ordering::Relaxed) {
            0 => None,
            ns => Some(Duration::from_nanos(ns)),
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Streams in both directions between `a` and `b`, TCP and UDP; asserts
/// they flow; quarantines `a` with the CLI and measures how long after the
/// command's start the last echo came (the cut-off); asserts every stream
/// stopped. The cut-off and how long the command took.
fn quarantine_and_measure(
    socket: &Path,
    a: &PodNs,
    b: &PodNs,
) -> (Duration, Duration, Vec<Stream>) {
    let base = Instant::now();
    let streams = vec![
        Stream::start("TCP a → b", true, a, b.ip, base),
        Stream::start("TCP b → a", true, b, a.ip, base),
        Stream::start("UDP a → b", false, a, b.ip, base),
        Stream::start("UDP b → a", false, b, a.ip, base),
    ];
    let before: Vec<u64> = streams.iter().map(Stream::echoed).collect();
    std::thread::sleep(Duration::from_millis(300));
    for (s, n) in streams.iter().zip(&before) {
        assert!(
            s.echoed() > n + 10,
            "{} flows before the quarantine",
            s.name
        );
    }
    let start = base.elapsed();
    let out = cli(socket, &["quarantine", "x/a", "--reason", "test"]);
    let returned = base.elapsed() - start;
    assert!(
        out.contains("x/a: quarantined (test)") && out.contains("enforced on this node"),
        "{out}"
    );
    // Whatever was in flight has landed by now; then nothing may come.
    std::thread::sleep(Duration::from_millis(200));
    let settled: Vec<u64> = streams.iter().map(Stream::echoed).collect();
    std::thread::sleep(Duration::from_secs(1));
    for (s, n) in streams.iter().zip(&settled) {
        assert_eq!(s.echoed(), *n, "{} stopped: nothing in a second", s.name);
    }
    let mut cut = Duration::ZERO;
    for s in &streams {
        let last = s.last().expect("echoes were seen");
        let after = last.saturating_sub(start);
        eprintln!(
            "  {}: last echo {after:?} after the command started",
            s.name
        );
        cut = cut.max(after);
    }
    (cut, returned, streams)
}

#[test]
fn quarantine_cuts_both_ways_at_once_survives_a_restart_and_lifts_exactly() {
    if !privileged() {
        return;
    }
    let _serial = serial();
    let mut node = Node::new(&["a", "b", "c"]);
    let (a, b, c) = (
        node.pod("a").clone(),
        node.pod("b").clone(),
        node.pod("c").clone(),
    );
    let socket = node.dir.join("agent.sock");
    node.write("policy.yaml", POLICY);
    node.start_agent(&[]);

    let before = matrix(&[&a, &b, &c]);
    let denied: Vec<_> = before.iter().filter(|m| !m.2 || !m.3).collect();
    assert_eq!(
        denied,
        [&("c".to_owned(), "a".to_owned(), false, false)],
        "allow-all but the admin Deny of c → a"
    );

    // 1. The cut, measured.
    let (cut, returned, streams) = quarantine_and_measure(&socket, &a, &b);
    eprintln!(
        "quarantine cut-off: every stream stopped {cut:?} after the command started \
         (the command returned after {returned:?}; acceptance: 10 ms)"
    );
    let mut cuts = vec![cut];

    // 2. Nothing passes: new connections both ways, the established one.
    let t = Duration::from_millis(300);
    for (from, to) in [(&a, &b), (&b, &a), (&c, &a), (&a, &c)] {
        assert!(
            !tcp_ok(from, to.ip, t),
            "new TCP {} → {}",
            from.name,
            to.name
        );
        assert!(
            !udp_ok(from, to.ip, t),
            "new UDP {} → {}",
            from.name,
            to.name
        );
    }
    assert!(tcp_ok(&b, c.ip, t), "others still talk");
    drop(streams);
    let status = node.status();
    let q = &status["quarantines"][0];
    assert!(
        q["namespace"] == "x"
            && q["pod"] == "a"
            && q["reason"] == "test"
            && q["local"] == true
            && q["enforced"] == true,
        "{status}"
    );
    let explained = std::process::Command::new(bulkhead_bin())
        .arg("explain")
        .arg("--manifests")
        .arg(&node.manifests)
        .args([
            "--from", "x/b", "--to", "x/a", "--port", "80", "--output", "json",
        ])
        .arg("--agent-socket")
        .arg(&socket)
        .output()
        .unwrap();
    let explained: serde_json::Value = serde_json::from_slice(&explained.stdout).unwrap();
    assert_eq!(explained["allowed"], false, "{explained}");
    assert!(
        explained.to_string().contains("quarantined: test"),
        "{explained}"
    );
    let listed = cli(&socket, &["quarantine", "--list"]);
    assert!(
        listed.contains("x/a") && listed.contains("enforced here"),
        "{listed}"
    );

    // 3. Killed and started again: still quarantined.
    node.stop_agent(Signal::SIGKILL);
    let revision = node.status()["revision"].as_u64().unwrap();
    node.start_agent(&[]);
    assert_eq!(
        node.status()["revision"].as_u64().unwrap(),
        revision,
        "the restarted agent compiled the quarantine in: nothing to switch"
    );
    for (from, to) in [(&a, &b), (&b, &a)] {
        assert!(
            !tcp_ok(from, to.ip, t),
            "after restart: TCP {} → {}",
            from.name,
            to.name
        );
        assert!(
            !udp_ok(from, to.ip, t),
            "after restart: UDP {} → {}",
            from.name,
            to.name
        );
    }
    let status = node.status();
    assert_eq!(status["quarantines"][0]["pod"], "a", "{status}");
    assert!(status["agent_pid"].is_u64());

    // 4. Lifted: exactly the verdicts of before.
    let out = cli(&socket, &["unquarantine", "x/a"]);
    assert!(out.contains("x/a: quarantine lifted"), "{out}");
    assert!(out.contains("quarantines: none"), "{out}");
    let conn = Conn::open(&a, b.ip);
    assert!(conn.ping(), "a → b connects and talks again");
    drop(conn);
    assert_eq!(
        matrix(&[&a, &b, &c]),
        before,
        "exactly the verdicts of before"
    );
    assert!(node.status()["quarantines"].as_array().unwrap().is_empty());

    // 5. More cut-off measurements (quarantine, measure, lift).
    for _ in 0..4 {
        let (cut, _, streams) = quarantine_and_measure(&socket, &a, &b);
        drop(streams);
        cuts.push(cut);
        cli(&socket, &["unquarantine", "x/a"]);
        assert!(tcp_ok(&a, b.ip, Duration::from_secs(1)), "lifted again");
    }
    cuts.sort();
    eprintln!(
        "quarantine cut-off over {} runs: min {:?}, median {:?}, max {:?}",
        cuts.len(),
        cuts[0],
        cuts[cuts.len() / 2],
        cuts[cuts.len() - 1]
    );
    assert_eq!(cuts.len(), 5, "every run measured");
}
