//! The node view the reconciler reads: the node's links and routes (which
//! pods are local) and its own addresses, from one netlink dump
//! ([`bulkhead_dataplane::node`]), and a signal when they change.

use std::time::Duration;

use bulkhead_dataplane::node::{self, LocalEndpoint, NodeError, NodeWatch, Snapshot};

/// Pause before a failed netlink watch is opened again.
const REOPEN_PAUSE: Duration = Duration::from_secs(1);

/// What the node looks like now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeSnapshot {
    /// Links, routes and addresses.
    pub links: Snapshot,
    /// The node's own addresses (from the same dump).
    pub addresses: Vec<std::net::IpAddr>,
}

impl NodeSnapshot {
    /// The pods (index, addresses) that have a veth here.
    pub fn local_endpoints(&self, pods: &[(usize, Vec<std::net::IpAddr>)]) -> Vec<LocalEndpoint> {
        self.links.local_endpoints(pods)
    }
}

/// Reads the node view of the agent's network namespace.
pub async fn read() -> Result<NodeSnapshot, NodeError> {
    let links = node::read().await?;
    let addresses = links.node_addresses();
    Ok(NodeSnapshot { links, addresses })
}

/// Says when the node view may have changed (netlink notifications).
pub struct NodeEvents(NodeWatch);

impl NodeEvents {
    /// Subscribes; open it before the first [`read`], so nothing is missed.
    pub fn open() -> Result<Self, NodeError> {
        NodeWatch::open().map(Self)
    }

    /// Resolves when the view may have changed. A watch that fails is
    /// opened again after a pause (the view is then read again, so nothing
    /// missed meanwhile stays missed); the error is returned for the log.
    pub async fn changed(&mut self) -> Result<(), NodeError> {
        let Err(e) = self.0.changed().await else {
            return Ok(());
        };
        tokio::time::sleep(REOPEN_PAUSE).await;
        if let Ok(watch) = NodeWatch::open() {
            self.0 = watch;
        }
        Err(e)
    }
}
