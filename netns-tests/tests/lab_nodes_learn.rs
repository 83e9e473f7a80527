//! Learning a cluster (issue 14): the demo shop's traffic, learnt in a
//! 3-node lab (each node's agent logs only its own pods' connections, a
//! cross-node one once at each end), gives through `propose --lab` (every
//! node's log merged) the same policies as the same traffic in a 1-node
//! lab; applied in enforce, the learned connections pass, the unlearned one
//! is dropped, and `lab verify` finds the kernels of all three nodes
//! agreeing with the evaluator.

mod lab_support;
#[path = "lab_support/learning.rs"]
mod learning;
#[path = "lab_support/traffic.rs"]
mod traffic;

use std::collections::BTreeSet;

use lab_support::{Lab, bulkhead, privileged, serial, snapshot};
use learning::{LEARNED, UNLEARNED, connect, manifests, now_ms, wait_for_records};
use traffic::Pod;

/// The policies `propose --lab` writes for a lab of `nodes` nodes after the
/// demo's learned traffic: (file name, YAML without comment lines, which
/// say when edges were seen), and the lab still up, for more.
fn learn_and_propose(name: &str, nodes: &str) -> (Vec<(String, String)>, Lab, Vec<Pod>) {
    let lab = Lab::new(name, &manifests());
    let up = lab.up(&[
        "--mode",
        "learn",
        "--flow-idle-timeout",
        "1",
        "--nodes",
        nodes,
    ]);
    assert!(up.status.success(), "lab up --nodes {nodes} failed");
    let pods = Pod::all(&lab.state());
    let t0 = now_ms();
    for c in LEARNED {
        assert!(connect(&pods, c), "learn mode: {c:?} must connect");
    }
    // Both ends of every connection are logged (on one node or two).
    wait_for_records(&lab, &LEARNED, t0);
    let proposed = lab_support::tempdir::Dir::new(&format!("{name}-proposed"));
    let manifests = lab.manifests.path().display().to_string();
    let out_dir = proposed.path().display().to_string();
    let out = bulkhead(&[
        "propose",
        "--lab",
        name,
        "--manifests",
        &manifests,
        "--mode",
        "enforce",
        "--output-dir",
        &out_dir,
    ]);
    assert!(out.status.success(), "propose: coverage must be 100%");
    let mut policies: Vec<(String, String)> = std::fs::read_dir(proposed.path())
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let body: String = text
                .lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .map(|l| format!("{l}\n"))
                .collect();
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                body,
            )
        })
        .collect();
    policies.sort();
    (policies, lab, pods)
}

#[test]
fn three_nodes_learn_what_one_node_learns() {
    if !privileged() {
        return;
    }
    let _serial = serial();
    let before = snapshot();
    {
        let id = std::process::id() % 1000;
        let (one_node, lab, _) = learn_and_propose(&format!("l1{id}"), "1");
        drop(lab);
        let (three_nodes, lab, pods) = learn_and_propose(&format!("l3{id}"), "3");
        let placed: BTreeSet<u64> = lab.state()["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|h| h["node"].as_u64())
            .collect();
        assert_eq!(placed.len(), 3, "pods on every node");
        assert!(one_node.len() >= 3, "a policy per workload: {one_node:?}");
        assert_eq!(
            three_nodes, one_node,
            "the merged history proposes the same"
        );

        // Applied in enforce on all three nodes.
        for (file, yaml) in &three_nodes {
            lab.write_policy(file, yaml);
        }
        lab.ok("sync", &[]);
        for c in LEARNED {
            assert!(connect(&pods, c), "enforced: learned {c:?} must connect");
        }
        assert!(
            !connect(&pods, UNLEARNED),
            "enforced: the unlearned connection is dropped"
        );
        lab.ok("verify", &[]);
    }
    assert_eq!(snapshot(), before, "the labs left something behind");
}
