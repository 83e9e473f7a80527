//! Loader tests: every bad input fails the whole load with an error naming
//! the file, the object and the field; good inputs of every supported shape
//! load into the expected model.

use std::net::IpAddr;
use std::path::Path;

use tempfile::TempDir;

use super::*;
use crate::model::{
    ContainerPort, IpBlock, Labels, NAMESPACE_NAME_LABEL, NamespaceScope, Peer, Policy, PortSpec,
    Protocol, Requirement, Selector,
};
use crate::testfs::dir_with;

// ---------------------------------------------------------------- helpers

fn load(dir: &Path) -> Result<Model, ManifestErrors> {
    load_dir(dir, &AddressPlan::default())
}

fn load_ok(files: &[(&str, &str)]) -> Model {
    let dir = dir_with(files);
    load(dir.path()).unwrap_or_else(|e| panic!("load failed:\n{e}"))
}

/// The errors of a load that must fail, and the directory (for paths).
fn load_err(files: &[(&str, &str)]) -> (TempDir, ManifestErrors) {
    let dir = dir_with(files);
    match load(dir.path()) {
        Ok(m) => panic!("load succeeded: {m:#?}"),
        Err(e) => (dir, e),
    }
}

/// The one object error of a load that must fail; checks that its message
/// names the file, the object and the field.
fn object_error(files: &[(&str, &str)], file: &str, object: &str, field: &str) -> ObjectError {
    let (dir, errors) = load_err(files);
    assert_eq!(errors.0.len(), 1, "expected one error, got:\n{errors}");
    let message = errors.to_string();
    let ManifestError::Object(e) = errors.0.into_iter().next().expect("one") else {
        panic!("not an object error: {message}");
    };
    assert_eq!(e.origin.path().unwrap(), dir.path().join(file), "{message}");
    assert_eq!(e.object.to_string(), object, "{message}");
    assert_eq!(e.field, field, "{message}");
    let path = dir.path().join(file);
    assert!(
        message.starts_with(&format!("{} (document ", path.display())),
        "message does not name the file: {message}"
    );
    assert!(
        message.contains(&format!(": {object}: {field}: ")),
        "message does not name the object and field: {message}"
    );
    e
}

const NS_X: &str = "
apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {ns: x}}
";

const POD_X_A: &str = "
apiVersion: v1
kind: Pod
metadata:
  name: a
  namespace: x
  labels: {pod: a}
spec:
  containers:
  - name: web
    image: nginx
    ports:
    - {name: http, containerPort: 80}
    - {name: dns, containerPort: 53, protocol: UDP}
";

/// A NetworkPolicy `x/bad` with `spec` (indented by the caller as a block
/// under `spec:`).
fn policy(spec: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: bad\n  namespace: x\nspec:\n{spec}"
    )
}

/// The one error of loading pod x/a plus the policy with `spec`; the error
/// must name `policy.yaml`, `NetworkPolicy x/bad` and `field`.
fn policy_error(spec: &str, field: &str) -> Problem {
    let text = policy(spec);
    object_error(
        &[("pods.yaml", POD_X_A), ("policy.yaml", &text)],
        "policy.yaml",
        "NetworkPolicy x/bad",
        field,
    )
    .problem
}

/// The loaded policy x/good with `spec`, next to pod x/a.
fn policy_ok(spec: &str) -> Policy {
    let text = policy(spec).replace("name: bad", "name: good");
    let model = load_ok(&[("pods.yaml", POD_X_A), ("policy.yaml", &text)]);
    assert_eq!(model.policies.len(), 1);
    model.policies.into_iter().next().expect("one")
}

// ---------------------------------------------------------------- bad input

#[test]
fn malformed_yaml_names_file_and_line() {
    let text = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n  labels: {pod: a\nspec: {}\n";
    let (dir, errors) = load_err(&[("ok.yaml", NS_X), ("broken.yaml", text)]);
    assert_eq!(errors.0.len(), 1, "{errors}");
    assert!(
        matches!(errors.0[0], ManifestError::Yaml { .. }),
        "{errors}"
    );
    let message = errors.to_string();
    let path = dir.path().join("broken.yaml");
    assert!(
        message.starts_with(&format!("{}: invalid YAML", path.display())),
        "{message}"
    );
    assert!(message.contains("line 6"), "no line number: {message}");
}

#[test]
fn malformed_yaml_in_a_later_document() {
    let text = format!("{NS_X}---\nkind: Pod\nmetadata: [unclosed\n");
    let (_dir, errors) = load_err(&[("multi.yaml", &text)]);
    assert_eq!(errors.0.len(), 1, "{errors}");
    let message = errors.to_string();
    assert!(message.contains("multi.yaml: invalid YAML"), "{message}");
    assert!(message.contains("line 7"), "no line number: {message}");
}

#[test]
fn malformed_json_names_file_and_line() {
    let text = "{\n  \"apiVersion\": \"v1\",\n  \"kind\": \"Pod\",\n}\n";
    let (dir, errors) = load_err(&[("pod.json", text)]);
    assert_eq!(errors.0.len(), 1, "{errors}");
    assert!(
        matches!(errors.0[0], ManifestError::Json { .. }),
        "{errors}"
    );
    let message = errors.to_string();
    let path = dir.path().join("pod.json");
    assert!(
        message.starts_with(&format!("{}: invalid JSON", path.display())),
        "{message}"
    );
    assert!(message.contains("line 4"), "no line number: {message}");
}

#[test]
fn unknown_field_in_policy() {
    let problem = policy_error(
        "  podSelector: {}\n  ingress:\n  - form:\n    - podSelector: {}\n",
        "spec.ingress[0].form",
    );
    assert!(matches!(problem, Problem::UnknownField), "{problem}");
}

#[test]
fn unknown_field_deep_in_policy() {
    let problem = policy_error(
        "  podSelector: {}\n  egress:\n  - to:\n    - ipBlock: {cidr: 10.0.0.0/8, exept: [10.1.0.0/16]}\n",
        "spec.egress[0].to[0].ipBlock.exept",
    );
    assert!(matches!(problem, Problem::UnknownField), "{problem}");
}

#[test]
fn unknown_top_level_spec_field() {
    let problem = policy_error("  podSelector: {}\n  ingres: []\n", "spec.ingres");
    assert!(matches!(problem, Problem::UnknownField), "{problem}");
}

#[test]
fn wrong_type_in_policy() {
    let problem = policy_error(
        "  podSelector: {}\n  ingress:\n  - from: {podSelector: {}}\n",
        "spec.ingress[0].from",
    );
    assert!(matches!(problem, Problem::Decode(_)), "{problem}");
}

#[test]
fn unsupported_policy_kind() {
    let text = "
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: l7, namespace: x}
spec:
  endpointSelector: {}
";
    let e = object_error(
        &[("cnp.yaml", text)],
        "cnp.yaml",
        "CiliumNetworkPolicy x/l7",
        "kind",
    );
    assert!(
        matches!(&e.problem, Problem::UnsupportedPolicyKind { kind, api_version }
            if kind == "CiliumNetworkPolicy" && api_version == "cilium.io/v2"),
        "{}",
        e.problem
    );
    // A cluster-admin kind at another apiVersion.
    let text = "
apiVersion: policy.networking.k8s.io/v1alpha1
kind: ClusterNetworkPolicy
metadata: {name: cluster-wide}
spec: {}
";
    let e = object_error(
        &[("cnp.yaml", text)],
        "cnp.yaml",
        "ClusterNetworkPolicy cluster-wide",
        "apiVersion",
    );
    assert!(
        matches!(e.problem, Problem::WrongApiVersion { .. }),
        "{}",
        e.problem
    );
}

#[test]
fn wrong_api_version_for_network_policy() {
    let text = policy("  podSelector: {}\n").replace("networking.k8s.io/v1", "extensions/v1beta1");
    let e = object_error(
        &[("pods.yaml", POD_X_A), ("policy.yaml", &text)],
        "policy.yaml",
        "NetworkPolicy x/bad",
        "apiVersion",
    );
    assert!(
        matches!(&e.problem, Problem::UnsupportedApiVersion(v) if v == "extensions/v1beta1"),
        "{}",
        e.problem
    );
}

#[test]
fn bad_cidr() {
    for cidr in ["10.0.0.0/33", "10.0.0.300/8", "banana", "10.0.0.1"] {
        let spec = format!(
            "  podSelector: {{}}\n  ingress:\n  - from:\n    - ipBlock: {{cidr: '{cidr}'}}\n"
        );
        let problem = policy_error(&spec, "spec.ingress[0].from[0].ipBlock.cidr");
        assert!(
            matches!(&problem, Problem::InvalidCidr { value, .. } if value == cidr),
            "{cidr}: {problem}"
        );
    }
}

#[test]
fn bad_cidr_in_except() {
    let problem = policy_error(
        "  podSelector: {}\n  egress:\n  - to:\n    - ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16, 10.2.0.0/99]}\n",
        "spec.egress[0].to[0].ipBlock.except[1]",
    );
    assert!(matches!(problem, Problem::InvalidCidr { .. }), "{problem}");
}

#[test]
fn except_outside_cidr() {
    for except in ["192.168.0.0/16", "10.0.0.0/8", "10.0.0.0/7", "fd00::/64"] {
        let spec = format!(
            "  podSelector: {{}}\n  ingress:\n  - from:\n    - ipBlock: {{cidr: 10.0.0.0/8, except: ['{except}']}}\n"
        );
        let problem = policy_error(&spec, "spec.ingress[0].from[0].ipBlock.except[0]");
        assert!(
            matches!(&problem, Problem::ExceptOutsideCidr { except: e, cidr } if e == except && cidr == "10.0.0.0/8"),
            "{except}: {problem}"
        );
    }
}

#[test]
fn bad_selector_operator() {
    let problem = policy_error(
        "  podSelector:\n    matchExpressions:\n    - {key: app, operator: Equals, values: [web]}\n",
        "spec.podSelector.matchExpressions[0].operator",
    );
    assert!(
        matches!(&problem, Problem::BadOperator(op) if op == "Equals"),
        "{problem}"
    );
    let problem = policy_error(
        "  podSelector: {}\n  ingress:\n  - from:\n    - namespaceSelector:\n        matchExpressions:\n        - {key: ns, operator: In, values: [y]}\n        - {key: ns, operator: in, values: [y]}\n",
        "spec.ingress[0].from[0].namespaceSelector.matchExpressions[1].operator",
    );
    assert!(
        matches!(&problem, Problem::BadOperator(op) if op == "in"),
        "{problem}"
    );
}

#[test]
fn in_without_values() {
    let problem = policy_error(
        "  podSelector: {}\n  ingress:\n  - from:\n    - podSelector:\n        matchExpressions:\n        - {key: app, operator: In}\n",
        "spec.ingress[0].from[0].podSelector.matchExpressions[0].values",
    );
    assert!(
        matches!(&problem, Problem::OperatorValues { operator, .. } if operator == "In"),
        "{problem}"
    );
    let problem = policy_error(
        "  podSelector:\n    matchExpressions:\n    - {key: app, operator: NotIn, values: []}\n",
        "spec.podSelector.matchExpressions[0].values",
    );
    assert!(
        matches!(problem, Problem::OperatorValues { .. }),
        "{problem}"
    );
}

#[test]
fn exists_with_values() {
    let problem = policy_error(
        "  podSelector:\n    matchExpressions:\n    - {key: app, operator: Exists, values: [web]}\n",
        "spec.podSelector.matchExpressions[0].values",
    );
    assert!(
        matches!(&problem, Problem::OperatorValues { operator, .. } if operator == "Exists"),
        "{problem}"
    );
}

#[test]
fn bad_protocol() {
    for proto in ["ICMP", "tcp"] {
        let spec = format!(
            "  podSelector: {{}}\n  ingress:\n  - ports:\n    - {{port: 80, protocol: {proto}}}\n"
        );
        let problem = policy_error(&spec, "spec.ingress[0].ports[0].protocol");
        assert!(
            matches!(&problem, Problem::BadProtocol(p) if p == proto),
            "{problem}"
        );
    }
}

#[test]
fn port_out_of_range() {
    for (port, n) in [("0", 0), ("70000", 70000), ("-1", -1), ("'0'", 0)] {
        let spec = format!("  podSelector: {{}}\n  egress:\n  - ports:\n    - port: {port}\n");
        let problem = policy_error(&spec, "spec.egress[0].ports[0].port");
        assert!(
            matches!(problem, Problem::PortOutOfRange(p) if p == n),
            "{port}: {problem}"
        );
    }
    let problem = policy_error(
        "  podSelector: {}\n  ingress:\n  - ports:\n    - {port: 80, endPort: 70000}\n",
        "spec.ingress[0].ports[0].endPort",
    );
    assert!(
        matches!(problem, Problem::PortOutOfRange(70000)),
        "{problem}"
    );
}

#[test]
fn bad_port_name() {
    let problem = policy_error(
        "  podSelector: {}\n  ingress:\n  - ports:\n    - port: Serve_HTTP\n",
        "spec.ingress[0].ports[0].port",
    );
    assert!(matches!(problem, Problem::BadPortName(_)), "{problem}");
}

#[test]
fn end_port_with_named_port() {
    let problem = policy_error(
        "  podSelector: {}\n  ingress:\n  - ports:\n    - {port: http, endPort: 90}\n",
        "spec.ingress[0].ports[0].endPort",
    );
    assert!(
        matches!(problem, Problem::EndPortWithoutNumericPort),
        "{problem}"
    );
    let problem = policy_error(
        "  podSelector: {}\n  ingress:\n  - ports:\n    - {endPort: 90}\n",
        "spec.ingress[0].ports[0].endPort",
    );
    assert!(
        matches!(problem, Problem::EndPortWithoutNumericPort),
        "{problem}"
    );
}

#[test]
fn end_port_below_port() {
    let problem = policy_error(
        "  podSelector: {}\n  ingress:\n  - ports:\n    - {port: 80}\n    - {port: 90, endPort: 85}\n",
        "spec.ingress[0].ports[1].endPort",
    );
    assert!(
        matches!(problem, Problem::EndPortBelowPort { port: 90, end: 85 }),
        "{problem}"
    );
}

#[test]
fn peer_with_ip_block_and_selector() {
    let problem = policy_error(
        "  podSelector: {}\n  ingress:\n  - from:\n    - podSelector: {}\n    - ipBlock: {cidr: 10.0.0.0/8}\n      podSelector: {}\n",
        "spec.ingress[0].from[1]",
    );
    assert!(matches!(problem, Problem::BadPeer(_)), "{problem}");
    let problem = policy_error(
        "  podSelector: {}\n  egress:\n  - to:\n    - ipBlock: {cidr: 10.0.0.0/8}\n      namespaceSelector: {}\n",
        "spec.egress[0].to[0]",
    );
    assert!(matches!(problem, Problem::BadPeer(_)), "{problem}");
}

#[test]
fn empty_peer() {
    let problem = policy_error(
        "  podSelector: {}\n  ingress:\n  - from:\n    - {}\n",
        "spec.ingress[0].from[0]",
    );
    assert!(matches!(problem, Problem::BadPeer(_)), "{problem}");
}

#[test]
fn bad_policy_type() {
    let problem = policy_error(
        "  podSelector: {}\n  policyTypes: [Ingress, egress]\n",
        "spec.policyTypes[1]",
    );
    assert!(
        matches!(&problem, Problem::BadPolicyType(t) if t == "egress"),
        "{problem}"
    );
}

#[test]
fn named_port_that_resolves_nowhere_allows_nothing_with_a_warning() {
    // The API server accepts both; neither entry allows anything.
    let text = policy(
        "  podSelector: {}\n  ingress:\n  - ports:\n    - port: http\n    - port: metrics\n  egress:\n  - ports:\n    - {port: http, protocol: UDP}\n",
    )
    .replace("name: bad", "name: np");
    let model = load_ok(&[("pods.yaml", POD_X_A), ("policy.yaml", &text)]);
    assert_eq!(model.warnings.len(), 2, "{:#?}", model.warnings);
    assert!(model.warnings[0].contains("NetworkPolicy x/np: spec.ingress[0].ports[1].port"));
    assert!(model.warnings[0].contains("\"metrics\" (TCP)"));
    // A name declared with another protocol does not resolve either.
    assert!(model.warnings[1].contains("spec.egress[0].ports[0].port"));
    let c = crate::compile::compile(&model);
    let a = model.pods[0].ips[0];
    let peer: std::net::IpAddr = "192.0.2.1".parse().unwrap();
    let http = model.pods[0].named_port("http", crate::model::Protocol::Tcp);
    assert!(c.allowed(peer, a, 6, http.expect("x/a declares http")));
    for port in [1, 9090, 65535] {
        assert!(!c.allowed(peer, a, 6, port), "TCP {port}");
        assert!(!c.allowed(a, peer, 17, port), "egress UDP {port}");
    }
}

#[test]
fn missing_policy_name() {
    let text = policy("  podSelector: {}\n").replace("  name: bad\n", "");
    let (_dir, errors) = load_err(&[("policy.yaml", &text)]);
    let message = errors.to_string();
    assert!(
        message.contains(": NetworkPolicy: metadata.name: "),
        "{message}"
    );
}

#[test]
fn duplicate_pod_names() {
    let (dir, errors) = load_err(&[("one.yaml", POD_X_A), ("two.yaml", POD_X_A)]);
    assert_eq!(errors.0.len(), 1, "{errors}");
    let message = errors.to_string();
    let ManifestError::Object(e) = &errors.0[0] else {
        panic!("{message}")
    };
    assert_eq!(e.field, "metadata.name");
    assert_eq!(e.origin.path().unwrap(), dir.path().join("two.yaml"));
    assert_eq!(e.object.to_string(), "Pod x/a");
    assert!(
        matches!(&e.problem, Problem::Duplicate { what: "pod", key, other }
            if key == "x/a" && other.path() == Some(dir.path().join("one.yaml").as_path())),
        "{message}"
    );
    assert!(
        message.contains("one.yaml"),
        "does not name the other file: {message}"
    );
}

#[test]
fn workload_and_pod_with_one_name_are_duplicates() {
    let deployment = "
apiVersion: apps/v1
kind: Deployment
metadata: {name: a, namespace: x}
spec:
  selector: {matchLabels: {pod: a}}
  template:
    metadata: {labels: {pod: a}}
    spec: {containers: [{name: c, image: i}]}
";
    let (_dir, errors) = load_err(&[("a.yaml", POD_X_A), ("b.yaml", deployment)]);
    let message = errors.to_string();
    assert!(
        message.contains("Deployment x/a: metadata.name: pod x/a is also defined at"),
        "{message}"
    );
}

#[test]
fn an_address_two_pods_claim_is_kept_by_the_running_one_with_a_warning() {
    let pod = |name: &str, phase: &str, started: &str| {
        format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: x}}\n\
             spec: {{containers: [{{name: c, image: i}}]}}\n\
             status: {{phase: {phase}, startTime: \"{started}\", podIP: 10.244.7.7}}\n"
        )
    };
    let text = format!(
        "{}{}",
        pod("a", "Running", "2026-12-01T10:00:00Z"),
        pod("b", "Pending", "2026-12-01T11:00:00Z")
    );
    let model = load_ok(&[("pods.yaml", &text)]);
    let ip: IpAddr = "10.244.7.7".parse().unwrap();
    assert_eq!(model.pods[0].ips, vec![ip], "the running pod keeps it");
    assert!(model.pods[1].ips.is_empty(), "the other has no address");
    assert_eq!(model.warnings.len(), 1);
    assert!(
        model.warnings[0].contains("x/a keeps it"),
        "{:?}",
        model.warnings
    );
}

#[test]
fn bad_status_address() {
    let text = "
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x}
spec: {containers: [{name: c, image: i}]}
status:
  podIPs: [{ip: 10.244.0.9}, {ip: not-an-ip}]
";
    object_error(
        &[("pod.yaml", text)],
        "pod.yaml",
        "Pod x/a",
        "status.podIPs[1].ip",
    );
}

#[test]
fn bad_container_port() {
    let text = "
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x}
spec:
  containers:
  - name: c
    image: i
  - name: d
    image: i
    ports: [{containerPort: 80}, {containerPort: 0}]
";
    let e = object_error(
        &[("pod.yaml", text)],
        "pod.yaml",
        "Pod x/a",
        "spec.containers[1].ports[1].containerPort",
    );
    assert!(
        matches!(e.problem, Problem::PortOutOfRange(0)),
        "{}",
        e.problem
    );
}

#[test]
fn wrongly_typed_pod_field() {
    let text = "
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x}
spec:
  containers:
  - name: c
    image: i
    ports: [{containerPort: eighty}]
";
    let e = object_error(
        &[("pod.yaml", text)],
        "pod.yaml",
        "Pod x/a",
        "spec.containers[0].ports[0].containerPort",
    );
    assert!(matches!(e.problem, Problem::Decode(_)), "{}", e.problem);
}

#[test]
fn list_item_without_kind_in_generic_list() {
    let text = "
apiVersion: v1
kind: List
items:
- metadata: {name: a, namespace: x}
  spec: {containers: [{name: c, image: i}]}
";
    let (_dir, errors) = load_err(&[("list.yaml", text)]);
    let message = errors.to_string();
    assert!(
        message.contains(": object x/a: kind: required field is missing"),
        "{message}"
    );
}

#[test]
fn list_without_items() {
    let text = "apiVersion: v1\nkind: PodList\n";
    object_error(&[("list.yaml", text)], "list.yaml", "PodList", "items");
}

#[test]
fn every_error_of_every_file_is_reported_and_nothing_is_loaded() {
    let bad_policy = policy("  podSelector: {}\n  policyTypes: [Sideways]\n");
    let (_dir, errors) = load_err(&[
        ("a-good.yaml", POD_X_A),
        ("b-broken.yaml", "kind: Pod\nmetadata: {name: [\n"),
        ("c-policy.yaml", &bad_policy),
        ("d-broken.json", "{"),
        (
            "e-cilium.yaml",
            "apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata: {name: c}\n",
        ),
    ]);
    let message = errors.to_string();
    assert_eq!(errors.0.len(), 4, "{message}");
    assert_eq!(message.lines().count(), 4, "one line per error: {message}");
    for part in [
        "b-broken.yaml: invalid YAML",
        "c-policy.yaml (document 1): NetworkPolicy x/bad: spec.policyTypes[0]:",
        "d-broken.json: invalid JSON",
        "e-cilium.yaml (document 1): CiliumClusterwideNetworkPolicy c: kind:",
    ] {
        assert!(message.contains(part), "missing {part:?} in:\n{message}");
    }
}

#[test]
fn empty_directory() {
    let dir = dir_with(&[("README.md", "# not a manifest")]);
    let errors = load(dir.path()).expect_err("empty");
    assert!(
        matches!(errors.0[..], [ManifestError::Empty(_)]),
        "{errors}"
    );
}

#[test]
fn missing_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let errors = load(&dir.path().join("nope")).expect_err("missing");
    assert!(
        matches!(errors.0[..], [ManifestError::Io { .. }]),
        "{errors}"
    );
    assert!(errors.to_string().contains("nope"), "{errors}");
}

// ---------------------------------------------------------------- good input

#[test]
fn multi_document_yaml() {
    let text = format!("---\n{NS_X}---\n---\n{POD_X_A}\n---\n# only a comment\n");
    let model = load_ok(&[("all.yaml", &text)]);
    assert_eq!(model.pods.len(), 1);
    let pod = &model.pods[0];
    assert_eq!(pod.key(), "x/a");
    // Documents count from 0, empty ones included (a leading `---` opens
    // the first).
    assert_eq!(pod.origin.document().unwrap(), 2);
    assert_eq!(model.namespaces["x"].labels["ns"], "x");
    assert_eq!(
        model.namespaces["x"]
            .origin
            .as_ref()
            .and_then(|o| o.document()),
        Some(0)
    );
}

#[test]
fn json_manifest() {
    let text = r#"{
  "apiVersion": "networking.k8s.io/v1",
  "kind": "NetworkPolicy",
  "metadata": {"name": "deny", "namespace": "x"},
  "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
}"#;
    let model = load_ok(&[("pod.yaml", POD_X_A), ("deny.json", text)]);
    let p = &model.policies[0];
    assert_eq!(p.key(), "x/deny");
    assert_eq!(p.ingress, Some(vec![]));
    assert_eq!(p.egress, Some(vec![]));
    assert_eq!(p.origin.document().unwrap(), 0);
}

#[test]
fn typed_lists_whose_items_lack_kind() {
    let pods = "
apiVersion: v1
kind: PodList
items:
- metadata: {name: a, namespace: x, labels: {pod: a}}
  spec: {containers: [{name: c, image: i, ports: [{name: http, containerPort: 8080}]}]}
- metadata: {name: b, namespace: x}
  spec: {containers: [{name: c, image: i}]}
";
    let policies = r#"{
  "apiVersion": "networking.k8s.io/v1",
  "kind": "NetworkPolicyList",
  "items": [
    {"metadata": {"name": "p1", "namespace": "x"}, "spec": {"podSelector": {}}},
    {"metadata": {"name": "p2", "namespace": "x"},
     "spec": {"podSelector": {}, "ingress": [{"ports": [{"port": "http"}]}]}}
  ]
}"#;
    let model = load_ok(&[("pods.yaml", pods), ("policies.json", policies)]);
    let keys: Vec<_> = model.pods.iter().map(|p| p.key()).collect();
    assert_eq!(keys, ["x/a", "x/b"]);
    assert_eq!(model.pods[0].labels["pod"], "a");
    let keys: Vec<_> = model.policies.iter().map(|p| p.key()).collect();
    assert_eq!(keys, ["x/p1", "x/p2"]);
}

#[test]
fn generic_list_of_mixed_kinds() {
    let text = "
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Namespace
  metadata: {name: y, labels: {team: blue}}
- apiVersion: v1
  kind: Pod
  metadata: {name: a, namespace: y}
  spec: {containers: [{name: c, image: i}]}
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata: {name: deny, namespace: y}
  spec: {podSelector: {}}
- apiVersion: v1
  kind: Service
  metadata: {name: web, namespace: y}
  spec: {ports: [{port: 80}]}
";
    let model = load_ok(&[("list.yaml", text)]);
    assert_eq!(model.namespaces["y"].labels["team"], "blue");
    assert_eq!(model.pods.len(), 1);
    assert_eq!(model.policies.len(), 1);
    assert_eq!(model.services.len(), 1);
}

#[test]
fn every_workload_kind_stands_for_one_pod() {
    let template = "
    metadata:
      labels: {app: KIND-app, tier: web}
    spec:
      containers:
      - name: main
        image: i
        ports:
        - {name: http, containerPort: 8080}
        - {name: dns, containerPort: 53, protocol: UDP}
      - name: sidecar
        image: i
        ports:
        - {containerPort: 9090, protocol: SCTP}
";
    let indent = |t: &str, by: usize| {
        t.lines()
            .map(|l| {
                if l.is_empty() {
                    String::new()
                } else {
                    format!("{}{l}", " ".repeat(by))
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let specs = [
        (
            "Deployment",
            "apps/v1",
            format!("  selector: {{}}\n  template:{}\n", template),
        ),
        (
            "ReplicaSet",
            "apps/v1",
            format!("  selector: {{}}\n  template:{}\n", template),
        ),
        (
            "StatefulSet",
            "apps/v1",
            format!(
                "  serviceName: s\n  selector: {{}}\n  template:{}\n",
                template
            ),
        ),
        (
            "DaemonSet",
            "apps/v1",
            format!("  selector: {{}}\n  template:{}\n", template),
        ),
        ("Job", "batch/v1", format!("  template:{}\n", template)),
        (
            "CronJob",
            "batch/v1",
            format!(
                "  schedule: '* * * * *'\n  jobTemplate:\n    spec:\n      template:{}\n",
                indent(template, 4)
            ),
        ),
        (
            "ReplicationController",
            "v1",
            format!("  template:{}\n", template),
        ),
    ];
    assert_eq!(specs.len(), WORKLOAD_KINDS.len());
    let mut text = String::new();
    for (kind, api, spec) in &specs {
        let name = kind.to_ascii_lowercase();
        text.push_str(&format!(
            "---\napiVersion: {api}\nkind: {kind}\nmetadata:\n  name: {name}\n  namespace: apps\n  labels: {{owner-label: not-the-pod}}\nspec:\n{}\n",
            spec.replace("KIND", &name)
        ));
    }
    let model = load_ok(&[("workloads.yaml", &text)]);
    assert_eq!(model.pods.len(), WORKLOAD_KINDS.len(), "{:#?}", model.pods);
    for (kind, _, _) in &specs {
        let name = kind.to_ascii_lowercase();
        let (_, pod) = model
            .pod(&format!("apps/{name}"))
            .unwrap_or_else(|| panic!("no pod for {kind}"));
        assert_eq!(pod.source.kind, *kind);
        assert_eq!(pod.source.name, name);
        assert_eq!(pod.owner, None);
        assert_eq!(
            pod.labels,
            Labels::from([
                ("app".to_string(), format!("{name}-app")),
                ("tier".to_string(), "web".to_string()),
            ]),
            "{kind}: the template's labels, not the object's"
        );
        assert_eq!(
            pod.ports,
            vec![
                ContainerPort {
                    name: Some("http".into()),
                    port: 8080,
                    protocol: Protocol::Tcp
                },
                ContainerPort {
                    name: Some("dns".into()),
                    port: 53,
                    protocol: Protocol::Udp
                },
                ContainerPort {
                    name: None,
                    port: 9090,
                    protocol: Protocol::Sctp
                },
            ],
            "{kind}"
        );
        assert_eq!(pod.ips.len(), 2, "{kind}: one address per family");
        assert_eq!(pod.named_port("dns", Protocol::Udp), Some(53));
    }
}

#[test]
fn pod_owner_reference() {
    let text = "
apiVersion: v1
kind: Pod
metadata:
  name: web-5d9c-abcde
  namespace: x
  ownerReferences:
  - {kind: ReplicaSet, name: web-5d9c, controller: true}
  - {kind: Node, name: n1}
spec: {containers: [{name: c, image: i}]}
";
    let model = load_ok(&[("pod.yaml", text)]);
    let owner = model.pods[0].owner.as_ref().expect("owner");
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("ReplicaSet", "web-5d9c")
    );
    assert_eq!(model.pods[0].source.kind, "Pod");
}

#[test]
fn missing_namespace_is_default() {
    let pod = "
apiVersion: v1
kind: Pod
metadata: {name: lonely}
spec: {containers: [{name: c, image: i}]}
";
    let np = "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p}
spec: {podSelector: {}}
";
    let model = load_ok(&[("pod.yaml", pod), ("np.yaml", np)]);
    assert_eq!(model.pods[0].key(), "default/lonely");
    assert_eq!(model.policies[0].key(), "default/p");
    assert!(model.namespaces.contains_key("default"));
}

#[test]
fn undeclared_namespaces_exist_with_name_label() {
    let np = "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: policies-only}
spec:
  podSelector: {}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {ns: y}}
";
    let model = load_ok(&[("ns.yaml", NS_X), ("pod.yaml", POD_X_A), ("np.yaml", np)]);
    let keys: Vec<_> = model.namespaces.keys().cloned().collect();
    assert_eq!(
        keys,
        ["policies-only", "x"],
        "namespaces only named in selectors are not implied"
    );
    let implied = &model.namespaces["policies-only"];
    assert_eq!(implied.origin, None);
    assert_eq!(
        implied.labels,
        Labels::from([(
            NAMESPACE_NAME_LABEL.to_string(),
            "policies-only".to_string()
        )])
    );
    let declared = &model.namespaces["x"];
    assert!(declared.origin.is_some());
    assert_eq!(declared.labels[NAMESPACE_NAME_LABEL], "x");
    assert_eq!(declared.labels["ns"], "x");
}

#[test]
fn pod_in_undeclared_namespace_implies_it() {
    let model = load_ok(&[("pod.yaml", POD_X_A)]);
    let ns = &model.namespaces["x"];
    assert_eq!(ns.origin, None);
    assert_eq!(ns.labels[NAMESPACE_NAME_LABEL], "x");
}

#[test]
fn status_addresses_are_used() {
    let text = "
apiVersion: v1
kind: Pod
metadata: {name: both, namespace: x}
spec: {containers: [{name: c, image: i}]}
status:
  podIP: 10.1.2.3
  podIPs: [{ip: 10.1.2.3}, {ip: 'fd00:1::3'}]
---
apiVersion: v1
kind: Pod
metadata: {name: v4-only, namespace: x}
spec: {containers: [{name: c, image: i}]}
status: {podIP: 10.244.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: assigned, namespace: x}
spec: {containers: [{name: c, image: i}]}
status: {phase: Pending}
";
    let model = load_ok(&[("pods.yaml", text)]);
    let ips = |key: &str| -> Vec<String> {
        model
            .pod(key)
            .expect(key)
            .1
            .ips
            .iter()
            .map(ToString::to_string)
            .collect()
    };
    assert_eq!(ips("x/both"), ["10.1.2.3", "fd00:1::3"]);
    assert_eq!(ips("x/v4-only"), ["10.244.0.2"]);
    // Assigned addresses skip those taken by status.
    assert_eq!(ips("x/assigned"), ["10.244.0.3", "fd00:10:244::2"]);

    let dir = dir_with(&[("pods.yaml", text)]);
    let plan = AddressPlan {
        ignore_status: true,
        ..AddressPlan::default()
    };
    let model = load_dir(dir.path(), &plan).expect("load");
    let first: Vec<String> = model.pods[0].ips.iter().map(ToString::to_string).collect();
    assert_eq!(model.pods[0].key(), "x/assigned");
    assert_eq!(first, ["10.244.0.2", "fd00:10:244::2"]);
}

#[test]
fn addresses_are_assigned_in_namespace_name_order() {
    let pod = |ns: &str, name: &str| {
        format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {{containers: [{{name: c, image: i}}]}}\n"
        )
    };
    let text = [pod("b", "a"), pod("a", "z"), pod("a", "b")].concat();
    let model = load_ok(&[("pods.yaml", &text)]);
    let got: Vec<(String, Vec<String>)> = model
        .pods
        .iter()
        .map(|p| (p.key(), p.ips.iter().map(ToString::to_string).collect()))
        .collect();
    let want = [
        ("a/b", ["10.244.0.2", "fd00:10:244::2"]),
        ("a/z", ["10.244.0.3", "fd00:10:244::3"]),
        ("b/a", ["10.244.0.4", "fd00:10:244::4"]),
    ];
    let want: Vec<(String, Vec<String>)> = want
        .iter()
        .map(|(k, ips)| (k.to_string(), ips.iter().map(|s| s.to_string()).collect()))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn hidden_files_and_directories_are_skipped() {
    let model = load_ok(&[
        ("pod.yaml", POD_X_A),
        (".hidden.yaml", "this: [is not valid"),
        (".git/config.yaml", "kind: Pod\nmetadata: {name: [\n"),
        ("sub/.also-hidden.json", "{"),
        ("notes.txt", "kind: Pod"),
    ]);
    assert_eq!(model.pods.len(), 1);
}

#[test]
fn subdirectories_are_read() {
    let model = load_ok(&[("ns/x.yml", NS_X), ("pods/x/a.yaml", POD_X_A)]);
    assert_eq!(model.pods.len(), 1);
    assert!(model.namespaces["x"].origin.is_some());
}

#[test]
fn non_manifest_json_is_skipped() {
    let model = load_ok(&[
        ("pod.yaml", POD_X_A),
        ("report.json", r#"{"flows": [], "generated": "today"}"#),
        ("values.yaml", "replicas: 3\nimage: nginx\n"),
    ]);
    assert_eq!(model.pods.len(), 1);
    assert!(model.policies.is_empty());
}

#[test]
fn single_file_path() {
    let dir = dir_with(&[("pod.yaml", POD_X_A), ("other.yaml", "kind: Pod\n{{{")]);
    let model = load(&dir.path().join("pod.yaml")).expect("single file");
    assert_eq!(model.pods.len(), 1);
}

#[test]
fn other_kinds_are_ignored() {
    let text = "
apiVersion: v1
kind: Endpoints
metadata: {name: s, namespace: x}
subsets: [{unknownField: true}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: c, namespace: x}
data: {a: b}
";
    let model = load_ok(&[("pod.yaml", POD_X_A), ("other.yaml", text)]);
    assert_eq!(model.pods.len(), 1);
}

// ---------------------------------------------------------------- policy conversion

#[test]
fn policy_types_default_from_the_rules() {
    let p = policy_ok("  podSelector: {matchLabels: {pod: a}}\n");
    assert_eq!(p.ingress, Some(vec![]));
    assert_eq!(p.egress, None);
    let p = policy_ok("  podSelector: {}\n  egress:\n  - {}\n");
    assert_eq!(p.ingress, Some(vec![]));
    assert_eq!(p.egress.as_ref().map(Vec::len), Some(1));
    let p = policy_ok("  podSelector: {}\n  egress: []\n");
    assert_eq!(p.egress, None, "empty egress rules do not isolate egress");
    let p = policy_ok("  podSelector: {}\n  policyTypes: [Egress]\n  ingress:\n  - {}\n");
    assert_eq!(p.ingress, None);
    assert_eq!(p.egress, Some(vec![]));
}

#[test]
fn peers_and_ports_convert() {
    let p = policy_ok(
        "  podSelector:
    matchLabels: {pod: a}
    matchExpressions:
    - {key: tier, operator: NotIn, values: [db, cache, db]}
  ingress:
  - from: []
    ports: []
  - from:
    - podSelector: {matchLabels: {pod: b}}
    - namespaceSelector: {matchExpressions: [{key: ns, operator: Exists}]}
      podSelector: {}
    - ipBlock: {cidr: 10.1.2.3/8, except: [10.9.0.0/16, 10.3.0.0/16]}
    ports:
    - {port: 80}
    - {port: '8080'}
    - {port: http}
    - {protocol: UDP}
    - {port: 1000, endPort: 2000, protocol: SCTP}
",
    );
    assert_eq!(
        p.pod_selector,
        Selector::new(vec![
            Requirement::In("pod".into(), vec!["a".into()]),
            Requirement::NotIn("tier".into(), vec!["cache".into(), "db".into()]),
        ])
    );
    let rules = p.ingress.expect("ingress");
    assert_eq!(rules[0].peers, None, "from: [] is every peer");
    assert_eq!(rules[0].ports, None, "ports: [] is every port");
    let peers = rules[1].peers.as_ref().expect("peers");
    assert_eq!(
        peers[0],
        Peer::Pods {
            namespaces: NamespaceScope::Same("x".into()),
            pods: Selector::new(vec![Requirement::In("pod".into(), vec!["b".into()])]),
        }
    );
    assert_eq!(
        peers[1],
        Peer::Pods {
            namespaces: NamespaceScope::Selected(Selector::new(vec![Requirement::Exists(
                "ns".into()
            )])),
            pods: Selector::everything(),
        }
    );
    assert_eq!(
        peers[2],
        Peer::IpBlock(IpBlock {
            cidr: "10.0.0.0/8".parse().unwrap(),
            except: vec![
                "10.3.0.0/16".parse().unwrap(),
                "10.9.0.0/16".parse().unwrap()
            ],
        })
    );
    let ports = rules[1].ports.as_ref().expect("ports");
    assert_eq!(
        ports,
        &vec![
            PortSpec {
                protocol: Protocol::Tcp,
                port: PortMatch::Range(80, 80)
            },
            PortSpec {
                protocol: Protocol::Tcp,
                port: PortMatch::Range(8080, 8080)
            },
            PortSpec {
                protocol: Protocol::Tcp,
                port: PortMatch::Named("http".into())
            },
            PortSpec {
                protocol: Protocol::Udp,
                port: PortMatch::Any
            },
            PortSpec {
                protocol: Protocol::Sctp,
                port: PortMatch::Range(1000, 2000)
            },
        ]
    );
}

#[test]
fn policy_status_is_tolerated() {
    let p = policy_ok("  podSelector: {}\nstatus:\n  conditions: []\n");
    assert_eq!(p.ingress, Some(vec![]));
}

/// `bulkhead.io/mode` on a NetworkPolicy and on a Namespace: the policy's
/// own word wins, then its namespace's, then the model's default.
#[test]
fn mode_annotations_on_policies_and_namespaces() {
    let ns = |name: &str, mode: Option<&str>| {
        let annotations = mode.map_or(String::new(), |m| {
            format!("\n  annotations:\n    bulkhead.io/mode: {m}")
        });
        format!("---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}{annotations}\n")
    };
    let np = |ns: &str, name: &str, mode: Option<&str>| {
        let annotations = mode.map_or(String::new(), |m| {
            format!("\n  annotations: {{bulkhead.io/mode: \"{m}\", other: x}}")
        });
        format!(
            "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: {name}\n  namespace: {ns}{annotations}\nspec:\n  podSelector: {{}}\n"
        )
    };
    let text = [
        ns("a", Some("audit")),
        ns("b", None),
        np("a", "inherits", None),
        np("a", "own", Some("enforce")),
        np("b", "default", None),
        np("b", "learns", Some("learn")),
    ]
    .concat();
    let mut m = load_ok(&[("all.yaml", &text)]);
    let modes = |m: &Model| -> Vec<(String, Mode)> {
        m.policies.iter().map(|p| (p.key(), m.mode_of(p))).collect()
    };
    let want = |default: Mode| {
        vec![
            ("a/inherits".to_string(), Mode::Audit),
            ("a/own".to_string(), Mode::Enforce),
            ("b/default".to_string(), default),
            ("b/learns".to_string(), Mode::Learn),
        ]
    };
    assert_eq!(modes(&m), want(Mode::Enforce));
    m.default_mode = Mode::Audit;
    assert_eq!(modes(&m), want(Mode::Audit));
}

#[test]
fn a_bad_mode_names_the_annotation() {
    let text = format!(
        "{NS_X}---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: p\n  namespace: x\n  annotations: {{bulkhead.io/mode: Audit}}\nspec: {{podSelector: {{}}}}\n"
    );
    let e = object_error(
        &[("p.yaml", &text)],
        "p.yaml",
        "NetworkPolicy x/p",
        "metadata.annotations[\"bulkhead.io/mode\"]",
    );
    assert!(
        e.to_string()
            .contains("unknown mode \"Audit\" (expected enforce, audit or learn)"),
        "{e}"
    );
    let ns = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: y\n  annotations: {bulkhead.io/mode: off}\n";
    object_error(
        &[("ns.yaml", ns)],
        "ns.yaml",
        "Namespace y",
        "metadata.annotations[\"bulkhead.io/mode\"]",
    );
}

#[test]
fn links_back_into_the_tree_neither_hang_nor_duplicate() {
    let dir = dir_with(&[("pod.yaml", POD_X_A), ("ns/x.yaml", NS_X)]);
    std::os::unix::fs::symlink(".", dir.path().join("l1")).unwrap();
    std::os::unix::fs::symlink(".", dir.path().join("l2")).unwrap();
    std::os::unix::fs::symlink("..", dir.path().join("ns/up")).unwrap();
    let model = load(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(model.pods.len(), 1);
    assert_eq!(model.namespaces.len(), 1);
}

#[test]
fn a_manifest_over_a_limit_fails_the_whole_load_naming_it() {
    let big = format!("# {}\n{POD_X_A}", "x".repeat(5000));
    let dir = dir_with(&[("a.yaml", NS_X), ("big.yaml", &big)]);
    let limits = Limits {
        max_file_bytes: 1000,
        ..Limits::DEFAULT
    };
    let err = load_dir_within(
        dir.path(),
        &AddressPlan::default(),
        &limits,
        Purpose::Analysis,
    )
    .unwrap_err();
    assert_eq!(err.0.len(), 1, "{err}");
    assert!(
        matches!(&err.0[0], ManifestError::Walk(WalkError::FileTooLarge { path, .. }) if path.ends_with("big.yaml")),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("big.yaml") && text.contains("1000 bytes"),
        "{text}"
    );
    // The same tree within the default limits loads.
    assert_eq!(load(dir.path()).unwrap().pods.len(), 1);
}

#[test]
fn manifests_that_are_not_utf8_name_the_file() {
    let dir = dir_with(&[("a.yaml", NS_X)]);
    std::fs::write(dir.path().join("bad.yaml"), b"kind: \xff\n").unwrap();
    let err = load(dir.path()).unwrap_err();
    assert!(err.to_string().contains("bad.yaml"), "{err}");
}
