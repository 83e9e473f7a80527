//! The network-policy-api conformance scenarios as data (see `README.md`
//! next to this file): the topology (`base.yaml`), one YAML file per
//! upstream test under `scenarios/`, and their loader, shared by the
//! reference-evaluator harness (`policy/tests/network_policy_api.rs`) and
//! the packet harness (`netns-tests/tests/network_policy_api_packets.rs`).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;

use bulkhead_policy::model::{Model, Protocol};
use serde::Deserialize;

/// One upstream conformance test: the objects in force at each step and
/// what upstream checks there.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Upstream's ShortName (e.g. `CNPAdminTierEgressTCP`).
    pub name: String,
    /// Where it was transcribed from.
    pub upstream: Upstream,
    /// Which API and channel it tests.
    pub profile: Profile,
    /// Transcription notes (deviations, placeholders).
    #[serde(default)]
    pub notes: Option<String>,
    /// The steps, in upstream's order (upstream's subtests).
    pub steps: Vec<Step>,
    /// The data file (set by the loader).
    #[serde(skip)]
    pub file: String,
}

/// The upstream files a scenario was transcribed from.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// `owner/name` on GitHub.
    pub repository: String,
    /// The Go test file.
    pub test: String,
    /// The commit of the test file read.
    pub test_commit: String,
    /// The base manifests the test applies.
    pub manifests: Vec<String>,
    /// The commit of the manifests read.
    pub manifests_commit: String,
}

/// Upstream's conformance profile of a test.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// `v1alpha2` (ClusterNetworkPolicy) or `v1alpha1`
    /// (AdminNetworkPolicy, BaselineAdminNetworkPolicy).
    pub api: String,
    /// `standard` (v1alpha1: `core`) or `experimental` (v1alpha1: `extended`).
    pub channel: String,
}

/// One upstream subtest: every cluster-admin (and NetworkPolicy) object in
/// force, and the connections checked.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Upstream's subtest name.
    pub name: String,
    /// The complete policy objects in force (YAML documents), placeholders
    /// included (see [`expand`]).
    pub manifests: String,
    /// The connections upstream checks in this subtest.
    pub expect: Vec<Expect>,
}

/// What an expectation's client connects to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// `to` is a pod: its IPv4 address (the default).
    #[default]
    Pod,
    /// `to` is a Service of the step's manifests: its IPv4 ClusterIP,
    /// which the node's kube-proxy translates to one of its backends.
    /// Allowed means allowed to every backend, denied means denied to
    /// every backend (upstream accepts whichever backend is picked).
    Service,
}

/// One checked connection: `from` connects to `to`'s address.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Client pod, `namespace/name`.
    pub from: String,
    /// Server pod, `namespace/name`: its IPv4 address, which for a
    /// hostNetwork pod (`host-network.yaml`) is its node's InternalIP.
    /// With `via: service`, a Service, `namespace/name`.
    pub to: String,
    /// What `to` is (default: a pod).
    #[serde(default)]
    pub via: Via,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
    /// Destination port.
    pub port: u16,
    /// Whether the connection must succeed (else: time out).
    pub allowed: bool,
}

impl Expect {
    /// The protocol, parsed.
    pub fn proto(&self) -> Protocol {
        self.protocol
            .parse()
            .unwrap_or_else(|e| panic!("{self:?}: {e}"))
    }
}

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} -> {}{} {}/{} must be {}",
            self.from,
            if self.via == Via::Service { "svc/" } else { "" },
            self.to,
            self.protocol,
            self.port,
            if self.allowed { "allowed" } else { "denied" }
        )
    }
}

/// The data folder.
pub fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policy/tests/network_policy_api")
}

/// The topology: namespaces and pods.
pub fn base() -> String {
    read("base.yaml")
}

/// The hostNetwork part of the topology: Node objects, the namespace
/// `network-policy-conformance-forbidden-forrest` and its hostNetwork pods
/// serving on their node's address (for the node-peer tests).
pub fn host_network() -> String {
    read("host-network.yaml")
}

fn read(file: &str) -> String {
    let path = data_dir().join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The namespace of the hostNetwork pods.
pub const HOST_NETWORK_NAMESPACE: &str = "network-policy-conformance-forbidden-forrest";

/// Whether `key` (`namespace/name`) is a hostNetwork pod of the topology.
pub fn is_host_network(key: &str) -> bool {
    key.split_once('/')
        .is_some_and(|(ns, _)| ns == HOST_NETWORK_NAMESPACE)
}

/// Whether some expectation of `scenario` connects to a hostNetwork pod.
pub fn needs_host_network(scenario: &Scenario) -> bool {
    scenario
        .steps
        .iter()
        .flat_map(|s| &s.expect)
        .any(|e| is_host_network(&e.to))
}

/// The ports upstream's pods serve (any protocol is probed on any of them
/// by some test's negative check, so a lab serves all three on each).
pub const SERVED_PORTS: [u16; 6] = [53, 80, 5353, 8080, 9003, 9005];

/// The ports the hostNetwork pods serve (`host-network.yaml`).
pub const HOST_NETWORK_PORTS: [u16; 8] = [53, 5353, 9003, 9005, 34345, 34346, 36363, 36364];

/// Every scenario, by file name.
pub fn scenarios() -> Vec<Scenario> {
    let dir = data_dir().join("scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|path| {
            let text =
                std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let mut s: Scenario = serde_yaml_ng::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            s.file = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            s
        })
        .collect()
}

/// The kinds of the cluster-admin tiers.
pub const ADMIN_KINDS: [&str; 3] = [
    "ClusterNetworkPolicy",
    "AdminNetworkPolicy",
    "BaselineAdminNetworkPolicy",
];

/// TEMPORARY diagnostic switch, off unless `BULKHEAD_NPAPI_SKIP_ADMIN=1`:
/// leaves the cluster-admin objects out of every step, to exercise the
/// topology and the harnesses' mechanics before the admin kinds are
/// supported. Then every connection is allowed, so the harnesses check
/// only the expectations `allowed: true` (and report the others).
pub fn skip_admin() -> bool {
    std::env::var("BULKHEAD_NPAPI_SKIP_ADMIN").is_ok_and(|v| v == "1")
}

/// The step's manifests with placeholders filled from `model` (the
/// topology's addresses), without the cluster-admin objects under
/// [`skip_admin`].
///
/// Placeholders: `{{pod-ip:NS/NAME}}` is the pod's IPv4 address.
pub fn expand(step: &Step, model: &Model) -> String {
    let mut text = step.manifests.clone();
    while let Some(start) = text.find("{{pod-ip:") {
        let end = start
            + text[start..]
                .find("}}")
                .unwrap_or_else(|| panic!("unterminated placeholder in step {:?}", step.name));
        let key = &text[start + "{{pod-ip:".len()..end];
        let ip = pod_ipv4(model, key);
        text.replace_range(start..end + 2, &ip.to_string());
    }
    if skip_admin() {
        text = text
            .split("\n---\n")
            .filter(|doc| {
                !ADMIN_KINDS
                    .iter()
                    .any(|k| doc.contains(&format!("kind: {k}\n")))
            })
            .collect::<Vec<_>>()
            .join("\n---\n");
    }
    text
}

/// `key`'s IPv4 address (upstream's clusters are probed over IPv4).
pub fn pod_ipv4(model: &Model, key: &str) -> IpAddr {
    let (_, pod) = model
        .pod(key)
        .unwrap_or_else(|| panic!("no pod {key} in the topology"));
    *pod.ips
        .iter()
        .find(|ip| ip.is_ipv4())
        .unwrap_or_else(|| panic!("{key} has no IPv4 address"))
}

/// Every expectation that a run checks: all of them, or under
/// [`skip_admin`] only the allowed ones.
pub fn checked(step: &Step) -> impl Iterator<Item = &Expect> {
    let all = !skip_admin();
    step.expect.iter().filter(move |e| all || e.allowed)
}

/// `key`'s IPv4 ClusterIP (a Service of `model`, which is the topology
/// with a step's manifests): what a `via: service` expectation connects to.
pub fn service_ipv4(model: &Model, key: &str) -> IpAddr {
    *model
        .service(key)
        .unwrap_or_else(|| panic!("no Service {key} in the step's manifests"))
        .cluster_ips
        .iter()
        .find(|ip| ip.is_ipv4())
        .unwrap_or_else(|| panic!("Service {key} has no IPv4 ClusterIP"))
}

/// Whether some expectation of `scenario` connects through a Service.
pub fn needs_services(scenario: &Scenario) -> bool {
    scenario
        .steps
        .iter()
        .flat_map(|s| &s.expect)
        .any(|e| e.via == Via::Service)
}

/// The pods of the topology, `namespace/name`.
pub fn pod_keys(model: &Model) -> BTreeSet<String> {
    model.pods.iter().map(|p| p.key()).collect()
}
