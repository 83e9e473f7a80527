//! The lab in cluster mode: `lab up --kubeconfig` runs the lab's agent
//! on the Kubernetes API (the test kit's [`FakeApiServer`], listening
//! inside the lab's node namespace, where the agent runs; no real
//! kube-apiserver can be had here). The API holds the lab's pods with the
//! lab's addresses in their status; policy applied, relabeled and deleted
//! in the API is enforced after `lab sync` (which waits for the API's
//! resourceVersion of when it asked), as real probes show, and `lab
//! verify` compares them with the API's policy. Switching the agent back
//! to the manifests and to the API again works on a running agent. `lab
//! down` removes everything, also when the test fails.
//!
//! Root only (skipped otherwise); run under `flock /tmp/bulkhead-netns.lock`.

mod lab_support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bulkhead_netns_tests::apiserver::{FakeApiServer, Options};
use lab_support::{Lab, bulkhead, bulkhead_bin, json_lines, privileged, serial};

/// The lab's name (namespaces `bh-lk8s-...`).
const NAME: &str = "lk8s";

/// Where the API server listens in the node namespace: the namespace is
/// made by `lab up`, so nothing else can hold the port.
const PORT: u16 = 16443;

/// Namespaces x and y (labeled `team`), pods x/a, y/a, y/b serving TCP 80,
/// with addresses in their status.
const CLUSTER: &str = "\
---
apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {team: x}}
---
apiVersion: v1
kind: Namespace
metadata: {name: y, labels: {team: y}}
---
apiVersion: v1
kind: Pod
metadata: {namespace: x, name: a, labels: {app: a}}
spec: {containers: [{name: c, image: i, ports: [{containerPort: 80}]}]}
status: {phase: Running, podIP: 10.244.3.10}
---
apiVersion: v1
kind: Pod
metadata: {namespace: y, name: a, labels: {app: a}}
spec: {containers: [{name: c, image: i, ports: [{containerPort: 80}]}]}
status: {phase: Running, podIP: 10.244.3.11}
---
apiVersion: v1
kind: Pod
metadata: {namespace: y, name: b, labels: {app: b}}
spec: {containers: [{name: c, image: i, ports: [{containerPort: 80}]}]}
status: {phase: Running, podIP: 10.244.3.12}
";

/// y isolated for ingress; y/b open to pods labeled `app: a` of namespace x.
const POLICY: &str = "\
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: y, name: default-deny}
spec: {podSelector: {}, policyTypes: [Ingress]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: y, name: b-from-xa}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {team: x}}
      podSelector: {matchLabels: {app: a}}
    ports: [{protocol: TCP, port: 80}]
";

fn kubeconfig(dir: &Path) -> PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: lab\n  cluster: {{server: \"http://127.0.0.1:{PORT}\"}}\n\
             users:\n- name: u\n  user: {{}}\ncontexts:\n- name: lab\n  context: {{cluster: lab, user: u}}\n\
             current-context: lab\n"
        ),
    )
    .unwrap();
    path
}

/// Binds the API server's port in namespace `netns` once it exists.
fn listen_in(netns: &str, timeout: Duration) -> TcpListener {
    let file = PathBuf::from("/run/netns").join(netns);
    let deadline = Instant::now() + timeout;
    loop {
        if file.exists() {
            let file = file.clone();
            let bound = std::thread::spawn(move || {
                let ns = std::fs::File::open(file).ok()?;
                nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).ok()?;
                TcpListener::bind(("127.0.0.1", PORT)).ok()
            })
            .join()
            .unwrap();
            if let Some(l) = bound {
                return l;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no namespace {netns} to listen in"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `lab <cmd> --name NAME extra...`; its stdout, insisting on success.
fn lab(cmd: &str, extra: &[&str]) -> String {
    let mut args = vec!["lab", cmd, "--name", NAME];
    args.extend_from_slice(extra);
    let out = bulkhead(&args);
    assert!(out.status.success(), "lab {cmd} failed: {:?}", out.status);
    String::from_utf8(out.stdout).unwrap()
}

/// Whether TCP probes from `src` to `dst` connect (the one probe of the pair).
fn allowed(src: &str, dst: &str) -> bool {
    let probes = json_lines(&lab("probe", &["--output", "json"]));
    let p = probes
        .iter()
        .find(|p| p["src"] == src && p["dst"] == dst)
        .unwrap_or_else(|| panic!("no probe {src} → {dst}: {probes:?}"));
    p["allowed"].as_bool().unwrap()
}

fn change(server: &FakeApiServer, yaml: &str) {
    server.apply_yaml(yaml).unwrap();
    lab("sync", &[]);
}

#[test]
fn the_lab_s_agent_reads_the_kubernetes_api_and_enforces_its_changes() {
    if !privileged() {
        return;
    }
    let _serial = serial();
    let lab_guard = Lab::new(NAME, CLUSTER);
    let config = kubeconfig(lab_guard.manifests.path());
    let config_arg = config.display().to_string();
    let manifests = lab_guard.manifests.path().display().to_string();
    // The API server comes up while `lab up` waits for it (the node
    // namespace, where it listens, is made by `lab up`).
    let up = std::process::Command::new(bulkhead_bin())
        .args(["lab", "up", "--name", NAME, "--manifests", &manifests])
        .args(["--kubeconfig", &config_arg])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let listener = listen_in(&format!("bh-{NAME}-node"), Duration::from_secs(120));
    let server = FakeApiServer::serve(listener, Options::default()).unwrap();
    server.apply_yaml(CLUSTER).unwrap();
    let up = up.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&up.stderr);
    eprintln!("$ bulkhead lab up ... --kubeconfig {config_arg}\n{log}");
    assert!(up.status.success(), "lab up --kubeconfig failed");
    assert!(log.contains("Kubernetes API"), "{log}");
    assert!(!log.contains("warning"), "every pod is an endpoint: {log}");
    assert_eq!(lab_guard.state()["agent"]["source"]["kind"], "kubernetes");
    // `lab up` may have asked before the objects were loaded.
    lab("sync", &[]);

    // Status: the source, and every pod enforced.
    let status: serde_json::Value =
        serde_json::from_str(&lab("status", &["--output", "json"])).unwrap();
    assert_eq!(status["source"]["kind"], "kubernetes", "{status}");
    assert_eq!(status["agent_source"]["connected"], true, "{status}");
    assert!(
        status["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["endpoint"] == true),
        "{status}"
    );
    let out = bulkhead(&["status", "--lab", NAME, "--output", "json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["agent_source"]["kind"], "kubernetes", "{status}");
    assert!(
        status["lab_source"].as_str().unwrap().contains(&config_arg),
        "{status}"
    );

    // Open, then the API's policy.
    assert!(allowed("y/a", "y/b"));
    change(&server, POLICY);
    assert!(allowed("x/a", "y/b"));
    assert!(!allowed("y/a", "y/b"), "y/a is no `app: a` of namespace x");
    assert!(!allowed("x/a", "y/a"), "y is isolated");
    lab("verify", &[]);

    // Relabeling moves identities: x/a stops being an `app: a`.
    change(
        &server,
        &CLUSTER
            .split("---\n")
            .find(|d| d.contains("name: a, labels: {app: a}}") && d.contains("namespace: x"))
            .unwrap()
            .replace("labels: {app: a}", "labels: {app: z}"),
    );
    assert!(!allowed("x/a", "y/b"), "relabeled x/a is denied");
    lab("verify", &[]);

    // The agent switched to the manifests (which hold no policy) on the
    // running agent, and back to the API.
    lab("restart-agent", &["--manifests"]);
    assert!(allowed("y/a", "y/b"), "the manifests' policy: open");
    lab("restart-agent", &["--kubeconfig", &config_arg]);
    assert!(!allowed("y/a", "y/b"), "the API's policy again");

    // A deleted policy is no more.
    server
        .delete("NetworkPolicy", Some("y"), "default-deny")
        .unwrap();
    lab("sync", &[]);
    assert!(allowed("x/a", "y/a"), "y/a is open again");
    lab("verify", &[]);
}
