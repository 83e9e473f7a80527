//! Where the model comes from. For now: a directory of Kubernetes manifests;
//! and which pods are local: veth discovery.

pub mod manifest;
pub mod node;
pub mod veth;
