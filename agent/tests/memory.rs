//! `agent::memory::release_freed` returns freed heap to the kernel. In a
//! test binary of its own, with one test: resident memory is the whole
//! process's, and tests running beside it in one process would move it.

use bulkhead_agent::memory::release_freed;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

#[test]
fn freed_memory_goes_back_to_the_kernel() {
    // Many small allocations (as a parsed manifest tree is), a few of
    // which stay (as the model in force does), so the heap can neither
    // shrink from its top nor drop whole arenas.
    let chunks: Vec<Vec<u8>> = (0..100_000).map(|i| vec![i as u8; 512]).collect();
    let high = rss_kib();
    let kept: Vec<Vec<u8>> = chunks
        .into_iter()
        .enumerate()
        .filter_map(|(i, c)| (i % 64 == 0).then_some(c))
        .collect();
    release_freed();
    let low = rss_kib();
    if cfg!(target_env = "gnu") {
        assert!(low + 25_000 < high, "{high} KiB -> {low} KiB");
    }
    drop(kept);
}
