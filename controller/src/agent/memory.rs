//! Gives freed heap memory back to the kernel. A failed manifest load
//! drops everything it read, but glibc's allocator keeps freed pages in
//! its heap, so the agent's resident memory would stay at the load's peak
//! (tens to hundreds of MiB for a tree near the walk's limits) until the
//! next load. `malloc_trim(0)` returns them. Elsewhere (musl, other
//! allocators) this does nothing.

/// Returns the heap's free pages to the kernel (glibc), else nothing.
pub fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it
    // touches no memory of ours and is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
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
        super::release_freed();
        let low = rss_kib();
        if cfg!(target_env = "gnu") {
            assert!(low + 25_000 < high, "{high} KiB -> {low} KiB");
        }
        drop(kept);
    }
}
