//! The lab: Kubernetes-like pods as network namespaces on this machine, with
//! real servers on their container ports, so policy can be watched on real
//! packets.
//!
//! # Topology
//!
//! ```text
//!   bh-<lab>-p0 (pod x/a)          bh-<lab>-node                 bh-<lab>-x0 (external host)
//!   eth0 10.244.0.2/16  ◄─veth─►  veth<id>  10.244.0.1/32                    eth0 192.0.2.10/32
//!        fd00:10:244::2/64                  fd00:10:244::1/128
//!   default via 10.244.0.1        route 10.244.0.2/32 dev veth<id>
//!                                 bh<hash>  10.244.0.1/32   ◄─veth─►
//! ```
//!
//! All routing lives in the node namespace (`bh-<lab>-node`, forwarding on
//! inside it only); the machine's own namespace is never touched except to
//! create the named namespaces. No link ever exists in the root namespace.
//!
//! Pods are wired by the CNI reference plugins, as a runtime wires them
//! ([`cni`]): once the node's agent runs, each pod is added through the
//! node's chain `[ptp (host-local), bulkhead-cni]`, run in the node
//! namespace; `ptp` makes the veth (`veth<id>` on the node, `eth0` in the
//! pod), and the lab records the names, MACs and addresses the result
//! reports. External hosts and the fabric are wired by hand, through
//! netlink ([`net`], on the netkit toolkit), the same way.
//!
//! Addressing ("gateway on every host veth", `ptp`'s): the node-side end of
//! every veth carries the reserved first address of each pod CIDR
//! (10.244.0.1/32, fd00:10:244::1/128) and a host route to the pod's
//! addresses; the pod has its addresses on `eth0` (with the prefix of its
//! `host-local` range: the pod CIDR's; an external host: /32, /128), a link
//! route to the gateway addresses, and the pod CIDR and default routes via
//! them. ARP and neighbour discovery work as on any link (the gateway is a
//! real local address of the veth), nothing relies on proxy ARP, and each
//! pod's traffic crosses exactly its own veth: where the dataplane
//! attaches.
//!
//! The agent finds each pod's host-side veth as on a real node: the pod's
//! addresses route (/32, /128, main table) to that veth. The gateway
//! addresses on every veth only add local-table routes (and, for IPv6,
//! a /128 route to the gateway itself), which no pod address matches.
//!
//! # Several nodes (`lab up --nodes N`)
//!
//! ```text
//!   pods of node-0 ─veth─► bh-<lab>-n0  eth0 198.18.0.1/24 ─┐
//!   external hosts ─veth─►              fd00:fab::1/64     │   bh-<lab>-fab
//!   pods of node-1 ─veth─► bh-<lab>-n1  eth0 198.18.0.2/24 ─┼─ n0 n1 n2 on bridge br0
//!   pods of node-2 ─veth─► bh-<lab>-n2  eth0 198.18.0.3/24 ─┘
//!
//!   in bh-<lab>-n1:  10.244.0.0/18   via 198.18.0.1 dev eth0    (node-0's share)
//!                    10.244.128.0/18 via 198.18.0.3 dev eth0    (node-2's share)
//!                    10.244.0.4/32   via 198.18.0.3 dev eth0    (a node-2 pod outside its share)
//!                    192.0.2.10/32   via 198.18.0.1 dev eth0    (an external host)
//!                    10.244.0.3/32   dev bh<hash>               (its own pod, as on one node)
//! ```
//!
//! N node namespaces (`bh-<lab>-n<i>`; a one-node lab keeps
//! `bh-<lab>-node` and everything above unchanged) are joined host-gw style
//! by a fabric namespace (`bh-<lab>-fab`) holding a bridge and one veth per
//! node, whose node end is the node's `eth0` with one fabric address per
//! family from ranges of their own (198.18.0.0/24, RFC 2544's benchmark
//! block, and fd00:fab::/64; the plan refuses pod CIDRs, pods and external
//! hosts inside them). Forwarding is on in the node namespaces only; the
//! fabric only bridges.
//!
//! Each node has a share of each pod CIDR: the CIDR cut into the smallest
//! power of two of equal blocks that is at least N, node `i` taking the
//! `i`th ([`nodes::node_cidr`]; 10.244.0.0/16 on 3 nodes: /18s at
//! 10.244.0.0, .64.0 and .128.0; fd00:10:244::/64: /66s), and the other
//! nodes route that share via its fabric address. Pod addresses stay the
//! model's (declared `status.podIP(s)`, or assigned in namespace/name order
//! from the whole CIDR, which the agents compute the same way from the same
//! manifests), so a pod whose address lies outside its node's share (every
//! assigned one beyond the first block, any declared one) gets a /32 or
//! /128 route via its node on every other node: any model a one-node lab
//! takes works on N nodes. External hosts hang behind the first node (their
//! veths are there); the others route to each via its fabric address.
//!
//! Pods go to the node their `spec.nodeName` names; the others (and those
//! naming no node of the lab, with a warning) round-robin in
//! namespace/name order ([`nodes::placement`]). Nodes are named `node-0` ...
//! (or `--node-names`); each node runs its own agent on its own bpffs,
//! pins, log, flow log and API socket (in `n<i>/` of the lab's directory),
//! all reading the same source and given `--node-name` of their node
//! (unless, with manifests, some pod names a node the lab lacks: then
//! routes alone tell each agent its pods). An agent's local pods are those
//! whose addresses route straight to a veth; the others (routed via a
//! fabric address) are identities only, so a cross-node connection is
//! judged at the client's node on egress and at the server's on ingress.
//!
//! # HostNetwork pods
//!
//! A pod with `spec.hostNetwork: true` (unless `--assign-pod-ips`) is a
//! host in its node's namespace: no namespace, veth or CNI ADD of its own;
//! its addresses are the node's ([`nodes::node_addresses`]: the fabric
//! addresses, or on one node the gateway addresses); its server runs in
//! the node namespace bound to them. At most one per node. No agent
//! enforces on it (it has no veth); the policy sees its address as its
//! node's, never as a pod. Node objects of the manifests naming a lab node
//! must declare that node's addresses ([`nodes::check_node_objects`]'s
//! refusal names the Node and field).
//!
//! # Processes
//!
//! Every namespace but the node's runs one `bulkhead lab serve` (started
//! inside it through netkit, once the pod is added), which serves TCP, UDP and SCTP on the host's
//! ports (see [`serve`]), and a node's namespace one more per hostNetwork
//! pod on it; probes run in a `bulkhead lab probe-from` started
//! the same way in the source namespace (see [`probe`]). The node runs
//! `bulkhead agent --netns <node>` on a bpffs private to the lab, watching
//! the lab's manifest directory (see [`agent`]), or reading the Kubernetes
//! API a kubeconfig points at (see [`cluster`]).
//!
//! # State
//!
//! `/run/bulkhead/lab/<name>/state.json` (or under `$BULKHEAD_LAB_DIR`)
//! records names, addresses, servers, the manifests, the watched directory,
//! the nodes (namespace, fabric addresses, pod CIDR share, agent, CNI
//! configuration list) and each host's node and CNI result; `lab down` runs
//! CNI DEL for each pod from it, and works from it, and from the namespaces' common
//! prefix, the agents' command lines, the pin directories on disk and the
//! mount table when it is gone.

pub mod agent;
pub mod cluster;
pub mod cni;
pub mod cniconf;
pub mod error;
pub mod kubeproxy;
pub mod naming;
pub mod net;
pub mod nodes;
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
