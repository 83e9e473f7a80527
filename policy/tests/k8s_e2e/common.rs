//! The upstream e2e model, shared by every harness that runs the scenarios:
//! namespaces x, y, z and pods a, b, c in each (serving TCP, UDP and SCTP on
//! ports 80 and 81) as manifests, the probes, truth tables of expected
//! reachability and how a table is compared with what a harness observed,
//! and helpers that write policies knowing the pods' addresses.
//!
//! A harness (`harness.rs` here: the reference evaluator; the packet
//! harness of `netns-tests`: real packets in a lab) re-exports this module
//! and adds `load`, `load_with`, `Setup::load`, `Setup::load_with` and a
//! `Cluster` with `ip`, `check`, `check_dual`, `check_families` and
//! `assert_flow`: the scenario files (`use crate::harness::*`) see one API.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;

use bulkhead_policy::model::{Model, Protocol};

/// The namespaces of the model, each labelled `ns=<name>`.
pub const NAMESPACES: [&str; 3] = ["x", "y", "z"];
/// The pods of each namespace, each labelled `pod=<name>`.
pub const PODS: [&str; 3] = ["a", "b", "c"];

/// Every pod, `namespace/name`, in row/column order.
pub fn all_pods() -> Vec<String> {
    NAMESPACES
        .iter()
        .flat_map(|ns| PODS.iter().map(move |p| format!("{ns}/{p}")))
        .collect()
}

/// One probe: a protocol and a destination port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    /// Protocol.
    pub protocol: Protocol,
    /// Destination port.
    pub port: u16,
}

impl Probe {
    /// A probe of `protocol` to `port`.
    pub const fn new(protocol: Protocol, port: u16) -> Self {
        Self { protocol, port }
    }
}

/// TCP to port 80.
pub const TCP_80: Probe = Probe::new(Protocol::Tcp, 80);
/// TCP to port 81.
pub const TCP_81: Probe = Probe::new(Protocol::Tcp, 81);
/// UDP to port 80.
pub const UDP_80: Probe = Probe::new(Protocol::Udp, 80);
/// UDP to port 81.
pub const UDP_81: Probe = Probe::new(Protocol::Udp, 81);
/// SCTP to port 80.
pub const SCTP_80: Probe = Probe::new(Protocol::Sctp, 80);
/// SCTP to port 81.
pub const SCTP_81: Probe = Probe::new(Protocol::Sctp, 81);
/// Every port the pods serve, with every protocol.
pub const ALL_PROBES: [Probe; 6] = [TCP_80, TCP_81, UDP_80, UDP_81, SCTP_80, SCTP_81];

/// An address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// `IPv4` or `IPv6`, as `bulkhead connectivity` and the lab spell it.
    pub fn label(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }

    /// Whether `ip` is of this family.
    pub fn matches(self, ip: &IpAddr) -> bool {
        ip.is_ipv4() == (self == Family::V4)
    }
}

/// Expected reachability between all pods: a 9×9 truth table. Self pairs are
/// never checked (upstream expects a pod to always reach itself; Bulkhead
/// judges such traffic by policy).
#[derive(Clone, Debug)]
pub struct Reachability {
    pods: Vec<String>,
    expected: Vec<Vec<bool>>,
}

/// Whether `pod` (`ns/name`) matches a pattern: `*`, `ns/*`, `*/name` or
/// `ns/name`.
fn matches(pattern: &str, pod: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let (pns, pname) = pattern.split_once('/').expect("pattern is ns/name");
    let (ns, name) = pod.split_once('/').expect("pod is ns/name");
    (pns == "*" || pns == ns) && (pname == "*" || pname == name)
}

impl Reachability {
    /// Every pair allowed (`true`) or denied (`false`).
    pub fn new(all: bool) -> Self {
        let pods = all_pods();
        let n = pods.len();
        Self {
            pods,
            expected: vec![vec![all; n]; n],
        }
    }

    /// Sets every pair whose source matches `from` and destination matches
    /// `to` (patterns: `*`, `x/*`, `*/a`, `x/a`).
    pub fn expect(&mut self, from: &str, to: &str, allowed: bool) -> &mut Self {
        let mut hit = false;
        for (s, src) in self.pods.iter().enumerate() {
            for (d, dst) in self.pods.iter().enumerate() {
                if matches(from, src) && matches(to, dst) {
                    self.expected[s][d] = allowed;
                    hit = true;
                }
            }
        }
        assert!(hit, "pattern {from} -> {to} matches no pair");
        self
    }

    /// Everything into pods matching `to`.
    pub fn expect_all_ingress(&mut self, to: &str, allowed: bool) -> &mut Self {
        self.expect("*", to, allowed)
    }

    /// Everything out of pods matching `from`.
    pub fn expect_all_egress(&mut self, from: &str, allowed: bool) -> &mut Self {
        self.expect(from, "*", allowed)
    }

    /// Whether traffic from pod index `s` to pod index `d` (in
    /// [`all_pods`] order) is expected.
    pub fn get(&self, s: usize, d: usize) -> bool {
        self.expected[s][d]
    }

    /// Compares what a harness observed for one matrix (`heading`, e.g.
    /// "IPv4 TCP/80") with this table: `observe(src, dst)` gives the
    /// verdict of every ordered pair of distinct pods and a note shown when
    /// it is wrong. Returns an empty string when every cell agrees, else
    /// the matrix (`.` allowed, `X` denied, `!` allowed but should be
    /// denied, `x` denied but should be allowed, `-` self) and every wrong
    /// cell.
    pub fn diff(&self, heading: &str, mut observe: impl FnMut(&str, &str) -> Cell) -> String {
        let mut wrong = Vec::new();
        let mut table = format!("{heading} (rows: from, columns: to)\n     ");
        for p in &self.pods {
            let _ = write!(table, " {p}");
        }
        table.push('\n');
        for (s, src) in self.pods.iter().enumerate() {
            let _ = write!(table, "{src:5}");
            for (d, dst) in self.pods.iter().enumerate() {
                if s == d {
                    table.push_str("   -");
                    continue;
                }
                let cell = observe(src, dst);
                let (got, want) = (cell.allowed, self.get(s, d));
                let mark = match (got, got == want) {
                    (true, true) => ".",
                    (false, true) => "X",
                    (true, false) => "!",
                    (false, false) => "x",
                };
                let _ = write!(table, "   {mark}");
                if got != want {
                    wrong.push(format!(
                        "  {src} -> {dst}: expected {}, got {} ({})",
                        verdict(want),
                        verdict(got),
                        cell.note
                    ));
                }
            }
            table.push('\n');
        }
        if wrong.is_empty() {
            return String::new();
        }
        format!(
            "{table}('!' = allowed but should be denied, 'x' = denied but should be allowed)\n{}\n\n",
            wrong.join("\n")
        )
    }
}

/// What a harness observed for one pair.
#[derive(Clone, Debug)]
pub struct Cell {
    /// Whether the traffic was allowed.
    pub allowed: bool,
    /// Shown when the verdict is wrong: why, or how the probe ended.
    pub note: String,
}

fn verdict(allowed: bool) -> &'static str {
    if allowed { "allowed" } else { "denied" }
}

/// Extra labels and ports on top of the upstream model.
#[derive(Clone, Debug, Default)]
pub struct Setup {
    ns_labels: BTreeMap<String, Vec<(String, String)>>,
    pod_labels: BTreeMap<String, Vec<(String, String)>>,
    extra_ports: BTreeMap<String, Vec<(String, u16, Protocol)>>,
}

impl Setup {
    /// Adds label `key=value` to namespace `ns`.
    pub fn ns_label(mut self, ns: &str, key: &str, value: &str) -> Self {
        self.ns_labels
            .entry(ns.into())
            .or_default()
            .push((key.into(), value.into()));
        self
    }

    /// Adds label `key=value` to pod `pod` (`ns/name`).
    pub fn pod_label(mut self, pod: &str, key: &str, value: &str) -> Self {
        self.pod_labels
            .entry(pod.into())
            .or_default()
            .push((key.into(), value.into()));
        self
    }

    /// Adds a named container port to pod `pod` (`ns/name`).
    pub fn port(mut self, pod: &str, name: &str, port: u16, protocol: Protocol) -> Self {
        self.extra_ports
            .entry(pod.into())
            .or_default()
            .push((name.into(), port, protocol));
        self
    }

    /// The namespaces and pods as YAML documents.
    pub fn manifests(&self) -> String {
        let mut out = String::new();
        for ns in NAMESPACES {
            let _ = write!(
                out,
                "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n  labels:\n    ns: {ns}\n"
            );
            for (k, v) in self.ns_labels.get(ns).into_iter().flatten() {
                let _ = writeln!(out, "    {k}: {v}");
            }
        }
        for ns in NAMESPACES {
            for pod in PODS {
                let key = format!("{ns}/{pod}");
                let _ = write!(
                    out,
                    "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: {pod}\n  namespace: {ns}\n  labels:\n    pod: {pod}\n"
                );
                for (k, v) in self.pod_labels.get(&key).into_iter().flatten() {
                    let _ = writeln!(out, "    {k}: {v}");
                }
                out.push_str("spec:\n  containers:\n");
                // One container per served port, as upstream's agnhost pods.
                for protocol in Protocol::ALL {
                    for port in [80, 81] {
                        let lower = protocol.as_str().to_ascii_lowercase();
                        let _ = write!(
                            out,
                            "  - name: cont-{port}-{lower}\n    image: registry.k8s.io/e2e-test-images/agnhost:2.47\n    ports:\n    - name: serve-{port}-{lower}\n      containerPort: {port}\n      protocol: {protocol}\n"
                        );
                    }
                }
                for (name, port, protocol) in self.extra_ports.get(&key).into_iter().flatten() {
                    let _ = write!(
                        out,
                        "  - name: extra-{name}\n    image: registry.k8s.io/e2e-test-images/agnhost:2.47\n    ports:\n    - name: {name}\n      containerPort: {port}\n      protocol: {protocol}\n"
                    );
                }
            }
        }
        out
    }
}

/// A NetworkPolicy document: `spec` is the YAML of the spec, unindented.
pub fn np(namespace: &str, name: &str, spec: &str) -> String {
    let mut out = format!(
        "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: {name}\n  namespace: {namespace}\nspec:\n"
    );
    for line in spec.lines().filter(|l| !l.trim().is_empty()) {
        let _ = writeln!(out, "  {line}");
    }
    out
}

/// The address of `pod` (`ns/name`) of `family` in `model`.
pub fn pod_ip(model: &Model, pod: &str, family: Family) -> IpAddr {
    let (_, p) = model.pod(pod).unwrap_or_else(|| panic!("no pod {pod}"));
    *p.ips
        .iter()
        .find(|ip| family.matches(ip))
        .unwrap_or_else(|| panic!("{pod} has no {} address", family.label()))
}

/// The host prefix (`/32` or `/128`) of `pod`'s address of `family`.
pub fn host_cidr(model: &Model, pod: &str, family: Family) -> String {
    match pod_ip(model, pod, family) {
        ip @ IpAddr::V4(_) => format!("{ip}/32"),
        ip @ IpAddr::V6(_) => format!("{ip}/128"),
    }
}

/// The address `ip` truncated to `prefix` bits, as a CIDR.
pub fn prefix_of(ip: IpAddr, prefix: u32) -> String {
    let (bits, width) = match ip {
        IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
        IpAddr::V6(a) => (u128::from(a), 128),
    };
    let mask = if prefix == 0 {
        0
    } else {
        (u128::MAX << (width - prefix)) & (u128::MAX >> (128 - width))
    };
    let net = bits & mask;
    let addr = match ip {
        IpAddr::V4(_) => IpAddr::from(std::net::Ipv4Addr::from(net as u32)),
        IpAddr::V6(_) => IpAddr::from(std::net::Ipv6Addr::from(net)),
    };
    format!("{addr}/{prefix}")
}

/// The longest prefix covering every pod address of `family`.
pub fn covering_cidr(model: &Model, family: Family) -> String {
    let bits = |ip: &IpAddr| match ip {
        IpAddr::V4(a) => u128::from(u32::from(*a)),
        IpAddr::V6(a) => u128::from(*a),
    };
    let ips: Vec<IpAddr> = model
        .pods
        .iter()
        .flat_map(|p| p.ips.iter().copied())
        .filter(|ip| family.matches(ip))
        .collect();
    let lo = ips.iter().map(bits).min().expect("pods");
    let hi = ips.iter().map(bits).max().expect("pods");
    let width = if family == Family::V4 { 32 } else { 128 };
    let differing = 128 - (lo ^ hi).leading_zeros();
    prefix_of(ips[0], width - differing)
}
