//! The content hash: what it covers, and that it is bounded like the load.

use std::os::unix::fs::symlink;
use std::time::Duration;

use super::*;
use crate::testfs::{dir_with as tree, ends_within};

/// A bound that catches a hang (not a speed target).
const HANG: Duration = Duration::from_secs(30);

#[test]
fn the_hash_covers_the_manifests_the_loader_reads() {
    let dir = tree(&[("a.yaml", "a"), ("sub/b.json", "{}")]);
    let h = content_hash(dir.path());
    assert_eq!(h.len(), 16);
    assert_eq!(content_hash(dir.path()), h, "stable");
    // Files the loader never reads do not change it.
    std::fs::write(dir.path().join("notes.txt"), "n").unwrap();
    std::fs::write(dir.path().join(".a.yaml.swp"), "s").unwrap();
    assert_eq!(content_hash(dir.path()), h);
    // Content and names do.
    std::fs::write(dir.path().join("a.yaml"), "A").unwrap();
    let h2 = content_hash(dir.path());
    assert_ne!(h2, h);
    std::fs::rename(dir.path().join("a.yaml"), dir.path().join("c.yaml")).unwrap();
    assert_ne!(content_hash(dir.path()), h2);
}

#[test]
fn links_to_the_directory_itself_neither_hang_nor_change_the_hash() {
    let dir = tree(&[("a.yaml", "a"), ("sub/b.yaml", "b")]);
    let h = content_hash(dir.path());
    symlink(".", dir.path().join("self1")).unwrap();
    symlink(".", dir.path().join("self2")).unwrap();
    symlink("..", dir.path().join("sub/up")).unwrap();
    let root = dir.path().to_owned();
    assert_eq!(ends_within(HANG, move || content_hash(&root)), h);
}

#[test]
fn a_walk_over_a_limit_hashes_its_error() {
    let dir = tree(&[("a.yaml", "a")]);
    let limits = Limits {
        max_file_bytes: 100,
        ..Limits::DEFAULT
    };
    let ok = content_hash_within(dir.path(), &limits);
    std::fs::write(dir.path().join("big.yaml"), "#".repeat(101)).unwrap();
    let over = content_hash_within(dir.path(), &limits);
    assert_ne!(over, ok, "the hash changes, so the agent loads and reports");
    assert_eq!(content_hash_within(dir.path(), &limits), over, "stable");
    // Another error, another hash.
    std::fs::write(dir.path().join("big.yaml"), "#".repeat(102)).unwrap();
    assert_eq!(content_hash_within(dir.path(), &limits), over, "same error");
    std::fs::rename(dir.path().join("big.yaml"), dir.path().join("huge.yaml")).unwrap();
    assert_ne!(content_hash_within(dir.path(), &limits), over);
    std::fs::remove_file(dir.path().join("huge.yaml")).unwrap();
    assert_eq!(content_hash_within(dir.path(), &limits), ok);
}

#[test]
fn a_huge_file_is_not_read() {
    let dir = tree(&[("a.yaml", "a")]);
    let (ok, root) = (content_hash(dir.path()), dir.path().to_owned());
    let f = std::fs::File::create(dir.path().join("huge.yaml")).unwrap();
    f.set_len(1 << 30).unwrap();
    assert_ne!(
        ends_within(HANG, move || content_hash(&root)),
        ok,
        "its error is hashed"
    );
}
