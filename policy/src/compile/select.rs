//! Evaluates label selectors over all pods at once, with an inverted label
//! index and bit sets, caching each distinct selector.

use std::collections::HashMap;

use super::bitset::BitSet;
use crate::model::{Model, NamespaceScope, Requirement, Selector};

/// Posting lists of one label key.
#[derive(Default)]
struct KeyPostings {
    /// Pods that have the key.
    any: Vec<u32>,
    /// Pods by value.
    by_value: HashMap<String, Vec<u32>>,
}

/// Selector evaluation over the pods of one model.
pub struct Selection<'m> {
    model: &'m Model,
    postings: HashMap<&'m str, KeyPostings>,
    /// Pods of each namespace (by namespace name).
    pods_of_namespace: HashMap<&'m str, BitSet>,
    pod_cache: HashMap<Selector, BitSet>,
    peer_cache: HashMap<(NamespaceScope, Selector), BitSet>,
}

impl<'m> Selection<'m> {
    /// Indexes the pods' labels.
    pub fn new(model: &'m Model) -> Self {
        let n = model.pods.len();
        let mut postings: HashMap<&str, KeyPostings> = HashMap::new();
        let mut pods_of_namespace: HashMap<&str, BitSet> = HashMap::new();
        for (i, pod) in model.pods.iter().enumerate() {
            for (k, v) in &pod.labels {
                let p = postings.entry(k.as_str()).or_default();
                p.any.push(i as u32);
                p.by_value.entry(v.clone()).or_default().push(i as u32);
            }
            pods_of_namespace
                .entry(pod.namespace.as_str())
                .or_insert_with(|| BitSet::empty(n))
                .insert(i);
        }
        Self {
            model,
            postings,
            pods_of_namespace,
            pod_cache: HashMap::new(),
            peer_cache: HashMap::new(),
        }
    }

    fn bits(&self, posting: Option<&Vec<u32>>) -> BitSet {
        let mut b = BitSet::empty(self.model.pods.len());
        for &i in posting.into_iter().flatten() {
            b.insert(i as usize);
        }
        b
    }

    fn requirement(&self, r: &Requirement) -> BitSet {
        let key = self.postings.get(r.key());
        let values = |vs: &[String]| {
            let mut b = BitSet::empty(self.model.pods.len());
            for v in vs {
                b.or_with(&self.bits(key.and_then(|k| k.by_value.get(v))));
            }
            b
        };
        match r {
            Requirement::In(_, vs) => values(vs),
            Requirement::NotIn(_, vs) => {
                let mut b = values(vs);
                b.negate();
                b
            }
            Requirement::Exists(_) => self.bits(key.map(|k| &k.any)),
            Requirement::DoesNotExist(_) => {
                let mut b = self.bits(key.map(|k| &k.any));
                b.negate();
                b
            }
        }
    }

    /// Pods (of any namespace) whose labels match `selector`.
    pub fn pods(&mut self, selector: &Selector) -> BitSet {
        if let Some(b) = self.pod_cache.get(selector) {
            return b.clone();
        }
        let mut b = BitSet::full(self.model.pods.len());
        for r in selector.requirements() {
            b.and_with(&self.requirement(r));
        }
        self.pod_cache.insert(selector.clone(), b.clone());
        b
    }

    /// Pods of the namespaces in `scope` that match `pods`.
    pub fn peer(&mut self, scope: &NamespaceScope, pods: &Selector) -> BitSet {
        let key = (scope.clone(), pods.clone());
        if let Some(b) = self.peer_cache.get(&key) {
            return b.clone();
        }
        let mut in_scope = BitSet::empty(self.model.pods.len());
        let namespaces: Vec<&str> = match scope {
            NamespaceScope::Same(ns) => vec![ns.as_str()],
            NamespaceScope::Selected(sel) => self
                .model
                .namespaces
                .values()
                .filter(|ns| sel.matches(&ns.labels))
                .map(|ns| ns.name.as_str())
                .collect(),
        };
        for ns in namespaces {
            if let Some(b) = self.pods_of_namespace.get(ns) {
                in_scope.or_with(b);
            }
        }
        in_scope.and_with(&self.pods(pods));
        self.peer_cache.insert(key, in_scope.clone());
        in_scope
    }
}

#[cfg(test)]
mod tests;
