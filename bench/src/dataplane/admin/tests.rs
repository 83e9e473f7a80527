use std::net::IpAddr;

use bulkhead_common::{PROTO_TCP, PROTO_UDP};
use bulkhead_policy::compile::compile;
use bulkhead_policy::eval::Side;

use super::*;
use crate::dataplane::prog_cost::{Measurement, PathKind, Prog};
use crate::dataplane::rules::RuleCase;
use crate::dataplane::stats::Summary;
use crate::synthetic::v4;

fn addrs(m: &Model) -> (IpAddr, IpAddr) {
    let subject = v4(m.pod("bench/subject").unwrap().1);
    let peer = v4(m.pod("bench/peer").unwrap().1);
    (IpAddr::V4(subject), IpAddr::V4(peer))
}

#[test]
fn a_thousand_rules_in_a_hundred_priorities() {
    let m = model(&SHAPE, true);
    assert_eq!(m.admin_policies.len(), ADMIN_POLICIES);
    let rules: usize = m
        .admin_policies
        .iter()
        .map(|p| p.ingress.len() + p.egress.len())
        .sum();
    assert_eq!(rules, 1_000);
    let priorities: std::collections::BTreeSet<u32> =
        m.admin_policies.iter().map(|p| p.priority).collect();
    assert_eq!(priorities.len(), 100);
    for action in [Action::Accept, Action::Deny, Action::Pass] {
        assert!(
            m.admin_policies
                .iter()
                .flat_map(|p| p.ingress.iter().chain(&p.egress))
                .any(|r| r.action == action),
            "{action}"
        );
    }
    assert!(m.admin_policies.iter().any(|p| p.tier == Tier::Baseline));
}

#[test]
fn the_measured_flows_keep_their_verdicts_and_the_tables_are_tiered() {
    let plain = model(&SHAPE, false);
    let tiered = model(&SHAPE, true);
    let case = RuleCase::from_model(SHAPE, &tiered, 0);
    let without = RuleCase::from_model(SHAPE, &plain, 0);
    assert!(case.facts.tiered && !without.facts.tiered);
    assert!(case.facts.deny_segments > 0);
    assert_eq!(without.facts.deny_segments, 0);
    assert!(case.facts.segments > without.facts.segments);
    assert!(case.facts.identity_entries > without.facts.identity_entries);
    assert_eq!(case.facts.admin_rules, 1_000);
    for (m, c) in [(&plain, &without), (&tiered, &case)] {
        let compiled = compile(m);
        let (subject, peer) = addrs(m);
        for (src, dst) in [(subject, peer), (peer, subject)] {
            let ok = compiled.evaluate(src, dst, PROTO_UDP, c.allowed_port);
            assert!(ok.allowed(), "{ok:?}");
            let no = compiled.evaluate(src, dst, PROTO_UDP, c.denied_port);
            assert!(!no.allowed(), "{no:?}");
        }
    }
    // The admin rules do decide other traffic of the subject: telnet from
    // anywhere is denied by the first policy's rule.
    let compiled = compile(&tiered);
    let (subject, peer) = addrs(&tiered);
    let telnet = compiled.evaluate(peer, subject, PROTO_TCP, 23);
    assert!(matches!(telnet.ingress, Side::DeniedBy(_)), "{telnet:?}");
}

fn cost(ns: f64) -> CaseCost {
    let facts = RuleCase::new(rules::SHAPES[0], 0).facts;
    let measurements = Prog::ALL
        .into_iter()
        .flat_map(|prog| PathKind::ALL.map(|path| (prog, path)))
        .map(|(prog, path)| Measurement {
            prog,
            path,
            ns: Summary::new(vec![ns, ns * 1.01, ns * 0.99]),
            single_new_ns: None,
            single_established_ns: None,
            derived_ns: None,
        })
        .collect();
    CaseCost {
        facts,
        measurements,
    }
}

#[test]
fn the_limit_is_ten_percent() {
    let met = AdminCost::new(cost(100.0), cost(109.0));
    assert_eq!(met.rows.len(), 9);
    assert!(met.met(), "{:?}", met.rows);
    let mut s = String::new();
    met.target_line(&mut s);
    assert!(s.contains("**met**"), "{s}");
    let missed = AdminCost::new(cost(100.0), cost(111.0));
    assert!(!missed.met());
    assert_eq!(missed.missed().len(), 9);
    let mut s = String::new();
    missed.target_line(&mut s);
    missed.markdown(&mut s, None);
    assert!(s.contains("**missed**") && s.contains("over ×1.10"), "{s}");
}
