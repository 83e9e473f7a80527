//! ABI stability: the numbers of drop reasons, verdicts and event kinds, and
//! the prefix lengths of slotted LPM keys, never change.

use bulkhead_common::*;

#[test]
fn drop_reason_numbers_are_stable() {
    let numbers: Vec<(u32, &str)> = DROP_REASONS.iter().map(|r| (*r as u32, r.name())).collect();
    assert_eq!(
        numbers,
        [
            (1, "policy_denied"),
            (2, "malformed"),
            (3, "policy_revoked"),
            (4, "spoofed_ip"),
            (5, "spoofed_mac"),
            (6, "vlan_tagged"),
            (7, "bad_ipv4_ihl"),
            (8, "bad_tcp_data_offset"),
            (9, "ipv6_ext_headers"),
            (10, "fragment_too_short"),
            (11, "fragment_overlap"),
            (12, "fragment_untracked"),
        ]
    );
    assert!(DROP_REASONS.iter().all(|r| (*r as u32) < DROPS_MAX));
}

#[test]
fn verdict_and_event_numbers_are_stable() {
    assert_eq!(
        [
            Verdict::Allowed as u8,
            Verdict::Established as u8,
            Verdict::Related as u8,
            Verdict::Dropped as u8,
            Verdict::Bypass as u8,
        ],
        [1, 2, 3, 4, 5]
    );
    assert_eq!([EventKind::Drop as u8, EventKind::NewFlow as u8], [1, 2]);
}

#[test]
fn slotted_prefixes_and_slots() {
    assert_eq!(SLOT_PREFIX, 8);
    assert_eq!(IDENTITY_PREFIX_FULL, 136);
    assert_eq!(
        (
            POLICY_PREFIX_ANY_PROTO,
            POLICY_PREFIX_PROTO,
            POLICY_PREFIX_FULL
        ),
        (72, 80, 96)
    );
    assert_eq!((active_slot(0), active_slot(1), active_slot(7)), (0, 1, 1));
    let k = CtKey {
        src: [1; 16],
        dst: [2; 16],
        sport: 3,
        dport: 4,
        proto: 6,
        _pad: [0; 3],
    };
    assert_eq!(k.reversed().reversed(), k);
    assert_eq!((k.reversed().src, k.reversed().sport), ([2; 16], 4));
}
