//! Unit tests of the fake API server's pure parts: selectors, the store,
//! list semantics and paging, watch parameters. The HTTP side is tested
//! against real clients in `netns-tests/tests/apiserver.rs`.

mod list;
mod selector;
mod store;

use serde_json::{Value, json};

use super::registry::{self, ResId};

fn pods() -> ResId {
    registry::by_name("pods").expect("served")
}

fn namespaces() -> ResId {
    registry::by_name("namespaces").expect("served")
}

fn pod(ns: &str, name: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"nodeName": "node-a"},
        "status": {"phase": "Running"},
    })
}

fn names(items: &[std::sync::Arc<Value>]) -> Vec<String> {
    items
        .iter()
        .map(|o| o["metadata"]["name"].as_str().expect("named").to_owned())
        .collect()
}
