//! The compiled policy written as eBPF map entries for one policy slot (the
//! ABI v2 of `bulkhead-common`): the address → identity LPM trie, the policy
//! LPM trie and the per-endpoint bindings, each key stamped with the slot.
//!
//! The loader writes an image into the inactive slot and then bumps the
//! revision in CONFIG (see `bulkhead_common`'s crate docs); it checks
//! [`MapImage::check_fits`] first. Endpoints are listed by pod index; the
//! loader keys them by the ifindex of each local pod's host-side veth.

use std::collections::{BTreeSet, HashSet};
use std::net::IpAddr;

use bulkhead_common::{
    ENDPOINT_HAS_IPV4, ENDPOINT_HAS_IPV6, ENDPOINT_HAS_MAC, ENDPOINT_ISOLATED_EGRESS,
    ENDPOINT_ISOLATED_INGRESS, ENDPOINTS_SLOT_CAPACITY, EndpointInfo, IDENTITIES_SLOT_CAPACITY,
    IdentityKey, IdentityValue, POLICY_PREFIX_ANY_PROTO, POLICY_PREFIX_PROTO, POLICY_SLOT_CAPACITY,
    PROTO_ANY, PolicyKey, PolicyValue, SLOT_PREFIX,
};
use ipnetwork::IpNetwork;

use super::{Compiled, IdentityKind, TableId};

/// An LPM trie entry: (prefix length, key data, value).
pub type LpmEntry<K, V> = (u32, K, V);

/// All map contents of one compiled policy, for one slot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MapImage {
    /// The slot every key is stamped with (0 or 1).
    pub slot: u8,
    /// Address → identity.
    pub identities: Vec<LpmEntry<IdentityKey, IdentityValue>>,
    /// (table, peer identity, protocol, port) → rule.
    pub policy: Vec<LpmEntry<PolicyKey, PolicyValue>>,
    /// Per pod (index into the model): its bindings, addresses and MAC.
    pub endpoints: Vec<(usize, EndpointInfo)>,
}

/// A map image that does not fit one slot of a map.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("map image needs {needed} {map} entries; one slot holds {capacity}")]
pub struct ImageTooLarge {
    /// Which map.
    pub map: &'static str,
    /// Entries the image has.
    pub needed: usize,
    /// Entries one slot holds.
    pub capacity: u32,
}

impl MapImage {
    /// Checks every part against the per-slot capacities of the ABI.
    pub fn check_fits(&self) -> Result<(), ImageTooLarge> {
        let parts = [
            (
                "IDENTITIES",
                self.identities.len(),
                IDENTITIES_SLOT_CAPACITY,
            ),
            ("POLICY", self.policy.len(), POLICY_SLOT_CAPACITY),
            ("ENDPOINTS", self.endpoints.len(), ENDPOINTS_SLOT_CAPACITY),
        ];
        for (map, needed, capacity) in parts {
            if needed > capacity as usize {
                return Err(ImageTooLarge {
                    map,
                    needed,
                    capacity,
                });
            }
        }
        Ok(())
    }
}

/// Key data and prefix length of an address prefix in `slot` (IPv4 mapped
/// into IPv6; the slot takes the first 8 bits).
pub fn identity_key(slot: u8, net: IpNetwork) -> (u32, IdentityKey) {
    let (len, addr) = match net {
        IpNetwork::V4(n) => (
            96 + n.prefix() as u32,
            n.network().to_ipv6_mapped().octets(),
        ),
        IpNetwork::V6(n) => (n.prefix() as u32, n.network().octets()),
    };
    (SLOT_PREFIX + len, IdentityKey { slot, addr })
}

/// Key data of a single address in `slot` (full-length lookups).
pub fn address_key(slot: u8, addr: IpAddr) -> IdentityKey {
    identity_key(slot, IpNetwork::from(addr)).1
}

/// An address as the ABI stores it (IPv4 mapped into IPv6).
pub fn abi_addr(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

/// The MAC Bulkhead expects on a pod's interface when nothing else tells it
/// (the lab sets it): locally administered unicast `02:xx:xx:xx:xx:xx`, the
/// `xx` being the first five bytes of the FNV-1a-64 hash of the pod's
/// addresses (sorted, each as 16 bytes, IPv4 mapped into IPv6). Pods with
/// distinct addresses get distinct MACs with overwhelming probability
/// (40-bit hash).
pub fn pod_mac(addrs: impl IntoIterator<Item = IpAddr>) -> [u8; 6] {
    let mut addrs: Vec<[u8; 16]> = addrs.into_iter().map(abi_addr).collect();
    addrs.sort_unstable();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in addrs.iter().flatten() {
        h ^= u64::from(*byte);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let b = h.to_be_bytes();
    [0x02, b[0], b[1], b[2], b[3], b[4]]
}

impl Compiled {
    /// Writes the compiled policy as map entries for `slot`, with every pod
    /// as an endpoint (all tables).
    pub fn map_image(&self, slot: u8) -> MapImage {
        self.image(slot, None)
    }

    /// Like [`Self::map_image`], for a node: only the endpoints `pods`
    /// (indexes into the model) and the rule tables they use. Identities
    /// cover every address (remote pods are peers too).
    pub fn map_image_for(&self, slot: u8, pods: &[usize]) -> MapImage {
        self.image(slot, Some(pods))
    }

    fn image(&self, slot: u8, pods: Option<&[usize]>) -> MapImage {
        let mut image = MapImage {
            slot,
            ..MapImage::default()
        };
        // Pod addresses first; a region prefix that is exactly one pod
        // address (an ipBlock cut down to it) has no non-pod address, so
        // its external identity never applies and its entry would clash.
        let value = |id| IdentityValue {
            identity: id,
            _reserved: 0,
        };
        let mut pod_keys = HashSet::new();
        for identity in &self.identities.list {
            if let IdentityKind::Pods { addrs, .. } = &identity.kind {
                for &a in addrs {
                    let (len, key) = identity_key(slot, IpNetwork::from(a));
                    pod_keys.insert((len, key));
                    image.identities.push((len, key, value(identity.id)));
                }
            }
        }
        for identity in &self.identities.list {
            if let IdentityKind::External { region } = &identity.kind {
                for &net in &self.regions.regions[*region as usize].prefixes {
                    let (len, key) = identity_key(slot, net);
                    if !pod_keys.contains(&(len, key)) {
                        image.identities.push((len, key, value(identity.id)));
                    }
                }
            }
        }
        let local: Vec<usize> = match pods {
            Some(p) => p.to_vec(),
            None => (0..self.endpoints.len()).collect(),
        };
        let used: Option<BTreeSet<TableId>> = pods.map(|_| {
            local
                .iter()
                .flat_map(|&p| [self.endpoints[p].ingress, self.endpoints[p].egress])
                .flatten()
                .collect()
        });
        for (table_id, table) in self.tables.iter().enumerate() {
            let table_id = table_id as TableId;
            if used.as_ref().is_some_and(|u| !u.contains(&table_id)) {
                continue;
            }
            for (&(peer, proto), segments) in table.sorted_groups() {
                for seg in segments {
                    let value = PolicyValue {
                        rule: seg.rules[0],
                        _reserved: 0,
                    };
                    if proto == PROTO_ANY {
                        debug_assert!(seg.lo == 0 && seg.hi == u16::MAX);
                        let key = PolicyKey::new(slot, table_id, peer, PROTO_ANY, 0);
                        image.policy.push((POLICY_PREFIX_ANY_PROTO, key, value));
                        continue;
                    }
                    for (port, bits) in port_blocks(seg.lo, seg.hi) {
                        let key = PolicyKey::new(slot, table_id, peer, proto, port);
                        image
                            .policy
                            .push((POLICY_PREFIX_PROTO + 16 - bits, key, value));
                    }
                }
            }
        }
        let mut addrs: Vec<Vec<IpAddr>> = vec![Vec::new(); self.endpoints.len()];
        for (&addr, &(_, pod)) in &self.identities.by_pod_addr {
            addrs[pod].push(addr);
        }
        for pod in local {
            image
                .endpoints
                .push((pod, self.endpoint_info(pod, &addrs[pod])));
        }
        image
    }

    /// The ENDPOINTS value of pod `pod` with addresses `addrs`.
    fn endpoint_info(&self, pod: usize, addrs: &[IpAddr]) -> EndpointInfo {
        let ep = self.endpoints[pod];
        let mut info = EndpointInfo {
            ingress_table: ep.ingress.unwrap_or(0),
            egress_table: ep.egress.unwrap_or(0),
            flags: ENDPOINT_HAS_MAC,
            _reserved: 0,
            mac: pod_mac(addrs.iter().copied()),
            _pad: [0; 2],
            ipv4: [0; 16],
            ipv6: [0; 16],
        };
        if ep.ingress.is_some() {
            info.flags |= ENDPOINT_ISOLATED_INGRESS;
        }
        if ep.egress.is_some() {
            info.flags |= ENDPOINT_ISOLATED_EGRESS;
        }
        // One address per family (Kubernetes podIPs); the lowest if more.
        let mut sorted = addrs.to_vec();
        sorted.sort_unstable();
        if let Some(a) = sorted.iter().find(|a| a.is_ipv4()) {
            info.ipv4 = abi_addr(*a);
            info.flags |= ENDPOINT_HAS_IPV4;
        }
        if let Some(a) = sorted.iter().find(|a| a.is_ipv6()) {
            info.ipv6 = abi_addr(*a);
            info.flags |= ENDPOINT_HAS_IPV6;
        }
        info
    }
}

/// `lo..=hi` as aligned blocks: (first port, number of wildcard low bits).
pub fn port_blocks(lo: u16, hi: u16) -> Vec<(u16, u32)> {
    let (mut lo, hi) = (lo as u32, hi as u32);
    let mut out = Vec::new();
    while lo <= hi {
        let mut bits = if lo == 0 {
            16
        } else {
            lo.trailing_zeros().min(16)
        };
        while lo + (1 << bits) - 1 > hi {
            bits -= 1;
        }
        out.push((lo as u16, bits));
        lo += 1 << bits;
    }
    out
}
