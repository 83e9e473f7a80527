use std::os::unix::fs::PermissionsExt;

use super::*;

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

fn loosen(path: &Path, mode: u32) {
    std::fs::set_permissions(path, Permissions::from_mode(mode)).unwrap();
}

#[test]
fn new_files_and_directories_are_owner_only() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("a/b");
    create_dir_all(&dir).unwrap();
    assert_eq!(mode(&t.path().join("a")), 0o700);
    assert_eq!(mode(&dir), 0o700);
    write(&dir.join("w"), b"x").unwrap();
    open_append(&dir.join("l")).unwrap();
    create(&dir.join("c")).unwrap();
    open_rw(&dir.join("db")).unwrap();
    write_atomic(&dir.join("s"), &dir.join("s.tmp"), b"{}").unwrap();
    for f in ["w", "l", "c", "db", "s"] {
        assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
    }
    assert!(!dir.join("s.tmp").exists());
}

#[test]
fn reopened_files_and_own_directories_are_tightened() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("d");
    std::fs::create_dir(&dir).unwrap();
    loosen(&dir, 0o755);
    own_dir(&dir).unwrap();
    assert_eq!(mode(&dir), 0o700);
    let shared = t.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    loosen(&shared, 0o755);
    create_dir_all(&shared.join("x")).unwrap();
    assert_eq!(mode(&shared), 0o755, "an existing parent is left alone");
    for (name, open) in [
        ("log", open_append as fn(&Path) -> io::Result<File>),
        ("file", create),
        ("db", open_rw),
    ] {
        let p = dir.join(name);
        std::fs::write(&p, "old").unwrap();
        loosen(&p, 0o644);
        open(&p).unwrap();
        assert_eq!(mode(&p), 0o600, "{name}");
    }
    let tmp = dir.join("state.tmp");
    std::fs::write(&tmp, "stale").unwrap();
    loosen(&tmp, 0o666);
    write_atomic(&dir.join("state"), &tmp, b"new").unwrap();
    assert_eq!(mode(&dir.join("state")), 0o600);
    assert_eq!(std::fs::read(dir.join("state")).unwrap(), b"new");
}

#[test]
fn devices_are_not_tightened() {
    let null = Path::new("/dev/null");
    let before = mode(null);
    open_append(null).unwrap();
    assert_eq!(mode(null), before);
}
