//! Ports: numbers, names (resolved on the destination pod), endPort ranges,
//! protocol-only entries, and protocols that must not open one another.

use bulkhead_policy::model::Protocol;

use crate::harness::*;

/// "should enforce policy based on Ports": port 81 from namespace y only.
#[test]
fn numeric_port() {
    let c = load(&np(
        "x",
        "allow-ingress-on-port-81-ns-y",
        "
podSelector: {matchLabels: {pod: a}}
ingress:
- from:
  - namespaceSelector: {matchLabels: {ns: y}}
  ports:
  - port: 81
",
    ));
    let mut deny = Reachability::new(true);
    deny.expect_all_ingress("x/a", false);
    c.check_dual(&[TCP_80, UDP_81, SCTP_81], &deny);
    let mut r81 = deny.clone();
    r81.expect("y/*", "x/a", true);
    c.check_dual(&[TCP_81], &r81);
}

/// `from: []` (and absent `from`) means every source; only the ports limit.
#[test]
fn empty_from_means_all_sources() {
    let c = load(&np(
        "x",
        "allow-80-from-anywhere",
        "
podSelector: {matchLabels: {pod: a}}
ingress:
- from: []
  ports:
  - port: 80
",
    ));
    c.check(&[TCP_80], &Reachability::new(true));
    let mut deny = Reachability::new(true);
    deny.expect_all_ingress("x/a", false);
    c.check(&[TCP_81, UDP_80], &deny);
}

/// `to: []` means every destination.
#[test]
fn empty_to_means_all_destinations() {
    let c = load(&np(
        "x",
        "allow-80-to-anywhere",
        "
podSelector: {matchLabels: {pod: a}}
policyTypes: [Egress]
egress:
- to: []
  ports:
  - port: 80
",
    ));
    c.check(&[TCP_80], &Reachability::new(true));
    let mut deny = Reachability::new(true);
    deny.expect_all_egress("x/a", false);
    c.check(&[TCP_81, UDP_80], &deny);
}

/// "should allow ingress access on one named port".
#[test]
fn named_port_ingress() {
    let c = load(&np(
        "x",
        "allow-all-on-serve-81-tcp",
        "
podSelector: {}
ingress:
- ports:
  - port: serve-81-tcp
",
    ));
    c.check_dual(&[TCP_81], &Reachability::new(true));
    let mut deny = Reachability::new(true);
    deny.expect_all_ingress("x/*", false);
    c.check_dual(&[TCP_80, UDP_81, SCTP_81], &deny);
}

/// "should allow ingress access from namespace on one named port".
#[test]
fn named_port_ingress_from_namespace() {
    let c = load(&np(
        "x",
        "allow-ns-y-on-serve-80-tcp",
        "
podSelector: {}
ingress:
- from:
  - namespaceSelector: {matchLabels: {ns: y}}
  ports:
  - port: serve-80-tcp
",
    ));
    let mut r80 = Reachability::new(true);
    r80.expect("x/*", "x/*", false);
    r80.expect("z/*", "x/*", false);
    c.check(&[TCP_80], &r80);
    let mut deny = Reachability::new(true);
    deny.expect_all_ingress("x/*", false);
    c.check(&[TCP_81, UDP_80], &deny);
}

/// A named UDP port with its protocol: only UDP to that port opens.
#[test]
fn named_port_with_protocol() {
    let c = load(&np(
        "x",
        "allow-serve-81-udp",
        "
podSelector: {matchLabels: {pod: a}}
ingress:
- ports:
  - port: serve-81-udp
    protocol: UDP
",
    ));
    c.check(&[UDP_81], &Reachability::new(true));
    let mut deny = Reachability::new(true);
    deny.expect_all_ingress("x/a", false);
    c.check(&[UDP_80, TCP_81, SCTP_81], &deny);
}

/// "should allow egress access on one named port": resolved on each
/// destination.
#[test]
fn named_port_egress() {
    let c = load(&np(
        "x",
        "allow-egress-on-serve-80-tcp",
        "
podSelector: {}
policyTypes: [Egress]
egress:
- ports:
  - port: serve-80-tcp
",
    ));
    c.check_dual(&[TCP_80], &Reachability::new(true));
    let mut deny = Reachability::new(true);
    deny.expect_all_egress("x/*", false);
    c.check_dual(&[TCP_81, UDP_80], &deny);
}

/// A named egress port towards a selected peer resolves on that peer's pods.
#[test]
fn named_port_egress_to_peer() {
    let c = load(&np(
        "x",
        "allow-egress-to-y-on-serve-81-udp",
        "
podSelector: {matchLabels: {pod: a}}
policyTypes: [Egress]
egress:
- to:
  - namespaceSelector: {matchLabels: {ns: y}}
  ports:
  - port: serve-81-udp
    protocol: UDP
",
    ));
    let mut deny = Reachability::new(true);
    deny.expect_all_egress("x/a", false);
    c.check(&[UDP_80, TCP_81, SCTP_81, TCP_80], &deny);
    let mut r = deny.clone();
    r.expect("x/a", "y/*", true);
    c.check(&[UDP_81], &r);
}

/// A named port that only some destination pods declare, with different
/// numbers: `web` is 8080 on y/b and 9090 on z/c. Egress from x/a on `web`
/// reaches y/b on 8080 and z/c on 9090 and nothing else; the source's own
/// `web` (7070 on x/a) plays no part.
#[test]
fn named_port_only_some_destinations_have_egress() {
    let setup = Setup::default()
        .port("x/a", "web", 7070, Protocol::Tcp)
        .port("y/b", "web", 8080, Protocol::Tcp)
        .port("z/c", "web", 9090, Protocol::Tcp);
    let c = setup.load(&np(
        "x",
        "allow-egress-web",
        "
podSelector: {matchLabels: {pod: a}}
policyTypes: [Egress]
egress:
- ports:
  - port: web
",
    ));
    let mut deny = Reachability::new(true);
    deny.expect_all_egress("x/a", false);
    c.check_dual(&[TCP_80, TCP_81, UDP_80], &deny);
    let mut r8080 = deny.clone();
    r8080.expect("x/a", "y/b", true);
    c.check_dual(&[Probe::new(Protocol::Tcp, 8080)], &r8080);
    let mut r9090 = deny.clone();
    r9090.expect("x/a", "z/c", true);
    c.check_dual(&[Probe::new(Protocol::Tcp, 9090)], &r9090);
    c.check(
        &[
            Probe::new(Protocol::Udp, 8080),
            Probe::new(Protocol::Tcp, 7070),
        ],
        &deny,
    );
}

/// The same on ingress: a policy for every pod of y allowing `web` opens
/// y/b on 8080; y/a and y/c (no such port) are isolated with nothing open.
#[test]
fn named_port_only_some_destinations_have_ingress() {
    let setup = Setup::default()
        .port("y/b", "web", 8080, Protocol::Tcp)
        .port("y/c", "web", 9090, Protocol::Tcp);
    let c = setup.load(&np(
        "y",
        "allow-web",
        "
podSelector: {}
ingress:
- ports:
  - port: web
",
    ));
    let mut deny = Reachability::new(true);
    deny.expect_all_ingress("y/*", false);
    c.check_dual(&[TCP_80, TCP_81, UDP_80], &deny);
    let mut r8080 = deny.clone();
    r8080.expect_all_ingress("y/b", true);
    c.check_dual(&[Probe::new(Protocol::Tcp, 8080)], &r8080);
    let mut r9090 = deny.clone();
    r9090.expect_all_ingress("y/c", true);
    c.check_dual(&[Probe::new(Protocol::Tcp, 9090)], &r9090);
}

/// "should enforce policy to allow ingress traffic ... with endPort": port
/// 80 to endPort 81 from namespace y.
#[test]
fn end_port_range_ingress() {
    let c = load(&np(
        "x",
        "allow-80-81-from-y",
        "
podSelector: {matchLabels: {pod: a}}
ingress:
- from:
  - namespaceSelector: {matchLabels: {ns: y}}
  ports:
  - port: 80
    endPort: 81
",
    ));
    let mut r = Reachability::new(true);
    r.expect_all_ingress("x/a", false);
    r.expect("y/*", "x/a", true);
    c.check_dual(&[TCP_80, TCP_81], &r);
    let mut deny = Reachability::new(true);
    deny.expect_all_ingress("x/a", false);
    c.check_dual(&[UDP_80, SCTP_81, Probe::new(Protocol::Tcp, 82)], &deny);
}

/// A range that starts above 80: 81..=90 opens 81 and 90, not 80 nor 91.
#[test]
fn end_port_range_bounds() {
    let c = load(&np(
        "x",
        "allow-81-90",
        "
podSelector: {}
ingress:
- ports:
  - port: 81
    endPort: 90
",
    ));
    let inside = [
        TCP_81,
        Probe::new(Protocol::Tcp, 85),
        Probe::new(Protocol::Tcp, 90),
    ];
    c.check(&inside, &Reachability::new(true));
    let mut deny = Reachability::new(true);
    deny.expect_all_ingress("x/*", false);
    c.check(&[TCP_80, Probe::new(Protocol::Tcp, 91), UDP_81], &deny);
}

/// endPort on egress, with UDP.
#[test]
fn end_port_range_egress() {
    let c = load(&np(
        "x",
        "allow-egress-udp-80-81",
        "
podSelector: {matchLabels: {pod: a}}
policyTypes: [Egress]
egress:
- to:
  - namespaceSelector: {matchLabels: {ns: z}}
  ports:
  - protocol: UDP
    port: 80
    endPort: 81
",
    ));
    let mut deny = Reachability::new(true);
    deny.expect_all_egress("x/a", false);
    c.check(&[TCP_80, TCP_81, SCTP_80], &deny);
    let mut r = deny.clone();
    r.expect("x/a", "z/*", true);
    c.check(&[UDP_80, UDP_81], &r);
}

/// "should enforce ingress policy allowing any port traffic to a server on a
/// specific protocol": `ports: [{protocol: TCP}]`.
#[test]
fn protocol_only_tcp() {
    let c = load(&np(
        "x",
        "allow-ingress-by-proto",
        "
podSelector: {matchLabels: {pod: a}}
ingress:
- ports:
  - protocol: TCP
",
    ));
    c.check(&[TCP_80, TCP_81], &Reachability::new(true));
    let mut deny = Reachability::new(true);
    deny.expect_all_ingress("x/a", false);
    c.check(&[UDP_80, UDP_81, SCTP_80, SCTP_81], &deny);
}

/// `ports: [{protocol: UDP}]`: every UDP port, nothing else.
#[test]
fn protocol_only_udp() {
    let c = load(&np(
        "x",
        "allow-udp",
        "
podSelector: {}
ingress:
- ports:
  - protocol: UDP
",
    ));
    c.check_dual(
        &[UDP_80, UDP_81, Probe::new(Protocol::Udp, 53)],
        &Reachability::new(true),
    );
    let mut deny = Reachability::new(true);
    deny.expect_all_ingress("x/*", false);
    c.check_dual(&[TCP_80, TCP_81, SCTP_80, SCTP_81], &deny);
}

/// "should not allow access by TCP when a policy specifies only UDP".
#[test]
fn udp_rule_does_not_open_tcp() {
    let c = load(&np(
        "x",
        "allow-only-udp-ingress-on-port-81",
        "
podSelector: {matchLabels: {pod: a}}
ingress:
- ports:
  - port: 81
    protocol: UDP
",
    ));
    let mut deny = Reachability::new(true);
    deny.expect_all_ingress("x/a", false);
    c.check(&[TCP_81, TCP_80, UDP_80, SCTP_81], &deny);
    c.check(&[UDP_81], &Reachability::new(true));
}

/// "should not mistakenly treat 'protocol: SCTP' as 'protocol: TCP', even if
/// the plugin doesn't support SCTP": a namespace default deny plus SCTP 80
/// into x/a.
#[test]
fn sctp_rule_does_not_open_tcp() {
    let c = load(
        &[
            np("x", "deny-ingress", "podSelector: {}"),
            np(
                "x",
                "allow-only-sctp-ingress-on-port-80",
                "
podSelector: {matchLabels: {pod: a}}
ingress:
- ports:
  - port: 80
    protocol: SCTP
",
            ),
        ]
        .concat(),
    );
    let mut deny = Reachability::new(true);
    deny.expect_all_ingress("x/*", false);
    c.check(&[TCP_81, TCP_80, UDP_80, SCTP_81], &deny);
    let mut sctp = deny.clone();
    sctp.expect_all_ingress("x/a", true);
    c.check(&[SCTP_80], &sctp);
}

/// "should properly isolate pods that are selected by a policy allowing
/// SCTP, even if the plugin doesn't support SCTP".
#[test]
fn sctp_only_policy_isolates_tcp() {
    let c = load(&np(
        "x",
        "allow-only-sctp-ingress-on-port-80",
        "
podSelector: {matchLabels: {pod: a}}
ingress:
- ports:
  - port: 80
    protocol: SCTP
",
    ));
    let mut deny = Reachability::new(true);
    deny.expect_all_ingress("x/a", false);
    c.check_dual(&[TCP_80, TCP_81, UDP_80], &deny);
    c.check_dual(&[SCTP_80], &Reachability::new(true));
}

/// Several `ports` entries in one rule are ORed; combined with a peer they
/// are ANDed with it.
#[test]
fn several_ports_entries() {
    let c = load(&np(
        "x",
        "allow-tcp-80-udp-81-from-z",
        "
podSelector: {matchLabels: {pod: a}}
ingress:
- from:
  - namespaceSelector: {matchLabels: {ns: z}}
  ports:
  - port: 80
  - port: 81
    protocol: UDP
",
    ));
    let mut from_z = Reachability::new(true);
    from_z.expect_all_ingress("x/a", false);
    from_z.expect("z/*", "x/a", true);
    c.check(&[TCP_80, UDP_81], &from_z);
    let mut deny = Reachability::new(true);
    deny.expect_all_ingress("x/a", false);
    c.check(&[TCP_81, UDP_80, SCTP_80], &deny);
}

/// "should enforce updated policy": an allow-on-81 policy replaced by an
/// allow-on-80 one of the same name.
#[test]
fn updated_policy() {
    let version = |port: u16| {
        np(
            "x",
            "allow-all-mutate-to-deny-all",
            &format!(
                "
podSelector: {{}}
ingress:
- ports:
  - port: {port}
"
            ),
        )
    };
    let mut deny = Reachability::new(true);
    deny.expect_all_ingress("x/*", false);
    let c = load(&version(81));
    c.check(&[TCP_81], &Reachability::new(true));
    c.check(&[TCP_80], &deny);
    let c = load(&version(80));
    c.check(&[TCP_80], &Reachability::new(true));
    c.check(&[TCP_81], &deny);
}
