//! `bulkhead lab down` after things went wrong: servers killed, state file
//! lost, also of a lab of several nodes with an agent each. It must still
//! remove every namespace, veth, process, mount and pin.

mod lab_support;

use std::path::Path;

use lab_support::{Lab, bulkhead, pods_yaml, privileged, processes_with, serial, snapshot};

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
fn up_replaces_leftover_namespaces_of_a_crashed_lab() {
    if !privileged() {
        return;
    }
    let _serial = serial();
    let before = snapshot();
    {
        let lab = Lab::new("tst", &pods_yaml());
        // A leftover namespace of a crashed lab (no state file, no
        // process in it): the next `up` removes it, says so, and builds.
        let ns = "bh-tst-p7";
        assert!(
            std::process::Command::new("ip")
                .args(["netns", "add", ns])
                .status()
                .unwrap()
                .success()
        );
        let out = lab.up(&[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(
            stderr.contains("left behind") && stderr.contains(ns),
            "{stderr}"
        );
        assert!(!Path::new("/run/netns").join(ns).exists());
        assert!(bulkhead(&["lab", "down", "--name", "tst"]).status.success());

        // Bad input fails before anything is made.
        let out = lab.up(&["--external", "10.244.9.9"]);
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("inside pod CIDR"));
    }
    assert_eq!(snapshot(), before, "lab down left something behind");
}

#[test]
fn down_after_a_crash_of_a_three_node_lab_leaves_nothing() {
    if !privileged() {
        return;
    }
    let _serial = serial();
    let before = snapshot();
    {
        let policy = "\
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: x, name: deny}
spec: {podSelector: {}, policyTypes: [Ingress, Egress]}
";
        let lab = Lab::new("tc3", &(pods_yaml() + policy));
        assert!(
            lab.up(&["--nodes", "3", "--external", "192.0.2.20"])
                .status
                .success()
        );
        let state: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(lab.state_path()).unwrap()).unwrap();
        let nodes = state["nodes"].as_array().unwrap();
        assert_eq!(nodes.len(), 3);
        let agents: Vec<u64> = nodes
            .iter()
            .map(|n| n["agent"]["pid"].as_u64().expect("an agent per node"))
            .collect();
        let pins: Vec<String> = nodes
            .iter()
            .map(|n| n["agent"]["pin_dir"].as_str().unwrap().to_owned())
            .collect();
        for p in &pins {
            assert!(Path::new(p).join("state.json").exists() || Path::new(p).exists());
        }
        let servers = server_pids(&lab.state_path());

        // A crash: one node's agent and one server die, the state file is lost.
        for pid in [agents[1], u64::from(servers[0])] {
            assert!(
                std::process::Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status()
                    .unwrap()
                    .success()
            );
        }
        std::fs::remove_file(lab.state_path()).unwrap();

        // Down finds the agents by command line, their pins under each
        // node's directory, the mounts in the mount table, the namespaces
        // (nodes, fabric, hosts) by prefix.
        let out = bulkhead(&["lab", "down", "--name", "tc3"]);
        assert!(out.status.success());
        for p in &pins {
            assert!(processes_with(p).is_empty(), "an agent on {p} survived");
            assert!(!Path::new(p).exists(), "pins {p} survived");
        }
        for p in servers.iter().map(|p| u64::from(*p)).chain(agents) {
            assert!(!alive(p as u32), "process {p} survived lab down");
        }
        assert!(
            !String::from_utf8_lossy(
                &std::process::Command::new("ip")
                    .args(["netns", "list"])
                    .output()
                    .unwrap()
                    .stdout
            )
            .contains("bh-tc3-"),
            "a namespace survived"
        );
    }
    assert_eq!(snapshot(), before, "lab down left something behind");
}
