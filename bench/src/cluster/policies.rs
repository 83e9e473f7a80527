//! The synthetic NetworkPolicies: a baseline every namespace has (default
//! deny, DNS egress), then policies drawn from a fixed menu of shapes seen in
//! real clusters until the requested count is reached.
//!
//! Policies are drawn from the universe (namespaces and workloads), never
//! from the pods, so one policy set serves every pod count.

use std::path::PathBuf;

use bulkhead_policy::model::{
    IpBlock, NAMESPACE_NAME_LABEL, NamespaceScope, Origin, Peer, Policy, PortMatch, PortSpec,
    Protocol, Requirement, Rule, Selector,
};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{ClusterSpec, POD_NAME_LABEL, Universe};

/// Blocks of ingress allow-lists; several cover pod addresses (the default
/// pod CIDRs are 10.244.0.0/16 and fd00:10:244::/64), so pod addresses fall
/// in ipBlocks and `except` carves some of them out.
const INGRESS_BLOCKS: [(&str, &[&str]); 8] = [
    ("10.0.0.0/8", &["10.244.0.0/16"]),
    ("10.244.0.0/16", &["10.244.16.0/20"]),
    ("10.244.0.0/20", &["10.244.1.0/24"]),
    ("10.244.32.0/19", &[]),
    ("192.168.0.0/16", &[]),
    ("172.16.0.0/12", &["172.17.0.0/16"]),
    ("fd00:10:244::/64", &["fd00:10:244::/120"]),
    ("198.51.100.0/24", &[]),
];

fn req_in(k: &str, vs: &[&str]) -> Requirement {
    Requirement::In(k.into(), vs.iter().map(|v| v.to_string()).collect())
}

fn req_not_in(k: &str, vs: &[&str]) -> Requirement {
    Requirement::NotIn(k.into(), vs.iter().map(|v| v.to_string()).collect())
}

/// A `matchLabels` selector.
fn labels(pairs: &[(&str, &str)]) -> Selector {
    Selector::new(pairs.iter().map(|(k, v)| req_in(k, &[v])).collect())
}

fn same(ns: &str, pods: Selector) -> Peer {
    Peer::Pods {
        namespaces: NamespaceScope::Same(ns.into()),
        pods,
    }
}

fn selected(namespaces: Selector, pods: Selector) -> Peer {
    Peer::Pods {
        namespaces: NamespaceScope::Selected(namespaces),
        pods,
    }
}

fn block(cidr: &str, except: &[&str]) -> Peer {
    Peer::IpBlock(IpBlock {
        cidr: cidr.parse().expect("valid CIDR"),
        except: except
            .iter()
            .map(|e| e.parse().expect("valid CIDR"))
            .collect(),
    })
}

fn ports(protocol: Protocol, lo: u16, hi: u16) -> PortSpec {
    PortSpec {
        protocol,
        port: PortMatch::Range(lo, hi),
    }
}

fn tcp(p: u16) -> PortSpec {
    ports(Protocol::Tcp, p, p)
}

fn named(protocol: Protocol, name: &str) -> PortSpec {
    PortSpec {
        protocol,
        port: PortMatch::Named(name.into()),
    }
}

fn rule(peers: Option<Vec<Peer>>, ports: Option<Vec<PortSpec>>) -> Rule {
    Rule { peers, ports }
}

/// Draws policies for one cluster.
struct Drawer<'u> {
    universe: &'u Universe,
    rng: ChaCha8Rng,
    /// Application namespaces (indices).
    app_ns: Vec<usize>,
    /// Apps (indices) of each namespace.
    apps_of: Vec<Vec<usize>>,
    out: Vec<Policy>,
    want: usize,
}

impl Drawer<'_> {
    fn push(
        &mut self,
        ns: usize,
        name: String,
        subject: Selector,
        ingress: Option<Vec<Rule>>,
        egress: Option<Vec<Rule>>,
    ) {
        if self.out.len() >= self.want {
            return;
        }
        let document = self.out.len();
        self.out.push(Policy {
            namespace: self.universe.namespaces[ns].name.clone(),
            name,
            pod_selector: subject,
            ingress,
            egress,
            origin: Origin::File {
                file: PathBuf::from("synthetic/policies"),
                document,
            },
            mode: None,
        });
    }

    fn ns_name(&self, ns: usize) -> &str {
        &self.universe.namespaces[ns].name
    }

    /// A random app of namespace `ns`.
    fn app(&mut self, ns: usize) -> String {
        let apps = &self.apps_of[ns];
        let a = apps[self.rng.random_range(0..apps.len())];
        self.universe.apps[a].name.clone()
    }

    /// A random stateful app of `ns`, if it has one.
    fn stateful_app(&mut self, ns: usize) -> Option<String> {
        let apps: Vec<usize> = self.apps_of[ns]
            .iter()
            .copied()
            .filter(|&a| self.universe.apps[a].stateful)
            .collect();
        (!apps.is_empty()).then(|| {
            self.universe.apps[apps[self.rng.random_range(0..apps.len())]]
                .name
                .clone()
        })
    }

    fn random_app_ns(&mut self) -> usize {
        self.app_ns[self.rng.random_range(0..self.app_ns.len())]
    }

    /// Default deny, DNS and platform policies.
    fn baseline(&mut self) {
        let everything = Selector::everything;
        let dns_peer = || {
            selected(
                labels(&[(NAMESPACE_NAME_LABEL, "kube-system")]),
                labels(&[("k8s-app", "kube-dns")]),
            )
        };
        for ns in self.app_ns.clone() {
            self.push(
                ns,
                "default-deny-ingress".into(),
                everything(),
                Some(vec![]),
                None,
            );
        }
        for ns in self.app_ns.clone() {
            if !self.rng.random_bool(0.4) {
                continue;
            }
            self.push(
                ns,
                "default-deny-egress".into(),
                everything(),
                None,
                Some(vec![]),
            );
            let dns_ports = if self.rng.random_bool(0.5) {
                vec![named(Protocol::Udp, "dns"), named(Protocol::Tcp, "dns-tcp")]
            } else {
                vec![ports(Protocol::Udp, 53, 53), tcp(53)]
            };
            self.push(
                ns,
                "allow-dns".into(),
                everything(),
                None,
                Some(vec![rule(Some(vec![dns_peer()]), Some(dns_ports))]),
            );
        }
        let all_pods = selected(everything(), everything());
        let dns_in = rule(
            Some(vec![all_pods]),
            Some(vec![ports(Protocol::Udp, 53, 53), tcp(53)]),
        );
        self.push(
            0,
            "allow-dns-from-cluster".into(),
            labels(&[("k8s-app", "kube-dns")]),
            Some(vec![dns_in]),
            None,
        );
        let scrape = rule(
            Some(vec![selected(
                labels(&[(NAMESPACE_NAME_LABEL, "monitoring")]),
                labels(&[("app", "prometheus")]),
            )]),
            Some(vec![
                named(Protocol::Tcp, "metrics"),
                named(Protocol::Tcp, "https"),
            ]),
        );
        self.push(
            0,
            "allow-scrape".into(),
            Selector::everything(),
            Some(vec![scrape]),
            None,
        );
        let grafana = rule(
            Some(vec![block("10.0.0.0/8", &["10.244.0.0/16"])]),
            Some(vec![named(Protocol::Tcp, "http")]),
        );
        self.push(
            1,
            "grafana-from-office".into(),
            labels(&[("app", "grafana")]),
            Some(vec![grafana]),
            None,
        );
    }

    /// One policy of a random shape in namespace `ns`.
    fn shaped(&mut self, i: usize, ns: usize) {
        let nsn = self.ns_name(ns).to_string();
        let a = self.app(ns);
        let subject = labels(&[("app", &a)]);
        let shape = self.rng.random_range(0..15u32);
        let name = |s: &str| format!("{s}-{a}-{i}");
        match shape {
            0 => {
                let b = self.app(ns);
                let port = if self.rng.random_bool(0.5) {
                    named(Protocol::Tcp, "http")
                } else {
                    tcp(8080)
                };
                let r = rule(
                    Some(vec![same(&nsn, labels(&[("app", &b)]))]),
                    Some(vec![port]),
                );
                self.push(ns, name("allow-same-ns"), subject, Some(vec![r]), None);
            }
            1 => {
                let other = self.random_app_ns();
                let team = self.universe.namespaces[other].team;
                let peer = selected(labels(&[("team", team)]), labels(&[("tier", "frontend")]));
                let r = rule(Some(vec![peer]), Some(vec![tcp(8080), tcp(443)]));
                self.push(
                    ns,
                    name("allow-team-frontends"),
                    subject,
                    Some(vec![r]),
                    None,
                );
            }
            2 => {
                let other = self.random_app_ns();
                let other_name = self.ns_name(other).to_string();
                let peer = selected(
                    labels(&[(NAMESPACE_NAME_LABEL, &other_name)]),
                    labels(&[("app", "gateway")]),
                );
                let r = rule(Some(vec![peer]), Some(vec![named(Protocol::Tcp, "http")]));
                self.push(ns, name("allow-gateway"), subject, Some(vec![r]), None);
            }
            3 => {
                let subject = Selector::new(vec![req_in("tier", &["backend", "data"])]);
                let local = same(
                    &nsn,
                    Selector::new(vec![
                        req_in("tier", &["frontend", "backend"]),
                        req_not_in("track", &["canary"]),
                    ]),
                );
                let remote = selected(
                    Selector::new(vec![
                        req_in("env", &["prod", "staging"]),
                        Requirement::DoesNotExist("compliance".into()),
                    ]),
                    Selector::new(vec![
                        Requirement::Exists("app".into()),
                        Requirement::DoesNotExist("legacy".into()),
                    ]),
                );
                let r = rule(
                    Some(vec![local, remote]),
                    Some(vec![named(Protocol::Tcp, "grpc"), tcp(8080)]),
                );
                self.push(ns, format!("allow-tiers-{i}"), subject, Some(vec![r]), None);
            }
            4 => {
                let subject = if self.rng.random_bool(0.5) {
                    Selector::everything()
                } else {
                    subject
                };
                let peer = selected(
                    labels(&[(NAMESPACE_NAME_LABEL, "monitoring")]),
                    labels(&[("app", "prometheus")]),
                );
                let r = rule(
                    Some(vec![peer]),
                    Some(vec![named(Protocol::Tcp, "metrics")]),
                );
                self.push(ns, name("allow-prometheus"), subject, Some(vec![r]), None);
            }
            5 => {
                let (cidr, except) = INGRESS_BLOCKS[self.rng.random_range(0..INGRESS_BLOCKS.len())];
                let host = format!("203.0.113.{}/32", self.rng.random_range(0..64u32));
                let r = rule(
                    Some(vec![block(cidr, except), block(&host, &[])]),
                    Some(vec![tcp(443), tcp(8443)]),
                );
                self.push(ns, name("allow-cidrs"), subject, Some(vec![r]), None);
            }
            6 => {
                let mut p = vec![ports(Protocol::Tcp, 30000, 32767)];
                if self.rng.random_bool(0.5) {
                    p.push(ports(Protocol::Tcp, 8000, 8099));
                }
                let r = rule(
                    Some(vec![same(&nsn, labels(&[("tier", "frontend")]))]),
                    Some(p),
                );
                self.push(ns, name("allow-port-range"), subject, Some(vec![r]), None);
            }
            7 => {
                let peer = selected(labels(&[("env", "prod")]), Selector::everything());
                let p = vec![
                    ports(Protocol::Udp, 5000, 5100),
                    named(Protocol::Udp, "statsd"),
                    ports(Protocol::Sctp, 3868, 3868),
                    ports(Protocol::Sctp, 38412, 38412),
                ];
                let r = rule(Some(vec![peer]), Some(p));
                self.push(ns, name("allow-udp-sctp"), subject, Some(vec![r]), None);
            }
            8 => {
                let other = self.random_app_ns();
                let team = self.universe.namespaces[other].team;
                let db = rule(
                    Some(vec![same(&nsn, labels(&[("app", "db")]))]),
                    Some(vec![tcp(5432)]),
                );
                let api = rule(
                    Some(vec![selected(
                        labels(&[("team", team)]),
                        labels(&[("app", "api")]),
                    )]),
                    Some(vec![named(Protocol::Tcp, "grpc")]),
                );
                self.push(
                    ns,
                    name("egress-backends"),
                    subject,
                    None,
                    Some(vec![db, api]),
                );
            }
            9 => {
                let internet = rule(
                    Some(vec![
                        block(
                            "0.0.0.0/0",
                            &["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"],
                        ),
                        block("::/0", &["fd00::/8"]),
                    ]),
                    Some(vec![tcp(443)]),
                );
                let services = rule(
                    Some(vec![block("10.96.0.0/12", &[])]),
                    Some(vec![tcp(443), ports(Protocol::Udp, 53, 53)]),
                );
                self.push(
                    ns,
                    name("egress-internet"),
                    subject,
                    None,
                    Some(vec![internet, services]),
                );
            }
            10 => {
                let Some(s) = self.stateful_app(ns) else {
                    return self.push(
                        ns,
                        name("allow-any-http"),
                        subject,
                        Some(vec![rule(None, Some(vec![tcp(80)]))]),
                        None,
                    );
                };
                let primary = labels(&[(POD_NAME_LABEL, &format!("{s}-0"))]);
                let replicas = same(
                    &nsn,
                    Selector::new(vec![req_in(
                        POD_NAME_LABEL,
                        &[&format!("{s}-1"), &format!("{s}-2")],
                    )]),
                );
                let p = if s.starts_with("db") {
                    "postgres"
                } else {
                    "http"
                };
                let repl = rule(Some(vec![replicas]), Some(vec![named(Protocol::Tcp, p)]));
                let clients = rule(
                    Some(vec![same(&nsn, labels(&[("app", "api")]))]),
                    Some(vec![tcp(5432), tcp(6379)]),
                );
                self.push(
                    ns,
                    format!("{s}-primary-{i}"),
                    primary,
                    Some(vec![repl, clients]),
                    None,
                );
            }
            11 => {
                let r = rule(Some(vec![same(&nsn, Selector::everything())]), None);
                self.push(
                    ns,
                    format!("allow-same-namespace-{i}"),
                    Selector::everything(),
                    Some(vec![r]),
                    None,
                );
            }
            12 => {
                let (b, c) = (self.app(ns), self.app(ns));
                let ing = rule(
                    Some(vec![same(&nsn, labels(&[("app", &b)]))]),
                    Some(vec![named(Protocol::Tcp, "http")]),
                );
                let to_c = rule(
                    Some(vec![same(&nsn, labels(&[("app", &c)]))]),
                    Some(vec![named(Protocol::Tcp, "http")]),
                );
                let dns = rule(None, Some(vec![ports(Protocol::Udp, 53, 53)]));
                self.push(
                    ns,
                    name("two-way"),
                    subject,
                    Some(vec![ing]),
                    Some(vec![to_c, dns]),
                );
            }
            13 => {
                let r = rule(None, Some(vec![tcp(80), tcp(443)]));
                self.push(ns, name("allow-public-web"), subject, Some(vec![r]), None);
            }
            _ => {
                let (cidr, except) = INGRESS_BLOCKS[self.rng.random_range(1..4)];
                let r = rule(
                    Some(vec![block(cidr, except)]),
                    Some(vec![named(Protocol::Tcp, "http")]),
                );
                self.push(ns, name("allow-pod-cidr"), subject, Some(vec![r]), None);
            }
        }
    }
}

/// `spec.policies` policies over `universe`.
pub(super) fn generate(spec: &ClusterSpec, universe: &Universe) -> Vec<Policy> {
    let mut apps_of = vec![Vec::new(); universe.namespaces.len()];
    for (i, a) in universe.apps.iter().enumerate() {
        apps_of[a.namespace].push(i);
    }
    let app_ns = (0..universe.namespaces.len())
        .filter(|&n| universe.namespaces[n].app && !apps_of[n].is_empty())
        .collect::<Vec<_>>();
    let mut d = Drawer {
        universe,
        rng: ChaCha8Rng::seed_from_u64(spec.seed ^ 0x706f_6c69_6369_6573),
        app_ns,
        apps_of,
        out: Vec::with_capacity(spec.policies),
        want: spec.policies,
    };
    if d.app_ns.is_empty() {
        return d.out;
    }
    d.baseline();
    let mut i = 0;
    while d.out.len() < d.want {
        let ns = d.random_app_ns();
        d.shaped(i, ns);
        i += 1;
    }
    d.out
}
