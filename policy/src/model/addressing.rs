//! Pod addresses: kept from `status.podIP(s)`, or assigned deterministically
//! from the pod CIDRs (one per address family).
//!
//! Two pods may claim one address in their status while a cluster churns
//! (an ended pod not yet gone, a stale object): the API server accepts it,
//! so it is no error. The greater [`super::AddressClaim`] keeps the address
//! (running first, then the most recently started; on a tie the first in
//! (namespace, name) order), the other loses it, and the conflict is
//! returned to be logged and counted. A pod left with no address has none
//! (it is not given one from the CIDRs: it is a pod whose address is not
//! known, not one that never had one).
//!
//! Assignment walks pods in (namespace, name) order and hands out the next free
//! host address of each family, starting at the CIDR's second address (the
//! first is left for a gateway, as the lab uses it). The same manifests always
//! give the same addresses.
//!
//! Services get ClusterIPs and NodePorts the same way, as the API server
//! allocates them (see [`services`]).

mod services;

use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::RangeInclusive;

use ipnetwork::IpNetwork;

use super::Pod;

pub use services::ServiceAddressWarning;

/// Default pod CIDRs: one IPv4 and one IPv6 block.
pub const DEFAULT_POD_CIDRS: [&str; 2] = ["10.244.0.0/16", "fd00:10:244::/64"];

/// Default Service CIDRs (kube-apiserver's `--service-cluster-ip-range`
/// as kubeadm and kind set it): IPv4 first, so IPv4 is the primary family.
pub const DEFAULT_SERVICE_CIDRS: [&str; 2] = ["10.96.0.0/16", "fd00:10:96::/112"];

/// Default NodePort range (kube-apiserver's `--service-node-port-range`).
pub const DEFAULT_NODE_PORTS: RangeInclusive<u16> = 30000..=32767;

/// Why addresses could not be given out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressingError {
    /// Two Service CIDRs of one family.
    #[error("more than one {family} Service CIDR: {first} and {second}")]
    TwoServiceCidrsOfOneFamily {
        /// "IPv4" or "IPv6".
        family: &'static str,
        /// The first.
        first: IpNetwork,
        /// The second.
        second: IpNetwork,
    },
    /// The Service CIDR has no address left.
    #[error("Service CIDR {cidr} has no free address left for Service {service}")]
    ServiceCidrExhausted {
        /// The CIDR.
        cidr: IpNetwork,
        /// The Service that got none.
        service: String,
    },
    /// The NodePort range has no port left.
    #[error("NodePort range {first}-{last} has no free port left for Service {service}")]
    NodePortsExhausted {
        /// First port of the range.
        first: u16,
        /// Last port of the range.
        last: u16,
        /// The Service that got none.
        service: String,
    },
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
}

/// Two pods claimed one address; the winner kept it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressConflict {
    /// The address.
    pub addr: IpAddr,
    /// `namespace/name` of the pod that keeps it.
    pub kept_by: String,
    /// `namespace/name` of the pod that lost it.
    pub lost_by: String,
}

impl std::fmt::Display for AddressConflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pods {} and {} both claim address {} in their status; {} keeps it (running, \
             or started later)",
            self.kept_by, self.lost_by, self.addr, self.kept_by
        )
    }
}

/// How pods and Services get addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressPlan {
    /// Pod CIDRs: at most one per family.
    pub cidrs: Vec<IpNetwork>,
    /// Ignore `status.podIP(s)` and assign every pod from `cidrs`.
    pub ignore_status: bool,
    /// Service CIDRs: at most one per family; the first one's family is
    /// the cluster's primary family (a SingleStack Service's default).
    /// Empty: no ClusterIP is given out (the API server's are used).
    pub service_cidrs: Vec<IpNetwork>,
    /// NodePorts given to NodePort and LoadBalancer ports without one;
    /// `None`: none given out (the API server's are used).
    pub node_ports: Option<RangeInclusive<u16>>,
}

impl Default for AddressPlan {
    fn default() -> Self {
        let parse = |c: &&str| c.parse().expect("valid default CIDR");
        Self {
            cidrs: DEFAULT_POD_CIDRS.iter().map(parse).collect(),
            ignore_status: false,
            service_cidrs: DEFAULT_SERVICE_CIDRS.iter().map(parse).collect(),
            node_ports: Some(DEFAULT_NODE_PORTS),
        }
    }
}

impl AddressPlan {
    /// Gives every pod without addresses (or every pod, with
    /// `ignore_status`) one address per configured family, after settling
    /// addresses two pods claim (returned). Pods must be sorted.
    pub fn assign(&self, pods: &mut [Pod]) -> Result<Vec<AddressConflict>, AddressingError> {
        let v4 = self.family_cidr(true)?;
        let v6 = self.family_cidr(false)?;
        if self.ignore_status {
            pods.iter_mut().for_each(|p| p.ips.clear());
        }
        let had_status: Vec<bool> = pods.iter().map(|p| !p.ips.is_empty()).collect();
        let (mut owner, conflicts) = settle_claims(pods);
        let mut cursors: Vec<(IpNetwork, u128)> =
            [v4, v6].into_iter().flatten().map(|c| (c, 2)).collect();
        let unaddressed = pods
            .iter_mut()
            .zip(had_status)
            .filter(|(p, had)| !had && p.ips.is_empty())
            .map(|(p, _)| p);
        for pod in unaddressed {
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
        Ok(conflicts)
    }

    fn family_cidr(&self, v4: bool) -> Result<Option<IpNetwork>, AddressingError> {
        one_of_family(&self.cidrs, v4).map_err(|(family, first, second)| {
            AddressingError::TwoCidrsOfOneFamily {
                family,
                first,
                second,
            }
        })
    }
}

/// The CIDR of `cidrs` of a family, or (family, first, second) when there
/// are two.
fn one_of_family(
    cidrs: &[IpNetwork],
    v4: bool,
) -> Result<Option<IpNetwork>, (&'static str, IpNetwork, IpNetwork)> {
    let mut of_family = cidrs.iter().filter(|c| c.is_ipv4() == v4);
    let first = of_family.next().copied();
    if let (Some(first), Some(second)) = (first, of_family.next()) {
        return Err((if v4 { "IPv4" } else { "IPv6" }, first, *second));
    }
    Ok(first)
}

/// Gives every status address to the pod with the greatest claim on it
/// (the first in order on a tie) and takes it from the others; returns who
/// owns each address and the conflicts.
fn settle_claims(pods: &mut [Pod]) -> (HashMap<IpAddr, String>, Vec<AddressConflict>) {
    let mut winner: HashMap<IpAddr, usize> = HashMap::new();
    for (i, pod) in pods.iter().enumerate() {
        for ip in &pod.ips {
            let w = winner.entry(*ip).or_insert(i);
            if pod.claim > pods[*w].claim {
                *w = i;
            }
        }
    }
    let mut conflicts = Vec::new();
    for i in 0..pods.len() {
        let lost: Vec<IpAddr> = pods[i]
            .ips
            .iter()
            .copied()
            .filter(|ip| winner[ip] != i)
            .collect();
        for addr in lost {
            conflicts.push(AddressConflict {
                addr,
                kept_by: pods[winner[&addr]].key(),
                lost_by: pods[i].key(),
            });
            pods[i].ips.retain(|ip| *ip != addr);
        }
    }
    let owner = winner
        .into_iter()
        .map(|(ip, i)| (ip, pods[i].key()))
        .collect();
    (owner, conflicts)
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
