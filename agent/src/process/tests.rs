use super::*;

#[test]
fn the_state_is_read_after_the_last_parenthesis() {
    let line = "4242 (bulkhead) S 1 4242 4242 0 -1 4194560 1000 0 0 0 5 3 0 0 20 0 9 0";
    assert_eq!(parse_stat_state(line), Some('S'));
    assert_eq!(parse_stat_state("17 (bulkhead) Z 1 17 17 0 -1"), Some('Z'));
    // A name with spaces and parentheses cannot fool it.
    assert_eq!(parse_stat_state("9 (a) R (b) ) Z 1 2 3"), Some('Z'));
    assert_eq!(parse_stat_state("9 (x y) D 1\n"), Some('D'));
}

#[test]
fn malformed_stat_lines_give_nothing() {
    assert_eq!(parse_stat_state(""), None);
    assert_eq!(parse_stat_state("12 (bulkhead"), None);
    assert_eq!(parse_stat_state("12 (bulkhead)"), None);
    assert_eq!(parse_stat_state("12 (bulkhead) Sx 1"), None);
}

#[test]
fn this_process_is_running_and_others_are_not_bulkhead() {
    let me = std::process::id();
    assert!(
        matches!(state(me), Some('R' | 'S' | 'D')),
        "{:?}",
        state(me)
    );
    // The test binary is not named bulkhead.
    assert!(!is_bulkhead(me));
    assert!(!is_bulkhead(0));
    assert!(!is_bulkhead(u32::MAX));
}

#[test]
fn a_zombie_is_not_running() {
    // A child that exited and is not reaped yet is a zombie.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while state(pid) != Some('Z') && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(state(pid), Some('Z'));
    child.wait().unwrap();
    assert_eq!(state(pid), None);
}

#[test]
fn a_killed_bulkhead_is_not_running_while_it_is_a_zombie() {
    // `sleep` under the name bulkhead, so its comm is bulkhead.
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join(COMM);
    std::fs::copy("/bin/sleep", &exe).unwrap();
    let mut child = loop {
        // ETXTBSY: another test thread forked while the copy was open.
        match std::process::Command::new(&exe).arg("30").spawn() {
            Err(e) if e.raw_os_error() == Some(26) => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            r => break r.unwrap(),
        }
    };
    let pid = child.id();
    assert!(is_bulkhead(pid));
    child.kill().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while state(pid) != Some('Z') && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert!(!is_bulkhead(pid), "a zombie is not running");
    child.wait().unwrap();
    assert!(!is_bulkhead(pid));
}
