//! The Kubernetes source and the cluster-admin policy CRDs, against the
//! test kit's API server (which serves a CRD's kind only while the CRD
//! exists, 404 otherwise): absent CRDs hold nothing back, a CRD installed
//! later brings its policies in, a CRD removed takes them out; Nodes come
//! with their addresses. No root needed.

use std::time::Duration;

use bulkhead_netns_tests::apiserver::{FakeApiServer, Options};
use bulkhead_policy::model::{Action, Mode, Model};
use bulkhead_policy::source::Feed;
use bulkhead_policy::source::kubernetes::{self, KubeConfig};
use serde_json::{Value, json};
use tokio::sync::watch;

fn crd(plural: &str, kind: &str, version: &str) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.policy.networking.k8s.io")},
        "spec": {"group": "policy.networking.k8s.io", "scope": "Cluster",
                 "names": {"plural": plural, "kind": kind},
                 "versions": [{"name": version, "served": true, "storage": true}]},
        "status": {"conditions": [{"type": "Established", "status": "True"}]},
    })
}

async fn wait(feed: &mut watch::Receiver<Feed>, what: &str, f: impl Fn(&Model) -> bool) -> Model {
    let feed = tokio::time::timeout(
        Duration::from_secs(60),
        feed.wait_for(|feed| feed.model.as_deref().is_some_and(&f)),
    )
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
    .unwrap();
    Model::clone(feed.model.as_ref().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_policies_follow_their_crds_and_nodes_come_with_addresses() {
    let server = FakeApiServer::start(Options::default()).unwrap();
    server
        .apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}))
        .unwrap();
    server
        .apply(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "n1", "labels": {"role": "infra"}},
            "status": {"addresses": [{"type": "InternalIP", "address": "192.0.2.10"},
                                      {"type": "Hostname", "address": "n1"}]},
        }))
        .unwrap();
    let anp = json!({
        "apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "AdminNetworkPolicy",
        "metadata": {"name": "guard"},
        "spec": {"priority": 5, "subject": {"namespaces": {}},
                 "egress": [{"action": "Allow", "to": [{"nodes": {"matchLabels": {"role": "infra"}}}]}]},
    });
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).unwrap();
    let cfg = KubeConfig {
        kubeconfig: Some(kubeconfig),
        default_mode: Mode::Enforce,
    };
    let mut feed = kubernetes::spawn(cfg).await.unwrap();

    // Every CRD absent (404s): the view is still complete.
    let model = wait(&mut feed, "a model without CRDs", |m| m.nodes.len() == 1).await;
    assert!(model.admin_policies.is_empty());
    assert_eq!(
        model.nodes[0].addresses,
        ["192.0.2.10".parse::<std::net::IpAddr>().unwrap()]
    );
    assert!(
        feed.borrow().status.connected,
        "a 404 of a CRD is no outage"
    );

    // Installed later: picked up from the CRD's watch event.
    server
        .apply(crd(
            "adminnetworkpolicies",
            "AdminNetworkPolicy",
            "v1alpha1",
        ))
        .unwrap();
    server.apply(anp).unwrap();
    let model = wait(&mut feed, "the AdminNetworkPolicy", |m| {
        m.admin_policies.len() == 1
    })
    .await;
    assert_eq!(model.admin_policies[0].key(), "AdminNetworkPolicy/guard");
    assert_eq!(model.admin_policies[0].egress[0].action, Action::Accept);

    // Removed: its policies go.
    server
        .delete(
            "CustomResourceDefinition",
            None,
            "adminnetworkpolicies.policy.networking.k8s.io",
        )
        .unwrap();
    wait(&mut feed, "no AdminNetworkPolicy", |m| {
        m.admin_policies.is_empty()
    })
    .await;
    assert!(feed.borrow().status.connected);
}
