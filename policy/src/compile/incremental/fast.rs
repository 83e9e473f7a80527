//! The fast path: a pod's change planned against the index, checked to
//! move nothing but the pod's own entries, then committed. A plan that
//! fails a check leaves the index untouched; the caller then recompiles.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use bulkhead_common::{EndpointInfo, IdentityValue};

use super::super::image::IdentityAddr;
use ipnetwork::IpNetwork;

use super::signature::{EndpointKey, Peers, endpoint_key};
use super::{
    Compiled, ImageDelta, Incremental, Index, LocalPod, NodeImage, identity_key,
    set_endpoint_addresses,
};
use crate::model::{Model, Pod};

/// An identity's key: (class, ipBlocks containing the address).
type IdentityKey = (u32, Vec<u32>);

/// What a pod's change does, before it is committed.
struct Plan {
    key: String,
    /// The pod's class after the change (`None`: the pod is gone).
    class: Option<u32>,
    /// Addresses leaving, with the identity they had.
    removed: Vec<(IpAddr, IdentityKey)>,
    /// Addresses after the change, with their identity and its value.
    added: Vec<(IpAddr, IdentityKey, IdentityValue)>,
    /// The endpoint's move, when the pod is local before or after.
    endpoint: Option<EndpointMove>,
}

/// A local endpoint leaving `from` (ifindex, key) and/or arriving at `to`
/// (ifindex, key, value).
struct EndpointMove {
    from: Option<(u32, EndpointKey)>,
    to: Option<(u32, EndpointKey, EndpointInfo)>,
}

impl Index {
    /// The index of `model`, compiled to `compiled` and `image`, with the
    /// local pods `local`.
    pub(super) fn build(
        model: &Model,
        compiled: &Compiled,
        local: &BTreeMap<String, LocalPod>,
        image: &NodeImage,
    ) -> Self {
        let peers = Peers::new(model);
        let mut index = Index::default();
        let class_of: Vec<u32> = compiled
            .classes
            .representative
            .iter()
            .map(|&rep| index.class_id(peers.class_key(model, &model.pods[rep])))
            .collect();
        let mut owners: HashMap<IpAddr, Vec<usize>> = HashMap::new();
        for (p, pod) in model.pods.iter().enumerate() {
            for &a in &pod.ips {
                owners.entry(a).or_default().push(p);
            }
        }
        for (a, ps) in owners {
            match ps.as_slice() {
                [p] => {
                    index.owners.insert(a, model.pods[*p].key());
                }
                _ => {
                    index.contested.insert(a);
                }
            }
        }
        for (p, pod) in model.pods.iter().enumerate() {
            let class = class_of[compiled.classes.class_of[p] as usize];
            for &a in &pod.ips {
                let value = image.identities.get(&exact(a)).copied();
                let id = (class, blocks_of(compiled, a));
                if let Some(v) = value.filter(|_| !index.contested.contains(&a)) {
                    index.identities.entry(id).or_insert((v, 0)).1 += 1;
                }
            }
            let key = pod.key();
            let endpoint = local.get(&key).map(|l| {
                let ek = endpoint_key(model, pod);
                let info = image.endpoints[&l.ifindex];
                index.endpoints.entry(ek.clone()).or_insert((info, 0)).1 += 1;
                ek
            });
            index.pods.insert(key, (class, endpoint));
        }
        index.peers = Some(peers);
        index.uses = super::uses::Uses::of_model(model);
        index
    }

    fn class_id(&mut self, key: ClassKeyOwned) -> u32 {
        if let Some(&id) = self.class_ids.get(&key) {
            return id;
        }
        let id = self.classes.len() as u32;
        self.classes.push(key.clone());
        self.class_ids.insert(key, id);
        id
    }
}

type ClassKeyOwned = super::signature::ClassKey;

/// The exact IDENTITIES key of an address, without slot.
fn exact(a: IpAddr) -> IdentityAddr {
    let (len, key) = identity_key(0, IpNetwork::from(a));
    (len, key.addr)
}

/// The ipBlocks (indices) containing `a`.
fn blocks_of(compiled: &Compiled, a: IpAddr) -> Vec<u32> {
    compiled.regions.regions[compiled.regions.lookup(a) as usize]
        .blocks
        .clone()
}

impl Incremental {
    /// Creates or replaces a pod; the fast path's writes, or `None` (the
    /// model is changed either way).
    pub(super) fn upsert_pod(&mut self, pod: Pod) -> Option<ImageDelta> {
        let key = pod.key();
        let plan = self.plan(&key, Some(&pod));
        let known_namespace = self.model.namespaces.contains_key(&pod.namespace);
        match self.model.pod(&key).map(|(i, _)| i) {
            Some(i) => self.model.pods[i] = pod,
            None => {
                let at = self.model.pods.partition_point(|p| {
                    (p.namespace.as_str(), p.name.as_str())
                        < (pod.namespace.as_str(), pod.name.as_str())
                });
                self.model.pods.insert(at, pod);
            }
        }
        if !known_namespace {
            self.model.normalize();
        }
        Some(self.commit(plan?))
    }

    /// Deletes a pod; the fast path's writes, or `None`.
    pub(super) fn delete_pod(&mut self, namespace: &str, name: &str) -> Option<ImageDelta> {
        let key = format!("{namespace}/{name}");
        let plan = self.plan(&key, None);
        if let Some((i, _)) = self.model.pod(&key) {
            self.model.pods.remove(i);
        }
        Some(self.commit(plan?))
    }

    /// Moves the endpoint of the pod `key` (if in the model) to `next`.
    pub(super) fn move_endpoint(
        &mut self,
        key: &str,
        pod: Option<&Pod>,
        next: Option<LocalPod>,
    ) -> Option<ImageDelta> {
        let Some(pod) = pod else {
            return Some(ImageDelta::default());
        };
        let from = self.local.get(key).map(|l| {
            let (_, ek) = &self.index.pods[key];
            (
                l.ifindex,
                ek.clone().expect("a local pod has an endpoint key"),
            )
        });
        let mv = self.plan_endpoint(key, from, Some(pod), next)?;
        let mut delta = ImageDelta::default();
        self.commit_endpoint(key, mv, &mut delta);
        Some(delta)
    }

    /// Plans the change of pod `key` to `next` (`None`: deleted), or `None`
    /// when it would move more than its own entries.
    fn plan(&self, key: &str, next: Option<&Pod>) -> Option<Plan> {
        let peers = self.index.peers.as_ref()?;
        let old = self.model.pod(key).map(|(_, p)| p);
        if next.is_some_and(|p| !self.model.namespaces.contains_key(&p.namespace)) {
            return None;
        }
        let class = match next {
            Some(p) => Some(*self.index.class_ids.get(&peers.class_key(&self.model, p))?),
            None => None,
        };
        let old_class = old.map(|_| self.index.pods[key].0);
        let mut counts: HashMap<IdentityKey, isize> = HashMap::new();
        let mut removed = Vec::new();
        for &a in old.map(|p| p.ips.as_slice()).unwrap_or_default() {
            self.check_address(key, a)?;
            let id = (old_class?, blocks_of(&self.compiled, a));
            *counts.entry(id.clone()).or_default() -= 1;
            removed.push((a, id));
        }
        let mut added = Vec::new();
        for &a in next.map(|p| p.ips.as_slice()).unwrap_or_default() {
            self.check_address(key, a)?;
            let id = (class?, blocks_of(&self.compiled, a));
            let &(value, _) = self.index.identities.get(&id)?;
            *counts.entry(id.clone()).or_default() += 1;
            added.push((a, id, value));
        }
        // Every identity touched keeps at least one address.
        for (id, delta) in counts {
            let before = self.index.identities.get(&id).map_or(0, |e| e.1) as isize;
            if before + delta <= 0 {
                return None;
            }
        }
        let from = match (self.local.get(key), old) {
            (Some(l), Some(_)) => Some((l.ifindex, self.index.pods[key].1.clone()?)),
            _ => None,
        };
        let local = self.local.get(key).copied();
        let endpoint = match (from.is_some(), next.is_some() && local.is_some()) {
            (false, false) => None,
            _ => Some(self.plan_endpoint(key, from, next, local)?),
        };
        Some(Plan {
            key: key.to_string(),
            class,
            removed,
            added,
            endpoint,
        })
    }

    /// Whether address `a` of pod `key` moves only its own entry: no other
    /// pod claims it, it is no node address, and no ipBlock region is
    /// exactly it (whose external entry it would hide or reveal).
    fn check_address(&self, key: &str, a: IpAddr) -> Option<()> {
        if self.index.contested.contains(&a)
            || self.index.owners.get(&a).is_some_and(|o| o != key)
            || self.node_ips.contains(&a)
        {
            return None;
        }
        let region = &self.compiled.regions.regions[self.compiled.regions.lookup(a) as usize];
        let net = IpNetwork::from(a);
        if region.prefixes.binary_search(&net).is_ok() {
            return None;
        }
        Some(())
    }

    /// Plans an endpoint leaving `from` and arriving at `next`'s veth with
    /// the pod `pod`, or `None` when a rule table would appear or vanish
    /// from the image, or the veth is another endpoint's.
    fn plan_endpoint(
        &self,
        key: &str,
        from: Option<(u32, EndpointKey)>,
        pod: Option<&Pod>,
        next: Option<LocalPod>,
    ) -> Option<EndpointMove> {
        let to = match (pod, next) {
            (Some(pod), Some(l)) => {
                let ek = endpoint_key(&self.model, pod);
                let &(template, count) = self.index.endpoints.get(&ek)?;
                let own = usize::from(from.as_ref().is_some_and(|(_, k)| *k == ek));
                if count <= own {
                    return None;
                }
                let taken = self.local.iter().any(|(k, o)| {
                    k != key && o.ifindex == l.ifindex && self.model.pod(k).is_some()
                });
                if taken {
                    return None;
                }
                let mut info = template;
                set_endpoint_addresses(&mut info, &pod.ips, l.mac);
                Some((l.ifindex, ek, info))
            }
            _ => None,
        };
        if let Some((_, ek)) = &from {
            let stays = to.as_ref().is_some_and(|(_, k, _)| k == ek);
            if !stays && self.index.endpoints.get(ek).is_none_or(|e| e.1 <= 1) {
                return None;
            }
        }
        Some(EndpointMove { from, to })
    }

    /// Commits a plan to the index and the image; its writes.
    fn commit(&mut self, plan: Plan) -> ImageDelta {
        let mut delta = ImageDelta::default();
        for (a, id) in &plan.removed {
            if let Some(e) = self.index.identities.get_mut(id) {
                e.1 -= 1;
            }
            self.index.owners.remove(a);
            if !plan.added.iter().any(|(b, _, _)| b == a) {
                self.image.identities.remove(&exact(*a));
                delta.identities.insert(exact(*a), None);
            }
        }
        for (a, id, value) in plan.added {
            if let Some(e) = self.index.identities.get_mut(&id) {
                e.1 += 1;
            }
            self.index.owners.insert(a, plan.key.clone());
            if self.image.identities.insert(exact(a), value) != Some(value) {
                delta.identities.insert(exact(a), Some(value));
            }
        }
        let endpoint = self.index.pods.get(&plan.key).and_then(|e| e.1.clone());
        match plan.class {
            Some(class) => {
                self.index.pods.insert(plan.key.clone(), (class, endpoint));
            }
            None => {
                self.index.pods.remove(&plan.key);
            }
        }
        if let Some(mv) = plan.endpoint {
            self.commit_endpoint(&plan.key, mv, &mut delta);
        }
        delta
    }

    fn commit_endpoint(&mut self, key: &str, mv: EndpointMove, delta: &mut ImageDelta) {
        if let Some((ifindex, ek)) = mv.from {
            if let Some(e) = self.index.endpoints.get_mut(&ek) {
                e.1 -= 1;
            }
            if mv.to.as_ref().is_none_or(|t| t.0 != ifindex) {
                self.image.endpoints.remove(&ifindex);
                delta.endpoints.insert(ifindex, None);
            }
        }
        let slot = self.index.pods.get_mut(key).map(|e| &mut e.1);
        match mv.to {
            Some((ifindex, ek, info)) => {
                if let Some(e) = self.index.endpoints.get_mut(&ek) {
                    e.1 += 1;
                }
                if let Some(s) = slot {
                    *s = Some(ek);
                }
                if self.image.endpoints.insert(ifindex, info) != Some(info) {
                    delta.endpoints.insert(ifindex, Some(info));
                }
            }
            None => {
                if let Some(s) = slot {
                    *s = None;
                }
            }
        }
    }
}
