//! Test support for Bulkhead's integration tests, its bench and the
//! privileged netns-tests: a small seeded RNG, a random model generator that
//! exercises every selector, ipBlock and port form, the addresses worth
//! probing in a compiled model, and temporary directories. Only tests and
//! benches depend on this crate: it never ships inside the agent.

use std::net::IpAddr;

use ipnetwork::IpNetwork;

pub mod browser;
pub mod flows;
pub mod learn;
pub use flows::flow_record;

use bulkhead_policy::compile::Compiled;
use bulkhead_policy::model::addressing::AddressPlan;
use bulkhead_policy::model::{
    Action, AdminKind, AdminPeer, AdminPolicy, AdminRule, ContainerPort, IpBlock, Labels, Mode,
    Model, Namespace, NamespaceScope, Node, Origin, Peer, Pod, Policy, PortMatch, PortSpec,
    Protocol, Requirement, Rule, Selector, Subject, Tier, Workload,
};

/// SplitMix64: small, seeded, good enough to shake out cases.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform-ish in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    /// True with `percent`% probability.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }
    /// A random element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

const KEYS: [&str; 3] = ["app", "tier", "env"];
const VALUES: [&str; 3] = ["a", "b", "c"];
const PORT_NAMES: [&str; 2] = ["http", "dns"];
const PROTOCOLS: [Protocol; 3] = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp];

fn random_labels(r: &mut Rng) -> Labels {
    let mut l = Labels::new();
    for k in KEYS {
        if r.chance(60) {
            l.insert(k.to_string(), r.pick(&VALUES).to_string());
        }
    }
    l
}

fn random_selector(r: &mut Rng) -> Selector {
    let n = r.below(3);
    Selector::new(
        (0..n)
            .map(|_| {
                let k = r.pick(&KEYS).to_string();
                let vs: Vec<String> = (0..1 + r.below(2))
                    .map(|_| r.pick(&VALUES).to_string())
                    .collect();
                match r.below(4) {
                    0 => Requirement::In(k, vs),
                    1 => Requirement::NotIn(k, vs),
                    2 => Requirement::Exists(k),
                    _ => Requirement::DoesNotExist(k),
                }
            })
            .collect(),
    )
}

fn random_block(r: &mut Rng, pods: &[Pod]) -> IpBlock {
    // Around a pod address often, so ipBlocks cut through pods.
    let anchor: IpAddr = if r.chance(70) && !pods.is_empty() {
        let ips = r.pick(pods).ips.clone();
        *r.pick(&ips)
    } else if r.chance(50) {
        "192.0.2.77".parse().unwrap()
    } else {
        "2001:db8::77".parse().unwrap()
    };
    let max = if anchor.is_ipv4() { 32 } else { 128 };
    let len = max - r.below(if anchor.is_ipv4() { 20 } else { 80 }) as u8;
    let cidr = IpNetwork::new(anchor, len).unwrap();
    let cidr = IpNetwork::new(cidr.network(), len).unwrap();
    let mut except = Vec::new();
    if len < max && r.chance(50) {
        let elen = len + 1 + r.below((max - len) as usize) as u8;
        let e = IpNetwork::new(anchor, elen).unwrap();
        except.push(IpNetwork::new(e.network(), elen).unwrap());
    }
    IpBlock { cidr, except }
}

fn random_rule(r: &mut Rng, namespaces: &[String], pods: &[Pod]) -> Rule {
    let peers = (!r.chance(20)).then(|| {
        (0..1 + r.below(2))
            .map(|_| match r.below(4) {
                0 => Peer::IpBlock(random_block(r, pods)),
                1 => Peer::Pods {
                    namespaces: NamespaceScope::Same(r.pick(namespaces).clone()),
                    pods: random_selector(r),
                },
                _ => Peer::Pods {
                    namespaces: NamespaceScope::Selected(if r.chance(50) {
                        Selector::new(vec![Requirement::In(
                            bulkhead_policy::model::NAMESPACE_NAME_LABEL.into(),
                            vec![r.pick(namespaces).clone()],
                        )])
                    } else {
                        random_selector(r)
                    }),
                    pods: random_selector(r),
                },
            })
            .collect()
    });
    let ports = (!r.chance(25)).then(|| {
        (0..1 + r.below(2))
            .map(|_| {
                let protocol = *r.pick(&PROTOCOLS);
                let port = match r.below(4) {
                    0 => PortMatch::Any,
                    1 => PortMatch::Named(r.pick(&PORT_NAMES).to_string()),
                    _ => {
                        let lo = 78 + r.below(6) as u16;
                        PortMatch::Range(lo, lo + r.below(3) as u16)
                    }
                };
                PortSpec { protocol, port }
            })
            .collect()
    });
    Rule { peers, ports }
}

/// Gives `m`'s policies and namespaces random modes (each unset half the
/// time) and a random default: every mix of enforced, audited and learnt
/// policies.
pub fn random_modes(r: &mut Rng, m: &mut Model) {
    let mode = |r: &mut Rng| r.chance(50).then(|| *r.pick(&Mode::ALL));
    for ns in m.namespaces.values_mut() {
        ns.mode = mode(r);
    }
    for p in &mut m.policies {
        p.mode = mode(r);
    }
    for p in &mut m.admin_policies {
        p.mode = mode(r);
    }
    m.default_mode = *r.pick(&Mode::ALL);
}

/// A random model: 1-3 namespaces, 2-7 pods with labels and named ports,
/// up to 4 policies mixing every peer and port form; addresses assigned.
pub fn random_model(r: &mut Rng) -> Model {
    let namespaces: Vec<String> = ["x", "y", "z"]
        .iter()
        .take(1 + r.below(3))
        .map(|s| s.to_string())
        .collect();
    let mut m = Model::default();
    for ns in &namespaces {
        m.namespaces.insert(
            ns.clone(),
            Namespace {
                name: ns.clone(),
                labels: random_labels(r),
                origin: None,
                mode: None,
            },
        );
    }
    for i in 0..2 + r.below(6) {
        let ports = (0..r.below(3))
            .map(|_| ContainerPort {
                name: r.chance(70).then(|| r.pick(&PORT_NAMES).to_string()),
                port: 78 + r.below(8) as u16,
                protocol: *r.pick(&PROTOCOLS),
            })
            .collect();
        m.pods.push(Pod {
            namespace: r.pick(&namespaces).clone(),
            name: format!("p{i}"),
            source: Workload {
                kind: "Pod".into(),
                name: format!("p{i}"),
            },
            owner: None,
            labels: random_labels(r),
            ports,
            ips: vec![],
            claim: Default::default(),
            node: None,
            off_network: None,
            origin: Origin::default(),
        });
    }
    m.normalize();
    AddressPlan::default().assign(&mut m.pods).unwrap();
    for i in 0..r.below(5) {
        let ns = r.pick(&namespaces).clone();
        let rules = |r: &mut Rng| {
            (r.chance(70)).then(|| {
                (0..r.below(3))
                    .map(|_| random_rule(r, &namespaces, &m.pods))
                    .collect()
            })
        };
        let ingress = rules(r);
        let egress = rules(r);
        m.policies.push(Policy {
            namespace: ns,
            name: format!("np{i}"),
            pod_selector: random_selector(r),
            ingress,
            egress,
            origin: Origin::default(),
            mode: None,
        });
    }
    // Often a node, with addresses among the pods' (so ipBlocks cut
    // through it), sometimes one that is also a pod's (hostNetwork).
    if r.chance(50) {
        m.node_ips = ["10.244.0.200", "fd00:10:244::c8"]
            .map(|a| a.parse().unwrap())
            .to_vec();
        if r.chance(20) {
            let ips = r.pick(&m.pods).ips.clone();
            m.node_ips.push(*r.pick(&ips));
        }
    }
    m.normalize();
    m
}

/// A random model with cluster-admin policies too: [`random_model`], then
/// 1-4 Admin or Baseline policies (priorities 0-2, so ties happen) with
/// every action, peer form (namespaces, pods, networks, nodes) and port
/// form, and sometimes nodes with labels.
pub fn random_tiered_model(r: &mut Rng) -> Model {
    let mut m = random_model(r);
    if r.chance(70) {
        let mut addresses = m.node_ips.clone();
        if addresses.is_empty() {
            addresses.push("10.244.0.201".parse().unwrap());
        }
        m.nodes.push(Node {
            name: "n1".into(),
            labels: random_labels(r),
            addresses,
        });
        m.nodes.push(Node {
            name: "n2".into(),
            labels: random_labels(r),
            addresses: vec!["192.0.2.10".parse().unwrap()],
        });
    }
    let namespaces: Vec<String> = m.namespaces.keys().cloned().collect();
    for i in 0..1 + r.below(4) {
        let tier = if r.chance(60) {
            Tier::Admin
        } else {
            Tier::Baseline
        };
        let rules = |r: &mut Rng, d_egress: bool| {
            (0..r.below(4))
                .map(|_| random_admin_rule(r, d_egress, &namespaces, &m))
                .collect()
        };
        let ingress = rules(r, false);
        let egress = rules(r, true);
        m.admin_policies.push(AdminPolicy {
            kind: AdminKind::ClusterNetworkPolicy,
            name: format!("cnp{i}"),
            tier,
            priority: r.below(3) as u32,
            subject: Subject {
                namespaces: random_selector(r),
                pods: if r.chance(50) {
                    Selector::everything()
                } else {
                    random_selector(r)
                },
                name: None,
            },
            ingress,
            egress,
            origin: Origin::default(),
            mode: None,
        });
    }
    m.normalize();
    // Sometimes a quarantined pod, above every tier.
    if r.chance(25) && !m.pods.is_empty() {
        let pod = r.pick(&m.pods).clone();
        let quarantine = bulkhead_policy::model::Quarantine {
            namespace: pod.namespace,
            pod: pod.name,
            reason: "random".into(),
            allow_dns: r.chance(50),
        };
        m.apply_quarantines(&[quarantine]);
    }
    m
}

fn random_admin_rule(r: &mut Rng, egress: bool, namespaces: &[String], m: &Model) -> AdminRule {
    let action = *r.pick(&[Action::Accept, Action::Deny, Action::Pass]);
    let peers = (0..1 + r.below(2))
        .map(|_| match r.below(if egress { 5 } else { 3 }) {
            0 => AdminPeer::Pods {
                namespaces: random_selector(r),
                pods: Selector::everything(),
            },
            1 => AdminPeer::Pods {
                namespaces: if r.chance(50) {
                    Selector::new(vec![Requirement::In(
                        bulkhead_policy::model::NAMESPACE_NAME_LABEL.into(),
                        vec![r.pick(namespaces).clone()],
                    )])
                } else {
                    random_selector(r)
                },
                pods: random_selector(r),
            },
            2 | 3 => AdminPeer::Networks(
                (0..1 + r.below(2))
                    .map(|_| random_block(r, &m.pods).cidr)
                    .collect(),
            ),
            _ => AdminPeer::Nodes(random_selector(r)),
        })
        .collect();
    let ports = (!r.chance(30)).then(|| {
        (0..1 + r.below(2))
            .flat_map(|_| {
                let protocol = *r.pick(&PROTOCOLS);
                if r.chance(20) {
                    // A named port has no protocol in these APIs.
                    let name = r.pick(&PORT_NAMES).to_string();
                    return PROTOCOLS
                        .map(|protocol| PortSpec {
                            protocol,
                            port: PortMatch::Named(name.clone()),
                        })
                        .to_vec();
                }
                let lo = 78 + r.below(6) as u16;
                vec![PortSpec {
                    protocol,
                    port: PortMatch::Range(lo, lo + r.below(3) as u16),
                }]
            })
            .collect()
    });
    AdminRule {
        name: r.chance(50).then(|| format!("r{}", r.below(100))),
        action,
        peers,
        ports,
    }
}

/// Addresses worth probing: pods', the node's, and around every ipBlock
/// edge.
pub fn probe_addresses(m: &Model, c: &Compiled) -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = m.pods.iter().flat_map(|p| p.ips.clone()).collect();
    v.extend(&m.node_ips);
    for b in &c.blocks {
        for n in std::iter::once(&b.cidr).chain(&b.except) {
            let (lo, hi) = bulkhead_policy::compile::address::net_range(n);
            let max = if n.is_ipv4() {
                u32::MAX as u128
            } else {
                u128::MAX
            };
            for a in [lo.wrapping_sub(1), lo, hi, hi.wrapping_add(1)] {
                if a <= max {
                    v.push(if n.is_ipv4() {
                        std::net::Ipv4Addr::from(a as u32).into()
                    } else {
                        std::net::Ipv6Addr::from(a).into()
                    });
                }
            }
        }
    }
    v.extend(["198.51.100.1", "2001:db8:ffff::1"].map(|s| s.parse::<IpAddr>().unwrap()));
    v.sort();
    v.dedup();
    v
}

/// A temporary directory holding `files` (relative paths; parents made).
pub fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

/// Runs `f` on a thread of its own and returns its result; panics if it
/// has not returned within `limit`. For tests that something ends (a walk
/// through link loops): the bound is generous enough for a loaded machine,
/// a hang instead of a speed target.
pub fn ends_within<T: Send + 'static>(
    limit: std::time::Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("still running after {limit:?}"))
}

/// The runtime tests serve agent APIs from (one per test binary; the tests'
/// blocking clients run on their own threads).
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime for tests")
    })
}
