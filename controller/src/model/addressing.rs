//! Pod addresses: kept from `status.podIP(s)`, or assigned deterministically
//! from the pod CIDRs (one per address family).
//!
//! Assignment walks pods in (namespace, name) order and hands out the next free
//! host address of each family, starting at the CIDR's second address (the
//! first is left for a gateway, as the lab uses it). The same manifests always
//! give the same addresses.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnetwork::IpNetwork;

use super::Pod;

/// Default pod CIDRs: one IPv4 and one IPv6 block.
pub const DEFAULT_POD_CIDRS: [&str; 2] = ["10.244.0.0/16", "fd00:10:244::/64"];

/// Why addresses could not be given out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressingError {
    /// Two pod CIDRs of one family.
    #[error("more than one {family} pod CIDR: {first} and {second}")]
    TwoCidrsOfOneFamily {
        /// "IPv4" or "IPv6".
        family: &'static str,
        /// The first.
        first: IpNetwork,
        /// The second.
        second: IpNetwork,
    },
    /// The CIDR has no address left.
    #[error("pod CIDR {cidr} has no free address left for pod {pod}")]
    Exhausted {
        /// The CIDR.
        cidr: IpNetwork,
        /// The pod that got none.
        pod: String,
    },
    /// Two pods claim one address in their status.
    #[error(
        "pods {first} and {second} both have address {addr} in their status \
         (use --assign-pod-ips to ignore status addresses)"
    )]
    DuplicateAddress {
        /// The address.
        addr: IpAddr,
        /// One pod.
        first: String,
        /// The other.
        second: String,
    },
}

/// How pods get addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressPlan {
    /// At most one CIDR per family.
    pub cidrs: Vec<IpNetwork>,
    /// Ignore `status.podIP(s)` and assign every pod from `cidrs`.
    pub ignore_status: bool,
}

impl Default for AddressPlan {
    fn default() -> Self {
        Self {
            cidrs: DEFAULT_POD_CIDRS
                .iter()
                .map(|c| c.parse().expect("valid default CIDR"))
                .collect(),
            ignore_status: false,
        }
    }
}

impl AddressPlan {
    /// Gives every pod without addresses (or every pod, with
    /// `ignore_status`) one address per configured family. Pods must be
    /// sorted.
    pub fn assign(&self, pods: &mut [Pod]) -> Result<(), AddressingError> {
        let v4 = self.family_cidr(true)?;
        let v6 = self.family_cidr(false)?;
        let mut owner: HashMap<IpAddr, String> = HashMap::new();
        for pod in pods.iter_mut() {
            if self.ignore_status {
                pod.ips.clear();
            }
            for ip in &pod.ips {
                if let Some(first) = owner.insert(*ip, pod.key()) {
                    return Err(AddressingError::DuplicateAddress {
                        addr: *ip,
                        first,
                        second: pod.key(),
                    });
                }
            }
        }
        let mut cursors: Vec<(IpNetwork, u128)> =
            [v4, v6].into_iter().flatten().map(|c| (c, 2)).collect();
        for pod in pods.iter_mut().filter(|p| p.ips.is_empty()) {
            for (cidr, next) in &mut cursors {
                let ip = loop {
                    let ip =
                        nth_address(*cidr, *next).ok_or_else(|| AddressingError::Exhausted {
                            cidr: *cidr,
                            pod: pod.key(),
                        })?;
                    *next += 1;
                    if !owner.contains_key(&ip) {
                        break ip;
                    }
                };
                owner.insert(ip, pod.key());
                pod.ips.push(ip);
            }
        }
        Ok(())
    }

    fn family_cidr(&self, v4: bool) -> Result<Option<IpNetwork>, AddressingError> {
        let mut of_family = self.cidrs.iter().filter(|c| c.is_ipv4() == v4);
        let first = of_family.next().copied();
        if let (Some(first), Some(second)) = (first, of_family.next()) {
            return Err(AddressingError::TwoCidrsOfOneFamily {
                family: if v4 { "IPv4" } else { "IPv6" },
                first,
                second: *second,
            });
        }
        Ok(first)
    }
}

/// The `n`th address of `cidr` (0 = network address), if it is inside it and
/// is not the IPv4 broadcast address.
fn nth_address(cidr: IpNetwork, n: u128) -> Option<IpAddr> {
    match cidr {
        IpNetwork::V4(c) => {
            let size = 1u128 << (32 - c.prefix());
            (n + 1 < size).then(|| {
                IpAddr::from(std::net::Ipv4Addr::from(
                    (u32::from(c.network()) as u128 + n) as u32,
                ))
            })
        }
        IpNetwork::V6(c) => {
            let host_bits = 128 - c.prefix() as u32;
            let fits = host_bits >= 128 || n < (1u128 << host_bits);
            fits.then(|| IpAddr::from(std::net::Ipv6Addr::from(u128::from(c.network()) + n)))
        }
    }
}

#[cfg(test)]
mod tests;
