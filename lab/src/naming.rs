//! Names and link-layer addresses of lab objects, all derived
//! deterministically so a lab can be found and cleaned up without its state
//! file, and so the dataplane can recompute a pod's MAC for anti-spoofing.
//!
//! Every name fits `IFNAMSIZ` (15 characters): the lab name is at most
//! [`MAX_LAB_NAME`] characters of `[a-z0-9]`, so `bh-<lab>-node` and
//! `bh-<lab>-p<index>` fit, and host-side veths are `bh` + 12 hex digits.

use super::LabError;

/// Longest lab name.
pub const MAX_LAB_NAME: usize = 6;

/// Default lab name.
pub const DEFAULT_LAB: &str = "lab";

/// Longest interface or namespace name (`IFNAMSIZ` less the NUL).
pub const IFNAMSIZ_MAX: usize = 15;

/// Checks a lab name: 1 to [`MAX_LAB_NAME`] characters of `[a-z0-9]`.
pub fn check_lab_name(name: &str) -> Result<(), LabError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_LAB_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(LabError::InvalidName {
            name: name.to_owned(),
        })
    }
}

/// The prefix every namespace of lab `lab` starts with; the `-` after the
/// lab name keeps `bh-a-` from matching lab `ab`.
pub fn netns_prefix(lab: &str) -> String {
    format!("bh-{lab}-")
}

/// The node namespace of a one-node lab: all routing lives there.
pub fn node_netns(lab: &str) -> String {
    format!("{}node", netns_prefix(lab))
}

/// The namespace of node `index` of a lab of `nodes` nodes: `bh-<lab>-node`
/// for a one-node lab (as before there were several), else
/// `bh-<lab>-n<index>`.
pub fn node_netns_of(lab: &str, index: usize, nodes: usize) -> String {
    if nodes <= 1 {
        node_netns(lab)
    } else {
        format!("{}n{index}", netns_prefix(lab))
    }
}

/// Whether `netns` is a node namespace of lab `lab` (`bh-<lab>-node` or
/// `bh-<lab>-n<digits>`); its index.
pub fn node_index(lab: &str, netns: &str) -> Option<usize> {
    let rest = netns.strip_prefix(&netns_prefix(lab))?;
    if rest == "node" {
        return Some(0);
    }
    let digits = rest.strip_prefix('n')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The fabric namespace of a multi-node lab: a bridge joining the nodes.
pub fn fabric_netns(lab: &str) -> String {
    format!("{}fab", netns_prefix(lab))
}

/// The default Kubernetes name of node `index`.
pub fn default_node_name(index: usize) -> String {
    format!("node-{index}")
}

/// The fabric side of node `index`'s link, in the fabric namespace.
pub fn fabric_veth(index: usize) -> String {
    format!("n{index}")
}

/// The node side of its fabric link, in the node namespace.
pub const NODE_FABRIC_IF: &str = "eth0";

/// The bridge in the fabric namespace.
pub const FABRIC_BRIDGE: &str = "br0";

/// Most nodes a lab may have (`bh-<lab>-n<index>` must fit a name).
pub const MAX_NODES: usize = 64;

/// The namespace of the `index`th pod (in namespace/name order).
pub fn pod_netns(lab: &str, index: usize) -> String {
    format!("{}p{index}", netns_prefix(lab))
}

/// The namespace of the `index`th external host (in command-line order).
pub fn external_netns(lab: &str, index: usize) -> String {
    format!("{}x{index}", netns_prefix(lab))
}

/// FNV-1a, 64 bits: small, stable across releases and platforms, which is
/// all these names need (collisions are checked where names are made).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The hash behind veth names and MACs: FNV-1a of the key, then
/// MurmurHash3's 64-bit finalizer, so keys that differ in one character
/// (`x/a`, `x/b`) differ in every part of the hash.
pub fn name_hash(key: &str) -> u64 {
    let mut k = fnv1a64(key.as_bytes());
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

/// The node-side veth of the host with key `key` (`namespace/name` of a
/// pod, the address of an external host): `bh` and 48 bits of hash in hex.
pub fn host_veth(key: &str) -> String {
    format!("bh{:012x}", name_hash(key) >> 16)
}

/// The MAC of an external host (keyed by its address): locally administered
/// unicast, from [`name_hash`]. Pods get the MAC the dataplane expects,
/// `bulkhead_policy::compile::maps::pod_mac`, instead.
pub fn mac_of(key: &str) -> [u8; 6] {
    let h = name_hash(key).to_be_bytes();
    [(h[0] & 0xfc) | 0x02, h[1], h[2], h[3], h[4], h[5]]
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
