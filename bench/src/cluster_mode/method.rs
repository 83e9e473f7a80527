//! The report's "Method" section: how each number was made, and what about
//! the setup differs from a real cluster.

use std::fmt::Write as _;

use super::agent::LOG_FILTER;
use super::report::Report;

/// Writes the section.
pub fn write(s: &mut String, r: &Report) {
    let p = &r.plan;
    let _ = writeln!(s, "## Method\n");
    let bullets = [
        format!(
            "Cluster: the compile benchmark's synthetic generator (`bench/src/cluster/`), seed {}, {} namespaces, {} workloads per application namespace, {} NetworkPolicies (per-namespace default deny, DNS egress, same-namespace app rules, namespaceSelector + podSelector peers, matchExpressions, ipBlocks with except covering pod addresses, numeric, endPort and named ports, UDP and SCTP), written out as API objects (`bench/src/cluster_mode/objects.rs`). Remote pods are Running, on nodes `node-1`… ({} pods per node, one /24 each out of {}), with realistic labels (app, tier, team, version, env; canaries; StatefulSet pod names; `pod-template-hash` per workload version), an owner reference and named container ports.",
            p.seed, p.namespaces, p.apps_per_namespace, p.policies,
            super::objects::PODS_PER_NODE, super::objects::POD_CIDR
        ),
        format!(
            "Node under test: `{}`, with two local pods in namespace `{}` (real network namespaces joined to the node namespace by veths): both isolated both ways by a default deny; the client may send UDP to the server's port 80, which the server admits by its named port `echo`. A wire check after each initial sync sends a request to the allowed port (must be answered) and to port 81, which the server also echoes but no policy allows (must not be).",
            super::synth::NODE_NAME, super::synth::LOCAL_NS
        ),
        "API server: the test kit's list/watch server (`bulkhead_netns_tests::apiserver`), listening on 127.0.0.1 inside the node namespace, in the benchmark's process; bookmarks every 60 s (kube-apiserver sends them about once a minute). It serves the same list/watch protocol as kube-apiserver but keeps objects in memory and does no admission, so API-side times are lower than a real server's.".to_owned(),
        format!(
            "Agent: the real binary, `bulkhead agent --kubernetes --kubeconfig K --node-name {} --netns NODE --bpffs PRIVATE_BPFFS/pins --api-socket S`, defaults otherwise (flow accounting on, host routing on, TC attach `auto`), `BULKHEAD_LOG={LOG_FILTER}` (the reconciler's debug lines give each compile's time). A fresh agent, node and API server per scale; the objects are loaded before the agent starts.",
            super::synth::NODE_NAME
        ),
        "Enforced: the agent's state file (written atomically by rename after each sync) has `enforced_revision` ≥ the change's resourceVersion; the benchmark waits on it with inotify (the `notify` crate) on the state directory, not by polling. Latencies are recorded in an HDR histogram (µs, 3 significant digits).".to_owned(),
        format!(
            "Initial sync: from starting the agent to the state file saying the whole view is in force (or, when it cannot be, that the view is complete and why). Memory: `VmRSS` (and `RssAnon`, `VmHWM`) of the agent from `/proc/PID/status`, {} s after the initial sync. Per remote pod: the difference of two scales' RSS over the difference of their pod counts, so fixed costs (binary, runtime, pinned-map bookkeeping, the policies) cancel.",
            p.settle_seconds
        ),
        format!(
            "Idle CPU: utime + stime of the agent from `/proc/PID/stat` over {} s with nothing changing in the API and no traffic, as % of one core.",
            p.idle_seconds
        ),
        format!(
            "Churn: one change every {:.0} ms on schedule (creates: a copy of a random remote pod on a new address; relabels: a random remote pod's `track: canary` label on or off, which policies select on; deletes: a random remote pod, its address reused later), while the flow sends {} UDP requests/s from the client to the server's echo port, each numbered and matched to its answer; a request unanswered {} s after the last is dropped. A recorder thread notes every enforced revision, so each change's time to enforcement and the backlog at any moment come out afterwards.",
            1000.0 / p.churn.rate.max(1) as f64, p.churn.flow_rate, super::flow::ANSWER_WAIT.as_secs()
        ),
        "Everything runs on this one machine: the agent, the API server, the churn driver and the flow share its cores, so the times include contention a real node would not have (the API server) and miss network round trips it would have. Real Pod objects are larger than these (managedFields, status conditions, volumes): that costs list transfer and parse time in the agent, not retained memory (the agent keeps a trimmed pod).".to_owned(),
    ];
    for b in bullets {
        let _ = writeln!(s, "- {b}");
    }
    let _ = writeln!(s);
}
