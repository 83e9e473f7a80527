//! The ABI shared by Bulkhead's eBPF programs and its userspace controller.
//!
//! Rules of this crate (see ARCHITECTURE.md): `#[repr(C)]`, explicit padding,
//! no `bool`, addresses as `[u8; 16]` with IPv4 mapped into IPv6, multi-byte
//! fields of LPM keys in network byte order (the trie compares bits from the
//! first byte on). Every type has its size and offsets asserted. The layout is
//! append-only; an incompatible change renames the map with a version suffix.
#![no_std]
#![cfg_attr(not(feature = "user"), forbid(unsafe_code))]

use core::mem::{offset_of, size_of};

/// Identity number meaning "any peer" in a policy key. Never assigned to an
/// address class.
pub const IDENTITY_ANY: u32 = 0;

/// Protocol number meaning "any protocol" in a policy key (IP protocol 0 is
/// the IPv6 hop-by-hop header, never a transport protocol).
pub const PROTO_ANY: u8 = 0;
/// IANA protocol number of ICMP.
pub const PROTO_ICMP: u8 = 1;
/// IANA protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// IANA protocol number of UDP.
pub const PROTO_UDP: u8 = 17;
/// IANA protocol number of ICMPv6.
pub const PROTO_ICMPV6: u8 = 58;
/// IANA protocol number of SCTP.
pub const PROTO_SCTP: u8 = 132;

/// Key data of the address → identity LPM trie. IPv4 addresses are mapped
/// into IPv6 (`::ffff:a.b.c.d`), so an IPv4 `/n` has prefix length `96 + n`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdentityKey {
    /// The address, IPv4-mapped when IPv4.
    pub addr: [u8; 16],
}
const _: () = assert!(size_of::<IdentityKey>() == 16);

/// Value of the address → identity LPM trie.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IdentityValue {
    /// The identity (address class) the prefix belongs to; never `IDENTITY_ANY`.
    pub identity: u32,
    /// Reserved for flags; zero.
    pub _reserved: u32,
}
const _: () = assert!(size_of::<IdentityValue>() == 8);
const _: () = assert!(offset_of!(IdentityValue, identity) == 0);

/// Key data of the policy LPM trie. Lookups use the full length
/// ([`POLICY_PREFIX_FULL`]); entries use shorter prefixes as wildcards: any
/// protocol ([`POLICY_PREFIX_ANY_PROTO`]), any port of one protocol
/// ([`POLICY_PREFIX_PROTO`]), and aligned port blocks in between.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyKey {
    /// Rule table number, big-endian.
    pub table: [u8; 4],
    /// Peer identity, big-endian; `IDENTITY_ANY` for rules that match every peer.
    pub identity: [u8; 4],
    /// IP protocol number.
    pub proto: u8,
    /// Destination port, big-endian (0 for protocols without ports).
    pub port: [u8; 2],
    /// Padding; zero.
    pub _pad: u8,
}
const _: () = assert!(size_of::<PolicyKey>() == 12);
const _: () = assert!(offset_of!(PolicyKey, table) == 0);
const _: () = assert!(offset_of!(PolicyKey, identity) == 4);
const _: () = assert!(offset_of!(PolicyKey, proto) == 8);
const _: () = assert!(offset_of!(PolicyKey, port) == 9);

/// Prefix length of a policy entry that matches any protocol and port.
pub const POLICY_PREFIX_ANY_PROTO: u32 = 64;
/// Prefix length of a policy entry that matches every port of one protocol.
pub const POLICY_PREFIX_PROTO: u32 = 72;
/// Prefix length of a policy entry for one exact port (and of every lookup).
pub const POLICY_PREFIX_FULL: u32 = 88;

impl PolicyKey {
    /// Builds a key from host-order fields.
    pub const fn new(table: u32, identity: u32, proto: u8, port: u16) -> Self {
        Self {
            table: table.to_be_bytes(),
            identity: identity.to_be_bytes(),
            proto,
            port: port.to_be_bytes(),
            _pad: 0,
        }
    }
}

/// Value of the policy LPM trie: the rule that allows the match.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PolicyValue {
    /// Index of the deciding rule in the compiled rule registry (for flow
    /// logs and explain).
    pub rule: u32,
    /// Reserved for verdict flags (audit, deny tiers); zero.
    pub _reserved: u32,
}
const _: () = assert!(size_of::<PolicyValue>() == 8);

/// Endpoint isolation flag: ingress is isolated (some policy selects the pod
/// for ingress), so only what its ingress table allows may enter.
pub const ENDPOINT_ISOLATED_INGRESS: u32 = 1 << 0;
/// Endpoint isolation flag: egress is isolated.
pub const ENDPOINT_ISOLATED_EGRESS: u32 = 1 << 1;

/// Per-endpoint policy binding: which rule tables apply to a pod.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EndpointPolicy {
    /// Rule table for traffic entering the pod.
    pub ingress_table: u32,
    /// Rule table for traffic leaving the pod.
    pub egress_table: u32,
    /// `ENDPOINT_ISOLATED_*` bits.
    pub flags: u32,
    /// Reserved; zero.
    pub _reserved: u32,
}
const _: () = assert!(size_of::<EndpointPolicy>() == 16);
const _: () = assert!(offset_of!(EndpointPolicy, ingress_table) == 0);
const _: () = assert!(offset_of!(EndpointPolicy, egress_table) == 4);
const _: () = assert!(offset_of!(EndpointPolicy, flags) == 8);

#[cfg(feature = "user")]
mod user {
    // SAFETY: all types are #[repr(C)], Copy, with explicit padding and no
    // invalid bit patterns.
    unsafe impl aya::Pod for super::IdentityKey {}
    unsafe impl aya::Pod for super::IdentityValue {}
    unsafe impl aya::Pod for super::PolicyKey {}
    unsafe impl aya::Pod for super::PolicyValue {}
    unsafe impl aya::Pod for super::EndpointPolicy {}
}
