//! ipBlock peers: pod addresses inside blocks, `except`, and addresses
//! outside the cluster.

use std::net::IpAddr;

use bulkhead_policy::model::Protocol;

use crate::harness::*;

fn addr(s: &str) -> IpAddr {
    s.parse().expect("address")
}

/// "should allow egress access to server in CIDR block": x/a may send only to
/// y/b's address (/32 and /128).
#[test]
fn egress_to_pod_address_block() {
    let c = load_with(|m| {
        np(
            "x",
            "allow-client-a-via-cidr-egress-rule",
            &format!(
                "
podSelector: {{matchLabels: {{pod: a}}}}
policyTypes: [Egress]
egress:
- to:
  - ipBlock: {{cidr: '{}'}}
  - ipBlock: {{cidr: '{}'}}
",
                host_cidr(m, "y/b", Family::V4),
                host_cidr(m, "y/b", Family::V6)
            ),
        )
    });
    let mut r = Reachability::new(true);
    r.expect_all_egress("x/a", false);
    r.expect("x/a", "y/b", true);
    c.check_dual(&ALL_PROBES, &r);
}

/// Only an IPv4 block: IPv6 traffic to the same pod stays denied.
#[test]
fn ip_block_is_per_family() {
    let c = load_with(|m| {
        np(
            "x",
            "allow-v4-of-y-b",
            &format!(
                "
podSelector: {{matchLabels: {{pod: a}}}}
policyTypes: [Egress]
egress:
- to:
  - ipBlock: {{cidr: '{}'}}
",
                host_cidr(m, "y/b", Family::V4)
            ),
        )
    });
    let mut deny = Reachability::new(true);
    deny.expect_all_egress("x/a", false);
    let mut v4 = deny.clone();
    v4.expect("x/a", "y/b", true);
    c.check_families(&[Family::V4], &ALL_PROBES, &v4);
    c.check_families(&[Family::V6], &ALL_PROBES, &deny);
}

/// "should enforce except clause while egress access to server in CIDR
/// block": a wide block (x/b's address /4, and its /64) except x/b itself.
#[test]
fn egress_except_clause() {
    let c = load_with(|m| {
        let v4 = pod_ip(m, "x/b", Family::V4);
        let v6 = pod_ip(m, "x/b", Family::V6);
        np(
            "x",
            "deny-client-a-via-except-cidr-egress-rule",
            &format!(
                "
podSelector: {{matchLabels: {{pod: a}}}}
policyTypes: [Egress]
egress:
- to:
  - ipBlock:
      cidr: '{}'
      except: ['{}']
  - ipBlock:
      cidr: '{}'
      except: ['{}']
",
                prefix_of(v4, 4),
                host_cidr(m, "x/b", Family::V4),
                prefix_of(v6, 64),
                host_cidr(m, "x/b", Family::V6)
            ),
        )
    });
    let mut r = Reachability::new(true);
    r.expect("x/a", "x/b", false);
    c.check_dual(&ALL_PROBES, &r);
}

/// "should ensure an IP overlapping both IPBlock.CIDR and IPBlock.Except is
/// allowed": the except above plus a second policy allowing x/b's /32.
#[test]
fn address_in_except_allowed_by_another_policy() {
    let c = load_with(|m| {
        let v4 = pod_ip(m, "x/b", Family::V4);
        [
            np(
                "x",
                "deny-client-a-via-except-cidr-egress-rule",
                &format!(
                    "
podSelector: {{matchLabels: {{pod: a}}}}
policyTypes: [Egress]
egress:
- to:
  - ipBlock:
      cidr: '{}'
      except: ['{}']
",
                    prefix_of(v4, 4),
                    host_cidr(m, "x/b", Family::V4)
                ),
            ),
            np(
                "x",
                "allow-client-a-via-cidr-egress-rule",
                &format!(
                    "
podSelector: {{matchLabels: {{pod: a}}}}
policyTypes: [Egress]
egress:
- to:
  - ipBlock: {{cidr: '{}'}}
",
                    host_cidr(m, "x/b", Family::V4)
                ),
            ),
        ]
        .concat()
    });
    c.check(&ALL_PROBES, &Reachability::new(true));
}

/// Ingress from an ipBlock that is pod x/b's address: only x/b reaches x/a.
#[test]
fn ingress_from_pod_address_block() {
    let c = load_with(|m| {
        np(
            "x",
            "allow-from-x-b-address",
            &format!(
                "
podSelector: {{matchLabels: {{pod: a}}}}
ingress:
- from:
  - ipBlock: {{cidr: '{}'}}
  - ipBlock: {{cidr: '{}'}}
",
                host_cidr(m, "x/b", Family::V4),
                host_cidr(m, "x/b", Family::V6)
            ),
        )
    });
    let mut r = Reachability::new(true);
    r.expect_all_ingress("x/a", false);
    r.expect("x/b", "x/a", true);
    c.check_dual(&ALL_PROBES, &r);
}

/// Ingress from a CIDR covering every pod address except y/c's: everyone but
/// y/c reaches x/a.
#[test]
fn ingress_from_covering_block_except_one_pod() {
    let c = load_with(|m| {
        np(
            "x",
            "allow-all-pods-but-y-c",
            &format!(
                "
podSelector: {{matchLabels: {{pod: a}}}}
ingress:
- from:
  - ipBlock:
      cidr: '{}'
      except: ['{}']
  - ipBlock:
      cidr: '{}'
      except: ['{}']
",
                covering_cidr(m, Family::V4),
                host_cidr(m, "y/c", Family::V4),
                covering_cidr(m, Family::V6),
                host_cidr(m, "y/c", Family::V6)
            ),
        )
    });
    let mut r = Reachability::new(true);
    r.expect("y/c", "x/a", false);
    c.check_dual(&ALL_PROBES, &r);
}

/// An ipBlock peer ORed with a pod selector peer in one rule.
#[test]
fn ip_block_or_pod_selector() {
    let c = load_with(|m| {
        np(
            "x",
            "allow-z-a-address-or-pod-c",
            &format!(
                "
podSelector: {{matchLabels: {{pod: a}}}}
ingress:
- from:
  - ipBlock: {{cidr: '{}'}}
  - podSelector: {{matchLabels: {{pod: c}}}}
  ports:
  - port: 80
",
                host_cidr(m, "z/a", Family::V4)
            ),
        )
    });
    let mut deny = Reachability::new(true);
    deny.expect_all_ingress("x/a", false);
    let mut r = deny.clone();
    r.expect("z/a", "x/a", true);
    r.expect("x/c", "x/a", true);
    c.check(&[TCP_80], &r);
    c.check(&[TCP_81, UDP_80], &deny);
    // Over IPv6 z/a's address is not in the block; x/c still matches.
    let mut v6 = deny.clone();
    v6.expect("x/c", "x/a", true);
    c.check_families(&[Family::V6], &[TCP_80], &v6);
}

/// `0.0.0.0/0` is every IPv4 address, pods included, and no IPv6 address.
#[test]
fn ipv4_everything_block() {
    let c = load(&np(
        "x",
        "allow-all-v4",
        "
podSelector: {matchLabels: {pod: a}}
ingress:
- from:
  - ipBlock: {cidr: 0.0.0.0/0}
",
    ));
    c.check_families(&[Family::V4], &ALL_PROBES, &Reachability::new(true));
    let mut deny = Reachability::new(true);
    deny.expect_all_ingress("x/a", false);
    c.check_families(&[Family::V6], &ALL_PROBES, &deny);
    c.assert_flow(addr("8.8.8.8"), c.ip("x/a", Family::V4), TCP_80, true);
    c.assert_flow(addr("2001:db8::1"), c.ip("x/a", Family::V6), TCP_80, false);
}

/// Egress to external addresses through an ipBlock with except: probed
/// against addresses that are not pods, both families.
#[test]
fn egress_to_external_block() {
    let c = load(&np(
        "x",
        "allow-egress-to-documentation-nets",
        "
podSelector: {matchLabels: {pod: a}}
policyTypes: [Egress]
egress:
- to:
  - ipBlock:
      cidr: 192.0.2.0/24
      except: [192.0.2.128/25]
  - ipBlock:
      cidr: 2001:db8::/32
      except: ['2001:db8:ffff::/48']
  ports:
  - port: 443
",
    ));
    let https = Probe::new(Protocol::Tcp, 443);
    let (a4, a6) = (c.ip("x/a", Family::V4), c.ip("x/a", Family::V6));
    let (b4, b6) = (c.ip("x/b", Family::V4), c.ip("x/b", Family::V6));
    for (dst, allowed) in [
        ("192.0.2.1", true),
        ("192.0.2.127", true),
        ("192.0.2.128", false),
        ("192.0.2.255", false),
        ("198.51.100.7", false),
        ("2001:db8::1", true),
        ("2001:db8:fffe::1", true),
        ("2001:db8:ffff::1", false),
        ("2001:db9::1", false),
    ] {
        let src = if addr(dst).is_ipv4() { a4 } else { a6 };
        c.assert_flow(src, addr(dst), https, allowed);
        c.assert_flow(src, addr(dst), TCP_80, false);
        c.assert_flow(src, addr(dst), Probe::new(Protocol::Udp, 443), false);
        // x/b is not selected: anything goes.
        let other = if addr(dst).is_ipv4() { b4 } else { b6 };
        c.assert_flow(other, addr(dst), TCP_80, true);
    }
    // No pod is in the blocks.
    let mut r = Reachability::new(true);
    r.expect_all_egress("x/a", false);
    c.check_dual(&[https, TCP_80], &r);
}

/// Ingress from external addresses through an ipBlock: external sources in
/// the block reach x/a, others and all pods do not.
#[test]
fn ingress_from_external_block() {
    let c = load(&np(
        "x",
        "allow-ingress-from-test-net-3",
        "
podSelector: {matchLabels: {pod: a}}
ingress:
- from:
  - ipBlock:
      cidr: 203.0.113.0/24
      except: [203.0.113.0/28]
",
    ));
    let a = c.ip("x/a", Family::V4);
    let b = c.ip("x/b", Family::V4);
    for (src, allowed) in [
        ("203.0.113.16", true),
        ("203.0.113.200", true),
        ("203.0.113.5", false),
        ("198.51.100.1", false),
    ] {
        c.assert_flow(addr(src), a, TCP_80, allowed);
        c.assert_flow(addr(src), a, SCTP_81, allowed);
        c.assert_flow(addr(src), b, TCP_80, true);
    }
    let mut r = Reachability::new(true);
    r.expect_all_ingress("x/a", false);
    c.check_dual(&ALL_PROBES, &r);
}
