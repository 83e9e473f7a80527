//! Peers by pod and namespace selectors: matchLabels, matchExpressions, the
//! AND form (one peer) and the OR form (two peers).

use crate::harness::*;

/// "should enforce policy to allow traffic from pods within server namespace
/// based on PodSelector".
#[test]
fn pod_selector_peer() {
    let c = load(&np(
        "x",
        "x-a-allows-x-b",
        "
podSelector: {matchLabels: {pod: a}}
ingress:
- from:
  - podSelector: {matchLabels: {pod: b}}
",
    ));
    let mut r = Reachability::new(true);
    r.expect_all_ingress("x/a", false);
    r.expect("x/b", "x/a", true);
    c.check_dual(&ALL_PROBES, &r);
}

/// "should enforce policy to allow traffic only from a different namespace,
/// based on NamespaceSelector".
#[test]
fn namespace_selector_peer() {
    let c = load(&np(
        "x",
        "allow-ns-y",
        "
podSelector: {matchLabels: {pod: a}}
ingress:
- from:
  - namespaceSelector: {matchLabels: {ns: y}}
",
    ));
    let mut r = Reachability::new(true);
    r.expect("x/*", "x/a", false);
    r.expect("z/*", "x/a", false);
    c.check_dual(&ALL_PROBES, &r);
}

/// "should enforce policy to allow ingress traffic from pods in all
/// namespaces": `namespaceSelector: {}`.
#[test]
fn empty_namespace_selector_means_all_namespaces() {
    let c = load(&np(
        "x",
        "allow-from-all-namespaces",
        "
podSelector: {matchLabels: {pod: a}}
ingress:
- from:
  - namespaceSelector: {}
",
    ));
    c.check(&ALL_PROBES, &Reachability::new(true));
}

/// "should deny ingress from pods on other namespaces": `podSelector: {}` as
/// the peer means every pod of the policy's own namespace only.
#[test]
fn same_namespace_only() {
    let c = load(&np(
        "x",
        "allow-same-namespace",
        "
podSelector: {}
ingress:
- from:
  - podSelector: {}
",
    ));
    let mut r = Reachability::new(true);
    r.expect("y/*", "x/*", false);
    r.expect("z/*", "x/*", false);
    c.check_dual(&ALL_PROBES, &r);
}

/// A policy in namespace y with a namespaceSelector peer: its pod selector
/// and peers are relative to y, not to x.
#[test]
fn policy_in_y_with_namespace_selector_peer() {
    let c = load(&np(
        "y",
        "allow-from-z",
        "
podSelector: {}
ingress:
- from:
  - namespaceSelector: {matchLabels: {ns: z}}
  - podSelector: {matchLabels: {pod: c}}
",
    ));
    let mut r = Reachability::new(true);
    r.expect_all_ingress("y/*", false);
    r.expect("z/*", "y/*", true);
    r.expect("y/c", "y/*", true);
    c.check_dual(&ALL_PROBES, &r);
}

/// "should enforce policy based on PodSelector with MatchExpressions" (In).
#[test]
fn pod_selector_match_expressions_in() {
    let c = load(&np(
        "x",
        "allow-pod-b-via-match-expressions",
        "
podSelector: {matchLabels: {pod: a}}
ingress:
- from:
  - podSelector:
      matchExpressions:
      - {key: pod, operator: In, values: [b]}
",
    ));
    let mut r = Reachability::new(true);
    r.expect_all_ingress("x/a", false);
    r.expect("x/b", "x/a", true);
    c.check(&ALL_PROBES, &r);
}

/// matchExpressions NotIn in a pod selector (also matches pods without the
/// key: none here, every pod has `pod`).
#[test]
fn pod_selector_match_expressions_not_in() {
    let c = load(&np(
        "x",
        "allow-not-b",
        "
podSelector: {matchLabels: {pod: a}}
ingress:
- from:
  - podSelector:
      matchExpressions:
      - {key: pod, operator: NotIn, values: [b]}
",
    ));
    let mut r = Reachability::new(true);
    r.expect_all_ingress("x/a", false);
    r.expect("x/c", "x/a", true);
    c.check(&ALL_PROBES, &r);
}

/// matchExpressions Exists and DoesNotExist in pod selectors: x/b carries an
/// extra label `pod2=updated`.
#[test]
fn pod_selector_match_expressions_exists_and_does_not_exist() {
    let setup = Setup::default().pod_label("x/b", "pod2", "updated");
    let exists = np(
        "x",
        "allow-with-pod2",
        "
podSelector: {matchLabels: {pod: a}}
ingress:
- from:
  - podSelector:
      matchExpressions:
      - {key: pod2, operator: Exists}
",
    );
    let c = setup.load(&exists);
    let mut r = Reachability::new(true);
    r.expect_all_ingress("x/a", false);
    r.expect("x/b", "x/a", true);
    c.check(&ALL_PROBES, &r);

    let absent = np(
        "x",
        "allow-without-pod2",
        "
podSelector:
  matchExpressions:
  - {key: pod2, operator: DoesNotExist}
ingress:
- from:
  - podSelector:
      matchExpressions:
      - {key: pod2, operator: DoesNotExist}
",
    );
    let c = setup.load(&absent);
    // Selects x/a and x/c (not x/b); they accept x/a and x/c only.
    let mut r = Reachability::new(true);
    r.expect_all_ingress("x/a", false);
    r.expect_all_ingress("x/c", false);
    r.expect("x/c", "x/a", true);
    r.expect("x/a", "x/c", true);
    c.check(&ALL_PROBES, &r);
}

/// "should enforce policy based on NamespaceSelector with MatchExpressions"
/// (In).
#[test]
fn namespace_selector_match_expressions_in() {
    let c = load(&np(
        "x",
        "allow-ns-y-via-match-expressions",
        "
podSelector: {matchLabels: {pod: a}}
ingress:
- from:
  - namespaceSelector:
      matchExpressions:
      - {key: ns, operator: In, values: [y]}
",
    ));
    let mut r = Reachability::new(true);
    r.expect("x/*", "x/a", false);
    r.expect("z/*", "x/a", false);
    c.check(&ALL_PROBES, &r);
}

/// matchExpressions NotIn in a namespace selector.
#[test]
fn namespace_selector_match_expressions_not_in() {
    let c = load(&np(
        "x",
        "allow-not-ns-x",
        "
podSelector: {matchLabels: {pod: a}}
ingress:
- from:
  - namespaceSelector:
      matchExpressions:
      - {key: ns, operator: NotIn, values: [x, z]}
",
    ));
    let mut r = Reachability::new(true);
    r.expect_all_ingress("x/a", false);
    r.expect("y/*", "x/a", true);
    c.check(&ALL_PROBES, &r);
}

/// matchExpressions Exists and DoesNotExist in namespace selectors: y carries
/// an extra label `ns2=updated`.
#[test]
fn namespace_selector_match_expressions_exists_and_does_not_exist() {
    let setup = Setup::default().ns_label("y", "ns2", "updated");
    let c = setup.load(&np(
        "x",
        "allow-ns2",
        "
podSelector: {matchLabels: {pod: a}}
ingress:
- from:
  - namespaceSelector:
      matchExpressions:
      - {key: ns2, operator: Exists}
",
    ));
    let mut r = Reachability::new(true);
    r.expect_all_ingress("x/a", false);
    r.expect("y/*", "x/a", true);
    c.check(&ALL_PROBES, &r);

    let c = setup.load(&np(
        "x",
        "allow-not-ns2",
        "
podSelector: {matchLabels: {pod: a}}
ingress:
- from:
  - namespaceSelector:
      matchExpressions:
      - {key: ns2, operator: DoesNotExist}
",
    ));
    let mut r = Reachability::new(true);
    r.expect("y/*", "x/a", false);
    c.check(&ALL_PROBES, &r);
}

/// "should enforce policy to allow traffic based on NamespaceSelector with
/// MatchLabels using default ns label": `kubernetes.io/metadata.name`, which
/// the loader adds to every namespace.
#[test]
fn namespace_selector_default_name_label() {
    let c = load(&np(
        "x",
        "allow-client-a-via-ns-selector-for-immutable-ns-label",
        "
podSelector: {matchLabels: {pod: a}}
ingress:
- from:
  - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: y}}
",
    ));
    let mut r = Reachability::new(true);
    r.expect("x/*", "x/a", false);
    r.expect("z/*", "x/a", false);
    c.check(&ALL_PROBES, &r);
}

/// "should enforce policy based on NamespaceSelector with MatchExpressions
/// using default ns label" (egress, NotIn).
#[test]
fn namespace_selector_default_name_label_egress_not_in() {
    let c = load(&np(
        "x",
        "allow-client-a-via-ns-selector-for-immutable-ns-label",
        "
podSelector: {matchLabels: {pod: a}}
policyTypes: [Egress]
egress:
- to:
  - namespaceSelector:
      matchExpressions:
      - {key: kubernetes.io/metadata.name, operator: NotIn, values: [y]}
",
    ));
    let mut r = Reachability::new(true);
    r.expect("x/a", "y/*", false);
    c.check(&ALL_PROBES, &r);
}

/// "should enforce policy based on PodSelector or NamespaceSelector": two
/// peers are ORed.
#[test]
fn pod_selector_or_namespace_selector() {
    let c = load(&np(
        "x",
        "allow-ns-y-z-or-pod-b",
        "
podSelector: {matchLabels: {pod: a}}
ingress:
- from:
  - namespaceSelector:
      matchExpressions:
      - {key: ns, operator: NotIn, values: [x]}
  - podSelector: {matchLabels: {pod: b}}
",
    ));
    let mut r = Reachability::new(true);
    r.expect("x/c", "x/a", false);
    c.check_dual(&ALL_PROBES, &r);
}

/// "should enforce policy based on PodSelector and NamespaceSelector": both
/// selectors in one peer are ANDed.
#[test]
fn pod_selector_and_namespace_selector() {
    let c = load(&np(
        "x",
        "allow-ns-y-z-and-pod-b",
        "
podSelector: {matchLabels: {pod: a}}
ingress:
- from:
  - namespaceSelector:
      matchExpressions:
      - {key: ns, operator: NotIn, values: [x]}
    podSelector: {matchLabels: {pod: b}}
",
    ));
    let mut r = Reachability::new(true);
    r.expect_all_ingress("x/a", false);
    r.expect("y/b", "x/a", true);
    r.expect("z/b", "x/a", true);
    c.check_dual(&ALL_PROBES, &r);
}

/// "should enforce policy based on Multiple PodSelectors and
/// NamespaceSelectors".
#[test]
fn multiple_pod_selectors_and_namespace_selectors() {
    let c = load(&np(
        "x",
        "allow-ns-y-z-pod-b-c",
        "
podSelector: {matchLabels: {pod: a}}
ingress:
- from:
  - namespaceSelector:
      matchExpressions:
      - {key: ns, operator: NotIn, values: [x]}
    podSelector:
      matchExpressions:
      - {key: pod, operator: In, values: [b, c]}
",
    ));
    let mut r = Reachability::new(true);
    r.expect_all_ingress("x/a", false);
    r.expect("y/b", "x/a", true);
    r.expect("y/c", "x/a", true);
    r.expect("z/b", "x/a", true);
    r.expect("z/c", "x/a", true);
    c.check(&ALL_PROBES, &r);
}

/// "should enforce policy based on any PodSelectors".
#[test]
fn any_of_several_pod_selectors() {
    let c = load(&np(
        "x",
        "allow-pod-b-or-c",
        "
podSelector: {matchLabels: {pod: a}}
ingress:
- from:
  - podSelector: {matchLabels: {pod: b}}
  - podSelector: {matchLabels: {pod: c}}
",
    ));
    let mut r = Reachability::new(true);
    r.expect_all_ingress("x/a", false);
    r.expect("x/b", "x/a", true);
    r.expect("x/c", "x/a", true);
    c.check(&ALL_PROBES, &r);
}

/// "should enforce policy to allow traffic only from a pod in a different
/// namespace based on PodSelector and NamespaceSelector".
#[test]
fn pod_in_a_different_namespace() {
    let c = load(&np(
        "x",
        "allow-ns-y-pod-a",
        "
podSelector: {matchLabels: {pod: a}}
ingress:
- from:
  - namespaceSelector: {matchLabels: {ns: y}}
    podSelector: {matchLabels: {pod: a}}
",
    ));
    let mut r = Reachability::new(true);
    r.expect_all_ingress("x/a", false);
    r.expect("y/a", "x/a", true);
    c.check_dual(&ALL_PROBES, &r);
}

/// "should allow ingress access from updated namespace": before and after y
/// gets the label `ns2=updated`.
#[test]
fn ingress_from_updated_namespace() {
    let policy = np(
        "x",
        "allow-client-a-via-ns-selector",
        "
podSelector: {matchLabels: {pod: a}}
ingress:
- from:
  - namespaceSelector: {matchLabels: {ns2: updated}}
",
    );
    let mut before = Reachability::new(true);
    before.expect_all_ingress("x/a", false);
    load(&policy).check(&[TCP_80], &before);

    let mut after = before.clone();
    after.expect("y/*", "x/a", true);
    Setup::default()
        .ns_label("y", "ns2", "updated")
        .load(&policy)
        .check(&[TCP_80], &after);
}

/// "should allow ingress access from updated pod": before and after x/b gets
/// the label `pod2=updated`.
#[test]
fn ingress_from_updated_pod() {
    let policy = np(
        "x",
        "allow-client-a-via-pod-selector",
        "
podSelector: {matchLabels: {pod: a}}
ingress:
- from:
  - podSelector: {matchLabels: {pod2: updated}}
",
    );
    let mut before = Reachability::new(true);
    before.expect_all_ingress("x/a", false);
    load(&policy).check(&[TCP_80], &before);

    let mut after = before.clone();
    after.expect("x/b", "x/a", true);
    Setup::default()
        .pod_label("x/b", "pod2", "updated")
        .load(&policy)
        .check(&[TCP_80], &after);
}

/// "should deny ingress access to updated pod": a deny-all for pods labelled
/// `target=isolated` isolates x/a once it gets the label.
#[test]
fn ingress_to_updated_pod() {
    let policy = np(
        "x",
        "deny-ingress-via-label-selector",
        "
podSelector: {matchLabels: {target: isolated}}
policyTypes: [Ingress]
",
    );
    load(&policy).check(&[TCP_80], &Reachability::new(true));
    let mut after = Reachability::new(true);
    after.expect_all_ingress("x/a", false);
    Setup::default()
        .pod_label("x/a", "target", "isolated")
        .load(&policy)
        .check(&[TCP_80], &after);
}

/// "should allow egress from pods in updated namespace"-style: an egress
/// rule to a namespace selector picks up a namespace once it is labelled.
#[test]
fn egress_to_updated_namespace() {
    let policy = np(
        "x",
        "allow-egress-to-ns2",
        "
podSelector: {matchLabels: {pod: a}}
policyTypes: [Egress]
egress:
- to:
  - namespaceSelector: {matchLabels: {ns2: updated}}
",
    );
    let mut before = Reachability::new(true);
    before.expect_all_egress("x/a", false);
    load(&policy).check(&[TCP_80], &before);
    let mut after = before.clone();
    after.expect("x/a", "z/*", true);
    Setup::default()
        .ns_label("z", "ns2", "updated")
        .load(&policy)
        .check(&[TCP_80], &after);
}
