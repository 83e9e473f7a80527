//! Conformance against np-guard/netpol-analyzer's expected connectivity.
//!
//! For every NetworkPolicy-only or policy-free case of the data set (see its
//! README.md), runs the real `bulkhead connectivity --output json` with pods
//! placed in the case's `pod_subnet_free_of_cidrs` (so that the analyzer's
//! "ipBlocks never match pods" simplification cannot matter) and compares the
//! answer with `expected/<case>_connlist_output.txt` probe by probe: every
//! ordered pod pair of different workloads, and every pod against external
//! IPv4 probe addresses in both directions, on TCP, UDP and SCTP at every
//! port any policy, container or either output mentions (and their
//! neighbours). All mismatches are listed before the test fails.
//!
//! The data folder is `$BULKHEAD_CONFORMANCE_DIR`, else
//! `<repo>/../shared/conformance/netpol-analyzer`; when the default folder
//! is absent the test is skipped (passes with a message).

#[path = "conformance/cases.rs"]
mod cases;
#[path = "conformance/conns.rs"]
mod conns;
#[path = "conformance/expected.rs"]
mod expected;
#[path = "conformance/ours.rs"]
mod ours;
#[path = "conformance/probes.rs"]
mod probes;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use bulkhead_policy::model::Model;
use bulkhead_policy::model::addressing::AddressPlan;
use bulkhead_policy::source::manifest::load_dir;
use ipnetwork::IpNetwork;

use cases::{Case, FALLBACK_POD_SUBNET, IN_SCOPE_TIERS, OUT_OF_SCOPE_TIERS, data_dir, read_cases};
use conns::{Conns, PROTOCOLS};
use expected::Expected;
use ours::Ours;

/// The whole run must have compared at least this many probes.
const MIN_TOTAL_PROBES: u64 = 10_000;

/// What one case produced.
#[derive(Debug, Default)]
struct Outcome {
    pod_probes: u64,
    external_probes: u64,
    mismatches: Vec<String>,
    errors: Vec<String>,
    notes: Vec<String>,
    summary: String,
}

/// The analyzer's workload for a pod: its controlling owner, else itself
/// (a Pod object or the workload object it stands for). `(NS/NAME, KIND)`.
fn workload_of(pod: &bulkhead_policy::model::Pod) -> (String, String) {
    let w = pod.owner.as_ref().unwrap_or(&pod.source);
    (format!("{}/{}", pod.namespace, w.name), w.kind.clone())
}

fn verdict(allowed: bool) -> &'static str {
    if allowed { "allow" } else { "deny" }
}

/// Compares `ours` and `expected` at every probe; returns the probe count.
fn compare(
    ports: &BTreeSet<u32>,
    ours: &Conns,
    expected: &Conns,
    mut on_mismatch: impl FnMut(&str, u32, bool, bool),
) -> u64 {
    let mut n = 0;
    for (i, proto) in PROTOCOLS.iter().enumerate() {
        for &port in ports {
            n += 1;
            let (o, e) = (ours.allows(i, port), expected.allows(i, port));
            if o != e {
                on_mismatch(proto, port, o, e);
            }
        }
    }
    n
}

fn load(manifests: &Path, subnet: &str) -> Result<Model, String> {
    let cidr: IpNetwork = subnet
        .parse()
        .map_err(|e| format!("bad pod subnet {subnet:?}: {e}"))?;
    let plan = AddressPlan {
        cidrs: vec![cidr],
        ignore_status: true,
        ..AddressPlan::default()
    };
    load_dir(manifests, &plan).map_err(|e| format!("load_dir failed: {e}"))
}

fn run_case(dir: &Path, case: &Case) -> Outcome {
    let mut out = Outcome::default();
    let manifests = dir.join("tests").join(&case.name);
    let expected_path = dir
        .join("expected")
        .join(format!("{}_connlist_output.txt", case.name));
    let subnet = case.pod_subnet.as_deref().unwrap_or(FALLBACK_POD_SUBNET);
    let Some(subnet_v4) = subnet
        .parse::<IpNetwork>()
        .ok()
        .as_ref()
        .and_then(probes::v4_bounds)
    else {
        out.errors
            .push(format!("pod subnet {subnet:?} is not an IPv4 CIDR"));
        return out;
    };
    let model = match load(&manifests, subnet) {
        Ok(m) => m,
        Err(e) => {
            out.errors.push(e);
            return out;
        }
    };
    let expected = match std::fs::read_to_string(&expected_path)
        .map_err(|e| format!("cannot read {}: {e}", expected_path.display()))
        .and_then(|t| Expected::parse(&t))
    {
        Ok(e) => e,
        Err(e) => {
            out.errors.push(format!("expected output: {e}"));
            return out;
        }
    };
    let pod_keys: HashSet<String> = model.pods.iter().map(|p| p.key()).collect();
    let ours = match Ours::run(&manifests, subnet, &pod_keys) {
        Ok(o) => o,
        Err(e) => {
            out.errors.push(e);
            return out;
        }
    };
    out.errors.extend(ours.problems.iter().cloned());

    // Workloads: every one the analyzer names must be one of ours.
    let workload: HashMap<String, (String, String)> = model
        .pods
        .iter()
        .map(|p| (p.key(), workload_of(p)))
        .collect();
    let our_workloads: BTreeMap<&str, &str> = workload
        .values()
        .map(|(k, kind)| (k.as_str(), kind.as_str()))
        .collect();
    for (key, kind) in &expected.workloads {
        match our_workloads.get(key.as_str()) {
            None => out
                .errors
                .push(format!("expected workload {key}[{kind}] is not among ours")),
            Some(ours) if ours != kind => out.notes.push(format!(
                "kind differs for {key}: analyzer [{kind}], ours [{ours}]"
            )),
            Some(_) => {}
        }
    }
    for (s, d) in expected.pairs.keys() {
        if s == d {
            out.notes.push(format!(
                "expected line {s} => {d} (same workload) not compared"
            ));
        }
    }

    let ports = probes::ports(&model, expected.port_ends().chain(ours.port_ends()));

    // Pod to pod.
    if case.pod_subnet.is_some() {
        for p in &model.pods {
            for q in &model.pods {
                let (pk, qk) = (p.key(), q.key());
                let (pw, qw) = (&workload[&pk].0, &workload[&qk].0);
                if pk == qk || pw == qw {
                    continue;
                }
                let (o, e) = (ours.pair(&pk, &qk), expected.pair(pw, qw));
                out.pod_probes += compare(&ports, &o, &e, |proto, port, o, e| {
                    out.mismatches.push(format!(
                        "{}: {pk} ({pw}) -> {qk} ({qw}) {proto} {port}: ours {} expected {}",
                        case.name,
                        verdict(o),
                        verdict(e)
                    ))
                });
            }
        }
    } else {
        out.notes
            .push("pod subnet NONE: pod pairs not compared (ipBlocks may cover pods)".into());
    }

    // Pod to and from external addresses.
    let addrs = probes::addresses(
        &model,
        subnet_v4,
        expected.external_ends().chain(ours.external_ends()),
    );
    for p in &model.pods {
        let pk = p.key();
        let pw = &workload[&pk].0;
        for &addr in &addrs {
            let ip = IpAddr::V4(Ipv4Addr::from(addr));
            for egress in [true, false] {
                let (cidr, o) = ours.external(&pk, ip, egress);
                let e = expected.external(pw, addr, egress);
                let cidr = cidr.map_or("none".to_string(), |c| c.to_string());
                out.external_probes += compare(&ports, &o, &e, |proto, port, o, e| {
                    let (src, dst) = if egress {
                        (format!("{pk} ({pw})"), format!("{ip} (our CIDR {cidr})"))
                    } else {
                        (format!("{ip} (our CIDR {cidr})"), format!("{pk} ({pw})"))
                    };
                    out.mismatches.push(format!(
                        "{}: {src} -> {dst} {proto} {port}: ours {} expected {}",
                        case.name,
                        verdict(o),
                        verdict(e)
                    ))
                });
            }
        }
    }
    out.summary = format!(
        "{:<70} {:>3} pods {:>3} workloads, expected {:>3} lines, ours {:>4} lines, {:>3} ports x {:>2} addrs: \
         {:>7} pod-pair + {:>7} external probes, {} mismatches",
        case.name,
        model.pods.len(),
        our_workloads.len(),
        expected.lines,
        ours.lines,
        ports.len(),
        addrs.len(),
        out.pod_probes,
        out.external_probes,
        out.mismatches.len()
    );
    out
}

#[test]
fn netpol_analyzer_conformance() {
    let Some(dir) = data_dir() else { return };
    let cases = read_cases(&dir);
    let mut failures = Vec::new();

    // Every case folder is listed, every tier is known.
    let listed: HashSet<&str> = cases.iter().map(|c| c.name.as_str()).collect();
    for entry in std::fs::read_dir(dir.join("tests")).expect("read tests/") {
        let name = entry
            .expect("dir entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        if !listed.contains(name.as_str()) {
            failures.push(format!("case folder tests/{name} is not in cases.tsv"));
        }
    }
    for c in &cases {
        if !IN_SCOPE_TIERS.contains(&c.tier.as_str())
            && !OUT_OF_SCOPE_TIERS.contains(&c.tier.as_str())
        {
            failures.push(format!("{}: unknown tier {:?}", c.name, c.tier));
        }
    }

    let in_scope: Vec<&Case> = cases
        .iter()
        .filter(|c| IN_SCOPE_TIERS.contains(&c.tier.as_str()))
        .collect();
    let (mut run, mut total, mut mismatches) = (0usize, 0u64, 0usize);
    for case in &in_scope {
        let o = run_case(&dir, case);
        if o.errors.is_empty() {
            run += 1;
            println!("{}", o.summary);
        } else {
            println!("{:<70} ERROR", case.name);
        }
        for n in &o.notes {
            println!("    note: {n}");
        }
        for e in &o.errors {
            println!("    error: {e}");
            failures.push(format!("{}: {e}", case.name));
        }
        for m in &o.mismatches {
            println!("    MISMATCH {m}");
        }
        total += o.pod_probes + o.external_probes;
        mismatches += o.mismatches.len();
    }
    println!(
        "conformance: {run}/{} in-scope cases run ({} anp cases out of scope), {total} probes, {mismatches} mismatches",
        in_scope.len(),
        cases.len() - in_scope.len()
    );
    if run != in_scope.len() {
        failures.push(format!(
            "only {run} of {} in-scope cases ran",
            in_scope.len()
        ));
    }
    if total <= MIN_TOTAL_PROBES {
        failures.push(format!(
            "only {total} probes compared (want > {MIN_TOTAL_PROBES})"
        ));
    }
    if mismatches > 0 {
        failures.push(format!(
            "{mismatches} probe mismatches (listed above as MISMATCH)"
        ));
    }
    assert!(
        failures.is_empty(),
        "conformance failed:\n  {}",
        failures.join("\n  ")
    );
}
