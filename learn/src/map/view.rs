//! The map's JSON (`bulkhead.map/v1`, the contract the web UI reads): a
//! window of the map as workloads, external ranges and edges between
//! them ([`Parts::of`]), a whole answer ([`MapView`]), and the live
//! increments as follow lines ([`Follower`]).
//!
//! Ids: a workload is `namespace/Kind/name`, an external range
//! `cidr:<range>` ([`Groups`]). The edges of the map's cells are merged by
//! (source id, destination id, protocol, port): several addresses of one
//! range are one edge. Times are milliseconds since the epoch.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::IpAddr;

use serde::Serialize;

use super::{Cell, Cells, Groups, VerdictClass, WindowInfo};
use crate::edge::{EdgeKey, End, WorkloadId, WorkloadInfo};
use bulkhead_flows::record::IpProtocol;

/// `schema` of `GET /v1/map`.
pub const SCHEMA: &str = "bulkhead.map/v1";

/// What the view needs beyond the map: the agent's current policy and
/// alerting.
pub trait ViewContext {
    /// How external addresses are grouped.
    fn groups(&self) -> &Groups;
    /// Whether an active baseline watches the edge and none holds it.
    fn outside_baseline(&self, key: &EdgeKey) -> bool;
    /// The workload's effective mode (`learn`, `audit`, `enforce`), or
    /// `None` when the current model has no pod of it.
    fn mode(&self, id: &WorkloadId) -> Option<String>;
    /// Whether a pod of the workload is quarantined now.
    fn quarantined(&self, id: &WorkloadId) -> bool;
}

/// Counts of one class of an edge.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Connections (flow records, each connection once).
    pub flows: u64,
    /// Packets, both directions.
    pub packets: u64,
    /// Bytes, both directions.
    pub bytes: u64,
}

/// A workload node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WorkloadView {
    /// `namespace/Kind/name`.
    pub id: String,
    /// Namespace.
    pub namespace: String,
    /// `Kind/name`.
    pub name: String,
    /// `Deployment`, `StatefulSet`, `Pod`, ...
    pub kind: String,
    /// The object's name.
    pub short: String,
    /// Its pods' labels, as last seen in a flow record.
    pub labels: BTreeMap<String, String>,
    /// Seen at one of this node's pods.
    pub local: bool,
    /// Effective mode, `null` when no pod of it is in the model now.
    pub mode: Option<String>,
    /// A pod of it is quarantined now.
    pub quarantined: bool,
}

/// An external range node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExternalView {
    /// `cidr:<range>`.
    pub id: String,
    /// The range.
    pub cidr: String,
    /// Distinct addresses of it seen.
    pub addresses: usize,
}

/// A namespace and how many of the view's workloads are in it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NamespaceView {
    /// Name.
    pub name: String,
    /// Workloads of it in the view.
    pub workloads: usize,
}

/// An edge between two nodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EdgeView {
    /// `src>dst:PROTOCOL/port`.
    pub id: String,
    /// Source node id.
    pub src: String,
    /// Destination node id.
    pub dst: String,
    /// `TCP`, `UDP`, `SCTP`, `ICMP`, `ICMPv6`, else the number.
    pub protocol: String,
    /// Destination port (0 without ports).
    pub port: u16,
    /// The worst class present.
    pub verdict: VerdictClass,
    /// Counts per class (only classes seen).
    pub classes: BTreeMap<VerdictClass, Counts>,
    /// Deciding policies per class (only classes with some).
    pub policies: BTreeMap<VerdictClass, Vec<String>>,
    /// Some class saw more deciding policies than are kept.
    pub policies_truncated: bool,
    /// An active baseline watches it and none holds it.
    pub outside_baseline: bool,
    /// Start of the earliest record.
    pub first_seen: u64,
    /// End of the latest record.
    pub last_seen: u64,
}

/// The protocol's name in the map.
pub fn protocol_name(protocol: u8) -> String {
    IpProtocol(protocol)
        .name()
        .map_or_else(|| protocol.to_string(), str::to_owned)
}

/// The node id of an edge's end.
pub fn node_id(end: &End, groups: &Groups) -> String {
    match end {
        End::Workload(w) => w.to_string(),
        End::External(ip) => groups.id(*ip),
    }
}

/// The edge id of `key` in the map.
pub fn edge_id(key: &EdgeKey, groups: &Groups) -> String {
    format!(
        "{}>{}:{}/{}",
        node_id(&key.src, groups),
        node_id(&key.dst, groups),
        protocol_name(key.protocol),
        key.port
    )
}

/// The workload node of `id`.
pub fn workload_view(
    id: &WorkloadId,
    info: Option<&WorkloadInfo>,
    ctx: &dyn ViewContext,
) -> WorkloadView {
    WorkloadView {
        id: id.to_string(),
        namespace: id.namespace.clone(),
        name: id.workload.clone(),
        kind: id.kind().to_owned(),
        short: id.name().to_owned(),
        labels: info.map(|i| i.labels.clone()).unwrap_or_default(),
        local: info.is_some_and(|i| i.local),
        mode: ctx.mode(id),
        quarantined: ctx.quarantined(id),
    }
}

/// An edge being merged from cells.
struct Merging {
    cell: Cell,
    outside: bool,
    first: (String, String, u8, u16),
}

/// The nodes and edges of some cells, each list sorted by id.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Parts {
    /// Namespaces of the workloads.
    pub namespaces: Vec<NamespaceView>,
    /// Workloads at either end of an edge.
    pub workloads: Vec<WorkloadView>,
    /// External ranges at either end of an edge.
    pub externals: Vec<ExternalView>,
    /// Edges.
    pub edges: Vec<EdgeView>,
}

impl Parts {
    /// The parts of `cells` in `ctx`.
    pub fn of(cells: &Cells, ctx: &dyn ViewContext) -> Self {
        let groups = ctx.groups();
        let mut edges: BTreeMap<String, Merging> = BTreeMap::new();
        let mut workloads: BTreeSet<&WorkloadId> = BTreeSet::new();
        let mut externals: BTreeMap<String, HashSet<IpAddr>> = BTreeMap::new();
        for (key, cell) in &cells.edges {
            for end in [&key.src, &key.dst] {
                match end {
                    End::Workload(w) => {
                        workloads.insert(w);
                    }
                    End::External(ip) => {
                        externals.entry(groups.id(*ip)).or_default().insert(*ip);
                    }
                }
            }
            let id = edge_id(key, groups);
            let outside = ctx.outside_baseline(key);
            match edges.get_mut(&id) {
                Some(m) => {
                    m.cell.merge(cell);
                    m.outside |= outside;
                }
                None => {
                    let first = (
                        node_id(&key.src, groups),
                        node_id(&key.dst, groups),
                        key.protocol,
                        key.port,
                    );
                    edges.insert(
                        id,
                        Merging {
                            cell: cell.clone(),
                            outside,
                            first,
                        },
                    );
                }
            }
        }
        let workloads: Vec<WorkloadView> = workloads
            .into_iter()
            .map(|id| workload_view(id, cells.workloads.get(id), ctx))
            .collect();
        let mut namespaces: BTreeMap<&str, usize> = BTreeMap::new();
        for w in &workloads {
            *namespaces.entry(&w.namespace).or_default() += 1;
        }
        Parts {
            namespaces: namespaces
                .into_iter()
                .map(|(name, n)| NamespaceView {
                    name: name.to_owned(),
                    workloads: n,
                })
                .collect(),
            externals: externals
                .into_iter()
                .map(|(id, addrs)| ExternalView {
                    cidr: id.trim_start_matches("cidr:").to_owned(),
                    id,
                    addresses: addrs.len(),
                })
                .collect(),
            workloads,
            edges: edges
                .into_iter()
                .filter_map(|(id, m)| edge_view(id, m))
                .collect(),
        }
    }
}

fn edge_view(id: String, m: Merging) -> Option<EdgeView> {
    let verdict = m.cell.worst()?;
    let (src, dst, protocol, port) = m.first;
    Some(EdgeView {
        id,
        src,
        dst,
        protocol: protocol_name(protocol),
        port,
        verdict,
        classes: m
            .cell
            .classes
            .iter()
            .map(|(c, s)| {
                let counts = Counts {
                    flows: s.flows(),
                    packets: s.packets(),
                    bytes: s.bytes(),
                };
                (*c, counts)
            })
            .collect(),
        policies: m
            .cell
            .classes
            .iter()
            .filter(|(_, s)| !s.policies.is_empty())
            .map(|(c, s)| (*c, s.policies.iter().cloned().collect()))
            .collect(),
        policies_truncated: m.cell.classes.iter().any(|(_, s)| s.policies_truncated),
        outside_baseline: m.outside,
        first_seen: m.cell.first_seen(),
        last_seen: m.cell.last_seen(),
    })
}

/// `GET /v1/map`.
#[derive(Clone, Debug, Serialize)]
pub struct MapView {
    /// [`SCHEMA`].
    pub schema: &'static str,
    /// The agent's node.
    pub node: String,
    /// When the answer was made (ms since the epoch).
    pub generated_at: u64,
    /// What it covers.
    pub window: WindowInfo,
    /// The map's revision (merges so far): unchanged, same answer.
    pub revision: u64,
    /// Nodes and edges.
    #[serde(flatten)]
    pub parts: Parts,
    /// Buckets evicted to stay within the map's entries so far.
    pub evicted_buckets: u64,
    /// Records lost so far: by the map (they fit nowhere) and by its
    /// exporter (queue full).
    pub lost_records: u64,
}

/// A follow line: `{"type": …, "revision": …, …the object…}`.
#[derive(Serialize)]
struct Line<'a, T: Serialize> {
    #[serde(rename = "type")]
    kind: &'static str,
    /// The map's revision after the merge the line comes from: a reader
    /// holding a [`MapView`] of revision `r` applies only lines of a
    /// later revision.
    revision: u64,
    #[serde(flatten)]
    body: &'a T,
}

fn line(kind: &'static str, revision: u64, body: &impl Serialize) -> String {
    serde_json::to_string(&Line {
        kind,
        revision,
        body,
    })
    .expect("map types serialize")
}

/// Turns the map's increments into `GET /v1/map/follow` lines for one
/// follower: a workload or external range the first time the follower
/// sees it (before the first edge naming it), then the edges (their counts
/// are increments).
#[derive(Debug, Default)]
pub struct Follower {
    sent: HashSet<String>,
}

impl Follower {
    /// The lines of `increments`, which brought the map to `revision`.
    pub fn lines(
        &mut self,
        revision: u64,
        increments: &Cells,
        ctx: &dyn ViewContext,
    ) -> Vec<String> {
        let parts = Parts::of(increments, ctx);
        let mut out = Vec::with_capacity(parts.edges.len() + parts.workloads.len());
        for w in &parts.workloads {
            if self.sent.insert(w.id.clone()) {
                out.push(line("workload", revision, w));
            }
        }
        for e in &parts.externals {
            if self.sent.insert(e.id.clone()) {
                out.push(line("external", revision, e));
            }
        }
        out.extend(parts.edges.iter().map(|e| line("edge", revision, e)));
        out
    }
}
