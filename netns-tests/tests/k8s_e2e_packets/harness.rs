//! The packet harness of the upstream e2e scenarios: the same API as the
//! reference-evaluator harness (`policy/tests/k8s_e2e/harness.rs`),
//! answered by real packets in one lab.
//!
//! - **One lab per test binary** ([`LAB`], of [`NODES`] nodes, both set
//!   by the test binary: `k8spk` on one node, `k8sp3` on three, the pods
//!   spread round-robin): the nine pods of the model,
//!   serving TCP, UDP and SCTP on 80 and 81 and on every other port a
//!   scenario probes ([`EXTRA_PORTS`]), plus one external host per non-pod
//!   address a scenario asserts ([`EXTERNALS`]). The first `load` brings it
//!   up (after a `lab down` of any leftover of a killed run); a process-exit
//!   hook takes it down, also when tests fail (libtest exits through
//!   `exit(3)`, which runs the hook).
//! - **`load`** writes the scenario's `cluster.yaml` (pods and namespaces,
//!   with the scenario's labels and ports) and `policies.yaml` into the
//!   lab's watched directory and runs `lab sync`, so every state of a
//!   sequence (create, update, delete, relabel) is a live change enforced
//!   by the running agent, not a fresh lab.
//! - **`check`** probes every ordered pod pair for exactly the scenario's
//!   families, protocols and ports in one `lab probe` and compares every
//!   cell with the truth table. A cell that is denied but should be allowed
//!   could be a slow answer, so then the whole check is probed once more
//!   with a long timeout and judged on that; a cell allowed but denied by
//!   the table is never retried away (a packet got through). Probe
//!   anomalies (`error`, `unreachable`, a missing result) fail the check.
//! - **`assert_flow`** probes one pair between a pod and an external host.
//! - **Through Services** ([`VIA`] `service`, set by the test binary): every
//!   pod gets a Service of its own (`s-POD` selecting `pod: POD`, dual
//!   stack, every served port and protocol), the lab's nodes run
//!   kube-proxy's rules ([`KUBE_PROXY`]: iptables or nftables mode), and
//!   every probe between pods goes to the destination's ClusterIP instead
//!   of its address (`lab probe --via service`): the same truth tables
//!   must hold, since policy is judged on the backend a connection
//!   reaches. Probes to and from external hosts stay on addresses.
//!
//! Every cluster remembers its content: if tests run in parallel threads,
//! a check re-applies its own cluster first when another test changed the
//! lab, so results never mix (the lab is locked during each step).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, Once};
use std::time::Instant;

use bulkhead_policy::model::Model;
use bulkhead_policy::model::addressing::AddressPlan;
use bulkhead_policy::source::manifest::load_dir;

use crate::lab_support::{bulkhead, bulkhead_bin, json_lines, privileged, tempdir};

pub use crate::common::*;

use crate::{KUBE_PROXY, LAB, NODES, VIA};
/// Ports that scenarios probe beyond 80 and 81, served on every host (so an
/// allowed probe connects rather than being refused).
const EXTRA_PORTS: &str = "53,82,85,90,91,443,7070,8080,9090";
/// The non-pod addresses scenarios assert flows with, one external host each.
const EXTERNALS: [&str; 14] = [
    "8.8.8.8",
    "192.0.2.1",
    "192.0.2.127",
    "192.0.2.128",
    "192.0.2.255",
    "198.51.100.1",
    "198.51.100.7",
    "203.0.113.5",
    "203.0.113.16",
    "203.0.113.200",
    "2001:db8::1",
    "2001:db8:fffe::1",
    "2001:db8:ffff::1",
    "2001:db9::1",
];
/// Answer timeout of a probe: the lab is local, an answer takes well under
/// a millisecond.
const TIMEOUT_MS: &str = "200";
/// Timeout of the second try of a check that found a denied cell the
/// table allows.
const RETRY_TIMEOUT_MS: &str = "1500";
/// Probes in flight at once.
const MAX_IN_FLIGHT: &str = "512";

static CHECKS: AtomicUsize = AtomicUsize::new(0);
static PROBES: AtomicUsize = AtomicUsize::new(0);
static FLOWS: AtomicUsize = AtomicUsize::new(0);
static RETRIES: AtomicUsize = AtomicUsize::new(0);
static SKIPPED: Mutex<Vec<String>> = Mutex::new(Vec::new());
static LOADS: AtomicUsize = AtomicUsize::new(0);
static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

/// The lab, shared by every test of the binary.
enum Slot {
    /// Not brought up yet.
    Down,
    /// Up; `current` is the generation of the cluster in force (`None`
    /// while unknown, e.g. after a failed sync).
    Up {
        watched: PathBuf,
        current: Option<u64>,
    },
    /// `lab up` failed: every test fails with this.
    Failed(String),
}

static LAB_SLOT: Mutex<Slot> = Mutex::new(Slot::Down);

fn lab() -> MutexGuard<'static, Slot> {
    LAB_SLOT.lock().unwrap_or_else(|p| p.into_inner())
}

extern "C" fn lab_down_at_exit() {
    let out = std::process::Command::new(bulkhead_bin())
        .args(["lab", "down", "--name", LAB])
        .output();
    let skipped = SKIPPED.lock().unwrap_or_else(|p| p.into_inner());
    eprintln!(
        "k8s_e2e_packets: {} loads, {} matrices ({} probes, {} re-probed), {} external flows, \
         {} checks not probed{}; lab {LAB} down: {}",
        LOADS.load(Ordering::Relaxed),
        CHECKS.load(Ordering::Relaxed),
        PROBES.load(Ordering::Relaxed),
        RETRIES.load(Ordering::Relaxed),
        FLOWS.load(Ordering::Relaxed),
        skipped.len(),
        skipped
            .iter()
            .map(|s| format!("\n  not probed: {s}"))
            .collect::<String>(),
        match out {
            Ok(o) if o.status.success() => "ok".to_owned(),
            Ok(o) => format!("FAILED: {}", String::from_utf8_lossy(&o.stderr)),
            Err(e) => format!("FAILED: {e}"),
        }
    );
}

/// Brings the lab up (once): the model without policy, the extra ports,
/// the external hosts.
fn bring_up() -> Result<PathBuf, String> {
    static HOOK: Once = Once::new();
    let _ = bulkhead(&["lab", "down", "--name", LAB]);
    HOOK.call_once(|| {
        // SAFETY: registers a plain `extern "C" fn` with no captured state.
        let rc = unsafe { libc::atexit(lab_down_at_exit) };
        assert_eq!(rc, 0, "atexit failed");
    });
    let dir = tempdir::Dir::new("k8spk-up");
    std::fs::write(
        dir.path().join("cluster.yaml"),
        with_services(Setup::default().manifests()),
    )
    .map_err(|e| e.to_string())?;
    let manifests = dir.path().display().to_string();
    let externals = EXTERNALS.join(",");
    let nodes = NODES.to_string();
    let start = Instant::now();
    let out = bulkhead(&[
        "lab",
        "up",
        "--name",
        LAB,
        "--manifests",
        &manifests,
        "--ports",
        EXTRA_PORTS,
        "--external",
        &externals,
        "--nodes",
        &nodes,
        "--kube-proxy",
        KUBE_PROXY,
    ]);
    if !out.status.success() {
        return Err(format!(
            "lab up failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    eprintln!("lab {LAB} up in {:?}", start.elapsed());
    let state_path = PathBuf::from("/run/bulkhead/lab")
        .join(LAB)
        .join("state.json");
    let state: serde_json::Value = std::fs::read_to_string(&state_path)
        .map_err(|e| format!("{}: {e}", state_path.display()))
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))?;
    // The lab's pods have the addresses the scenarios compute with.
    let model = model_of(&Setup::default().manifests(), None);
    let hosts = state["hosts"].as_array().ok_or("state has no hosts")?;
    // The pods are spread over every node (round-robin), each node with
    // its own agent.
    let on = |n: u64| hosts.iter().filter(|h| h["node"] == n).count();
    let nodes = state["nodes"].as_array().ok_or("state has no nodes")?;
    if nodes.len() != NODES || (0..NODES as u64).any(|n| on(n) == 0) {
        return Err(format!(
            "{} nodes, pods per node {:?}; wanted {NODES}, each with pods",
            nodes.len(),
            (0..NODES as u64).map(on).collect::<Vec<_>>()
        ));
    }
    for pod in &model.pods {
        let host = hosts
            .iter()
            .find(|h| h["name"] == pod.key().as_str())
            .ok_or_else(|| format!("the lab has no pod {}", pod.key()))?;
        let ips: Vec<IpAddr> = serde_json::from_value(host["ips"].clone())
            .map_err(|e| format!("{}: {e}", pod.key()))?;
        if ips != pod.ips {
            return Err(format!(
                "{}: the lab gave {ips:?}, the scenarios compute with {:?}",
                pod.key(),
                pod.ips
            ));
        }
    }
    Ok(PathBuf::from(
        state["watch"].as_str().ok_or("state has no watch")?,
    ))
}

/// The ports every lab host serves: 80 and 81 and [`EXTRA_PORTS`].
fn served_ports() -> Vec<u16> {
    [80, 81]
        .into_iter()
        .chain(EXTRA_PORTS.split(',').map(|p| p.parse().expect("a port")))
        .collect()
}

/// `manifests` plus, through Services ([`VIA`]), one Service per pod:
/// `s-POD` in the pod's namespace, selecting `pod: POD`, dual stack, on
/// every served port and protocol (target port = port).
fn with_services(mut manifests: String) -> String {
    if VIA != "service" {
        return manifests;
    }
    for ns in NAMESPACES {
        for pod in PODS {
            manifests.push_str(&format!(
                "---\napiVersion: v1\nkind: Service\nmetadata: {{name: s-{pod}, namespace: {ns}}}\n\
                 spec:\n  ipFamilyPolicy: RequireDualStack\n  selector: {{pod: {pod}}}\n  ports:\n"
            ));
            for protocol in ["TCP", "UDP", "SCTP"] {
                for port in served_ports() {
                    let name = format!("{}-{port}", protocol.to_ascii_lowercase());
                    manifests.push_str(&format!(
                        "  - {{name: {name}, protocol: {protocol}, port: {port}, targetPort: {port}}}\n"
                    ));
                }
            }
        }
    }
    manifests
}

/// Loads `cluster` (and `policies`) as the lab's agent does: default pod
/// CIDRs, addresses in namespace/name order.
fn model_of(cluster: &str, policies: Option<&str>) -> Model {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = tempdir::Dir::new(&format!("k8spk-m{}", N.fetch_add(1, Ordering::Relaxed)));
    std::fs::write(dir.path().join("cluster.yaml"), cluster).expect("write cluster");
    if let Some(p) = policies {
        std::fs::write(dir.path().join("policies.yaml"), p).expect("write policies");
    }
    let model = match load_dir(dir.path(), &AddressPlan::default()) {
        Ok(m) => m,
        Err(e) => panic!("load failed:\n{e}\npolicies:\n{}", policies.unwrap_or("")),
    };
    assert_eq!(model.pods.len(), 9);
    for pod in &model.pods {
        assert_eq!(pod.ips.len(), 2, "{} has one address per family", pod.key());
    }
    model
}

impl Setup {
    /// Loads the model plus `policies` (YAML documents) into the lab.
    pub fn load(&self, policies: &str) -> Cluster {
        self.load_with(|_| policies.to_string())
    }

    /// Loads the model plus the policies that `policies` writes knowing the
    /// pods' addresses (for ipBlocks) into the lab.
    pub fn load_with(&self, policies: impl FnOnce(&Model) -> String) -> Cluster {
        let cluster = with_services(self.manifests());
        let base = model_of(&cluster, None);
        let text = policies(&base);
        let model = model_of(&cluster, Some(&text));
        for (a, b) in base.pods.iter().zip(&model.pods) {
            assert_eq!(a.ips, b.ips, "{}: addresses changed with policies", a.key());
        }
        let c = Cluster {
            generation: NEXT_GENERATION.fetch_add(1, Ordering::Relaxed),
            cluster,
            policies: text,
            model,
            live: privileged(),
        };
        if c.live {
            LOADS.fetch_add(1, Ordering::Relaxed);
            let mut slot = lab();
            c.apply(&mut slot);
        }
        c
    }
}

/// Loads the upstream model plus `policies` into the lab.
pub fn load(policies: &str) -> Cluster {
    Setup::default().load(policies)
}

/// Loads the upstream model plus policies written knowing the addresses.
pub fn load_with(policies: impl FnOnce(&Model) -> String) -> Cluster {
    Setup::default().load_with(policies)
}

/// One probe's result: allowed, and how it ended.
#[derive(Clone, Debug)]
struct Seen {
    allowed: bool,
    outcome: String,
}

/// Results of one `lab probe`, by (src, dst, family, protocol, port).
type Results = HashMap<(String, String, String, String, u16), Seen>;

/// A cluster in force in the lab.
pub struct Cluster {
    generation: u64,
    cluster: String,
    policies: String,
    model: Model,
    /// Whether the lab runs (privileged); otherwise checks do nothing.
    live: bool,
}

impl Cluster {
    /// The address of `pod` of `family`.
    pub fn ip(&self, pod: &str, family: Family) -> IpAddr {
        pod_ip(&self.model, pod, family)
    }

    /// Makes this cluster the one in force (the lab is up, the files are
    /// written, the agent enforces them).
    fn apply(&self, slot: &mut Slot) {
        if let Slot::Down = slot {
            *slot = match bring_up() {
                Ok(watched) => Slot::Up {
                    watched,
                    current: None,
                },
                Err(e) => Slot::Failed(e),
            };
        }
        let (watched, current) = match slot {
            Slot::Up { watched, current } => (watched.clone(), current),
            Slot::Failed(e) => panic!("the lab is not up: {e}"),
            Slot::Down => unreachable!("brought up above"),
        };
        if *current == Some(self.generation) {
            return;
        }
        *current = None;
        for (name, content) in [
            ("cluster.yaml", &self.cluster),
            ("policies.yaml", &self.policies),
        ] {
            let tmp = watched.with_file_name(format!(".{name}.tmp"));
            std::fs::write(&tmp, content).expect("write");
            std::fs::rename(&tmp, watched.join(name)).expect("rename into the watched dir");
        }
        let start = Instant::now();
        let out = bulkhead(&["lab", "sync", "--name", LAB]);
        assert!(
            out.status.success(),
            "lab sync failed ({}):\n{}\npolicies:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.policies
        );
        eprintln!("synced in {:?}", start.elapsed());
        *current = Some(self.generation);
    }

    /// Runs `lab probe` with `args` (after the cluster is in force).
    fn probe(&self, args: &[&str], timeout_ms: &str) -> Results {
        let mut slot = lab();
        self.apply(&mut slot);
        let mut all = vec![
            "lab",
            "probe",
            "--name",
            LAB,
            "--via",
            if args.contains(&"*/*") { VIA } else { "pod" },
            "--output",
            "json",
            "--timeout-ms",
            timeout_ms,
            "--max-in-flight",
            MAX_IN_FLIGHT,
        ];
        all.extend_from_slice(args);
        let out = bulkhead(&all);
        drop(slot);
        assert!(out.status.success(), "lab probe failed: {:?}", out.status);
        let text = String::from_utf8(out.stdout).expect("UTF-8");
        json_lines(&text)
            .into_iter()
            .map(|v| {
                let s = |k: &str| {
                    v[k].as_str()
                        .unwrap_or_else(|| panic!("{k} in {v}"))
                        .to_owned()
                };
                let port = v["port"].as_u64().and_then(|p| u16::try_from(p).ok());
                (
                    (
                        s("src"),
                        s("dst"),
                        s("family"),
                        s("protocol"),
                        port.expect("port"),
                    ),
                    Seen {
                        allowed: v["allowed"].as_bool().expect("allowed"),
                        outcome: s("outcome")
                            + &v["detail"]
                                .as_str()
                                .map(|d| format!(": {d}"))
                                .unwrap_or_default(),
                    },
                )
            })
            .collect()
    }

    /// `lab verify` on this cluster (in force first): live TCP, UDP and
    /// SCTP probes over both families between every pod and external host,
    /// across the nodes, against `bulkhead connectivity`; asserts that none
    /// disagrees.
    pub fn verify(&self) {
        if !self.live {
            return;
        }
        let mut slot = lab();
        self.apply(&mut slot);
        let out = bulkhead(&[
            "lab",
            "verify",
            "--name",
            LAB,
            "--via",
            VIA,
            "--family",
            "both",
            "--protocols",
            "TCP,UDP,SCTP",
            "--timeout-ms",
            RETRY_TIMEOUT_MS,
            "--max-in-flight",
            MAX_IN_FLIGHT,
        ]);
        drop(slot);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains(" 0 disagreements"),
            "lab verify ({}):\n{text}\npolicies in force:\n{}",
            out.status,
            self.policies
        );
        eprintln!("{}", text.lines().last().unwrap_or_default());
    }

    /// Checks the IPv4 matrix of every probe against `expected`.
    pub fn check(&self, probes: &[Probe], expected: &Reachability) {
        self.check_families(&[Family::V4], probes, expected);
    }

    /// Checks the IPv4 and the IPv6 matrix of every probe.
    pub fn check_dual(&self, probes: &[Probe], expected: &Reachability) {
        self.check_families(&[Family::V4, Family::V6], probes, expected);
    }

    /// Checks every (family, probe) matrix on real packets; on failure,
    /// prints every wrong matrix and the probes' outcomes.
    pub fn check_families(&self, families: &[Family], probes: &[Probe], expected: &Reachability) {
        if !self.live {
            return;
        }
        let mut args = vec!["--from", "*/*", "--to", "*/*", "--family"];
        args.push(match families {
            [Family::V4] => "4",
            [Family::V6] => "6",
            _ => "both",
        });
        let mut protocols: Vec<&str> = probes.iter().map(|p| p.protocol.as_str()).collect();
        protocols.sort_unstable();
        protocols.dedup();
        let protocols = protocols.join(",");
        let mut ports: Vec<u16> = probes.iter().map(|p| p.port).collect();
        ports.sort_unstable();
        ports.dedup();
        let ports = ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(",");
        args.extend(["--protocols", &protocols, "--ports", &ports]);

        let first = self.probe(&args, TIMEOUT_MS);
        let (report, hard, slow) = judge(&first, families, probes, expected);
        CHECKS.fetch_add(families.len() * probes.len(), Ordering::Relaxed);
        PROBES.fetch_add(families.len() * probes.len() * 72, Ordering::Relaxed);
        if report.is_empty() {
            return;
        }
        let mut failure = String::new();
        if hard {
            failure.push_str(&report);
        }
        if slow {
            // Denied but should be allowed: maybe only slow. Judge a second
            // run with a long timeout (a real drop still times out).
            RETRIES.fetch_add(families.len() * probes.len() * 72, Ordering::Relaxed);
            eprintln!("re-probing with a {RETRY_TIMEOUT_MS} ms timeout:\n{report}");
            let second = self.probe(&args, RETRY_TIMEOUT_MS);
            let (again, _, _) = judge(&second, families, probes, expected);
            if !again.is_empty() {
                failure.push_str(&format!(
                    "second try, {RETRY_TIMEOUT_MS} ms timeout:\n{again}"
                ));
            }
        }
        assert!(
            failure.is_empty(),
            "real packets differ from Kubernetes semantics:\n{failure}policies in force:\n{}",
            self.policies
        );
    }

    /// Asserts the verdict for traffic between a pod and a non-pod address
    /// (an external host of the lab); addresses the lab has no host for are
    /// noted and counted, not probed.
    pub fn assert_flow(&self, src: IpAddr, dst: IpAddr, probe: Probe, allowed: bool) {
        if !self.live {
            return;
        }
        let known = |ip: &IpAddr| {
            self.model.pods.iter().any(|p| p.ips.contains(ip))
                || EXTERNALS
                    .iter()
                    .any(|e| e.parse::<IpAddr>().ok() == Some(*ip))
        };
        if !known(&src) || !known(&dst) {
            let what = format!("{src} -> {dst} {probe:?} (no lab host)");
            eprintln!("not probed on packets: {what}");
            SKIPPED.lock().unwrap_or_else(|p| p.into_inner()).push(what);
            return;
        }
        let (from, to) = (src.to_string(), dst.to_string());
        let port = probe.port.to_string();
        let args = [
            "--from",
            &from,
            "--to",
            &to,
            "--family",
            if dst.is_ipv4() { "4" } else { "6" },
            "--protocols",
            probe.protocol.as_str(),
            "--ports",
            &port,
        ];
        FLOWS.fetch_add(1, Ordering::Relaxed);
        let one = |timeout: &str| -> Seen {
            let results = self.probe(&args, timeout);
            assert_eq!(results.len(), 1, "one probe: {results:?}");
            results.into_values().next().expect("one result")
        };
        let mut seen = one(TIMEOUT_MS);
        if allowed && !seen.allowed {
            RETRIES.fetch_add(1, Ordering::Relaxed);
            seen = one(RETRY_TIMEOUT_MS);
        }
        let anomaly = !matches!(seen.outcome.as_str(), "connected" | "refused" | "timeout");
        assert!(
            seen.allowed == allowed && !anomaly,
            "{src} -> {dst} {probe:?}: expected {}, real packets: {} ({})\npolicies in force:\n{}",
            if allowed { "allowed" } else { "denied" },
            if seen.allowed { "allowed" } else { "denied" },
            seen.outcome,
            self.policies
        );
    }
}

/// Compares `results` with `expected` for every family and probe; returns
/// the report (empty when all agree), whether it holds a failure no retry
/// can excuse (a cell allowed but denied by the table, or an anomaly: a
/// probe that ended other than connected, refused or timed out, or is
/// missing), and whether some cell was denied but should be allowed (which
/// a slow answer could explain).
fn judge(
    results: &Results,
    families: &[Family],
    probes: &[Probe],
    expected: &Reachability,
) -> (String, bool, bool) {
    let (mut report, mut hard, mut slow) = (String::new(), false, false);
    for &family in families {
        for &probe in probes {
            let heading = format!("{} {}/{}", family.label(), probe.protocol, probe.port);
            let mut anomalies = Vec::new();
            report.push_str(&expected.diff(&heading, |src, dst| {
                let key = (
                    src.to_owned(),
                    dst.to_owned(),
                    family.label().to_owned(),
                    probe.protocol.as_str().to_owned(),
                    probe.port,
                );
                match results.get(&key) {
                    Some(seen) => {
                        if !matches!(seen.outcome.as_str(), "connected" | "refused" | "timeout") {
                            anomalies.push(format!("  {src} -> {dst}: {}", seen.outcome));
                        }
                        Cell {
                            allowed: seen.allowed,
                            note: seen.outcome.clone(),
                        }
                    }
                    None => {
                        anomalies.push(format!("  {src} -> {dst}: not probed"));
                        Cell {
                            allowed: false,
                            note: "not probed".into(),
                        }
                    }
                }
            }));
            let pods = all_pods();
            for (s, src) in pods.iter().enumerate() {
                for (d, dst) in pods.iter().enumerate() {
                    if s == d {
                        continue;
                    }
                    let key = (
                        src.clone(),
                        dst.clone(),
                        family.label().to_owned(),
                        probe.protocol.as_str().to_owned(),
                        probe.port,
                    );
                    let got = results.get(&key).is_some_and(|r| r.allowed);
                    let want = expected.get(s, d);
                    hard |= got && !want;
                    slow |= !got && want;
                }
            }
            if !anomalies.is_empty() {
                hard = true;
                report.push_str(&format!(
                    "{heading}: probe anomalies:\n{}\n\n",
                    anomalies.join("\n")
                ));
            }
        }
    }
    (report, hard, slow)
}
