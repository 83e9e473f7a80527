//! The address space cut into regions that no `ipBlock` tells apart.
//!
//! Each family is partitioned separately into elementary intervals at every
//! `cidr` and `except` boundary; intervals inside the same set of ipBlocks
//! form one region. Every address belongs to exactly one region, so a lookup
//! is one binary search, and a region's prefixes are what the kernel's LPM
//! map holds for it.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnetwork::IpNetwork;

use crate::model::IpBlock;

/// Index of a region.
pub type RegionId = u32;

/// One region: the addresses of one family inside exactly `blocks`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Region {
    /// IPv4 or IPv6.
    pub ipv4: bool,
    /// Indices (into the block list) of the ipBlocks containing it.
    pub blocks: Vec<u32>,
    /// The region as disjoint prefixes, ascending.
    pub prefixes: Vec<IpNetwork>,
}

/// Partition of one family's space.
#[derive(Debug, Default)]
struct Partition {
    /// Start of each elementary interval; the first is 0.
    starts: Vec<u128>,
    /// Region of each interval.
    region: Vec<RegionId>,
}

impl Partition {
    fn lookup(&self, addr: u128) -> RegionId {
        let i = self.starts.partition_point(|&s| s <= addr) - 1;
        self.region[i]
    }
}

/// All regions of both families.
#[derive(Debug, Default)]
pub struct Regions {
    v4: Partition,
    v6: Partition,
    /// The regions; ids index this.
    pub regions: Vec<Region>,
}

/// Address as an integer in its own family's space.
pub fn addr_bits(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

fn max_of(ipv4: bool) -> u128 {
    if ipv4 { u32::MAX as u128 } else { u128::MAX }
}

/// First and last address of a prefix, as integers.
pub fn net_range(net: &IpNetwork) -> (u128, u128) {
    let bits = if net.is_ipv4() { 32 } else { 128 };
    let host = bits - net.prefix() as u32;
    let lo = addr_bits(net.network());
    let span = if host >= 128 {
        u128::MAX
    } else {
        (1u128 << host) - 1
    };
    (lo, lo | span)
}

impl Regions {
    /// Partitions both families by `blocks`.
    pub fn new(blocks: &[IpBlock]) -> Self {
        let mut out = Regions::default();
        let mut ids: HashMap<(bool, Vec<u32>), RegionId> = HashMap::new();
        for ipv4 in [true, false] {
            let part = out.partition(blocks, ipv4, &mut ids);
            if ipv4 { out.v4 = part } else { out.v6 = part }
        }
        out
    }

    fn partition(
        &mut self,
        blocks: &[IpBlock],
        ipv4: bool,
        ids: &mut HashMap<(bool, Vec<u32>), RegionId>,
    ) -> Partition {
        let max = max_of(ipv4);
        let of_family: Vec<(u32, &IpBlock)> = blocks
            .iter()
            .enumerate()
            .filter(|(_, b)| b.cidr.is_ipv4() == ipv4)
            .map(|(i, b)| (i as u32, b))
            .collect();
        let mut starts = vec![0u128];
        for (_, b) in &of_family {
            for net in std::iter::once(&b.cidr).chain(&b.except) {
                let (lo, hi) = net_range(net);
                starts.push(lo);
                if hi < max {
                    starts.push(hi + 1);
                }
            }
        }
        starts.sort_unstable();
        starts.dedup();
        let index_of = |a: u128| starts.partition_point(|&s| s < a);
        let mut members: Vec<Vec<u32>> = vec![Vec::new(); starts.len()];
        for (bi, b) in &of_family {
            let run = |net: &IpNetwork| {
                let (lo, hi) = net_range(net);
                let end = if hi == max {
                    starts.len()
                } else {
                    index_of(hi + 1)
                };
                index_of(lo)..end
            };
            let excepts: Vec<_> = b.except.iter().map(run).collect();
            for i in run(&b.cidr) {
                if !excepts.iter().any(|r| r.contains(&i)) {
                    members[i].push(*bi);
                }
            }
        }
        // Merge neighbours with the same membership, then name regions.
        let mut part = Partition::default();
        for (i, m) in members.into_iter().enumerate() {
            let key = (ipv4, m);
            let next_id = self.regions.len() as RegionId;
            let id = *ids.entry(key.clone()).or_insert_with(|| {
                self.regions.push(Region {
                    ipv4,
                    blocks: key.1.clone(),
                    prefixes: Vec::new(),
                });
                next_id
            });
            if part.region.last() != Some(&id) {
                part.starts.push(starts[i]);
                part.region.push(id);
            }
        }
        for (i, &start) in part.starts.iter().enumerate() {
            let end = part.starts.get(i + 1).map_or(max, |s| s - 1);
            let prefixes = range_to_prefixes(start, end, ipv4);
            self.regions[part.region[i] as usize]
                .prefixes
                .extend(prefixes);
        }
        part
    }

    /// The region of an address.
    pub fn lookup(&self, addr: IpAddr) -> RegionId {
        match addr {
            IpAddr::V4(_) => self.v4.lookup(addr_bits(addr)),
            IpAddr::V6(_) => self.v6.lookup(addr_bits(addr)),
        }
    }
}

/// The fewest prefixes covering `lo..=hi` exactly.
pub fn range_to_prefixes(mut lo: u128, hi: u128, ipv4: bool) -> Vec<IpNetwork> {
    let bits: u32 = if ipv4 { 32 } else { 128 };
    let mut out = Vec::new();
    loop {
        // Largest aligned block starting at lo that does not pass hi.
        let mut size_bits = if lo == 0 {
            bits
        } else {
            lo.trailing_zeros().min(bits)
        };
        while size_bits > 0 {
            let last = if size_bits >= 128 {
                u128::MAX
            } else {
                lo + ((1u128 << size_bits) - 1)
            };
            if last <= hi {
                break;
            }
            size_bits -= 1;
        }
        out.push(make_net(lo, (bits - size_bits) as u8, ipv4));
        let span_last = if size_bits >= 128 {
            u128::MAX
        } else {
            lo + ((1u128 << size_bits) - 1)
        };
        if span_last >= hi {
            return out;
        }
        lo = span_last + 1;
    }
}

fn make_net(addr: u128, prefix: u8, ipv4: bool) -> IpNetwork {
    let ip: IpAddr = if ipv4 {
        std::net::Ipv4Addr::from(addr as u32).into()
    } else {
        std::net::Ipv6Addr::from(addr).into()
    };
    IpNetwork::new(ip, prefix).expect("prefix length within family")
}

#[cfg(test)]
mod tests;
