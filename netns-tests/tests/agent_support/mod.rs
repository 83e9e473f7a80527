//! A tiny node for agent tests, made and removed by each test: a node
//! namespace, one namespace per pod with a veth into it (pod IP routed to
//! the host-side veth, proxy ARP), a private bpffs instance for the pins, a
//! manifest directory, and the `bulkhead agent` running inside the node
//! namespace. Everything is removed on drop, also when the test fails.
//! Traffic only flows between these namespaces.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bulkhead_agent::AgentState;
use bulkhead_netkit::{Netns, NsHandle};
use bulkhead_netns_tests::pods::{PodWiring, prepare_node, wire_pod};
pub use bulkhead_netns_tests::{bulkhead_bin, privileged};
use bulkhead_policy::compile::maps::pod_mac;
use bulkhead_policy::source::manifest::content_hash;

/// Agent tests run one at a time.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One pod: its namespace, address, host-side veth.
#[derive(Clone, Debug)]
pub struct PodNs {
    /// Pod name (namespace `x`).
    pub name: String,
    /// Network namespace.
    pub netns: String,
    /// IPv4 address.
    pub ip: Ipv4Addr,
    /// Host-side veth (in the node namespace).
    pub veth: String,
}

/// The node.
pub struct Node {
    /// Node namespace.
    pub node: String,
    /// Pods.
    pub pods: Vec<PodNs>,
    /// Scratch directory (manifests, bpffs mount, agent logs).
    pub dir: PathBuf,
    /// The private bpffs mount point.
    pub bpffs: PathBuf,
    /// Pin directory passed to the agent.
    pub pins: PathBuf,
    /// Manifest directory.
    pub manifests: PathBuf,
    /// Node first, then the pods: dropped (processes inside killed,
    /// namespaces deleted) after the agent and the servers stopped.
    namespaces: Vec<Netns>,
    mounted: bool,
    agents: Vec<Child>,
    stop: Arc<AtomicBool>,
    servers: Vec<JoinHandle<()>>,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Removes what a test run killed before its Drop guards ran left behind:
/// namespaces `bha-<pid>-*` and scratch dirs of processes that are gone.
fn reap_stale() {
    let dead = |name: &str| {
        let pid = name.strip_prefix("bha-").and_then(|r| r.split('-').next());
        pid.and_then(|p| p.parse::<u32>().ok())
            .is_some_and(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
    };
    for ns in bulkhead_netkit::list().unwrap_or_default() {
        if dead(&ns) {
            let _ = bulkhead_netkit::destroy(&ns);
        }
    }
    let tmp = std::env::temp_dir();
    for entry in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(id) = name.strip_prefix("bulkhead-agent-test-")
            && dead(id)
        {
            let _ = nix::mount::umount2(
                &entry.path().join("bpffs"),
                nix::mount::MntFlags::MNT_DETACH,
            );
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl Node {
    /// Makes a node with pods `names` (10.77.0.2, .3, ...), servers on TCP
    /// and UDP port 80 in every pod, and manifests for them (no policy).
    pub fn new(names: &[&str]) -> Self {
        reap_stale();
        let id = format!(
            "bha-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(format!("bulkhead-agent-test-{id}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let bpffs = dir.join("bpffs");
        let manifests = dir.join("manifests");
        std::fs::create_dir_all(&bpffs).unwrap();
        std::fs::create_dir_all(&manifests).unwrap();
        let mut node = Node {
            node: format!("{id}-node"),
            pods: Vec::new(),
            pins: bpffs.join("pins"),
            bpffs,
            manifests,
            dir,
            namespaces: Vec::new(),
            mounted: false,
            agents: Vec::new(),
            stop: Arc::new(AtomicBool::new(false)),
            servers: Vec::new(),
        };
        nix::mount::mount(
            Some("bpf"),
            &node.bpffs,
            Some("bpf"),
            nix::mount::MsFlags::empty(),
            Some("mode=0700"),
        )
        .expect("mount a private bpffs");
        node.mounted = true;
        let n = Netns::create(&node.node).expect("create the node namespace");
        prepare_node(&n).expect("prepare the node namespace");
        node.namespaces.push(n);
        for (i, name) in names.iter().enumerate() {
            let netns = format!("{id}-{name}");
            let pod = Netns::create(&netns).expect("create a pod namespace");
            let pod_ip = Ipv4Addr::new(10, 77, 0, 2 + i as u8);
            let veth = format!("vp{i}");
            let wiring = PodWiring {
                veth: &veth,
                ip: pod_ip,
                mac: pod_mac([IpAddr::V4(pod_ip)]),
            };
            wire_pod(&node.namespaces[0], &pod, &wiring).expect("wire a pod");
            node.namespaces.push(pod);
            node.pods.push(PodNs {
                name: name.to_string(),
                netns,
                ip: pod_ip,
                veth,
            });
        }
        for p in node.pods.clone() {
            node.serve(&p);
        }
        node.write("pods.yaml", &node.pods_yaml());
        node
    }

    /// The pod named `name`.
    pub fn pod(&self, name: &str) -> &PodNs {
        self.pods.iter().find(|p| p.name == name).expect("a pod")
    }

    /// Manifests of the pods (namespace x, label app=NAME, status.podIP).
    pub fn pods_yaml(&self) -> String {
        self.pods
            .iter()
            .map(|p| {
                format!(
                    "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {n}, namespace: x, labels: {{app: {n}}}}}\n\
                     spec: {{containers: [{{name: c, image: i, ports: [{{containerPort: 80}}]}}]}}\n\
                     status: {{podIP: {ip}}}\n",
                    n = p.name,
                    ip = p.ip
                )
            })
            .collect()
    }

    /// Writes a manifest file atomically (temporary name, then rename).
    pub fn write(&self, name: &str, content: &str) {
        let tmp = self.dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, content).unwrap();
        std::fs::rename(&tmp, self.manifests.join(name)).unwrap();
    }

    /// Removes a manifest file.
    pub fn remove(&self, name: &str) {
        std::fs::remove_file(self.manifests.join(name)).unwrap();
    }

    /// Starts TCP and UDP echo servers on port 80 inside `pod`.
    fn serve(&mut self, pod: &PodNs) {
        let stop = Arc::clone(&self.stop);
        // Bound inside the pod; served from a thread of the root namespace.
        let (tcp, udp) = in_netns(&pod.netns, || {
            (
                TcpListener::bind("0.0.0.0:80").unwrap(),
                UdpSocket::bind("0.0.0.0:80").unwrap(),
            )
        });
        tcp.set_nonblocking(true).unwrap();
        udp.set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        self.servers.push(std::thread::spawn(move || {
            let mut conns: Vec<JoinHandle<()>> = Vec::new();
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((s, _)) = tcp.accept() {
                    let stop = Arc::clone(&stop);
                    conns.push(std::thread::spawn(move || echo(s, &stop)));
                }
                if let Ok((n, from)) = udp.recv_from(&mut buf) {
                    let _ = udp.send_to(&buf[..n], from);
                }
            }
            for c in conns {
                let _ = c.join();
            }
        }));
    }

    /// Starts the agent in the node namespace with `extra` arguments; returns once it has synced the current
    /// manifests.
    pub fn start_agent(&mut self, extra: &[&str]) {
        self.spawn_agent(&[], extra);
        self.wait_synced(Duration::from_secs(10));
    }

    /// Starts the agent in the node namespace reading the Kubernetes API
    /// through `kubeconfig`; returns once it enforces every change up to
    /// resourceVersion `rv`.
    pub fn start_kubernetes_agent(
        &mut self,
        kubeconfig: &std::path::Path,
        rv: u64,
        extra: &[&str],
    ) {
        let kubeconfig = kubeconfig.display().to_string();
        self.spawn_with(&[], &["--kubernetes", "--kubeconfig", &kubeconfig], extra);
        self.wait_revision(rv, Duration::from_secs(30));
    }

    /// Waits until the agent enforces the Kubernetes view up to
    /// resourceVersion `rv`.
    pub fn wait_revision(&mut self, rv: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.state()
                && s.pid != 0
                && s.error.is_none()
                && s.enforced_revision
                    .as_deref()
                    .and_then(|r| r.parse::<u64>().ok())
                    .is_some_and(|r| r >= rv)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the agent did not enforce resourceVersion {rv} within {timeout:?}: state {:?}\n{}",
                self.state(),
                self.agent_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the agent on the node's manifests in the node namespace with
    /// `extra` arguments, its command line prefixed by `wrapper` (e.g.
    /// `setpriv ... --`, which execs the agent, so the returned PID is the
    /// agent's); returns at once.
    pub fn spawn_agent(&mut self, wrapper: &[&str], extra: &[&str]) -> u32 {
        let manifests = self.manifests.display().to_string();
        self.spawn_with(wrapper, &["--manifests", &manifests], extra)
    }

    /// Starts the agent reading `source` (its source arguments); returns at
    /// once with its PID.
    fn spawn_with(&mut self, wrapper: &[&str], source: &[&str], extra: &[&str]) -> u32 {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("agent.log"))
            .unwrap();
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut cmd = self.node_ns().command(program);
                cmd.args(args).arg(bulkhead_bin());
                cmd
            }
            None => self.node_ns().command(bulkhead_bin()),
        };
        let child = cmd
            .arg("agent")
            .args(source)
            .arg("--bpffs")
            .arg(&self.pins)
            // Not the default /run/bulkhead/agent.sock: a killed agent
            // leaves its socket, and it belongs in this test's directory.
            .arg("--api-socket")
            .arg(self.dir.join("agent.sock"))
            .args(extra)
            .env("BULKHEAD_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the agent");
        let pid = child.id();
        self.agents.push(child);
        pid
    }

    /// The agent's state file.
    pub fn state(&self) -> Option<AgentState> {
        AgentState::read(&self.pins)
    }

    /// Waits until the agent's state says the manifests on disk are enforced.
    pub fn wait_synced(&mut self, timeout: Duration) {
        if let Err(e) = self.try_wait_synced(timeout) {
            panic!("{e}:\n{}", self.agent_log());
        }
    }

    /// Like [`Node::wait_synced`], but says why instead of panicking: the
    /// agent exited (with its status), or `timeout` passed.
    pub fn try_wait_synced(&mut self, timeout: Duration) -> Result<(), String> {
        let want = content_hash(&self.manifests);
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.state()
                && s.pid != 0
                && s.enforced_revision.as_deref() == Some(want.as_str())
            {
                return Ok(());
            }
            if let Some(c) = self.agents.last_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                self.agents.pop();
                return Err(format!("the agent exited ({status})"));
            }
            if Instant::now() >= deadline {
                return Err(format!("agent did not sync within {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The agent's log so far.
    pub fn agent_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }

    /// Kills the running agent with `signal` and reaps it.
    pub fn stop_agent(&mut self, signal: nix::sys::signal::Signal) {
        let mut child = self.agents.pop().expect("an agent");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, signal);
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "agent did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Runs `bulkhead agent --cleanup` in the node namespace.
    pub fn cleanup(&self) -> std::process::Output {
        self.node_ns()
            .command(bulkhead_bin())
            .args(["agent", "--cleanup", "--bpffs"])
            .arg(&self.pins)
            .output()
            .unwrap()
    }

    /// `bulkhead status --output json`.
    pub fn status(&self) -> serde_json::Value {
        let out = Command::new(bulkhead_bin())
            .args(["status", "--output", "json", "--bpffs"])
            .arg(&self.pins)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "status: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Output of a command run in the node namespace.
    pub fn in_node(&self, args: &[&str]) -> String {
        run(self.node_ns().command(args[0]).args(&args[1..]))
    }

    /// The node namespace.
    pub fn node_ns(&self) -> &NsHandle {
        &self.namespaces[0]
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- agent log ---\n{}", self.agent_log());
        }
        for mut c in self.agents.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.stop.store(true, Ordering::Relaxed);
        for s in self.servers.drain(..) {
            let _ = s.join();
        }
        let _ = self.cleanup();
        // Each guard kills what still runs inside and deletes its namespace.
        self.namespaces.clear();
        if self.mounted {
            let _ = nix::mount::umount2(&self.bpffs, nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = AgentState::remove(&self.pins);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Moves the calling thread into network namespace `netns` (for good:
/// only on a thread made for it).
pub fn enter(netns: &str) {
    let f = std::fs::File::open(std::path::Path::new(bulkhead_netkit::NETNS_DIR).join(netns))
        .expect("netns file");
    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
}

fn echo(mut s: TcpStream, stop: &AtomicBool) {
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut buf = [0u8; 1024];
    while !stop.load(Ordering::Relaxed) {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

/// Runs `f` on a thread inside `netns`.
pub fn in_netns<T: Send>(netns: &str, f: impl FnOnce() -> T + Send) -> T {
    NsHandle::open(netns)
        .and_then(|ns| ns.run(f))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Whether a TCP connection from `from` to `to`:80 completes and echoes
/// within `timeout`.
pub fn tcp_ok(from: &PodNs, to: Ipv4Addr, timeout: Duration) -> bool {
    in_netns(&from.netns, move || {
        let Ok(mut s) = TcpStream::connect_timeout(&SocketAddr::from((to, 80)), timeout) else {
            return false;
        };
        s.set_read_timeout(Some(timeout)).unwrap();
        let mut buf = [0u8; 4];
        s.write_all(b"ping").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"ping"
    })
}

/// Polls [`tcp_ok`] until it equals `want`; the time it took, or `None`
/// after `deadline`.
pub fn until_tcp(from: &PodNs, to: Ipv4Addr, want: bool, deadline: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if tcp_ok(from, to, Duration::from_millis(100)) == want {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// A TCP connection held open inside a pod.
pub struct Conn {
    tx: std::sync::mpsc::Sender<Option<()>>,
    rx: std::sync::mpsc::Receiver<bool>,
    handle: Option<JoinHandle<()>>,
}

impl Conn {
    /// Connects from `from` to `to`:80.
    pub fn open(from: &PodNs, to: Ipv4Addr) -> Self {
        let (tx, req) = std::sync::mpsc::channel::<Option<()>>();
        let (res, rx) = std::sync::mpsc::channel::<bool>();
        let netns = from.netns.clone();
        let handle = std::thread::spawn(move || {
            enter(&netns);
            let mut s =
                TcpStream::connect_timeout(&SocketAddr::from((to, 80)), Duration::from_secs(1))
                    .expect("connect");
            s.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            while let Ok(Some(())) = req.recv() {
                let mut buf = [0u8; 4];
                let ok = s.write_all(b"ping").is_ok() && s.read_exact(&mut buf).is_ok();
                if res.send(ok).is_err() {
                    return;
                }
                if !ok {
                    return;
                }
            }
        });
        Self {
            tx,
            rx,
            handle: Some(handle),
        }
    }

    /// Sends a message and waits for the echo (500 ms).
    pub fn ping(&self) -> bool {
        self.tx.send(Some(())).is_ok()
            && self
                .rx
                .recv_timeout(Duration::from_secs(2))
                .unwrap_or(false)
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let _ = self.tx.send(None);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A paced UDP flow from a pod to another pod's echo server: counts
/// datagrams sent and echoes received (echoes prove both directions).
pub struct Flow {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    received: Arc<AtomicU64>,
    handle: Option<JoinHandle<()>>,
}

impl Flow {
    /// Starts sending one datagram every `every` (bounded by `max_for`).
    pub fn start(from: &PodNs, to: Ipv4Addr, every: Duration, max_for: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let received = Arc::new(AtomicU64::new(0));
        let (s2, sent2, recv2) = (Arc::clone(&stop), Arc::clone(&sent), Arc::clone(&received));
        let netns = from.netns.clone();
        let handle = std::thread::spawn(move || {
            enter(&netns);
            let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
            sock.connect(SocketAddr::from((to, 80))).unwrap();
            sock.set_read_timeout(Some(Duration::from_millis(1)))
                .unwrap();
            let start = Instant::now();
            let mut next = Instant::now();
            let mut buf = [0u8; 64];
            let mut seq: u64 = 0;
            while !s2.load(Ordering::Relaxed) && start.elapsed() < max_for {
                if Instant::now() >= next {
                    if sock.send(&seq.to_be_bytes()).is_ok() {
                        sent2.fetch_add(1, Ordering::Relaxed);
                    }
                    seq += 1;
                    next += every;
                }
                if sock.recv(&mut buf).is_ok() {
                    recv2.fetch_add(1, Ordering::Relaxed);
                }
            }
            // Collect the last echoes.
            let end = Instant::now() + Duration::from_millis(300);
            while Instant::now() < end {
                if sock.recv(&mut buf).is_ok() {
                    recv2.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Self {
            stop,
            sent,
            received,
            handle: Some(handle),
        }
    }

    /// Stops the flow; returns (sent, received).
    pub fn finish(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            h.join().unwrap();
        }
        (
            self.sent.load(Ordering::Relaxed),
            self.received.load(Ordering::Relaxed),
        )
    }

    /// (sent, received) so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.sent.load(Ordering::Relaxed),
            self.received.load(Ordering::Relaxed),
        )
    }
}

impl Drop for Flow {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A policy isolating `pod` for ingress (default deny).
pub fn deny_ingress(pod: &str) -> String {
    format!(
        "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: deny-{pod}, namespace: x}}\n\
         spec: {{podSelector: {{matchLabels: {{app: {pod}}}}}, policyTypes: [Ingress]}}\n"
    )
}

/// A policy allowing `from` into `to` on TCP and UDP `ports`.
pub fn allow(name: &str, from: &str, to: &str, ports: &[u16]) -> String {
    let ports: Vec<String> = ports
        .iter()
        .flat_map(|p| {
            [
                format!("{{protocol: TCP, port: {p}}}"),
                format!("{{protocol: UDP, port: {p}}}"),
            ]
        })
        .collect();
    format!(
        "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: x}}\n\
         spec:\n  podSelector: {{matchLabels: {{app: {to}}}}}\n  ingress:\n  - from: [{{podSelector: {{matchLabels: {{app: {from}}}}}}}]\n    ports: [{}]\n",
        ports.join(", ")
    )
}
