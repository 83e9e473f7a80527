//! The compiled policy written as eBPF map entries (the ABI of
//! `bulkhead-common`): the address → identity LPM trie, the policy LPM trie
//! and the per-endpoint table bindings.

use std::net::IpAddr;

use bulkhead_common::{
    ENDPOINT_ISOLATED_EGRESS, ENDPOINT_ISOLATED_INGRESS, EndpointPolicy, IdentityKey,
    IdentityValue, POLICY_PREFIX_ANY_PROTO, POLICY_PREFIX_PROTO, PROTO_ANY, PolicyKey, PolicyValue,
};
use ipnetwork::IpNetwork;

use super::{Compiled, IdentityKind};

/// An LPM trie entry: (prefix length, key data, value).
pub type LpmEntry<K, V> = (u32, K, V);

/// All map contents for one compiled policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MapImage {
    /// Address → identity.
    pub identities: Vec<LpmEntry<IdentityKey, IdentityValue>>,
    /// (table, peer identity, protocol, port) → rule.
    pub policy: Vec<LpmEntry<PolicyKey, PolicyValue>>,
    /// Per pod (index into the model): its table bindings.
    pub endpoints: Vec<(usize, EndpointPolicy)>,
}

/// Key data and prefix length of an address prefix (IPv4 mapped into IPv6).
pub fn identity_key(net: IpNetwork) -> (u32, IdentityKey) {
    match net {
        IpNetwork::V4(n) => (
            96 + n.prefix() as u32,
            IdentityKey {
                addr: n.network().to_ipv6_mapped().octets(),
            },
        ),
        IpNetwork::V6(n) => (
            n.prefix() as u32,
            IdentityKey {
                addr: n.network().octets(),
            },
        ),
    }
}

/// Key data of a single address (full-length lookups).
pub fn address_key(addr: IpAddr) -> IdentityKey {
    identity_key(IpNetwork::from(addr)).1
}

impl Compiled {
    /// Writes the compiled policy as map entries.
    pub fn map_image(&self) -> MapImage {
        let mut image = MapImage::default();
        for identity in &self.identities.list {
            let value = IdentityValue {
                identity: identity.id,
                _reserved: 0,
            };
            match &identity.kind {
                IdentityKind::Pods { addrs, .. } => {
                    for &a in addrs {
                        let (len, key) = identity_key(IpNetwork::from(a));
                        image.identities.push((len, key, value));
                    }
                }
                IdentityKind::External { region } => {
                    for &net in &self.regions.regions[*region as usize].prefixes {
                        let (len, key) = identity_key(net);
                        image.identities.push((len, key, value));
                    }
                }
            }
        }
        for (table_id, table) in self.tables.iter().enumerate() {
            for (&(peer, proto), segments) in table.sorted_groups() {
                for seg in segments {
                    let value = PolicyValue {
                        rule: seg.rules[0],
                        _reserved: 0,
                    };
                    if proto == PROTO_ANY {
                        debug_assert!(seg.lo == 0 && seg.hi == u16::MAX);
                        let key = PolicyKey::new(table_id as u32, peer, PROTO_ANY, 0);
                        image.policy.push((POLICY_PREFIX_ANY_PROTO, key, value));
                        continue;
                    }
                    for (port, bits) in port_blocks(seg.lo, seg.hi) {
                        let key = PolicyKey::new(table_id as u32, peer, proto, port);
                        image
                            .policy
                            .push((POLICY_PREFIX_PROTO + 16 - bits, key, value));
                    }
                }
            }
        }
        for (pod, ep) in self.endpoints.iter().enumerate() {
            let mut flags = 0;
            if ep.ingress.is_some() {
                flags |= ENDPOINT_ISOLATED_INGRESS;
            }
            if ep.egress.is_some() {
                flags |= ENDPOINT_ISOLATED_EGRESS;
            }
            image.endpoints.push((
                pod,
                EndpointPolicy {
                    ingress_table: ep.ingress.unwrap_or(0),
                    egress_table: ep.egress.unwrap_or(0),
                    flags,
                    _reserved: 0,
                },
            ));
        }
        image
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
