//! The lab with its agent: policy written into the watched directory is
//! enforced after `lab sync`, and `lab verify` (probes on TCP, UDP and SCTP,
//! both families) agrees with `bulkhead connectivity` before, during and
//! after; an invalid manifest fails the sync and leaves the policy in
//! force; `lab down` leaves nothing (namespaces, links, mounts, state,
//! processes), also after the agent was killed and the state file lost.

mod lab_support;

use std::time::Instant;

use lab_support::{
    Lab, bulkhead, json_lines, mount_points, privileged, processes_with, serial, snapshot,
};

fn pod(ns: &str, name: &str) -> String {
    let ports: String = ["TCP", "UDP", "SCTP"]
        .iter()
        .flat_map(|p| [80, 81].map(|n| format!("      - {{containerPort: {n}, protocol: {p}}}\n")))
        .collect();
    format!(
        "---\napiVersion: v1\nkind: Pod\nmetadata: {{namespace: {ns}, name: {name}, labels: {{pod: {name}}}}}\n\
         spec:\n  containers:\n  - name: c\n    ports:\n{ports}"
    )
}

/// x/a, x/b, y/a, y/b.
fn pods() -> String {
    [("x", "a"), ("x", "b"), ("y", "a"), ("y", "b")]
        .iter()
        .map(|(ns, n)| pod(ns, n))
        .collect()
}

/// Namespace y denies ingress except from x/a on TCP 80 and SCTP 81;
/// x/b may only send UDP 81.
const POLICY: &str = "\
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: y, name: default-deny}
spec: {podSelector: {}, policyTypes: [Ingress]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: y, name: from-xa}
spec:
  podSelector: {}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: x}}
      podSelector: {matchLabels: {pod: a}}
    ports: [{protocol: TCP, port: 80}, {protocol: SCTP, port: 81}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: x, name: b-egress}
spec:
  podSelector: {matchLabels: {pod: b}}
  policyTypes: [Egress]
  egress:
  - ports: [{protocol: UDP, port: 81}]
";

const BROKEN: &str = "\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: x, name: broken}
spec: {podSelector: {}, ingress: [{ports: [{port: 99999}]}]}
";

/// `lab verify --output json` succeeds with no disagreement.
fn verify_clean(lab: &Lab, extra: &[&str]) {
    let start = Instant::now();
    let mut args = vec!["--output", "json"];
    args.extend_from_slice(extra);
    let out = lab.ok("verify", &args);
    eprintln!("verify {extra:?} took {:?}", start.elapsed());
    assert_eq!(out, "", "disagreements:\n{out}");
}

fn probes(lab: &Lab, extra: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec!["--family", "both", "--output", "json"];
    args.extend_from_slice(extra);
    json_lines(&lab.ok("probe", &args))
}

fn sync(lab: &Lab) -> std::process::Output {
    let start = Instant::now();
    let out = bulkhead(&["lab", "sync", "--name", &lab.name]);
    eprintln!("sync took {:?}", start.elapsed());
    out
}

#[test]
fn policy_in_the_watched_directory_is_enforced_and_verified() {
    if !privileged() {
        return;
    }
    let _serial = serial();
    let before = snapshot();
    {
        let lab = Lab::new("ten", &pods());
        let start = Instant::now();
        assert!(lab.up(&[]).status.success(), "lab up failed");
        eprintln!("lab up took {:?}", start.elapsed());
        let state = lab.state();
        let pins = state["agent"]["pin_dir"].as_str().unwrap().to_owned();
        assert_eq!(lab.watched(), lab.dir().join("manifests"));
        assert!(lab.watched().join("manifests.yaml").is_file(), "copied");
        let bpffs = lab.dir().join("bpf");
        assert!(
            mount_points().contains(&bpffs.display().to_string()),
            "the lab's bpffs is mounted"
        );
        assert_eq!(processes_with(&pins).len(), 1, "one agent runs");

        // The agent found every pod's veth by route.
        let status: serde_json::Value = serde_json::from_str(&lab_support::bulkhead_ok(&[
            "status", "--lab", "ten", "--output", "json",
        ]))
        .unwrap();
        assert_eq!(status["endpoints"].as_array().unwrap().len(), 4, "{status}");
        assert_eq!(status["pods"].as_array().unwrap().len(), 4, "{status}");

        // No policy: everything allowed, and verify agrees.
        let open = probes(&lab, &[]);
        assert_eq!(open.len(), 12 * 2 * 6);
        assert!(open.iter().all(|p| p["outcome"] == "connected"));
        verify_clean(&lab, &[]);

        // Policy: enforced once synced; verify agrees; denied probes time out.
        lab.write_policy("policy.yaml", POLICY);
        assert!(sync(&lab).status.success(), "lab sync failed");
        verify_clean(&lab, &[]);
        let enforced = probes(&lab, &[]);
        let denied: Vec<_> = enforced.iter().filter(|p| p["allowed"] == false).collect();
        assert!(denied.len() >= 12 * 2, "{} denied", denied.len());
        assert!(
            denied.iter().all(|p| p["outcome"] == "timeout"),
            "denied probes are dropped: {denied:#?}"
        );
        for (src, dst, proto, port, allowed) in [
            ("x/a", "y/b", "TCP", 80, true),
            ("x/a", "y/b", "TCP", 81, false),
            ("x/a", "y/a", "SCTP", 81, true),
            ("y/a", "y/b", "TCP", 80, false),
            ("x/b", "y/a", "TCP", 80, false),
            ("x/b", "x/a", "UDP", 81, true),
            ("x/b", "x/a", "UDP", 80, false),
            ("y/b", "x/b", "TCP", 80, true),
        ] {
            for family in ["IPv4", "IPv6"] {
                let p = enforced
                    .iter()
                    .find(|p| {
                        p["src"] == src
                            && p["dst"] == dst
                            && p["protocol"] == proto
                            && p["port"] == port
                            && p["family"] == family
                    })
                    .unwrap_or_else(|| panic!("{src} → {dst} {proto}/{port} {family}"));
                assert_eq!(p["allowed"], allowed, "{p}");
            }
        }
        // A port nothing listens on: refused where the policy allows (the
        // packet reached the pod), dropped where it denies.
        let closed = probes(&lab, &["--ports", "82"]);
        assert!(closed.iter().any(|p| p["outcome"] == "refused"));
        assert!(closed.iter().any(|p| p["outcome"] == "timeout"));
        verify_clean(&lab, &["--ports", "82"]);
        let status: serde_json::Value = serde_json::from_str(&lab_support::bulkhead_ok(&[
            "status", "--lab", "ten", "--output", "json",
        ]))
        .unwrap();
        assert!(
            status["drops"]
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d[0] == "policy_denied" && d[1].as_u64().unwrap() > 0),
            "{status}"
        );

        // Invalid content: sync fails with the agent's error (exit 2), the
        // policy in force stays, and verify checks against it.
        lab.write_policy("broken.yaml", BROKEN);
        let out = sync(&lab);
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("invalid manifests") && err.contains("broken.yaml"),
            "{err}"
        );
        verify_clean(&lab, &[]);
        let still = probes(&lab, &[]);
        assert_eq!(
            still.iter().filter(|p| p["allowed"] == false).count(),
            denied.len(),
            "the policy in force stays"
        );

        // Policy removed: everything allowed again.
        lab.remove_policy("broken.yaml");
        lab.remove_policy("policy.yaml");
        assert!(sync(&lab).status.success(), "lab sync failed");
        verify_clean(&lab, &[]);
        assert!(
            probes(&lab, &[])
                .iter()
                .all(|p| p["outcome"] == "connected")
        );
    }
    assert_eq!(snapshot(), before, "lab down left something behind");
}

#[test]
fn down_cleans_up_after_the_agent_dies_and_the_state_file_is_lost() {
    if !privileged() {
        return;
    }
    let _serial = serial();
    let before = snapshot();
    for kill_agent in [true, false] {
        let lab = Lab::new("tak", &(pods() + POLICY));
        assert!(lab.up(&[]).status.success(), "lab up failed");
        let state = lab.state();
        let pid = state["agent"]["pid"].as_u64().expect("agent pid");
        let pins = state["agent"]["pin_dir"].as_str().unwrap().to_owned();
        if kill_agent {
            let status = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status()
                .unwrap();
            assert!(status.success());
        }
        std::fs::remove_file(lab.state_path()).unwrap();
        // Down finds the agent by its command line, the bpffs by the mount
        // table and the namespaces by prefix.
        let out = bulkhead(&["lab", "down", "--name", "tak"]);
        assert!(out.status.success());
        assert!(processes_with(&pins).is_empty(), "the agent survived");
        drop(lab);
        assert_eq!(
            snapshot(),
            before,
            "lab down left something behind (agent killed: {kill_agent})"
        );
    }
}
