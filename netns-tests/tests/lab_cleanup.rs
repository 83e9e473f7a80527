//! `bulkhead lab down` after things went wrong: servers killed, state file
//! lost. It must still remove every namespace, veth and process.

mod lab_support;

use std::path::Path;

use lab_support::{Lab, bulkhead, pods_yaml, privileged, serial, snapshot};

fn server_pids(state: &Path) -> Vec<u32> {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state).expect("state file")).unwrap();
    v["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["server_pid"].as_u64().expect("a server PID") as u32)
        .collect()
}

fn alive(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())
}

#[test]
fn down_cleans_up_after_servers_die_and_the_state_file_is_lost() {
    if !privileged() {
        return;
    }
    let _serial = serial();
    let before = snapshot();
    {
        let lab = Lab::new("tcr", &pods_yaml());
        assert!(lab.up(&["--external", "192.0.2.20"]).status.success());
        let pids = server_pids(&lab.state_path());
        assert_eq!(pids.len(), 4);
        assert!(pids.iter().all(|p| alive(*p)));

        // One server crashes; the state file is lost.
        let status = std::process::Command::new("kill")
            .args(["-KILL", &pids[0].to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        std::fs::remove_file(lab.state_path()).unwrap();

        // Down finds the lab by its namespaces' prefix.
        let out = bulkhead(&["lab", "down", "--name", "tcr"]);
        assert!(out.status.success());
        for p in &pids {
            assert!(!alive(*p), "server {p} survived lab down");
        }
    }
    assert_eq!(snapshot(), before, "lab down left something behind");
}

#[test]
fn up_refuses_a_lab_whose_namespaces_exist_and_down_removes_them() {
    if !privileged() {
        return;
    }
    let _serial = serial();
    let before = snapshot();
    {
        let lab = Lab::new("tst", &pods_yaml());
        // A leftover namespace of a crashed lab (no state file).
        let ns = "bh-tst-p7";
        assert!(
            std::process::Command::new("ip")
                .args(["netns", "add", ns])
                .status()
                .unwrap()
                .success()
        );
        let out = lab.up(&[]);
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains(ns));
        assert!(bulkhead(&["lab", "down", "--name", "tst"]).status.success());
        assert!(!Path::new("/run/netns").join(ns).exists());

        // Bad input fails before anything is made.
        let out = lab.up(&["--external", "10.244.9.9"]);
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("inside pod CIDR"));
    }
    assert_eq!(snapshot(), before, "lab down left something behind");
}
