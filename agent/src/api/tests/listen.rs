//! The Unix socket: stale, live and foreign files, and removal at stop.

use std::os::unix::net::UnixListener;

use super::*;

#[test]
fn stale_sockets_are_replaced_and_live_ones_and_files_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.sock");
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let config = ApiConfig {
        socket: Some(path.clone()),
        tcp: None,
        ..ApiConfig::default()
    };
    let api = start(config.clone(), fake(0));
    assert!(matches!(
        Api::start(config.clone(), fake(0), test_runtime().handle()),
        Err(ApiError::SocketInUse { .. })
    ));
    assert!(
        get_unix(&path, "/healthz").is_ok(),
        "the first still serves"
    );
    drop(api);
    assert!(!path.exists());

    std::fs::write(&path, "not a socket").unwrap();
    assert!(matches!(
        Api::start(config, fake(0), test_runtime().handle()),
        Err(ApiError::NotASocket { .. })
    ));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "not a socket");
}

#[test]
fn stop_leaves_a_newer_socket_alone() {
    let dir = tempfile::tempdir().unwrap();
    let api = start(unix_config(dir.path()), fake(0));
    let sock = api.socket_path().unwrap().to_owned();
    std::fs::remove_file(&sock).unwrap();
    let _other = UnixListener::bind(&sock).unwrap();
    stop(api);
    assert!(sock.exists());
}
