use std::os::unix::fs::symlink;
use std::time::Duration;

use super::*;
use crate::testfs::{dir_with as tree, ends_within};

/// A bound that catches a hang (not a speed target).
const HANG: Duration = Duration::from_secs(30);

/// The walk's files relative to `root`.
fn rel(root: &Path, files: &[PathBuf]) -> Vec<String> {
    files
        .iter()
        .map(|f| f.strip_prefix(root).unwrap().display().to_string())
        .collect()
}

fn small(max_file_bytes: u64, max_total_bytes: u64) -> Limits {
    Limits {
        max_file_bytes,
        max_total_bytes,
        ..Limits::DEFAULT
    }
}

#[test]
fn two_links_to_the_directory_itself_add_nothing() {
    let dir = tree(&[("a.yaml", "a"), ("sub/b.yml", "b")]);
    symlink(".", dir.path().join("self1")).unwrap();
    symlink(".", dir.path().join("self2")).unwrap();
    symlink(".", dir.path().join("sub/again")).unwrap();
    let root = dir.path().to_owned();
    let files = ends_within(HANG, move || walk(&root, &Limits::DEFAULT)).unwrap();
    assert_eq!(rel(dir.path(), &files), ["a.yaml", "sub/b.yml"]);
}

#[test]
fn a_loop_deeper_down_is_walked_once() {
    let dir = tree(&[("a/b/c/x.yaml", "x"), ("a/y.json", "{}")]);
    symlink("../..", dir.path().join("a/b/c/up")).unwrap();
    symlink(dir.path(), dir.path().join("a/b/root")).unwrap();
    let files = walk(dir.path(), &Limits::DEFAULT).unwrap();
    assert_eq!(rel(dir.path(), &files), ["a/b/c/x.yaml", "a/y.json"]);
}

#[test]
fn linked_files_and_directories_are_read_once_each() {
    let outside = tree(&[("policy.yaml", "p"), ("dir/q.yaml", "q")]);
    let dir = tree(&[("a.yaml", "a")]);
    symlink(
        outside.path().join("policy.yaml"),
        dir.path().join("linked.yaml"),
    )
    .unwrap();
    symlink(outside.path().join("dir"), dir.path().join("d1")).unwrap();
    symlink(outside.path().join("dir"), dir.path().join("d2")).unwrap();
    let files = walk(dir.path(), &Limits::DEFAULT).unwrap();
    assert_eq!(
        rel(dir.path(), &files),
        ["a.yaml", "d1/q.yaml", "linked.yaml"]
    );
    let mut reader = Reader::new(Limits::DEFAULT);
    assert_eq!(reader.read(&dir.path().join("linked.yaml")).unwrap(), b"p");
}

#[test]
fn a_configmap_volume_gives_each_key_once() {
    // What the kubelet makes: ..<timestamp>/ with the data, ..data -> it,
    // and one link per key through ..data.
    let dir = tree(&[
        ("..2024_01_01/net.yaml", "n"),
        ("..2024_01_01/pods.yaml", "p"),
    ]);
    symlink("..2024_01_01", dir.path().join("..data")).unwrap();
    for key in ["net.yaml", "pods.yaml"] {
        symlink(format!("..data/{key}"), dir.path().join(key)).unwrap();
    }
    let files = walk(dir.path(), &Limits::DEFAULT).unwrap();
    assert_eq!(rel(dir.path(), &files), ["net.yaml", "pods.yaml"]);
}

#[test]
fn hidden_non_manifest_and_special_files_are_skipped() {
    let dir = tree(&[
        ("a.yaml", "a"),
        (".hidden.yaml", "h"),
        (".git/x.yaml", "g"),
        ("notes.txt", "n"),
    ]);
    nix::unistd::mkfifo(&dir.path().join("fifo.yaml"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    symlink("/dev/zero", dir.path().join("zero.yaml")).unwrap();
    symlink("/nonexistent", dir.path().join("broken.txt")).unwrap();
    let files = walk(dir.path(), &Limits::DEFAULT).unwrap();
    assert_eq!(rel(dir.path(), &files), ["a.yaml"]);
    // Read directly, they are refused rather than read forever.
    let mut reader = Reader::new(Limits::DEFAULT);
    for special in ["fifo.yaml", "zero.yaml"] {
        let err = reader.read(&dir.path().join(special)).unwrap_err();
        assert!(matches!(err, WalkError::NotRegular { .. }), "{err}");
    }
}

#[test]
fn a_broken_link_with_a_manifest_name_is_an_error() {
    let dir = tree(&[("a.yaml", "a")]);
    symlink("/nonexistent", dir.path().join("gone.yaml")).unwrap();
    let err = walk(dir.path(), &Limits::DEFAULT).unwrap_err();
    assert!(err.to_string().contains("gone.yaml"), "{err}");
}

#[test]
fn a_root_file_is_read_whatever_its_name() {
    let dir = tree(&[("manifests.txt", "m")]);
    let root = dir.path().join("manifests.txt");
    assert_eq!(walk(&root, &Limits::DEFAULT).unwrap(), [root]);
}

#[test]
fn a_file_over_the_limit_is_an_error_naming_it_before_anything_is_read() {
    let dir = tree(&[("a.yaml", "a"), ("big.yaml", &"#".repeat(101))]);
    let err = walk(dir.path(), &small(100, 1000)).unwrap_err();
    assert!(
        matches!(&err, WalkError::FileTooLarge { path, limit: Bytes(100) } if path.ends_with("big.yaml")),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("big.yaml") && text.contains("100 bytes"),
        "{text}"
    );
    // Exactly at the limit is fine.
    std::fs::write(dir.path().join("big.yaml"), "#".repeat(100)).unwrap();
    assert_eq!(walk(dir.path(), &small(100, 1000)).unwrap().len(), 2);
}

#[test]
fn a_huge_sparse_file_fails_at_once() {
    let dir = tree(&[("a.yaml", "a")]);
    let big = std::fs::File::create(dir.path().join("huge.yaml")).unwrap();
    big.set_len(1 << 30).unwrap();
    let err = walk(dir.path(), &Limits::DEFAULT).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("huge.yaml: larger than 4 MiB, the limit for one manifest file"),
        "{err}"
    );
}

#[test]
fn files_together_over_the_limit_are_an_error() {
    let dir = tree(&[("a.yaml", &"a".repeat(60)), ("b.yaml", &"b".repeat(60))]);
    let err = walk(dir.path(), &small(100, 100)).unwrap_err();
    assert!(
        matches!(&err, WalkError::TotalTooLarge { path, limit: Bytes(100) } if path.ends_with("b.yaml")),
        "{err:?}"
    );
    assert!(err.to_string().contains("all of them together"), "{err}");
}

#[test]
fn a_file_that_grows_after_the_walk_is_caught_while_reading() {
    let dir = tree(&[("a.yaml", "a")]);
    let path = dir.path().join("a.yaml");
    let limits = small(100, 1000);
    assert_eq!(
        walk(dir.path(), &limits).unwrap(),
        std::slice::from_ref(&path)
    );
    let mut reader = Reader::new(limits);
    std::fs::write(&path, "#".repeat(5000)).unwrap();
    assert!(matches!(
        reader.read(&path).unwrap_err(),
        WalkError::FileTooLarge { .. }
    ));
    // And the total counts what was actually read.
    std::fs::write(&path, "#".repeat(100)).unwrap();
    let mut reader = Reader::new(small(100, 150));
    assert_eq!(reader.read(&path).unwrap().len(), 100);
    let mut chunks = 0;
    let err = reader.stream(&path, |_| chunks += 1).unwrap_err();
    assert!(matches!(err, WalkError::TotalTooLarge { .. }), "{err:?}");
    assert_eq!(reader.total(), 100);
}

#[test]
fn streaming_stops_one_byte_past_the_limit() {
    // A file that keeps growing (here: larger than its size said) is never
    // read further than the limit and one byte.
    let dir = tree(&[("a.yaml", &"#".repeat(1 << 20))]);
    let path = dir.path().join("a.yaml");
    let mut reader = Reader::new(small(300_000, 1 << 30));
    let file = std::fs::File::open(&path).unwrap();
    let mut seen = 0u64;
    let err = reader
        .pump(&path, file, |c| seen += c.len() as u64)
        .unwrap_err();
    assert!(matches!(err, WalkError::FileTooLarge { .. }), "{err:?}");
    assert!(seen <= 300_000, "{seen}");
}

#[test]
fn depth_is_bounded() {
    let dir = tree(&[("1/2/3/4/a.yaml", "a")]);
    let limits = Limits {
        max_depth: 3,
        ..Limits::DEFAULT
    };
    let err = walk(dir.path(), &limits).unwrap_err();
    assert!(
        matches!(&err, WalkError::TooDeep { path, limit: 3 } if path.ends_with("1/2/3/4")),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("more than 3 directory levels"),
        "{err}"
    );
    let limits = Limits {
        max_depth: 4,
        ..Limits::DEFAULT
    };
    assert_eq!(walk(dir.path(), &limits).unwrap().len(), 1);
}

#[test]
fn entries_are_bounded() {
    let names: Vec<(String, &str)> = (0..20).map(|i| (format!("f{i}.txt"), "")).collect();
    let files: Vec<(&str, &str)> = names.iter().map(|(n, t)| (n.as_str(), *t)).collect();
    let dir = tree(&files);
    let limits = Limits {
        max_entries: 19,
        ..Limits::DEFAULT
    };
    let err = walk(dir.path(), &limits).unwrap_err();
    assert!(
        matches!(&err, WalkError::TooManyEntries { root, limit: 19 } if root == dir.path()),
        "{err:?}"
    );
    let limits = Limits {
        max_entries: 20,
        ..Limits::DEFAULT
    };
    assert!(walk(dir.path(), &limits).unwrap().is_empty());
}

#[test]
fn byte_counts_read_as_people_write_them() {
    assert_eq!(Bytes(4 << 20).to_string(), "4 MiB");
    assert_eq!(Bytes(64 << 20).to_string(), "64 MiB");
    assert_eq!(Bytes(100).to_string(), "100 bytes");
    assert_eq!(Bytes((1 << 20) + 1).to_string(), "1048577 bytes");
}
