//! The learner with cluster-admin tiers in the model: what an Admin Deny
//! or Accept decides is not proposed (and is reported), Pass hands over to
//! NetworkPolicy, the Baseline tier steps aside for the pods a proposal
//! selects, and the proof, compiled with the tiers, stays complete.

use bulkhead_flows::record::FlowRecord;
use bulkhead_learn::edge::{End, History, WorkloadId};
use bulkhead_learn::propose::PeerSel;
use bulkhead_learn::*;
use bulkhead_policy::model::{
    Action, AdminKind, AdminPeer, AdminPolicy, AdminRule, Direction, Mode, Model,
    NAMESPACE_NAME_LABEL, Origin, PortMatch, PortSpec, Protocol, Requirement, Selector, Subject,
    Tier,
};
use bulkhead_testkit::learn::*;
use bulkhead_testkit::{Rng, random_modes, random_tiered_model};

fn history(records: &[FlowRecord]) -> History {
    let mut h = History::default();
    for r in records {
        h.add_record(r);
    }
    h
}

fn labels(k: &str, v: &str) -> Selector {
    Selector::new(vec![Requirement::In(k.into(), vec![v.into()])])
}

fn namespace(name: &str) -> Selector {
    labels(NAMESPACE_NAME_LABEL, name)
}

fn tcp(port: u16) -> Option<Vec<PortSpec>> {
    Some(vec![PortSpec {
        protocol: Protocol::Tcp,
        port: PortMatch::Range(port, port),
    }])
}

fn rule(
    name: Option<&str>,
    action: Action,
    peer: AdminPeer,
    ports: Option<Vec<PortSpec>>,
) -> AdminRule {
    AdminRule {
        name: name.map(Into::into),
        action,
        peers: vec![peer],
        ports,
    }
}

/// A cluster-admin policy of `tier` on `subject` with these ingress rules.
fn admin(
    kind: AdminKind,
    name: &str,
    tier: Tier,
    priority: u32,
    subject: Subject,
    ingress: Vec<AdminRule>,
) -> AdminPolicy {
    AdminPolicy {
        kind,
        name: name.into(),
        tier,
        priority,
        subject,
        ingress,
        egress: vec![],
        origin: Origin::default(),
        mode: None,
    }
}

/// shop's app=db pods.
fn db() -> Subject {
    Subject::selecting(namespace("shop"), labels("app", "db"))
}

/// shop's app=api pods as a peer.
fn api_peer() -> AdminPeer {
    AdminPeer::Pods {
        namespaces: namespace("shop"),
        pods: labels("app", "api"),
    }
}

fn with(mut m: Model, policies: Vec<AdminPolicy>) -> Model {
    m.admin_policies.extend(policies);
    m.normalize();
    m
}

fn policy<'a>(p: &'a Proposal, key: &str) -> &'a propose::ProposedPolicy {
    p.policies
        .iter()
        .find(|p| p.key() == key)
        .unwrap_or_else(|| panic!("{key} proposed"))
}

/// Whether `p` allows `peer` (by its namespace and app label) in `d`.
fn allows(p: &propose::ProposedPolicy, d: Direction, app: &str) -> bool {
    p.rules(d).iter().flat_map(|r| &r.peers).any(|x| {
        matches!(&x.peer, PeerSel::Pods { labels, .. }
            if labels.get("app").or(labels.get("k8s-app")).map(String::as_str) == Some(app))
    })
}

const API_DB: &str = "shop/Deployment/api → shop/StatefulSet/db TCP/5432";

/// An Admin Deny of api → db: no policy allows it, it is reported with
/// the guardrail's kind, name and rule, the proof counts it as denied by
/// the tier and stays 100% of the rest.
#[test]
fn admin_deny_is_not_proposed_and_is_reported() {
    let model = with(
        demo_model(),
        vec![admin(
            AdminKind::ClusterNetworkPolicy,
            "db-guard",
            Tier::Admin,
            10,
            db(),
            vec![rule(Some("no-api"), Action::Deny, api_peer(), tcp(5432))],
        )],
    );
    let h = history(&demo_records());
    let p = propose(&h, &model);
    assert!(!allows(
        policy(&p, "shop/bulkhead-api"),
        Direction::Egress,
        "db"
    ));
    assert!(!allows(
        policy(&p, "shop/bulkhead-db"),
        Direction::Ingress,
        "api"
    ));
    assert_eq!(p.tier_denied.len(), 1, "{:?}", p.tier_denied);
    let f = &p.tier_denied[0];
    assert_eq!(f.edge, API_DB);
    assert_eq!(
        (f.side, f.tier, f.action, f.policy.as_str(), f.rule.as_str()),
        (
            Direction::Ingress,
            Tier::Admin,
            Action::Deny,
            "ClusterNetworkPolicy/db-guard",
            "no-api"
        )
    );
    assert!(p.admin_accepted.is_empty());
    let proof = prove(&h, &model, &p);
    assert!(proof.complete(), "{:?}", proof.denied);
    assert_eq!(proof.guardrail_denied, 1);
    assert_eq!(proof.proposable, proof.replayed - 1);
    assert_eq!(proof.allowed, proof.proposable);
    assert_eq!(proof.coverage_percent, 100.0);
    let text = coverage::text(&proof, &p);
    assert!(
        text.contains(&format!(
            "{API_DB}: denied by the Admin tier: ClusterNetworkPolicy/db-guard rule no-api"
        )),
        "{text}"
    );
    assert!(text.contains("before the guardrail was in force"), "{text}");
    let json = serde_json::to_value(&proof).unwrap();
    assert_eq!(
        json["tier_denied"][0]["policy"],
        "ClusterNetworkPolicy/db-guard"
    );
    assert_eq!(json["tier_denied"][0]["rule"], "no-api");
    let yaml = render::proposal_yaml(&p);
    assert!(
        yaml.contains("# cluster-admin tier: shop/Deployment/api"),
        "{yaml}"
    );
    // The same without the manifests' tiers: the edge is proposed, so the
    // test above is about the guardrail.
    let plain = propose(&h, &demo_model());
    assert!(allows(
        policy(&plain, "shop/bulkhead-db"),
        Direction::Ingress,
        "api"
    ));
}

/// A staged (audit-mode) guardrail is planned for as enforced, and the
/// report says it is staged; an unnamed rule is named by its index.
#[test]
fn staged_admin_deny_is_planned_for_and_says_so() {
    let mut guard = admin(
        AdminKind::AdminNetworkPolicy,
        "db-guard",
        Tier::Admin,
        10,
        db(),
        vec![
            rule(None, Action::Pass, api_peer(), tcp(9)),
            rule(None, Action::Deny, api_peer(), None),
        ],
    );
    guard.mode = Some(Mode::Audit);
    let model = with(demo_model(), vec![guard]);
    let h = history(&demo_records());
    let p = propose(&h, &model);
    assert!(!allows(
        policy(&p, "shop/bulkhead-db"),
        Direction::Ingress,
        "api"
    ));
    let f = &p.tier_denied[0];
    assert_eq!((f.rule.as_str(), f.mode), ("1", Mode::Audit));
    assert!(f.to_string().contains("rule 1"), "{f}");
    assert!(f.to_string().contains("audit mode"), "{f}");
    let proof = prove(&h, &model, &p);
    assert!(proof.complete(), "{:?}", proof.denied);
    assert_eq!((proof.guardrail_denied, proof.coverage_percent), (1, 100.0));
}

/// DNS accepted by the Admin tier at coredns's ingress: no ingress rule
/// for coredns by default (reported), one with the option; the clients'
/// egress to DNS is still proposed (that side is NetworkPolicy's). Both
/// proofs are complete, the default one by the Admin tier.
#[test]
fn admin_accept_is_reported_and_proposed_only_when_asked() {
    let model = with(
        demo_model(),
        vec![admin(
            AdminKind::ClusterNetworkPolicy,
            "dns",
            Tier::Admin,
            5,
            Subject::selecting(namespace("kube-system"), labels("k8s-app", "kube-dns")),
            vec![rule(
                Some("everyone"),
                Action::Accept,
                AdminPeer::Pods {
                    namespaces: Selector::everything(),
                    pods: Selector::everything(),
                },
                None,
            )],
        )],
    );
    let h = history(&demo_records());
    let p = propose(&h, &model);
    let dns = policy(&p, "kube-system/bulkhead-coredns");
    assert!(dns.ingress.is_empty(), "{:?}", dns.ingress);
    assert!(allows(
        policy(&p, "shop/bulkhead-api"),
        Direction::Egress,
        "kube-dns"
    ));
    assert_eq!(p.admin_accepted.len(), 3, "{:?}", p.admin_accepted);
    assert!(p.admin_accepted.iter().all(|f| f.side == Direction::Ingress
        && f.action == Action::Accept
        && f.policy == "ClusterNetworkPolicy/dns"
        && f.rule == "everyone"));
    assert!(p.tier_denied.is_empty());
    let yaml = render::policy_yaml(dns);
    assert!(
        yaml.contains(
            "# no ingress proposed: what the cluster-admin tiers do not decide is denied"
        ),
        "{yaml}"
    );
    // A DNS server: no egress section (see tests/infra.rs).
    assert!(!yaml.contains("- Egress"), "{yaml}");
    let proof = prove(&h, &model, &p);
    assert!(proof.complete(), "{:?}", proof.denied);
    assert_eq!(proof.coverage_percent, 100.0);
    assert_eq!(proof.allowed_by_admin, 3);
    let text = coverage::text(&proof, &p);
    assert!(
        text.contains("accepted by the Admin tier: ClusterNetworkPolicy/dns rule everyone"),
        "{text}"
    );
    assert!(
        text.contains("--include-admin-accepted proposes them"),
        "{text}"
    );

    let with_flag = propose_with(
        &h,
        &model,
        Options {
            include_admin_accepted: true,
            ..Options::default()
        },
    );
    let dns = policy(&with_flag, "kube-system/bulkhead-coredns");
    // All pods, the three clients seen among them.
    assert_eq!(dns.ingress.len(), 1);
    assert_eq!(dns.ingress[0].peers.len(), 1);
    assert_eq!(dns.ingress[0].peers[0].observed.len(), 3);
    assert_eq!(with_flag.admin_accepted, p.admin_accepted);
    let proof = prove(&h, &model, &with_flag);
    assert!(proof.complete(), "{:?}", proof.denied);
    assert!(coverage::text(&proof, &with_flag).contains("proposed anyway"));
}

/// An Admin Pass for api → db ahead of an Admin Deny of everything to db:
/// NetworkPolicy decides, so the edge is proposed as usual and the proof
/// finds it allowed by the proposed rule, not by the tier.
#[test]
fn admin_pass_is_proposed_normally() {
    let model = with(
        demo_model(),
        vec![
            admin(
                AdminKind::ClusterNetworkPolicy,
                "db-pass",
                Tier::Admin,
                1,
                db(),
                vec![rule(Some("api"), Action::Pass, api_peer(), tcp(5432))],
            ),
            admin(
                AdminKind::ClusterNetworkPolicy,
                "db-deny",
                Tier::Admin,
                2,
                db(),
                vec![rule(
                    Some("all"),
                    Action::Deny,
                    AdminPeer::Pods {
                        namespaces: Selector::everything(),
                        pods: Selector::everything(),
                    },
                    None,
                )],
            ),
        ],
    );
    let h = history(&demo_records());
    let p = propose(&h, &model);
    assert!(allows(
        policy(&p, "shop/bulkhead-db"),
        Direction::Ingress,
        "api"
    ));
    assert!(p.tier_denied.is_empty(), "{:?}", p.tier_denied);
    let proof = prove(&h, &model, &p);
    assert!(proof.complete(), "{:?}", proof.denied);
    assert_eq!((proof.guardrail_denied, proof.allowed_by_admin), (0, 0));
    assert_eq!(proof.coverage_percent, 100.0);
    // Without the Pass the Deny decides.
    let denied = with(
        demo_model(),
        model
            .admin_policies
            .iter()
            .filter(|a| a.name == "db-deny")
            .cloned()
            .collect(),
    );
    assert_eq!(propose(&h, &denied).tier_denied.len(), 1);
}

fn baseline_deny_all() -> AdminPolicy {
    admin(
        AdminKind::BaselineAdminNetworkPolicy,
        "default",
        Tier::Baseline,
        0,
        Subject::selecting(Selector::everything(), Selector::everything()),
        vec![rule(
            None,
            Action::Deny,
            AdminPeer::Pods {
                namespaces: Selector::everything(),
                pods: Selector::everything(),
            },
            None,
        )],
    )
}

/// A Baseline Deny of all ingress: coredns (no NetworkPolicy selects it in
/// the manifests) is denied DNS today; its proposed policy selects it, so
/// NetworkPolicy decides and its allow is what lets DNS through. The proof
/// says so (the Baseline Deny lifted, the edges allowed by the proposal).
#[test]
fn baseline_deny_is_lifted_by_the_proposal_that_selects_the_pod() {
    let model = with(demo_model(), vec![baseline_deny_all()]);
    let h = history(&demo_records());
    let p = propose(&h, &model);
    assert!(p.tier_denied.is_empty(), "{:?}", p.tier_denied);
    // All pods (a DNS server), the three clients seen among them.
    let peers = &policy(&p, "kube-system/bulkhead-coredns").ingress[0].peers;
    assert_eq!((peers.len(), peers[0].observed.len()), (1, 3));
    let proof = prove(&h, &model, &p);
    assert!(proof.complete(), "{:?}", proof.denied);
    assert_eq!(proof.coverage_percent, 100.0);
    assert_eq!(
        proof.baseline_lifted.len(),
        3,
        "{:?}",
        proof.baseline_lifted
    );
    assert!(
        proof
            .baseline_lifted
            .iter()
            .all(|f| f.policy == "BaselineAdminNetworkPolicy/default"
                && f.side == Direction::Ingress
                && f.edge.ends_with("kube-system/Deployment/coredns UDP/53"))
    );
    assert!(coverage::text(&proof, &p).contains("The Baseline tier denies these today"));
    // The proof is about the proposal: without coredns's policy the
    // Baseline Deny stands and the proof finds the edges denied by it.
    let mut partial = p.clone();
    partial
        .policies
        .retain(|q| q.key() != "kube-system/bulkhead-coredns");
    let proof = prove(&h, &model, &partial);
    assert_eq!(proof.guardrail_denied, 3);
}

/// coredns seen only as a remote peer gets no policy: the Baseline Deny
/// keeps deciding its ingress, so the clients' DNS egress is left out and
/// reported as denied by the Baseline tier.
#[test]
fn baseline_deny_of_an_unselected_pod_is_reported() {
    let model = with(demo_model(), vec![baseline_deny_all()]);
    let mut h = history(&demo_records());
    let coredns = WorkloadId {
        namespace: "kube-system".into(),
        workload: "Deployment/coredns".into(),
    };
    h.workloads.get_mut(&coredns).unwrap().local = false;
    let p = propose(&h, &model);
    assert!(p.policies.iter().all(|q| q.subject != coredns));
    assert!(!allows(
        policy(&p, "shop/bulkhead-api"),
        Direction::Egress,
        "kube-dns"
    ));
    assert_eq!(p.tier_denied.len(), 3, "{:?}", p.tier_denied);
    assert!(p.tier_denied.iter().all(|f| f.tier == Tier::Baseline));
    assert!(
        p.tier_denied[0]
            .to_string()
            .contains("denied by the Baseline tier: BaselineAdminNetworkPolicy/default rule 0")
    );
    let proof = prove(&h, &model, &p);
    assert!(proof.complete(), "{:?}", proof.denied);
    assert_eq!((proof.guardrail_denied, proof.coverage_percent), (3, 100.0));
}

/// Random tiered models (modes too) and histories: the proof, compiled
/// with the tiers, is complete; what the proposal left out as denied by a
/// tier is what the proof finds denied by one; no proposed peer was
/// observed on a denied edge.
#[test]
fn random_tiered_histories_are_fully_covered() {
    let mut tiered = 0;
    for seed in 0..200 {
        let mut rng = Rng(seed);
        let mut model = random_tiered_model(&mut rng);
        model.policies.clear();
        random_modes(&mut rng, &mut model);
        for a in &mut model.admin_policies {
            a.mode = *rng.pick(&[None, Some(Mode::Audit), Some(Mode::Enforce)]);
        }
        let peers = model_peers(&model);
        let mut records = Vec::new();
        for i in 0..rng.below(30) {
            let s = rng.pick(&peers).clone();
            let d = rng.pick(&peers).clone();
            if matches!((&s, &d), (Peer::Ext(_), Peer::Ext(_))) {
                continue;
            }
            let proto = *rng.pick(&[6u8, 17, 132, 1]);
            let port = if proto == 1 {
                0
            } else {
                50 + rng.below(40) as u16
            };
            records.extend(conn(T0 + i as u64 * 1000, &s, &d, proto, port));
        }
        let h = history(&records);
        let include_admin_accepted = rng.chance(50);
        let p = propose_with(
            &h,
            &model,
            Options {
                include_admin_accepted,
                ..Options::default()
            },
        );
        let proof = prove(&h, &model, &p);
        tiered += usize::from(!p.tier_denied.is_empty() || !p.admin_accepted.is_empty());
        assert!(proof.complete(), "seed {seed}: {:?}", proof.denied);
        assert_eq!(proof.coverage_percent, 100.0, "seed {seed}");
        // The proof replays what NetworkPolicy can express (not ICMP).
        assert_eq!(
            proof.guardrail_denied,
            p.tier_denied
                .iter()
                .filter(|f| !f.edge.ends_with(" ICMP"))
                .count() as u64,
            "seed {seed}: {:?}",
            p.tier_denied
        );
        let denied: Vec<&str> = p.tier_denied.iter().map(|f| f.edge.as_str()).collect();
        for q in &p.policies {
            for d in Direction::ALL {
                for r in q.rules(d) {
                    for peer in &r.peers {
                        for o in &peer.observed {
                            let subject = End::Workload(q.subject.clone()).to_string();
                            let edge = match d {
                                Direction::Egress => format!("{subject} → {}", o.peer),
                                Direction::Ingress => format!("{} → {subject}", o.peer),
                            };
                            let edge = format!("{edge} {}/{}", o.protocol, o.port);
                            assert!(!denied.contains(&edge.as_str()), "seed {seed}: {edge}");
                        }
                    }
                }
            }
        }
    }
    assert!(tiered > 20, "only {tiered} seeds met a tier");
}

/// ICMP, which NetworkPolicy cannot express: accepted by the Admin tier
/// at its only isolated side, it is not "denied once the policies apply"
/// but reported as accepted; denied by it, reported as denied.
#[test]
fn admin_tier_decides_unexpressible_edges_too() {
    let egress_to_ext = |action| AdminPolicy {
        egress: vec![rule(
            Some("ext"),
            action,
            AdminPeer::Networks(vec!["2001:db8::/32".parse().unwrap()]),
            None,
        )],
        ..admin(
            AdminKind::ClusterNetworkPolicy,
            "ext",
            Tier::Admin,
            1,
            Subject::selecting(namespace("shop"), labels("app", "frontend")),
            vec![],
        )
    };
    let h = history(&demo_records());
    let icmp = "shop/Deployment/frontend → 2001:db8::7 ICMP";
    let plain = propose(&h, &demo_model());
    assert_eq!(plain.unexpressible.len(), 1);
    assert!(
        plain.unexpressible[0].edge.starts_with(icmp),
        "{:?}",
        plain.unexpressible
    );

    let accepted = propose(&h, &with(demo_model(), vec![egress_to_ext(Action::Accept)]));
    assert!(
        accepted.unexpressible.is_empty(),
        "{:?}",
        accepted.unexpressible
    );
    assert_eq!(
        accepted.admin_accepted.len(),
        1,
        "{:?}",
        accepted.admin_accepted
    );
    assert!(accepted.admin_accepted[0].edge.starts_with(icmp));
    assert_eq!(accepted.admin_accepted[0].side, Direction::Egress);

    let model = with(demo_model(), vec![egress_to_ext(Action::Deny)]);
    let denied = propose(&h, &model);
    assert!(
        denied.unexpressible.is_empty(),
        "{:?}",
        denied.unexpressible
    );
    assert!(denied.tier_denied.iter().any(|f| f.edge.starts_with(icmp)));
    // api → 2001:db8::7 TCP/443 is not frontend's: still proposed.
    assert!(
        policy(&denied, "shop/bulkhead-api")
            .egress
            .iter()
            .flat_map(|r| &r.peers)
            .any(|p| matches!(p.peer, PeerSel::Addr(a) if a.to_string() == "2001:db8::7"))
    );
    let proof = prove(&h, &model, &denied);
    assert!(proof.complete(), "{:?}", proof.denied);
}
