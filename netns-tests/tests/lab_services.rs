//! NodePort traffic from outside the cluster to an ingress-isolated pod
//! is judged with the source address the pod actually sees (issue 15), in
//! a lab whose node runs kube-proxy's iptables rules:
//!
//! - `externalTrafficPolicy: Local`: kube-proxy keeps the client's
//!   address, so the pod's ingress policy judges the external host: an
//!   ipBlock allowing one host lets it in and keeps another out, exactly
//!   as when the hosts reach the pod's own address.
//! - `externalTrafficPolicy: Cluster`: kube-proxy masquerades to the
//!   node's address, so the pod sees its own node, which Kubernetes always
//!   lets in: both hosts connect. (The policy cannot tell them apart; this
//!   is why Local exists.)
//!
//! The flow records at the pod say so: the source is the external host
//! with Local, the node's address with Cluster.

mod lab_support;

use lab_support::{Lab, json_lines, privileged, serial, snapshot};

/// The external host the policy lets in.
const ALLOWED: &str = "203.0.113.5";
/// The external host it does not.
const OTHER: &str = "198.51.100.7";

/// Pods `x/a` and `x/b` (serving TCP 80 and 81), Services selecting `b`:
/// `b-cluster` (NodePort 30080 → 80, Cluster) and `b-local` (NodePort
/// 30081 → 81, Local), and `b` isolated for ingress but for `ALLOWED`.
fn manifests() -> String {
    let pod = |name: &str| {
        format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{namespace: x, name: {name}, labels: {{app: {name}}}}}\n\
             spec: {{containers: [{{name: c, image: i, ports: [{{containerPort: 80}}, {{containerPort: 81}}]}}]}}\n"
        )
    };
    let service = |name: &str, port: u16, node_port: u16, policy: &str| {
        format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{namespace: x, name: {name}}}\n\
             spec:\n  type: NodePort\n  externalTrafficPolicy: {policy}\n  selector: {{app: b}}\n  \
             ports: [{{protocol: TCP, port: {port}, targetPort: {port}, nodePort: {node_port}}}]\n"
        )
    };
    let policy = format!(
        "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{namespace: x, name: b-from-one-host}}\n\
         spec:\n  podSelector: {{matchLabels: {{app: b}}}}\n  policyTypes: [Ingress]\n  ingress:\n  \
         - from: [{{ipBlock: {{cidr: {ALLOWED}/32}}}}]\n"
    );
    [
        pod("a"),
        pod("b"),
        service("b-cluster", 80, 30080, "Cluster"),
        service("b-local", 81, 30081, "Local"),
        policy,
    ]
    .concat()
}

/// `lab probe` from external host `from` to `x/b` on TCP `port`, `via`
/// `pod` or `nodeport`: the one result's outcome and the address probed.
fn probe(lab: &Lab, from: &str, via: &str, port: u16) -> (String, String) {
    let port = port.to_string();
    let out = lab.ok(
        "probe",
        &[
            "--from",
            from,
            "--to",
            "x/b",
            "--via",
            via,
            "--family",
            "4",
            "--protocols",
            "TCP",
            "--ports",
            &port,
            "--timeout-ms",
            "1500",
            "--output",
            "json",
        ],
    );
    let r = json_lines(&out);
    assert_eq!(r.len(), 1, "one probe: {r:?}");
    (
        r[0]["outcome"].as_str().expect("outcome").to_owned(),
        r[0]["addr"].as_str().unwrap_or_default().to_owned(),
    )
}

#[test]
fn node_port_traffic_is_judged_with_the_source_the_pod_sees() {
    if !privileged() {
        return;
    }
    let _guard = serial();
    let before = snapshot();
    {
        let lab = Lab::new("npsrc", &manifests());
        let externals = format!("{ALLOWED},{OTHER}");
        let up = lab.up(&[
            "--kube-proxy",
            "iptables",
            "--external",
            &externals,
            "--ports",
            "81",
            "--flow-idle-timeout",
            "1",
        ]);
        assert!(up.status.success(), "lab up failed");

        // To the pod's own address: the ipBlock as written.
        assert_eq!(probe(&lab, ALLOWED, "pod", 80).0, "connected");
        assert_eq!(probe(&lab, OTHER, "pod", 80).0, "timeout");

        // Local: the pod sees the external host; the same verdicts.
        let (allowed, addr) = probe(&lab, ALLOWED, "nodeport", 81);
        assert_eq!(allowed, "connected", "Local, {ALLOWED} via {addr}");
        let (other, addr) = probe(&lab, OTHER, "nodeport", 81);
        assert_eq!(other, "timeout", "Local, {OTHER} via {addr}");

        // Cluster: masqueraded, the pod sees its own node: both in.
        for host in [ALLOWED, OTHER] {
            let (outcome, addr) = probe(&lab, host, "nodeport", 80);
            assert_eq!(outcome, "connected", "Cluster, {host} via {addr}");
        }

        // The pod's flow records: the source it saw (polled: records come
        // when the probes' connections end; bounded at 30 s).
        let ingress_from = |records: &[serde_json::Value], port: u64| -> Vec<String> {
            records
                .iter()
                .filter(|r| r["direction"] == "ingress" && r["dst"]["port"] == port)
                .map(|r| r["src"]["ip"].as_str().unwrap_or_default().to_owned())
                .collect()
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let records = loop {
            let flows = lab_support::bulkhead_ok(&[
                "flows", "--lab", "npsrc", "--pod", "x/b", "--output", "json",
            ]);
            let records = json_lines(&flows);
            let done =
                ingress_from(&records, 81).len() >= 2 && !ingress_from(&records, 80).is_empty();
            if done || std::time::Instant::now() > deadline {
                break records;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        };
        let ingress_from = |port: u64| ingress_from(&records, port);
        let local = ingress_from(81);
        assert!(
            local.iter().any(|s| s == ALLOWED) && local.iter().any(|s| s == OTHER),
            "Local: records from both hosts' own addresses: {local:?}"
        );
        let cluster = ingress_from(80);
        assert!(
            cluster.iter().any(|s| s != ALLOWED && s != OTHER),
            "Cluster: records from the node's address: {cluster:?}"
        );
    }
    assert_eq!(snapshot(), before, "the lab left something behind");
}
