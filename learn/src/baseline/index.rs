//! A baseline's edges indexed for the live path: workloads interned to
//! numbers, edges as small copyable keys, so the detectors check a
//! record's borrowed key ([`EdgeRef`]) without allocating. Written by hand:
//! a two-level map of interned names is all it takes, and no crate offers
//! lookups of a borrowed composite key into an owned one on std's maps.
//! The maps use the standard (keyed) hasher: external addresses in live
//! traffic are chosen by others.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use crate::edge::{EdgeKey, EdgeRef, End, EndRef};

/// An end, interned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum EndId {
    Workload(u32),
    External(IpAddr),
}

/// An edge, interned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct CompactEdge {
    src: EndId,
    dst: EndId,
    protocol: u8,
    port: u16,
}

/// The edges of a baseline, for membership tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct EdgeIndex {
    /// Namespace → workload (`Kind/name`) → id.
    workloads: HashMap<String, HashMap<String, u32>>,
    /// Namespace → bare pod name (workload `Pod/<name>`) → the same id.
    bare_pods: HashMap<String, HashMap<String, u32>>,
    next: u32,
    edges: HashSet<CompactEdge>,
}

impl EdgeIndex {
    /// Adds an edge.
    pub(super) fn insert(&mut self, k: &EdgeKey) {
        let edge = CompactEdge {
            src: self.intern(&k.src),
            dst: self.intern(&k.dst),
            protocol: k.protocol,
            port: k.port,
        };
        self.edges.insert(edge);
    }

    fn intern(&mut self, e: &End) -> EndId {
        let w = match e {
            End::External(ip) => return EndId::External(*ip),
            End::Workload(w) => w,
        };
        if let Some(id) = self
            .workloads
            .get(&w.namespace)
            .and_then(|m| m.get(&w.workload))
        {
            return EndId::Workload(*id);
        }
        let id = self.next;
        self.next += 1;
        self.workloads
            .entry(w.namespace.clone())
            .or_default()
            .insert(w.workload.clone(), id);
        if let Some(pod) = w.workload.strip_prefix("Pod/") {
            self.bare_pods
                .entry(w.namespace.clone())
                .or_default()
                .insert(pod.to_owned(), id);
        }
        EndId::Workload(id)
    }

    /// The id of a borrowed end, if the index knows it.
    fn find(&self, e: &EndRef<'_>) -> Option<EndId> {
        match *e {
            EndRef::External(ip) => Some(EndId::External(ip)),
            EndRef::Pod {
                namespace,
                workload: Some(w),
                ..
            } => self
                .workloads
                .get(namespace)?
                .get(w)
                .copied()
                .map(EndId::Workload),
            EndRef::Pod {
                namespace,
                workload: None,
                pod,
            } => self
                .bare_pods
                .get(namespace)?
                .get(pod)
                .copied()
                .map(EndId::Workload),
        }
    }

    /// Whether the index holds the record's edge.
    pub(super) fn contains(&self, k: &EdgeRef<'_>) -> bool {
        let (Some(src), Some(dst)) = (self.find(&k.src), self.find(&k.dst)) else {
            return false;
        };
        self.edges.contains(&CompactEdge {
            src,
            dst,
            protocol: k.protocol,
            port: k.port,
        })
    }
}
