//! The flow cache's merge cost below its capacity and at it, side by side
//! in one process, on the agent's `FlowCache` alone (no kernel, no
//! threads): every merge is a new flow, as in the capacity runs.
//!
//! Below capacity a merge inserts; at capacity it first evicts one flow
//! (`FlowCache::evict`, the least recently seen of the first few in the
//! map's iteration order). The windows after the cache fills show whether
//! an eviction's cost stays flat as evictions accumulate.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use bulkhead_common::{CtKey, FLOW_F_NEW, FLOW_SIDE_EGRESS, FlowKey, FlowValue, PROTO_UDP};
use bulkhead_flows::aggregate::{AggregateConfig, FlowCache};
use bulkhead_policy::compile::maps::abi_addr;
use serde::Serialize;

use super::policy::Tuples;

/// Merge cost in one window of merges.
#[derive(Clone, Debug, Serialize)]
pub struct Window {
    /// Evictions before the window began (0: below capacity).
    pub evicted_before: u64,
    /// Merges timed.
    pub merges: u64,
    /// Mean ns per merge.
    pub ns_per_merge: f64,
}

/// The probe's result.
#[derive(Clone, Debug, Serialize)]
pub struct CacheProbe {
    /// Flows the cache holds at most (the agent's default).
    pub capacity: usize,
    /// Merges into a cache with room (the first `window` flows).
    pub below: Window,
    /// Successive windows at capacity, each merge evicting one flow.
    pub at_capacity: Vec<Window>,
}

impl CacheProbe {
    /// Last window at capacity over the window below it.
    pub fn ratio(&self) -> Option<f64> {
        let last = self.at_capacity.last()?;
        Some(last.ns_per_merge / self.below.ns_per_merge.max(1e-9))
    }
}

fn key(n: u64) -> FlowKey {
    let (sport, dst, dport) = Tuples::Distinct.tuple(n);
    FlowKey {
        tuple: CtKey {
            src: abi_addr(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))),
            dst: abi_addr(IpAddr::V4(dst)),
            sport,
            dport,
            proto: PROTO_UDP,
            _pad: [0; 3],
        },
        ifindex: 1,
        side: FLOW_SIDE_EGRESS,
        _pad: [0; 3],
    }
}

fn value(n: u64) -> FlowValue {
    FlowValue {
        first_seen_ns: 1_000_000 + n * 10_000,
        last_seen_ns: 1_000_000 + n * 10_000,
        packets_orig: 1,
        bytes_orig: 50,
        revision: 1,
        flags: FLOW_F_NEW,
        ..FlowValue::default()
    }
}

/// Merges `window` new flows into an empty cache of the default capacity,
/// fills it (untimed), then `windows` more windows of `window` new flows.
pub fn measure(window: u64, windows: usize) -> CacheProbe {
    let config = AggregateConfig::default();
    let capacity = config.capacity;
    let mut cache = FlowCache::new(config);
    let mut out = Vec::with_capacity(4096);
    let mut n = 0u64;
    let mut timed = |cache: &mut FlowCache, n: &mut u64, count: u64| {
        let evicted_before = cache.stats().evicted;
        let start = Instant::now();
        for _ in 0..count {
            cache.merge(key(*n), &value(*n), &mut out);
            *n += 1;
            if out.len() >= 4096 {
                out.clear();
            }
        }
        Window {
            evicted_before,
            merges: count,
            ns_per_merge: start.elapsed().as_nanos() as f64 / count.max(1) as f64,
        }
    };
    let below = timed(&mut cache, &mut n, window.min(capacity as u64 / 2));
    let mut fill = Vec::new();
    while cache.len() < capacity {
        cache.merge(key(n), &value(n), &mut fill);
        n += 1;
    }
    let at_capacity = (0..windows)
        .map(|_| timed(&mut cache, &mut n, window))
        .collect();
    CacheProbe {
        capacity,
        below,
        at_capacity,
    }
}
