//! External peers grouped by address range: the smallest policy
//! `ipBlock` CIDR that contains the address, else its /24 (IPv4) or /64
//! (IPv6), so the map draws one node per range a policy names (or per
//! subnet) instead of one per address.

use std::net::IpAddr;

use ipnetwork::IpNetwork;

/// The ranges external addresses are grouped by.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Groups {
    /// Policy CIDRs, most specific (longest prefix) first.
    cidrs: Vec<IpNetwork>,
}

impl Groups {
    /// Groups by `cidrs` (the `ipBlock.cidr`s of the policies in force;
    /// duplicates are fine), else by /24 and /64.
    pub fn new(cidrs: impl IntoIterator<Item = IpNetwork>) -> Self {
        let mut cidrs: Vec<IpNetwork> = cidrs
            .into_iter()
            .filter_map(|c| IpNetwork::new(c.network(), c.prefix()).ok())
            .collect();
        cidrs.sort_by(|a, b| b.prefix().cmp(&a.prefix()).then(a.cmp(b)));
        cidrs.dedup();
        Self { cidrs }
    }

    /// The range `ip` is drawn in.
    pub fn group(&self, ip: IpAddr) -> IpNetwork {
        if let Some(c) = self.cidrs.iter().find(|c| c.contains(ip)) {
            return *c;
        }
        let prefix = if ip.is_ipv4() { 24 } else { 64 };
        let net = IpNetwork::new(ip, prefix).expect("24 and 64 are valid prefixes");
        IpNetwork::new(net.network(), prefix).expect("a network address")
    }

    /// The map id of the range of `ip`: `cidr:<range>`.
    pub fn id(&self, ip: IpAddr) -> String {
        format!("cidr:{}", self.group(ip))
    }
}
