//! Infrastructure in proposals: DNS servers (by label and by flag), the
//! control plane kept under thresholds, internet-facing workloads
//! (LoadBalancer, NodePort, Ingress; named target ports) and
//! `--keep-observed-sources`. Every proposal here is proven and read back
//! through the real manifest loader.

use std::net::IpAddr;

use bulkhead_flows::record::FlowRecord;
use bulkhead_learn::edge::{End, History, WorkloadId};
use bulkhead_learn::propose::infra::Role;
use bulkhead_learn::propose::{PeerSel, ProposedPolicy, ProposedRule};
use bulkhead_learn::*;
use bulkhead_policy::model::addressing::AddressPlan;
use bulkhead_policy::model::{Direction, Labels, Model, Protocol};
use bulkhead_testkit::learn::*;

fn history(records: &[FlowRecord]) -> History {
    let mut h = History::default();
    for r in records {
        h.add_record(r);
    }
    h
}

fn labels(l: &[(&str, &str)]) -> Labels {
    l.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The demo's manifests plus `extra`, and (with `proposal`) the proposal's
/// YAML, in a directory; loaded by the real loader.
fn load(extra: &str, proposal: Option<&Proposal>) -> Model {
    let dir = tempfile::tempdir().unwrap();
    for f in ["workloads.yaml", "netpol.yaml"] {
        std::fs::copy(demo_dir().join(f), dir.path().join(f)).unwrap();
    }
    std::fs::write(dir.path().join("extra.yaml"), extra).unwrap();
    if let Some(p) = proposal {
        std::fs::write(dir.path().join("proposal.yaml"), render::proposal_yaml(p)).unwrap();
    }
    bulkhead_policy::source::manifest::load_dir(dir.path(), &AddressPlan::default()).unwrap()
}

/// Proposes with `options`, checks the proof is complete, that the YAML
/// reads back as exactly the policies the proof compiled, and that
/// re-proposing on the applied manifests changes nothing.
fn propose_checked(h: &History, extra: &str, options: Options) -> (Proposal, Proof) {
    let model = load(extra, None);
    let p = propose_with(h, &model, options.clone());
    let proof = prove(h, &model, &p);
    assert!(proof.complete(), "{:?}", proof.denied);
    assert_eq!(proof.coverage_percent, 100.0);
    let applied = load(extra, Some(&p));
    for pp in &p.policies {
        let loaded = read_back(&applied, &pp.key());
        assert_eq!(loaded, pp.policy(), "{}", render::policy_yaml(pp));
    }
    let again = propose_with(h, &applied, options);
    assert_eq!(render::proposal_yaml(&again), render::proposal_yaml(&p));
    assert!(prove(h, &applied, &again).diff.no_change());
    (p, proof)
}

fn policy<'a>(p: &'a Proposal, key: &str) -> &'a ProposedPolicy {
    p.policies
        .iter()
        .find(|x| x.key() == key)
        .unwrap_or_else(|| panic!("no {key} in {:?}", p.policies.iter().map(|x| x.key())))
}

/// The rule of `d` whose peers include `sel`.
fn rule_with<'a>(p: &'a ProposedPolicy, d: Direction, sel: &PeerSel) -> &'a ProposedRule {
    p.rules(d)
        .iter()
        .find(|r| r.peers.iter().any(|x| x.peer == *sel))
        .unwrap_or_else(|| panic!("no {sel:?} in {}", render::policy_yaml(p)))
}

fn dns53() -> Vec<(Protocol, u16)> {
    vec![(Protocol::Tcp, 53), (Protocol::Udp, 53)]
}

fn coredns_sel() -> PeerSel {
    PeerSel::Pods {
        namespace: "kube-system".into(),
        labels: labels(&[("k8s-app", "kube-dns")]),
    }
}

/// The demo without db's DNS lookups, plus coredns resolving upstream and
/// scraped on its metrics port.
fn dns_records() -> Vec<FlowRecord> {
    let d = demo();
    let upstream = Peer::Ext(ip("192.0.2.53"));
    let db_dns = conn(T0 + 5_000, &d.db, &d.dns, 17, 53);
    let mut v: Vec<FlowRecord> = demo_records()
        .into_iter()
        .filter(|r| !db_dns.iter().any(|x| x.src == r.src && x.dst == r.dst))
        .collect();
    v.extend(conn(T0 + 6_000, &d.dns, &upstream, 17, 53));
    v.extend(conn(T0 + 7_000, &d.api, &d.dns, 6, 9153));
    v
}

#[test]
fn a_dns_server_by_its_label_takes_all_pods_on_53_and_keeps_its_egress() {
    let h = history(&dns_records());
    let (p, proof) = propose_checked(&h, "", Options::default());
    let coredns = policy(&p, "kube-system/bulkhead-coredns");
    assert!(coredns.ingress_only);
    assert_eq!(coredns.policy().egress, None);
    assert!(coredns.egress.is_empty(), "its upstream is not proposed");
    let all = rule_with(coredns, Direction::Ingress, &PeerSel::AllPods);
    assert_eq!(all.ports, dns53());
    // The clients seen are under "all pods", not selectors of their own.
    let seen: Vec<&str> = all.peers[0]
        .observed
        .iter()
        .map(|o| o.peer.as_str())
        .collect();
    assert_eq!(seen, ["shop/Deployment/api", "shop/Deployment/frontend"]);
    assert_eq!(all.peers.len(), 1);
    // Its other observed ingress (metrics) stays as observed.
    let api_sel = PeerSel::Pods {
        namespace: "shop".into(),
        labels: labels(&[("app", "api"), ("tier", "backend")]),
    };
    assert_eq!(
        rule_with(coredns, Direction::Ingress, &api_sel).ports,
        [(Protocol::Tcp, 9153)]
    );
    let yaml = render::policy_yaml(coredns);
    assert!(
        yaml.contains("  policyTypes:\n    - Ingress\n  ingress:"),
        "{yaml}"
    );
    assert!(
        !yaml.contains("  egress:") && !yaml.contains("- Egress"),
        "{yaml}"
    );
    assert!(
        yaml.contains("- namespaceSelector: {}\n          podSelector: {}"),
        "{yaml}"
    );
    assert!(
        yaml.contains("# DNS server (label k8s-app=kube-dns)"),
        "{yaml}"
    );
    let f = &proof.infrastructure[0];
    assert_eq!(
        (f.workload.as_str(), f.role),
        ("kube-system/Deployment/coredns", Role::DnsServer)
    );
    assert!(f.note.contains("no egress section"), "{}", f.note);
    assert!(f.note.contains("3 other proposed policies"), "{}", f.note);
    let text = coverage::text(&proof, &p);
    assert!(
        text.contains("Infrastructure (1):\n  DNS server kube-system/Deployment/coredns: label"),
        "{text}"
    );
}

#[test]
fn every_other_policy_allows_dns_even_when_not_seen_resolving() {
    let h = history(&dns_records());
    let (p, proof) = propose_checked(&h, "", Options::default());
    for key in [
        "shop/bulkhead-frontend",
        "shop/bulkhead-api",
        "shop/bulkhead-db",
    ] {
        let pp = policy(&p, key);
        let r = rule_with(pp, Direction::Egress, &coredns_sel());
        // api also scrapes coredns's metrics: one selector, one port set.
        let ports = match key {
            "shop/bulkhead-api" => vec![
                (Protocol::Tcp, 53),
                (Protocol::Tcp, 9153),
                (Protocol::Udp, 53),
            ],
            _ => dns53(),
        };
        assert_eq!(r.ports, ports, "{key}");
        let peer = r.peers.iter().find(|x| x.peer == coredns_sel()).unwrap();
        assert!(peer.notes[0].starts_with("DNS for all pods"), "{key}");
    }
    // db was not seen resolving: allowed all the same, said so.
    let db = policy(&p, "shop/bulkhead-db");
    let peer = &rule_with(db, Direction::Egress, &coredns_sel()).peers[0];
    assert!(peer.observed.is_empty());
    let yaml = render::policy_yaml(db);
    assert!(yaml.contains("# DNS for all pods: DNS server kube-system/Deployment/coredns"));
    // The proof lists the unseen lookups as beyond observed.
    assert!(
        proof
            .beyond_observed
            .iter()
            .any(|b| b.policy == "shop/bulkhead-db"
                && b.peer == "kube-system/Deployment/coredns"
                && b.ports == ["TCP/53", "UDP/53"]),
        "{:?}",
        proof.beyond_observed
    );
}

const RESOLVER: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: unbound, namespace: dns}
spec:
  selector: {matchLabels: {app: resolver}}
  template:
    metadata: {labels: {app: resolver}}
    spec:
      containers:
        - name: unbound
          image: unbound
";

#[test]
fn a_dns_server_by_the_flag() {
    let d = demo();
    let unbound = pod(
        "dns",
        "unbound-1",
        "Deployment/unbound",
        &[("app", "resolver")],
        "10.244.0.9",
    );
    let mut records = conn(T0, &d.api, &unbound, 17, 53);
    records.extend(conn(T0 + 1, &unbound, &Peer::Ext(ip("192.0.2.53")), 17, 53));
    let h = history(&records);
    let unbound_key = "dns/bulkhead-unbound";
    // Without the flag: a workload like any other.
    let (p, _) = propose_checked(&h, RESOLVER, Options::default());
    assert!(!policy(&p, unbound_key).ingress_only);
    assert!(!policy(&p, unbound_key).egress.is_empty());
    let options = Options {
        infra: InfraOptions {
            dns_servers: vec!["dns/app=resolver".parse().unwrap()],
            ..InfraOptions::default()
        },
        ..Options::default()
    };
    let (p, proof) = propose_checked(&h, RESOLVER, options);
    let u = policy(&p, unbound_key);
    assert!(u.ingress_only);
    assert_eq!(
        rule_with(u, Direction::Ingress, &PeerSel::AllPods).ports,
        dns53()
    );
    let api = policy(&p, "shop/bulkhead-api");
    let resolver = PeerSel::Pods {
        namespace: "dns".into(),
        labels: labels(&[("app", "resolver")]),
    };
    assert_eq!(rule_with(api, Direction::Egress, &resolver).ports, dns53());
    assert!(
        proof
            .infrastructure
            .iter()
            .any(|f| f.workload == "dns/Deployment/unbound"
                && f.note.starts_with("--dns-server dns/app=resolver")),
        "{:?}",
        proof.infrastructure
    );
}

#[test]
fn dns_server_flags_parse() {
    let s: DnsServerSpec = "kube-system/k8s-app=kube-dns".parse().unwrap();
    assert_eq!(
        (s.namespace.as_str(), s.key.as_str(), s.value.as_str()),
        ("kube-system", "k8s-app", "kube-dns")
    );
    assert_eq!(s.to_string(), "kube-system/k8s-app=kube-dns");
    let s: DnsServerSpec = "dns/example.com/role=".parse().unwrap();
    assert_eq!((s.key.as_str(), s.value.as_str()), ("example.com/role", ""));
    for bad in ["kube-dns", "ns/key", "/k=v", "ns/=v", "a=b/k=v"] {
        let e = bad.parse::<DnsServerSpec>().unwrap_err();
        assert!(
            e.to_string().contains("NAMESPACE/LABEL=VALUE"),
            "{bad}: {e}"
        );
    }
}

const KUBERNETES: &str = "apiVersion: v1
kind: Service
metadata: {name: kubernetes, namespace: default}
spec:
  clusterIP: 10.96.0.1
  ports: [{name: https, port: 443, targetPort: 6443}]
";

#[test]
fn control_plane_edges_are_kept_under_min_flows() {
    let d = demo();
    let apiserver = Peer::Ext(ip("172.18.0.2"));
    let mut records = Vec::new();
    // Seen once each: the API server both ways, and an ordinary address.
    records.extend(conn(T0, &d.api, &apiserver, 6, 6443));
    records.extend(conn(T0 + 1, &apiserver, &d.api, 6, 8443));
    records.extend(conn(T0 + 2, &d.api, &Peer::Ext(ip("203.0.113.99")), 6, 443));
    for i in 0..3 {
        records.extend(conn(T0 + 10 + i, &d.frontend, &d.api, 6, 8080));
    }
    let h = history(&records);
    let options = Options {
        thresholds: Thresholds {
            min_flows: 2,
            ..Thresholds::default()
        },
        infra: InfraOptions {
            api_servers: vec!["172.18.0.0/30".parse().unwrap()],
            ..InfraOptions::default()
        },
        ..Options::default()
    };
    let (p, proof) = propose_checked(&h, KUBERNETES, options.clone());
    let api = policy(&p, "shop/bulkhead-api");
    let addr = PeerSel::Addr(ip("172.18.0.2"));
    for d in Direction::ALL {
        let r = rule_with(api, d, &addr);
        let peer = r.peers.iter().find(|x| x.peer == addr).unwrap();
        assert!(peer.notes[0].starts_with("control plane: the API server (--api-server)"));
    }
    assert!(api.egress.iter().all(|r| {
        r.peers
            .iter()
            .all(|x| x.peer != PeerSel::Addr(ip("203.0.113.99")))
    }));
    assert_eq!(proof.left_out.len(), 1, "{:?}", proof.left_out);
    assert_eq!(proof.left_out[0].observed.peer, "203.0.113.99");
    let roles: Vec<(&str, Role)> = proof
        .infrastructure
        .iter()
        .map(|f| (f.workload.as_str(), f.role))
        .collect();
    assert_eq!(
        roles,
        [
            ("kube-system/Deployment/coredns", Role::DnsServer),
            ("10.96.0.1", Role::ApiServer),
            ("172.18.0.0/30", Role::ApiServer),
        ]
    );
    assert!(proof.infrastructure[2].note.contains("2 observed edges"));
    assert!(
        proof.infrastructure[1]
            .note
            .contains("Service default/kubernetes")
    );
    // The predicate other filters call.
    let model = load(KUBERNETES, None);
    let index = propose::Workloads::new(&model);
    let infra = propose::Infra::new(&model, &h, &index, &options.infra);
    let key = |dst: &str| EdgeKey {
        src: End::Workload(WorkloadId {
            namespace: "shop".into(),
            workload: "Deployment/api".into(),
        }),
        dst: End::External(ip(dst)),
        protocol: 6,
        port: 443,
    };
    assert!(infra.is_control_plane(&key("10.96.0.1")));
    assert!(infra.is_control_plane(&key("172.18.0.3")));
    assert!(!infra.is_control_plane(&key("172.18.0.4")));
}

/// `frontend`'s Services, with the named target port `http` (8080).
fn exposed_by(kind: &str) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata: {{name: web, namespace: shop}}
spec:
  type: {kind}
  selector: {{app: frontend}}
  ports: [{{name: http, port: 80, targetPort: http}}]
"
    )
}

const INGRESS: &str = "---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: shop, namespace: shop}
spec:
  rules:
    - http:
        paths:
          - path: /
            pathType: Prefix
            backend: {service: {name: web, port: {name: http}}}
";

/// The demo (an external client on frontend's 8080) plus api calling
/// frontend on 8080 and an external client on api's 9090.
fn exposure_records() -> Vec<FlowRecord> {
    let d = demo();
    let mut v = demo_records();
    v.extend(conn(T0 + 50_000, &d.api, &d.frontend, 6, 8080));
    v.extend(conn(
        T0 + 51_000,
        &Peer::Ext(ip("198.51.100.1")),
        &d.api,
        6,
        9090,
    ));
    v
}

fn all4() -> PeerSel {
    PeerSel::Cidr("0.0.0.0/0".parse().unwrap())
}

fn all6() -> PeerSel {
    PeerSel::Cidr("::/0".parse().unwrap())
}

#[test]
fn internet_facing_ports_are_open_to_all_external_addresses() {
    let h = history(&exposure_records());
    for (extra, by) in [
        (exposed_by("LoadBalancer"), "shop/web (LoadBalancer)"),
        (exposed_by("NodePort"), "shop/web (NodePort)"),
        (
            exposed_by("ClusterIP") + INGRESS,
            "shop/web (Ingress shop/shop)",
        ),
    ] {
        let (p, proof) = propose_checked(&h, &extra, Options::default());
        let fe = policy(&p, "shop/bulkhead-frontend");
        let r = rule_with(fe, Direction::Ingress, &all4());
        assert_eq!(r.ports, [(Protocol::Tcp, 8080)], "{by}");
        let peers: Vec<&PeerSel> = r.peers.iter().map(|x| &x.peer).collect();
        let api = PeerSel::Pods {
            namespace: "shop".into(),
            labels: labels(&[("app", "api"), ("tier", "backend")]),
        };
        // The cluster has IPv6 (the address plan gives pods both): ::/0 too.
        // The observed external address is replaced; the pod peer stays.
        assert_eq!(peers, [&api, &all4(), &all6()], "{by}");
        let open = r.peers.iter().find(|x| x.peer == all4()).unwrap();
        assert_eq!(open.observed[0].peer, "203.0.113.10");
        assert!(open.notes[0].contains(by), "{by}: {:?}", open.notes);
        let yaml = render::policy_yaml(fe);
        assert!(yaml.contains("cidr: 0.0.0.0/0") && !yaml.contains("203.0.113.10/32"));
        assert!(yaml.contains(&format!(
            "# internet-facing: TCP/8080 is a target port of {by}"
        )));
        // api is behind no such Service: its external client stays exact.
        let api_p = policy(&p, "shop/bulkhead-api");
        rule_with(
            api_p,
            Direction::Ingress,
            &PeerSel::Addr(ip("198.51.100.1")),
        );
        let f = &proof.internet_facing;
        assert_eq!(f.len(), 1, "{by}: {f:?}");
        assert_eq!(f[0].workload, "shop/Deployment/frontend");
        assert_eq!(f[0].services, [by]);
        assert_eq!(f[0].ports, ["TCP/8080"]);
        assert!(f[0].open_to_all);
        let text = coverage::text(&proof, &p);
        assert!(
            text.contains(&format!(
                "Internet-facing (1):\n  shop/Deployment/frontend (behind {by}): TCP/8080 open \
                 to all external addresses"
            )),
            "{text}"
        );
    }
}

#[test]
fn an_ingress_port_no_service_port_matches_exposes_nothing() {
    let h = history(&exposure_records());
    let extra = exposed_by("ClusterIP") + &INGRESS.replace("{name: http}", "{number: 81}");
    let (p, proof) = propose_checked(&h, &extra, Options::default());
    assert!(proof.internet_facing.is_empty());
    let fe = policy(&p, "shop/bulkhead-frontend");
    rule_with(fe, Direction::Ingress, &PeerSel::Addr(ip("203.0.113.10")));
}

#[test]
fn keep_observed_sources_keeps_only_the_addresses_seen() {
    let h = history(&exposure_records());
    let options = Options {
        infra: InfraOptions {
            keep_observed_sources: true,
            ..InfraOptions::default()
        },
        ..Options::default()
    };
    let (p, proof) = propose_checked(&h, &exposed_by("LoadBalancer"), options);
    let fe = policy(&p, "shop/bulkhead-frontend");
    let r = rule_with(fe, Direction::Ingress, &PeerSel::Addr(ip("203.0.113.10")));
    assert!(r.peers.iter().all(|x| !matches!(x.peer, PeerSel::Cidr(_))));
    let f = &proof.internet_facing[0];
    assert_eq!(f.ports, ["TCP/8080"]);
    assert!(!f.open_to_all);
    assert!(coverage::text(&proof, &p).contains("kept to the observed sources"));
}

#[test]
fn an_internet_facing_workload_with_nothing_observed_on_its_ports_is_named() {
    // frontend is behind a LoadBalancer, but only its egress was seen.
    let d = demo();
    let h = history(&conn(T0, &d.frontend, &d.api, 6, 8080));
    let (p, proof) = propose_checked(&h, &exposed_by("LoadBalancer"), Options::default());
    let f = &proof.internet_facing[0];
    assert!(f.ports.is_empty() && !f.open_to_all);
    assert!(coverage::text(&proof, &p).contains("none opened"));
}
