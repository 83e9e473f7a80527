//! The network map's metrics, appended to the agent's `/metrics`:
//! `bulkhead_map_entries` and `bulkhead_map_buckets` (what it holds),
//! `bulkhead_map_evicted_buckets_total` (to stay within
//! `--map-max-entries`), `bulkhead_map_expired_buckets_total` (past
//! `--map-retention`), `bulkhead_map_lost_records_total` (records that fit
//! nowhere), `bulkhead_map_followers` (live `/v1/map/follow` streams). What
//! its exporter lost (queue full) is in the pipeline's exporter metrics
//! (`stage="map"`).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use bulkhead_learn::map::MapStats;

/// `text` (an OpenMetrics exposition, ending in `# EOF` or not) with the
/// map's metrics `stats` and `followers` inserted before its end.
pub fn append(text: String, stats: MapStats, followers: usize) -> String {
    let mut registry = Registry::default();
    let gauge = |v: usize| {
        let g: Gauge = Gauge::default();
        g.set(i64::try_from(v).unwrap_or(i64::MAX));
        g
    };
    let counter = |v: u64| {
        let c: Counter = Counter::default();
        c.inc_by(v);
        c
    };
    registry.register(
        "bulkhead_map_entries",
        "Edge-bucket entries the network map holds",
        gauge(stats.entries),
    );
    registry.register(
        "bulkhead_map_buckets",
        "Time buckets the network map holds",
        gauge(stats.buckets),
    );
    registry.register(
        "bulkhead_map_evicted_buckets",
        "Network map buckets evicted whole to stay within its entries",
        counter(stats.evicted_buckets),
    );
    registry.register(
        "bulkhead_map_expired_buckets",
        "Network map buckets dropped past its retention",
        counter(stats.expired_buckets),
    );
    registry.register(
        "bulkhead_map_lost_records",
        "Flow records the network map could not hold",
        counter(stats.lost_records),
    );
    registry.register(
        "bulkhead_map_followers",
        "Live network map follow streams",
        gauge(followers),
    );
    let mut out = match text.strip_suffix("# EOF\n") {
        Some(body) => body.to_owned(),
        None => text,
    };
    prometheus_client::encoding::text::encode_registry(&mut out, &registry)
        .expect("writing to a String cannot fail");
    prometheus_client::encoding::text::encode_eof(&mut out)
        .expect("writing to a String cannot fail");
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_map_metrics_go_before_the_end() {
        let stats = bulkhead_learn::map::MapStats {
            buckets: 2,
            entries: 7,
            evicted_buckets: 3,
            expired_buckets: 4,
            lost_records: 5,
            revision: 9,
        };
        let text = super::append(
            "# TYPE bulkhead_up gauge\nbulkhead_up 1\n# EOF\n".into(),
            stats,
            1,
        );
        for line in [
            "bulkhead_map_entries 7\n",
            "bulkhead_map_buckets 2\n",
            "bulkhead_map_evicted_buckets_total 3\n",
            "bulkhead_map_expired_buckets_total 4\n",
            "bulkhead_map_lost_records_total 5\n",
            "bulkhead_map_followers 1\n",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        assert!(text.starts_with("# TYPE bulkhead_up gauge\n"));
        assert!(text.ends_with("# EOF\n"));
        assert_eq!(text.matches("# EOF").count(), 1);
    }
}
