//! The history store: its JSON form round-trips, its file is owner-only.

use std::path::Path;

use bulkhead_learn::store::{HistoryStore, SCHEMA, StoreConfig, Stored};
use bulkhead_testkit::learn as test_support;

#[test]
fn json_round_trips_the_store_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let store = HistoryStore::open(
        &dir.path().join("h.redb"),
        StoreConfig {
            max_edges: 6,
            ..StoreConfig::default()
        },
    )
    .unwrap();
    for b in test_support::batches() {
        store.merge(&b).unwrap();
    }
    let loaded = store.load().unwrap();
    assert_eq!(loaded.evicted, 1, "the bound is exercised");
    let text = serde_json::to_string(&loaded).unwrap();
    assert!(
        text.starts_with(r#"{"schema":"bulkhead.history/v1","#),
        "{text}"
    );
    let back: Stored = serde_json::from_str(&text).unwrap();
    let (a, b) = (&loaded.history, &back.history);
    assert_eq!(a.edges, b.edges);
    assert_eq!(a.workloads, b.workloads);
    assert_eq!((a.records, a.skipped), (b.records, b.skipped));
    assert_eq!(loaded.evicted, back.evicted);
    assert_eq!(serde_json::to_string(&back).unwrap(), text, "one text");

    let other = text.replace(SCHEMA, "bulkhead.history/v0");
    let err = serde_json::from_str::<Stored>(&other).unwrap_err();
    assert!(err.to_string().contains("unsupported schema"), "{err}");
}

#[test]
fn the_database_file_is_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.redb");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let store = HistoryStore::open(&path, StoreConfig::default()).unwrap();
    for b in test_support::batches() {
        store.merge(&b).unwrap();
    }
    drop(store);
    assert_eq!(mode(&path), 0o600);
    // Made world-readable by an older version: tightened on open, data kept.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let store = HistoryStore::open(&path, StoreConfig::default()).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert!(!store.load().unwrap().history.edges.is_empty());
}
