//! Where the model comes from. For now: a directory of Kubernetes
//! manifests. Which pods are local is the node view's ([`crate::node`]).

pub mod manifest;
