//! The upstream Kubernetes e2e NetworkPolicy scenarios
//! (kubernetes/kubernetes `test/e2e/network/netpol/network_policy.go`) as a
//! table of tests against Bulkhead's loader, compiler and reference
//! evaluator.
//!
//! The model is upstream's: namespaces `x`, `y`, `z` (labelled `ns=<name>`),
//! pods `a`, `b`, `c` in each (labelled `pod=<name>`), every pod serving TCP,
//! UDP and SCTP on ports 80 and 81 with container ports named
//! `serve-<port>-<protocol>`. Each test writes the model and the scenario's
//! policies into a temporary directory, loads and compiles them, and checks
//! the full 9×9 reachability matrix of each probed protocol and port against
//! a truth table built like upstream's (start from "all allowed" or "all
//! denied", then set exceptions). Self pairs are not checked.
//!
//! Where upstream runs a sequence (create, update, delete a policy or a
//! label), the test checks each state as its own load.
//!
//! The scenario files are harness-agnostic (`use crate::harness::*`):
//! `netns-tests/tests/k8s_e2e_packets.rs` runs the same files, with the
//! same truth tables, on real packets in a lab.

#[path = "k8s_e2e/common.rs"]
mod common;
#[path = "k8s_e2e/harness.rs"]
mod harness;
#[path = "k8s_e2e/ipblock.rs"]
mod ipblock;
#[path = "k8s_e2e/isolation.rs"]
mod isolation;
#[path = "k8s_e2e/ports.rs"]
mod ports;
#[path = "k8s_e2e/selectors.rs"]
mod selectors;
