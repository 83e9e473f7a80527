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

// Tested in `controller/tests/memory.rs`, a process of its own: resident
// memory is the whole process's, which other tests running beside it move.
