//! Temporary directories for the unit tests of `source` (the same helpers
//! as `bulkhead-testkit`'s, which unit tests here cannot use: the testkit
//! links this crate's non-test build, so its types would be other types).

/// A temporary directory holding `files` (relative paths; parents made).
pub fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

/// Runs `f` on a thread of its own and returns its result; panics if it
/// has not returned within `limit` (a hang, not a speed target).
pub fn ends_within<T: Send + 'static>(
    limit: std::time::Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("still running after {limit:?}"))
}
