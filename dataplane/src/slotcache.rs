//! What one policy slot holds, kept in memory by the [`Syncer`]
//! (`super::sync::Syncer`) so that a sync never reads the maps back: the
//! slot's logical content ([`NodeImage`]) and where its policy trees' nodes
//! live in the slot's range of POLICY_NODES, with a free list of the
//! others ([`SlotState`]). A changed tree takes nodes from the free list
//! and returns its old ones; no other tree moves.

use std::collections::HashMap;

use bulkhead_common::{
    IdentityKey, POLICY_NODE_INNER, POLICY_NODES_SLOT_CAPACITY, PolicyNode, PolicyNodeKey,
    PolicyRange,
};
use bulkhead_policy::compile::image::{ImageCounts, NodeImage, TreeKey, tree_ranges};
use bulkhead_policy::compile::maps::{ImageTooLarge, policy_tree};

use super::sync::SlotImage;

/// The logical content of a slot read back from the maps (see
/// [`SlotState::load`]; a malformed tree reads as an empty range list).
pub fn node_image(slot: &SlotImage) -> NodeImage {
    SlotState::load(slot).image
}

/// One slot as the syncer knows it.
#[derive(Clone, Debug)]
pub(crate) struct SlotState {
    /// The slot's content.
    pub image: NodeImage,
    /// `image.counts()`, kept up to date.
    pub counts: ImageCounts,
    /// Each tree's non-root nodes (POLICY_NODES numbers within the slot's
    /// range), in the tree's own order (tree node `i` is `nodes[i - 1]`).
    nodes: HashMap<TreeKey, Vec<u32>>,
    /// Node numbers no tree uses; the next one taken is the last.
    free: Vec<u32>,
}

impl SlotState {
    /// The state of a slot whose maps hold `slot` (as `read_slot` reads
    /// it). A tree whose nodes are malformed or shared with an earlier
    /// tree gets an empty range list, which no wanted image holds, so the
    /// next write into the slot replaces it (or removes it).
    pub fn load(slot: &SlotImage) -> Self {
        let mut claimed = vec![false; POLICY_NODES_SLOT_CAPACITY as usize];
        let mut image = NodeImage::default();
        let mut nodes = HashMap::new();
        for (k, root) in &slot.policy {
            let key = (k.table, k.identity);
            let mut mine = Vec::new();
            let mut ok = true;
            let ranges = tree_ranges(root, |n| {
                if n >= POLICY_NODES_SLOT_CAPACITY
                    || std::mem::replace(&mut claimed[n as usize], true)
                {
                    ok = false;
                    return None;
                }
                mine.push(n);
                slot.policy_nodes.get(&n).copied()
            });
            let ranges = match ranges {
                Some(r) if ok => r,
                _ => Vec::new(),
            };
            image.policy.insert(key, ranges);
            nodes.insert(key, mine);
        }
        image.identities = slot
            .identities
            .iter()
            .map(|(&(len, k), &v)| ((len, k.addr), v))
            .collect();
        image.endpoints = slot
            .endpoints
            .iter()
            .map(|(k, &v)| (k.ifindex, v))
            .collect();
        image.services = slot
            .services
            .iter()
            .map(|s| (s.proto, s.port, s.addr))
            .collect();
        let free = (0..POLICY_NODES_SLOT_CAPACITY)
            .rev()
            .filter(|&n| !claimed[n as usize])
            .collect();
        Self {
            counts: image.counts(),
            image,
            nodes,
            free,
        }
    }

    /// Returns the nodes of tree `key` to the free list (the tree is being
    /// removed or rewritten); the numbers freed.
    pub fn release(&mut self, key: &TreeKey) -> Vec<u32> {
        let freed = self.nodes.remove(key).unwrap_or_default();
        self.free.extend(freed.iter().rev());
        freed
    }

    /// Lays tree `key` of `ranges` out for `slot` on nodes taken from the
    /// free list: its POLICY_V4 root and its POLICY_NODES entries.
    pub fn place(
        &mut self,
        slot: u8,
        key: TreeKey,
        ranges: &[PolicyRange],
    ) -> Result<Placed, ImageTooLarge> {
        let entries = policy_tree(slot, key.0, key.1, ranges);
        let need = entries.len().saturating_sub(1);
        if need > self.free.len() {
            return Err(ImageTooLarge {
                map: "POLICY_NODES",
                needed: self.nodes.values().map(Vec::len).sum::<usize>() + need,
                capacity: POLICY_NODES_SLOT_CAPACITY,
            });
        }
        let taken = self.free.split_off(self.free.len() - need);
        // Tree node i (≥ 1) is taken[need - i]: the free list's last first.
        let number = |i: u32| taken[need - i as usize];
        let mut out = Placed {
            root: None,
            nodes: Vec::with_capacity(need),
        };
        for (k, mut node) in entries {
            if node.kind == POLICY_NODE_INNER {
                for r in &mut node.ranges[..usize::from(node.count)] {
                    r.target = number(r.target);
                }
            }
            if k.node == 0 {
                out.root = Some((PolicyNodeKey::new(slot, key.0, key.1, 0), node));
            } else {
                out.nodes.push((number(k.node), node));
            }
        }
        self.nodes
            .insert(key, (1..=need as u32).map(number).collect());
        Ok(out)
    }
}

/// One tree laid out by [`SlotState::place`].
pub(crate) struct Placed {
    /// The POLICY_V4 entry (`None` for no ranges).
    pub root: Option<(PolicyNodeKey, PolicyNode)>,
    /// The POLICY_NODES entries: (node number in the slot's range, node).
    pub nodes: Vec<(u32, PolicyNode)>,
}

/// The IDENTITIES key of `addr` in `slot`.
pub(crate) fn identity_key(slot: u8, addr: [u8; 16]) -> IdentityKey {
    IdentityKey { slot, addr }
}
