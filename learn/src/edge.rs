//! Edges: observed connections between workloads and external addresses,
//! built from flow records.
//!
//! An edge is (source, destination, protocol, destination port), where each
//! end is a workload (namespace + `Kind/name`) or an external address, with
//! first/last seen times and counts.
//!
//! **One connection, counted once.** A pod-to-pod connection between pods
//! on one node gives two records (egress at the client, ingress at the
//! server); between nodes, each node's history holds one of them. Every
//! record adds to its edge's counters *for the side it was seen at*
//! (`at_src` for egress records, `at_dst` for ingress records), and an
//! edge's totals are the larger of the two sides. So a connection seen at
//! both ends counts once, one seen at one end (a remote or external peer)
//! counts once, and merging histories of several nodes (in any order) gives
//! the same totals. This is order-independent, unlike taking "the egress
//! record when the source is local", which cannot tell from one record
//! whether the other end's record exists.
//!
//! Only `type: "flow"` records count; `type: "event"` notifications repeat
//! what flow records count. Every verdict counts in the totals, and the
//! denied part (records whose verdict is `denied` or `quarantined`) is kept
//! apart beside them with its deciding policies ([`DeniedStats`]): what
//! learning calls *observed* is the allowed part ([`History::observed`]).
//!
//! **Services are not destinations.** A client's record of a connection to
//! a Service frontend (a ClusterIP, a NodePort) names the backend the node
//! translated it to (`service.backend`): its edge goes to the backend's
//! workload on the backend's port, the edge the backend's own ingress
//! record gives, so the two sides meet in one edge and policy allows what
//! policy judges (the backend pods, never the Service address). A client's
//! record to a frontend without a backend (never translated) gives no
//! edge: the Service address is no peer a policy could name usefully.

use std::collections::BTreeMap;

mod denied;
pub use denied::{DeniedStats, MAX_DENIED_POLICIES, is_denied};

/// Hash map with a fast hasher (keys are not attacker-chosen here).
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use bulkhead_flows::record::{FlowDirection, FlowRecord, PodInfo, RecordKind, Timestamp};
use bulkhead_policy::model::{Labels, Protocol};

/// A workload: namespace and `Kind/name` (a bare pod is `Pod/<name>`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WorkloadId {
    /// Namespace.
    pub namespace: String,
    /// `Kind/name`, as the flow record's `workload`.
    pub workload: String,
}

impl WorkloadId {
    /// The workload of a pod in a flow record.
    pub fn of(pod: &PodInfo) -> Self {
        WorkloadId {
            namespace: pod.namespace.to_string(),
            workload: match &pod.workload {
                Some(w) => w.to_string(),
                None => format!("Pod/{}", pod.pod),
            },
        }
    }

    /// The kind (`Deployment`), before the slash.
    pub fn kind(&self) -> &str {
        self.workload.split_once('/').map_or("Pod", |(k, _)| k)
    }

    /// The object name, after the slash.
    pub fn name(&self) -> &str {
        self.workload
            .split_once('/')
            .map_or(self.workload.as_str(), |(_, n)| n)
    }
}

impl fmt::Display for WorkloadId {
    /// `namespace/Kind/name`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.workload)
    }
}

/// One end of an edge.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum End {
    /// A pod of a workload.
    Workload(WorkloadId),
    /// An address no known pod owns.
    External(IpAddr),
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            End::Workload(w) => w.fmt(f),
            End::External(a) => a.fmt(f),
        }
    }
}

/// What identifies an edge.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EdgeKey {
    /// The connection's opener.
    pub src: End,
    /// Its destination.
    pub dst: End,
    /// IP protocol number.
    pub protocol: u8,
    /// Destination port (0 for protocols without ports).
    pub port: u16,
}

impl EdgeKey {
    /// The NetworkPolicy protocol, if policy can name it (TCP, UDP, SCTP).
    pub fn policy_protocol(&self) -> Option<Protocol> {
        Protocol::ALL
            .into_iter()
            .find(|p| p.number() == self.protocol)
    }
}

/// Counts seen at one side of the connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SideCounts {
    /// Flow records.
    pub flows: u64,
    /// Packets, both directions, passed and dropped.
    pub packets: u64,
    /// Bytes, both directions, passed and dropped.
    pub bytes: u64,
}

impl SideCounts {
    /// Adds another side's counts.
    pub fn add(&mut self, o: &SideCounts) {
        self.flows += o.flows;
        self.packets += o.packets;
        self.bytes += o.bytes;
    }

    /// These counts less a part of them.
    fn minus(&self, o: &SideCounts) -> SideCounts {
        SideCounts {
            flows: self.flows.saturating_sub(o.flows),
            packets: self.packets.saturating_sub(o.packets),
            bytes: self.bytes.saturating_sub(o.bytes),
        }
    }
}

/// When and how much an edge was used: every record, whatever its
/// verdict, and the denied part of them apart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeStats {
    /// Start of the earliest record.
    pub first_seen: Timestamp,
    /// End of the latest record.
    pub last_seen: Timestamp,
    /// Counted from records at the source (egress).
    pub at_src: SideCounts,
    /// Counted from records at the destination (ingress).
    pub at_dst: SideCounts,
    /// The part of the counts from denied or quarantined records, and
    /// their deciding policies; absent when none was (and in entries
    /// written before verdicts were kept apart, which count as allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denied: Option<Box<DeniedStats>>,
}

impl EdgeStats {
    /// Merges another observation of the same edge.
    pub fn merge(&mut self, o: &EdgeStats) {
        if self.denied.is_some() || o.denied.is_some() {
            let span = denied::union(self.allowed_span(), o.allowed_span());
            match (&mut self.denied, &o.denied) {
                (Some(d), Some(od)) => d.merge(od),
                (None, Some(od)) => self.denied = Some(od.clone()),
                _ => {}
            }
            if let Some(d) = &mut self.denied {
                d.set_allowed_span(span);
            }
        }
        self.first_seen = self.first_seen.min(o.first_seen);
        self.last_seen = self.last_seen.max(o.last_seen);
        self.at_src.add(&o.at_src);
        self.at_dst.add(&o.at_dst);
    }

    /// Connections (records), each counted once (the larger side).
    pub fn flows(&self) -> u64 {
        self.at_src.flows.max(self.at_dst.flows)
    }

    /// Packets, the larger side.
    pub fn packets(&self) -> u64 {
        self.at_src.packets.max(self.at_dst.packets)
    }

    /// Bytes, the larger side.
    pub fn bytes(&self) -> u64 {
        self.at_src.bytes.max(self.at_dst.bytes)
    }
}

/// An edge with its stats.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edge {
    /// What it connects.
    pub key: EdgeKey,
    /// When and how much.
    pub stats: EdgeStats,
}

/// What the history knows about a workload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadInfo {
    /// Its pods' labels, as last seen.
    pub labels: Labels,
    /// Seen as a local endpoint (a record observed at one of its pods), so
    /// all its traffic in both directions was visible to the agent.
    pub local: bool,
    /// Last time a record mentioned it (labels are from then).
    pub last_seen: Timestamp,
}

impl WorkloadInfo {
    /// Merges a later or earlier observation: labels of the latest win.
    pub fn merge(&mut self, o: &WorkloadInfo) {
        if o.last_seen >= self.last_seen {
            self.labels.clone_from(&o.labels);
            self.last_seen = o.last_seen;
        }
        self.local |= o.local;
    }
}

/// Records that gave no edge.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// `type: "event"` notifications (their packets are in flow records).
    pub events: u64,
    /// The local side's pod was unknown (record without pod identity).
    pub unknown_endpoint: u64,
    /// A client's connection to a Service frontend without a recorded
    /// backend.
    #[serde(default)]
    pub untranslated_service: u64,
}

/// Edges and workloads observed, in memory: what the store persists and
/// what `propose` reads.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// Edges.
    pub edges: FastMap<EdgeKey, EdgeStats>,
    /// Workloads seen at either end.
    pub workloads: FastMap<WorkloadId, WorkloadInfo>,
    /// Flow records taken.
    pub records: u64,
    /// Records that gave no edge.
    pub skipped: Skipped,
}

/// The edge of one record, or why it has none.
pub fn from_record(r: &FlowRecord) -> Result<Edge, SkipReason> {
    if r.kind != RecordKind::Flow {
        return Err(SkipReason::Event);
    }
    let key = key_of(r)?;
    let counts = SideCounts {
        flows: 1,
        packets: r.packets.total() + r.dropped.packets,
        bytes: r.bytes.total() + r.dropped.bytes,
    };
    let (at_src, at_dst) = match r.direction {
        FlowDirection::Egress => (counts, SideCounts::default()),
        FlowDirection::Ingress => (SideCounts::default(), counts),
    };
    Ok(Edge {
        key,
        stats: EdgeStats {
            first_seen: r.start,
            last_seen: r.end,
            at_src,
            at_dst,
            denied: is_denied(r.verdict).then(|| DeniedStats::of(r, at_src, at_dst)),
        },
    })
}

/// The edge key of a record of any kind (a flow record or a live
/// notification), or why it has none.
pub fn key_of(r: &FlowRecord) -> Result<EdgeKey, SkipReason> {
    key_ref(r).map(|k| k.to_key())
}

/// One end of a record's edge, borrowed from the record (no allocation):
/// what [`key_of`] makes an [`End`] of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndRef<'a> {
    /// A pod: its namespace, and its workload (`Kind/name`) or, for a bare
    /// pod, its name.
    Pod {
        /// Namespace.
        namespace: &'a str,
        /// `Kind/name` of its owner, if any.
        workload: Option<&'a str>,
        /// The pod's name (the workload `Pod/<name>` when it has no owner).
        pod: &'a str,
    },
    /// An address no known pod owns.
    External(IpAddr),
}

impl EndRef<'_> {
    /// The owned end.
    pub fn to_end(self) -> End {
        match self {
            EndRef::Pod {
                namespace,
                workload,
                pod,
            } => End::Workload(WorkloadId {
                namespace: namespace.to_owned(),
                workload: match workload {
                    Some(w) => w.to_owned(),
                    None => format!("Pod/{pod}"),
                },
            }),
            EndRef::External(ip) => End::External(ip),
        }
    }
}

/// A record's edge key, borrowed from the record: checked against a
/// baseline for every live record without allocating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EdgeRef<'a> {
    /// The connection's opener.
    pub src: EndRef<'a>,
    /// Its destination (a Service connection's backend).
    pub dst: EndRef<'a>,
    /// IP protocol number.
    pub protocol: u8,
    /// Destination port (0 for protocols without ports).
    pub port: u16,
}

impl EdgeRef<'_> {
    /// The owned key.
    pub fn to_key(&self) -> EdgeKey {
        EdgeKey {
            src: self.src.to_end(),
            dst: self.dst.to_end(),
            protocol: self.protocol,
            port: self.port,
        }
    }
}

/// [`key_of`], borrowed from the record.
pub fn key_ref(r: &FlowRecord) -> Result<EdgeRef<'_>, SkipReason> {
    let local = match r.direction {
        FlowDirection::Egress => &r.src.pod,
        FlowDirection::Ingress => &r.dst.pod,
    };
    if local.is_none() {
        return Err(SkipReason::UnknownEndpoint);
    }
    let target = destination(r)?;
    let port = if matches!(r.protocol.0, 6 | 17 | 132) {
        target.port
    } else {
        0
    };
    Ok(EdgeRef {
        src: end_ref(&r.src),
        dst: end_ref(target),
        protocol: r.protocol.0,
        port,
    })
}

/// An address of a record as an edge's end.
fn end_ref(addr: &bulkhead_flows::record::Address) -> EndRef<'_> {
    match &addr.pod {
        Some(p) => EndRef::Pod {
            namespace: &p.namespace,
            workload: p.workload.as_deref(),
            pod: &p.pod,
        },
        None => EndRef::External(addr.ip),
    }
}

/// Where a record's connection went: the backend of a connection to a
/// Service, else its destination.
fn destination(r: &FlowRecord) -> Result<&bulkhead_flows::record::Address, SkipReason> {
    match (&r.service, r.direction) {
        (Some(svc), FlowDirection::Egress) => svc
            .backend
            .as_ref()
            .map(|b| &b.address)
            .ok_or(SkipReason::UntranslatedService),
        _ => Ok(&r.dst),
    }
}

/// The two ends of a flow record's edge (source, then destination: a
/// Service connection's backend), each with whether it is the side the
/// record was observed at (the local pod); or why the record has no edge.
/// What [`History::add_record`] learns workloads from.
pub fn ends_of(
    r: &FlowRecord,
) -> Result<[(&bulkhead_flows::record::Address, bool); 2], SkipReason> {
    if r.kind != RecordKind::Flow {
        return Err(SkipReason::Event);
    }
    let local = match r.direction {
        FlowDirection::Egress => &r.src.pod,
        FlowDirection::Ingress => &r.dst.pod,
    };
    if local.is_none() {
        return Err(SkipReason::UnknownEndpoint);
    }
    let target = destination(r)?;
    Ok([
        (&r.src, r.direction == FlowDirection::Egress),
        (target, r.direction == FlowDirection::Ingress),
    ])
}

/// Why a record gave no edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// A notification, not a flow record.
    Event,
    /// The local side has no pod identity.
    UnknownEndpoint,
    /// A client's connection to a Service frontend without a backend.
    UntranslatedService,
}

impl History {
    /// Adds one record.
    pub fn add_record(&mut self, r: &FlowRecord) {
        let ends = match ends_of(r) {
            Ok(ends) => ends,
            Err(SkipReason::Event) => {
                self.skipped.events += 1;
                return;
            }
            Err(SkipReason::UnknownEndpoint) => {
                self.skipped.unknown_endpoint += 1;
                return;
            }
            Err(SkipReason::UntranslatedService) => {
                self.skipped.untranslated_service += 1;
                return;
            }
        };
        self.records += 1;
        // The common case (workload known, labels unchanged) allocates
        // only the edge key.
        for (addr, is_local) in ends {
            let Some(p) = &addr.pod else { continue };
            let id = WorkloadId::of(p);
            match self.workloads.get_mut(&id) {
                Some(w) => {
                    if r.end >= w.last_seen {
                        if w.labels != p.labels {
                            w.labels.clone_from(&p.labels);
                        }
                        w.last_seen = r.end;
                    }
                    w.local |= is_local;
                }
                None => {
                    self.workloads.insert(
                        id,
                        WorkloadInfo {
                            labels: p.labels.clone(),
                            local: is_local,
                            last_seen: r.end,
                        },
                    );
                }
            }
        }
        if let Ok(edge) = from_record(r) {
            self.add_edge(edge.key, &edge.stats);
        }
    }

    /// Merges an edge observation.
    pub fn add_edge(&mut self, key: EdgeKey, stats: &EdgeStats) {
        match self.edges.get_mut(&key) {
            Some(s) => s.merge(stats),
            None => {
                self.edges.insert(key, stats.clone());
            }
        }
    }

    /// Merges a workload observation.
    pub fn add_workload(&mut self, id: WorkloadId, info: &WorkloadInfo) {
        match self.workloads.get_mut(&id) {
            Some(w) => w.merge(info),
            None => {
                self.workloads.insert(id, info.clone());
            }
        }
    }

    /// Merges another history (e.g. another node's).
    pub fn merge(&mut self, other: &History) {
        for (k, s) in &other.edges {
            self.add_edge(k.clone(), s);
        }
        for (id, w) in &other.workloads {
            self.add_workload(id.clone(), w);
        }
        self.records += other.records;
        self.skipped.events += other.skipped.events;
        self.skipped.unknown_endpoint += other.skipped.unknown_endpoint;
        self.skipped.untranslated_service += other.skipped.untranslated_service;
    }

    /// Edges sorted by key.
    pub fn sorted_edges(&self) -> Vec<Edge> {
        let sorted: BTreeMap<&EdgeKey, &EdgeStats> = self.edges.iter().collect();
        sorted
            .into_iter()
            .map(|(k, s)| Edge {
                key: k.clone(),
                stats: s.clone(),
            })
            .collect()
    }

    /// When the newest edge was first seen (stability: nothing new since).
    pub fn last_new_edge(&self) -> Option<Timestamp> {
        self.edges.values().map(|s| s.first_seen).max()
    }

    /// The earliest and latest observation.
    pub fn span(&self) -> Option<(Timestamp, Timestamp)> {
        let first = self.edges.values().map(|s| s.first_seen).min()?;
        let last = self.edges.values().map(|s| s.last_seen).max()?;
        Some((first, last))
    }
}
