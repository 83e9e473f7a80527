//! Grouping audited flow records by policy and by [`GroupKey`], and the
//! per-policy [`Summary`] with its [`Readiness`].

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use serde::Serialize;

use super::Filter;
use crate::WorkloadId;
use crate::edge::FastMap;
use bulkhead_flows::record::{
    Address, AuditVerdict, EndReason, FlowDirection, FlowRecord, IpProtocol, RecordKind, Timestamp,
};

/// One end of a group: the subject (the audited endpoint) or its peer.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(untagged)]
pub enum Party {
    /// A pod's workload (`Kind/name`, or `Pod/<name>` for a bare pod).
    Workload(WorkloadId),
    /// An address no known pod owns.
    External {
        /// The address.
        ip: IpAddr,
    },
}

impl Party {
    /// The workload of the address's pod, else the address.
    fn of(a: &Address) -> Self {
        match &a.pod {
            Some(p) => Party::Workload(WorkloadId::of(p)),
            None => Party::External { ip: a.ip },
        }
    }
}

impl fmt::Display for Party {
    /// `namespace/Kind/name`, or the address.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Party::Workload(w) => w.fmt(f),
            Party::External { ip } => ip.fmt(f),
        }
    }
}

/// What flows of one policy are grouped by.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GroupKey {
    /// The audit view's verdict: a group never mixes verdicts, so a
    /// connection a policy change turned from would-deny to allowed shows
    /// on both sides.
    pub verdict: AuditVerdict,
    /// The audited endpoint's workload.
    pub subject: Party,
    /// Who opened the connection: the subject (egress) or the peer
    /// (ingress).
    pub direction: FlowDirection,
    /// The other end.
    pub peer: Party,
    /// IP protocol.
    pub protocol: IpProtocol,
    /// Destination port; `None` for protocols without ports (the record's
    /// port is the ICMP echo identifier there, which would split groups).
    pub port: Option<u16>,
}

impl GroupKey {
    /// The key of a flow record with audit verdict `verdict`.
    pub fn of(r: &FlowRecord, verdict: AuditVerdict) -> Self {
        let (local, peer) = match r.direction {
            FlowDirection::Egress => (&r.src, &r.dst),
            FlowDirection::Ingress => (&r.dst, &r.src),
        };
        let subject = match &r.endpoint {
            Some(p) => Party::Workload(WorkloadId::of(p)),
            None => Party::of(local),
        };
        let ported = matches!(r.protocol.name(), Some("TCP" | "UDP" | "SCTP"));
        GroupKey {
            verdict,
            subject,
            direction: r.direction,
            peer: Party::of(peer),
            protocol: r.protocol,
            port: ported.then_some(r.dst.port),
        }
    }

    /// A total order (the record types have none): would-deny first, then
    /// subject, direction, peer, protocol, port.
    fn order(&self) -> impl Ord + '_ {
        (
            self.verdict != AuditVerdict::WouldDeny,
            &self.subject,
            self.direction.as_str(),
            &self.peer,
            self.protocol,
            self.port,
        )
    }
}

/// Counts of a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stats {
    /// Flow records.
    pub flows: u64,
    /// Passed packets, both directions.
    pub packets: u64,
    /// Earliest record start.
    pub first: Timestamp,
    /// Latest record end.
    pub last: Timestamp,
}

impl Stats {
    fn of(r: &FlowRecord) -> Self {
        Stats {
            flows: 1,
            packets: r.packets.total(),
            first: r.start,
            last: r.end,
        }
    }

    fn add(&mut self, o: &Stats) {
        self.flows += o.flows;
        self.packets += o.packets;
        self.first = self.first.min(o.first);
        self.last = self.last.max(o.last);
    }
}

/// One group of one policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// What its flows share.
    pub key: GroupKey,
    /// Their counts.
    pub stats: Stats,
}

/// Whether a policy can be enforced without breaking observed traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Readiness {
    /// Audited flows and none would be denied.
    Ready,
    /// Some audited flows would be denied.
    WouldBreak,
    /// No audited flow: nothing to judge by.
    NoData,
}

/// A policy's totals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Flow records the policy audited.
    pub audited_flows: u64,
    /// Of which it would deny.
    pub would_deny_flows: u64,
    /// Groups of would-deny flows.
    pub would_deny_groups: usize,
    /// Groups of allowed flows.
    pub allowed_groups: usize,
    /// Earliest audited flow start.
    pub first: Option<Timestamp>,
    /// Latest audited flow end.
    pub last: Option<Timestamp>,
    /// Latest would-deny flow end.
    pub last_would_deny: Option<Timestamp>,
}

impl Summary {
    /// The verdict on promoting the policy to enforce.
    pub fn readiness(&self) -> Readiness {
        match (self.audited_flows, self.would_deny_flows) {
            (0, _) => Readiness::NoData,
            (_, 0) => Readiness::Ready,
            _ => Readiness::WouldBreak,
        }
    }
}

/// One policy's part of the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyReport {
    /// `namespace/name`.
    pub policy: String,
    /// Totals.
    pub summary: Summary,
    /// Would-deny groups, most flows first.
    pub would_deny: Vec<Group>,
    /// Allowed groups, most flows first.
    pub allowed: Vec<Group>,
}

/// What happened to the records read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordCounts {
    /// Records read.
    pub records: u64,
    /// `type: "event"` notifications (not counted).
    pub events: u64,
    /// Flow records without `audit` (no audit-mode policy selects their
    /// endpoint in their direction).
    pub unaudited: u64,
    /// Audited records that ended before `--since`.
    pub before_since: u64,
    /// Audited records of other policies than `--policy`.
    pub other_policies: u64,
    /// Records already read from another source.
    pub duplicates: u64,
    /// Records grouped.
    pub grouped: u64,
}

/// What identifies a record across sources (every field that differs
/// between two records of one node).
#[derive(Debug, PartialEq, Eq, Hash)]
struct RecordId {
    node: Arc<str>,
    ifindex: u32,
    direction: FlowDirection,
    src: (IpAddr, u16),
    dst: (IpAddr, u16),
    protocol: IpProtocol,
    span: (Timestamp, Timestamp),
    end_reason: Option<EndReason>,
    packets: (u64, u64),
}

impl RecordId {
    fn of(r: &FlowRecord) -> Self {
        RecordId {
            node: r.node.clone(),
            ifindex: r.ifindex,
            direction: r.direction,
            src: (r.src.ip, r.src.port),
            dst: (r.dst.ip, r.dst.port),
            protocol: r.protocol,
            span: (r.start, r.end),
            end_reason: r.end_reason,
            packets: (r.packets.orig, r.packets.reply),
        }
    }
}

/// Audited flow records grouped by policy; feed it with [`Report::add`],
/// read it with [`Report::policies`].
#[derive(Debug, Default)]
pub struct Report {
    filter: Filter,
    seen: std::collections::HashSet<RecordId, foldhash::fast::RandomState>,
    groups: BTreeMap<Arc<str>, FastMap<GroupKey, Stats>>,
    counts: RecordCounts,
}

impl Report {
    /// An empty report covering what `filter` lets through.
    pub fn new(filter: Filter) -> Self {
        Report {
            filter,
            ..Report::default()
        }
    }

    /// What happened to the records so far.
    pub fn counts(&self) -> RecordCounts {
        self.counts
    }

    /// Adds one record.
    pub fn add(&mut self, r: &FlowRecord) {
        let c = &mut self.counts;
        c.records += 1;
        if r.kind != RecordKind::Flow {
            c.events += 1;
            return;
        }
        let Some(audit) = &r.audit else {
            c.unaudited += 1;
            return;
        };
        if !self.filter.wants_record(r) {
            c.before_since += 1;
            return;
        }
        // A set: a policy listed twice must not count the record twice.
        let names: BTreeSet<&Arc<str>> = audit
            .policies
            .iter()
            .map(|p| &p.name)
            .filter(|n| self.filter.wants_policy(n))
            .collect();
        if names.is_empty() {
            c.other_policies += 1;
            return;
        }
        if !self.seen.insert(RecordId::of(r)) {
            c.duplicates += 1;
            return;
        }
        c.grouped += 1;
        let key = GroupKey::of(r, audit.verdict);
        let stats = Stats::of(r);
        for name in names {
            self.groups
                .entry(Arc::clone(name))
                .or_default()
                .entry(key.clone())
                .and_modify(|s| s.add(&stats))
                .or_insert(stats);
        }
    }

    /// Every policy with audited flows, and every `--policy` even without,
    /// in name order.
    pub fn policies(&self) -> Vec<PolicyReport> {
        let empty = FastMap::default();
        let mut names: BTreeMap<&str, &FastMap<GroupKey, Stats>> =
            self.groups.iter().map(|(n, g)| (&**n, g)).collect();
        for p in &self.filter.policies {
            names.entry(p).or_insert(&empty);
        }
        names
            .into_iter()
            .map(|(name, groups)| policy_report(name, groups))
            .collect()
    }
}

fn policy_report(name: &str, groups: &FastMap<GroupKey, Stats>) -> PolicyReport {
    let mut summary = Summary::default();
    let (mut would_deny, mut allowed) = (Vec::new(), Vec::new());
    for (key, stats) in groups {
        summary.audited_flows += stats.flows;
        summary.first = Some(summary.first.map_or(stats.first, |t| t.min(stats.first)));
        summary.last = Some(summary.last.map_or(stats.last, |t| t.max(stats.last)));
        let group = Group {
            key: key.clone(),
            stats: *stats,
        };
        match key.verdict {
            AuditVerdict::WouldDeny => {
                summary.would_deny_flows += stats.flows;
                summary.last_would_deny = summary.last_would_deny.max(Some(stats.last));
                would_deny.push(group);
            }
            AuditVerdict::Allowed => allowed.push(group),
        }
    }
    for list in [&mut would_deny, &mut allowed] {
        list.sort_by(|a, b| {
            (Reverse(a.stats.flows), a.key.order()).cmp(&(Reverse(b.stats.flows), b.key.order()))
        });
    }
    summary.would_deny_groups = would_deny.len();
    summary.allowed_groups = allowed.len();
    PolicyReport {
        policy: name.to_owned(),
        summary,
        would_deny,
        allowed,
    }
}
