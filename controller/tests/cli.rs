//! The `bulkhead` binary end to end: output formats, exit statuses, and
//! error messages that name file, object and field.

use std::path::PathBuf;
use std::process::{Command, Output};

fn bulkhead(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bulkhead"))
        .args(args)
        .output()
        .expect("run bulkhead")
}

fn demo() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../policies/demo")
        .display()
        .to_string()
}

#[test]
fn connectivity_json_lines_have_the_documented_shape() {
    let out = bulkhead(&["connectivity", "--manifests", &demo(), "--output", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.lines()
            .any(|l| l == r#"{"src":"shop/frontend","dst":"shop/api","allowed":{"TCP":[[8080,8080]],"UDP":[],"SCTP":[]}}"#),
        "{text}"
    );
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("each line is JSON");
        assert!(v["src"].is_string() && v["dst"].is_string() && v["allowed"].is_object());
    }
}

#[test]
fn explain_json_and_text() {
    let args = [
        "explain",
        "--manifests",
        &demo(),
        "--from",
        "sandbox/stray",
        "--to",
        "shop/db",
        "--port",
        "5432",
    ];
    let out = bulkhead(&[&args[..], &["--output", "json"]].concat());
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["allowed"], false);
    assert_eq!(v["ingress"]["verdict"], "denied");
    assert_eq!(v["protocol"], "TCP");
    let out = bulkhead(&args);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("verdict: DENIED") && text.contains("shop/db ingress[0].from[0].ports[0]"),
        "{text}"
    );
}

#[test]
fn bad_input_exits_2_naming_file_object_and_field() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\n\
         spec:\n  podSelector: {}\n  ingress:\n    - from:\n        - ipBlock: {cidr: 10.0.0.0/33}\n",
    )
    .unwrap();
    let out = bulkhead(&["connectivity", "--manifests", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        out.stdout.is_empty(),
        "nothing on stdout when the input is bad"
    );
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("bad.yaml"), "{err}");
    assert!(err.contains("NetworkPolicy x/p"), "{err}");
    assert!(
        err.contains("spec.ingress[0].from[0].ipBlock.cidr"),
        "{err}"
    );
    let out = bulkhead(&[
        "explain",
        "--manifests",
        &demo(),
        "--from",
        "shop/nope",
        "--to",
        "shop/db",
        "--port",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let out = bulkhead(&["connectivity"]);
    assert_eq!(out.status.code(), Some(2), "usage errors exit 2");
}

#[test]
fn a_named_port_no_pod_declares_is_a_warning_and_allows_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("all.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata: {namespace: x, name: a, labels: {pod: a}}\n\
         spec: {containers: [{name: c, ports: [{name: http, containerPort: 80}]}]}\n\
         ---\napiVersion: v1\nkind: Pod\nmetadata: {namespace: x, name: b, labels: {pod: b}}\n\
         spec: {containers: [{name: c}]}\n\
         ---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
         metadata: {namespace: x, name: np}\n\
         spec:\n  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - ports: [{port: metrics}]\n",
    )
    .unwrap();
    let d = dir.path().display().to_string();
    let out = bulkhead(&["connectivity", "--manifests", &d, "--output", "json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("NetworkPolicy x/np: spec.ingress[0].ports[0].port")
            && stderr.contains("allows nothing"),
        "{stderr}"
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        !text.lines().any(|l| l.contains(r#""dst":"x/a""#)),
        "nothing may reach x/a: {text}"
    );
    let out = bulkhead(&[
        "explain",
        "--manifests",
        &d,
        "--from",
        "x/b",
        "--to",
        "x/a",
        "--port",
        "80",
    ]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("DENIED"));
}
