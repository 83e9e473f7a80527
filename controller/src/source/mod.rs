//! Where the model comes from. For now: a directory of Kubernetes manifests.

pub mod manifest;
