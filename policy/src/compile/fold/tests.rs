use super::*;

const TCP: u8 = 6;
const UDP: u8 = 17;

fn g(peer: IdentityId, proto: u8, lo: u16, hi: u16, rank: u32, rule: RuleId) -> Grant {
    Grant::new((peer, proto), lo, hi, rank, rule)
}

/// The decision `RuleTable::lookup`'s order finds in folded groups.
fn find(
    groups: &HashMap<GroupKey, Vec<Segment>>,
    peer: u32,
    proto: u8,
    port: u16,
) -> Option<&Segment> {
    [
        (peer, proto),
        (peer, PROTO_ANY),
        (IDENTITY_ANY, proto),
        (IDENTITY_ANY, PROTO_ANY),
    ]
    .into_iter()
    .find_map(|k| {
        let segs = groups.get(&k)?;
        segs.iter().find(|s| s.lo <= port && port <= s.hi)
    })
}

#[test]
fn admin_deny_beats_networkpolicy_allow_and_pass_hands_over() {
    let steps = [
        Step::Admin(Verb::Pass),
        Step::Admin(Verb::Deny),
        Step::NetworkPolicy,
    ];
    let grants = [
        g(5, TCP, 80, 80, 0, 10),              // pass peer 5 TCP 80
        g(IDENTITY_ANY, TCP, 0, 65535, 1, 11), // deny all TCP
        g(5, TCP, 80, 90, 2, 12),              // NP allows 5 on 80-90
    ];
    let t = fold(&grants, &steps, true);
    let s = find(&t, 5, TCP, 80).unwrap();
    assert_eq!(
        (s.rules.clone(), s.deny, s.passed.clone()),
        (vec![12], false, vec![10])
    );
    let s = find(&t, 5, TCP, 85).unwrap();
    assert_eq!((s.rules.clone(), s.deny), (vec![11], true));
    let s = find(&t, 6, TCP, 85).unwrap();
    assert_eq!((s.rules.clone(), s.deny), (vec![11], true));
    // UDP: nothing matches; isolation decides (a miss).
    assert!(find(&t, 5, UDP, 80).is_none());
}

#[test]
fn baseline_applies_only_without_networkpolicy() {
    let steps = [Step::NetworkPolicy, Step::Baseline(Verb::Deny)];
    let grants = [g(IDENTITY_ANY, PROTO_ANY, 0, 65535, 1, 3)];
    let open = fold(&grants, &steps, false);
    assert!(find(&open, 9, TCP, 1).unwrap().deny);
    let isolated = fold(&grants, &steps, true);
    assert!(find(&isolated, 9, TCP, 1).is_none());
}

#[test]
fn peer_any_protocol_and_any_peer_protocol_combine() {
    // Admin: accept peer 7 on any protocol; deny any peer TCP 22.
    // Rule order: deny first, then accept.
    let steps = [Step::Admin(Verb::Deny), Step::Admin(Verb::Accept)];
    let grants = [
        g(IDENTITY_ANY, TCP, 22, 22, 0, 1),
        g(7, PROTO_ANY, 0, 65535, 1, 2),
    ];
    let t = fold(&grants, &steps, false);
    assert!(find(&t, 7, TCP, 22).unwrap().deny, "deny ranks first");
    assert_eq!(find(&t, 7, TCP, 23).unwrap().rules, vec![2]);
    assert_eq!(find(&t, 7, UDP, 22).unwrap().rules, vec![2]);
    assert!(find(&t, 8, TCP, 22).unwrap().deny);
    assert!(find(&t, 8, TCP, 23).is_none());
}

#[test]
fn baseline_pass_allows_and_is_recorded() {
    let steps = [Step::Baseline(Verb::Pass), Step::Baseline(Verb::Deny)];
    let grants = [
        g(3, TCP, 80, 80, 0, 1),
        g(IDENTITY_ANY, PROTO_ANY, 0, 65535, 1, 2),
    ];
    let t = fold(&grants, &steps, false);
    let s = find(&t, 3, TCP, 80).unwrap();
    assert!(!s.deny && s.rules.is_empty() && s.passed == vec![1]);
    assert!(find(&t, 3, TCP, 81).unwrap().deny);
}
