//! The history exporter feeds a store that others read meanwhile.

use std::sync::Arc;

use bulkhead_flows::export::Exporter;
use bulkhead_flows::record::Timestamp;
use bulkhead_learn::edge::History;
use bulkhead_learn::{HistoryExporter, HistoryExporterConfig, HistoryStore, StoreConfig};
use bulkhead_testkit::flow_record as sample;

#[test]
fn a_shared_store_reads_while_the_exporter_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        Arc::new(HistoryStore::open(&dir.path().join("h.redb"), StoreConfig::default()).unwrap());
    let config = HistoryExporterConfig {
        batch_records: 1,
        ..Default::default()
    };
    let mut exp = Box::new(HistoryExporter::start(Arc::clone(&store), config).unwrap());
    let mut expected = History::default();
    let mut seen = 0;
    for i in 0..200u64 {
        let mut r = sample();
        r.dst.port = 1 + (i % 50) as u16;
        r.end = Timestamp(r.end.0 + i);
        expected.add_record(&r);
        exp.export(&Arc::new(r));
        // Every load is one committed state: never fewer records.
        let now = store.load().unwrap().history.records;
        assert!(now >= seen && now <= i + 1, "{now} after {seen}");
        seen = now;
    }
    assert!(exp.finish().holds());
    let stored = store.load().unwrap().history;
    assert_eq!(stored.edges, expected.edges);
    assert_eq!(stored.workloads, expected.workloads);
    assert_eq!(stored.records, 200);
}
