//! `lab verify` on the conformance cases of np-guard/netpol-analyzer: for
//! every NetworkPolicy-only or policy-free case (the same data folder,
//! discovery and tiers as `controller/tests/conformance.rs`), the case's
//! manifests run as a lab (pods from the case's `pod_subnet_free_of_cidrs`,
//! status addresses ignored, one external host per probe address outside
//! the pod subnet that the evaluator-level test probes), and `lab verify`
//! must find zero disagreements between real packets and `bulkhead
//! connectivity`.
//!
//! What is probed, per case, IPv4 (the cases are IPv4), in two `lab
//! verify` runs over every ordered pair of hosts (pod to pod, pod to
//! external, external to pod) on TCP, UDP and SCTP:
//! 1. each destination's own container ports (servers there: an allowed
//!    probe must connect);
//! 2. every port the case's policies can tell apart, on every destination:
//!    each policy port and range end (±1), each named port resolved
//!    through every pod (±1), and 1, 53, 80, 65535 for ports no policy
//!    names (where nothing listens, the destination's own refusal shows
//!    that the packet got through).
//!
//! No disagreement class is left out: a port outside both sets is one no
//! rule names and no server listens on, which every rule treats like 1 or
//! 65535. (The evaluator-level test also probes each container port's
//! neighbours on every pair; on packets that would triple the run for
//! ports of that same class.) A run whose only disagreements are allowed
//! probes that timed out is verified once more with a long timeout and
//! judged on that (a slow answer is not a policy verdict; a real drop
//! times out again); probes that got through where the policy denies are
//! never retried away.
//!
//! Without the data folder the test passes with a message, like the
//! evaluator-level one. `BULKHEAD_CONFORMANCE_ONLY=case,case` runs only
//! those cases (while investigating one).

// Shared with controller/tests/conformance.rs, which uses all of them.
#[allow(dead_code)]
#[path = "../../controller/tests/conformance/cases.rs"]
mod cases;
mod lab_support;
#[allow(dead_code)]
#[path = "../../controller/tests/conformance/probes.rs"]
mod probes;

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use bulkhead_policy::model::addressing::AddressPlan;
use bulkhead_policy::source::manifest::load_dir;
use ipnetwork::IpNetwork;

use cases::{Case, FALLBACK_POD_SUBNET, IN_SCOPE_TIERS, data_dir, read_cases};
use lab_support::{bulkhead, privileged, serial};

/// The lab's name.
const LAB: &str = "cfm";
/// Answer timeout of a probe (the lab is local).
const TIMEOUT_MS: &str = "200";
/// Timeout of a second verification (see the module docs).
const RETRY_TIMEOUT_MS: &str = "1500";
/// Probes in flight at once.
const MAX_IN_FLIGHT: &str = "512";
/// The whole run must have sent at least this many probes.
const MIN_TOTAL_PROBES: u64 = 10_000;

/// Takes the lab down when dropped, however the case ends.
struct Down;

impl Drop for Down {
    fn drop(&mut self) {
        let out = bulkhead(&["lab", "down", "--name", LAB]);
        if !out.status.success() && !std::thread::panicking() {
            panic!("lab down --name {LAB} failed");
        }
    }
}

/// What one case gave.
struct Verified {
    pods: usize,
    externals: usize,
    ports: usize,
    probes: u64,
    /// Probes verified a second time (see the module docs).
    retried: u64,
    took: Duration,
}

/// One `lab verify` (IPv4; `ports`: `--ports`, else each destination's
/// container ports); the number of probes, and of probes verified again.
fn verify(ports: Option<&str>) -> Result<(u64, u64), String> {
    let run = |timeout: &str| {
        let mut args = vec![
            "lab",
            "verify",
            "--name",
            LAB,
            "--family",
            "4",
            "--timeout-ms",
            timeout,
            "--max-in-flight",
            MAX_IN_FLIGHT,
        ];
        if let Some(p) = ports {
            args.extend(["--ports", p]);
        }
        let out = bulkhead(&args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        // The last line: "N probes, M disagreements with the policy."
        let probes: Option<u64> = stdout
            .lines()
            .last()
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok());
        let disagreements: Vec<String> = stdout
            .lines()
            .filter(|l| l.contains(": policy "))
            .map(str::to_owned)
            .collect();
        (out.status, probes, disagreements, stdout)
    };
    let (status, probes, disagreements, stdout) = run(TIMEOUT_MS);
    let probes = probes.ok_or_else(|| format!("lab verify printed no summary: {stdout:?}"))?;
    if status.success() {
        return Ok((probes, 0));
    }
    let only_slow = !disagreements.is_empty()
        && disagreements
            .iter()
            .all(|d| d.ends_with("policy allows, but the probe did not connect (timeout)"));
    let (status, disagreements) = if only_slow {
        eprintln!(
            "{} allowed probes timed out; verifying again with a {RETRY_TIMEOUT_MS} ms timeout",
            disagreements.len()
        );
        let (status, _, again, _) = run(RETRY_TIMEOUT_MS);
        (status, again)
    } else {
        (status, disagreements)
    };
    if status.success() {
        return Ok((probes, probes));
    }
    let shown = disagreements.len().min(40);
    Err(format!(
        "lab verify {} failed ({status}), {} disagreements:\n      {}{}",
        ports.map_or("(container ports)".to_owned(), |p| format!("--ports {p}")),
        disagreements.len(),
        disagreements[..shown].join("\n      "),
        if disagreements.len() > shown {
            format!("\n      ... {} more", disagreements.len() - shown)
        } else {
            String::new()
        }
    ))
}

/// Runs one case: lab up, lab verify, lab down.
fn run_case(dir: &Path, case: &Case) -> Result<Verified, String> {
    let start = Instant::now();
    let manifests = dir.join("tests").join(&case.name);
    let subnet = case.pod_subnet.as_deref().unwrap_or(FALLBACK_POD_SUBNET);
    let cidr: IpNetwork = subnet
        .parse()
        .map_err(|e| format!("bad pod subnet {subnet:?}: {e}"))?;
    let bounds = probes::v4_bounds(&cidr).ok_or(format!("{subnet} is not IPv4"))?;
    let plan = AddressPlan {
        cidrs: vec![cidr],
        ignore_status: true,
        ..AddressPlan::default()
    };
    let model = load_dir(&manifests, &plan).map_err(|e| format!("load_dir: {e}"))?;
    let mut ports = probes::policy_ports(&model);
    ports.extend(probes::FIXED_PORTS);
    let ports: Vec<String> = ports.iter().map(u32::to_string).collect();
    // The evaluator-level test's external addresses that can be a host.
    let externals: Vec<String> = probes::addresses(&model, bounds, [])
        .into_iter()
        .map(Ipv4Addr::from)
        .filter(|a| {
            !(a.is_unspecified() || a.is_broadcast() || a.is_loopback() || a.is_multicast())
        })
        .map(|a| IpAddr::V4(a).to_string())
        .collect();
    let manifests = manifests.display().to_string();
    let mut up = vec![
        "lab",
        "up",
        "--name",
        LAB,
        "--manifests",
        &manifests,
        "--pod-cidr",
        subnet,
        "--assign-pod-ips",
    ];
    let externals_arg = externals.join(",");
    if !externals.is_empty() {
        up.extend(["--external", &externals_arg]);
    }
    let _down = Down;
    let out = bulkhead(&up);
    if !out.status.success() {
        return Err(format!(
            "lab up failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let ports_arg = ports.join(",");
    let (mut probes, mut retried) = (0, 0);
    for selection in [None, Some(ports_arg.as_str())] {
        let (n, again) = verify(selection)?;
        probes += n;
        retried += again;
    }
    Ok(Verified {
        pods: model.pods.len(),
        externals: externals.len(),
        ports: ports.len(),
        probes,
        retried,
        took: start.elapsed(),
    })
}

#[test]
fn lab_verify_agrees_on_every_netpol_conformance_case() {
    if !privileged() {
        return;
    }
    let Some(dir) = data_dir() else { return };
    let _serial = serial();
    let start = Instant::now();
    let cases = read_cases(&dir);
    let only: Option<Vec<String>> = std::env::var("BULKHEAD_CONFORMANCE_ONLY")
        .ok()
        .map(|v| v.split(',').map(str::to_owned).collect());
    let in_scope: Vec<&Case> = cases
        .iter()
        .filter(|c| IN_SCOPE_TIERS.contains(&c.tier.as_str()))
        .filter(|c| only.as_ref().is_none_or(|o| o.contains(&c.name)))
        .collect();
    let (mut passed, mut total) = (0usize, 0u64);
    let mut failures = Vec::new();
    for case in &in_scope {
        match run_case(&dir, case) {
            Ok(v) => {
                passed += 1;
                total += v.probes;
                println!(
                    "{:<70} {:>3} pods {:>2} external {:>3} ports: {:>6} probes, 0 disagreements{}, {:.1} s",
                    case.name,
                    v.pods,
                    v.externals,
                    v.ports,
                    v.probes,
                    if v.retried > 0 {
                        format!(" ({} verified twice)", v.retried)
                    } else {
                        String::new()
                    },
                    v.took.as_secs_f64()
                );
            }
            Err(e) => {
                println!("{:<70} FAILED\n    {e}", case.name);
                failures.push(format!("{}: {e}", case.name));
            }
        }
    }
    let summary = format!(
        "conformance lab: {passed}/{} in-scope cases verified on real packets, {total} probes, {:.1} s",
        in_scope.len(),
        start.elapsed().as_secs_f64()
    );
    println!("{summary}");
    eprintln!("{summary}");
    if total <= MIN_TOTAL_PROBES && failures.is_empty() {
        failures.push(format!("only {total} probes (want > {MIN_TOTAL_PROBES})"));
    }
    assert!(
        failures.is_empty(),
        "lab verify disagreed or failed:\n  {}",
        failures.join("\n  ")
    );
}
