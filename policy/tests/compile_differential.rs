//! Differential tests of the compiler: on random models, the compiled tables
//! (through the evaluator) and the map image (through a brute-force emulation
//! of the kernel's identity LPM lookup and its two policy tree descents, root in POLICY_V4, other nodes in POLICY_NODES) must both agree with a direct, deliberately naive
//! reading of NetworkPolicy semantics, written here only as a test oracle.

use std::net::IpAddr;

use std::collections::HashMap;

use bulkhead_common::{
    ENDPOINT_AUDIT_EGRESS, ENDPOINT_AUDIT_INGRESS, ENDPOINT_ISOLATED_EGRESS,
    ENDPOINT_ISOLATED_INGRESS, IDENTITY_ANY, POLICY_DEPTH_MAX, POLICY_FANOUT, POLICY_NODE_INNER,
    POLICY_NODE_LEAF, POLICY_NODES_SLOT_CAPACITY, PROTO_ICMP, PolicyNode, PolicyNodeKey, RULE_NONE,
    policy_point, rule_denies,
};

use bulkhead_common::IdentityKey;
use bulkhead_policy::compile::maps::{MapImage, PolicyLayout, address_key};
use bulkhead_policy::compile::*;
use bulkhead_policy::model::addressing::AddressPlan;
use bulkhead_policy::model::{
    Action, AdminPeer, Direction, Mode, Model, NamespaceScope, Origin, Peer, Pod, Policy,
    PortMatch, Requirement, Rule, Selector, Tier, Workload,
};
use bulkhead_testkit::{Rng, probe_addresses, random_model, random_modes, random_tiered_model};

/// The oracle: NetworkPolicy semantics read straight off the model.
fn oracle(m: &Model, src: IpAddr, dst: IpAddr, proto: u8, port: u16) -> bool {
    let pod_at = |a: IpAddr| m.pods.iter().find(|p| p.ips.contains(&a));
    let (sp, dp) = (pod_at(src), pod_at(dst));
    let q = (proto, port);
    let egress = sp.is_none_or(|s| np_side(m, s, Direction::Egress, dst, dp, dp, q) != Some(false));
    // Kubernetes always lets a pod's own node in (an address that is a
    // pod's is the pod's).
    let from_node = sp.is_none() && m.node_ips.contains(&src);
    let ingress = from_node
        || dp.is_none_or(|d| np_side(m, d, Direction::Ingress, src, sp, Some(d), q) != Some(false));
    egress && ingress
}

/// NetworkPolicy's verdict on one side of pod `me`: `None` when no policy
/// selects it that way, else whether a rule allows (peer at `peer_addr`,
/// pod `peer_pod`; named ports resolve on `dest`).
fn np_side(
    m: &Model,
    me: &Pod,
    d: Direction,
    peer_addr: IpAddr,
    peer_pod: Option<&Pod>,
    dest: Option<&Pod>,
    (proto, port): (u8, u16),
) -> Option<bool> {
    let selecting: Vec<&Policy> = m
        .policies
        .iter()
        .filter(|p| {
            p.namespace == me.namespace
                && p.pod_selector.matches(&me.labels)
                && p.rules(d).is_some()
        })
        .collect();
    if selecting.is_empty() {
        return None;
    }
    Some(
        selecting
            .iter()
            .flat_map(|p| p.rules(d).unwrap())
            .any(|rule| {
                let peer_ok = rule.peers.as_ref().is_none_or(|peers| {
                    peers.iter().any(|peer| match peer {
                        Peer::IpBlock(b) => {
                            b.cidr.contains(peer_addr)
                                && !b.except.iter().any(|e| e.contains(peer_addr))
                        }
                        Peer::Pods { namespaces, pods } => peer_pod.is_some_and(|pp| {
                            let ns_ok = match namespaces {
                                NamespaceScope::Same(ns) => &pp.namespace == ns,
                                NamespaceScope::Selected(s) => {
                                    s.matches(&m.namespaces[&pp.namespace].labels)
                                }
                            };
                            ns_ok && pods.matches(&pp.labels)
                        }),
                    })
                });
                peer_ok && ports_ok(rule.ports.as_deref(), dest, proto, port)
            }),
    )
}

/// Whether a rule's ports match (named ports resolve on `dest`).
fn ports_ok(
    ports: Option<&[bulkhead_policy::model::PortSpec]>,
    dest: Option<&Pod>,
    proto: u8,
    port: u16,
) -> bool {
    ports.is_none_or(|ports| {
        ports.iter().any(|s| {
            s.protocol.number() == proto
                && match &s.port {
                    PortMatch::Any => true,
                    PortMatch::Range(lo, hi) => (*lo..=*hi).contains(&port),
                    PortMatch::Named(n) => {
                        dest.and_then(|d| d.named_port(n, s.protocol)) == Some(port)
                    }
                }
        })
    })
}

/// The oracle with the cluster-admin tiers, read straight off the API's
/// documentation: Admin rules in order (first match decides, Pass leaves
/// the tier), NetworkPolicy if it selects the pod, Baseline rules, allow.
fn tiered_oracle(m: &Model, src: IpAddr, dst: IpAddr, proto: u8, port: u16) -> bool {
    let pod_at = |a: IpAddr| m.pods.iter().find(|p| p.ips.contains(&a));
    let (sp, dp) = (pod_at(src), pod_at(dst));
    let egress =
        sp.is_none_or(|s| tiered_side(m, s, Direction::Egress, dst, dp, dp, (proto, port)));
    let from_node = sp.is_none() && m.node_ips.contains(&src);
    let ingress = from_node
        || dp
            .is_none_or(|d| tiered_side(m, d, Direction::Ingress, src, sp, Some(d), (proto, port)));
    egress && ingress
}

fn tiered_side(
    m: &Model,
    me: &Pod,
    d: Direction,
    addr: IpAddr,
    pod: Option<&Pod>,
    dest: Option<&Pod>,
    q: (u8, u16),
) -> bool {
    // A quarantine first, then the Admin tier.
    for t in [Tier::Quarantine, Tier::Admin] {
        if let Some(v) = tier_verdict(m, t, me, d, addr, pod, dest, q) {
            return v;
        }
    }
    if let Some(v) = np_side(m, me, d, addr, pod, dest, q) {
        return v;
    }
    tier_verdict(m, Tier::Baseline, me, d, addr, pod, dest, q).unwrap_or(true)
}

/// What tier `t` decides for one side, if anything (`Pass`: nothing).
#[allow(clippy::too_many_arguments)]
fn tier_verdict(
    m: &Model,
    t: Tier,
    me: &Pod,
    d: Direction,
    addr: IpAddr,
    pod: Option<&Pod>,
    dest: Option<&Pod>,
    (proto, port): (u8, u16),
) -> Option<bool> {
    let peer_ok = |peer: &AdminPeer| match peer {
        AdminPeer::Pods { namespaces, pods } => pod.is_some_and(|pp| {
            namespaces.matches(&m.namespaces[&pp.namespace].labels) && pods.matches(&pp.labels)
        }),
        AdminPeer::Networks(nets) => nets.iter().any(|n| n.contains(addr)),
        AdminPeer::Nodes(sel) => m
            .nodes
            .iter()
            .any(|n| sel.matches(&n.labels) && n.addresses.contains(&addr)),
    };
    let mut policies: Vec<_> = m
        .admin_policies
        .iter()
        .filter(|p| {
            p.tier == t
                && p.subject
                    .namespaces
                    .matches(&m.namespaces[&me.namespace].labels)
                && p.subject.pods.matches(&me.labels)
                && p.subject.name.as_ref().is_none_or(|n| *n == me.name)
        })
        .collect();
    policies.sort_by_key(|p| (p.priority, p.name.clone()));
    for p in policies {
        for rule in p.rules(d) {
            if rule.peers.iter().any(peer_ok) && ports_ok(rule.ports.as_deref(), dest, proto, port)
            {
                return match rule.action {
                    Action::Accept => Some(true),
                    Action::Deny => Some(false),
                    Action::Pass => None,
                };
            }
        }
    }
    None
}

/// On random models with cluster-admin policies of both tiers, the tiered
/// tables (evaluator, connectivity's port sets) and the map image (the
/// kernel's lookups, deny bit and open tables' fill included) agree with
/// the tiered oracle.
#[test]
fn tiered_tables_and_map_image_agree_with_the_oracle() {
    let (mut checked, mut allowed, mut tiered) = (0usize, 0usize, 0usize);
    for seed in 0..300 {
        let mut r = Rng(seed);
        let m = random_tiered_model(&mut r);
        let c = compile(&m);
        tiered += c.tables.iter().filter(|t| t.tiered()).count();
        let image = c.map_image((seed % 2) as u8);
        let addrs = probe_addresses(&m, &c);
        for &src in &addrs {
            for &dst in &addrs {
                if src == dst || src.is_ipv4() != dst.is_ipv4() {
                    continue;
                }
                let port = 76 + r.below(12) as u16;
                let proto = *r.pick(&[6u8, 17, 132, PROTO_ICMP]);
                let want = tiered_oracle(&m, src, dst, proto, port);
                let ctx =
                    || format!("seed {seed}: {src} -> {dst} proto {proto} port {port}\n{m:#?}");
                assert_eq!(
                    c.allowed(src, dst, proto, port),
                    want,
                    "evaluator {}",
                    ctx()
                );
                assert_eq!(
                    c.evaluate(src, dst, proto, port).allowed(),
                    want,
                    "evaluate {}",
                    ctx()
                );
                if r.chance(20) {
                    let k = kernel_allowed(&c, &image, src, dst, proto, port);
                    assert_eq!(k, want, "map image {}", ctx());
                }
                checked += 1;
                allowed += want as usize;
            }
        }
    }
    assert!(checked > 20_000, "only {checked} queries");
    assert!(tiered > 300, "only {tiered} tiered tables");
    assert!(
        allowed > checked / 10 && allowed < checked * 9 / 10,
        "{allowed} of {checked} allowed"
    );
}

/// The kernel's view: LPM lookups over the map image, by brute force.
fn lpm<'a, K: Copy, V>(
    entries: &'a [(u32, K, V)],
    key: &[u8],
    bytes: impl Fn(&K) -> Vec<u8>,
) -> Option<&'a V> {
    entries
        .iter()
        .filter(|(len, k, _)| {
            let kb = bytes(k);
            (0..*len as usize).all(|bit| (kb[bit / 8] ^ key[bit / 8]) & (0x80 >> (bit % 8)) == 0)
        })
        .max_by_key(|(len, _, _)| *len)
        .map(|(_, _, v)| v)
}

/// POLICY_V4 (roots by key) and one slot's POLICY_NODES (by node number).
struct Placed {
    roots: HashMap<PolicyNodeKey, PolicyNode>,
    nodes: Vec<PolicyNode>,
}

impl Placed {
    fn new(layout: PolicyLayout) -> Self {
        Self {
            roots: layout.roots.into_iter().collect(),
            nodes: layout.nodes,
        }
    }
}

/// The kernel's view of the policy maps as [`place_policy`] lays them out:
/// an exact-match lookup of the root in POLICY_V4, then POLICY_NODES
/// entries by node number, each node scanned linearly (the kernel's binary
/// search is checked against a linear scan in `bulkhead-common`'s tests).
fn descend(policy: &Placed, slot: u8, table: u32, peer: u32, point: u32) -> Option<u32> {
    let key = PolicyNodeKey::new(slot, table, peer, 0);
    let mut node = policy.roots.get(&key)?;
    for _ in 0..POLICY_DEPTH_MAX {
        assert!((1..=POLICY_FANOUT).contains(&(node.count as usize)));
        let used = &node.ranges[..node.count as usize];
        assert!(
            used.windows(2).all(|w| w[0].last < w[1].first),
            "sorted, disjoint"
        );
        let range = used.iter().find(|r| r.first <= point && point <= r.last)?;
        match node.kind {
            POLICY_NODE_LEAF => return Some(range.target),
            POLICY_NODE_INNER => {
                assert!(range.target < POLICY_NODES_SLOT_CAPACITY);
                node = policy.nodes.get(range.target as usize)?;
            }
            k => panic!("node kind {k}"),
        }
    }
    panic!("deeper than POLICY_DEPTH_MAX");
}

fn identity_bytes(k: &IdentityKey) -> Vec<u8> {
    let mut v = vec![k.slot];
    v.extend(k.addr);
    v
}

fn kernel_allowed(
    c: &Compiled,
    image: &MapImage,
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    port: u16,
) -> bool {
    let value = |a: IpAddr| {
        let key = identity_bytes(&address_key(image.slot, a));
        lpm(&image.identities, &key, identity_bytes).expect("every address has an identity")
    };
    let identity = |a: IpAddr| value(a).identity;
    // As `check_side`: the node's ingress needs no rule.
    let from_node = value(src).is_node();
    let endpoint = |a: IpAddr| c.pod_of(a).map(|p| image.endpoints[p].1);
    let policy = Placed::new(image.policy_layout());
    let point = policy_point(proto, port);
    // The image holds kernel numbers; the tables the compiler's.
    let check = |table: u32, peer: u32| {
        let kernel = [peer, IDENTITY_ANY]
            .iter()
            .find_map(|&id| descend(&policy, image.slot, table, id, point));
        // The deciding rule (recorded in CT, flow logs) is the evaluator's;
        // a tiered table that NetworkPolicy does not isolate answers
        // RULE_NONE where no rule decides.
        let internal = c.kernel.internal_table(table).expect("a table's number");
        let t = &c.tables[internal as usize];
        let peer = c
            .kernel
            .internal_identity(peer)
            .expect("an identity's number");
        let want = match t.lookup(peer, proto, port) {
            Some(s) => Some(c.kernel.target(s.kernel_rule())),
            None if t.isolated() => None,
            None => Some(RULE_NONE),
        };
        assert_eq!(kernel, want, "rule of table {table} for peer {peer}");
        kernel.is_some_and(|r| !rule_denies(r))
    };
    let egress = endpoint(src).is_none_or(|e| {
        e.flags & ENDPOINT_ISOLATED_EGRESS == 0 || check(e.egress_table, identity(dst))
    });
    let ingress = endpoint(dst).is_none_or(|e| {
        e.flags & ENDPOINT_ISOLATED_INGRESS == 0
            || from_node
            || check(e.ingress_table, identity(src))
    });
    egress && ingress
}

#[test]
fn compiled_tables_and_map_image_agree_with_the_oracle() {
    let mut checked = 0usize;
    let mut allowed = 0usize;
    for seed in 0..300 {
        let mut r = Rng(seed);
        let m = random_model(&mut r);
        let c = compile(&m);
        let image = c.map_image((seed % 2) as u8);
        let addrs = probe_addresses(&m, &c);
        for &src in &addrs {
            for &dst in &addrs {
                if src == dst || src.is_ipv4() != dst.is_ipv4() {
                    continue;
                }
                let port = 76 + r.below(12) as u16;
                let proto = *r.pick(&[6u8, 17, 132, PROTO_ICMP]);
                let want = oracle(&m, src, dst, proto, port);
                let got = c.allowed(src, dst, proto, port);
                assert_eq!(
                    got, want,
                    "seed {seed}: evaluator {src} -> {dst} proto {proto} port {port}\n{m:#?}"
                );
                assert_eq!(
                    c.evaluate(src, dst, proto, port).allowed(),
                    want,
                    "seed {seed}: evaluate"
                );
                if r.chance(10) {
                    let k = kernel_allowed(&c, &image, src, dst, proto, port);
                    assert_eq!(
                        k, want,
                        "seed {seed}: map image {src} -> {dst} proto {proto} port {port}"
                    );
                }
                checked += 1;
                allowed += want as usize;
            }
        }
    }
    // The generator must produce both answers in quantity, or the test proves nothing.
    assert!(checked > 20_000, "only {checked} queries");
    assert!(
        allowed > checked / 10 && allowed < checked * 9 / 10,
        "{allowed} of {checked} allowed"
    );
}

/// Modes split one model into two views: the enforced one (enforce-mode
/// policies only) and the audit one (enforce- and audit-mode policies);
/// learn-mode policies are in neither. Each view must agree with the
/// oracle on the model holding just its policies, and the map image must
/// flag exactly the audited directions.
#[test]
fn modes_split_the_enforced_and_the_audit_view() {
    let (mut checked, mut would_deny, mut audited) = (0usize, 0usize, 0usize);
    for seed in 0..300 {
        let mut r = Rng(seed);
        let mut m = random_model(&mut r);
        random_modes(&mut r, &mut m);
        let c = compile(&m);
        let only = |keep: fn(Mode) -> bool| {
            let mut v = m.clone();
            v.policies.retain(|p| keep(m.mode_of(p)));
            v
        };
        let (enforced, promoted) = (only(Mode::enforced), only(Mode::audited));
        let image = c.map_image(0);
        for (pod, info) in &image.endpoints {
            let a = c.audit_endpoints[*pod];
            assert_eq!(
                info.flags & ENDPOINT_AUDIT_INGRESS != 0,
                a.ingress.is_some()
            );
            assert_eq!(info.flags & ENDPOINT_AUDIT_EGRESS != 0, a.egress.is_some());
            assert_eq!(
                info.audit_ingress_table,
                a.ingress.map_or(0, |t| c.kernel.table(t))
            );
        }
        let addrs = probe_addresses(&m, &c);
        for &src in &addrs {
            for &dst in &addrs {
                if src == dst || src.is_ipv4() != dst.is_ipv4() {
                    continue;
                }
                let port = 76 + r.below(12) as u16;
                let proto = *r.pick(&[6u8, 17, 132, PROTO_ICMP]);
                let want = oracle(&enforced, src, dst, proto, port);
                let want_promoted = oracle(&promoted, src, dst, proto, port);
                let ctx = || format!("seed {seed}: {src} -> {dst} proto {proto} port {port}");
                assert_eq!(c.allowed(src, dst, proto, port), want, "{}", ctx());
                assert_eq!(
                    c.allowed_if_promoted(src, dst, proto, port),
                    want_promoted,
                    "{}",
                    ctx()
                );
                let audit = c.audit(src, dst, proto, port);
                if want {
                    // What the kernel records: passed, but the audit view
                    // of a side denies it.
                    assert_eq!(audit.would_deny(), !want_promoted, "{}", ctx());
                    would_deny += usize::from(audit.would_deny());
                }
                audited += usize::from(audit.egress.is_some() || audit.ingress.is_some());
                checked += 1;
            }
        }
    }
    // The generator must produce every case in quantity.
    assert!(checked > 20_000, "only {checked} queries");
    assert!(
        would_deny > checked / 50,
        "{would_deny} would-deny of {checked}"
    );
    assert!(audited > checked / 10, "{audited} audited of {checked}");
}

#[test]
fn identities_group_pods_that_no_selector_distinguishes() {
    let mut m = Model::default();
    for i in 0..50 {
        let app = if i % 2 == 0 { "web" } else { "db" };
        m.pods.push(Pod {
            namespace: "x".into(),
            name: format!("p{i}"),
            source: Workload {
                kind: "Pod".into(),
                name: format!("p{i}"),
            },
            owner: None,
            labels: [
                ("app".to_string(), app.to_string()),
                ("pod".to_string(), format!("p{i}")),
            ]
            .into(),
            ports: vec![],
            ips: vec![],
            claim: Default::default(),
            node: None,
            off_network: None,
            origin: Origin::default(),
        });
    }
    m.policies.push(Policy {
        namespace: "x".into(),
        name: "db".into(),
        pod_selector: Selector::new(vec![Requirement::In("app".into(), vec!["db".into()])]),
        ingress: Some(vec![Rule {
            peers: Some(vec![Peer::Pods {
                namespaces: NamespaceScope::Same("x".into()),
                pods: Selector::new(vec![Requirement::In("app".into(), vec!["web".into()])]),
            }]),
            ports: None,
        }]),
        egress: None,
        origin: Origin::default(),
        mode: None,
    });
    m.normalize();
    AddressPlan::default().assign(&mut m.pods).unwrap();
    let c = compile(&m);
    // Two pod classes (web, db), each one identity for both families (no
    // ipBlock tells the families apart), plus one external identity per family.
    assert_eq!(c.classes.len(), 2);
    assert_eq!(c.identities.list.len(), 4);
    // All 25 db pods share one table; web pods have none.
    assert_eq!(c.tables.len(), 1);
    assert_eq!(
        c.tables[0].segment_count(),
        1,
        "one segment: the web identity"
    );
}

/// The kernel keeps one value per key: an image must not list a key twice
/// (a pod address that is also a whole region once did).
#[test]
fn map_image_keys_are_unique() {
    for seed in 0..300 {
        let mut r = Rng(seed);
        let m = random_model(&mut r);
        let image = compile(&m).map_image(1);
        let mut ids: Vec<_> = image.identities.iter().map(|(l, k, _)| (*l, *k)).collect();
        let n = ids.len();
        ids.sort_unstable();
        ids.dedup();
        let mut pol: Vec<_> = image.policy.iter().map(|(k, _)| *k).collect();
        let np = pol.len();
        pol.sort_unstable();
        pol.dedup();
        assert_eq!(
            (ids.len(), pol.len()),
            (n, np),
            "seed {seed}: duplicate keys"
        );
    }
}

/// Trees of every depth up to 4: a descent finds exactly the range of the
/// flat list that holds the point (or none), and peers' any-protocol rules
/// fill exactly the gaps around their protocols' own segments.
#[test]
fn policy_trees_answer_like_their_flat_range_lists() {
    use bulkhead_common::{PROTO_ANY, PROTO_TCP, PROTO_UDP};
    use bulkhead_policy::compile::maps::{peer_ranges, place_policy, policy_tree};
    use bulkhead_policy::compile::tables::Segment;

    let mut r = Rng(7);
    for (n, any) in [
        (1, false),
        (16, true),
        (17, false),
        (256, true),
        (257, false),
        (5000, true),
    ] {
        let mut tcp: Vec<Segment> = Vec::new();
        let mut port = 1u32;
        for i in 0..n {
            let lo = port + r.below(3) as u32;
            let hi = lo + r.below(2) as u32;
            tcp.push(Segment::allow(
                lo as u16,
                hi as u16,
                vec![i as u32 % 7 + 1, 99],
            ));
            port = hi + 2;
        }
        let udp = vec![Segment::allow(53, 53, vec![50])];
        let all = vec![Segment::allow(0, u16::MAX, vec![60])];
        let mut groups: Vec<(u8, &[Segment])> = vec![(PROTO_TCP, &tcp), (PROTO_UDP, &udp)];
        if any {
            groups.insert(0, (PROTO_ANY, &all));
        }
        let ranges = peer_ranges(&groups);
        let entries = policy_tree(1, 4, 9, &ranges);
        let leaves = entries
            .iter()
            .filter(|(_, v)| v.kind == POLICY_NODE_LEAF)
            .count();
        assert_eq!(leaves, ranges.len().div_ceil(POLICY_FANOUT), "{n}");
        let policy = Placed::new(place_policy(&entries));
        let want = |proto: u8, port: u16| {
            let own = |segs: &[Segment]| {
                segs.iter()
                    .find(|s| s.lo <= port && port <= s.hi)
                    .map(|s| s.rules[0])
            };
            match proto {
                PROTO_TCP => own(&tcp),
                PROTO_UDP => own(&udp),
                _ => None,
            }
            .or(any.then_some(60))
        };
        for proto in [PROTO_ANY, 1, PROTO_TCP, PROTO_UDP, 132, 255] {
            for port in (0..=u16::MAX).step_by(if n > 256 { 7 } else { 1 }) {
                let point = policy_point(proto, port);
                let got = descend(&policy, 1, 4, 9, point);
                assert_eq!(
                    got,
                    want(proto, port),
                    "{n} ranges: proto {proto} port {port}"
                );
                let root = &policy.roots[&PolicyNodeKey::new(1, 4, 9, 0)];
                // The kernel's binary search agrees with the linear scan.
                let linear = root.ranges[..root.count as usize]
                    .iter()
                    .find(|r| r.first <= point && point <= r.last);
                assert_eq!(root.search(point), linear);
            }
        }
    }
}
