//! Rare and recent edges: flagged in the YAML and the proof, and left out
//! below `--min-flows` with every learning property kept.

use bulkhead_flows::record::{FlowRecord, Timestamp};
use bulkhead_learn::edge::History;
use bulkhead_learn::*;
use bulkhead_testkit::learn::*;

const MINUTE: u64 = 60_000;

/// 200 steady frontend → api connections over 200 minutes, one stray api
/// → db connection in the middle, and api → DNS only in the last 5%.
fn records() -> Vec<FlowRecord> {
    let d = demo();
    let mut v = Vec::new();
    for i in 0..200 {
        v.extend(conn(T0 + i * MINUTE, &d.frontend, &d.api, 6, 8080));
    }
    v.extend(conn(T0 + 100 * MINUTE, &d.api, &d.db, 6, 5432));
    for i in 190..195 {
        v.extend(conn(T0 + i * MINUTE, &d.api, &d.dns, 17, 53));
    }
    v
}

fn history() -> History {
    let mut h = History::default();
    for r in records() {
        h.add_record(&r);
    }
    h
}

fn with(min_flows: u64) -> Options {
    Options {
        thresholds: Thresholds {
            min_flows,
            ..Thresholds::default()
        },
        ..Options::default()
    }
}

fn comments<'a>(yaml: &'a str, what: &str) -> Vec<&'a str> {
    yaml.lines()
        .filter(|l| l.trim_start().starts_with("# observed: ") && l.contains(what))
        .collect()
}

#[test]
fn the_stray_edge_is_flagged_rare_and_listed_first() {
    let (h, model) = (history(), demo_model());
    let p = propose_with(&h, &model, with(1));
    let yaml = render::proposal_yaml(&p);
    // Both ends' policies say it, with its count and times.
    let stray = comments(&yaml, "TCP/5432");
    assert_eq!(stray.len(), 2, "{yaml}");
    assert!(
        stray
            .iter()
            .all(|l| l.contains(": 1 flow, first ") && l.ends_with(" — RARE: seen once")),
        "{stray:?}"
    );
    let steady = comments(&yaml, "TCP/8080");
    assert_eq!(steady.len(), 2);
    assert!(
        steady
            .iter()
            .all(|l| l.contains("200 flows") && !l.contains(" — "))
    );
    let dns = comments(&yaml, "UDP/53");
    assert!(
        dns.iter()
            .all(|l| l.ends_with(" — RECENT: first seen in the last 10% of the window")),
        "{dns:?}"
    );

    let proof = prove(&h, &model, &p);
    assert!(proof.complete());
    assert_eq!(proof.coverage_percent, 100.0);
    assert_eq!((proof.rare, proof.recent), (2, 2));
    let order: Vec<(u64, &str, bool, bool)> = proof
        .flagged
        .iter()
        .map(|f| {
            let o = &f.observed;
            (o.flows, f.subject.as_str(), o.rare, o.recent)
        })
        .collect();
    assert_eq!(
        order,
        [
            (1, "shop/Deployment/api", true, false),
            (1, "shop/StatefulSet/db", true, false),
            (5, "kube-system/Deployment/coredns", false, true),
            (5, "shop/Deployment/api", false, true),
        ]
    );
    let text = coverage::text(&proof, &p);
    assert!(
        text.contains("Rare or recent: 2 rare (below --rare-below 3 flows), 2 recent"),
        "{text}"
    );
    assert!(
        text.contains("  shop/Deployment/api egress shop/StatefulSet/db TCP/5432: 1 flow, first ")
    );
    assert!(!text.contains("Left out"));
    let json = serde_json::to_value(&proof).unwrap();
    assert_eq!(json["flagged"][0]["peer"], "shop/StatefulSet/db");
    assert_eq!(json["flagged"][0]["flows"], 1);
    assert_eq!(json["rare"], 2);
}

#[test]
fn below_min_flows_is_left_out_and_the_proof_says_so() {
    let (h, model) = (history(), demo_model());
    let p = propose_with(&h, &model, with(2));
    let yaml = render::proposal_yaml(&p);
    assert!(comments(&yaml, "TCP/5432").is_empty(), "{yaml}");
    assert!(!yaml.contains("port: 5432"));
    assert!(
        yaml.contains(
            "# no ingress proposed: 1 entry left out below --min-flows 2; all ingress denied"
        ),
        "{yaml}"
    );
    assert_eq!(comments(&yaml, "TCP/8080").len(), 2);
    let left: Vec<(&str, String)> = p
        .left_out
        .iter()
        .map(|f| (f.subject.as_str(), f.direction.to_string()))
        .collect();
    assert_eq!(
        left,
        [
            ("shop/Deployment/api", "egress".to_string()),
            ("shop/StatefulSet/db", "ingress".to_string())
        ]
    );
    // Not a stray any more: only the recent DNS entries are flagged.
    assert_eq!(p.flagged.len(), 2);

    let proof = prove(&h, &model, &p);
    assert!(proof.complete(), "{:?}", proof.denied);
    assert_eq!(proof.coverage_percent, 100.0);
    assert_eq!(proof.left_out_edges, 1);
    // The demo's own `api` and `db` policies allow it: the proof says so.
    assert_eq!(
        proof.left_out_allowed,
        ["shop/Deployment/api → shop/StatefulSet/db TCP/5432"]
    );
    assert_eq!(proof.replayed, proof.edges - 1);
    let text = coverage::text(&proof, &p);
    assert!(text.contains("allowed (100.0%); 1 more left out below --min-flows 2 (on purpose)."));
    assert!(
        text.contains("Left out: below --min-flows 2, in no rule on purpose"),
        "{text}"
    );
    assert!(
        text.contains("  shop/StatefulSet/db ingress shop/Deployment/api TCP/5432: 1 flow, first ")
    );
    assert!(text.contains(
        "  still allowed by another rule: shop/Deployment/api → shop/StatefulSet/db TCP/5432"
    ));
    // Without the manifests' policies, the proposal alone denies it.
    let mut bare = model.clone();
    bare.policies.clear();
    let pb = propose_with(&h, &bare, with(2));
    let proof_bare = prove(&h, &bare, &pb);
    assert!(proof_bare.complete());
    assert_eq!(proof_bare.coverage_percent, 100.0);
    assert_eq!(proof_bare.left_out_edges, 1);
    assert!(proof_bare.left_out_allowed.is_empty());

    // Deterministic, and applying it then proposing again changes nothing.
    let again = propose_with(&h, &model, with(2));
    assert_eq!(render::proposal_yaml(&again), yaml);
    let applied = coverage::apply(&model, &p);
    let re = propose_with(&h, &applied, with(2));
    let proof = prove(&h, &applied, &re);
    assert!(proof.diff.no_change(), "{:?}", proof.diff);
    assert!(proof.complete());
}

#[test]
fn recent_is_a_share_of_the_span_and_nothing_in_an_instant() {
    let th = Thresholds::default();
    let span = |a: u64, b: u64| Some((Timestamp(a), Timestamp(b)));
    assert_eq!(th.recent_after(span(1000, 2000)), Some(Timestamp(1900)));
    assert_eq!(th.recent_after(span(1000, 1000)), None);
    assert_eq!(th.recent_after(None), None);
    let none = Thresholds {
        recent_percent: 0,
        ..th
    };
    assert_eq!(none.recent_after(span(1000, 2000)), Some(Timestamp(2000)));
}
