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

/// Records that the first fragment of `p`'s datagram passed.
#[inline(always)]
pub fn record(p: &Parsed, ifindex: u32, hook: Hook) {
    let entry = FragEntry {
        // SAFETY: the helper takes no arguments.
        first_seen_ns: unsafe { bpf_ktime_get_ns() },
        _reserved: 0,
    };
    let _ = FRAGS.insert(key(p, ifindex, hook), entry, 0);
}

/// Judges a later fragment of `p`'s datagram.
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
    if FRAGS.get_ptr(key(p, ifindex, hook)).is_some() {
        Ok(Verdict::Established)
    } else {
        Err(DropReason::FragmentUntracked)
    }
}
