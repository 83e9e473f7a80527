//! What the compiler makes of one pod, computed for that pod alone: its
//! class key (which pod peers select it, and what the egress named ports
//! resolve to on it: the pods no selector tells apart share it, as in
//! [`PodClasses`](super::super::PodClasses)) and its endpoint key (which
//! policies select it in each direction and view, and what the ingress
//! named ports resolve to on it: pods with equal keys share rule tables).
//!
//! The full compile evaluates every selector over all pods at once with bit
//! sets; here one pod is checked against every distinct selector, which is
//! what makes a pod's arrival cheap.

use std::collections::{BTreeSet, HashMap};

use crate::model::{
    AdminPeer, Direction, Model, NamespaceScope, Peer, Pod, PortMatch, PortSpec, Protocol, Selector,
};

/// The pod peers of a model (NetworkPolicy and cluster-admin), each once,
/// and the named ports egress rules use.
pub struct Peers {
    /// Distinct `(namespaces, pods)` peers, in model order.
    list: Vec<(NamespaceScope, Selector)>,
    /// Named ports of egress rules, sorted.
    egress_names: Vec<(String, Protocol)>,
    /// Position of each peer in `list`.
    index_of: HashMap<(NamespaceScope, Selector), u32>,
}

/// Which peers select a pod and what the egress named ports resolve to on
/// it: equal keys, one pod class.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClassKey {
    /// Indices into [`Peers`] of the peers selecting the pod, ascending.
    pub peers: Vec<u32>,
    /// The egress named ports' numbers on the pod, in [`Peers`]' order.
    pub named: Vec<Option<u16>>,
}

/// Which policies select a pod, per direction (ingress, egress) and view
/// (enforced, audited), and what the ingress named ports of those policies
/// resolve to on it: equal keys, equal rule tables.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EndpointKey {
    /// NetworkPolicies (indices), `[view][direction]`.
    pub policies: [[Vec<usize>; 2]; 2],
    /// Cluster-admin policies (indices), `[view][direction]`.
    pub admin: [[Vec<usize>; 2]; 2],
    /// Ingress named ports of the selecting policies resolved on the pod,
    /// per view.
    pub ingress_named: [Vec<Option<u16>>; 2],
}

impl Peers {
    /// The peers and egress named ports of `model`'s policies.
    pub fn new(model: &Model) -> Self {
        let mut index_of: HashMap<(NamespaceScope, Selector), u32> = HashMap::new();
        let mut list = Vec::new();
        let mut egress_names = BTreeSet::new();
        let mut add = |scope: NamespaceScope, pods: &Selector| {
            let key = (scope, pods.clone());
            if !index_of.contains_key(&key) {
                index_of.insert(key.clone(), list.len() as u32);
                list.push(key);
            }
        };
        for policy in &model.policies {
            for d in Direction::ALL {
                for rule in policy.rules(d).unwrap_or_default() {
                    for peer in rule.peers.iter().flatten() {
                        if let Peer::Pods { namespaces, pods } = peer {
                            add(namespaces.clone(), pods);
                        }
                    }
                    if d == Direction::Egress {
                        egress_names.extend(named_ports(rule.ports.as_deref()));
                    }
                }
            }
        }
        for policy in &model.admin_policies {
            for d in Direction::ALL {
                for rule in policy.rules(d) {
                    for peer in &rule.peers {
                        if let AdminPeer::Pods { namespaces, pods } = peer {
                            add(NamespaceScope::Selected(namespaces.clone()), pods);
                        }
                    }
                    if d == Direction::Egress {
                        egress_names.extend(named_ports(rule.ports.as_deref()));
                    }
                }
            }
        }
        Self {
            list,
            egress_names: egress_names.into_iter().collect(),
            index_of,
        }
    }

    /// The position of a pod peer, if the model's policies use it.
    pub fn position(&self, namespaces: &NamespaceScope, pods: &Selector) -> Option<u32> {
        self.index_of
            .get(&(namespaces.clone(), pods.clone()))
            .copied()
    }

    /// The position of an egress named port in a [`ClassKey::named`].
    pub fn egress_name_position(&self, name: &str, proto: Protocol) -> Option<usize> {
        self.egress_names
            .iter()
            .position(|(n, p)| n == name && *p == proto)
    }

    /// The class key of `pod` in `model`.
    pub fn class_key(&self, model: &Model, pod: &Pod) -> ClassKey {
        let mut in_scope: HashMap<&Selector, bool> = HashMap::new();
        let peers = self
            .list
            .iter()
            .enumerate()
            .filter(|(_, (scope, pods))| {
                let scoped = match scope {
                    NamespaceScope::Same(ns) => *ns == pod.namespace,
                    NamespaceScope::Selected(sel) => *in_scope
                        .entry(sel)
                        .or_insert_with(|| namespace_matches(model, sel, &pod.namespace)),
                };
                scoped && pods.matches(&pod.labels)
            })
            .map(|(i, _)| i as u32)
            .collect();
        let named = self
            .egress_names
            .iter()
            .map(|(name, proto)| pod.named_port(name, *proto))
            .collect();
        ClassKey { peers, named }
    }
}

/// Whether namespace `name` exists in `model` and its labels match `sel`.
fn namespace_matches(model: &Model, sel: &Selector, name: &str) -> bool {
    model
        .namespaces
        .get(name)
        .is_some_and(|ns| sel.matches(&ns.labels))
}

/// The endpoint key of `pod` in `model`, exactly as the full compile
/// decides which policies select a pod (modes included).
pub fn endpoint_key(model: &Model, pod: &Pod) -> EndpointKey {
    let mut key = EndpointKey {
        policies: Default::default(),
        admin: Default::default(),
        ingress_named: Default::default(),
    };
    for (pi, policy) in model.policies.iter().enumerate() {
        let mode = model.mode_of(policy);
        if !mode.audited()
            || policy.namespace != pod.namespace
            || !policy.pod_selector.matches(&pod.labels)
        {
            continue;
        }
        for (di, d) in Direction::ALL.into_iter().enumerate() {
            if policy.rules(d).is_some() {
                if mode.enforced() {
                    key.policies[0][di].push(pi);
                }
                key.policies[1][di].push(pi);
            }
        }
    }
    for (ai, policy) in model.admin_policies.iter().enumerate() {
        let mode = model.admin_mode_of(policy);
        let subject = &policy.subject;
        if !mode.audited()
            || !namespace_matches(model, &subject.namespaces, &pod.namespace)
            || !subject.pods.matches(&pod.labels)
            || subject.name.as_ref().is_some_and(|n| *n != pod.name)
        {
            continue;
        }
        for (di, d) in Direction::ALL.into_iter().enumerate() {
            if !policy.rules(d).is_empty() {
                if mode.enforced() {
                    key.admin[0][di].push(ai);
                }
                key.admin[1][di].push(ai);
            }
        }
    }
    for view in 0..2 {
        let mut names: BTreeSet<(String, Protocol)> = BTreeSet::new();
        for &pi in &key.policies[view][0] {
            for rule in model.policies[pi].ingress.iter().flatten() {
                names.extend(named_ports(rule.ports.as_deref()));
            }
        }
        for &ai in &key.admin[view][0] {
            for rule in &model.admin_policies[ai].ingress {
                names.extend(named_ports(rule.ports.as_deref()));
            }
        }
        key.ingress_named[view] = names
            .iter()
            .map(|(name, proto)| pod.named_port(name, *proto))
            .collect();
    }
    key
}

/// The named ports of a rule's ports.
fn named_ports(ports: Option<&[PortSpec]>) -> impl Iterator<Item = (String, Protocol)> + '_ {
    ports
        .into_iter()
        .flatten()
        .filter_map(|spec| match &spec.port {
            PortMatch::Named(n) => Some((n.clone(), spec.protocol)),
            _ => None,
        })
}
