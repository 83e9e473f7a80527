//! The veth benchmark's private topology: three network namespaces made
//! for the run and removed after it, also on failure.
//!
//! ```text
//!  client netns            node netns (routing)              server netns
//!  eth0 10.78.0.2 ──veth── bhc (host side)   bhs (host side) ──veth── eth0 10.78.0.3
//! ```
//!
//! Each pod has a /32 and a default route via its eth0; the node routes
//! each pod address to its host-side veth and answers the pods' ARP by
//! proxy ARP ([`bulkhead_netns_tests::pods`]). The node has no other
//! device: packets can only go between these namespaces. The machine's own
//! namespace is not touched.
//!
//! Namespaces are named `bhbench-<pid>-<role>` and made with
//! `bulkhead_netkit`. Dropping the [`Topology`] kills what still runs in
//! them and deletes them (and with them the veths; the programs are
//! attached through links owned by this process, so they go when it
//! exits). A run first deletes namespaces left by a `bhbench` process that
//! no longer exists (one killed before its guard ran).

use std::net::Ipv4Addr;

use anyhow::{Context as _, Result};
use bulkhead_netkit::{Netns, NsHandle};
use bulkhead_netns_tests::pods::{PodWiring, prepare_node, wire_pod};

/// Prefix of every namespace this benchmark makes.
pub const PREFIX: &str = "bhbench-";

/// Address of the client pod.
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 2);
/// Address of the server pod.
pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 3);
/// Host-side veth of the client (in the node namespace).
pub const CLIENT_VETH: &str = "bhc";
/// Host-side veth of the server (in the node namespace).
pub const SERVER_VETH: &str = "bhs";

/// The namespaces of one run; removed on drop.
pub struct Topology {
    /// Node namespace (routing, programs).
    pub node: String,
    /// Client pod namespace.
    pub client: String,
    /// Server pod namespace.
    pub server: String,
    /// The guards, node first; dropped with the topology.
    guards: Vec<Netns>,
}

/// Makes the calling thread live in `netns` (only this thread: sockets it
/// opens and interfaces it names belong to that namespace).
pub fn enter(netns: &str) -> Result<()> {
    Ok(NsHandle::open(netns)?.enter()?)
}

/// Deletes `bhbench-<pid>-*` namespaces whose process is gone (killing
/// anything left running inside). Returns how many.
pub fn remove_stale() -> usize {
    let Ok(list) = bulkhead_netkit::list() else {
        return 0;
    };
    let mut removed = 0;
    for name in list {
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if bulkhead_netkit::destroy(&name).is_ok() {
            eprintln!("[veth] removed namespace {name} left by a dead run (pid {pid})");
            removed += 1;
        }
    }
    removed
}

impl Topology {
    /// Creates the namespaces, veths, addresses and routes.
    pub fn create() -> Result<Self> {
        let id = format!("{PREFIX}{}", std::process::id());
        let mut t = Topology {
            node: format!("{id}-node"),
            client: format!("{id}-client"),
            server: format!("{id}-server"),
            guards: Vec::new(),
        };
        // Every namespace is owned by a guard as soon as it exists, so a
        // failure further down still removes it.
        for ns in [&t.node, &t.client, &t.server] {
            t.guards.push(Netns::create(ns)?);
        }
        let [node, client, server] = &t.guards[..] else {
            unreachable!("three namespaces")
        };
        prepare_node(node)?;
        for (pod, veth, ip) in [
            (client, CLIENT_VETH, CLIENT_IP),
            (server, SERVER_VETH, SERVER_IP),
        ] {
            // The pod's MAC is the one the compiled endpoint expects
            // (anti-spoofing in from_pod and XDP).
            let mac = bulkhead_policy::compile::maps::pod_mac([ip.into()]);
            wire_pod(node, pod, &PodWiring { veth, ip, mac })
                .with_context(|| format!("wiring {}", pod.name()))?;
        }
        Ok(t)
    }

    /// The node namespace.
    pub fn node_ns(&self) -> &NsHandle {
        &self.guards[0]
    }

    /// The ifindex of `dev` in the node namespace.
    pub fn node_ifindex(&self, dev: &str) -> Result<u32> {
        Ok(self.node_ns().netlink()?.index(dev)?)
    }
}
