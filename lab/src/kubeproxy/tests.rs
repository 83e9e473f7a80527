use std::collections::BTreeSet;
use std::net::IpAddr;

use bulkhead_policy::model::{
    AddressClaim, ContainerPort, Labels, Model, Origin, Pod, Protocol, Service, ServicePort,
    ServiceType, TargetPort, TrafficPolicy, Workload,
};

use super::{NodeView, hash_prefix, iptables, nftables, plan};

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn pod(name: &str, app: &str, ips: &[&str]) -> Pod {
    Pod {
        namespace: "x".into(),
        name: name.into(),
        source: Workload {
            kind: "Pod".into(),
            name: name.into(),
        },
        owner: None,
        labels: labels(&[("app", app)]),
        ports: vec![ContainerPort {
            name: Some("http".into()),
            port: 80,
            protocol: Protocol::Tcp,
        }],
        ips: ips.iter().map(|a| a.parse().unwrap()).collect(),
        claim: AddressClaim::default(),
        node: None,
        off_network: None,
        origin: Origin::default(),
    }
}

fn service(name: &str, app: &str, ips: &[&str], port: ServicePort) -> Service {
    Service {
        namespace: "x".into(),
        name: name.into(),
        kind: ServiceType::ClusterIp,
        selector: Some(labels(&[("app", app)])),
        cluster_ips: ips.iter().map(|a| a.parse().unwrap()).collect(),
        headless: false,
        ports: vec![port],
        external_ips: Vec::new(),
        load_balancer_ips: Vec::new(),
        external_traffic_policy: TrafficPolicy::Cluster,
        internal_traffic_policy: TrafficPolicy::Cluster,
        origin: Origin::default(),
        ..Service::default()
    }
}

fn port(name: Option<&str>, protocol: Protocol, port: u16, node_port: Option<u16>) -> ServicePort {
    ServicePort {
        name: name.map(str::to_owned),
        protocol,
        port,
        target_port: TargetPort::Number(port),
        node_port,
    }
}

/// Pods a and b (app=web) on this node and c (app=web) elsewhere are
/// behind web (NodePort 30080, TCP 80); dns (UDP 53) selects nothing.
fn model() -> Model {
    let mut web = service(
        "web",
        "web",
        &["10.96.0.10", "fd00:10:96::10"],
        port(Some("http"), Protocol::Tcp, 80, Some(30080)),
    );
    web.kind = ServiceType::NodePort;
    let mut m = Model {
        pods: vec![
            pod("a", "web", &["10.244.0.2", "fd00:10:244::2"]),
            pod("b", "web", &["10.244.0.3"]),
            pod("c", "db", &["10.244.0.4"]),
        ],
        services: vec![
            web,
            service(
                "dns",
                "none",
                &["10.96.0.11"],
                port(None, Protocol::Udp, 53, None),
            ),
        ],
        ..Model::default()
    };
    m.normalize();
    m
}

fn node() -> NodeView {
    NodeView {
        name: "node-0".into(),
        addresses: vec![
            "10.244.0.1".parse().unwrap(),
            "fd00:10:244::1".parse().unwrap(),
        ],
        local_pods: BTreeSet::from(["x/a".to_owned(), "x/b".to_owned()]),
        pod_cidrs: vec![
            "10.244.0.0/16".parse().unwrap(),
            "fd00:10:244::/64".parse().unwrap(),
        ],
        conntrack_tcp_liberal: false,
    }
}

#[test]
fn chain_names_hash_as_kube_proxy_does() {
    // The names kube-proxy's own tests expect for ns1/svc1:p80 and its
    // endpoint 10.180.0.1:80.
    assert_eq!(
        iptables::port_chain("KUBE-SVC-", "ns1/svc1:p80", "tcp"),
        "KUBE-SVC-XPGD46QRK7WJZT7O"
    );
    assert_eq!(
        iptables::endpoint_chain("ns1/svc1:p80", "tcp", "10.180.0.1:80"),
        "KUBE-SEP-SXIVWICOYRO3J4NJ"
    );
    assert_eq!(hash_prefix("ns1/svc1/tcp/p80", 8), "ULMVA6XW");
    assert_eq!(
        hash_prefix("ns1/svc1/tcp/p80__10.180.0.1/80", 8),
        "5OJB2KTY"
    );
}

#[test]
fn probabilities_are_one_over_the_endpoints_left() {
    assert_eq!(iptables::probability(2), "0.5000000000");
    assert_eq!(iptables::probability(3), "0.3333333333");
}

#[test]
fn services_of_a_family_only_and_their_backends() {
    let m = model();
    let v4 = plan(&m, &node(), true);
    let names: Vec<_> = v4.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["x/dns", "x/web:http"]);
    assert!(!v4[0].has_endpoints);
    let web: Vec<IpAddr> = v4[1].cluster.iter().map(|b| b.addr).collect();
    assert_eq!(
        web,
        [
            "10.244.0.2".parse::<IpAddr>().unwrap(),
            "10.244.0.3".parse().unwrap()
        ]
    );
    // dns has no IPv6 ClusterIP; web's only IPv6 backend is a.
    let v6 = plan(&m, &node(), false);
    assert_eq!(v6.len(), 1);
    assert_eq!(v6[0].cluster.len(), 1);
}

const IPTABLES_V4: &str = "\
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-EXTERNAL-SERVICES - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
-A INPUT -m conntrack --ctstate NEW -j KUBE-PROXY-FIREWALL
-A INPUT -j KUBE-NODEPORTS
-A INPUT -m conntrack --ctstate NEW -j KUBE-EXTERNAL-SERVICES
-A FORWARD -m conntrack --ctstate NEW -j KUBE-PROXY-FIREWALL
-A FORWARD -j KUBE-FORWARD
-A FORWARD -m conntrack --ctstate NEW -j KUBE-SERVICES
-A FORWARD -m conntrack --ctstate NEW -j KUBE-EXTERNAL-SERVICES
-A OUTPUT -m conntrack --ctstate NEW -j KUBE-PROXY-FIREWALL
-A OUTPUT -m conntrack --ctstate NEW -j KUBE-SERVICES
-A KUBE-SERVICES -m udp -p udp -d 10.96.0.11 --dport 53 -j REJECT
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A KUBE-FORWARD -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-EXT-3ZJDDINSCDA35KZ2 - [0:0]
:KUBE-SVC-3ZJDDINSCDA35KZ2 - [0:0]
:KUBE-SEP-YQLG4T6T6H32A4TF - [0:0]
:KUBE-SEP-TN3GAZ2P3TJFGUX3 - [0:0]
-A PREROUTING -j KUBE-SERVICES
-A OUTPUT -j KUBE-SERVICES
-A POSTROUTING -j KUBE-POSTROUTING
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -j MASQUERADE --random-fully
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
-A KUBE-SERVICES -m tcp -p tcp -d 10.96.0.10 --dport 80 -j KUBE-SVC-3ZJDDINSCDA35KZ2
-A KUBE-NODEPORTS -m tcp -p tcp --dport 30080 -j KUBE-EXT-3ZJDDINSCDA35KZ2
-A KUBE-SVC-3ZJDDINSCDA35KZ2 -m tcp -p tcp -d 10.96.0.10 --dport 80 ! -s 10.244.0.0/16 -j KUBE-MARK-MASQ
-A KUBE-EXT-3ZJDDINSCDA35KZ2 -j KUBE-MARK-MASQ
-A KUBE-EXT-3ZJDDINSCDA35KZ2 -j KUBE-SVC-3ZJDDINSCDA35KZ2
-A KUBE-SVC-3ZJDDINSCDA35KZ2 -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-YQLG4T6T6H32A4TF
-A KUBE-SVC-3ZJDDINSCDA35KZ2 -j KUBE-SEP-TN3GAZ2P3TJFGUX3
-A KUBE-SEP-YQLG4T6T6H32A4TF -s 10.244.0.2 -j KUBE-MARK-MASQ
-A KUBE-SEP-YQLG4T6T6H32A4TF -m tcp -p tcp -j DNAT --to-destination 10.244.0.2:80
-A KUBE-SEP-TN3GAZ2P3TJFGUX3 -s 10.244.0.3 -j KUBE-MARK-MASQ
-A KUBE-SEP-TN3GAZ2P3TJFGUX3 -m tcp -p tcp -j DNAT --to-destination 10.244.0.3:80
-A KUBE-SERVICES -m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j KUBE-NODEPORTS
COMMIT
";

#[test]
fn iptables_input_for_a_small_model() {
    let got = iptables::restore_input(&model(), &node(), true);
    assert_eq!(got, IPTABLES_V4, "got:\n{got}");
    // With a liberal conntrack, kube-proxy drops no INVALID packet.
    let mut liberal = node();
    liberal.conntrack_tcp_liberal = true;
    let got = iptables::restore_input(&model(), &liberal, true);
    assert_eq!(
        got,
        IPTABLES_V4.replace(
            "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP\n",
            ""
        )
    );
}

const NFT_V6: &str = "\
add table ip6 kube-proxy
delete table ip6 kube-proxy
add table ip6 kube-proxy
add chain ip6 kube-proxy filter-prerouting { type filter hook prerouting priority -110 ; }
add chain ip6 kube-proxy filter-input { type filter hook input priority -110 ; }
add chain ip6 kube-proxy filter-forward { type filter hook forward priority -110 ; }
add chain ip6 kube-proxy filter-output { type filter hook output priority -110 ; }
add chain ip6 kube-proxy filter-output-post-dnat { type filter hook output priority -90 ; }
add chain ip6 kube-proxy nat-prerouting { type nat hook prerouting priority -100 ; }
add chain ip6 kube-proxy nat-output { type nat hook output priority -100 ; }
add chain ip6 kube-proxy nat-postrouting { type nat hook postrouting priority 100 ; }
add chain ip6 kube-proxy nodeport-endpoints-check
add rule ip6 kube-proxy filter-input ct state new jump nodeport-endpoints-check
add chain ip6 kube-proxy service-endpoints-check
add rule ip6 kube-proxy filter-input ct state new jump service-endpoints-check
add rule ip6 kube-proxy filter-forward ct state new jump service-endpoints-check
add rule ip6 kube-proxy filter-output ct state new jump service-endpoints-check
add chain ip6 kube-proxy firewall-check
add rule ip6 kube-proxy filter-prerouting ct state new jump firewall-check
add rule ip6 kube-proxy filter-output ct state new jump firewall-check
add chain ip6 kube-proxy services
add rule ip6 kube-proxy nat-output jump services
add rule ip6 kube-proxy nat-prerouting jump services
add chain ip6 kube-proxy masquerading
add rule ip6 kube-proxy nat-postrouting jump masquerading
add chain ip6 kube-proxy cluster-ips-check
add rule ip6 kube-proxy filter-forward ct state new jump cluster-ips-check
add rule ip6 kube-proxy filter-output-post-dnat ct state new jump cluster-ips-check
add chain ip6 kube-proxy mark-for-masquerade
add rule ip6 kube-proxy mark-for-masquerade mark set mark or 0x4000
add rule ip6 kube-proxy masquerading mark and 0x4000 == 0 return
add rule ip6 kube-proxy masquerading mark set mark xor 0x4000
add rule ip6 kube-proxy masquerading masquerade fully-random
add set ip6 kube-proxy cluster-ips { type ipv6_addr ; }
add rule ip6 kube-proxy cluster-ips-check ip6 daddr @cluster-ips reject
add set ip6 kube-proxy nodeport-ips { type ipv6_addr ; }
add element ip6 kube-proxy nodeport-ips { fd00:10:244::1 }
add map ip6 kube-proxy no-endpoint-services { type ipv6_addr . inet_proto . inet_service : verdict ; }
add map ip6 kube-proxy no-endpoint-nodeports { type inet_proto . inet_service : verdict ; }
add chain ip6 kube-proxy reject-chain
add rule ip6 kube-proxy reject-chain reject
add rule ip6 kube-proxy service-endpoints-check ip6 daddr . meta l4proto . th dport vmap @no-endpoint-services
add rule ip6 kube-proxy nodeport-endpoints-check ip6 daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports
add map ip6 kube-proxy firewall-ips { type ipv6_addr . inet_proto . inet_service : verdict ; }
add rule ip6 kube-proxy firewall-check ip6 daddr . meta l4proto . th dport vmap @firewall-ips
add map ip6 kube-proxy service-ips { type ipv6_addr . inet_proto . inet_service : verdict ; }
add map ip6 kube-proxy service-nodeports { type inet_proto . inet_service : verdict ; }
add rule ip6 kube-proxy services ip6 daddr . meta l4proto . th dport vmap @service-ips
add rule ip6 kube-proxy services ip6 daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports
add chain ip6 kube-proxy endpoint-S6QBJGLH-x/web/tcp/http__fd00.10.244..2/80
add chain ip6 kube-proxy service-5UYKJUR4-x/web/tcp/http
add chain ip6 kube-proxy external-5UYKJUR4-x/web/tcp/http
add element ip6 kube-proxy cluster-ips { fd00:10:96::10 }
add element ip6 kube-proxy service-ips { fd00:10:96::10 . tcp . 80 : goto service-5UYKJUR4-x/web/tcp/http }
add element ip6 kube-proxy service-nodeports { tcp . 30080 : goto external-5UYKJUR4-x/web/tcp/http }
add rule ip6 kube-proxy service-5UYKJUR4-x/web/tcp/http ip6 daddr fd00:10:96::10 tcp dport 80 ip6 saddr != fd00:10:244::/64 jump mark-for-masquerade
add rule ip6 kube-proxy external-5UYKJUR4-x/web/tcp/http jump mark-for-masquerade
add rule ip6 kube-proxy external-5UYKJUR4-x/web/tcp/http goto service-5UYKJUR4-x/web/tcp/http
add rule ip6 kube-proxy service-5UYKJUR4-x/web/tcp/http numgen random mod 1 vmap { 0 : goto endpoint-S6QBJGLH-x/web/tcp/http__fd00.10.244..2/80 }
add rule ip6 kube-proxy endpoint-S6QBJGLH-x/web/tcp/http__fd00.10.244..2/80 ip6 saddr fd00:10:244::2 jump mark-for-masquerade
add rule ip6 kube-proxy endpoint-S6QBJGLH-x/web/tcp/http__fd00.10.244..2/80 meta l4proto tcp dnat to [fd00:10:244::2]:80
";

#[test]
fn nftables_script_for_a_small_model() {
    let got = nftables::script(&model(), &node(), false);
    assert_eq!(got, NFT_V6, "got:\n{got}");
}

/// web with `externalTrafficPolicy: Local` on a node where only a runs.
fn local_model() -> (Model, NodeView) {
    let mut m = model();
    let web = m.services.iter_mut().find(|s| s.name == "web").unwrap();
    web.external_traffic_policy = TrafficPolicy::Local;
    let mut n = node();
    n.local_pods = BTreeSet::from(["x/a".to_owned()]);
    (m, n)
}

#[test]
fn external_local_short_circuits_pods_and_the_node_and_keeps_local_endpoints() {
    let (m, n) = local_model();
    let got = iptables::restore_input(&m, &n, true);
    let svc = iptables::port_chain("KUBE-SVC-", "x/web:http", "tcp");
    let svl = iptables::port_chain("KUBE-SVL-", "x/web:http", "tcp");
    let ext = iptables::port_chain("KUBE-EXT-", "x/web:http", "tcp");
    let sep_a = iptables::endpoint_chain("x/web:http", "tcp", "10.244.0.2:80");
    for want in [
        format!("-A {ext} -s 10.244.0.0/16 -j {svc}"),
        format!("-A {ext} -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ"),
        format!("-A {ext} -m addrtype --src-type LOCAL -j {svc}"),
        format!("-A {ext} -j {svl}"),
        format!("-A {svl} -j {sep_a}"),
        format!(":{svl} - [0:0]"),
    ] {
        assert!(got.lines().any(|l| l == want), "missing {want:?} in\n{got}");
    }
    // Not masqueraded: external clients keep their address.
    assert!(!got.contains(&format!("-A {ext} -j KUBE-MARK-MASQ")));
    let nft = nftables::script(&m, &n, true);
    assert!(nft.contains("ip saddr 10.244.0.0/16 goto service-5UYKJUR4-x/web/tcp/http"));
    assert!(nft.contains("fib saddr type local goto service-5UYKJUR4-x/web/tcp/http"));
    assert!(nft.contains("goto local-5UYKJUR4-x/web/tcp/http\n"));
}

#[test]
fn external_local_without_local_endpoints_drops_external_traffic() {
    let (m, mut n) = local_model();
    n.local_pods.clear();
    let got = iptables::restore_input(&m, &n, true);
    assert!(got.contains(
        "-A KUBE-EXTERNAL-SERVICES -m addrtype --dst-type LOCAL -m tcp -p tcp --dport 30080 -j DROP"
    ));
    let nft = nftables::script(&m, &n, true);
    assert!(nft.contains("add element ip kube-proxy no-endpoint-nodeports { tcp . 30080 : drop }"));
    // ClusterIP traffic still reaches every endpoint.
    assert!(nft.contains("10.96.0.10 . tcp . 80 : goto service-"));
}

#[test]
fn internal_local_uses_local_endpoints_for_the_cluster_ip() {
    let mut m = model();
    let web = m.services.iter_mut().find(|s| s.name == "web").unwrap();
    web.internal_traffic_policy = TrafficPolicy::Local;
    web.kind = ServiceType::ClusterIp;
    web.ports[0].node_port = None;
    let mut n = node();
    n.local_pods = BTreeSet::from(["x/b".to_owned()]);
    let got = iptables::restore_input(&m, &n, true);
    let svl = iptables::port_chain("KUBE-SVL-", "x/web:http", "tcp");
    let sep_b = iptables::endpoint_chain("x/web:http", "tcp", "10.244.0.3:80");
    assert!(got.contains(&format!("-d 10.96.0.10 --dport 80 -j {svl}\n")));
    assert!(got.contains(&format!("-A {svl} -j {sep_b}\n")));
    assert!(!got.contains("KUBE-SVC-"), "no cluster chain:\n{got}");
    n.local_pods.clear();
    let got = iptables::restore_input(&m, &n, true);
    assert!(got.contains("-A KUBE-SERVICES -m tcp -p tcp -d 10.96.0.10 --dport 80 -j DROP\n"));
}

#[test]
fn sctp_and_a_service_without_endpoints_in_nftables() {
    let mut m = model();
    m.services.push(service(
        "sig",
        "web",
        &["10.96.0.12"],
        port(Some("sig"), Protocol::Sctp, 9000, None),
    ));
    m.normalize();
    let nft = nftables::script(&m, &node(), true);
    assert!(nft.contains(
        "add element ip kube-proxy no-endpoint-services { 10.96.0.11 . udp . 53 : goto reject-chain }"
    ));
    assert!(nft.contains("10.96.0.12 . sctp . 9000 : goto service-"));
    assert!(nft.contains("numgen random mod 2 vmap { 0 : goto endpoint-"));
    assert!(nft.contains("meta l4proto sctp dnat to 10.244.0.3:9000"));
    let ipt = iptables::restore_input(&m, &node(), true);
    assert!(ipt.contains("-m sctp -p sctp -j DNAT --to-destination 10.244.0.2:9000"));
}

#[test]
fn service_routes_need_exactly_one_pod_and_the_same_port() {
    use crate::probe::service_routes;
    let mut m = model();
    // web selects a and b: no route. One that selects only c (db) on 80.
    m.services.push(service(
        "db",
        "db",
        &["10.96.0.13"],
        port(Some("http"), Protocol::Tcp, 80, None),
    ));
    // Port 8080 targeting 80: not the probed port as itself.
    let mut other = service(
        "db-alt",
        "db",
        &["10.96.0.14"],
        port(None, Protocol::Tcp, 8080, None),
    );
    other.ports[0].target_port = TargetPort::Number(80);
    m.services.push(other);
    m.normalize();
    let routes = service_routes(&m);
    assert_eq!(routes.len(), 1, "{routes:?}");
    assert_eq!(routes[0].pod, "x/c");
    assert_eq!(routes[0].service, "x/db");
    assert_eq!(
        routes[0].cluster_ips,
        ["10.96.0.13".parse::<IpAddr>().unwrap()]
    );
}
