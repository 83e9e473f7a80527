//! Service traffic is judged on the backend it reaches (issue 15), through
//! real veths, a real agent and the kernel's own NAT: the node namespace
//! gets DNAT rules of the shape kube-proxy's iptables mode writes
//! (`KUBE-SERVICES` → `KUBE-SVC-*` with `statistic --mode random` →
//! `KUBE-SEP-*` with the hairpin masquerade mark and DNAT; `KUBE-POSTROUTING`
//! masquerading marked packets), written by the test. The lab's full
//! kube-proxy rules (iptables and nftables modes) are tested with the lab.
//!
//! Client `a` connects to ClusterIPs whose backends are `b`, `c` or both:
//! its egress policy decides by the backend, never by the ClusterIP.

mod agent_support;

use std::net::Ipv4Addr;
use std::time::Duration;

use agent_support::{Conn, Node, PodNs, privileged, serial, tcp_ok};

/// ClusterIP of the Service selecting `b`.
const SVC_B: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
/// ClusterIP of the Service selecting `c`.
const SVC_C: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 11);
/// ClusterIP of the Service selecting `b` and `c`.
const SVC_BC: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 12);
/// The node's own address, the source hairpin traffic is masqueraded to.
const NODE_IP: &str = "10.77.255.1";

/// A Service `name` with ClusterIP `ip`, port 80 (TCP and UDP), selecting
/// the pods with label `selector` (`key: value`).
fn service(name: &str, ip: Ipv4Addr, selector: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: x}}\n\
         spec:\n  clusterIP: {ip}\n  selector: {{{selector}}}\n  ports:\n  \
         - {{name: tcp, protocol: TCP, port: 80, targetPort: 80}}\n  \
         - {{name: udp, protocol: UDP, port: 80, targetPort: 80}}\n"
    )
}

/// The pods with a `role` label each: `b` is db-1, `c` db-2 (both
/// `tier: db`), `a` and `d` clients.
fn pods_yaml(node: &Node) -> String {
    node.pods
        .iter()
        .map(|p| {
            let role = match p.name.as_str() {
                "b" => "db-1",
                "c" => "db-2",
                _ => "client",
            };
            format!(
                "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {n}, namespace: x, labels: {{app: {n}, role: {role}, {both}}}}}\n\
                 spec: {{containers: [{{name: c, image: i, ports: [{{containerPort: 80}}]}}]}}\n\
                 status: {{podIP: {ip}}}\n",
                n = p.name,
                ip = p.ip,
                both = if role.starts_with("db") { "tier: db" } else { "tier: client" },
            )
        })
        .collect()
}

/// kube-proxy's iptables shape for Services `(cluster ip, backends)`, port
/// 80 TCP: one KUBE-SVC chain per Service picking a KUBE-SEP chain at
/// random, each marking hairpin traffic for masquerade and DNATing.
fn kube_proxy_rules(services: &[(Ipv4Addr, Vec<Ipv4Addr>)]) -> String {
    let mut chains = String::from(
        "*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n:KUBE-POSTROUTING - [0:0]\n",
    );
    let mut rules = String::from(
        "-A PREROUTING -j KUBE-SERVICES\n-A OUTPUT -j KUBE-SERVICES\n-A POSTROUTING -j KUBE-POSTROUTING\n\
         -A KUBE-MARK-MASQ -j MARK --or-mark 0x4000\n\
         -A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n\
         -A KUBE-POSTROUTING -j MARK --xor-mark 0x4000\n",
    );
    rules.push_str(&format!(
        "-A KUBE-POSTROUTING -j SNAT --to-source {NODE_IP}\n"
    ));
    for (s, (ip, backends)) in services.iter().enumerate() {
        let svc = format!("KUBE-SVC-{s}");
        chains.push_str(&format!(":{svc} - [0:0]\n"));
        rules.push_str(&format!(
            "-A KUBE-SERVICES -d {ip}/32 -p tcp -m tcp --dport 80 -j {svc}\n"
        ));
        let n = backends.len();
        for (i, b) in backends.iter().enumerate() {
            let sep = format!("KUBE-SEP-{s}-{i}");
            chains.push_str(&format!(":{sep} - [0:0]\n"));
            if i + 1 < n {
                let p = 1.0 / (n - i) as f64;
                rules.push_str(&format!(
                    "-A {svc} -m statistic --mode random --probability {p:.11} -j {sep}\n"
                ));
            } else {
                rules.push_str(&format!("-A {svc} -j {sep}\n"));
            }
            rules.push_str(&format!(
                "-A {sep} -s {b}/32 -j KUBE-MARK-MASQ\n-A {sep} -p tcp -m tcp -j DNAT --to-destination {b}:80\n"
            ));
        }
    }
    format!("{chains}{rules}COMMIT\n")
}

/// Egress of `a` allowed only to pods with `role: ROLE` on TCP 80.
fn a_egress_to(role: &str) -> String {
    egress_to("a", role)
}

/// Egress of `pod` allowed only to pods with `role: ROLE` on TCP 80.
fn egress_to(pod: &str, role: &str) -> String {
    format!(
        "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {pod}-egress, namespace: x}}\n\
         spec:\n  podSelector: {{matchLabels: {{app: {pod}}}}}\n  policyTypes: [Egress]\n  egress:\n  \
         - to: [{{podSelector: {{matchLabels: {{role: {role}}}}}}}]\n    ports: [{{protocol: TCP, port: 80}}]\n"
    )
}

/// Egress of `a` allowed to every IPv4 address but `except` (an ipBlock).
fn a_egress_all_but(except: Ipv4Addr) -> String {
    format!(
        "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: a-egress, namespace: x}}\n\
         spec:\n  podSelector: {{matchLabels: {{app: a}}}}\n  policyTypes: [Egress]\n  egress:\n  \
         - to: [{{ipBlock: {{cidr: 0.0.0.0/0, except: [{except}/32]}}}}]\n"
    )
}

/// A node with pods a, b, c, the three Services and kube-proxy's rules,
/// the agent running with `policy`.
fn node_with_services(policy: &str) -> Node {
    let mut node = Node::new(&["a", "b", "c"]);
    let (b, c) = (node.pod("b").ip, node.pod("c").ip);
    node.write("pods.yaml", &pods_yaml(&node));
    let services = [
        service("svc-b", SVC_B, "role: db-1"),
        service("svc-c", SVC_C, "role: db-2"),
        service("svc-bc", SVC_BC, "tier: db"),
    ];
    node.write("services.yaml", &services.concat());
    node.write("policy.yaml", policy);
    // The node's own address on `lo`, and a route for the Service range
    // (to an empty bridge that drops what reaches it), as a real node's
    // default route has: proxy ARP answers a pod's ARP for a ClusterIP
    // only when the node routes it elsewhere.
    let nl = node.node_ns().netlink().expect("netlink in the node");
    nl.add_address("lo", format!("{NODE_IP}/32").parse().expect("a /32"))
        .expect("the node's own address");
    nl.add_bridge("svc0").expect("a sink for the Service range");
    nl.set_up("svc0").expect("sink up");
    nl.add_route(&bulkhead_netkit::Route::to("10.96.0.0/16".parse().expect("a CIDR")).dev("svc0"))
        .expect("a route for the Service range");
    let rules = kube_proxy_rules(&[(SVC_B, vec![b]), (SVC_C, vec![c]), (SVC_BC, vec![b, c])]);
    let path = node.dir.join("rules");
    std::fs::write(&path, rules).unwrap();
    node.in_node(&["iptables-restore", "--noflush", &path.display().to_string()]);
    node.start_agent(&[]);
    node
}

/// Whether a connection completes: 5 s for an answer (a loaded machine is
/// slow, not a reason to fail), so a `false` is a drop.
fn tcp(from: &PodNs, to: Ipv4Addr) -> bool {
    tcp_ok(from, to, Duration::from_secs(5))
}

/// As [`tcp`], with a short timeout for the many tries of the two-backend
/// split, whose assertion needs only some of each outcome.
fn tcp_quick(from: &PodNs, to: Ipv4Addr) -> bool {
    tcp_ok(from, to, Duration::from_millis(500))
}

#[test]
fn egress_through_a_cluster_ip_is_judged_on_the_backend_it_reaches() {
    if !privileged() {
        return;
    }
    let _serial = serial();
    let mut node = node_with_services(&a_egress_to("db-1"));
    let (a, b, c) = (
        node.pod("a").clone(),
        node.pod("b").clone(),
        node.pod("c").clone(),
    );
    // Directly and through the ClusterIP, the same truth.
    assert!(tcp(&a, b.ip), "a → b allowed by its egress");
    assert!(!tcp(&a, c.ip), "a → c denied by its egress");
    let ok = tcp(&a, SVC_B);
    if !ok {
        eprintln!("status: {}", node.status());
        eprintln!("{}", node.in_node(&["iptables-save", "-c", "-t", "nat"]));
    }
    assert!(ok, "a → svc-b lands on b: allowed");
    assert!(!tcp(&a, SVC_C), "a → svc-c lands on c: denied");
    // Not isolated: every Service works.
    assert!(tcp(&b, SVC_C), "b → svc-c");

    // Two backends, one allowed: connections landing on b pass, those
    // landing on c are dropped (bounded: 40 tries).
    let (mut passed, mut dropped) = (0, 0);
    for _ in 0..40 {
        if tcp_quick(&a, SVC_BC) {
            passed += 1;
        } else {
            dropped += 1;
        }
    }
    eprintln!("a → svc-bc: {passed} passed, {dropped} dropped");
    assert!(
        passed > 0 && dropped > 0,
        "random backends: {passed} passed, {dropped} dropped"
    );

    // A policy change re-judges an established Service connection at
    // once: on the backend, in either direction.
    let conn = Conn::open(&a, SVC_B);
    assert!(conn.ping(), "established through the ClusterIP");
    node.write("policy.yaml", &a_egress_to("db-2"));
    node.wait_synced(Duration::from_secs(5));
    assert!(!conn.ping(), "revoked on its next packet");
    assert!(tcp(&a, SVC_C), "now svc-c (lands on c) is allowed");
    assert!(!tcp(&a, SVC_B), "and svc-b (lands on b) is not");
    drop(conn);
    let status = node.status();
    let drops = status["drops"].as_array().unwrap();
    for reason in ["service_unjudged", "tail_call_failed"] {
        let n = drops
            .iter()
            .find(|d| d[0] == reason)
            .and_then(|d| d[1].as_u64())
            .unwrap_or(0);
        assert_eq!(n, 0, "no packet dropped as {reason}");
    }
}

#[test]
fn an_ip_block_that_excepts_a_pod_does_not_let_its_service_address_through() {
    if !privileged() {
        return;
    }
    let _serial = serial();
    let node = node_with_services(&a_egress_all_but(Ipv4Addr::new(10, 77, 0, 4)));
    let (a, b, c) = (
        node.pod("a").clone(),
        node.pod("b").clone(),
        node.pod("c").clone(),
    );
    assert_eq!(c.ip, Ipv4Addr::new(10, 77, 0, 4));
    assert!(tcp(&a, b.ip) && !tcp(&a, c.ip), "the ipBlock as written");
    assert!(
        !tcp(&a, SVC_C),
        "the ClusterIP is inside the ipBlock, but the connection lands on the excepted pod"
    );
    assert!(tcp(&a, SVC_B), "svc-b lands on b: allowed");
}

#[test]
fn a_pod_reaching_itself_through_its_service_is_judged_on_itself() {
    if !privileged() {
        return;
    }
    let _serial = serial();
    // b's egress allows only role db-2 (c): b → svc-b lands on b itself.
    let mut node = node_with_services(&egress_to("b", "db-2"));
    let b = node.pod("b").clone();
    assert!(tcp(&b, SVC_C), "b → svc-c (lands on c): allowed");
    assert!(
        !tcp(&b, SVC_B),
        "b → svc-b hairpins to b: its egress denies b"
    );
    // Allowing role db-1 (b itself) opens the hairpin (b's ingress is not
    // isolated).
    node.write("policy.yaml", &egress_to("b", "db-1"));
    node.wait_synced(Duration::from_secs(5));
    assert!(tcp(&b, SVC_B), "b → svc-b → b allowed");
}

/// Ingress of `pod` allowed only from pods with `role: ROLE` on TCP 80.
fn ingress_from(pod: &str, role: &str) -> String {
    format!(
        "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {pod}-ingress, namespace: x}}\n\
         spec:\n  podSelector: {{matchLabels: {{app: {pod}}}}}\n  policyTypes: [Ingress]\n  ingress:\n  \
         - from: [{{podSelector: {{matchLabels: {{role: {role}}}}}}}]\n    ports: [{{protocol: TCP, port: 80}}]\n"
    )
}

#[test]
fn a_masqueraded_hairpin_is_judged_on_its_client_at_ingress() {
    if !privileged() {
        return;
    }
    let _serial = serial();
    // b admits only clients (a): b → svc-b lands on b itself, masqueraded
    // to the node's address, and must be judged on b, not on the node.
    let mut node = node_with_services(&ingress_from("b", "client"));
    let (a, b) = (node.pod("a").clone(), node.pod("b").clone());
    assert!(tcp(&a, SVC_B), "a → svc-b: a client, admitted");
    assert!(
        !tcp(&b, SVC_B),
        "b → svc-b → b: masqueraded to the node, judged on b, refused"
    );
    let masq = node.in_node(&["iptables-save", "-c", "-t", "nat"]);
    assert!(
        masq.lines()
            .any(|l| l.contains("SNAT") && !l.starts_with("[0:")),
        "the hairpin went through the masquerade rule:\n{masq}"
    );
    // The node's own connections are still let in.
    let from_node = PodNs {
        netns: node.node.clone(),
        ..b.clone()
    };
    assert!(tcp(&from_node, b.ip), "the node → b: always admitted");

    // Admitting role db-1 (b itself) opens the hairpin; revoking it cuts
    // the established connection on its next packet.
    node.write("policy.yaml", &ingress_from("b", "db-1"));
    node.wait_synced(Duration::from_secs(5));
    assert!(!tcp(&a, SVC_B), "a is no longer admitted");
    let conn = Conn::open(&b, SVC_B);
    assert!(conn.ping(), "b → svc-b → b admitted as b");
    node.write("policy.yaml", &ingress_from("b", "client"));
    node.wait_synced(Duration::from_secs(5));
    assert!(!conn.ping(), "revoked on its next packet");
    drop(conn);
    assert!(!tcp(&b, SVC_B), "and refused again");
}
