//! Differential tests of the compiler: on random models, the compiled tables
//! (through the evaluator) and the map image (through an LPM emulation of the
//! kernel's two lookups) must both agree with a direct, deliberately naive
//! reading of NetworkPolicy semantics, written here only as a test oracle.

use std::net::IpAddr;

use bulkhead_common::{
    ENDPOINT_ISOLATED_EGRESS, ENDPOINT_ISOLATED_INGRESS, IDENTITY_ANY, POLICY_PREFIX_FULL,
    PROTO_ICMP, PolicyKey,
};
use ipnetwork::IpNetwork;

use super::maps::{MapImage, address_key};
use super::*;
use crate::model::addressing::AddressPlan;
use crate::model::{
    ContainerPort, Labels, Namespace, Origin, Pod, Policy, PortSpec, Requirement, Rule, Workload,
};

/// SplitMix64: small, seeded, good enough to shake out cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
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
                            crate::model::NAMESPACE_NAME_LABEL.into(),
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

fn random_model(r: &mut Rng) -> Model {
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
        });
    }
    m.normalize();
    m
}

/// The oracle: NetworkPolicy semantics read straight off the model.
fn oracle(m: &Model, src: IpAddr, dst: IpAddr, proto: u8, port: u16) -> bool {
    let pod_at = |a: IpAddr| m.pods.iter().find(|p| p.ips.contains(&a));
    let (sp, dp) = (pod_at(src), pod_at(dst));
    let side_ok =
        |me: &Pod, d: Direction, peer_addr: IpAddr, peer_pod: Option<&Pod>, dest: Option<&Pod>| {
            let selecting: Vec<&Policy> = m
                .policies
                .iter()
                .filter(|p| {
                    p.namespace == me.namespace
                        && p.pod_selector.matches(&me.labels)
                        && p.rules(d).is_some()
                })
                .collect();
            if selecting.is_empty() {
                return true;
            }
            selecting
                .iter()
                .flat_map(|p| p.rules(d).unwrap())
                .any(|rule| {
                    let peer_ok = rule.peers.as_ref().is_none_or(|peers| {
                        peers.iter().any(|peer| match peer {
                            Peer::IpBlock(b) => {
                                b.cidr.contains(peer_addr)
                                    && !b.except.iter().any(|e| e.contains(peer_addr))
                            }
                            Peer::Pods { namespaces, pods } => peer_pod.is_some_and(|pp| {
                                let ns_ok = match namespaces {
                                    NamespaceScope::Same(ns) => &pp.namespace == ns,
                                    NamespaceScope::Selected(s) => {
                                        s.matches(&m.namespaces[&pp.namespace].labels)
                                    }
                                };
                                ns_ok && pods.matches(&pp.labels)
                            }),
                        })
                    });
                    let port_ok = rule.ports.as_ref().is_none_or(|ports| {
                        ports.iter().any(|s| {
                            s.protocol.number() == proto
                                && match &s.port {
                                    PortMatch::Any => true,
                                    PortMatch::Range(lo, hi) => (*lo..=*hi).contains(&port),
                                    PortMatch::Named(n) => {
                                        dest.and_then(|d| d.named_port(n, s.protocol)) == Some(port)
                                    }
                                }
                        })
                    });
                    peer_ok && port_ok
                })
        };
    let egress = sp.is_none_or(|s| side_ok(s, Direction::Egress, dst, dp, dp));
    let ingress = dp.is_none_or(|d| side_ok(d, Direction::Ingress, src, sp, Some(d)));
    egress && ingress
}

/// The kernel's view: LPM lookups over the map image, by brute force.
fn lpm<'a, K: Copy, V>(
    entries: &'a [(u32, K, V)],
    key: &[u8],
    bytes: impl Fn(&K) -> Vec<u8>,
) -> Option<&'a V> {
    entries
        .iter()
        .filter(|(len, k, _)| {
            let kb = bytes(k);
            (0..*len as usize).all(|bit| (kb[bit / 8] ^ key[bit / 8]) & (0x80 >> (bit % 8)) == 0)
        })
        .max_by_key(|(len, _, _)| *len)
        .map(|(_, _, v)| v)
}

fn policy_bytes(k: &PolicyKey) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend(k.table);
    v.extend(k.identity);
    v.push(k.proto);
    v.extend(k.port);
    v.push(k._pad);
    v
}

fn kernel_allowed(
    c: &Compiled,
    image: &MapImage,
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    port: u16,
) -> bool {
    let identity = |a: IpAddr| {
        lpm(&image.identities, &address_key(a).addr, |k| k.addr.to_vec())
            .expect("every address has an identity")
            .identity
    };
    let endpoint = |a: IpAddr| c.pod_of(a).map(|p| image.endpoints[p].1);
    let check = |table: u32, peer: u32| {
        [peer, IDENTITY_ANY].iter().any(|&id| {
            let key = PolicyKey::new(table, id, proto, port);
            lpm(&image.policy, &policy_bytes(&key), policy_bytes).is_some()
        })
    };
    let _ = POLICY_PREFIX_FULL;
    let egress = endpoint(src).is_none_or(|e| {
        e.flags & ENDPOINT_ISOLATED_EGRESS == 0 || check(e.egress_table, identity(dst))
    });
    let ingress = endpoint(dst).is_none_or(|e| {
        e.flags & ENDPOINT_ISOLATED_INGRESS == 0 || check(e.ingress_table, identity(src))
    });
    egress && ingress
}

/// Addresses worth probing: pods', and around every ipBlock edge.
fn probe_addresses(m: &Model, c: &Compiled) -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = m.pods.iter().flat_map(|p| p.ips.clone()).collect();
    for b in &c.blocks {
        for n in std::iter::once(&b.cidr).chain(&b.except) {
            let (lo, hi) = address::net_range(n);
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

#[test]
fn compiled_tables_and_map_image_agree_with_the_oracle() {
    let mut checked = 0usize;
    let mut allowed = 0usize;
    for seed in 0..300 {
        let mut r = Rng(seed);
        let m = random_model(&mut r);
        let c = compile(&m);
        let image = c.map_image();
        let addrs = probe_addresses(&m, &c);
        for &src in &addrs {
            for &dst in &addrs {
                if src == dst || src.is_ipv4() != dst.is_ipv4() {
                    continue;
                }
                let port = 76 + r.below(12) as u16;
                let proto = *r.pick(&[6u8, 17, 132, PROTO_ICMP]);
                let want = oracle(&m, src, dst, proto, port);
                let got = c.allowed(src, dst, proto, port);
                assert_eq!(
                    got, want,
                    "seed {seed}: evaluator {src} -> {dst} proto {proto} port {port}\n{m:#?}"
                );
                assert_eq!(
                    c.evaluate(src, dst, proto, port).allowed(),
                    want,
                    "seed {seed}: evaluate"
                );
                if r.chance(10) {
                    let k = kernel_allowed(&c, &image, src, dst, proto, port);
                    assert_eq!(
                        k, want,
                        "seed {seed}: map image {src} -> {dst} proto {proto} port {port}"
                    );
                }
                checked += 1;
                allowed += want as usize;
            }
        }
    }
    // The generator must produce both answers in quantity, or the test proves nothing.
    assert!(checked > 20_000, "only {checked} queries");
    assert!(
        allowed > checked / 10 && allowed < checked * 9 / 10,
        "{allowed} of {checked} allowed"
    );
}

#[test]
fn identities_group_pods_that_no_selector_distinguishes() {
    let mut m = Model::default();
    for i in 0..50 {
        let app = if i % 2 == 0 { "web" } else { "db" };
        m.pods.push(Pod {
            namespace: "x".into(),
            name: format!("p{i}"),
            source: Workload {
                kind: "Pod".into(),
                name: format!("p{i}"),
            },
            owner: None,
            labels: [
                ("app".to_string(), app.to_string()),
                ("pod".to_string(), format!("p{i}")),
            ]
            .into(),
            ports: vec![],
            ips: vec![],
            origin: Origin::default(),
        });
    }
    m.policies.push(Policy {
        namespace: "x".into(),
        name: "db".into(),
        pod_selector: Selector::new(vec![Requirement::In("app".into(), vec!["db".into()])]),
        ingress: Some(vec![Rule {
            peers: Some(vec![Peer::Pods {
                namespaces: NamespaceScope::Same("x".into()),
                pods: Selector::new(vec![Requirement::In("app".into(), vec!["web".into()])]),
            }]),
            ports: None,
        }]),
        egress: None,
        origin: Origin::default(),
    });
    m.normalize();
    AddressPlan::default().assign(&mut m.pods).unwrap();
    let c = compile(&m);
    // Two pod classes (web, db), each one identity for both families (no
    // ipBlock tells the families apart), plus one external identity per family.
    assert_eq!(c.classes.len(), 2);
    assert_eq!(c.identities.list.len(), 4);
    // All 25 db pods share one table; web pods have none.
    assert_eq!(c.tables.len(), 1);
    assert_eq!(
        c.tables[0].segment_count(),
        1,
        "one segment: the web identity"
    );
}
