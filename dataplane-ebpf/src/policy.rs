//! Policy lookup: does a rule table allow a peer, protocol and port?
//!
//! Mirrors the userspace reference evaluator over the same tables; the two
//! must agree (differential tests compare them).

use aya_ebpf::maps::lpm_trie::Key;
use bulkhead_common::{IDENTITY_ANY, POLICY_PREFIX_FULL, PolicyKey, PolicyValue};

use crate::maps::POLICY;

/// Returns the rule of `table` that allows traffic with `peer_identity`,
/// `proto` and (destination) `port`, or `None` if nothing allows it.
///
/// Within one identity the trie's longest-prefix match picks the most
/// specific entry: exact port, then aligned port blocks, then any port of the
/// protocol, then any protocol. Across identities the order is:
#[inline(always)]
pub fn allowed(table: u32, peer_identity: u32, proto: u8, port: u16) -> Option<PolicyValue> {
    // verifier: map keys live on the stack and the lookup helper reads all
    // their bytes, so every byte must be written: `Key` is packed and
    // `PolicyKey::new` zeroes `_pad`, leaving no uninitialised padding.

    // 1. A rule naming the peer's own identity (pod selectors, ipBlocks).
    if peer_identity != IDENTITY_ANY {
        let key = Key::new(
            POLICY_PREFIX_FULL,
            PolicyKey::new(table, peer_identity, proto, port),
        );
        if let Some(value) = POLICY.get(&key) {
            return Some(*value);
        }
    }
    // 2. A rule for any peer (`IDENTITY_ANY`: a rule without peers).
    let key = Key::new(
        POLICY_PREFIX_FULL,
        PolicyKey::new(table, IDENTITY_ANY, proto, port),
    );
    POLICY.get(&key).copied()
    // 3. Nothing matched: not allowed (the caller drops for isolated pods).
}
