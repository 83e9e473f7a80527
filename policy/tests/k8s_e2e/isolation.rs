//! Isolation: default deny, allow all, `policyTypes` defaulting, stacking,
//! which pods a policy isolates, and both ends of a connection.

use crate::harness::*;

/// Upstream's baseline (every test first checks it): no policy, every pod
/// reaches every pod on every served port.
#[test]
fn no_policy_allows_everything() {
    let c = load("");
    c.check_dual(&ALL_PROBES, &Reachability::new(true));
}

/// "should support a 'default-deny-ingress' policy" (and its UDP and SCTP
/// variants).
#[test]
fn default_deny_ingress() {
    let c = load(&np(
        "x",
        "deny-ingress",
        "
podSelector: {}
policyTypes: [Ingress]
",
    ));
    let mut r = Reachability::new(true);
    r.expect_all_ingress("x/*", false);
    c.check_dual(&ALL_PROBES, &r);
}

/// Default deny ingress written without `policyTypes` (defaulted to
/// `[Ingress]`).
#[test]
fn default_deny_ingress_without_policy_types() {
    let c = load(&np("x", "deny-ingress", "podSelector: {}"));
    let mut r = Reachability::new(true);
    r.expect_all_ingress("x/*", false);
    c.check(&ALL_PROBES, &r);
}

/// "should deny egress from all pods in a namespace".
#[test]
fn default_deny_egress() {
    let c = load(&np(
        "x",
        "deny-egress",
        "
podSelector: {}
policyTypes: [Egress]
",
    ));
    let mut r = Reachability::new(true);
    r.expect_all_egress("x/*", false);
    c.check_dual(&ALL_PROBES, &r);
}

/// "should deny egress from pods based on PodSelector".
#[test]
fn deny_egress_of_selected_pod() {
    let c = load(&np(
        "x",
        "deny-egress-pod-a",
        "
podSelector: {matchLabels: {pod: a}}
policyTypes: [Egress]
",
    ));
    let mut r = Reachability::new(true);
    r.expect_all_egress("x/a", false);
    c.check(&ALL_PROBES, &r);
}

/// "should support a 'default-deny-all' policy".
#[test]
fn default_deny_all() {
    let c = load(&np(
        "x",
        "deny-all",
        "
podSelector: {}
policyTypes: [Ingress, Egress]
",
    ));
    let mut r = Reachability::new(true);
    r.expect_all_ingress("x/*", false);
    r.expect_all_egress("x/*", false);
    c.check_dual(&ALL_PROBES, &r);
}

/// "should support allow-all policy": `ingress: [{}]`.
#[test]
fn allow_all_ingress() {
    let c = load(&np(
        "x",
        "allow-all",
        "
podSelector: {}
ingress:
- {}
",
    ));
    c.check(&ALL_PROBES, &Reachability::new(true));
}

/// "should enforce policy to allow ingress traffic for a target": a default
/// deny plus an allow-all ingress policy for x/a.
#[test]
fn allow_all_ingress_for_a_target() {
    let c = load(
        &[
            np("x", "deny-ingress", "podSelector: {}"),
            np(
                "x",
                "allow-all-to-a",
                "
podSelector: {matchLabels: {pod: a}}
ingress:
- {}
",
            ),
        ]
        .concat(),
    );
    let mut r = Reachability::new(true);
    r.expect_all_ingress("x/b", false);
    r.expect_all_ingress("x/c", false);
    c.check(&ALL_PROBES, &r);
}

/// Allow-all egress (`egress: [{}]`) for x/a next to a namespace default deny
/// egress.
#[test]
fn allow_all_egress_for_a_target() {
    let c = load(
        &[
            np(
                "x",
                "deny-egress",
                "
podSelector: {}
policyTypes: [Egress]
",
            ),
            np(
                "x",
                "allow-all-from-a",
                "
podSelector: {matchLabels: {pod: a}}
policyTypes: [Egress]
egress:
- {}
",
            ),
        ]
        .concat(),
    );
    let mut r = Reachability::new(true);
    r.expect_all_egress("x/b", false);
    r.expect_all_egress("x/c", false);
    c.check(&ALL_PROBES, &r);
}

/// "should enforce multiple ingress policies with ingress allow-all policy
/// taking precedence": first only port 80 into x/a, then an allow-all on top.
#[test]
fn ingress_allow_all_takes_precedence() {
    let port_80 = np(
        "x",
        "allow-ingress-port-80",
        "
podSelector: {matchLabels: {pod: a}}
ingress:
- ports:
  - port: 80
",
    );
    let c = load(&port_80);
    c.check(&[TCP_80], &Reachability::new(true));
    let mut r81 = Reachability::new(true);
    r81.expect_all_ingress("x/a", false);
    c.check(&[TCP_81, UDP_80], &r81);

    let allow_all = np(
        "x",
        "allow-all",
        "
podSelector: {matchLabels: {pod: a}}
ingress:
- {}
",
    );
    let c = load(&[port_80, allow_all].concat());
    c.check(&ALL_PROBES, &Reachability::new(true));
}

/// "should enforce multiple egress policies with egress allow-all policy
/// taking precedence".
#[test]
fn egress_allow_all_takes_precedence() {
    let port_80 = np(
        "x",
        "allow-egress-port-80",
        "
podSelector: {matchLabels: {pod: a}}
policyTypes: [Egress]
egress:
- ports:
  - port: 80
",
    );
    let c = load(&port_80);
    c.check(&[TCP_80], &Reachability::new(true));
    let mut r81 = Reachability::new(true);
    r81.expect_all_egress("x/a", false);
    c.check(&[TCP_81, UDP_80], &r81);

    let allow_all = np(
        "x",
        "allow-all-egress",
        "
podSelector: {matchLabels: {pod: a}}
policyTypes: [Egress]
egress:
- {}
",
    );
    let c = load(&[port_80, allow_all].concat());
    c.check(&ALL_PROBES, &Reachability::new(true));
}

/// "should stop enforcing policies after they are deleted": deny all, then
/// nothing.
#[test]
fn deleted_policy_stops_enforcing() {
    let deny = np(
        "x",
        "deny-all",
        "
podSelector: {}
policyTypes: [Ingress, Egress]
",
    );
    let c = load(&deny);
    let mut r = Reachability::new(true);
    r.expect_all_ingress("x/*", false);
    r.expect_all_egress("x/*", false);
    c.check(&[TCP_80], &r);
    let c = load("");
    c.check(&[TCP_80], &Reachability::new(true));
}

/// No `policyTypes`, ingress and egress rules: both directions isolated
/// ("should work with Ingress, Egress specified together").
#[test]
fn policy_types_default_to_both_with_egress_rules() {
    let c = load(&np(
        "x",
        "allow-client-a-via-ingress-egress-rule",
        "
podSelector: {matchLabels: {pod: a}}
ingress:
- from:
  - podSelector: {matchLabels: {pod: b}}
egress:
- to:
  - podSelector: {matchLabels: {pod: b}}
  ports:
  - port: 80
",
    ));
    let mut r80 = Reachability::new(true);
    r80.expect_all_ingress("x/a", false);
    r80.expect("x/b", "x/a", true);
    r80.expect_all_egress("x/a", false);
    r80.expect("x/a", "x/b", true);
    c.check_dual(&[TCP_80], &r80);
    let mut r81 = r80.clone();
    r81.expect("x/a", "x/b", false);
    c.check_dual(&[TCP_81], &r81);
}

/// No `policyTypes` and only ingress rules: egress is not isolated.
#[test]
fn policy_types_default_to_ingress_only_without_egress_rules() {
    let c = load(&np(
        "x",
        "ingress-only",
        "
podSelector: {matchLabels: {pod: a}}
ingress:
- from:
  - podSelector: {matchLabels: {pod: b}}
egress: []
",
    ));
    let mut r = Reachability::new(true);
    r.expect_all_ingress("x/a", false);
    r.expect("x/b", "x/a", true);
    c.check(&ALL_PROBES, &r);
}

/// `policyTypes: [Egress]` with an ingress section: the ingress rules are
/// ignored and ingress stays open.
#[test]
fn policy_types_egress_only_leaves_ingress_unaffected() {
    let c = load(&np(
        "x",
        "egress-only",
        "
podSelector: {matchLabels: {pod: a}}
policyTypes: [Egress]
ingress:
- from:
  - podSelector: {matchLabels: {pod: b}}
egress:
- to:
  - namespaceSelector: {matchLabels: {ns: y}}
",
    ));
    let mut r = Reachability::new(true);
    r.expect_all_egress("x/a", false);
    r.expect("x/a", "y/*", true);
    c.check(&ALL_PROBES, &r);
}

/// `policyTypes: [Ingress]` with egress rules: the egress rules are ignored.
#[test]
fn policy_types_ingress_only_leaves_egress_unaffected() {
    let c = load(&np(
        "x",
        "ingress-only",
        "
podSelector: {matchLabels: {pod: a}}
policyTypes: [Ingress]
ingress:
- from:
  - podSelector: {matchLabels: {pod: b}}
egress:
- to:
  - podSelector: {matchLabels: {pod: b}}
",
    ));
    let mut r = Reachability::new(true);
    r.expect_all_ingress("x/a", false);
    r.expect("x/b", "x/a", true);
    c.check(&ALL_PROBES, &r);
}

/// Isolation applies only to selected pods: a policy in x selecting `pod=a`
/// isolates x/a, not x/b nor y/a (a pod selector is relative to the policy's
/// namespace).
#[test]
fn isolation_applies_only_to_selected_pods() {
    let c = load(&np(
        "x",
        "deny-a",
        "
podSelector: {matchLabels: {pod: a}}
policyTypes: [Ingress, Egress]
",
    ));
    let mut r = Reachability::new(true);
    r.expect_all_ingress("x/a", false);
    r.expect_all_egress("x/a", false);
    c.check_dual(&ALL_PROBES, &r);
}

/// "should enforce multiple, stacked policies with overlapping podSelectors":
/// two policies selecting x/a add up (port 81 from y, then also port 80 from
/// y).
#[test]
fn stacked_policies_add_up() {
    let p81 = np(
        "x",
        "allow-ingress-on-port-81-ns-y",
        "
podSelector: {matchLabels: {pod: a}}
ingress:
- from:
  - namespaceSelector: {matchLabels: {ns: y}}
  ports:
  - port: 81
",
    );
    let p80 = np(
        "x",
        "allow-ingress-on-port-80-ns-y",
        "
podSelector: {matchLabels: {pod: a}}
ingress:
- from:
  - namespaceSelector: {matchLabels: {ns: y}}
  ports:
  - port: 80
",
    );
    let c = load(&p81);
    let mut deny = Reachability::new(true);
    deny.expect_all_ingress("x/a", false);
    c.check(&[TCP_80], &deny);
    let mut from_y = deny.clone();
    from_y.expect("y/*", "x/a", true);
    c.check(&[TCP_81], &from_y);

    let c = load(&[p81, p80].concat());
    c.check(&[TCP_80, TCP_81], &from_y);
    c.check(&[UDP_80, UDP_81, SCTP_80], &deny);
}

/// Stacked policies whose selections only overlap: each pod gets the union of
/// the policies that select it, and only those.
#[test]
fn stacked_policies_with_partly_overlapping_selectors() {
    let c = load(
        &[
            np(
                "x",
                "a-and-b-from-y",
                "
podSelector:
  matchExpressions:
  - {key: pod, operator: In, values: [a, b]}
ingress:
- from:
  - namespaceSelector: {matchLabels: {ns: y}}
",
            ),
            np(
                "x",
                "b-and-c-from-z",
                "
podSelector:
  matchExpressions:
  - {key: pod, operator: In, values: [b, c]}
ingress:
- from:
  - namespaceSelector: {matchLabels: {ns: z}}
",
            ),
        ]
        .concat(),
    );
    let mut r = Reachability::new(true);
    r.expect_all_ingress("x/*", false);
    r.expect("y/*", "x/a", true);
    r.expect("y/*", "x/b", true);
    r.expect("z/*", "x/b", true);
    r.expect("z/*", "x/c", true);
    c.check_dual(&ALL_PROBES, &r);
}

/// "should support denying of egress traffic on the client side (even if the
/// server explicitly allows this traffic)": the source's egress AND the
/// destination's ingress must both allow.
#[test]
fn egress_of_source_and_ingress_of_destination_both_required() {
    let c = load(
        &[
            np(
                "x",
                "allow-to-ns-y-pod-a",
                "
podSelector: {matchLabels: {pod: a}}
policyTypes: [Egress]
egress:
- to:
  - namespaceSelector: {matchLabels: {ns: y}}
    podSelector: {matchLabels: {pod: a}}
",
            ),
            np(
                "y",
                "allow-from-xa-on-ya-match-selector",
                "
podSelector: {matchLabels: {pod: a}}
policyTypes: [Ingress]
ingress:
- from:
  - namespaceSelector: {matchLabels: {ns: x}}
    podSelector: {matchLabels: {pod: a}}
",
            ),
            np(
                "y",
                "allow-from-xa-on-yb-match-selector",
                "
podSelector: {matchLabels: {pod: b}}
policyTypes: [Ingress]
ingress:
- from:
  - namespaceSelector: {matchLabels: {ns: x}}
    podSelector: {matchLabels: {pod: a}}
",
            ),
        ]
        .concat(),
    );
    let mut r = Reachability::new(true);
    // x/a can only egress to y/a; y/a only accepts x/a; y/b accepts only x/a,
    // which may not send to it.
    r.expect_all_egress("x/a", false);
    r.expect_all_ingress("y/a", false);
    r.expect("x/a", "y/a", true);
    r.expect_all_ingress("y/b", false);
    c.check_dual(&ALL_PROBES, &r);
}

/// "should enforce egress policy allowing traffic to a server in a different
/// namespace based on PodSelector and NamespaceSelector".
#[test]
fn egress_to_pod_in_other_namespace() {
    let c = load(&np(
        "x",
        "allow-to-ns-y-pod-a",
        "
podSelector: {matchLabels: {pod: a}}
policyTypes: [Egress]
egress:
- to:
  - namespaceSelector: {matchLabels: {ns: y}}
    podSelector: {matchLabels: {pod: a}}
",
    ));
    let mut r = Reachability::new(true);
    r.expect_all_egress("x/a", false);
    r.expect("x/a", "y/a", true);
    c.check(&ALL_PROBES, &r);
}

/// "should enforce policies to check ingress and egress policies can be
/// controlled independently based on PodSelector": x/a may not send, x/b may
/// not receive; everything else flows.
#[test]
fn ingress_and_egress_controlled_independently() {
    let c = load(
        &[
            np(
                "x",
                "deny-egress-a",
                "
podSelector: {matchLabels: {pod: a}}
policyTypes: [Egress]
",
            ),
            np(
                "x",
                "deny-ingress-b",
                "
podSelector: {matchLabels: {pod: b}}
policyTypes: [Ingress]
",
            ),
        ]
        .concat(),
    );
    let mut r = Reachability::new(true);
    r.expect_all_egress("x/a", false);
    r.expect_all_ingress("x/b", false);
    c.check(&ALL_PROBES, &r);
}
