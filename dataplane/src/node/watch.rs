//! [`NodeWatch`]: a subscription to the rtnetlink multicast groups of
//! links, IPv4/IPv6 addresses and IPv4/IPv6 routes, telling when the node
//! view may have changed. It says *that* something changed, not what:
//! the consumer re-reads the whole view ([`super::read`]), which is cheap
//! next to a pod start and cannot drift from the kernel the way applying
//! deltas could.

use futures_channel::mpsc::UnboundedReceiver;
use futures_util::{FutureExt, StreamExt};
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::route::RouteHeader;
use rtnetlink::proto::Connection;
use rtnetlink::sys::SocketAddr;
use rtnetlink::{MulticastGroup, new_multicast_connection};

use super::netlink::table;
use super::{Channel, NodeError};

/// The groups whose messages can change a [`super::Snapshot`].
const GROUPS: [MulticastGroup; 5] = [
    MulticastGroup::Link,
    MulticastGroup::Ipv4Ifaddr,
    MulticastGroup::Ipv6Ifaddr,
    MulticastGroup::Ipv4Route,
    MulticastGroup::Ipv6Route,
];

/// A subscription to link, address and route changes of the network
/// namespace of the thread that opened it.
///
/// Open it *before* the first [`super::read`] and read again after every
/// [`NodeWatch::changed`] (see the module doc of [`super`]); then no change
/// is missed.
///
/// The socket is read only while `changed()` runs, so between calls
/// notifications wait in the kernel's receive buffer. If that overflows
/// (`ENOBUFS`: a storm of changes while the consumer was busy), the lost
/// messages are reported as a change too, and the re-read resynchronises.
pub struct NodeWatch {
    /// Reads the socket and forwards notifications to `messages`; polled
    /// by `changed()` itself, never spawned.
    connection: Connection<RouteNetlinkMessage>,
    messages: UnboundedReceiver<(NetlinkMessage<RouteNetlinkMessage>, SocketAddr)>,
    /// The connection ended (socket error or undecodable message).
    closed: bool,
}

impl NodeWatch {
    /// Subscribes to the groups in the calling thread's network namespace.
    /// Needs a Tokio runtime with I/O enabled (the socket registers with
    /// its reactor).
    pub fn open() -> Result<Self, NodeError> {
        tokio::runtime::Handle::try_current().map_err(|_| NodeError::NoRuntime {
            channel: Channel::Watch,
        })?;
        let (connection, _handle, messages) =
            new_multicast_connection(&GROUPS).map_err(|source| NodeError::Socket {
                channel: Channel::Watch,
                source,
            })?;
        // The handle is for requests, which a watch makes none of; dropping
        // it leaves the connection running for notifications.
        Ok(Self {
            connection,
            messages,
            closed: false,
        })
    }

    /// Resolves once at least one notification that can change the view
    /// arrived (or some were lost to a receive-buffer overrun), after
    /// draining whatever else is already queued, so a burst (a pod start
    /// adds a link, addresses and routes) wakes the consumer once.
    ///
    /// Cancel-safe: dropping the future before it resolves loses no
    /// relevant notification.
    pub async fn changed(&mut self) -> Result<(), NodeError> {
        let closed = NodeError::Closed {
            channel: Channel::Watch,
        };
        if self.closed {
            return Err(closed);
        }
        loop {
            let next = tokio::select! {
                // Ends only when the socket failed or a message did not
                // decode: then changes can no longer be seen.
                () = &mut self.connection => None,
                next = self.messages.next() => next,
            };
            let Some((message, _)) = next else {
                self.closed = true;
                return Err(closed);
            };
            if relevant(&message) {
                break;
            }
        }
        self.drain();
        Ok(())
    }

    /// Reads what the socket holds now (one poll of the connection reads
    /// until the socket would block) and drops the queued notifications.
    fn drain(&mut self) {
        if (&mut self.connection).now_or_never().is_some() {
            self.closed = true;
        }
        while self.messages.try_recv().is_ok() {}
    }
}

/// Whether a notification can change a [`super::Snapshot`]: any link or
/// address message, a route message of the main table, or an overrun
/// (notifications were lost).
pub(super) fn relevant(message: &NetlinkMessage<RouteNetlinkMessage>) -> bool {
    use RouteNetlinkMessage as M;
    match &message.payload {
        NetlinkPayload::Overrun(_) => true,
        NetlinkPayload::InnerMessage(inner) => match inner {
            M::NewLink(_) | M::DelLink(_) | M::NewAddress(_) | M::DelAddress(_) => true,
            M::NewRoute(r) | M::DelRoute(r) => table(r) == u32::from(RouteHeader::RT_TABLE_MAIN),
            _ => false,
        },
        _ => false,
    }
}
