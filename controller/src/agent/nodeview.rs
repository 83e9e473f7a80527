//! The node view the reconciler reads: the node's veths and routes (which
//! pods are local) and its own addresses, and a signal when they change.

use std::net::IpAddr;
use std::time::Duration;

use crate::source::veth::{Snapshot, VethError};

/// What the node looks like now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeSnapshot {
    /// Links and routes.
    pub links: Snapshot,
    /// The node's own addresses.
    pub addresses: Vec<IpAddr>,
}

/// Reads the node view of the current network namespace.
pub async fn read() -> Result<NodeSnapshot, VethError> {
    tokio::task::spawn_blocking(|| {
        let links = Snapshot::read()?;
        let addresses = crate::source::node::addresses().unwrap_or_default();
        Ok(NodeSnapshot { links, addresses })
    })
    .await
    .expect("reading links does not panic")
}

/// Says when the node view may have changed.
pub struct NodeEvents {
    tick: tokio::time::Interval,
}

impl NodeEvents {
    /// Starts listening (before the first [`read`], so nothing is missed).
    pub fn open(every: Duration) -> Result<Self, VethError> {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Ok(Self { tick })
    }

    /// Resolves when the view may have changed.
    pub async fn changed(&mut self) -> Result<(), VethError> {
        self.tick.tick().await;
        Ok(())
    }
}
