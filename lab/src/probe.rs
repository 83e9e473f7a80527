//! `bulkhead lab probe`: real packets from inside each source namespace to
//! every destination. The parent plans the probes ([`plan_probes`], pure)
//! and starts one `bulkhead lab probe-from` per source namespace (inside
//! it, through netkit), which runs its probes on a bounded pool of threads
//! ([`run_helper`]) and prints one JSON line per result.
//!
//! Outcomes: `connected` (TCP handshake and one exchange, a UDP echo, an
//! SCTP INIT ACK), `refused` (TCP RST, ICMP port unreachable, SCTP ABORT:
//! the destination's own stack answered that nothing listens), `unreachable`
//! (ICMP host or network unreachable: a router, not the destination,
//! answered), `timeout` (nothing came back: what a dropping policy gives),
//! and `error` (the probe itself could not run).
//!
//! # Through Services
//!
//! With `--via service`, each probe to a destination pod goes to the
//! ClusterIP (of the probe's family) and port of a Service that selects
//! exactly that pod and exposes the probed port as itself (Service port
//! and target port both the probed port, same protocol): the node's
//! kube-proxy rules translate it to the pod ([`crate::kubeproxy`]). With
//! `--via nodeport`, it goes to the destination node's address and that
//! Service's NodePort. A destination pod without such a Service gets the
//! outcome `no-service` (never allowed; nothing is sent); external hosts
//! are no Service's backends and are not destinations then. Results say
//! which address and port were probed (`addr`, `probed_port`) and through
//! which Service. `--hairpin` adds each pod's probes to itself.
//!
//! # Allowed
//!
//! A probe is *allowed* when its packet reached the destination and the
//! answer came back: it connected, or it was refused on a port the
//! destination does not serve. A refusal can only come from the
//! destination's stack, so the policy let the packet in (and the dataplane
//! let the answer out as a reply); the dataplane never answers a denied
//! packet, it drops it, so a denied probe times out. By default probes go
//! only to ports with a server (each destination's container ports), where
//! allowed means connected; `--ports` may name ports without one, and the
//! rule above keeps their verdicts meaningful. A refusal on a port that
//! has a server is an anomaly and never counts as allowed.

use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::io::{BufRead, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Stdio;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::state::{Host, LabState};
use super::{LabError, net, sctp, serve};
use bulkhead_policy::model::{Model, Protocol, ServiceType};

/// Most helper processes running at once.
const MAX_HELPERS: usize = 16;

/// How a probe ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The destination answered as a server does.
    Connected,
    /// Refused by the destination: RST, ICMP port unreachable, SCTP ABORT.
    Refused,
    /// ICMP host or network unreachable (from a router), or no route.
    Unreachable,
    /// No answer in time.
    Timeout,
    /// The probe could not run.
    Error,
    /// No Service reaches the destination as asked (`--via service` or
    /// `nodeport`): nothing was sent.
    #[serde(rename = "no-service")]
    NoService,
}

impl Outcome {
    /// `connected`, `refused`, `unreachable`, `timeout`, `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Connected => "connected",
            Outcome::Refused => "refused",
            Outcome::Unreachable => "unreachable",
            Outcome::Timeout => "timeout",
            Outcome::Error => "error",
            Outcome::NoService => "no-service",
        }
    }
}

/// "IPv4" or "IPv6", as `bulkhead connectivity` spells families.
pub fn family_name(v4: bool) -> &'static str {
    if v4 { "IPv4" } else { "IPv6" }
}

/// What to probe.
#[derive(Clone, Debug)]
pub struct ProbeOptions {
    /// Ports for every destination; `None`: each destination's declared
    /// ports of the protocol.
    pub ports: Option<Vec<u16>>,
    /// Protocols.
    pub protocols: Vec<Protocol>,
    /// Families: `true` for IPv4.
    pub families: Vec<bool>,
    /// How long to wait for an answer.
    pub timeout: Duration,
    /// Most probes in flight at once.
    pub max_in_flight: usize,
    /// Sources: host patterns (see [`host_matches`]); empty: every host.
    pub from: Vec<String>,
    /// Destinations, likewise.
    pub to: Vec<String>,
    /// What the probes are sent to.
    pub via: Via,
    /// Each pod probes itself too (through its Service: hairpin).
    pub hairpin: bool,
    /// The Service frontends that reach single pods ([`service_routes`]),
    /// for `via` service and nodeport.
    pub routes: Vec<ServiceRoute>,
}

/// What a probe to a pod is sent to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// The pod's own address.
    #[default]
    Pod,
    /// A ClusterIP of a Service that selects only that pod.
    Service,
    /// A NodePort of such a Service, on the pod's node.
    Nodeport,
}

impl Via {
    /// `pod`, `service`, `nodeport`.
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Pod => "pod",
            Via::Service => "service",
            Via::Nodeport => "nodeport",
        }
    }
}

/// A Service port that reaches exactly one pod on the same port number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceRoute {
    /// The Service (`namespace/name`).
    pub service: String,
    /// The pod it selects (`namespace/name`).
    pub pod: String,
    /// Protocol.
    pub protocol: Protocol,
    /// The Service port, which is also its target port on the pod.
    pub port: u16,
    /// Its ClusterIPs.
    pub cluster_ips: Vec<IpAddr>,
    /// Its NodePort, if any.
    pub node_port: Option<u16>,
}

/// Every Service port of `model` that selects exactly one pod and
/// targets the port it exposes (by number, or by a name that resolves to
/// it on that pod), in Service order.
pub fn service_routes(model: &Model) -> Vec<ServiceRoute> {
    let mut out = Vec::new();
    for svc in &model.services {
        if svc.headless || svc.kind == ServiceType::ExternalName {
            continue;
        }
        let mut selected = model.pods.iter().filter(|p| svc.selects(p));
        let (Some(pod), None) = (selected.next(), selected.next()) else {
            continue;
        };
        for port in &svc.ports {
            if svc.target_port_on(port, pod) != Some(port.port) {
                continue;
            }
            out.push(ServiceRoute {
                service: svc.key(),
                pod: pod.key(),
                protocol: port.protocol,
                port: port.port,
                cluster_ips: svc.cluster_ips.clone(),
                node_port: port
                    .node_port
                    .filter(|_| svc.kind != ServiceType::ClusterIp),
            });
        }
    }
    out
}

/// Whether `host` matches one of `patterns` (empty: every host). A pattern
/// is `*`, `NS/NAME`, `NS/*` or `*/NAME` (pods), or an address, which
/// matches the pod or external host that has it.
pub fn host_matches(patterns: &[String], host: &Host) -> bool {
    patterns.is_empty() || patterns.iter().any(|p| host_matches_one(p, host))
}

fn host_matches_one(pattern: &str, host: &Host) -> bool {
    if pattern == "*" {
        return true;
    }
    if let Ok(addr) = pattern.parse::<IpAddr>() {
        return host.ips.contains(&addr);
    }
    if host.external {
        return false;
    }
    match (pattern.split_once('/'), host.name.split_once('/')) {
        (Some((pns, pname)), Some((ns, name))) => {
            (pns == "*" || pns == ns) && (pname == "*" || pname == name)
        }
        _ => false,
    }
}

/// The first of `patterns` that matches no host of `state`, if any.
pub fn unmatched_pattern<'a>(state: &LabState, patterns: &'a [String]) -> Option<&'a str> {
    patterns
        .iter()
        .find(|p| !state.hosts.iter().any(|h| host_matches_one(p, h)))
        .map(String::as_str)
}

/// One planned probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeSpec {
    /// Index of the source host in the state.
    pub src: usize,
    /// Index of the destination host.
    pub dst: usize,
    /// Destination address.
    pub addr: IpAddr,
    /// Protocol.
    pub protocol: Protocol,
    /// Destination port.
    pub port: u16,
    /// What is probed: the pod's address and port, a ClusterIP, a node
    /// address and NodePort; `None` when no Service reaches the pod.
    pub target: Option<SocketAddr>,
    /// The Service probed through, if any.
    pub service: Option<String>,
}

/// A probe and how it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeResult {
    /// Source: `namespace/name`, or an external host's address.
    pub src: String,
    /// Destination, named likewise.
    pub dst: String,
    /// "IPv4" or "IPv6".
    pub family: &'static str,
    /// Protocol.
    pub protocol: Protocol,
    /// Port.
    pub port: u16,
    /// Outcome.
    pub outcome: Outcome,
    /// Why, for `error`.
    pub detail: Option<String>,
    /// Whether the destination serves the port (has a server on it).
    pub served: bool,
    /// What the probe was sent to.
    pub via: Via,
    /// The address and port probed (`None`: no Service reached the pod).
    pub target: Option<SocketAddr>,
    /// The Service probed through, if any.
    pub service: Option<String>,
    /// The destination is a hostNetwork pod: its address is its node's,
    /// which the policy knows as an address (never a pod: no agent
    /// enforces on it), so a verdict on it is the one on that address.
    pub dst_host_network: bool,
}

impl ProbeResult {
    /// Whether the packet reached the destination and its answer came
    /// back: connected, or refused on a port the destination does not
    /// serve (see the module docs).
    pub fn allowed(&self) -> bool {
        match self.outcome {
            Outcome::Connected => true,
            Outcome::Refused => !self.served,
            Outcome::Unreachable | Outcome::Timeout | Outcome::Error | Outcome::NoService => false,
        }
    }

    /// The JSON Lines object.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "src": self.src,
            "dst": self.dst,
            "protocol": self.protocol.as_str(),
            "port": self.port,
            "allowed": self.allowed(),
            "outcome": self.outcome.as_str(),
            "family": self.family,
        });
        if let Some(d) = &self.detail {
            v["detail"] = d.clone().into();
        }
        if self.via != Via::Pod {
            v["via"] = self.via.as_str().into();
            if let Some(s) = &self.service {
                v["service"] = s.clone().into();
            }
        }
        if let Some(t) = self.target {
            v["addr"] = t.ip().to_string().into();
            v["probed_port"] = t.port().into();
        }
        v
    }
}

/// Every probe, in order: each ordered pair of distinct hosts (pod to pod,
/// pod to external, external to pod; not external to external; with
/// `hairpin`, each pod to itself too; through Services, no external
/// destination) that both have an address of the family and match `from`
/// and `to`, for each family, protocol and port. HostNetwork pods are
/// destinations only (at their node's address): from its node's
/// namespace a probe would leave from whichever node address routing
/// picks, which is no client upstream's tests or the policy speak of.
pub fn plan_probes(state: &LabState, opts: &ProbeOptions) -> Vec<ProbeSpec> {
    let mut out = Vec::new();
    for (s, src) in state.hosts.iter().enumerate() {
        if src.host_network || !host_matches(&opts.from, src) {
            continue;
        }
        for (d, dst) in state.hosts.iter().enumerate() {
            let paired = if s == d {
                opts.hairpin && !src.external
            } else {
                !(src.external && dst.external)
            };
            let via_pod = opts.via == Via::Pod;
            if !paired || (!via_pod && dst.external) || !host_matches(&opts.to, dst) {
                continue;
            }
            for &v4 in &opts.families {
                let (Some(_), Some(addr)) = (src.ip(v4), dst.ip(v4)) else {
                    continue;
                };
                for &protocol in &opts.protocols {
                    let ports: Vec<u16> = match &opts.ports {
                        Some(p) => p.clone(),
                        None => dst.ports.get(protocol).iter().copied().collect(),
                    };
                    for port in ports {
                        let (target, service) = target(state, opts, d, addr, protocol, port);
                        out.push(ProbeSpec {
                            src: s,
                            dst: d,
                            addr,
                            protocol,
                            port,
                            target,
                            service,
                        });
                    }
                }
            }
        }
    }
    out
}

/// Where a probe to host `dst` (address `addr`) on `protocol`/`port` goes
/// as `opts.via` asks, and through which Service.
fn target(
    state: &LabState,
    opts: &ProbeOptions,
    dst: usize,
    addr: IpAddr,
    protocol: Protocol,
    port: u16,
) -> (Option<SocketAddr>, Option<String>) {
    if opts.via == Via::Pod {
        return (Some(SocketAddr::new(addr, port)), None);
    }
    let v4 = addr.is_ipv4();
    let host = &state.hosts[dst];
    let node_addr = crate::kubeproxy::node_addresses(state, host.node.min(state.nodes.len() - 1))
        .into_iter()
        .find(|a| a.is_ipv4() == v4);
    opts.routes
        .iter()
        .filter(|r| r.pod == host.name && r.protocol == protocol && r.port == port)
        .find_map(|r| {
            let to = match opts.via {
                Via::Service => {
                    SocketAddr::new(*r.cluster_ips.iter().find(|c| c.is_ipv4() == v4)?, port)
                }
                _ => SocketAddr::new(node_addr?, r.node_port?),
            };
            Some((Some(to), Some(r.service.clone())))
        })
        .unwrap_or((None, None))
}

/// A probe as sent to a helper.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HelperTask {
    /// Index in the caller's list.
    pub id: usize,
    /// Destination address.
    pub addr: IpAddr,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
    /// Port.
    pub port: u16,
}

/// What a helper reads on stdin.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HelperRequest {
    /// Answer timeout, milliseconds.
    pub timeout_ms: u64,
    /// Threads to run probes on.
    pub threads: usize,
    /// The probes.
    pub tasks: Vec<HelperTask>,
}

/// One line a helper prints.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HelperAnswer {
    /// The task's id.
    pub id: usize,
    /// Outcome.
    pub outcome: Outcome,
    /// Why, for errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Runs every probe of `opts` on the lab, from inside the source namespaces.
pub fn run_probes(
    state: &LabState,
    opts: &ProbeOptions,
    exe: &Path,
) -> Result<Vec<ProbeResult>, LabError> {
    let specs = plan_probes(state, opts);
    let mut by_src: BTreeMap<usize, Vec<HelperTask>> = BTreeMap::new();
    for (id, s) in specs.iter().enumerate() {
        let Some(to) = s.target else { continue };
        by_src.entry(s.src).or_default().push(HelperTask {
            id,
            addr: to.ip(),
            protocol: s.protocol.as_str().to_owned(),
            port: to.port(),
        });
    }
    let groups: Vec<(usize, Vec<HelperTask>)> = by_src.into_iter().collect();
    let workers = groups.len().clamp(1, MAX_HELPERS);
    let threads = (opts.max_in_flight.max(1) / workers).max(1);
    let next = AtomicUsize::new(0);
    let answers: Mutex<Vec<Option<HelperAnswer>>> = Mutex::new(vec![None; specs.len()]);
    let first_error: Mutex<Option<LabError>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((src, tasks)) = groups.get(i) else {
                        break;
                    };
                    let request = HelperRequest {
                        timeout_ms: opts.timeout.as_millis() as u64,
                        threads,
                        tasks: tasks.clone(),
                    };
                    match run_in(&state.hosts[*src].netns, exe, &request) {
                        Ok(got) => {
                            let mut a = answers.lock().expect("no panics while locked");
                            for g in got {
                                if let Some(slot) = a.get_mut(g.id) {
                                    *slot = Some(g);
                                }
                            }
                        }
                        Err(e) => {
                            first_error
                                .lock()
                                .expect("no panics while locked")
                                .get_or_insert(e);
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().expect("no panics while locked") {
        return Err(e);
    }
    let answers = answers.into_inner().expect("no panics while locked");
    Ok(specs
        .iter()
        .zip(answers)
        .map(|(s, a)| {
            let dst = &state.hosts[s.dst];
            let served = state.served(dst).get(s.protocol).contains(&s.port);
            let (outcome, detail) = match a {
                Some(a) => (a.outcome, a.detail),
                None if s.target.is_none() => (Outcome::NoService, None),
                None => (
                    Outcome::Error,
                    Some("the probe helper gave no answer".into()),
                ),
            };
            ProbeResult {
                src: state.hosts[s.src].name.clone(),
                dst: dst.name.clone(),
                family: family_name(s.addr.is_ipv4()),
                protocol: s.protocol,
                port: s.port,
                outcome,
                detail,
                served,
                via: opts.via,
                target: s.target,
                service: s.service.clone(),
                dst_host_network: dst.host_network,
            }
        })
        .collect())
}

/// Runs one helper in `netns` and reads its answers.
fn run_in(netns: &str, exe: &Path, request: &HelperRequest) -> Result<Vec<HelperAnswer>, LabError> {
    let helper_err = |why: String| LabError::ProbeHelper {
        netns: netns.to_owned(),
        why,
    };
    let cmd = net::exec_in(netns, exe, &["lab".into(), "probe-from".into()])?;
    let mut child = net::spawn(cmd, Stdio::piped(), Stdio::piped())?;
    let input = serde_json::to_vec(request).expect("serializable");
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(&input)
            .map_err(|e| helper_err(format!("writing its input: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| helper_err(format!("waiting for it: {e}")))?;
    if !out.status.success() {
        return Err(helper_err(format!(
            "exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    out.stdout
        .lines()
        .map(|l| {
            let l = l.map_err(|e| helper_err(e.to_string()))?;
            serde_json::from_str(&l).map_err(|e| helper_err(format!("line {l:?}: {e}")))
        })
        .collect()
}

/// The helper (`bulkhead lab probe-from`): reads a [`HelperRequest`] on
/// stdin, runs it in this process's namespace, prints [`HelperAnswer`] lines.
pub fn run_helper() -> Result<(), LabError> {
    let io_err = |what: &str| {
        let what = what.to_owned();
        move |source| LabError::Socket { what, source }
    };
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .map_err(io_err("reading the probe request"))?;
    let request: HelperRequest =
        serde_json::from_str(&input).map_err(|e| LabError::ProbeHelper {
            netns: "(this one)".into(),
            why: format!("bad request: {e}"),
        })?;
    let timeout = Duration::from_millis(request.timeout_ms.max(1));
    let next = AtomicUsize::new(0);
    let out = Mutex::new(std::io::stdout());
    std::thread::scope(|scope| {
        for _ in 0..request.threads.clamp(1, 256) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(task) = request.tasks.get(i) else {
                        break;
                    };
                    let (outcome, detail) = match task.protocol.parse::<Protocol>() {
                        Ok(p) => probe_one(task.addr, p, task.port, timeout),
                        Err(e) => (Outcome::Error, Some(e.to_string())),
                    };
                    let line = serde_json::to_string(&HelperAnswer {
                        id: task.id,
                        outcome,
                        detail,
                    })
                    .expect("serializable");
                    let out = out.lock().expect("no panics while locked");
                    let _ = writeln!(out.lock(), "{line}");
                }
            });
        }
    });
    out.into_inner()
        .expect("no panics while locked")
        .flush()
        .map_err(io_err("writing probe results"))
}

/// Runs one probe from this namespace.
pub fn probe_one(
    addr: IpAddr,
    protocol: Protocol,
    port: u16,
    timeout: Duration,
) -> (Outcome, Option<String>) {
    let r = match protocol {
        Protocol::Tcp => probe_tcp(SocketAddr::new(addr, port), timeout),
        Protocol::Udp => probe_udp(SocketAddr::new(addr, port), timeout),
        Protocol::Sctp => probe_sctp(addr, port, timeout),
    };
    match r {
        Ok(o) => (o, None),
        Err(e) => classify(e),
    }
}

/// An I/O error as an outcome.
pub fn classify(e: std::io::Error) -> (Outcome, Option<String>) {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused | K::ConnectionReset => (Outcome::Refused, None),
        K::HostUnreachable | K::NetworkUnreachable => (Outcome::Unreachable, None),
        K::TimedOut | K::WouldBlock => (Outcome::Timeout, None),
        _ => (Outcome::Error, Some(e.to_string())),
    }
}

fn probe_tcp(addr: SocketAddr, timeout: Duration) -> std::io::Result<Outcome> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(b"ping\n")?;
    let mut buf = [0u8; 256];
    Ok(match s.read(&mut buf)? {
        0 => Outcome::Refused,
        _ => Outcome::Connected,
    })
}

fn probe_udp(addr: SocketAddr, timeout: Duration) -> std::io::Result<Outcome> {
    let local: SocketAddr = if addr.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let s = UdpSocket::bind(local)?;
    s.connect(addr)?;
    s.set_read_timeout(Some(timeout))?;
    let token = random_u32().to_be_bytes();
    s.send(&token)?;
    let mut buf = [0u8; 64];
    let deadline = Instant::now() + timeout;
    loop {
        let n = s.recv(&mut buf)?;
        if buf[..n] == token {
            return Ok(Outcome::Connected);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Outcome::Timeout);
        }
        s.set_read_timeout(Some(left))?;
    }
}

fn probe_sctp(addr: IpAddr, port: u16, timeout: Duration) -> std::io::Result<Outcome> {
    let v4 = addr.is_ipv4();
    let s = serve::raw_sctp(v4).map_err(|e| std::io::Error::other(e.to_string()))?;
    let r = random_u32();
    let src_port = 32_768 + (r % 28_000) as u16;
    let tag = random_u32() | 1;
    // Only this probe's answers: every raw SCTP socket of the namespace gets
    // every SCTP packet, which would crowd the answer out of the queue when
    // many probes run at once.
    socket2::SockRef::from(&s).attach_filter(&sctp::reply_filter(addr, port, src_port))?;
    s.send_to(&sctp::init(src_port, port, tag), SocketAddr::new(addr, 0))?;
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 2048];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Outcome::Timeout);
        }
        s.set_read_timeout(Some(left))?;
        let (n, from) = match s.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(Outcome::Timeout);
            }
            Err(e) => return Err(e),
        };
        let (src, payload) = if v4 {
            match sctp::strip_ipv4(&buf[..n]) {
                Some((src, p)) => (IpAddr::V4(src), p),
                None => continue,
            }
        } else {
            (from.ip(), &buf[..n])
        };
        let Some(p) = sctp::parse(payload) else {
            continue;
        };
        if src != addr || p.src_port != port || p.dst_port != src_port {
            continue;
        }
        match p.chunk {
            sctp::CHUNK_INIT_ACK if p.vtag == tag => return Ok(Outcome::Connected),
            sctp::CHUNK_ABORT if p.vtag == tag || p.flags & 1 == 1 => return Ok(Outcome::Refused),
            _ => {}
        }
    }
}

fn random_u32() -> u32 {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    std::collections::hash_map::RandomState::new().hash_one((n, std::process::id())) as u32
}

/// Text form of one result.
pub fn text_line(r: &ProbeResult) -> String {
    format!(
        "{} → {} {} {}/{}: {}{}",
        r.src,
        r.dst,
        r.family,
        r.protocol,
        r.port,
        if r.allowed() { "allowed" } else { "denied" },
        outcome_note(r)
    )
}

/// ` (timeout)`, ` (refused: nothing listens)`, ... ; empty for `connected`.
fn outcome_note(r: &ProbeResult) -> String {
    match (&r.outcome, &r.detail) {
        (Outcome::Connected, _) => String::new(),
        (Outcome::Refused, _) if !r.served => " (refused: nothing listens)".to_owned(),
        (o, None) => format!(" ({})", o.as_str()),
        (o, Some(d)) => format!(" ({}: {d})", o.as_str()),
    }
}

/// Text form of many results: one line per source, destination and
/// family, each probe as `TCP/80 ✓` (allowed) or `✗` (denied), with the
/// outcome when it is not the usual one (connected, timeout).
pub fn text_table(results: &[ProbeResult]) -> Vec<String> {
    type Pair<'a> = (&'a str, &'a str, &'a str);
    let mut groups: Vec<(Pair<'_>, Vec<&ProbeResult>)> = Vec::new();
    for r in results {
        let key = (r.src.as_str(), r.dst.as_str(), r.family);
        match groups.last_mut() {
            Some((k, v)) if *k == key => v.push(r),
            _ => groups.push((key, vec![r])),
        }
    }
    let w_src = groups
        .iter()
        .map(|((s, _, _), _)| s.chars().count())
        .max()
        .unwrap_or(0);
    let w_dst = groups
        .iter()
        .map(|((_, d, _), _)| d.chars().count())
        .max()
        .unwrap_or(0);
    groups
        .iter()
        .map(|((src, dst, family), probes)| {
            let cells: Vec<String> = probes
                .iter()
                .map(|r| {
                    let mark = if r.allowed() { "✓" } else { "✗" };
                    let note = match r.outcome {
                        Outcome::Connected | Outcome::Timeout => String::new(),
                        _ => outcome_note(r),
                    };
                    format!("{}/{} {mark}{note}", r.protocol, r.port)
                })
                .collect();
            format!(
                "{src:<w_src$} → {dst:<w_dst$}  {family}  {}",
                cells.join("  ")
            )
        })
        .collect()
}
