//! ABI stability: the numbers of drop reasons, verdicts and event kinds, the
//! prefix lengths of slotted LPM keys and the policy node layout (POLICY_V4,
//! POLICY_NODES) never change; the kernel's in-node binary search equals a
//! linear scan.

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
            (13, "icmp_error_sender"),
            (14, "service_unjudged"),
            (15, "tail_call_failed"),
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
            Verdict::Deferred as u8,
        ],
        [1, 2, 3, 4, 5, 6]
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

#[test]
fn policy_v4_layout_and_constants() {
    assert_eq!(ABI_VERSION, 11);
    // Exactly the full-address entries live in IDENTITIES_EXACT.
    assert!(identity_is_exact(8 + 96 + 32) && identity_is_exact(8 + 128));
    assert!(!identity_is_exact(8 + 96 + 31) && !identity_is_exact(8 + 64));
    assert_eq!(CONFIG_F_HOST_ROUTING, 1);
    assert_eq!((IDENTITY_F_NODE, IDENTITY_F_POD), (1, 2));
    assert_eq!((RULE_NONE, RULE_NODE), (u32::MAX, u32::MAX - 1));
    // The deny bit of a policy tree's target: never on RULE_NONE or
    // RULE_NODE, stripped by `rule_id`.
    assert_eq!(RULE_F_DENY, 1 << 31);
    assert!(rule_denies(7 | RULE_F_DENY) && !rule_denies(7));
    assert!(!rule_denies(RULE_NONE) && !rule_denies(RULE_NODE));
    assert_eq!(
        (rule_id(7 | RULE_F_DENY), rule_id(RULE_NONE)),
        (7, RULE_NONE)
    );
    assert_eq!((POLICY_FANOUT, POLICY_DEPTH_MAX), (16, 6));
    // Six levels of 16 hold every policy point as its own range.
    assert!((POLICY_FANOUT as u64).pow(POLICY_DEPTH_MAX as u32) > u64::from(POLICY_POINT_MAX));
    assert_eq!((POLICY_NODE_LEAF, POLICY_NODE_INNER), (1, 2));
    assert_eq!(policy_point(PROTO_TCP, 80), 0x06_0050);
    assert_eq!(policy_point(255, u16::MAX), POLICY_POINT_MAX);
    assert!(policy_point(PROTO_ANY, u16::MAX) < policy_point(PROTO_ICMP, 0));
    assert_eq!(
        (
            core::mem::size_of::<PolicyNodeKey>(),
            core::mem::size_of::<PolicyRange>(),
            core::mem::size_of::<PolicyNode>()
        ),
        (16, 12, 200)
    );
    // POLICY_NODES: one index range per slot, node numbers masked into it.
    assert_eq!(POLICY_NODES_SLOT_CAPACITY, 32_768);
    assert_eq!(POLICY_NODES_MAX, 2 * POLICY_NODES_SLOT_CAPACITY);
    assert_eq!(policy_node_index(0, 5), 5);
    assert_eq!(policy_node_index(1, 5), POLICY_NODES_SLOT_CAPACITY + 5);
    assert_eq!(
        policy_node_index(0, POLICY_NODES_SLOT_CAPACITY + 5),
        5,
        "never leaves the slot's range"
    );
    assert_eq!(
        policy_node_index(1, u32::MAX),
        POLICY_NODES_MAX - 1,
        "never leaves the map"
    );
    let k = PolicyNodeKey::new(1, 2, 3, 4);
    assert_eq!(
        (k.slot, k._pad, k.table, k.identity, k.node),
        (1, [0; 3], 2, 3, 4)
    );
}

/// Every node size 0..=16 and every point around its ranges: the fixed
/// 4-step binary search finds exactly what a linear scan finds.
#[test]
fn node_search_equals_a_linear_scan() {
    for count in 0..=POLICY_FANOUT {
        for width in [1u32, 2, 5] {
            let mut node = PolicyNode {
                count: count as u8,
                kind: POLICY_NODE_LEAF,
                _pad: [0; 2],
                _reserved: 0,
                ranges: [PolicyRange::default(); POLICY_FANOUT],
            };
            // Ranges `width` wide with gaps of 2, from 10 on.
            for (i, r) in node.ranges.iter_mut().take(count).enumerate() {
                let first = 10 + i as u32 * (width + 2);
                *r = PolicyRange {
                    first,
                    last: first + width - 1,
                    target: i as u32,
                };
            }
            for point in 0..(12 + 16 * 7) {
                let linear = node.ranges[..count]
                    .iter()
                    .find(|r| r.first <= point && point <= r.last);
                assert_eq!(
                    node.search(point),
                    linear,
                    "count {count} width {width} point {point}"
                );
            }
        }
    }
}

#[test]
fn flow_accounting_numbers_are_stable() {
    use bulkhead_common::{
        EventKind, FLOW_CONFIG_ACCOUNTING, FLOW_CONFIG_EVENTS_DROP, FLOW_CONFIG_EVENTS_NEW,
        FLOW_SIDE_EGRESS, FLOW_SIDE_INGRESS, FLOW_STATS, FLOW_STATS_MAX, FlowStat, HOOK_XDP,
    };
    assert_eq!((FLOW_SIDE_EGRESS, FLOW_SIDE_INGRESS, HOOK_XDP), (1, 2, 3));
    assert_eq!(
        (
            FLOW_CONFIG_ACCOUNTING,
            FLOW_CONFIG_EVENTS_NEW,
            FLOW_CONFIG_EVENTS_DROP
        ),
        (1, 2, 4)
    );
    assert_eq!(
        (
            EventKind::Drop as u8,
            EventKind::NewFlow as u8,
            EventKind::FlowRecord as u8
        ),
        (1, 2, 3)
    );
    // Counter numbers never change; names are what metrics export.
    for (i, s) in FLOW_STATS.iter().enumerate() {
        assert_eq!(*s as usize, i, "{}", s.name());
        assert!((*s as u32) < FLOW_STATS_MAX);
    }
    assert_eq!(FlowStat::EventsLost as u32, 10);
}
