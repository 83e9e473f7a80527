//! The local node's own addresses: every address configured in the agent's
//! network namespace but loopback and IPv6 link-local ones (those are per
//! link and only carry neighbour discovery, which the dataplane handles
//! apart). Kubernetes always lets a pod's node reach it, so these become
//! the model's `node_ips`.
//!
//! Read with `getifaddrs(3)` (a netlink dump inside libc): no process, no
//! parsing of tool output.

use std::net::IpAddr;

/// Reading the node's addresses failed.
#[derive(Debug, thiserror::Error)]
#[error("reading the node's addresses (getifaddrs): {0}")]
pub struct NodeAddressError(#[source] nix::Error);

/// The node's addresses, sorted and without duplicates (an address on
/// several links, like the lab's gateways, counts once).
pub fn addresses() -> Result<Vec<IpAddr>, NodeAddressError> {
    let mut out: Vec<IpAddr> = nix::ifaddrs::getifaddrs()
        .map_err(NodeAddressError)?
        .filter_map(|ifa| {
            let addr = ifa.address?;
            if let Some(v4) = addr.as_sockaddr_in() {
                Some(IpAddr::V4(v4.ip()))
            } else {
                addr.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
            }
        })
        .filter(|a| is_node_address(*a))
        .collect();
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Whether an address configured on the node counts as the node's.
pub fn is_node_address(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_unspecified(),
        IpAddr::V6(v6) => !v6.is_loopback() && !v6.is_unspecified() && !v6.is_unicast_link_local(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_link_local_are_not_the_nodes() {
        for a in ["127.0.0.1", "::1", "fe80::1", "0.0.0.0", "::"] {
            assert!(!is_node_address(a.parse().unwrap()), "{a}");
        }
        for a in ["10.244.0.1", "169.254.1.1", "fd00:10:244::1", "2001:db8::1"] {
            assert!(is_node_address(a.parse().unwrap()), "{a}");
        }
    }

    #[test]
    fn this_namespace_has_readable_addresses() {
        let a = addresses().unwrap();
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert!(a.iter().all(|x| is_node_address(*x)));
    }
}
