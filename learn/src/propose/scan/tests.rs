//! Scans: detected from the history alone, left out of the proposal and
//! the coverage count, listed in the proof; a busy fan-out is no scan.

use std::collections::HashSet;

use super::*;
use crate::coverage::{prove, text};
use crate::propose::{Options, Proposal, Thresholds, propose_with};
use bulkhead_flows::record::{Counts, FlowRecord};
use bulkhead_policy::model::{Direction, Model, Protocol};
use bulkhead_testkit::Rng;
use bulkhead_testkit::learn::{Peer, T0, conn, demo, demo_model, demo_records, pod};

/// A TCP connect to a closed port, as our records count it: SYN (74
/// bytes) and RST (54).
fn probe(t: u64, src: &Peer, dst: &Peer, port: u16) -> Vec<FlowRecord> {
    sized(conn(t, src, dst, 6, port), (1, 1), (74, 54))
}

fn sized(records: Vec<FlowRecord>, packets: (u64, u64), bytes: (u64, u64)) -> Vec<FlowRecord> {
    records
        .into_iter()
        .map(|mut r| {
            r.packets = Counts {
                orig: packets.0,
                reply: packets.1,
            };
            r.bytes = Counts {
                orig: bytes.0,
                reply: bytes.1,
            };
            r
        })
        .collect()
}

fn history(records: &[FlowRecord]) -> History {
    let mut h = History::default();
    for r in records {
        h.add_record(r);
    }
    h
}

fn scanner() -> Peer {
    Peer::Ext("198.51.100.66".parse().unwrap())
}

/// The demo's traffic, and an external address probing ports 1-20 of the
/// shop's three workloads.
fn scanned() -> Vec<FlowRecord> {
    let d = demo();
    let mut v = demo_records();
    for (i, target) in [&d.frontend, &d.api, &d.db].into_iter().enumerate() {
        for port in 1..=20 {
            v.extend(probe(
                T0 + 90_000 + i as u64 * 100 + port as u64,
                &scanner(),
                target,
                port,
            ));
        }
    }
    v
}

fn with(keep_scans: bool, scan_targets: u64) -> Options {
    Options {
        keep_scans,
        thresholds: Thresholds {
            scan_targets,
            ..Thresholds::default()
        },
        ..Options::default()
    }
}

/// Every (peer, protocol, port) a proposal allows, per subject and
/// direction.
fn allowed(p: &Proposal) -> Vec<(String, Direction, String, Protocol, u16)> {
    let mut v = Vec::new();
    for pol in &p.policies {
        for d in Direction::ALL {
            for r in pol.rules(d) {
                for peer in &r.peers {
                    for &(proto, port) in &r.ports {
                        v.push((pol.key(), d, format!("{:?}", peer.peer), proto, port));
                    }
                }
            }
        }
    }
    v.sort();
    v
}

#[test]
fn probe_edges_are_few_flows_without_payload() {
    let (d, ext) = (demo(), scanner());
    let edge = |records: Vec<FlowRecord>| {
        let h = history(&records);
        assert_eq!(h.edges.len(), 1);
        is_probe(h.edges.values().next().unwrap())
    };
    // Closed port: SYN, RST.
    assert!(edge(probe(T0, &ext, &d.api, 22)));
    // Open port closed at once, over IPv6: SYN, SYN-ACK (94), four bare
    // segments with timestamps (86).
    assert!(edge(sized(
        conn(T0, &ext, &d.api, 6, 22),
        (3, 3),
        (94 + 86 * 2, 94 + 86 * 2)
    )));
    // Filtered: the SYN and its retries, dropped (counted all the same).
    assert!(edge(
        sized(conn(T0, &d.api, &d.db, 6, 23), (0, 0), (0, 0))
            .into_iter()
            .map(|mut r| {
                r.dropped.packets = 3;
                r.dropped.bytes = 3 * 74;
                r
            })
            .collect()
    ));
    // A UDP probe: one empty datagram.
    assert!(edge(sized(
        conn(T0, &ext, &d.api, 17, 161),
        (1, 0),
        (42, 0)
    )));
    // Twice is still a probe; three times is a habit.
    let twice: Vec<FlowRecord> = (0..2)
        .flat_map(|i| probe(T0 + i, &ext, &d.api, 22))
        .collect();
    assert!(edge(twice));
    let thrice: Vec<FlowRecord> = (0..3)
        .flat_map(|i| probe(T0 + i, &ext, &d.api, 22))
        .collect();
    assert!(!edge(thrice));
    // Payload: a small request and answer.
    assert!(!edge(sized(
        conn(T0, &ext, &d.api, 6, 8080),
        (5, 5),
        (500, 1200)
    )));
}

#[test]
fn a_scan_among_steady_traffic_is_left_out_and_listed() {
    let (h, model) = (history(&scanned()), demo_model());
    let plain = propose_with(&h, &model, Options::default());
    let without = propose_with(&history(&demo_records()), &model, Options::default());
    // The scan changes nothing in the policies.
    assert_eq!(allowed(&plain), allowed(&without));
    assert_eq!(plain.scans.len(), 1);
    let s = &plain.scans[0];
    assert_eq!(s.source, "198.51.100.66");
    assert_eq!((s.probes, s.targets), (60, 60));
    assert_eq!(
        s.peers,
        [
            "shop/Deployment/api",
            "shop/Deployment/frontend",
            "shop/StatefulSet/db"
        ]
    );
    assert_eq!(s.ports, "1-20");
    assert_eq!(s.edges.len(), 60);
    assert!(
        s.edges
            .contains(&"198.51.100.66 → shop/StatefulSet/db TCP/7".to_owned())
    );
    assert!(s.first < s.last);

    let proof = prove(&h, &model, &plain);
    assert!(proof.complete(), "{:?}", proof.denied);
    assert_eq!(proof.coverage_percent, 100.0);
    // Not replayed against coverage: the same count as without the scan.
    assert_eq!(
        proof.replayed,
        prove(&history(&demo_records()), &model, &without).replayed
    );
    assert!(proof.scan_allowed.is_empty(), "{:?}", proof.scan_allowed);
    let t = text(&proof, &plain);
    assert!(
        t.contains("; 60 scan probe edges left out (on purpose)."),
        "{t}"
    );
    assert!(
        t.contains(&format!(
            "  scan from 198.51.100.66: 60 probes to 3 peers, ports 1-20, {}..{}; left out, \
             --keep-scans to include\n",
            s.first, s.last
        )),
        "{t}"
    );
    let json = serde_json::to_value(&proof).unwrap();
    assert_eq!(json["scans"][0]["source"], "198.51.100.66");
    assert_eq!(json["scans"][0]["targets"], 60);
    assert_eq!(json["scans"][0]["ports"], "1-20");
    assert!(json["scans"][0].get("keys").is_none());
}

#[test]
fn keep_scans_proposes_the_probes() {
    let (h, model) = (history(&scanned()), demo_model());
    let kept = propose_with(&h, &model, with(true, DEFAULT_SCAN_TARGETS));
    assert_eq!(kept.scans.len(), 1, "still listed");
    let from_scanner: Vec<_> = allowed(&kept)
        .into_iter()
        .filter(|(_, d, peer, _, _)| *d == Direction::Ingress && peer.contains("198.51.100.66"))
        .collect();
    // Each of the three workloads' ingress, ports 1-20.
    assert_eq!(from_scanner.len(), 60, "{from_scanner:?}");
    let proof = prove(&h, &model, &kept);
    assert!(proof.complete());
    assert_eq!(proof.coverage_percent, 100.0);
    let t = text(&proof, &kept);
    assert!(t.contains("; proposed (--keep-scans)"), "{t}");
    assert!(!t.contains("scan probe edges left out"), "{t}");
}

#[test]
fn fewer_targets_than_scan_targets_is_no_scan() {
    let d = demo();
    let mut v = demo_records();
    for port in 1..=9 {
        v.extend(probe(T0 + 90_000 + port as u64, &scanner(), &d.api, port));
    }
    let (h, model) = (history(&v), demo_model());
    let p = propose_with(&h, &model, Options::default());
    assert!(p.scans.is_empty());
    assert_eq!(
        allowed(&p)
            .iter()
            .filter(|e| e.2.contains("198.51.100.66"))
            .count(),
        9
    );
    // A lower bar makes it one.
    let p = propose_with(&h, &model, with(false, 9));
    assert_eq!(p.scans.len(), 1);
    assert_eq!(p.scans[0].ports, "1-9");
    assert!(allowed(&p).iter().all(|e| !e.2.contains("198.51.100.66")));
}

/// The api pod scans db's ports and the frontend, and goes on with its
/// real work: its real edges are proposed, on both sides, its probes on
/// neither.
#[test]
fn the_scanners_real_edges_are_kept() {
    let d = demo();
    let mut v = demo_records();
    for port in 1000..1012 {
        v.extend(probe(T0 + 100_000 + port as u64, &d.api, &d.db, port));
    }
    let (h, model) = (history(&v), demo_model());
    let p = propose_with(&h, &model, Options::default());
    assert_eq!(p.scans.len(), 1);
    assert_eq!(p.scans[0].source, "shop/Deployment/api");
    assert_eq!(
        (p.scans[0].targets, p.scans[0].ports.as_str()),
        (12, "1000-1011")
    );
    let db_ports: Vec<u16> = allowed(&p)
        .iter()
        .filter(|e| {
            (e.0 == "shop/bulkhead-api" && e.1 == Direction::Egress && e.2.contains("\"db\""))
                || (e.0 == "shop/bulkhead-db" && e.1 == Direction::Ingress)
        })
        .map(|e| e.4)
        .collect();
    // api's egress and db's ingress: 5432 only.
    assert_eq!(db_ports, [5432, 5432], "{:?}", allowed(&p));
    assert_eq!(
        allowed(&p),
        allowed(&propose_with(
            &history(&demo_records()),
            &model,
            Options::default()
        ))
    );
    let proof = prove(&h, &model, &p);
    assert!(proof.complete());
    assert_eq!(proof.coverage_percent, 100.0);
}

/// A workload seen only in probes (here: scanned, nothing else) gets no
/// policy: a deny-all from probes alone would cut its real traffic.
#[test]
fn a_workload_seen_only_in_probes_is_not_seen() {
    let mut v = demo_records();
    let stray = pod(
        "sandbox",
        "stray",
        "Pod/stray",
        &[("app", "debug")],
        "10.244.0.9",
    );
    for port in 1..=12 {
        v.extend(probe(T0 + 100_000 + port as u64, &scanner(), &stray, port));
    }
    let (h, model) = (history(&v), demo_model());
    let p = propose_with(&h, &model, Options::default());
    assert_eq!(p.scans.len(), 1);
    assert!(p.policies.iter().all(|p| p.subject.name() != "stray"));
    let stray = p
        .unproposed_workloads
        .iter()
        .find(|u| u.workload.name() == "stray")
        .unwrap();
    assert_eq!(stray.reason, crate::propose::UnproposedReason::NotSeen);
    let kept = propose_with(&h, &model, with(true, DEFAULT_SCAN_TARGETS));
    assert!(kept.policies.iter().any(|p| p.subject.name() == "stray"));
    assert!(kept.unproposed_workloads.is_empty());
}

/// A monitoring pod scraping 30 pods, many times each or with payload, in
/// any order: never a scan, whatever the numbers.
#[test]
fn a_busy_fan_out_is_no_scan() {
    for seed in 0..100 {
        let mut rng = Rng(seed);
        let monitor = pod(
            "monitoring",
            "prom-0",
            "StatefulSet/prometheus",
            &[("app", "prometheus")],
            "10.244.9.1",
        );
        let mut v = Vec::new();
        for i in 0..30u64 {
            let target = pod(
                "apps",
                &format!("svc{i}-0"),
                &format!("Deployment/svc{i}"),
                &[("app", "svc")],
                &format!("10.244.1.{}", i + 1),
            );
            let port = 9000 + rng.below(100) as u16;
            let mut below = |n: usize| rng.below(n) as u64;
            // Either scraped often (a probe-like size is fine), or scraped
            // once or twice with a payload of any size above a header's.
            let often = below(2) == 0;
            let flows = if often { 3 + below(60) } else { 1 + below(2) };
            for k in 0..flows {
                let packets = 2 + below(20);
                let per_packet = if often {
                    40 + below(2000)
                } else {
                    PROBE_MAX_PACKET_BYTES + 1 + below(1400)
                };
                let half = packets / 2;
                v.extend(sized(
                    conn(T0 + (k * 30 + i) * 1000, &monitor, &target, 6, port),
                    (half, packets - half),
                    (half * per_packet, (packets - half) * per_packet),
                ));
            }
        }
        let h = history(&v);
        let p = propose_with(&h, &Model::default(), Options::default());
        assert!(p.scans.is_empty(), "seed {seed}: {:?}", p.scans);
        let prom = p
            .policies
            .iter()
            .find(|p| p.subject.name() == "prometheus")
            .unwrap();
        let peers: usize = prom.egress.iter().map(|r| r.peers.len()).sum();
        assert!(peers >= 1, "seed {seed}");
        assert_eq!(prom.edges, 30, "seed {seed}");
    }
}

/// Random models and histories with a random scanner (a pod or an
/// address) among random traffic: its probes are in no rule's
/// observations, every other edge is covered, and `--keep-scans` covers
/// the probes too.
#[test]
fn random_scans_are_in_no_rule_and_the_rest_is_covered() {
    use bulkhead_testkit::learn::model_peers;
    use bulkhead_testkit::random_model;

    for seed in 0..100 {
        let mut rng = Rng(seed);
        let mut model = random_model(&mut rng);
        model.policies.clear();
        let peers = model_peers(&model);
        let mut records = Vec::new();
        for i in 0..rng.below(30) as u64 {
            let (s, d) = (rng.pick(&peers).clone(), rng.pick(&peers).clone());
            if matches!((&s, &d), (Peer::Ext(_), Peer::Ext(_))) {
                continue;
            }
            let proto = *rng.pick(&[6u8, 17, 132]);
            let port = 50 + rng.below(40) as u16;
            for k in 0..1 + rng.below(3) as u64 {
                records.extend(conn(T0 + (i * 3 + k) * 1000, &s, &d, proto, port));
            }
        }
        let scanner = rng.pick(&peers).clone();
        // Probes reach pods (the history has no edge between two
        // addresses): distinct ports make distinct targets.
        let targets: Vec<&Peer> = peers
            .iter()
            .filter(|p| matches!(p, Peer::Pod(..)))
            .collect();
        let ports = 10 + rng.below(20) as u16;
        for port in 1000..1000 + ports {
            let target = *rng.pick(&targets);
            records.extend(probe(T0 + 200_000 + port as u64, &scanner, target, port));
        }
        let h = history(&records);
        let p = propose_with(&h, &model, Options::default());
        let probes: HashSet<&EdgeKey> = p.scans.iter().flat_map(|s| &s.keys).collect();
        assert!(
            p.scans.iter().any(|s| s.source == scanner_name(&scanner)),
            "seed {seed}: {:?}",
            p.scans
        );
        for pol in &p.policies {
            for d in Direction::ALL {
                for r in pol.rules(d) {
                    for peer in &r.peers {
                        for o in &peer.observed {
                            let subject = End::Workload(pol.subject.clone());
                            let probe = probes.iter().any(|k| {
                                let (me, other) = match d {
                                    Direction::Egress => (&k.src, &k.dst),
                                    Direction::Ingress => (&k.dst, &k.src),
                                };
                                *me == subject && other.to_string() == o.peer && k.port == o.port
                            });
                            assert!(!probe, "seed {seed}: {} {d} {o:?}", pol.key());
                        }
                    }
                }
            }
        }
        let proof = prove(&h, &model, &p);
        assert!(proof.denied.is_empty(), "seed {seed}: {:?}", proof.denied);
        assert_eq!(proof.coverage_percent, 100.0, "seed {seed}");
        let kept = propose_with(&h, &model, with(true, DEFAULT_SCAN_TARGETS));
        let proof = prove(&h, &model, &kept);
        assert!(proof.denied.is_empty(), "seed {seed}: {:?}", proof.denied);
        assert!(proof.replayed >= probes.len() as u64, "seed {seed}");
    }
}

fn scanner_name(p: &Peer) -> String {
    match p {
        Peer::Pod(info, _) => format!("{}/Pod/{}", info.namespace, info.pod),
        Peer::Ext(a) => a.to_string(),
    }
}
