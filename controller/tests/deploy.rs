//! `deploy/`: the plain manifests and the Helm chart are valid Kubernetes
//! objects (strictly, against the API's schemas), the chart lints and
//! renders with default and non-default values, and both agree on what
//! matters: the RBAC rules, and the agent's pod (capabilities, mounts,
//! probes, host networking, arguments).
//!
//! The validators are Helm and kubernetes-validate, installed by `cargo
//! xtask setup` (xtask/src/tools.rs), which `cargo xtask test` passes in
//! `BULKHEAD_HELM` and `BULKHEAD_KUBERNETES_VALIDATE`. Without them these
//! tests fail when those variables or `CI` are set, and otherwise skip,
//! saying to run `cargo xtask setup`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The Kubernetes version the objects are validated against.
const KUBERNETES_VERSION: &str = "1.37.0";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn manifests_dir() -> PathBuf {
    repo().join("deploy/kubernetes")
}

fn chart_dir() -> PathBuf {
    repo().join("deploy/helm/bulkhead")
}

/// A tool from `var`, else where `cargo xtask setup` puts it (under
/// `~/.cache/bulkhead`); `None` (after saying why) when it is missing and
/// the test may skip.
fn tool(var: &str, default: &str) -> Option<PathBuf> {
    let given = std::env::var_os(var).map(PathBuf::from);
    let path = given.clone().unwrap_or_else(|| {
        let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
        home.join(".cache/bulkhead").join(default)
    });
    if path.is_file() {
        return Some(path);
    }
    let why = format!(
        "{} is missing: run `cargo xtask setup` (it installs Helm and kubernetes-validate)",
        path.display()
    );
    if given.is_some() || std::env::var_os("CI").is_some() {
        panic!("{why}");
    }
    eprintln!("skipping: {why}");
    None
}

/// Helm and kubernetes-validate, or `None` to skip.
fn tools() -> Option<(PathBuf, PathBuf)> {
    let helm = tool("BULKHEAD_HELM", "tools/kubectl-layer-2.1.0/helm/helm")?;
    let validate = tool(
        "BULKHEAD_KUBERNETES_VALIDATE",
        "kubernetes-validate-1.37.0/bin/kubernetes-validate",
    )?;
    Some((helm, validate))
}

/// Runs `cmd`; its stdout, or a panic with its output.
fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The YAML documents of `text` (empty ones left out).
fn documents(text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).expect("valid YAML"))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

/// Validates `files` strictly: every document must pass against a schema
/// (an unknown kind only warns in kubernetes-validate, so that counts as
/// a failure here too).
fn validate(validate: &Path, files: &[PathBuf]) {
    let docs: usize = files
        .iter()
        .map(|f| documents(&std::fs::read_to_string(f).unwrap()).len())
        .sum();
    assert!(docs > 0, "nothing to validate in {files:?}");
    let out = Command::new(validate)
        .args(["--strict", "--kubernetes-version", KUBERNETES_VERSION])
        .args(files)
        .output()
        .expect("run kubernetes-validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "kubernetes-validate failed:\n{text}");
    let passed = text.lines().filter(|l| l.contains(" passed for ")).count();
    assert_eq!(passed, docs, "every document passes a schema:\n{text}");
    assert!(!text.contains("WARN"), "warnings:\n{text}");
}

/// `helm template` of the chart with `values` files; the rendered text.
fn render(helm: &Path, values: &[&Path]) -> String {
    let mut cmd = Command::new(helm);
    cmd.args(["template", "bulkhead"])
        .arg(chart_dir())
        .args(["--namespace", "bulkhead-system"]);
    for v in values {
        cmd.arg("--values").arg(v);
    }
    run(&mut cmd)
}

/// Values other than the defaults, for the second rendering.
const CUSTOM_VALUES: &str = r#"
mode: audit
xdp: true
ipfix: "192.0.2.10:4739"
historyDb: /var/lib/bulkhead/history.redb
timelineDb: /var/lib/bulkhead/timeline.redb
alertmanager: http://alertmanager.monitoring:9093
alertsJsonl: /var/lib/bulkhead/alerts.jsonl
respond: ["quarantine:scan,new_external"]
flowLog: "-"
metrics:
  port: 19617
tolerations:
  - key: dedicated
    operator: Equal
    value: edge
    effect: NoSchedule
nodeSelector:
  kubernetes.io/os: linux
podAnnotations:
  example.com/team: platform
extraArgs: ["--flow-idle-timeout=30"]
serviceAccount:
  name: agent
image:
  repository: registry.example/bulkhead
  tag: "1.2.3"
"#;

#[test]
fn plain_manifests_validate_strictly() {
    let Some((_, validator)) = tools() else {
        return;
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(manifests_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    validate(&validator, &files);
}

#[test]
fn chart_lints_and_renders_valid_objects() {
    let Some((helm, validator)) = tools() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let custom = dir.path().join("custom-values.yaml");
    std::fs::write(&custom, CUSTOM_VALUES).unwrap();
    run(Command::new(&helm)
        .args(["lint", "--strict"])
        .arg(chart_dir()));
    run(Command::new(&helm)
        .args(["lint", "--strict", "--values"])
        .arg(&custom)
        .arg(chart_dir()));
    for (name, values) in [("default", vec![]), ("custom", vec![custom.as_path()])] {
        let out = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&out, render(&helm, &values)).unwrap();
        validate(&validator, &[out]);
    }
}

#[test]
fn chart_renders_what_the_values_say() {
    let Some((helm, _)) = tools() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let custom = dir.path().join("custom-values.yaml");
    std::fs::write(&custom, CUSTOM_VALUES).unwrap();
    let docs = documents(&render(&helm, &[&custom]));
    let ds = find(&docs, "DaemonSet");
    let pod = &ds["spec"]["template"]["spec"];
    let agent = &pod["containers"][0];
    let args: Vec<&str> = agent["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    for want in [
        "--mode=audit",
        "--xdp=on",
        "--ipfix=192.0.2.10:4739",
        "--history-db=/var/lib/bulkhead/history.redb",
        "--timeline-db=/var/lib/bulkhead/timeline.redb",
        "--alertmanager=http://alertmanager.monitoring:9093",
        "--alerts-jsonl=/var/lib/bulkhead/alerts.jsonl",
        "--respond=quarantine:scan,new_external",
        "--flow-log=-",
        "--metrics-addr=0.0.0.0:19617",
        "--flow-idle-timeout=30",
    ] {
        assert!(args.contains(&want), "{want} in {args:?}");
    }
    assert_eq!(agent["image"], "registry.example/bulkhead:1.2.3");
    assert_eq!(agent["ports"][0]["containerPort"], 19617);
    assert_eq!(pod["tolerations"][0]["key"], "dedicated");
    assert_eq!(pod["tolerations"].as_array().unwrap().len(), 1);
    assert_eq!(pod["nodeSelector"]["kubernetes.io/os"], "linux");
    assert_eq!(pod["serviceAccountName"], "agent");
    let annotations = &ds["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/port"], "19617");
    assert_eq!(annotations["example.com/team"], "platform");
    let binding = find(&docs, "ClusterRoleBinding");
    assert_eq!(binding["subjects"][0]["name"], "agent");

    // Values the agent would refuse are refused when rendering.
    for bad in [
        "mode: bogus",
        "flowLog: /etc/flows.jsonl",
        "timelineDb: /tmp/timeline.redb",
    ] {
        let file = dir.path().join("bad.yaml");
        std::fs::write(&file, bad).unwrap();
        let out = Command::new(&helm)
            .args(["template", "bulkhead"])
            .arg(chart_dir())
            .arg("--values")
            .arg(&file)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{bad} must not render");
    }
}

/// The one object of `kind` in `docs`.
fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind}");
    found[0]
}

/// The agent's pod spec without what legitimately differs between the
/// chart and the plain manifests (names and the image reference).
fn pod_essentials(ds: &Value) -> Value {
    let mut pod = ds["spec"]["template"]["spec"].clone();
    pod.as_object_mut().unwrap().remove("serviceAccountName");
    for c in pod["containers"].as_array_mut().unwrap() {
        c.as_object_mut().unwrap().remove("image");
    }
    pod
}

#[test]
fn chart_and_plain_manifests_agree() {
    let Some((helm, _)) = tools() else {
        return;
    };
    let chart = documents(&render(&helm, &[]));
    let plain: Vec<Value> = std::fs::read_dir(manifests_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .flat_map(|p| documents(&std::fs::read_to_string(p).unwrap()))
        .collect();

    assert_eq!(
        find(&chart, "ClusterRole")["rules"],
        find(&plain, "ClusterRole")["rules"],
        "the same RBAC rules"
    );
    let (c, p) = (find(&chart, "DaemonSet"), find(&plain, "DaemonSet"));
    let (cp, pp) = (pod_essentials(c), pod_essentials(p));
    // The parts that matter most, compared one by one for a clear message,
    // then the whole pod spec.
    let agent = |pod: &Value| pod["containers"][0].clone();
    assert_eq!(
        agent(&cp)["securityContext"],
        agent(&pp)["securityContext"],
        "the same capabilities and security context"
    );
    assert_eq!(
        agent(&cp)["volumeMounts"],
        agent(&pp)["volumeMounts"],
        "the same mounts"
    );
    assert_eq!(cp["volumes"], pp["volumes"], "the same host paths");
    assert_eq!(agent(&cp)["args"], agent(&pp)["args"], "the same arguments");
    assert_eq!(cp, pp, "the same pod spec");
    assert_eq!(
        c["spec"]["template"]["metadata"]["annotations"],
        p["spec"]["template"]["metadata"]["annotations"],
        "the same scrape annotations"
    );
    assert_eq!(c["spec"]["updateStrategy"], p["spec"]["updateStrategy"]);
    assert_eq!(
        find(&chart, "ServiceAccount")["metadata"]["namespace"],
        find(&plain, "ServiceAccount")["metadata"]["namespace"]
    );
}
