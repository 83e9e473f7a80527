//! Every map of the dataplane, in one place.
//!
//! The controller writes all of them (from a compiled map image); the
//! programs only read them. Key and value types come from `bulkhead-common`,
//! the ABI shared with userspace. Maps are not pinned yet: pinning (and the
//! fail-static adoption it enables) arrives with the dataplane loader.

use aya_ebpf::{
    macros::map,
    maps::{HashMap, LpmTrie},
};
use bulkhead_common::{EndpointPolicy, IdentityKey, IdentityValue, PolicyKey, PolicyValue};

/// Capacity of [`IDENTITIES`]: prefixes of all address classes in force.
pub const IDENTITIES_MAX: u32 = 65_536;
/// Capacity of [`POLICY`]: rule entries of all tables together.
pub const POLICY_MAX: u32 = 65_536;
/// Capacity of [`ENDPOINTS`]: pods on this node.
pub const ENDPOINTS_MAX: u32 = 4_096;

/// Address → identity (address class), both families in one trie.
///
/// - Key: [`IdentityKey`] under an LPM prefix length. IPv4 is mapped into IPv6
///   (`::ffff:a.b.c.d`), so an IPv4 `/n` is stored with prefix `96 + n`; the
///   programs look up with prefix 128.
/// - Value: [`IdentityValue`]; the identity is never `IDENTITY_ANY`.
/// - Written by: the controller's dataplane sync, from the compiled partition
///   of the address space (pod IPs, ipBlocks and their `except`s).
#[map]
pub static IDENTITIES: LpmTrie<IdentityKey, IdentityValue> =
    LpmTrie::with_max_entries(IDENTITIES_MAX, 0);

/// Rule tables: (table, peer identity, protocol, port) → the allowing rule.
///
/// - Key: [`PolicyKey`] under an LPM prefix length. Entries use shorter
///   prefixes as wildcards (`POLICY_PREFIX_ANY_PROTO`, `POLICY_PREFIX_PROTO`,
///   aligned port blocks); the programs look up at `POLICY_PREFIX_FULL`, once
///   for the peer's identity and once for `IDENTITY_ANY` (see `policy.rs`).
/// - Value: [`PolicyValue`], the index of the deciding rule.
/// - Written by: the controller's dataplane sync, from the compiled
///   per-endpoint rule tables. A key that is absent means "not allowed".
#[map]
pub static POLICY: LpmTrie<PolicyKey, PolicyValue> = LpmTrie::with_max_entries(POLICY_MAX, 0);

/// Endpoint (pod) bindings: which rule tables apply and whether the pod is
/// isolated.
///
/// - Key: `u32` ifindex of the pod's host-side veth (the device the TC
///   programs are attached to, `__sk_buff.ifindex` there).
/// - Value: [`EndpointPolicy`].
/// - Written by: the controller when it discovers a pod's veth and when the
///   policies selecting the pod change. An unknown ifindex is not enforced.
#[map]
pub static ENDPOINTS: HashMap<u32, EndpointPolicy> = HashMap::with_max_entries(ENDPOINTS_MAX, 0);
