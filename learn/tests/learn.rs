//! The learner on the demo shop and on random histories: edges, stable
//! labels, proposals, their proof, the store and the exporter.

use std::sync::Arc;

use bulkhead_flows::export::Exporter;
use bulkhead_flows::record::{FlowRecord, RecordKind, Timestamp};
use bulkhead_learn::edge::{End, History, WorkloadId};
use bulkhead_learn::*;
use bulkhead_policy::model::addressing::AddressPlan;
use bulkhead_testkit::learn::*;
use bulkhead_testkit::{Rng, random_model};

fn history(records: &[FlowRecord]) -> History {
    let mut h = History::default();
    for r in records {
        h.add_record(r);
    }
    h
}

fn wl(ns: &str, w: &str) -> End {
    End::Workload(WorkloadId {
        namespace: ns.into(),
        workload: w.into(),
    })
}

#[test]
fn edges_count_each_connection_once() {
    let d = demo();
    let both = conn(T0, &d.frontend, &d.api, 6, 8080);
    assert_eq!(both.len(), 2);
    let h = history(&both);
    assert_eq!(h.edges.len(), 1);
    let (k, s) = h.edges.iter().next().unwrap();
    assert_eq!(k.src, wl("shop", "Deployment/frontend"));
    assert_eq!(k.dst, wl("shop", "Deployment/api"));
    assert_eq!((k.protocol, k.port), (6, 8080));
    assert_eq!(s.flows(), 1);
    assert_eq!(s.packets(), 5);
    // Two nodes, one record each: merged, still one connection.
    let mut a = history(&both[..1]);
    let b = history(&both[1..]);
    a.merge(&b);
    assert_eq!(a.edges.values().next().unwrap().flows(), 1);
    // External source: only the ingress record exists.
    let ext = Peer::Ext("203.0.113.10".parse().unwrap());
    let h = history(&conn(T0, &ext, &d.frontend, 6, 80));
    assert_eq!(h.edges.values().next().unwrap().flows(), 1);
    assert!(h.workloads.values().all(|w| w.local));
    // Events do not count.
    let mut e = both[0].clone();
    e.kind = RecordKind::Event;
    let h = history(&[e]);
    assert!(h.edges.is_empty());
    assert_eq!(h.skipped.events, 1);
}

/// A client that reaches api through its Service: the client's record
/// (to the ClusterIP, naming the backend) and the backend's (on the
/// translated connection) meet in one edge to the api workload on the
/// target port; the proposal allows api's pods on that port, never the
/// Service address, and the proof covers it. A record to a frontend
/// without a backend gives no edge.
#[test]
fn connections_through_a_service_are_learnt_as_the_backend() {
    let d = demo();
    let cluster_ip: std::net::IpAddr = "10.96.0.20".parse().unwrap();
    let svc = ("shop", "api", cluster_ip, 80);
    let mut records = via_service(T0, &d.frontend, svc, &d.api, 8080);
    assert_eq!(records.len(), 2);
    let mut untranslated = records[0].clone();
    untranslated.service.as_mut().unwrap().backend = None;
    records.push(untranslated);
    let h = history(&records);
    assert_eq!(h.edges.len(), 1, "{:?}", h.edges.keys());
    let (k, s) = h.edges.iter().next().unwrap();
    assert_eq!(k.src, wl("shop", "Deployment/frontend"));
    assert_eq!(k.dst, wl("shop", "Deployment/api"));
    assert_eq!((k.protocol, k.port), (6, 8080));
    assert_eq!((s.at_src.flows, s.at_dst.flows, s.flows()), (1, 1, 1));
    assert_eq!(h.skipped.untranslated_service, 1);
    assert!(h.workloads.contains_key(&WorkloadId::of(match &d.api {
        Peer::Pod(p, _) => p,
        Peer::Ext(_) => unreachable!(),
    })));

    // Seen only at the client (the backend on another node): the same edge.
    let h = history(&records[..1]);
    let p = propose(&h, &demo_model());
    let frontend = p
        .policies
        .iter()
        .find(|p| p.key() == "shop/bulkhead-frontend")
        .expect("frontend's policy");
    // api, and DNS to coredns (for every pod, seen resolving or not).
    assert_eq!(frontend.egress.len(), 2);
    let rule = &frontend.egress[1];
    assert_eq!(rule.ports, [(bulkhead_policy::model::Protocol::Tcp, 8080)]);
    assert_eq!(
        rule.peers[0].peer,
        propose::PeerSel::Pods {
            namespace: "shop".into(),
            labels: [("app", "api"), ("tier", "backend")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    );
    let yaml = render::proposal_yaml(&p);
    assert!(!yaml.contains("10.96.0.20"), "{yaml}");
    let proof = prove(&h, &demo_model(), &p);
    assert!(proof.complete(), "{:?}", proof.denied);
    assert_eq!((proof.replayed, proof.allowed), (1, 1));
    assert_eq!(proof.coverage_percent, 100.0);
}

#[test]
fn stable_labels_drop_generated_ones() {
    let l: bulkhead_policy::model::Labels = [
        ("app", "x"),
        ("pod-template-hash", "1"),
        ("controller-revision-hash", "2"),
        ("statefulset.kubernetes.io/pod-name", "x-0"),
        ("job-name", "j"),
        ("batch.kubernetes.io/controller-uid", "u"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(
        labels::stable(&l).into_iter().collect::<Vec<_>>(),
        [("app".to_string(), "x".to_string())]
    );
}

#[test]
fn demo_proposal_selects_peers_merges_and_adds_dns() {
    let model = demo_model();
    let h = history(&demo_records());
    let p = propose(&h, &model);
    let names: Vec<String> = p.policies.iter().map(|p| p.key()).collect();
    assert_eq!(
        names,
        [
            "kube-system/bulkhead-coredns",
            "shop/bulkhead-api",
            "shop/bulkhead-db",
            "shop/bulkhead-frontend"
        ]
    );
    let yaml = render::proposal_yaml(&p);
    assert!(!yaml.contains("pod-template-hash"));
    assert!(!yaml.contains("statefulset.kubernetes.io"));
    assert!(yaml.contains("cidr: 203.0.113.10/32"));
    assert!(yaml.contains("cidr: 2001:db8::7/128"));
    assert!(yaml.contains("# DNS: TCP/53 added"));
    // coredns, a DNS server: all pods on 53 (the three clients seen under
    // it), and no egress section.
    let dns = &p.policies[0];
    assert_eq!(dns.ingress.len(), 1);
    assert_eq!(dns.ingress[0].peers.len(), 1);
    assert_eq!(dns.ingress[0].peers[0].peer, propose::PeerSel::AllPods);
    assert_eq!(dns.ingress[0].peers[0].observed.len(), 3);
    assert_eq!(dns.policy().egress, None);
    assert!(!yaml.contains("# no egress observed: all egress denied"));
    assert_eq!(p.unexpressible.len(), 1);
    let proof = prove(&h, &model, &p);
    assert!(proof.complete(), "{:?}", proof.denied);
    assert_eq!(proof.coverage_percent, 100.0);
    assert_eq!(proof.replayed, 7);
    // Beyond observed: the DNS pairing, and every pod unseen on 53.
    for b in &proof.beyond_observed {
        let all_pods = b.policy == "kube-system/bulkhead-coredns";
        let unseen = ["sandbox/Pod/stray", "kube-system/Deployment/coredns"];
        let ports = if all_pods && unseen.contains(&b.peer.as_str()) {
            vec!["TCP/53", "UDP/53"]
        } else {
            vec!["TCP/53"]
        };
        assert_eq!(b.ports, ports, "{b:?}");
    }
    assert_eq!(proof.diff.added.len(), 4);
}

#[test]
fn histories_of_several_nodes_merge_into_the_one_node_proposal() {
    let model = demo_model();
    let one_node = render::proposal_yaml(&propose(&history(&demo_records()), &model));
    let (first, second) = demo_records_on_two_nodes();
    assert!(!first.is_empty() && !second.is_empty());
    // Alone, the first node sees api only as a remote peer: no policy for it.
    let alone = propose(&history(&first), &model);
    assert!(
        !alone
            .policies
            .iter()
            .any(|p| p.key() == "shop/bulkhead-api")
    );
    for (a, b) in [(&first, &second), (&second, &first)] {
        let mut merged = history(a);
        merged.merge(&history(b));
        let p = propose(&merged, &model);
        assert_eq!(render::proposal_yaml(&p), one_node);
        assert!(prove(&merged, &model, &p).complete());
    }
}

#[test]
fn same_history_in_any_order_gives_identical_yaml() {
    let model = demo_model();
    let records = demo_records();
    let first = render::proposal_yaml(&propose(&history(&records), &model));
    let mut rng = Rng(7);
    for _ in 0..5 {
        let mut shuffled = records.clone();
        for i in (1..shuffled.len()).rev() {
            shuffled.swap(i, rng.below(i + 1));
        }
        assert_eq!(
            render::proposal_yaml(&propose(&history(&shuffled), &model)),
            first
        );
    }
}

#[test]
fn applying_the_proposal_and_reproposing_changes_nothing() {
    let model = demo_model();
    let h = history(&demo_records());
    let p = propose(&h, &model);
    let dir = tempfile::tempdir().unwrap();
    for f in ["workloads.yaml", "netpol.yaml"] {
        std::fs::copy(demo_dir().join(f), dir.path().join(f)).unwrap();
    }
    for pp in &p.policies {
        std::fs::write(
            dir.path().join(render::file_name(pp)),
            render::policy_yaml(pp),
        )
        .unwrap();
    }
    let applied =
        bulkhead_policy::source::manifest::load_dir(dir.path(), &AddressPlan::default()).unwrap();
    // The loader reads back exactly the policies proposed.
    for pp in &p.policies {
        assert_eq!(read_back(&applied, &pp.key()), pp.policy());
    }
    let again = propose(&h, &applied);
    assert_eq!(render::proposal_yaml(&again), render::proposal_yaml(&p));
    let proof = prove(&h, &applied, &again);
    assert!(proof.diff.no_change(), "{:?}", proof.diff);
    assert_eq!(proof.diff.unchanged.len(), 4);
    assert!(proof.complete());
}

#[test]
fn changed_policy_shows_a_diff() {
    let model = demo_model();
    let h = history(&demo_records());
    let p = propose(&h, &model);
    let mut applied = coverage::apply(&model, &p);
    // Drop one egress rule of bulkhead-api: the proposal puts it back.
    let i = applied
        .policies
        .iter()
        .position(|x| x.key() == "shop/bulkhead-api")
        .unwrap();
    applied.policies[i].egress.as_mut().unwrap().pop();
    let d = coverage::diff_against(&applied, &p);
    assert_eq!(d.changed, ["shop/bulkhead-api"]);
    assert!(d.text["shop/bulkhead-api"].contains("+ "));
}

#[test]
fn random_histories_are_fully_covered() {
    for seed in 0..200 {
        let mut rng = Rng(seed);
        let mut model = random_model(&mut rng);
        let keep_policies = rng.chance(50);
        if !keep_policies {
            model.policies.clear();
        }
        let peers = model_peers(&model);
        let mut records = Vec::new();
        for i in 0..rng.below(30) {
            let s = rng.pick(&peers).clone();
            let d = rng.pick(&peers).clone();
            if matches!((&s, &d), (Peer::Ext(_), Peer::Ext(_))) {
                continue;
            }
            let proto = *rng.pick(&[6u8, 17, 132, 1]);
            let port = if proto == 1 {
                0
            } else {
                50 + rng.below(40) as u16
            };
            for k in 0..1 + rng.below(3) as u64 {
                records.extend(conn(T0 + (i as u64 * 3 + k) * 1000, &s, &d, proto, port));
            }
        }
        let h = history(&records);
        let min_flows = 1 + rng.below(3) as u64;
        let options = Options {
            thresholds: Thresholds {
                min_flows,
                ..Thresholds::default()
            },
            ..Options::default()
        };
        let p = propose_with(&h, &model, options);
        let proof = prove(&h, &model, &p);
        // Left out is exactly below --min-flows, and never counted denied.
        assert!(p.left_out.iter().all(|f| f.observed.flows < min_flows));
        assert!(p.policies.iter().all(|pp| {
            [&pp.ingress, &pp.egress].into_iter().flatten().all(|r| {
                r.peers
                    .iter()
                    .all(|x| x.observed.iter().all(|o| o.flows >= min_flows))
            })
        }));
        for denied in &proof.denied {
            // Existing policies may deny traffic of workloads that got no
            // policy of their own (no stable labels); nothing else.
            assert!(
                keep_policies
                    && p.unselectable
                        .iter()
                        .any(|u| denied.edge.contains(u.as_str())),
                "seed {seed}: {denied:?}"
            );
        }
        if !keep_policies {
            assert_eq!(proof.coverage_percent, 100.0, "seed {seed}");
        }
        assert!(
            proof.unverifiable.is_empty(),
            "seed {seed}: {:?}",
            proof.unverifiable
        );
    }
}

#[test]
fn store_survives_reopen_and_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.redb");
    let h = history(&demo_records());
    {
        let store = HistoryStore::open(&path, StoreConfig::default()).unwrap();
        let out = store.merge(&h).unwrap();
        assert_eq!(out.new_edges, h.edges.len() as u64);
        // A second handle (as a second process would) is refused.
        let err = HistoryStore::open(&path, StoreConfig::default()).unwrap_err();
        assert!(matches!(err, StoreError::Locked { .. }), "{err}");
        // Merging the same again doubles counts, adds no edge.
        assert_eq!(store.merge(&h).unwrap().new_edges, 0);
    }
    let stored = store::read(&path).unwrap();
    assert_eq!(stored.history.edges.len(), h.edges.len());
    for (k, s) in &h.edges {
        assert_eq!(stored.history.edges[k].flows(), 2 * s.flows());
        assert_eq!(stored.history.edges[k].first_seen, s.first_seen);
    }
    assert_eq!(stored.history.records, 2 * h.records);
    // Same proposal from the store as from memory (flows differ only in
    // the comments' counts, so compare policies).
    let model = demo_model();
    let a: Vec<_> = propose(&h, &model)
        .policies
        .iter()
        .map(|p| p.policy())
        .collect();
    let b: Vec<_> = propose(&stored.history, &model)
        .policies
        .iter()
        .map(|p| p.policy())
        .collect();
    assert_eq!(a, b);
    // Bounded: 3 edges kept, the least recently seen evicted and counted.
    let store = HistoryStore::open(
        &path,
        StoreConfig {
            max_edges: 3,
            ..StoreConfig::default()
        },
    )
    .unwrap();
    let out = store.merge(&History::default()).unwrap();
    assert_eq!(out.evicted, h.edges.len() as u64 - 3);
    let kept = store.load().unwrap();
    assert_eq!(kept.history.edges.len(), 3);
    assert_eq!(kept.evicted, out.evicted);
    let newest: Vec<u64> = {
        let mut v: Vec<u64> = h.edges.values().map(|s| s.last_seen.0).collect();
        v.sort_unstable();
        v[v.len() - 3..].to_vec()
    };
    assert!(
        kept.history
            .edges
            .values()
            .all(|s| s.last_seen.0 >= newest[0])
    );
    assert_eq!(
        store.since_last_new_edge(Timestamp(T0 + 100_000)).unwrap(),
        kept.history
            .last_new_edge()
            .map(|t| std::time::Duration::from_millis(T0 + 100_000 - t.0))
    );
}

#[test]
fn exporter_feeds_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.redb");
    let store = HistoryStore::open(&path, StoreConfig::default()).unwrap();
    let mut exp = Box::new(
        HistoryExporter::start(
            store,
            HistoryExporterConfig {
                batch_records: 4,
                ..Default::default()
            },
        )
        .unwrap(),
    );
    let records = demo_records();
    for r in &records {
        exp.export(&Arc::new(r.clone()));
    }
    let stats = exp.finish();
    assert!(stats.holds());
    assert_eq!(stats.exported, records.len() as u64);
    let stored = store::read(&path).unwrap();
    assert_eq!(stored.history.edges, history(&records).edges);
}

#[test]
fn malformed_jsonl_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.jsonl");
    let good = serde_json::to_string(&demo_records()[0]).unwrap();
    std::fs::write(&path, format!("{good}\n\n{{\"schema\":1}}\n")).unwrap();
    let err = read_jsonl(&path).unwrap_err();
    assert!(matches!(err, ReadError::Malformed { line: 3, .. }), "{err}");
    assert!(err.to_string().contains("f.jsonl:3"));
}

#[test]
fn yaml_scalars_quote_what_yaml_would_misread() {
    assert_eq!(yaml::scalar("web"), "web");
    assert_eq!(yaml::scalar("true"), "\"true\"");
    assert_eq!(yaml::scalar("8080"), "\"8080\"");
    assert_eq!(yaml::scalar(""), "\"\"");
    assert_eq!(yaml::scalar("a b"), "\"a b\"");
}

#[test]
fn mode_annotation_is_written_only_when_asked() {
    let p = propose(&history(&demo_records()), &demo_model());
    // No mode: byte for byte what `proposal_yaml` always wrote.
    assert_eq!(
        render::proposal_yaml_in(&p, None),
        render::proposal_yaml(&p)
    );
    assert!(!render::proposal_yaml(&p).contains("annotations"));
    for mode in bulkhead_policy::model::Mode::ALL {
        let yaml = render::proposal_yaml_in(&p, Some(mode));
        let want = format!("  annotations:\n    bulkhead.io/mode: {mode}\nspec:\n");
        assert_eq!(yaml.matches(&want).count(), p.policies.len(), "{yaml}");
        // The annotation sits under metadata, after name and namespace.
        let one = render::policy_yaml_in(&p.policies[0], Some(mode));
        let meta = one.find("metadata:\n  name: ").unwrap();
        assert!(meta < one.find("  annotations:\n").unwrap());
    }
}

#[test]
fn proposal_in_a_mode_loads_back_in_that_mode() {
    let model = demo_model();
    let p = propose(&history(&demo_records()), &model);
    for mode in bulkhead_policy::model::Mode::ALL {
        let dir = tempfile::tempdir().unwrap();
        for f in ["workloads.yaml", "netpol.yaml"] {
            std::fs::copy(demo_dir().join(f), dir.path().join(f)).unwrap();
        }
        std::fs::write(
            dir.path().join("proposal.yaml"),
            render::proposal_yaml_in(&p, Some(mode)),
        )
        .unwrap();
        let applied =
            bulkhead_policy::source::manifest::load_dir(dir.path(), &AddressPlan::default())
                .unwrap();
        for pp in &p.policies {
            let loaded = read_back(&applied, &pp.key());
            assert_eq!(loaded.mode, Some(mode), "{}", pp.key());
            assert_eq!(applied.mode_of(&loaded), mode);
            // Nothing but the mode differs from the proposal.
            let bare = bulkhead_policy::model::Policy {
                mode: None,
                ..loaded
            };
            assert_eq!(bare, pp.policy());
        }
        // The manifests' own policies keep theirs.
        for old in &model.policies {
            let now = applied
                .policies
                .iter()
                .find(|x| x.key() == old.key())
                .unwrap();
            assert_eq!(applied.mode_of(now), model.mode_of(old));
        }
    }
}

#[test]
fn proposal_in_a_mode_is_deterministic() {
    let model = demo_model();
    let records = demo_records();
    let mode = Some(bulkhead_policy::model::Mode::Audit);
    let first = render::proposal_yaml_in(&propose(&history(&records), &model), mode);
    let mut rng = Rng(11);
    for _ in 0..5 {
        let mut shuffled = records.clone();
        for i in (1..shuffled.len()).rev() {
            shuffled.swap(i, rng.below(i + 1));
        }
        let again = render::proposal_yaml_in(&propose(&history(&shuffled), &model), mode);
        assert_eq!(again, first);
    }
    // One file per policy says the same as the stream.
    let p = propose(&history(&records), &model);
    let joined: Vec<String> = p
        .policies
        .iter()
        .map(|pp| render::policy_yaml_in(pp, mode))
        .collect();
    assert_eq!(joined.join("---\n"), first);
}

/// The proof is about the proposal enforced, whatever mode the agent or
/// the namespaces would give it: a proposal missing a rule fails it in
/// every mode (the proof is never vacuous), and an applied audit-mode
/// proposal re-proposes as "no change" (modes are not rules).
#[test]
fn the_proof_enforces_the_proposal_in_every_mode() {
    let h = history(&demo_records());
    for mode in bulkhead_policy::model::Mode::ALL {
        // The workloads alone: no policy of their own covers anything.
        let mut model = demo_model();
        model.policies.clear();
        model.default_mode = mode;
        let p = propose(&h, &model);
        let proof = prove(&h, &model, &p);
        assert!(proof.complete(), "{mode}: {:?}", proof.denied);
        let mut broken = p.clone();
        let db = broken
            .policies
            .iter_mut()
            .find(|pp| pp.name.contains("db"))
            .expect("a proposal for db");
        db.ingress.clear();
        let proof = prove(&h, &model, &broken);
        assert!(!proof.complete(), "{mode}: db's ingress allows nothing");
    }
    let model = demo_model();
    let p = propose(&h, &model);
    let dir = tempfile::tempdir().unwrap();
    for f in ["workloads.yaml", "netpol.yaml"] {
        std::fs::copy(demo_dir().join(f), dir.path().join(f)).unwrap();
    }
    let audit = render::proposal_yaml_in(&p, Some(bulkhead_policy::model::Mode::Audit));
    std::fs::write(dir.path().join("proposal.yaml"), audit).unwrap();
    let applied =
        bulkhead_policy::source::manifest::load_dir(dir.path(), &AddressPlan::default()).unwrap();
    let again = propose(&h, &applied);
    let proof = prove(&h, &applied, &again);
    assert!(proof.diff.no_change(), "{:?}", proof.diff);
    assert!(proof.complete());
}
