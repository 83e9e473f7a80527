//! `bulkhead lab` end to end on real namespaces: up (with the agent, no
//! policy), probes on TCP, UDP and SCTP over both families (everything
//! connects), a port without a server is refused (and so allowed: the
//! packet reached the pod), verify against the policy, and down leaves the
//! machine exactly as it was. Without an agent, verify reports every probe
//! the policy denies. A lab that a killed run left behind (namespaces,
//! state, pins, but no process) is replaced by the next `up`; one that
//! runs is not.

mod lab_support;

use std::collections::BTreeSet;
use std::process::Command;

use lab_support::{Lab, json_lines, pods_yaml, privileged, serial, snapshot};

#[test]
fn up_probe_down_leaves_nothing_behind() {
    if !privileged() {
        return;
    }
    let _serial = serial();
    let before = snapshot();
    {
        let lab = Lab::new("tup", &pods_yaml());
        let up = lab.up(&["--external", "192.0.2.10,2001:db8::10"]);
        assert!(up.status.success(), "lab up failed");

        // A second up is refused and changes nothing.
        let again = lab.up(&[]);
        assert_eq!(again.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

        let start = std::time::Instant::now();
        let probes = json_lines(&lab.ok("probe", &["--family", "both", "--output", "json"]));
        eprintln!("{} probes in {:?}", probes.len(), start.elapsed());
        // Pods: 3 × 2 ordered pairs; each pod with the IPv4 and the IPv6
        // external host, both ways: 6 + 6 + 6 pairs per family, 6 probes each.
        assert_eq!(probes.len(), (6 + 6) * 2 * 6);
        let not_connected: Vec<_> = probes
            .iter()
            .filter(|p| p["outcome"] != "connected")
            .collect();
        assert!(not_connected.is_empty(), "{not_connected:#?}");
        assert!(probes.iter().all(|p| p["allowed"] == true));
        let kinds: BTreeSet<(String, String)> = probes
            .iter()
            .map(|p| {
                (
                    p["protocol"].as_str().unwrap().into(),
                    p["family"].as_str().unwrap().into(),
                )
            })
            .collect();
        assert_eq!(kinds.len(), 6, "{kinds:?}");
        for (src, dst) in [
            ("x/a", "y/a"),
            ("192.0.2.10", "x/b"),
            ("y/a", "2001:db8::10"),
        ] {
            assert!(
                probes.iter().any(|p| p["src"] == src && p["dst"] == dst),
                "{src} → {dst}"
            );
        }

        // Nobody serves port 82: TCP RST, ICMP port unreachable, SCTP
        // ABORT, from the destination itself, so the packet got there.
        let closed = json_lines(&lab.ok(
            "probe",
            &["--family", "both", "--ports", "82", "--output", "json"],
        ));
        assert_eq!(closed.len(), (6 + 6) * 2 * 3);
        for p in &closed {
            assert_eq!(p["outcome"], "refused", "{p}");
            assert_eq!(p["allowed"], true, "{p}");
        }

        // No policy: everything is allowed, and the probes agree.
        let verify = lab.ok("verify", &["--output", "json"]);
        assert_eq!(verify, "");
    }
    assert_eq!(snapshot(), before, "lab down left something behind");
    // Down again: nothing to do, and fine.
    lab_support::bulkhead_ok(&["lab", "down", "--name", "tup"]);
}

/// Kills every process in lab `name`'s namespaces with SIGKILL, as a
/// killed test run or a crashed machine session leaves a lab.
fn kill_lab_processes(name: &str) {
    let prefix = format!("bh-{name}-");
    let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let mut pids = Vec::new();
    for ns in String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|ns| ns.starts_with(&prefix))
    {
        let out = Command::new("ip")
            .args(["netns", "pids", ns])
            .output()
            .unwrap();
        pids.extend(
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(str::to_owned),
        );
    }
    assert!(!pids.is_empty(), "lab {name} runs no process");
    for pid in &pids {
        let _ = Command::new("kill").args(["-KILL", pid]).status();
    }
    // Bounded: SIGKILL cannot be caught, so this ends at once.
    for _ in 0..500 {
        // Gone, or a zombie (no command line).
        if pids
            .iter()
            .all(|p| std::fs::read(format!("/proc/{p}/cmdline")).map_or(true, |c| c.is_empty()))
        {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("processes of lab {name} survived SIGKILL: {pids:?}");
}

#[test]
fn up_replaces_a_lab_a_killed_run_left_behind() {
    if !privileged() {
        return;
    }
    let _serial = serial();
    let before = snapshot();
    {
        let lab = Lab::new("tlb", &pods_yaml());
        assert!(lab.up(&[]).status.success(), "lab up failed");
        kill_lab_processes("tlb");

        let again = lab.up(&[]);
        let stderr = String::from_utf8_lossy(&again.stderr);
        assert!(
            again.status.success(),
            "lab up over a dead lab failed: {stderr}"
        );
        assert!(
            stderr.contains("left behind by a run that did not finish"),
            "{stderr}"
        );
        // The new lab works and enforces: everything connects (no policy).
        assert_eq!(lab.ok("verify", &["--output", "json"]), "");

        // A lab that runs is never replaced.
        let third = lab.up(&[]);
        assert_eq!(third.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&third.stderr);
        assert!(
            stderr.contains("already exists") && stderr.contains("processes running"),
            "{stderr}"
        );
    }
    assert_eq!(snapshot(), before, "lab down left something behind");
}

#[test]
fn verify_reports_every_probe_the_policy_denies() {
    if !privileged() {
        return;
    }
    let _serial = serial();
    let before = snapshot();
    {
        let deny = "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
                    metadata: {namespace: y, name: deny-ingress}\n\
                    spec: {podSelector: {}, policyTypes: [Ingress]}\n";
        let lab = Lab::new("tvf", &(pods_yaml() + deny));
        assert!(lab.up(&["--no-agent"]).status.success(), "lab up failed");
        let probes = json_lines(&lab.ok("probe", &["--family", "both", "--output", "json"]));
        let to_ya = probes.iter().filter(|p| p["dst"] == "y/a").count();
        assert_eq!(to_ya, 2 * 2 * 6);

        // Nothing enforces (no agent): every probe into y/a connects though
        // the policy denies it, and verify says so with exit status 1.
        let out = lab_support::bulkhead(&["lab", "verify", "--name", "tvf", "--output", "json"]);
        assert_eq!(out.status.code(), Some(1));
        let found = json_lines(&String::from_utf8(out.stdout).unwrap());
        assert_eq!(found.len(), to_ya, "{found:#?}");
        for d in &found {
            assert_eq!(d["dst"], "y/a", "{d}");
            assert_eq!(d["expected"], false, "{d}");
            assert_eq!(d["allowed"], true, "{d}");
        }
    }
    assert_eq!(snapshot(), before, "lab down left something behind");
}
