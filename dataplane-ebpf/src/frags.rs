//! Fragment tracking (see `parse.rs` for the policy): a first fragment that
//! passes a hook is recorded; later fragments at that hook need the record.

use aya_ebpf::helpers::bpf_ktime_get_ns;
use bulkhead_common::{
    DropReason, ENDPOINT_ISOLATED_EGRESS, ENDPOINT_ISOLATED_INGRESS, EndpointInfo, FragEntry,
    FragKey, Verdict,
};

use crate::{conntrack::Hook, maps::FRAGS, parse::Parsed};

#[inline(always)]
fn key(p: &Parsed, ifindex: u32, hook: Hook) -> FragKey {
    FragKey {
        src: p.key.tuple.src,
        dst: p.key.tuple.dst,
        id: p.frag_id,
        ifindex,
        proto: p.key.tuple.proto,
        hook: hook.number(),
        _pad: [0; 2],
    }
}

/// How long a record lets later fragments pass: the kernel's default
/// reassembly timeout (`ipfrag_time` 30 s; IPv6's is 60 s), after which
/// the receiver has dropped the datagram anyway.
const FRAG_LIFETIME_NS: u64 = 30_000_000_000;
/// IPv6's reassembly timeout (`ip6frag_time`).
const FRAG_LIFETIME_V6_NS: u64 = 60_000_000_000;

/// The first fragment of `p`'s datagram passed (`passed`: recorded) or was
/// dropped (any record under its key removed).
#[inline(always)]
pub fn first(p: &Parsed, ifindex: u32, hook: Hook, passed: bool) {
    let key = key(p, ifindex, hook);
    if !passed {
        let _ = FRAGS.remove(key);
        return;
    }
    let entry = FragEntry {
        // SAFETY: the helper takes no arguments.
        first_seen_ns: unsafe { bpf_ktime_get_ns() },
        _reserved: 0,
    };
    let _ = FRAGS.insert(key, entry, 0);
}

/// Judges a later fragment of `p`'s datagram; the last one ends the record.
#[inline(always)]
pub fn later(
    ep: &EndpointInfo,
    p: &Parsed,
    ifindex: u32,
    hook: Hook,
) -> Result<Verdict, DropReason> {
    if ep.flags & (ENDPOINT_ISOLATED_INGRESS | ENDPOINT_ISOLATED_EGRESS) == 0 {
        return Ok(Verdict::Allowed); // nothing is enforced on this pod
    }
    let key = key(p, ifindex, hook);
    let Some(entry) = FRAGS.get_ptr(key) else {
        return Err(DropReason::FragmentUntracked);
    };
    // SAFETY: read at once within this run (RCU); whole-value writes only.
    let first_seen = unsafe { (*entry).first_seen_ns };
    let lifetime = if p.v6 {
        FRAG_LIFETIME_V6_NS
    } else {
        FRAG_LIFETIME_NS
    };
    // SAFETY: the helper takes no arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    if now.wrapping_sub(first_seen) > lifetime {
        let _ = FRAGS.remove(key);
        return Err(DropReason::FragmentUntracked);
    }
    if !p.frag_more {
        let _ = FRAGS.remove(key);
    }
    Ok(Verdict::Established)
}
