//! The DaemonSet's capabilities are enough, and each one is needed.
//!
//! Reads the capability list of `deploy/kubernetes/30-daemonset.yaml`
//! (the Helm chart is checked against that file by
//! `controller/tests/deploy.rs`), then runs the real `bulkhead agent` on a
//! tiny node (network namespaces, pod veths, a private bpffs) under
//! `setpriv` with the credentials a container runtime gives a uid-0
//! container that drops ALL and adds that list: bounding, permitted and
//! effective sets exactly the list, inheritable and ambient empty,
//! `no_new_privs` (allowPrivilegeEscalation: false). It proves the agent
//! loads, attaches and enforces (an allowed connection passes, a denied one
//! is dropped and counted) and serves /healthz over TCP; then, from a clean
//! node each time, that the agent without any one of the capabilities does
//! not get to enforce.

mod agent_support;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use agent_support::{Node, allow, privileged, serial, tcp_ok, until_tcp};
use bulkhead_netns_tests::collectors::http_get;

/// The DaemonSet whose capabilities are tested.
const DAEMONSET: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../deploy/kubernetes/30-daemonset.yaml"
);

/// Capability numbers (`linux/capability.h`) by their Kubernetes names.
const CAPABILITIES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// The agent container's `securityContext` in the DaemonSet.
fn security_context() -> serde_json::Value {
    let text = std::fs::read_to_string(DAEMONSET).expect("read the DaemonSet");
    let ds: serde_json::Value = serde_yaml_ng::from_str(&text).expect("parse the DaemonSet");
    assert_eq!(ds["kind"], "DaemonSet", "{DAEMONSET}");
    let containers = ds["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers");
    let agent = containers
        .iter()
        .find(|c| c["name"] == "agent")
        .expect("a container named agent");
    agent["securityContext"].clone()
}

/// The capabilities the DaemonSet adds, after checking it drops all others
/// and runs as uid 0 unprivileged (what this test reproduces).
fn daemonset_capabilities() -> Vec<String> {
    let sc = security_context();
    assert_eq!(sc["privileged"], false, "{sc}");
    assert_eq!(sc["allowPrivilegeEscalation"], false, "{sc}");
    assert_eq!(sc["runAsUser"], 0, "{sc}");
    assert_eq!(
        sc["capabilities"]["drop"],
        serde_json::json!(["ALL"]),
        "{sc}"
    );
    let add: Vec<String> = sc["capabilities"]["add"]
        .as_array()
        .expect("capabilities.add")
        .iter()
        .map(|c| c.as_str().expect("a capability name").to_owned())
        .collect();
    for c in &add {
        assert!(
            CAPABILITIES.contains(&c.as_str()),
            "{c} is not a capability name Kubernetes knows (no CAP_ prefix)"
        );
    }
    add
}

/// The capability mask of `caps`, as /proc/PID/status prints it.
fn mask(caps: &[String]) -> u64 {
    caps.iter()
        .map(|c| 1u64 << CAPABILITIES.iter().position(|k| k == c).unwrap())
        .fold(0, |m, b| m | b)
}

/// The command prefix that gives the agent exactly `caps` as a container
/// runtime gives a uid-0 container: bounding set = `caps` (root's
/// permitted and effective sets follow it on exec), no inheritable or
/// ambient capabilities, no new privileges; and a 64 KiB RLIMIT_MEMLOCK,
/// which the agent never raises (it has no CAP_SYS_RESOURCE): BPF memory
/// is charged to the memory cgroup (kernel 5.11+), not to that limit.
fn setpriv(caps: &[String]) -> Vec<String> {
    let list: String = caps
        .iter()
        .map(|c| format!(",+{}", c.to_lowercase()))
        .collect();
    vec![
        "prlimit".into(),
        "--memlock=65536:65536".into(),
        "setpriv".into(),
        "--reuid=0".into(),
        "--regid=0".into(),
        "--clear-groups".into(),
        "--inh-caps=-all".into(),
        "--ambient-caps=-all".into(),
        format!("--bounding-set=-all{list}"),
        "--no-new-privs".into(),
        "--".into(),
    ]
}

/// A capability set line (`CapEff:` ...) of `/proc/PID/status`.
fn proc_caps(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("agent status");
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    u64::from_str_radix(hex.trim(), 16).expect("a hex capability set")
}

/// The node of these tests: pods a, b, c; b isolated for ingress and open
/// to a on port 80.
fn node() -> Node {
    let node = Node::new(&["a", "b", "c"]);
    node.write("allow.yaml", &allow("a-to-b", "a", "b", &[80]));
    node
}

/// Where the agent serves /healthz over TCP, inside the node namespace.
const METRICS: &str = "127.0.0.1:9617";

#[test]
fn the_daemonsets_capabilities_are_enough_and_each_is_needed() {
    if !privileged() {
        return;
    }
    for tool in ["setpriv", "prlimit"] {
        assert!(which(tool), "{tool} (util-linux) is needed");
    }
    let _serial = serial();
    let caps = daemonset_capabilities();
    eprintln!("DaemonSet capabilities: {caps:?}");
    assert!(
        !caps.is_empty(),
        "the agent cannot run without capabilities"
    );

    enforces_with(&caps);
    for dropped in &caps {
        let fewer: Vec<String> = caps.iter().filter(|c| *c != dropped).cloned().collect();
        let why = does_not_enforce_with(&fewer);
        eprintln!("without {dropped}: {why}");
    }
}

/// The agent with exactly `caps` loads, attaches, enforces and answers
/// /healthz.
fn enforces_with(caps: &[String]) {
    let mut node = node();
    let (a, b, c) = (
        node.pod("a").clone(),
        node.pod("b").clone(),
        node.pod("c").clone(),
    );
    let wrapper = setpriv(caps);
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let pid = node.spawn_agent(&wrapper, &["--metrics-addr", METRICS, "--xdp", "on"]);
    if let Err(e) = node.try_wait_synced(Duration::from_secs(60)) {
        panic!(
            "the agent with {caps:?} does not enforce: {e}\n{}",
            node.agent_log()
        );
    }
    let want = mask(caps);
    for field in ["CapBnd:", "CapPrm:", "CapEff:"] {
        assert_eq!(proc_caps(pid, field), want, "{field} of the agent");
    }
    for field in ["CapInh:", "CapAmb:"] {
        assert_eq!(proc_caps(pid, field), 0, "{field} of the agent");
    }

    until_tcp(&a, b.ip, true, Duration::from_secs(10)).expect("a → b is allowed and passes");
    assert!(
        !tcp_ok(&c, b.ip, Duration::from_millis(500)),
        "c → b is denied and dropped"
    );
    let status = node.status();
    let endpoints = status["endpoints"].as_array().expect("endpoints");
    assert_eq!(endpoints.len(), 3, "{status}");
    for e in endpoints {
        assert_eq!(
            e["hooks"],
            serde_json::json!(["from_pod", "to_pod", "xdp"]),
            "{e}"
        );
    }
    let denied = status["drops"]
        .as_array()
        .expect("drops")
        .iter()
        .find(|d| d[0] == "policy_denied")
        .and_then(|d| d[1].as_u64());
    assert!(
        denied.is_some_and(|n| n > 0),
        "the drop is counted: {status}"
    );

    let addr: SocketAddr = METRICS.parse().unwrap();
    let (code, body) = http_get(&node.node, addr, "/healthz").expect("GET /healthz");
    assert_eq!(code, 200, "/healthz: {body}");

    // A rolling update: the next agent adopts the pins with the same
    // capabilities, and enforcement never stopped.
    node.stop_agent(nix::sys::signal::Signal::SIGTERM);
    assert!(
        !tcp_ok(&c, b.ip, Duration::from_millis(500)),
        "c → b stays dropped while no agent runs"
    );
    let before = node.agent_log().len();
    node.spawn_agent(&wrapper, &["--metrics-addr", METRICS, "--xdp", "on"]);
    if let Err(e) = node.try_wait_synced(Duration::from_secs(60)) {
        panic!(
            "the restarted agent with {caps:?} does not adopt: {e}\n{}",
            node.agent_log()
        );
    }
    let log = node.agent_log().split_off(before);
    assert!(
        log.contains("adopted the pinned dataplane"),
        "the restarted agent adopted the pins:\n{log}"
    );
    // With only these capabilities it still sees the hooks in place: it
    // re-attaches none (a check it could not make would unpin, and so
    // detach, a working hook).
    assert!(
        !log.contains("attached dev=") && !log.contains("attaching hooks"),
        "the restarted agent kept every hook as it was:\n{log}"
    );
    until_tcp(&a, b.ip, true, Duration::from_secs(10)).expect("a → b passes after the restart");
    assert!(
        !tcp_ok(&c, b.ip, Duration::from_millis(500)),
        "c → b is dropped after the restart"
    );
}

/// The agent with `caps` does not get to enforce on a clean node: it
/// exits, or it never reports the manifests enforced; returns which.
fn does_not_enforce_with(caps: &[String]) -> String {
    let mut node = node();
    let wrapper = setpriv(caps);
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    node.spawn_agent(&wrapper, &["--metrics-addr", METRICS, "--xdp", "on"]);
    match node.try_wait_synced(Duration::from_secs(20)) {
        Ok(()) => panic!(
            "the agent enforces with only {caps:?}: the DaemonSet's list is not minimal\n{}",
            node.agent_log()
        ),
        Err(e) => {
            // The agent's first error line, and the verifier's reason if any.
            let log = node.agent_log();
            let first = log.lines().find(|l| l.contains("error")).unwrap_or("");
            let verifier = log.lines().find(|l| l.contains("prohibited")).unwrap_or("");
            let cut = |s: &str| s.chars().take(240).collect::<String>();
            format!("{e}; {} {}", cut(first), cut(verifier))
        }
    }
}

/// Whether `program` is on `PATH`.
fn which(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}
