use std::os::unix::fs::PermissionsExt;

use super::*;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_state_file_and_its_directory_are_owner_only() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("agent");
    let path = dir.join("pins.json");
    let state = AgentState {
        pid: 7,
        ..AgentState::default()
    };
    state.write_at(&path).unwrap();
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&path), 0o600);
    // Made looser by an older version: fixed by the next write.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    state.write_at(&path).unwrap();
    assert_eq!((mode(&dir), mode(&path)), (0o700, 0o600));
    let back: AgentState = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(back, state);
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        1,
        "no temporary file left"
    );
}
