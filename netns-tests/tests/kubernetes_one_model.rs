//! One model: the same objects read from YAML (the manifest source) and
//! from the Kubernetes API (the kube-rs source, against the test kit's
//! list/watch server) compile to identical map images, entry by entry
//! (the ABI types are `repr(C)` with explicit padding, so equal entries
//! are equal bytes).
//!
//! Objects: a fixture with every NetworkPolicy feature Bulkhead compiles,
//! and every case of the independent analyzer's data set when it is
//! present (`../shared/conformance`), reduced to the kinds the API source
//! watches (Namespaces, Pods, NetworkPolicies, Services, Nodes and the
//! cluster-admin policies, their CRDs installed); both sources also give
//! the same Services, cluster-admin policies and Nodes. No root needed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bulkhead_netns_tests::apiserver::{FakeApiServer, Options};
use bulkhead_policy::compile::compile;
use bulkhead_policy::model::addressing::AddressPlan;
use bulkhead_policy::model::{AdminPolicy, Mode, Model, Origin, Service};
use bulkhead_policy::source::Feed;
use bulkhead_policy::source::kubernetes::{self, KubeConfig};
use bulkhead_policy::source::manifest::{Purpose, load_dir_for};
use serde::Deserialize;
use serde_json::Value;

const FIXTURE: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: web}, annotations: {bulkhead.io/mode: audit}}
---
apiVersion: v1
kind: Namespace
metadata: {name: data, labels: {team: db}}
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: shop, labels: {app: web, tier: front}}
spec:
  nodeName: n1
  containers: [{name: c, image: i, ports: [{name: http, containerPort: 8080}, {name: dns, containerPort: 53, protocol: UDP}]}]
status: {phase: Running, podIP: 10.1.0.2, podIPs: [{ip: 10.1.0.2}, {ip: "fd00::2"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web-2, namespace: shop, labels: {app: web}}
spec:
  nodeName: n2
  containers: [{name: c, image: i, ports: [{name: http, containerPort: 9090}]}]
status: {phase: Running, podIP: 10.1.0.3}
---
apiVersion: v1
kind: Pod
metadata: {name: db-0, namespace: data, labels: {app: db}}
spec: {containers: [{name: c, image: i, ports: [{name: pg, containerPort: 5432}]}]}
status: {phase: Running, podIP: 10.1.1.2}
---
apiVersion: v1
kind: Pod
metadata: {name: pending, namespace: data, labels: {app: db}}
spec: {containers: [{name: c, image: i}]}
status: {phase: Pending}
---
apiVersion: v1
kind: Pod
metadata: {name: job-done, namespace: data, labels: {app: batch}}
spec: {containers: [{name: c, image: i}]}
status: {phase: Succeeded, podIP: 10.1.1.9}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-from-web, namespace: data}
spec:
  podSelector: {matchLabels: {app: db}}
  policyTypes: [Ingress, Egress]
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {team: web}}
      podSelector: {matchExpressions: [{key: app, operator: In, values: [web]}]}
    ports: [{port: pg}, {port: 6000, endPort: 6010, protocol: TCP}]
  egress:
  - to: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/24]}}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - ports: [{port: http}, {port: dns, protocol: UDP}, {port: 443, protocol: SCTP}]
  - from: [{ipBlock: {cidr: "fd00::/64"}}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  clusterIP: 10.96.0.10
  clusterIPs: [10.96.0.10, "fd00:10:96::a"]
  ipFamilies: [IPv4, IPv6]
  ipFamilyPolicy: RequireDualStack
  ports: [{name: http, port: 80, targetPort: http}, {name: dns, port: 53, protocol: UDP, targetPort: dns}]
---
apiVersion: v1
kind: Service
metadata: {name: web-np, namespace: shop}
spec:
  type: NodePort
  selector: {app: web}
  clusterIP: 10.96.0.11
  externalTrafficPolicy: Local
  ports: [{port: 8080, nodePort: 30080}]
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: data}
spec: {clusterIP: None, selector: {app: db}, ports: [{port: 5432}]}
---
apiVersion: v1
kind: Service
metadata: {name: lb, namespace: data}
spec:
  type: LoadBalancer
  selector: {app: db}
  clusterIP: 10.96.0.12
  externalIPs: [192.0.2.7]
  sessionAffinity: ClientIP
  ports: [{port: 5432, targetPort: pg, nodePort: 31432}]
status: {loadBalancer: {ingress: [{ip: 198.51.100.7, ipMode: VIP}]}}
---
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: data}
spec: {type: ExternalName, externalName: db.example.com}
"#;

/// Where a case's files are, when the data set is present
/// (`$BULKHEAD_CONFORMANCE_DIR`, as the conformance test reads it, else
/// `<repo>/../shared/conformance/netpol-analyzer`).
fn conformance_cases() -> Vec<PathBuf> {
    let data = std::env::var_os("BULKHEAD_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/netpol-analyzer")
        });
    let root = data.join("tests");
    let Ok(entries) = std::fs::read_dir(&root) else {
        println!(
            "conformance data not found at {}: fixture only",
            root.display()
        );
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// The Namespace, Pod, NetworkPolicy and Service objects of the files
/// under `dir`.
fn objects(dir: &Path) -> Vec<Value> {
    let mut out = Vec::new();
    let mut files: Vec<PathBuf> = walk(dir);
    files.sort();
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let docs: Vec<Value> = if file.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text).into_iter().collect()
        } else {
            serde_yaml_ng::Deserializer::from_str(&text)
                .filter_map(|d| Value::deserialize(d).ok())
                .collect()
        };
        for doc in docs {
            flatten(doc, None, &mut out);
        }
    }
    out
}

fn flatten(doc: Value, implied: Option<&str>, out: &mut Vec<Value>) {
    let kind = doc
        .get("kind")
        .and_then(Value::as_str)
        .or(implied)
        .unwrap_or_default()
        .to_owned();
    if let Some(item) = kind.strip_suffix("List") {
        let items = doc
            .get("items")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for i in items {
            flatten(i, (!item.is_empty()).then_some(item), out);
        }
        return;
    }
    let api_version = match kind.as_str() {
        "Namespace" | "Pod" | "Service" => "v1",
        "NetworkPolicy" => "networking.k8s.io/v1",
        "Node" => "v1",
        "ClusterNetworkPolicy" => "policy.networking.k8s.io/v1alpha2",
        "AdminNetworkPolicy" | "BaselineAdminNetworkPolicy" => "policy.networking.k8s.io/v1alpha1",
        _ => return,
    };
    let mut doc = doc;
    doc["kind"] = kind.into();
    doc["apiVersion"] = api_version.into();
    out.push(doc);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p
            .extension()
            .is_some_and(|x| x == "yaml" || x == "yml" || x == "json")
        {
            out.push(p);
        }
    }
    out
}

/// The model the manifest source makes of `objects` (as the agent loads
/// it); `None` when the strict manifest checks refuse them.
fn from_yaml(objects: &[Value]) -> Option<Model> {
    let dir = tempfile::tempdir().unwrap();
    let text: String = objects
        .iter()
        .map(|o| format!("---\n{}", serde_yaml_ng::to_string(o).unwrap()))
        .collect();
    std::fs::write(dir.path().join("all.yaml"), text).unwrap();
    // As the API source: nothing given out, the objects' addresses stand.
    let plan = AddressPlan {
        cidrs: Vec::new(),
        ignore_status: false,
        service_cidrs: Vec::new(),
        node_ports: None,
    };
    let mut model = load_dir_for(dir.path(), &plan, Purpose::Enforcement).ok()?;
    model.default_mode = Mode::Enforce;
    Some(model)
}

/// The model the Kubernetes source makes of `objects`, served by a fresh
/// API server.
async fn from_api(objects: &[Value]) -> Model {
    let server = FakeApiServer::start(Options::default()).unwrap();
    // The cluster-admin kinds are served (their CRDs installed).
    for (plural, kind, version) in [
        ("clusternetworkpolicies", "ClusterNetworkPolicy", "v1alpha2"),
        ("adminnetworkpolicies", "AdminNetworkPolicy", "v1alpha1"),
        (
            "baselineadminnetworkpolicies",
            "BaselineAdminNetworkPolicy",
            "v1alpha1",
        ),
    ] {
        server
            .apply(serde_json::json!({
                "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "metadata": {"name": format!("{plural}.policy.networking.k8s.io")},
                "spec": {"group": "policy.networking.k8s.io", "scope": "Cluster",
                         "names": {"plural": plural, "kind": kind},
                         "versions": [{"name": version, "served": true, "storage": true}]},
                "status": {"conditions": [{"type": "Established", "status": "True"}]},
            }))
            .unwrap();
    }
    for o in objects {
        server.apply(o.clone()).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).unwrap();
    let cfg = KubeConfig {
        kubeconfig: Some(kubeconfig),
        default_mode: Mode::Enforce,
    };
    let mut feed = kubernetes::spawn(cfg).await.unwrap();
    let rv = server.resource_version().to_string();
    let feed = tokio::time::timeout(
        Duration::from_secs(60),
        feed.wait_for(|f| {
            f.model.is_some() && f.revision.parse::<u64>().unwrap_or(0) >= rv.parse().unwrap()
        }),
    )
    .await
    .expect("the source publishes the complete view")
    .unwrap();
    Model::clone(feed.model.as_ref().unwrap())
}

/// The model's Services, without where they were read from.
fn services(model: &Model) -> Vec<Service> {
    let mut out = model.services.clone();
    for s in &mut out {
        s.origin = Origin::default();
    }
    out
}

/// The model's cluster-admin policies, without where they were read from.
fn admin(model: &Model) -> Vec<AdminPolicy> {
    let mut out = model.admin_policies.clone();
    for p in &mut out {
        p.origin = Origin::default();
    }
    out
}

/// Whether the manifest source takes `objects`; if so, asserts both
/// sources give identical images.
async fn same_image(name: &str, objects: &[Value]) -> bool {
    let Some(yaml) = from_yaml(objects) else {
        return false;
    };
    let api = from_api(objects).await;
    let keys = |m: &Model| {
        m.pods
            .iter()
            .map(|p| (p.key(), p.ips.clone(), p.labels.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(&api), keys(&yaml), "{name}: pods");
    assert_eq!(services(&api), services(&yaml), "{name}: services");
    assert_eq!(admin(&api), admin(&yaml), "{name}: cluster-admin policies");
    assert_eq!(api.nodes, yaml.nodes, "{name}: nodes");
    assert_eq!(api.warnings, yaml.warnings, "{name}: warnings");
    let (a, y) = (compile(&api), compile(&yaml));
    assert_eq!(a.map_image(0), y.map_image(0), "{name}: map images differ");
    assert_eq!(a.map_image(1), y.map_image(1), "{name}: map images differ");
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yaml_and_the_api_compile_to_identical_map_images() {
    let fixture = objects_of(FIXTURE);
    assert_eq!(fixture.len(), 14);
    assert!(same_image("fixture", &fixture).await);
    let model = from_yaml(&fixture).unwrap();
    assert_eq!(model.services.len(), 5, "every Service of the fixture");
    assert!(model.warnings.is_empty(), "{:?}", model.warnings);
    assert!(
        model.pods.iter().all(|p| p.name != "job-done"),
        "an ended pod is no pod"
    );
    let (mut cases, mut refused, mut admin_cases) = (0, 0, 0);
    for dir in conformance_cases() {
        let objects = objects(&dir);
        let pods = objects.iter().filter(|o| o["kind"] == "Pod").count();
        if pods == 0 || objects.len() > 2000 {
            continue;
        }
        if same_image(&dir.display().to_string(), &objects).await {
            cases += 1;
            let kinds = [
                "ClusterNetworkPolicy",
                "AdminNetworkPolicy",
                "BaselineAdminNetworkPolicy",
            ];
            admin_cases += usize::from(
                objects
                    .iter()
                    .any(|o| kinds.iter().any(|k| o["kind"] == *k)),
            );
        } else {
            refused += 1;
        }
    }
    println!(
        "fixture and {cases} conformance cases ({admin_cases} with cluster-admin policies): \
         identical map images ({refused} cases the strict manifest checks refuse, not compared)"
    );
}

/// The (revision, model) of the first feed at revision `rv` or later
/// with `services` Services.
async fn wait(
    feed: &mut tokio::sync::watch::Receiver<Feed>,
    rv: u64,
    services: usize,
) -> (String, std::sync::Arc<Model>) {
    let got = feed.wait_for(move |f| {
        f.revision.parse::<u64>().unwrap_or(0) >= rv
            && f.model
                .as_ref()
                .is_some_and(|m| m.services.len() == services)
    });
    let feed = tokio::time::timeout(Duration::from_secs(60), got)
        .await
        .expect("the source publishes the change")
        .unwrap();
    (feed.revision.clone(), feed.model.clone().unwrap())
}

/// A Service written after the first model (a watch event, not a list)
/// is in a model of a later revision, and so is its deletion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_change_is_a_new_revision() {
    let server = FakeApiServer::start(Options::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).unwrap();
    let cfg = KubeConfig {
        kubeconfig: Some(kubeconfig),
        default_mode: Mode::Enforce,
    };
    let mut feed = kubernetes::spawn(cfg).await.unwrap();
    let (first, _) = wait(&mut feed, 0, 0).await;
    let svc: Value = serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"clusterIP": "10.96.0.20", "selector": {"app": "web"}, "ports": [{"port": 80}]},
    });
    server.apply(svc).unwrap();
    let (added, model) = wait(&mut feed, server.resource_version(), 1).await;
    assert_ne!(added, first);
    assert_eq!(
        model.services[0].cluster_ips,
        ["10.96.0.20".parse::<std::net::IpAddr>().unwrap()]
    );
    server.delete("Service", Some("shop"), "web").unwrap();
    let (deleted, _) = wait(&mut feed, server.resource_version(), 0).await;
    assert_ne!(deleted, added);
}

fn objects_of(yaml: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for d in serde_yaml_ng::Deserializer::from_str(yaml) {
        flatten(Value::deserialize(d).unwrap(), None, &mut out);
    }
    out
}
