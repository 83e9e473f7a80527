//! The node view: which pods are local and what the node's own addresses
//! are, read from the kernel over rtnetlink (no `ip` process, no parsing
//! of tool output), and kept current by netlink events instead of polling.
//!
//! - [`snapshot`]: the links, main-table routes and addresses of one
//!   network namespace, and what follows from them (pure; tested without
//!   root): [`Snapshot::local_endpoints`] and [`Snapshot::node_addresses`].
//! - [`netlink`]: [`read`], one dump of all three into a [`Snapshot`].
//! - [`watch`]: [`NodeWatch`], the multicast subscription that says when
//!   the view may have changed.
//!
//! Both work in the network namespace of the thread that opens their
//! socket: the agent enters its namespace before it builds its runtime, so
//! every runtime thread inherits it.
//!
//! # Missing no change
//!
//! A consumer keeps its view current with this order, and only this order:
//!
//! 1. [`NodeWatch::open`] (subscribe first),
//! 2. [`read`] (the initial view),
//! 3. after every [`NodeWatch::changed`], [`read`] again.
//!
//! A change that happens after step 1 is either already in the dump of
//! step 2 or 3, or wakes a later `changed()` (or both, which costs one
//! redundant read). Reading before subscribing would lose a change made
//! between the two. A watch whose receive buffer overflowed also resolves
//! `changed()`, so the re-read resynchronises what the lost messages said.

pub mod netlink;
pub mod snapshot;
pub mod watch;

#[cfg(test)]
mod tests;

pub use netlink::read;
pub use snapshot::{Address, Link, LocalEndpoint, Route, Snapshot, Uplink, is_node_address};
pub use watch::NodeWatch;

/// What a netlink dump was reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DumpKind {
    /// Links (`RTM_GETLINK`).
    Links,
    /// IPv4 routes (`RTM_GETROUTE`, `AF_INET`).
    Ipv4Routes,
    /// IPv6 routes (`RTM_GETROUTE`, `AF_INET6`).
    Ipv6Routes,
    /// Addresses of both families (`RTM_GETADDR`).
    Addresses,
}

impl std::fmt::Display for DumpKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Links => "links",
            Self::Ipv4Routes => "IPv4 routes",
            Self::Ipv6Routes => "IPv6 routes",
            Self::Addresses => "addresses",
        })
    }
}

/// Which netlink socket an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    /// The request socket of [`read`].
    Dump,
    /// The multicast subscription of [`NodeWatch`].
    Watch,
}

impl std::fmt::Display for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Dump => "netlink dump",
            Self::Watch => "netlink watch",
        })
    }
}

/// Reading or watching the node view failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Called outside a Tokio runtime (the socket registers with its
    /// reactor, which needs I/O enabled).
    #[error("the {channel} needs a Tokio runtime with I/O enabled")]
    NoRuntime {
        /// The socket.
        channel: Channel,
    },
    /// The netlink socket could not be opened, bound or subscribed.
    #[error("opening the {channel} socket: {source}")]
    Socket {
        /// The socket.
        channel: Channel,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The kernel refused a dump, or its answer did not decode.
    #[error("dumping {what}: {source}")]
    Dump {
        /// What was being dumped.
        what: DumpKind,
        /// The error.
        #[source]
        source: rtnetlink::Error,
    },
    /// The netlink connection ended (the socket failed or a message did
    /// not decode).
    #[error("the {channel} connection closed")]
    Closed {
        /// The socket.
        channel: Channel,
    },
}
