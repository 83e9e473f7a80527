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
fn baseline_bad_input_exits_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.json");
    let missing = missing.to_str().unwrap();
    let out = bulkhead(&["baseline", "show", missing]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.json"));

    let file = dir.path().join("b.json");
    std::fs::write(
        &file,
        r#"{"schema":"bulkhead.baseline/v1","name":"b","scope":[{"namespace":"shop"}],"versions":[]}"#,
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let out = bulkhead(&["baseline", "accept", file, "--edge", "shop/web,x,TCP/1"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("shop/web"), "{err}");

    let out = bulkhead(&["baseline", "show", file, "--output", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["name"], "b");

    let out = bulkhead(&["agent", "--manifests", &demo(), "--baseline", missing]);
    assert_eq!(out.status.code(), Some(2));
    let out = bulkhead(&[
        "agent",
        "--manifests",
        &demo(),
        "--baseline",
        file,
        "--alertmanager",
        "https://am",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("only http://"));
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

/// `explain` to a Service (by name or ClusterIP) explains per backend pod,
/// in JSON and text; a Service without backends says so; a port the
/// Service does not have is bad input naming its ports.
#[test]
fn explain_a_service_per_backend() {
    let dir = tempfile::tempdir().unwrap();
    let demo = PathBuf::from(demo());
    for f in ["workloads.yaml", "netpol.yaml"] {
        std::fs::copy(demo.join(f), dir.path().join(f)).unwrap();
    }
    std::fs::write(
        dir.path().join("services.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata: {namespace: shop, name: store}\n\
         spec:\n  clusterIP: 10.96.0.30\n  selector: {role: store}\n  ports: [{port: 80, targetPort: 8080}]\n\
         ---\napiVersion: v1\nkind: Service\nmetadata: {namespace: shop, name: empty}\n\
         spec: {selector: {app: nothing}, ports: [{port: 80}], clusterIP: 10.96.0.40}\n\
         ---\napiVersion: v1\nkind: Pod\n\
         metadata: {namespace: shop, name: api-extra, labels: {app: api, tier: backend, role: store}}\n\
         spec: {containers: [{name: api, ports: [{name: http, containerPort: 8080}]}]}\n\
         ---\napiVersion: v1\nkind: Pod\n\
         metadata: {namespace: shop, name: cache, labels: {app: cache, role: store}}\n\
         spec: {containers: [{name: cache, ports: [{containerPort: 8080}]}]}\n",
    )
    .unwrap();
    let d = dir.path().display().to_string();
    let explain = |to: &str, port: &str, json: bool| {
        let mut args = vec![
            "explain",
            "--manifests",
            &d,
            "--from",
            "shop/frontend",
            "--to",
            to,
            "--port",
            port,
        ];
        if json {
            args.extend(["--output", "json"]);
        }
        bulkhead(&args)
    };
    let out = explain("10.96.0.30", "80", true);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["service"], "shop/store");
    assert_eq!(v["verdict"], "some-backends");
    let backends = v["backends"].as_array().unwrap();
    assert_eq!(backends.len(), 2);
    for b in backends {
        assert_eq!(b["port"], 8080, "the target port");
        let allowed = b["pod"] == "shop/api-extra";
        assert_eq!(b["allowed"], allowed, "{b}");
        assert_eq!(b["dst"]["pod"], b["pod"]);
    }
    let out = explain("svc/shop/store", "80", false);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("svc shop/store 10.96.0.30:80 (2 backends)")
            && text.contains("verdict: ALLOWED to 1 of 2 backends")
            && text.contains("backend shop/cache (")
            && text.contains("  ingress of shop/cache: isolated by shop/default-deny"),
        "{text}"
    );
    let out = explain("svc/shop/empty", "80", false);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("NO BACKENDS: no pod matches the Service's selector")
    );
    let out = explain("svc/shop/store", "8080", false);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Service shop/store has no port 8080/TCP (its ports: 80/TCP)"),
        "{err}"
    );
}

#[test]
fn quarantine_without_an_agent_or_with_a_bad_pod_exits_2_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock").display().to_string();
    let out = bulkhead(&["quarantine", "web", "--socket", &socket]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("NAMESPACE/NAME"), "{err}");
    for args in [
        &["quarantine", "x/a", "--reason", "test", "--socket", &socket][..],
        &["quarantine", "--list", "--socket", &socket],
        &["unquarantine", "x/a", "--socket", &socket],
    ] {
        let out = bulkhead(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("no agent API socket at"), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn explain_as_if_a_pod_were_quarantined() {
    let args = [
        "explain",
        "--manifests",
        &demo(),
        "--from",
        "shop/frontend",
        "--to",
        "shop/api",
        "--port",
        "8080",
        "--output",
        "json",
    ];
    let out = bulkhead(&args);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["allowed"], true, "allowed without the quarantine");
    let out = bulkhead(&[&args[..], &["--quarantined", "shop/api"]].concat());
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["allowed"], false);
    assert_eq!(v["ingress"]["verdict"], "denied");
    let text = v.to_string();
    assert!(
        text.contains("quarantined: bulkhead explain --quarantined"),
        "{text}"
    );
    let out = bulkhead(&[&args[..], &["--quarantined", "api"]].concat());
    assert_eq!(out.status.code(), Some(2), "NS/POD");
}

#[test]
fn agent_refuses_a_ui_address_off_loopback_without_a_token() {
    let out = bulkhead(&["agent", "--manifests", &demo(), "--ui-addr", "0.0.0.0:0"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--ui-addr 0.0.0.0:0 is not a loopback address")
            && err.contains("--ui-token-file"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("token");
    std::fs::write(&empty, "\n").unwrap();
    let out = bulkhead(&[
        "agent",
        "--manifests",
        &demo(),
        "--ui-addr",
        "0.0.0.0:0",
        "--ui-token-file",
        empty.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the UI token in") && err.contains("is empty"),
        "{err}"
    );

    let out = bulkhead(&["agent", "--manifests", &demo(), "--ui-token-file", "x"]);
    assert_eq!(out.status.code(), Some(2), "a token needs an address");
}
