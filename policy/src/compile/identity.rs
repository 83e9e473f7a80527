//! Identities: classes of addresses that no selector, ipBlock or named port
//! tells apart.
//!
//! Pods are first split into classes by every pod peer of every rule
//! (partition refinement over bit sets) and by what each egress named port
//! resolves to on them; a pod address's identity is then (its pod class, the
//! set of ipBlocks containing the address), so a pod's IPv4 and IPv6
//! addresses share one identity unless an ipBlock tells them apart. Non-pod
//! addresses get one identity per region. So the number of identities grows
//! with the distinctions policies make, not with pods or rules.

use std::collections::HashMap;
use std::net::IpAddr;

use bulkhead_common::IDENTITY_ANY;

use super::IdentityId;
use super::address::{RegionId, Regions};
use super::bitset::BitSet;
use crate::model::{Model, Protocol};

/// Pod classes: pods that every peer selector treats alike.
pub struct PodClasses {
    /// Class of each pod.
    pub class_of: Vec<u32>,
    /// A representative pod of each class.
    pub representative: Vec<usize>,
}

impl PodClasses {
    /// Refines the single class of all pods by `sets` and by `named_ports`
    /// (pods resolving a name to different numbers are told apart).
    pub fn new(model: &Model, sets: &[BitSet], named_ports: &[(String, Protocol)]) -> Self {
        let n = model.pods.len();
        let mut class_of = vec![0u32; n];
        let mut size: Vec<u32> = if n == 0 { vec![] } else { vec![n as u32] };
        let mut count_in: Vec<u32> = vec![0; n.max(1)];
        let mut split_to: Vec<u32> = vec![u32::MAX; n.max(1)];
        let mut touched: Vec<u32> = Vec::new();
        for set in sets {
            for p in set.iter() {
                let c = class_of[p] as usize;
                if count_in[c] == 0 {
                    touched.push(c as u32);
                }
                count_in[c] += 1;
            }
            for &c in &touched {
                let c = c as usize;
                if count_in[c] < size[c] {
                    split_to[c] = size.len() as u32;
                    size.push(count_in[c]);
                    size[c] -= count_in[c];
                }
            }
            for p in set.iter() {
                let c = class_of[p] as usize;
                if split_to[c] != u32::MAX {
                    class_of[p] = split_to[c];
                }
            }
            for &c in &touched {
                count_in[c as usize] = 0;
                split_to[c as usize] = u32::MAX;
            }
            touched.clear();
        }
        for (name, proto) in named_ports {
            let mut ids: HashMap<(u32, Option<u16>), u32> = HashMap::new();
            let mut next = 0u32;
            for (p, pod) in model.pods.iter().enumerate() {
                let key = (class_of[p], pod.named_port(name, *proto));
                class_of[p] = *ids.entry(key).or_insert_with(|| {
                    next += 1;
                    next - 1
                });
            }
        }
        // Renumber in pod order so class ids do not depend on set order.
        let mut renumber: HashMap<u32, u32> = HashMap::new();
        let mut representative = Vec::new();
        for (p, c) in class_of.iter_mut().enumerate() {
            let next = renumber.len() as u32;
            *c = *renumber.entry(*c).or_insert_with(|| {
                representative.push(p);
                next
            });
        }
        Self {
            class_of,
            representative,
        }
    }

    /// Number of classes.
    pub fn len(&self) -> usize {
        self.representative.len()
    }

    /// Whether there are no pods.
    pub fn is_empty(&self) -> bool {
        self.representative.is_empty()
    }
}

/// What an identity stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdentityKind {
    /// Addresses of pods of one class inside the same ipBlocks.
    Pods {
        /// The pod class.
        class: u32,
        /// Indices of the ipBlocks containing these addresses.
        blocks: Vec<u32>,
        /// The pods (indices into the model) with an address in it.
        pods: Vec<usize>,
        /// Their addresses.
        addrs: Vec<IpAddr>,
    },
    /// Non-pod addresses of one region (its prefixes, minus pod and node
    /// addresses, which have identities of their own).
    External {
        /// The region.
        region: RegionId,
    },
    /// Addresses of the local node (`Model::node_ips`) inside the same
    /// ipBlocks: ipBlocks match them as any address, pod selectors never,
    /// and ingress from them is always allowed.
    Node {
        /// Indices of the ipBlocks containing these addresses.
        blocks: Vec<u32>,
        /// The addresses.
        addrs: Vec<IpAddr>,
    },
}

/// One identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Its number (never `IDENTITY_ANY`).
    pub id: IdentityId,
    /// Pods or external.
    pub kind: IdentityKind,
}

/// All identities and the indices to find them.
pub struct Identities {
    /// Identities; `list[i].id == i + 1`.
    pub list: Vec<Identity>,
    /// Identity of each pod address.
    pub by_pod_addr: HashMap<IpAddr, (IdentityId, usize)>,
    /// Identity of each node address (that is no pod's).
    pub by_node_addr: HashMap<IpAddr, IdentityId>,
    /// External identity of each region.
    pub external_of_region: Vec<IdentityId>,
    /// Identities of each pod class.
    pub of_class: Vec<Vec<IdentityId>>,
    /// Identities (pod and external) inside each ipBlock, ascending.
    pub of_block: Vec<Vec<IdentityId>>,
}

impl Identities {
    /// Numbers identities: externals in region order, then pod identities
    /// in pod order, then the node's.
    pub fn new(
        model: &Model,
        node_ips: &[IpAddr],
        classes: &PodClasses,
        regions: &Regions,
        block_count: usize,
    ) -> Self {
        let mut list = Vec::new();
        let mut of_block = vec![Vec::new(); block_count];
        let mut external_of_region = Vec::new();
        for (r, region) in regions.regions.iter().enumerate() {
            let id = list.len() as IdentityId + 1;
            list.push(Identity {
                id,
                kind: IdentityKind::External {
                    region: r as RegionId,
                },
            });
            external_of_region.push(id);
            for &b in &region.blocks {
                of_block[b as usize].push(id);
            }
        }
        let mut of_class = vec![Vec::new(); classes.len()];
        let mut by_key: HashMap<(u32, &[u32]), IdentityId> = HashMap::new();
        let mut by_pod_addr = HashMap::new();
        for (p, pod) in model.pods.iter().enumerate() {
            let class = classes.class_of[p];
            for &addr in &pod.ips {
                let blocks = regions.regions[regions.lookup(addr) as usize]
                    .blocks
                    .as_slice();
                let id = *by_key.entry((class, blocks)).or_insert_with(|| {
                    let id = list.len() as IdentityId + 1;
                    list.push(Identity {
                        id,
                        kind: IdentityKind::Pods {
                            class,
                            blocks: blocks.to_vec(),
                            pods: Vec::new(),
                            addrs: Vec::new(),
                        },
                    });
                    of_class[class as usize].push(id);
                    for &b in blocks {
                        of_block[b as usize].push(id);
                    }
                    id
                });
                if let IdentityKind::Pods { pods, addrs, .. } = &mut list[id as usize - 1].kind {
                    if pods.last() != Some(&p) {
                        pods.push(p);
                    }
                    addrs.push(addr);
                }
                by_pod_addr.insert(addr, (id, p));
            }
        }
        let by_node_addr =
            node_identities(node_ips, regions, &by_pod_addr, &mut list, &mut of_block);
        Self {
            list,
            by_pod_addr,
            by_node_addr,
            external_of_region,
            of_class,
            of_block,
        }
    }

    /// The identity with number `id`.
    pub fn get(&self, id: IdentityId) -> &Identity {
        &self.list[id as usize - 1]
    }

    /// Whether `id` stands for addresses of the local node.
    pub fn is_node(&self, id: IdentityId) -> bool {
        id != IDENTITY_ANY && matches!(self.get(id).kind, IdentityKind::Node { .. })
    }
}

/// Adds the node's identities (one per set of ipBlocks containing node
/// addresses) to `list` and `of_block`; returns the identity of each node
/// address. Addresses that are pods' stay theirs.
fn node_identities(
    node_ips: &[IpAddr],
    regions: &Regions,
    by_pod_addr: &HashMap<IpAddr, (IdentityId, usize)>,
    list: &mut Vec<Identity>,
    of_block: &mut [Vec<IdentityId>],
) -> HashMap<IpAddr, IdentityId> {
    let mut by_blocks: HashMap<Vec<u32>, IdentityId> = HashMap::new();
    let mut by_node_addr = HashMap::new();
    for &addr in node_ips {
        if by_pod_addr.contains_key(&addr) || by_node_addr.contains_key(&addr) {
            continue;
        }
        let blocks = regions.regions[regions.lookup(addr) as usize]
            .blocks
            .clone();
        let id = *by_blocks.entry(blocks.clone()).or_insert_with(|| {
            let id = list.len() as IdentityId + 1;
            for &b in &blocks {
                of_block[b as usize].push(id);
            }
            list.push(Identity {
                id,
                kind: IdentityKind::Node {
                    blocks,
                    addrs: Vec::new(),
                },
            });
            id
        });
        if let IdentityKind::Node { addrs, .. } = &mut list[id as usize - 1].kind {
            addrs.push(addr);
        }
        by_node_addr.insert(addr, id);
    }
    by_node_addr
}
