//! What the toolkit's privileged tests share: the root check, unique names,
//! and `ip` as an independent witness of what exists.

#![allow(dead_code)]

use std::process::Command;

/// Whether this test can run (root); otherwise says why, or panics when
/// `BULKHEAD_REQUIRE_PRIVILEGED` is set (as `cargo xtask test` does as root).
pub fn privileged() -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var_os("BULKHEAD_REQUIRE_PRIVILEGED").is_some_and(|v| v != "0" && !v.is_empty()) {
        panic!("privileged test cannot run: not root; BULKHEAD_REQUIRE_PRIVILEGED is set");
    }
    eprintln!("skipping privileged test: not running as root");
    false
}

/// A namespace name unique to this process and `tag`.
pub fn name(tag: &str) -> String {
    format!("{}{tag}", prefix())
}

/// The prefix of every namespace this test process makes.
pub fn prefix() -> String {
    format!("nkt-{}-", std::process::id())
}

/// `ip netns list`, as iproute2 sees it (names only).
pub fn ip_netns_list() -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("run ip");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// Asserts that neither iproute2 nor /run/netns knows `name`.
pub fn assert_gone(name: &str) {
    assert!(
        !ip_netns_list().iter().any(|n| n == name),
        "{name} still in ip netns list"
    );
    assert!(
        !std::path::Path::new("/run/netns").join(name).exists(),
        "/run/netns/{name} still exists"
    );
}
