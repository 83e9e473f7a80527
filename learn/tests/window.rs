//! Denied attempts kept apart from what is observed, and time windows of
//! flow logs and of the store (buckets, eviction, partial windows, entries
//! of older versions).

use std::sync::Arc;

use bulkhead_flows::record::{FlowRecord, FlowVerdict, PolicyRef, Timestamp};
use bulkhead_learn::edge::{EdgeKey, EdgeStats, History, MAX_DENIED_POLICIES};
use bulkhead_learn::store::{HistoryStore, StoreConfig, Stored};
use bulkhead_learn::*;
use bulkhead_testkit::Rng;
use bulkhead_testkit::learn::*;

const MINUTE: u64 = 60_000;

fn history(records: &[FlowRecord]) -> History {
    let mut h = History::default();
    for r in records {
        h.add_record(r);
    }
    h
}

/// `records` with verdict `v`, decided by `policies`.
fn verdict(mut records: Vec<FlowRecord>, v: FlowVerdict, policies: &[&str]) -> Vec<FlowRecord> {
    for r in &mut records {
        r.verdict = v;
        r.policies = policies
            .iter()
            .map(|p| PolicyRef {
                name: (*p).into(),
                ..PolicyRef::default()
            })
            .collect::<Vec<_>>()
            .into();
    }
    records
}

fn edge_of<'a>(h: &'a History, src: &str, port: u16) -> (&'a EdgeKey, &'a EdgeStats) {
    h.edges
        .iter()
        .find(|(k, _)| k.src.to_string().ends_with(src) && k.port == port)
        .unwrap_or_else(|| panic!("no edge {src} :{port}"))
}

/// frontend → api allowed 3 times; api → db (5432) only denied by
/// `shop/deny-db`; frontend → db (5432) quarantined once, allowed twice.
fn mixed() -> Vec<FlowRecord> {
    let d = demo();
    let mut v = Vec::new();
    for i in 0..3 {
        v.extend(conn(T0 + i * MINUTE, &d.frontend, &d.api, 6, 8080));
    }
    for i in 0..4 {
        v.extend(verdict(
            conn(T0 + i * MINUTE, &d.api, &d.db, 6, 5432),
            FlowVerdict::Denied,
            &["shop/deny-db"],
        ));
    }
    v.extend(verdict(
        conn(T0 + 10 * MINUTE, &d.frontend, &d.db, 6, 5432),
        FlowVerdict::Quarantined,
        &["Quarantine/shop-frontend"],
    ));
    for i in 0..2 {
        // Revoked connections passed (until a change stopped them).
        v.extend(verdict(
            conn(T0 + (11 + i) * MINUTE, &d.frontend, &d.db, 6, 5432),
            if i == 0 {
                FlowVerdict::Revoked
            } else {
                FlowVerdict::Allowed
            },
            &["shop/db"],
        ));
    }
    v
}

#[test]
fn denied_records_are_counted_apart_with_their_policies() {
    let h = history(&mixed());
    let (_, fe_api) = edge_of(&h, "Deployment/frontend", 8080);
    assert!(fe_api.denied.is_none());
    assert_eq!(fe_api.allowed_flows(), 3);

    let (_, api_db) = edge_of(&h, "Deployment/api", 5432);
    assert_eq!((api_db.flows(), api_db.denied_flows()), (4, 4));
    assert_eq!(api_db.allowed_flows(), 0);
    assert!(api_db.allowed().is_none());
    let d = api_db.denied.as_ref().unwrap();
    assert_eq!(d.policies.iter().collect::<Vec<_>>(), ["shop/deny-db"]);
    assert_eq!(d.first_seen, Timestamp(T0));
    assert_eq!(d.last_seen, Timestamp(T0 + 3 * MINUTE + 500));

    let (_, fe_db) = edge_of(&h, "Deployment/frontend", 5432);
    assert_eq!((fe_db.flows(), fe_db.denied_flows()), (3, 1));
    let allowed = fe_db.allowed().unwrap();
    assert_eq!(allowed.flows(), 2);
    assert_eq!(allowed.first_seen, Timestamp(T0 + 11 * MINUTE));
    assert_eq!(allowed.last_seen, Timestamp(T0 + 12 * MINUTE + 500));
    assert_eq!(
        fe_db.denied.as_ref().unwrap().policies.first().unwrap(),
        "Quarantine/shop-frontend"
    );

    // Observed: the allowed part; api → db is gone, the rest counted by it.
    let observed = h.observed(false);
    assert_eq!(observed.edges.len(), 2);
    assert_eq!(edge_of(&observed, "Deployment/frontend", 5432).1.flows(), 2);
    let all = h.observed(true);
    assert_eq!(all.edges.len(), 3);
    assert_eq!(edge_of(&all, "Deployment/frontend", 5432).1.flows(), 3);
}

#[test]
fn audit_would_deny_records_passed_and_count_as_allowed() {
    use bulkhead_flows::record::{Audit, AuditVerdict};
    let d = demo();
    let mut records = conn(T0, &d.api, &d.db, 6, 5432);
    for r in &mut records {
        r.audit = Some(Audit {
            verdict: AuditVerdict::WouldDeny,
            policies: Arc::new([]),
        });
    }
    let h = history(&records);
    let (_, s) = edge_of(&h, "Deployment/api", 5432);
    assert!(s.denied.is_none());
    assert_eq!(s.allowed_flows(), 1);
}

#[test]
fn merging_in_any_order_gives_the_same_split_and_bounded_policies() {
    let d = demo();
    let mut records = mixed();
    // Ten deciding policies on one edge over time: eight kept.
    for i in 0..10 {
        records.extend(verdict(
            conn(T0 + i * MINUTE, &d.db, &d.api, 6, 9000),
            FlowVerdict::Denied,
            &[&format!("shop/p{i}")],
        ));
    }
    let whole = history(&records);
    let (_, many) = edge_of(&whole, "StatefulSet/db", 9000);
    let dm = many.denied.as_ref().unwrap();
    assert_eq!(dm.policies.len(), MAX_DENIED_POLICIES);
    assert!(dm.policies_truncated);
    assert_eq!(dm.policies.last().unwrap(), "shop/p7");
    let mut rng = Rng(11);
    for _ in 0..20 {
        let mut shuffled = records.clone();
        for i in (1..shuffled.len()).rev() {
            shuffled.swap(i, rng.below(i + 1));
        }
        // Split among three "nodes", merged in a random order.
        let mut parts = [History::default(), History::default(), History::default()];
        for r in &shuffled {
            parts[rng.below(3)].add_record(r);
        }
        let mut order = [0, 1, 2];
        for i in (1..3).rev() {
            order.swap(i, rng.below(i + 1));
        }
        let mut merged = History::default();
        for i in order {
            merged.merge(&parts[i]);
        }
        assert_eq!(merged.edges, whole.edges);
    }
}

#[test]
fn denied_only_edges_are_not_proposed_and_listed_with_their_policy() {
    let model = demo_model();
    let h = history(&mixed());
    let proposal = propose(&h, &model);
    let yaml = render::proposal_yaml(&proposal);
    let api = proposal
        .policies
        .iter()
        .find(|p| p.key() == "shop/bulkhead-api")
        .unwrap();
    // Its egress allows DNS (every pod may resolve) and nothing else.
    assert!(
        api.egress
            .iter()
            .all(|r| r.ports.iter().all(|&(_, port)| port == 53)),
        "api → db was only denied: {yaml}"
    );
    let attempt = proposal
        .denied_attempts
        .iter()
        .find(|a| a.edge.contains("Deployment/api → shop/StatefulSet/db"))
        .unwrap();
    assert_eq!((attempt.flows, attempt.allowed_flows), (4, 0));
    assert_eq!(attempt.policies, ["shop/deny-db"]);
    assert_eq!(proposal.denied_attempts.len(), 2);
    let proof = prove(&h, &model, &proposal);
    assert!(proof.complete());
    assert_eq!(proof.edges, 2, "the denied-only edge is not observed");
    assert_eq!(proof.denied_attempts, proposal.denied_attempts);
    let text = coverage::text(&proof, &proposal);
    assert!(
        text.contains("Denied attempts: edges the policies in force dropped (2), not proposed"),
        "{text}"
    );
    assert!(text.contains("decided by shop/deny-db"), "{text}");
    let json = serde_json::to_value(&proof).unwrap();
    // Sorted by edge: api → db, then frontend → db.
    assert_eq!(json["denied_attempts"][0]["policies"][0], "shop/deny-db");
    assert_eq!(
        json["denied_attempts"][1]["policies"][0],
        "Quarantine/shop-frontend"
    );
    assert_eq!(json["denied_attempts"][1]["allowed_flows"], 2);
    assert!(json["window"]["since"].is_null());

    // --include-denied: proposed as observed.
    let with = propose_with(
        &h,
        &model,
        Options {
            include_denied: true,
            ..Options::default()
        },
    );
    let api = with
        .policies
        .iter()
        .find(|p| p.key() == "shop/bulkhead-api")
        .unwrap();
    assert!(
        api.egress.iter().any(|r| r
            .ports
            .contains(&(bulkhead_policy::model::Protocol::Tcp, 5432))),
        "{}",
        render::proposal_yaml(&with)
    );
    let proof = prove(&h, &model, &with);
    assert!(proof.complete());
    assert_eq!(proof.edges, 3);
    assert!(coverage::text(&proof, &with).contains("proposed as observed (--include-denied)"));
}

#[test]
fn thresholds_count_the_allowed_part() {
    // frontend → db: 3 flows, 1 quarantined: 2 allowed, rare below 3.
    let model = demo_model();
    let h = history(&mixed());
    let proposal = propose(&h, &model);
    let f = proposal
        .flagged
        .iter()
        .find(|f| f.key.port == 5432)
        .expect("frontend → db is rare by its allowed flows");
    assert_eq!(f.observed.flows, 2);
    assert!(f.observed.rare);
    let left = propose_with(
        &h,
        &model,
        Options {
            thresholds: Thresholds {
                min_flows: 3,
                ..Thresholds::default()
            },
            ..Options::default()
        },
    );
    assert!(left.left_out.iter().any(|f| f.key.port == 5432));
}

#[test]
fn flow_logs_are_windowed_record_by_record() {
    let d = demo();
    let mut records = Vec::new();
    for i in 0..6 {
        records.extend(conn(T0 + i * 10 * MINUTE, &d.frontend, &d.api, 6, 8080));
    }
    records.extend(conn(T0 + 30 * MINUTE, &d.api, &d.db, 6, 5432));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.jsonl");
    write_jsonl(&path, &records);
    let window = Window {
        since: Some(Timestamp(T0 + 20 * MINUTE)),
        until: Some(Timestamp(T0 + 30 * MINUTE)),
    };
    let h = read_jsonl_window(&path, window).unwrap();
    // Records at 20 min only: 30 min starts at until (exclusive).
    assert_eq!(h.edges.len(), 1);
    assert_eq!(edge_of(&h, "Deployment/frontend", 8080).1.flows(), 1);
    // A record that started before since and ended after it overlaps.
    let h = read_jsonl_window(
        &path,
        Window {
            since: Some(Timestamp(T0 + 30 * MINUTE + 400)),
            until: None,
        },
    )
    .unwrap();
    assert_eq!(h.edges.len(), 2);
    assert_eq!(edge_of(&h, "Deployment/frontend", 8080).1.flows(), 3);
    assert_eq!(read_jsonl(&path).unwrap().edges.len(), 2);
}

fn bucket_store(dir: &std::path::Path, max_bucket_entries: u64) -> HistoryStore {
    HistoryStore::open(
        &dir.join("h.redb"),
        StoreConfig {
            bucket_ms: 10 * MINUTE,
            max_bucket_entries,
            ..StoreConfig::default()
        },
    )
    .unwrap()
}

/// One batch per minute, as the agent writes them: frontend → api every
/// minute for an hour, api → db in minutes 25..35, a denied db → api in
/// minute 50.
fn feed(store: &HistoryStore) {
    let d = demo();
    for m in 0..60 {
        let mut batch = conn(T0 + m * MINUTE, &d.frontend, &d.api, 6, 8080);
        if (25..35).contains(&m) {
            batch.extend(conn(T0 + m * MINUTE, &d.api, &d.db, 6, 5432));
        }
        if m == 50 {
            batch.extend(verdict(
                conn(T0 + m * MINUTE, &d.db, &d.api, 6, 9000),
                FlowVerdict::Denied,
                &["shop/api"],
            ));
        }
        store.merge(&history(&batch)).unwrap();
    }
}

#[test]
fn store_windows_round_to_whole_buckets_and_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let store = bucket_store(dir.path(), 1_000);
    assert_eq!(store.bucket_ms(), 10 * MINUTE);
    feed(&store);
    // The bucket of T0, as the store computes it.
    let b0 = T0 - T0 % (10 * MINUTE);
    let w = Window {
        since: Some(Timestamp(T0 + 40 * MINUTE)),
        until: Some(Timestamp(T0 + 45 * MINUTE)),
    };
    let s = store.load_window(w).unwrap();
    let facts = s.window.clone().unwrap();
    assert_eq!(facts.requested, w);
    assert_eq!(facts.since.unwrap().0 % (10 * MINUTE), 0);
    assert!(facts.since.unwrap().0 <= T0 + 40 * MINUTE);
    assert!(facts.until.unwrap().0 >= T0 + 45 * MINUTE);
    assert_eq!(facts.until.unwrap().0 - facts.since.unwrap().0, 10 * MINUTE);
    assert!(facts.rounded && !facts.partial, "{facts:?}");
    // Only frontend → api, with the flows of its bucket.
    assert_eq!(s.history.edges.len(), 1);
    let (_, fe) = edge_of(&s.history, "Deployment/frontend", 8080);
    let in_bucket = (0..60)
        .filter(|m| {
            let t = T0 + m * MINUTE + 500;
            t >= facts.since.unwrap().0 && t < facts.until.unwrap().0
        })
        .count() as u64;
    assert_eq!(fe.flows(), in_bucket);
    // Workloads of the window: named by its edges, local by their sides,
    // labels from the workloads table.
    assert_eq!(s.history.workloads.len(), 2);
    assert!(s.history.workloads.values().all(|w| w.local));
    assert!(
        s.history
            .workloads
            .values()
            .all(|w| w.labels.contains_key("app"))
    );

    // api → db is in the window around minutes 25..35, the denied edge
    // around 50, with its split kept.
    let s = store
        .load_window(Window {
            since: Some(Timestamp(T0 + 26 * MINUTE)),
            until: Some(Timestamp(T0 + 27 * MINUTE)),
        })
        .unwrap();
    assert!(s.history.edges.keys().any(|k| k.port == 5432));
    let s = store
        .load_window(Window {
            since: Some(Timestamp(T0 + 50 * MINUTE)),
            until: None,
        })
        .unwrap();
    let (_, denied) = edge_of(&s.history, "StatefulSet/db", 9000);
    assert_eq!(denied.denied_flows(), 1);
    assert!(!s.history.edges.keys().any(|k| k.port == 5432));
    // The JSON form carries the window and reads back.
    let text = serde_json::to_string(&s).unwrap();
    let back: Stored = serde_json::from_str(&text).unwrap();
    assert_eq!(back.window, s.window);
    assert_eq!(back.history.edges, s.history.edges);
    // Windows exactly on bucket boundaries are not rounded.
    let exact = Window {
        since: Some(Timestamp(b0 + 10 * MINUTE)),
        until: Some(Timestamp(b0 + 20 * MINUTE)),
    };
    let facts = store.load_window(exact).unwrap().window.unwrap();
    assert!(!facts.rounded && !facts.partial);
    assert_eq!((facts.since, facts.until), (exact.since, exact.until));
    // The whole store, as before.
    assert!(store.load().unwrap().window.is_none());
    assert_eq!(
        store.load_window(Window::ALL).unwrap().history.edges.len(),
        3
    );
}

#[test]
fn bucket_entries_are_bounded_oldest_first_and_windows_before_are_partial() {
    let dir = tempfile::tempdir().unwrap();
    let store = bucket_store(dir.path(), 3);
    feed(&store);
    drop(store);
    let path = dir.path().join("h.redb");
    let s = bulkhead_learn::store::read_window(
        &path,
        Window {
            since: Some(Timestamp(T0)),
            until: None,
        },
    )
    .unwrap();
    let facts = s.window.unwrap();
    assert!(facts.partial, "{facts:?}");
    assert!(
        facts
            .notes
            .iter()
            .any(|n| n.contains("holds whole buckets only from"))
    );
    // At most 3 entries: the newest buckets (frontend → api and the
    // denied edge of the last buckets).
    let kept: u64 = s.history.edges.values().map(|e| e.flows()).sum();
    assert!(kept > 0 && kept <= 3 * 10, "{kept}");
    assert!(!s.history.edges.keys().any(|k| k.port == 5432));
    // The last bucket is still whole: a window inside it is not partial.
    let last = bulkhead_learn::store::read_window(
        &path,
        Window {
            since: Some(Timestamp(T0 + 59 * MINUTE)),
            until: None,
        },
    )
    .unwrap();
    assert!(!last.window.unwrap().partial);
    // The whole history is kept apart from the buckets.
    let all = bulkhead_learn::store::read(&path).unwrap();
    assert_eq!(all.history.edges.len(), 3);
}

#[test]
fn stores_and_json_of_older_versions_still_read() {
    // An edge entry without the denied split: every record allowed.
    let old = r#"{"first_seen":"2026-12-07T10:00:00.000Z","last_seen":"2026-12-07T10:00:01.000Z",
        "at_src":{"flows":2,"packets":4,"bytes":400},"at_dst":{"flows":0,"packets":0,"bytes":0}}"#;
    let s: EdgeStats = serde_json::from_str(old).unwrap();
    assert!(s.denied.is_none());
    assert_eq!(s.allowed_flows(), 2);
    let re = serde_json::to_string(&s).unwrap();
    assert!(
        !re.contains("denied"),
        "unchanged for allowed-only edges: {re}"
    );

    // A store made before buckets existed: its tables only.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.redb");
    let key = r#"{"src":{"workload":{"namespace":"shop","workload":"Deployment/api"}},"dst":{"external":"203.0.113.7"},"protocol":6,"port":443}"#;
    let last = 1_796_637_601_000u64; // 2026-12-07T10:00:01Z
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut edges = txn
                .open_table(redb::TableDefinition::<&str, &str>::new("edges"))
                .unwrap();
            edges.insert(key, old).unwrap();
            let mut lru = txn
                .open_table(redb::TableDefinition::<(u64, &str), ()>::new(
                    "edges_by_last_seen",
                ))
                .unwrap();
            lru.insert((last, key), ()).unwrap();
            txn.open_table(redb::TableDefinition::<&str, &str>::new("workloads"))
                .unwrap();
            let mut counters = txn
                .open_table(redb::TableDefinition::<&str, u64>::new("counters"))
                .unwrap();
            counters.insert("records", 2).unwrap();
        }
        txn.commit().unwrap();
    }
    let window = Window {
        since: Some(Timestamp(last - 3_600_000)),
        until: None,
    };
    // Read-only, as it is: the whole reads, a window is partial.
    let all = bulkhead_learn::store::read(&path).unwrap();
    assert_eq!(all.history.edges.len(), 1);
    let w = bulkhead_learn::store::read_window(&path, window).unwrap();
    let facts = w.window.unwrap();
    assert!(facts.partial);
    assert!(
        facts.notes[0].contains("keeps no time buckets"),
        "{facts:?}"
    );
    // Opened by this version: buckets start after its newest edge.
    let store = HistoryStore::open(&path, StoreConfig::default()).unwrap();
    assert_eq!(store.load().unwrap().history.edges.len(), 1);
    let facts = store.load_window(window).unwrap().window.unwrap();
    assert!(facts.partial, "{facts:?}");
    let later = Window {
        since: Some(Timestamp(last + 3_600_000)),
        until: None,
    };
    assert!(!store.load_window(later).unwrap().window.unwrap().partial);

    // The JSON of an older agent (no window, no split) reads.
    let json = format!(
        r#"{{"schema":"bulkhead.history/v1","records":2,"evicted":0,
        "skipped":{{"events":0,"unknown_endpoint":0}},
        "edges":[{{"key":{key},"stats":{old}}}],"workloads":[]}}"#
    );
    let s: Stored = serde_json::from_str(&json).unwrap();
    assert!(s.window.is_none());
    assert_eq!(s.history.edges.len(), 1);
}
