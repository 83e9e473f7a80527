//! A hostNetwork pod in a lab of two nodes (`lab up --nodes 2`): its
//! server runs in its node's namespace on the node's fabric address (no
//! namespace or veth of its own), pods on either node reach it there, and a
//! ClusterNetworkPolicy `nodes` peer (a Node object's label, its InternalIP
//! the lab's node address) denies it on real packets, while the pods'
//! own traffic is unaffected and `lab verify` agrees with the policy.
//! A Node object whose InternalIP is not the lab's node address is refused
//! before anything is made; `lab down` kills the server in the node's
//! namespace with the rest.

mod lab_support;

use lab_support::{Lab, bulkhead, json_lines, privileged, serial, snapshot};

/// Nodes `node-0` (198.18.0.1) and `node-1` (`node1_ip`), labelled
/// `kubernetes.io/hostname`; pods x/a on node-0 and x/b on node-1 (TCP
/// 80); the hostNetwork pod h/web on node-1 (TCP 8080, UDP 5353, SCTP
/// 9003), without a status address (namespace `h` sorts first: it must
/// take no pod address from the others).
fn manifests(node1_ip: &str) -> String {
    let node = |name: &str, ip: &str| {
        format!(
            "---\napiVersion: v1\nkind: Node\n\
             metadata: {{name: {name}, labels: {{kubernetes.io/hostname: {name}}}}}\n\
             status: {{addresses: [{{type: InternalIP, address: {ip}}}, {{type: Hostname, address: {name}}}]}}\n"
        )
    };
    let pod = |name: &str, node: &str| {
        format!(
            "---\napiVersion: v1\nkind: Pod\n\
             metadata: {{namespace: x, name: {name}, labels: {{pod: {name}}}}}\n\
             spec:\n  nodeName: {node}\n  containers:\n  - name: c\n    ports:\n\
             \x20   - {{containerPort: 80}}\n"
        )
    };
    node("node-0", "198.18.0.1")
        + &node("node-1", node1_ip)
        + &pod("a", "node-0")
        + &pod("b", "node-1")
        + "\
---
apiVersion: v1
kind: Pod
metadata: {namespace: h, name: web, labels: {app: web}}
spec:
  nodeName: node-1
  hostNetwork: true
  containers:
  - name: c
    ports:
    - {containerPort: 8080, protocol: TCP}
    - {containerPort: 5353, protocol: UDP}
    - {containerPort: 9003, protocol: SCTP}
"
}

/// Namespace x may not reach node-1 (by its Node object's label).
const DENY_NODE_1: &str = "\
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: no-node-1}
spec:
  tier: Admin
  priority: 10
  subject:
    namespaces:
      matchLabels: {kubernetes.io/metadata.name: x}
  egress:
  - name: deny-node-1
    action: Deny
    to:
    - nodes:
        matchLabels: {kubernetes.io/hostname: node-1}
";

/// Every IPv4 probe from `from` to `to` on its declared ports: (protocol,
/// outcome) in order.
fn probe(lab: &Lab, from: &str, to: &str) -> Vec<(String, String)> {
    let out = lab.ok(
        "probe",
        &[
            "--from",
            from,
            "--to",
            to,
            "--family",
            "4",
            "--output",
            "json",
            "--timeout-ms",
            "1500",
        ],
    );
    json_lines(&out)
        .iter()
        .map(|v| {
            assert_eq!(v["dst"], to, "{v}");
            (
                format!("{}/{}", v["protocol"].as_str().unwrap(), v["port"]),
                v["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn outcomes(all: &str, n: usize) -> Vec<String> {
    vec![all.to_owned(); n]
}

#[test]
fn a_host_network_server_is_reached_at_its_node_address_and_a_nodes_peer_denies_it() {
    if !privileged() {
        eprintln!("skipped: needs root");
        return;
    }
    let _serial = serial();
    let before = snapshot();

    // A Node object that disagrees with the lab: refused, nothing made.
    let bad = Lab::new("hnbad", &manifests("198.18.0.9"));
    let out = bad.up(&["--nodes", "2", "--kube-proxy", "none"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "lab up accepted a wrong InternalIP");
    assert!(
        err.contains("Node node-1")
            && err.contains("status.addresses")
            && err.contains("198.18.0.9"),
        "{err}"
    );
    drop(bad);
    assert_eq!(snapshot(), before, "a refused lab up left something behind");

    let lab = Lab::new("hnet", &manifests("198.18.0.2"));
    let out = lab.up(&["--nodes", "2", "--kube-proxy", "none"]);
    assert!(
        out.status.success(),
        "lab up: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let web = lab.host("h/web");
    assert_eq!(web["host_network"], true);
    assert_eq!(web["netns"], "bh-hnet-n1", "in node-1's namespace");
    assert_eq!(web["ips"][0], "198.18.0.2", "node-1's fabric address");
    assert_eq!(web["veth"], "", "no veth of its own");
    let pid = web["server_pid"].as_u64().expect("a server");
    let in_node = std::process::Command::new("ip")
        .args(["netns", "pids", "bh-hnet-n1"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&in_node.stdout)
            .lines()
            .any(|l| l.trim() == pid.to_string()),
        "the server runs in node-1's namespace"
    );
    let namespaces = String::from_utf8_lossy(
        &std::process::Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    let ours = namespaces
        .lines()
        .filter(|l| l.starts_with("bh-hnet-"))
        .count();
    assert_eq!(
        ours,
        2 + 1 + 2,
        "two nodes, the fabric, two pods: {namespaces}"
    );

    // No policy: from the other node and from its own, on every protocol.
    let served = 3;
    for from in ["x/a", "x/b"] {
        let got = probe(&lab, from, "h/web");
        assert_eq!(got.len(), served, "{from}: {got:?}");
        assert!(got.iter().all(|(_, o)| o == "connected"), "{from}: {got:?}");
    }
    lab.ok("verify", &["--family", "4"]);

    // The nodes peer: node-1's address (the hostNetwork server) is denied
    // to x, from either node; pod x/b on node-1 stays reachable.
    lab.write_policy("deny-node-1.yaml", DENY_NODE_1);
    lab.ok("sync", &["--timeout-ms", "30000"]);
    for from in ["x/a", "x/b"] {
        let got: Vec<String> = probe(&lab, from, "h/web")
            .into_iter()
            .map(|(_, o)| o)
            .collect();
        assert_eq!(got, outcomes("timeout", served), "{from}");
    }
    let got = probe(&lab, "x/a", "x/b");
    assert_eq!(got, [("TCP/80".to_owned(), "connected".to_owned())]);
    lab.ok("verify", &["--family", "4"]);

    // And back.
    lab.remove_policy("deny-node-1.yaml");
    lab.ok("sync", &["--timeout-ms", "30000"]);
    let got = probe(&lab, "x/a", "h/web");
    assert!(got.iter().all(|(_, o)| o == "connected"), "{got:?}");

    let down = bulkhead(&["lab", "down", "--name", "hnet"]);
    assert!(down.status.success());
    // Gone (a zombie has an empty command line).
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert!(cmdline.is_empty(), "lab down killed the hostNetwork server");
    drop(lab);
    assert_eq!(snapshot(), before, "lab down left something behind");
}

/// On one node (no fabric), a hostNetwork pod's address is the gateway
/// address every pod's veth carries on the node, its pods' next hop.
#[test]
fn on_one_node_a_host_network_server_answers_at_the_gateway_address() {
    if !privileged() {
        eprintln!("skipped: needs root");
        return;
    }
    let _serial = serial();
    let before = snapshot();
    let yaml = "\
apiVersion: v1
kind: Pod
metadata: {namespace: x, name: a}
spec:
  containers:
  - name: c
    ports: [{containerPort: 80}]
---
apiVersion: v1
kind: Pod
metadata: {namespace: h, name: web}
spec:
  hostNetwork: true
  containers:
  - name: c
    ports: [{containerPort: 8080}, {containerPort: 5353, protocol: UDP}]
";
    let lab = Lab::new("hnone", yaml);
    let out = lab.up(&["--kube-proxy", "none"]);
    assert!(
        out.status.success(),
        "lab up: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let web = lab.host("h/web");
    assert_eq!(web["netns"], "bh-hnone-node");
    assert_eq!(
        web["ips"],
        serde_json::json!(["10.244.0.1", "fd00:10:244::1"])
    );
    let got = probe(&lab, "x/a", "h/web");
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got.iter().all(|(_, o)| o == "connected"), "{got:?}");
    // A port nothing serves there: the node's own stack refuses it.
    let out = lab.ok(
        "probe",
        &[
            "--from",
            "x/a",
            "--to",
            "h/web",
            "--family",
            "4",
            "--protocols",
            "TCP",
            "--ports",
            "8081",
            "--output",
            "json",
        ],
    );
    assert_eq!(json_lines(&out)[0]["outcome"], "refused", "{out}");
    lab.ok("verify", &[]);
    drop(lab);
    assert_eq!(snapshot(), before, "lab down left something behind");
}
