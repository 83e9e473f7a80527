//! The upstream e2e model (namespaces x, y, z; pods a, b, c in each, serving
//! TCP, UDP and SCTP on ports 80 and 81), written as manifests into a
//! temporary directory, loaded and compiled; and truth tables of expected
//! reachability checked against the reference evaluator.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;

use bulkhead::compile::{Compiled, compile};
use bulkhead::eval::connectivity::{Peer, connectivity};
use bulkhead::model::addressing::AddressPlan;
use bulkhead::model::{Model, Protocol};
use bulkhead::source::manifest::load_dir;
use tempfile::TempDir;

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
    fn label(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }

    fn matches(self, ip: &IpAddr) -> bool {
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

    fn get(&self, s: usize, d: usize) -> bool {
        self.expected[s][d]
    }
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

    /// Loads the model plus `policies` (YAML documents).
    pub fn load(&self, policies: &str) -> Cluster {
        self.load_with(|_| policies.to_string())
    }

    /// Loads the model alone first, then the model plus the policies that
    /// `policies` writes knowing the pods' addresses (for ipBlocks).
    pub fn load_with(&self, policies: impl FnOnce(&Model) -> String) -> Cluster {
        let base = self.load_files(None);
        let text = policies(&base.model);
        let cluster = self.load_files(Some(&text));
        for (a, b) in base.model.pods.iter().zip(&cluster.model.pods) {
            assert_eq!(a.ips, b.ips, "{}: addresses changed with policies", a.key());
        }
        cluster
    }

    fn load_files(&self, policies: Option<&str>) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("cluster.yaml"), self.manifests()).expect("write cluster");
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
        let compiled = compile(&model);
        Cluster {
            _dir: dir,
            model,
            compiled,
        }
    }
}

/// Loads the upstream model plus `policies`.
pub fn load(policies: &str) -> Cluster {
    Setup::default().load(policies)
}

/// Loads the upstream model plus policies written knowing the addresses.
pub fn load_with(policies: impl FnOnce(&Model) -> String) -> Cluster {
    Setup::default().load_with(policies)
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

/// A loaded and compiled cluster.
pub struct Cluster {
    _dir: TempDir,
    /// The model.
    pub model: Model,
    /// Its compiled policy.
    pub compiled: Compiled,
}

impl Cluster {
    /// The address of `pod` of `family`.
    pub fn ip(&self, pod: &str, family: Family) -> IpAddr {
        pod_ip(&self.model, pod, family)
    }

    /// Checks the IPv4 matrix of every probe against `expected`.
    pub fn check(&self, probes: &[Probe], expected: &Reachability) {
        self.check_families(&[Family::V4], probes, expected);
    }

    /// Checks the IPv4 and the IPv6 matrix of every probe.
    pub fn check_dual(&self, probes: &[Probe], expected: &Reachability) {
        self.check_families(&[Family::V4, Family::V6], probes, expected);
    }

    /// Checks every (family, probe) matrix; on failure, prints every wrong
    /// matrix (`.` allowed, `X` denied, lower-case = wrong, `-` self).
    pub fn check_families(&self, families: &[Family], probes: &[Probe], expected: &Reachability) {
        let connections = connectivity(&self.model, &self.compiled);
        let mut report = String::new();
        for &family in families {
            for &probe in probes {
                report.push_str(&self.check_one(&connections, family, probe, expected));
            }
        }
        assert!(
            report.is_empty(),
            "reachability differs from Kubernetes semantics:\n{report}"
        );
    }

    fn check_one(
        &self,
        connections: &[bulkhead::eval::connectivity::Connection],
        family: Family,
        probe: Probe,
        expected: &Reachability,
    ) -> String {
        let pods = &expected.pods;
        let proto = probe.protocol.number();
        let mut wrong = Vec::new();
        let mut table = format!(
            "{} {}/{} (rows: from, columns: to)\n     ",
            family.label(),
            probe.protocol,
            probe.port
        );
        for p in pods {
            let _ = write!(table, " {p}");
        }
        table.push('\n');
        for (s, src) in pods.iter().enumerate() {
            let _ = write!(table, "{src:5}");
            for (d, dst) in pods.iter().enumerate() {
                if s == d {
                    table.push_str("   -");
                    continue;
                }
                let (sa, da) = (self.ip(src, family), self.ip(dst, family));
                let got = self.compiled.allowed(sa, da, proto, probe.port);
                let verdict = self.compiled.evaluate(sa, da, proto, probe.port);
                if verdict.allowed() != got {
                    wrong.push(format!(
                        "  {src} -> {dst}: evaluate() says {verdict:?}, allowed() says {got}"
                    ));
                }
                let listed = connections
                    .iter()
                    .filter(|c| c.src == Peer::Pod(src.clone()) && c.dst == Peer::Pod(dst.clone()))
                    .filter(|c| c.family.is_none_or(|f| f == family.label()))
                    .any(|c| c.allowed.get(probe.protocol).contains(probe.port));
                if listed != got {
                    wrong.push(format!(
                        "  {src} -> {dst}: connectivity() says {listed}, allowed() says {got}"
                    ));
                }
                let want = expected.get(s, d);
                let mark = match (got, got == want) {
                    (true, true) => ".",
                    (false, true) => "X",
                    (true, false) => "!",
                    (false, false) => "x",
                };
                let _ = write!(table, "   {mark}");
                if got != want {
                    wrong.push(format!(
                        "  {src} -> {dst}: expected {}, got {} ({verdict:?})",
                        if want { "allowed" } else { "denied" },
                        if got { "allowed" } else { "denied" },
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

    /// Asserts the verdict for traffic between arbitrary addresses (pods or
    /// not).
    pub fn assert_flow(&self, src: IpAddr, dst: IpAddr, probe: Probe, allowed: bool) {
        let got = self
            .compiled
            .allowed(src, dst, probe.protocol.number(), probe.port);
        assert_eq!(
            got,
            allowed,
            "{src} -> {dst} {probe:?}: {:?}",
            self.compiled
                .evaluate(src, dst, probe.protocol.number(), probe.port)
        );
    }
}
