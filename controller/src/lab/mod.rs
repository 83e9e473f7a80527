//! The lab: Kubernetes-like pods as network namespaces on this machine, with
//! real servers on their container ports, so policy can be watched on real
//! packets.
//!
//! # Topology
//!
//! ```text
//!   bh-<lab>-p0 (pod x/a)          bh-<lab>-node                 bh-<lab>-x0 (external host)
//!   eth0 10.244.0.2/32  ◄─veth─►  bh<hash>  10.244.0.1/32   ◄─veth─►  eth0 192.0.2.10/32
//!        fd00:10:244::2/128                 fd00:10:244::1/128
//!   default via 10.244.0.1                  route 10.244.0.2/32 dev bh<hash>
//! ```
//!
//! All routing lives in the node namespace (`bh-<lab>-node`, forwarding on
//! inside it only); the machine's own namespace is never touched except to
//! create the named namespaces. Every pod and external host gets a veth pair
//! made inside the node namespace with its peer moved straight into the
//! host's namespace, so no link ever exists in the root namespace.
//!
//! Addressing ("gateway on every host veth"): the node-side end of every
//! veth carries the reserved first address of each pod CIDR (10.244.0.1/32,
//! fd00:10:244::1/128, `nodad`) and a host route to the pod's addresses; the
//! pod has its addresses as /32 and /128 on `eth0`, a link route to the
//! gateway addresses and default routes via them. ARP and neighbour
//! discovery work as on any link (the gateway is a real local address of the
//! veth), nothing relies on proxy ARP, and each pod's traffic crosses exactly
//! its own veth: where the dataplane attaches.
//!
//! The agent finds each pod's host-side veth as on a real node: the pod's
//! addresses route (/32, /128, main table) to that veth. The gateway
//! addresses on every veth only add local-table routes (and, for IPv6,
//! a /128 route to the gateway itself), which no pod address matches.
//!
//! # Processes
//!
//! Every namespace but the node's runs one `bulkhead lab serve` (started
//! through `ip netns exec`), which serves TCP, UDP and SCTP on the host's
//! ports (see [`serve`]); probes run in a `bulkhead lab probe-from` started
//! the same way in the source namespace (see [`probe`]). The node runs
//! `bulkhead agent --netns <node>` on a bpffs private to the lab, watching
//! the lab's manifest directory (see [`agent`]), or reading the Kubernetes
//! API a kubeconfig points at (see [`cluster`]).
//!
//! # State
//!
//! `/run/bulkhead/lab/<name>/state.json` (or under `$BULKHEAD_LAB_DIR`)
//! records names, addresses, servers, the manifests, the watched directory
//! and the agent; `lab down` works from it, and from the namespaces'
//! common prefix, the agent's command line and the mount table when it is
//! gone.

pub mod agent;
pub mod cluster;
pub mod cni;
pub mod error;
pub mod naming;
pub mod net;
pub mod plan;
pub mod probe;
pub mod sctp;
pub mod serve;
pub mod setup;
pub mod state;
pub mod verify;

#[cfg(test)]
mod tests;

pub use error::LabError;
