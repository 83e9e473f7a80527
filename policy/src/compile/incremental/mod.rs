//! Incremental compilation: a model kept with its kernel image, changed one
//! object at a time, each change yielding the map writes it needs.
//!
//! The full compile ([`compile_on_node`](super::compile_on_node)) stays the
//! reference: after every change the image held here equals the full
//! compile's image of the changed model, entry for entry (the property
//! tests check it), because kernel numbers are a function of content (see
//! `kernel_ids`), not of positions. A change takes the fast path when it
//! provably moves nothing but its own entries; anything else falls back to
//! a full compile and a diff of the whole image, counted in [`Stats`].
//!
//! The fast path today: a pod's arrival, departure, relabelling or
//! readdressing (and a local endpoint's arrival or departure) where every
//! pod class, identity and local rule table it leaves or joins exists
//! before and after. That is what replicas of a workload do, the bulk of a
//! cluster's churn. The pod's class and endpoint keys are computed for it
//! alone ([`signature`]), so its cost grows with the number of distinct
//! selectors, not with pods or rules.

mod policy;
pub mod segments;
pub mod signature;
pub mod uses;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use bulkhead_common::{EndpointInfo, IdentityValue, PolicyRange};

use super::image::{ImageDelta, NodeImage};
use super::maps::{identity_key, set_endpoint_addresses};
use super::{Compiled, Segment, compile_on_node};
use crate::model::{Model, Pod, Policy};
use signature::{ClassKey, EndpointKey, Peers};

/// What a change did to the image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Fast path: exactly these writes (possibly none).
    Delta(ImageDelta),
    /// Recompiled in full: the image was replaced; diff it against what
    /// the kernel holds.
    Full,
}

/// One change to the model.
#[derive(Clone, Debug)]
pub enum Change {
    /// A pod created or changed (matched by namespace and name).
    PodUpsert(Pod),
    /// A pod gone.
    PodDelete {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// A NetworkPolicy created or changed (matched by namespace and name).
    PolicyUpsert(Policy),
    /// A NetworkPolicy gone.
    PolicyDelete {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// Any other change: the whole new model (full compile).
    Model(Model),
}

/// A local pod: its host-side veth and, where CNI ADD reported it, the MAC
/// of its interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalPod {
    /// ifindex of the host-side veth.
    pub ifindex: u32,
    /// The MAC it may send from.
    pub mac: Option<[u8; 6]>,
}

/// How changes went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Changes applied on the fast path.
    pub fast: u64,
    /// Changes that needed a full compile.
    pub full: u64,
    /// Of the fast ones, NetworkPolicy changes.
    pub fast_policies: u64,
}

/// A model, its full compile as of the last fallback, and the image kept
/// current through every change since.
pub struct Incremental {
    model: Model,
    node_ips: Vec<IpAddr>,
    local: BTreeMap<String, LocalPod>,
    compiled: Arc<Compiled>,
    image: NodeImage,
    index: Index,
    stats: Stats,
    /// Whether fast-path changes happened since `compiled` was made.
    stale: bool,
    /// Rules fast paths added since `compiled`, by kernel number.
    extra_rules: HashMap<u32, policy::Content>,
    /// Rules of `compiled` fast paths removed.
    gone_rules: HashSet<u32>,
    /// Table groups fast paths changed: (kernel table, kernel peer,
    /// protocol) → segments, rules in kernel numbers.
    groups: BTreeMap<(u32, u32, u8), Vec<Segment>>,
}

/// What the fast path needs to know about the pods in the image.
#[derive(Default)]
struct Index {
    peers: Option<Peers>,
    /// Distinct class keys; pods refer to them by position.
    classes: Vec<ClassKey>,
    class_ids: HashMap<ClassKey, u32>,
    /// (class, ipBlocks containing the address) → its identity's value and
    /// how many pod addresses have it.
    identities: HashMap<(u32, Vec<u32>), (IdentityValue, usize)>,
    /// Local pods' endpoint keys → a local endpoint's value with them and
    /// how many local pods have them.
    endpoints: HashMap<EndpointKey, (EndpointInfo, usize)>,
    /// Each pod address's owner (pod key); addresses two pods claim are in
    /// `contested` instead.
    owners: HashMap<IpAddr, String>,
    contested: BTreeSet<IpAddr>,
    /// Per pod key: its class and, when local, its endpoint key.
    pods: HashMap<String, (u32, Option<EndpointKey>)>,
    /// What the policies use that shapes identities.
    uses: uses::Uses,
}

impl Incremental {
    /// Compiles `model` in full for a node with `node_ips` and the local
    /// pods `local` (by pod key).
    pub fn new(model: Model, node_ips: Vec<IpAddr>, local: BTreeMap<String, LocalPod>) -> Self {
        let mut me = Self {
            model,
            node_ips,
            local,
            compiled: Arc::new(compile_on_node(&Model::default(), &[])),
            image: NodeImage::default(),
            index: Index::default(),
            stats: Stats::default(),
            stale: false,
            extra_rules: HashMap::new(),
            gone_rules: HashSet::new(),
            groups: BTreeMap::new(),
        };
        me.recompile();
        me
    }

    /// The model with every change applied.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The node's addresses.
    pub fn node_ips(&self) -> &[IpAddr] {
        &self.node_ips
    }

    /// The local pods, by pod key.
    pub fn local(&self) -> &BTreeMap<String, LocalPod> {
        &self.local
    }

    /// The image the model compiles to.
    pub fn image(&self) -> &NodeImage {
        &self.image
    }

    /// The last full compile; behind the model when [`Self::stale`].
    pub fn compiled(&self) -> &Arc<Compiled> {
        &self.compiled
    }

    /// Whether fast-path changes happened since the last full compile (the
    /// image is current; `compiled`, which explain and flow records read,
    /// is not).
    pub fn stale(&self) -> bool {
        self.stale
    }

    /// Counts of fast and full changes.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Compiles the model in full again (the image does not change unless
    /// it was wrong): what to run off the critical path after fast changes.
    pub fn refresh(&mut self) -> bool {
        let before = std::mem::take(&mut self.image);
        self.recompile();
        before != self.image
    }

    /// Applies `change`.
    pub fn apply(&mut self, change: Change) -> Outcome {
        let fast = match change {
            Change::PodUpsert(pod) => self.upsert_pod(pod),
            Change::PodDelete { namespace, name } => self.delete_pod(&namespace, &name),
            Change::PolicyUpsert(policy) => {
                let fast = self.upsert_policy(policy);
                self.stats.fast_policies += u64::from(fast.is_some());
                fast
            }
            Change::PolicyDelete { namespace, name } => self.delete_policy(&namespace, &name),
            Change::Model(model) => {
                self.model = model;
                None
            }
        };
        self.finish(fast)
    }

    /// Makes `local` the local pods.
    pub fn set_local(&mut self, local: BTreeMap<String, LocalPod>) -> Outcome {
        let changed: BTreeSet<String> = self
            .local
            .iter()
            .filter(|(k, v)| local.get(*k) != Some(v))
            .chain(local.iter().filter(|(k, v)| self.local.get(*k) != Some(v)))
            .map(|(k, _)| k.clone())
            .collect();
        let mut delta = Some(ImageDelta::default());
        for key in changed {
            let pod = self.model.pod(&key).map(|(_, p)| p.clone());
            let next = local.get(&key).copied();
            delta = delta.and_then(|mut d| {
                d.extend(&self.move_endpoint(&key, pod.as_ref(), next)?);
                Some(d)
            });
        }
        self.local = local;
        self.finish(delta)
    }

    fn finish(&mut self, fast: Option<ImageDelta>) -> Outcome {
        match fast {
            Some(delta) => {
                self.stats.fast += 1;
                self.stale = true;
                Outcome::Delta(delta)
            }
            None => {
                self.stats.full += 1;
                self.recompile();
                Outcome::Full
            }
        }
    }

    fn recompile(&mut self) {
        let compiled = compile_on_node(&self.model, &self.node_ips);
        self.image = full_image(&self.model, &compiled, &self.local);
        self.index = Index::build(&self.model, &compiled, &self.local, &self.image);
        self.compiled = Arc::new(compiled);
        self.stale = false;
        self.extra_rules.clear();
        self.gone_rules.clear();
        self.groups.clear();
    }

    /// Replaces the policy tree of (`table`, `peer`) in the image (`None`:
    /// no tree); whether it changed.
    fn set_tree(&mut self, table: u32, peer: u32, ranges: Option<Vec<PolicyRange>>) -> bool {
        let key = (table, peer);
        if self.image.policy.get(&key) == ranges.as_ref() {
            return false;
        }
        match ranges {
            Some(r) => self.image.policy.insert(key, r),
            None => self.image.policy.remove(&key),
        };
        true
    }
}

/// The image of `compiled` (of `model`) with the local pods `local`.
pub fn full_image(
    model: &Model,
    compiled: &Compiled,
    local: &BTreeMap<String, LocalPod>,
) -> NodeImage {
    let mut pods = Vec::new();
    let mut macs = BTreeMap::new();
    for (key, l) in local {
        if let Some((i, _)) = model.pod(key) {
            pods.push((i, l.ifindex));
            if let Some(mac) = l.mac {
                macs.insert(i, mac);
            }
        }
    }
    compiled.node_image(&pods, &macs).0
}

mod fast;
