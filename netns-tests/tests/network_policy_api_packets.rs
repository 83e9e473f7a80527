//! The network-policy-api conformance scenarios on real packets: the very
//! data that `policy/tests/network_policy_api.rs` checks against the
//! reference evaluator (`policy/tests/network_policy_api/`, transcribed
//! from kubernetes-sigs/network-policy-api), run in one lab whose agent
//! enforces each step's objects, every connection upstream checks answered
//! by a real TCP, UDP or SCTP probe over IPv4 from the client pod to the
//! server pod's address.
//!
//! - **One lab per test binary** ([`LAB`]): the eight pods of upstream's
//!   topology, each serving TCP, UDP and SCTP on upstream's ports, on one
//!   node. The first test brings it up (after a `lab down` of any
//!   leftover of a killed run); a process-exit hook takes it down, also
//!   when tests fail (libtest exits through `exit(3)`, which runs the
//!   hook). Its node runs kube-proxy's iptables-mode rules (`lab up
//!   --kube-proxy iptables`), which follow the Services of each step's
//!   objects as the agent follows its policies.
//! - **A second lab for the node-peer scenarios** ([`NODES_LAB`]), whose
//!   server is a hostNetwork pod at its node's address
//!   (`host-network.yaml`): upstream's whole topology on two nodes
//!   (`lab up --nodes 2`), `centaur-N` a hostNetwork pod of `node-N` (a
//!   server in that node's namespace on its fabric address, which the
//!   Node objects declare as InternalIP, so the agents' `nodes` peers
//!   resolve to it), the other pods spread over both nodes. Brought up by
//!   the first test that has such scenarios, after its other scenarios,
//!   so the first lab's run is unchanged.
//! - **Each step is a live change**: its objects are written into the
//!   lab's watched directory and `lab sync` waits until the agent enforces
//!   that content (it fails, naming the agent's error, if the agent
//!   rejects it).
//! - **Each expectation is one probe**, as upstream pokes one server from
//!   one client: a step's probes run in parallel (one `lab probe` per
//!   server, protocol and port, from exactly the clients upstream uses).
//!   An expected-allowed probe that did not connect is probed once more
//!   with a long timeout (a slow answer is not a verdict; a real drop
//!   times out again); a probe that connected where upstream expects a
//!   drop is never retried away. As upstream, a denied connection must
//!   time out (not be refused), and an allowed one must connect or be
//!   answered.
//! - **An expectation through a Service** (`via: service`) is several
//!   probes: the client connects to the Service's ClusterIP (as the data
//!   computes it, with the lab's address plan), each time anew, until the
//!   node's conntrack table shows that kube-proxy sent a connection to
//!   every backend (the reply direction's source of the entry of each
//!   probe's source port), at most [`MAX_SERVICE_PROBES`] times. Every
//!   probe must be what upstream asks for, whichever backend it reached:
//!   allowed to every backend, or denied to every backend; a backend never
//!   reached is a failure too. Expected-allowed ones wait as long as a
//!   re-probe does (a slow answer is not a verdict).
//!
//! Run (root): `flock /tmp/bulkhead-netns.lock cargo test -p
//! bulkhead-netns-tests --test network_policy_api_packets --
//! --test-threads=1`.

mod lab_support;

#[path = "../../policy/tests/network_policy_api/data.rs"]
#[allow(dead_code)] // Shared with the evaluator harness, which uses the rest.
mod data;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

use bulkhead_lab::probe::{Outcome, probe_one};
use bulkhead_lab::state::LabState;
use bulkhead_netkit::NsHandle;
use bulkhead_policy::model::Model;
use bulkhead_policy::model::addressing::AddressPlan;
use bulkhead_policy::source::manifest::load_dir;

use data::{Expect, Scenario, Step, Via};
use lab_support::{bulkhead, bulkhead_bin, json_lines, privileged, tempdir};

/// The lab's name.
const LAB: &str = "npapi";
/// The name of the two-node lab of the node-peer scenarios.
const NODES_LAB: &str = "npnode";
/// Answer timeout of a probe: the lab is local, an answer takes well under
/// a millisecond.
const TIMEOUT_MS: &str = "300";
/// Timeout of the second try of a probe expected allowed that did not
/// connect.
const RETRY_TIMEOUT_MS: &str = "2000";
/// How long `lab sync` waits for the agent.
const SYNC_TIMEOUT_MS: &str = "30000";

static STEPS: AtomicUsize = AtomicUsize::new(0);
static PROBES: AtomicUsize = AtomicUsize::new(0);
static RETRIES: AtomicUsize = AtomicUsize::new(0);

/// A lab of the run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Which {
    /// [`LAB`]: `base.yaml` on one node.
    Pods,
    /// [`NODES_LAB`]: `base.yaml` and `host-network.yaml` on two nodes.
    Nodes,
}

impl Which {
    fn name(self) -> &'static str {
        match self {
            Which::Pods => LAB,
            Which::Nodes => NODES_LAB,
        }
    }

    /// Its nodes' kube-proxy rules (`lab up --kube-proxy`): iptables in
    /// [`LAB`], whose scenarios connect to ClusterIPs (`via: service`);
    /// none in [`NODES_LAB`], whose do not (checked by [`run_in`]).
    fn kube_proxy(self) -> &'static str {
        match self {
            Which::Pods => "iptables",
            Which::Nodes => "none",
        }
    }

    /// The topology's manifests.
    fn yaml(self) -> String {
        match self {
            Which::Pods => data::base(),
            Which::Nodes => format!("{}\n---\n{}", data::base(), data::host_network()),
        }
    }
}

/// A lab, shared by every test of the binary.
enum Slot {
    /// Not brought up yet.
    Down,
    /// Up: the watched directory and the topology's model (addresses).
    Up {
        watched: PathBuf,
        topology: Box<Model>,
    },
    /// `lab up` failed: every test fails with this.
    Failed(String),
}

static LAB_SLOT: Mutex<Slot> = Mutex::new(Slot::Down);
static NODES_SLOT: Mutex<Slot> = Mutex::new(Slot::Down);

fn slot(which: Which) -> MutexGuard<'static, Slot> {
    match which {
        Which::Pods => &LAB_SLOT,
        Which::Nodes => &NODES_SLOT,
    }
    .lock()
    .unwrap_or_else(|p| p.into_inner())
}

extern "C" fn lab_down_at_exit() {
    let down = |name: &str| match std::process::Command::new(bulkhead_bin())
        .args(["lab", "down", "--name", name])
        .output()
    {
        Ok(o) if o.status.success() => "ok".to_owned(),
        Ok(o) => format!("FAILED: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => format!("FAILED: {e}"),
    };
    eprintln!(
        "network_policy_api_packets: {} steps, {} probes ({} re-probed); lab {LAB} down: {}; lab {NODES_LAB} down: {}",
        STEPS.load(Ordering::Relaxed),
        PROBES.load(Ordering::Relaxed),
        RETRIES.load(Ordering::Relaxed),
        down(LAB),
        down(NODES_LAB),
    );
}

/// Loads the topology as the lab's agent does (default pod CIDRs,
/// addresses in namespace/name order; hostNetwork pods keep their status
/// address, their node's).
fn topology(which: Which) -> Model {
    load(which, None)
}

/// The topology of lab `which` with `policies` (a step's objects), loaded
/// as its agents and kube-proxy load them (same address plan: the pods'
/// addresses of [`topology`], ClusterIPs from the default Service CIDRs).
fn load(which: Which, policies: Option<&str>) -> Model {
    let dir = tempdir::Dir::new("npapi-model");
    std::fs::write(dir.path().join("base.yaml"), which.yaml()).expect("write base");
    if let Some(p) = policies {
        std::fs::write(dir.path().join("policies.yaml"), p).expect("write policies");
    }
    load_dir(dir.path(), &AddressPlan::default()).unwrap_or_else(|e| panic!("topology: {e}"))
}

/// Brings lab `which` up: its topology without policy, upstream's ports.
fn bring_up(which: Which) -> Result<(PathBuf, Model), String> {
    static HOOK: Once = Once::new();
    let name = which.name();
    let _ = bulkhead(&["lab", "down", "--name", name]);
    HOOK.call_once(|| {
        // SAFETY: registers a plain `extern "C" fn` with no captured state.
        let rc = unsafe { libc::atexit(lab_down_at_exit) };
        assert_eq!(rc, 0, "atexit failed");
    });
    let dir = tempdir::Dir::new("npapi-up");
    std::fs::write(dir.path().join("cluster.yaml"), which.yaml()).map_err(|e| e.to_string())?;
    let manifests = dir.path().display().to_string();
    let mut ports: Vec<u16> = data::SERVED_PORTS.to_vec();
    if which == Which::Nodes {
        ports.extend(data::HOST_NETWORK_PORTS);
        ports.sort_unstable();
        ports.dedup();
    }
    let ports = ports
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let start = Instant::now();
    let mut args = vec![
        "lab",
        "up",
        "--name",
        name,
        "--manifests",
        &manifests,
        "--ports",
        &ports,
        "--kube-proxy",
        which.kube_proxy(),
    ];
    if which == Which::Nodes {
        args.extend(["--nodes", "2"]);
    }
    let out = bulkhead(&args);
    if !out.status.success() {
        return Err(format!(
            "lab up failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    eprintln!("lab {name} up in {:?}", start.elapsed());
    let state_path = PathBuf::from("/run/bulkhead/lab")
        .join(name)
        .join("state.json");
    let state: serde_json::Value = std::fs::read_to_string(&state_path)
        .map_err(|e| format!("{}: {e}", state_path.display()))
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))?;
    let topology = topology(which);
    let hosts = state["hosts"].as_array().ok_or("state has no hosts")?;
    for pod in &topology.pods {
        let host = hosts
            .iter()
            .find(|h| h["name"] == pod.key().as_str())
            .ok_or_else(|| format!("the lab has no pod {}", pod.key()))?;
        let mut ips: Vec<std::net::IpAddr> = serde_json::from_value(host["ips"].clone())
            .map_err(|e| format!("{}: {e}", pod.key()))?;
        if data::is_host_network(&pod.key()) {
            // Its node's addresses; the data knows the IPv4 InternalIP.
            if host["host_network"] != true {
                return Err(format!("{}: not a hostNetwork host of the lab", pod.key()));
            }
            ips.retain(std::net::IpAddr::is_ipv4);
        }
        if ips != pod.ips {
            return Err(format!(
                "{}: the lab gave {ips:?}, the data computes with {:?}",
                pod.key(),
                pod.ips
            ));
        }
    }
    let watched = PathBuf::from(state["watch"].as_str().ok_or("state has no watch")?);
    Ok((watched, topology))
}

/// Makes `policies` the objects in force in lab `name` and waits until
/// its agents enforce them.
fn apply(name: &str, watched: &std::path::Path, policies: &str) -> Result<(), String> {
    let tmp = watched.with_file_name(".policies.yaml.tmp");
    std::fs::write(&tmp, policies).map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, watched.join("policies.yaml")).map_err(|e| e.to_string())?;
    let out = bulkhead(&[
        "lab",
        "sync",
        "--name",
        name,
        "--timeout-ms",
        SYNC_TIMEOUT_MS,
    ]);
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "lab sync failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// What one probe saw.
#[derive(Clone, Debug)]
struct Seen {
    allowed: bool,
    outcome: String,
}

/// One `lab probe` in lab `name` from `from` to `to` on `protocol`/`port`
/// (IPv4).
fn probe(
    name: &str,
    from: &[&str],
    to: &str,
    protocol: &str,
    port: u16,
    timeout_ms: &str,
) -> Result<BTreeMap<String, Seen>, String> {
    let (from, port) = (from.join(","), port.to_string());
    let out = bulkhead(&[
        "lab",
        "probe",
        "--name",
        name,
        "--family",
        "4",
        "--output",
        "json",
        "--timeout-ms",
        timeout_ms,
        "--from",
        &from,
        "--to",
        to,
        "--protocols",
        protocol,
        "--ports",
        &port,
    ]);
    if !out.status.success() {
        return Err(format!(
            "lab probe failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = String::from_utf8(out.stdout).map_err(|e| e.to_string())?;
    Ok(json_lines(&text)
        .into_iter()
        .filter_map(|v| {
            let src = v["src"].as_str()?.to_owned();
            let outcome = v["outcome"].as_str()?.to_owned()
                + &v["detail"]
                    .as_str()
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default();
            Some((
                src,
                Seen {
                    allowed: v["allowed"].as_bool()?,
                    outcome,
                },
            ))
        })
        .collect())
}

/// Whether `seen` is what upstream asks for `e`: allowed connects (or is
/// answered); denied times out.
fn agrees(e: &Expect, seen: &Seen) -> bool {
    if e.allowed {
        seen.allowed && matches!(seen.outcome.as_str(), "connected" | "refused")
    } else {
        !seen.allowed && seen.outcome == "timeout"
    }
}

/// Probes one group (same server, protocol, port) in lab `name`; one line
/// per mismatch.
fn probe_group(name: &str, group: &[&Expect]) -> Vec<String> {
    let (to, protocol, port) = (&group[0].to, &group[0].protocol, group[0].port);
    let from: Vec<&str> = group.iter().map(|e| e.from.as_str()).collect();
    PROBES.fetch_add(group.len(), Ordering::Relaxed);
    let mut seen = match probe(name, &from, to, protocol, port, TIMEOUT_MS) {
        Ok(s) => s,
        Err(err) => return vec![err],
    };
    let slow: Vec<&str> = group
        .iter()
        .filter(|e| e.allowed && seen.get(&e.from).is_some_and(|s| s.outcome == "timeout"))
        .map(|e| e.from.as_str())
        .collect();
    if !slow.is_empty() {
        RETRIES.fetch_add(slow.len(), Ordering::Relaxed);
        match probe(name, &slow, to, protocol, port, RETRY_TIMEOUT_MS) {
            Ok(again) => seen.extend(again),
            Err(err) => return vec![err],
        }
    }
    group
        .iter()
        .filter_map(|e| match seen.get(&e.from) {
            Some(s) if agrees(e, s) => None,
            Some(s) => Some(format!(
                "{e}: real packets: {} ({})",
                if s.allowed { "allowed" } else { "denied" },
                s.outcome
            )),
            None => Some(format!("{e}: not probed")),
        })
        .collect()
}

/// Runs one step in lab `which`; one line per mismatch.
fn run_step(
    which: Which,
    watched: &std::path::Path,
    topology: &Model,
    scenario: &Scenario,
    n: usize,
    step: &Step,
) -> Vec<String> {
    let name = which.name();
    let at = format!("{} step {} ({:?})", scenario.file, n + 1, step.name);
    STEPS.fetch_add(1, Ordering::Relaxed);
    let policies = data::expand(step, topology);
    if let Err(e) = apply(name, watched, &policies) {
        return vec![format!("{at}: {e}")];
    }
    let mut groups: BTreeMap<(&str, &str, u16), Vec<&Expect>> = BTreeMap::new();
    let mut through: Vec<&Expect> = Vec::new();
    for e in data::checked(step) {
        match e.via {
            Via::Pod => groups
                .entry((&e.to, &e.protocol, e.port))
                .or_default()
                .push(e),
            Via::Service => through.push(e),
        }
    }
    let services = (!through.is_empty()).then(|| {
        let state = LabState::load(name)
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("lab {name} has no state"));
        (state, load(which, Some(&policies)))
    });
    std::thread::scope(|s| {
        let mut handles: Vec<_> = groups
            .values()
            .map(|g| s.spawn(|| probe_group(name, g)))
            .collect();
        if let Some((state, model)) = &services {
            handles.extend(
                through
                    .iter()
                    .map(|e| s.spawn(|| probe_service(&at, state, model, e))),
            );
        }
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("probe thread"))
            .map(|m| format!("{at}: {m}"))
            .collect()
    })
}

/// Most probes of one `via: service` expectation.
const MAX_SERVICE_PROBES: usize = 12;

/// One entry of a node's conntrack table (`/proc/net/nf_conntrack`):
/// the original direction and the source of the reply direction.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Tracked {
    protocol: String,
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    /// The reply's source: after kube-proxy's DNAT, the backend.
    reply_src: IpAddr,
}

/// Parses one line of `nf_conntrack` (`ipv4 2 tcp 6 117 SYN_SENT
/// src=.. dst=.. sport=.. dport=.. [UNREPLIED] src=.. dst=.. sport=..
/// dport=.. ...`; the first `src`/`dst`/`sport`/`dport` are the original
/// direction's, the next `src` the reply's).
fn parse_tracked(line: &str) -> Option<Tracked> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let protocol = words.get(2)?.to_ascii_uppercase();
    let all = |key: &str| -> Vec<&str> {
        words
            .iter()
            .filter_map(|w| w.strip_prefix(key)?.strip_prefix('='))
            .collect()
    };
    let (src, dst, sport, dport) = (all("src"), all("dst"), all("sport"), all("dport"));
    Some(Tracked {
        protocol,
        src: src.first()?.parse().ok()?,
        dst: dst.first()?.parse().ok()?,
        sport: sport.first()?.parse().ok()?,
        dport: dport.first()?.parse().ok()?,
        reply_src: src.get(1)?.parse().ok()?,
    })
}

/// The conntrack entries of namespace `netns` from `client` to
/// `frontend` on `protocol`/`port` (read inside it: `/proc/thread-self`,
/// since `/proc/self/net` is the main thread's namespace).
fn tracked(
    netns: &NsHandle,
    client: IpAddr,
    frontend: IpAddr,
    protocol: &str,
    port: u16,
) -> Result<Vec<Tracked>, String> {
    let text = netns
        .run(|| std::fs::read_to_string("/proc/thread-self/net/nf_conntrack"))
        .map_err(|e| format!("entering {}: {e}", netns.name()))?
        .map_err(|e| format!("{}: nf_conntrack: {e}", netns.name()))?;
    Ok(text
        .lines()
        .filter_map(parse_tracked)
        .filter(|t| {
            t.protocol == protocol && t.src == client && t.dst == frontend && t.dport == port
        })
        .collect())
}

/// A `via: service` expectation in a lab with kube-proxy's rules: the
/// client connects to the Service's ClusterIP again and again (a new
/// connection each time) until the node's conntrack table shows that
/// every backend was picked (kube-proxy's DNAT: the reply direction's
/// source), at most [`MAX_SERVICE_PROBES`] times; every probe must be
/// what upstream asks for (as [`agrees`]), each named with the backend
/// conntrack attributes it to (the entry of its source port, new since
/// the previous probe). One line if some probe disagreed or a backend
/// was never picked, saying which.
fn probe_service(at: &str, state: &LabState, model: &Model, e: &Expect) -> Vec<String> {
    let frontend = data::service_ipv4(model, &e.to);
    let client = data::pod_ipv4(model, &e.from);
    let proto = e.proto();
    let backends: BTreeMap<IpAddr, String> = {
        let svc = model.service(&e.to).expect("checked by service_ipv4");
        let Some(port) = svc
            .ports
            .iter()
            .find(|p| p.protocol == proto && p.port == e.port)
        else {
            return vec![format!("{e}: the Service has no such port")];
        };
        model
            .service_backends(svc, port, true)
            .into_iter()
            .map(|b| (b.addr, model.pods[b.pod].key()))
            .collect()
    };
    let Some(host) = state.hosts.iter().find(|h| h.name == e.from) else {
        return vec![format!("{e}: the lab has no pod {}", e.from)];
    };
    let node = &state.nodes[host.node.min(state.nodes.len() - 1)].netns;
    let (pod_ns, node_ns) = match (NsHandle::open(&host.netns), NsHandle::open(node)) {
        (Ok(p), Ok(n)) => (p, n),
        (Err(err), _) | (_, Err(err)) => return vec![format!("{e}: {err}")],
    };
    let timeout = Duration::from_millis(
        if e.allowed {
            RETRY_TIMEOUT_MS
        } else {
            TIMEOUT_MS
        }
        .parse()
        .expect("a number of milliseconds"),
    );
    let mut known: BTreeSet<u16> = match tracked(&node_ns, client, frontend, &e.protocol, e.port) {
        Ok(t) => t.iter().map(|t| t.sport).collect(),
        Err(err) => return vec![format!("{e}: {err}")],
    };
    let (mut hit, mut log) = (BTreeSet::new(), Vec::new());
    let mut wrong: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..MAX_SERVICE_PROBES {
        PROBES.fetch_add(1, Ordering::Relaxed);
        let (outcome, detail) = match pod_ns.run(|| probe_one(frontend, proto, e.port, timeout)) {
            Ok(r) => r,
            Err(err) => return vec![format!("{e}: {err}")],
        };
        let now = match tracked(&node_ns, client, frontend, &e.protocol, e.port) {
            Ok(t) => t,
            Err(err) => return vec![format!("{e}: {err}")],
        };
        let fresh: Vec<&Tracked> = now.iter().filter(|t| !known.contains(&t.sport)).collect();
        known.extend(fresh.iter().map(|t| t.sport));
        let backend = match fresh.as_slice() {
            [one] => match backends.get(&one.reply_src) {
                Some(b) => {
                    hit.insert(one.reply_src);
                    b.clone()
                }
                None => format!("{} (no backend of the Service)", one.reply_src),
            },
            [] => "no new conntrack entry".to_owned(),
            many => format!("{} new conntrack entries", many.len()),
        };
        let seen = Seen {
            allowed: outcome == Outcome::Connected,
            outcome: outcome.as_str().to_owned()
                + &detail.map(|d| format!(": {d}")).unwrap_or_default(),
        };
        log.push(format!("{backend}: {}", seen.outcome));
        if !agrees(e, &seen) {
            let what = format!(
                "to backend {backend}: {} ({})",
                if seen.allowed { "allowed" } else { "denied" },
                seen.outcome
            );
            *wrong.entry(what).or_default() += 1;
        }
        if hit.len() == backends.len() {
            break;
        }
    }
    let mut why: Vec<String> = wrong
        .iter()
        .map(|(what, n)| format!("{what} ({n} of {} probes)", log.len()))
        .collect();
    let missed: Vec<&str> = backends
        .iter()
        .filter(|(a, _)| !hit.contains(*a))
        .map(|(_, k)| k.as_str())
        .collect();
    if !missed.is_empty() {
        why.push(format!(
            "{} probes never reached {} (conntrack)",
            log.len(),
            missed.join(", ")
        ));
    }
    eprintln!(
        "{at}: {e}: {} probes through {frontend}:{}: {}",
        log.len(),
        e.port,
        log.join("; ")
    );
    if why.is_empty() {
        Vec::new()
    } else {
        vec![format!(
            "{e}: real packets through {frontend}:{}: {}",
            e.port,
            why.join("; ")
        )]
    }
}

/// Runs `scenarios` in lab `which` (brought up if it is not yet); one
/// line per mismatch, and the number of steps and connections.
fn run_in(which: Which, scenarios: &[Scenario]) -> (usize, usize, Vec<String>) {
    if let Some(s) = scenarios.iter().find(|s| data::needs_services(s)) {
        assert_ne!(
            which.kube_proxy(),
            "none",
            "{} connects through a Service: lab {} has no kube-proxy rules",
            s.file,
            which.name()
        );
    }
    let mut slot = slot(which);
    if let Slot::Down = *slot {
        *slot = match bring_up(which) {
            Ok((watched, topology)) => Slot::Up {
                watched,
                topology: Box::new(topology),
            },
            Err(e) => Slot::Failed(e),
        };
    }
    let (watched, topology) = match &*slot {
        Slot::Up { watched, topology } => (watched, topology),
        Slot::Failed(e) => panic!("lab {} is not up: {e}", which.name()),
        Slot::Down => unreachable!("brought up above"),
    };
    let (mut steps, mut checks, mut failures) = (0, 0, Vec::new());
    for s in scenarios {
        for (n, step) in s.steps.iter().enumerate() {
            steps += 1;
            checks += data::checked(step).count();
            failures.extend(run_step(which, watched, topology, s, n, step));
        }
    }
    (steps, checks, failures)
}

/// Runs every scenario of `api`/`channel` in the labs (those whose server
/// is a hostNetwork pod in the two-node lab, after the others); panics
/// listing every mismatch.
fn run_profile(api: &str, channel: &str) {
    let (host, scenarios): (Vec<Scenario>, Vec<Scenario>) = data::scenarios()
        .into_iter()
        .filter(|s| s.profile.api == api && s.profile.channel == channel)
        .partition(data::needs_host_network);
    assert!(
        !scenarios.is_empty() || !host.is_empty(),
        "no {api} {channel} scenarios"
    );
    if !privileged() {
        eprintln!("not root: the {api} {channel} scenarios are not run on packets");
        return;
    }
    let mut failures = Vec::new();
    for (which, list) in [(Which::Pods, &scenarios), (Which::Nodes, &host)] {
        if list.is_empty() {
            continue;
        }
        let start = Instant::now();
        let (steps, checks, found) = run_in(which, list);
        eprintln!(
            "{api} {channel} in lab {}: {} scenarios, {steps} steps, {checks} connections probed in {:?}{}",
            which.name(),
            list.len(),
            start.elapsed(),
            if data::skip_admin() {
                " (BULKHEAD_NPAPI_SKIP_ADMIN: admin objects left out, allowed ones only)"
            } else {
                ""
            }
        );
        failures.push((checks, found));
    }
    let checks: usize = failures.iter().map(|(c, _)| c).sum();
    let failures: Vec<String> = failures.into_iter().flat_map(|(_, f)| f).collect();
    assert!(
        failures.is_empty(),
        "{} of {checks} connections differ from upstream's expectations:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn v1alpha2_standard() {
    run_profile("v1alpha2", "standard");
}

#[test]
fn v1alpha2_experimental() {
    run_profile("v1alpha2", "experimental");
}

#[test]
fn v1alpha1_core() {
    run_profile("v1alpha1", "core");
}

#[test]
fn v1alpha1_extended() {
    run_profile("v1alpha1", "extended");
}
