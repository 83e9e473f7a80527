//! The flow record: what every exporter, the history and `bulkhead flows`
//! see. Its JSON form is schema `bulkhead.flow/v1`, documented field by
//! field in `docs/flows.md`; fields are only ever added (with a default),
//! and an incompatible change bumps the version.
//!
//! Shared parts (pod identities, policy lists, the node name) are `Arc`s
//! built once by the [`super::enrich::Enricher`], so a record costs one
//! allocation, not one per label.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bulkhead_common::{
    DROP_REASONS, DropReason, PROTO_ICMP, PROTO_ICMPV6, PROTO_SCTP, PROTO_TCP, PROTO_UDP,
};
use serde::de::{self, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use bulkhead_policy::model::Direction;

/// The schema name and version of [`FlowRecord`]'s JSON form.
pub const SCHEMA: &str = "bulkhead.flow/v1";

/// One flow record (`type: "flow"`) or live notification (`type: "event"`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowRecord {
    /// Always [`SCHEMA`].
    pub schema: Schema,
    /// A record from the flow table, or a live notification.
    #[serde(rename = "type")]
    pub kind: RecordKind,
    /// For `type: "event"`: which notification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<EventType>,
    /// The node that observed the flow.
    pub node: Arc<str>,
    /// First packet covered by this record.
    pub start: Timestamp,
    /// Last packet covered by this record.
    pub end: Timestamp,
    /// For `type: "flow"`: why the record was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<EndReason>,
    /// ifindex of the endpoint's host-side veth.
    pub ifindex: u32,
    /// The local pod where the flow was observed (`null` if the ifindex is
    /// no longer known).
    pub endpoint: Option<Arc<PodInfo>>,
    /// Whether the endpoint opened the connection (egress) or its peer did
    /// (ingress).
    pub direction: FlowDirection,
    /// Source of the original direction (the connection's opener).
    pub src: Address,
    /// Destination of the original direction (for a connection to a
    /// Service, the frontend the client used: see `service`).
    pub dst: Address,
    /// When `dst` is a Service frontend: the Service and the backend the
    /// node translated the connection to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceInfo>,
    /// IP protocol.
    pub protocol: IpProtocol,
    /// Passed packets per direction.
    pub packets: Counts,
    /// Passed bytes per direction (Ethernet header included).
    pub bytes: Counts,
    /// Dropped packets and bytes (either direction).
    pub dropped: Dropped,
    /// TCP flags seen so far per direction (TCP only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_flags: Option<TcpFlagsPair>,
    /// The flow's verdict at the endpoint.
    pub verdict: FlowVerdict,
    /// The last drop's reason, if anything was dropped.
    pub drop_reason: Option<Reason>,
    /// The deciding policies (see `docs/flows.md`).
    pub policies: Arc<[PolicyRef]>,
    /// Policy revision of the last verdict.
    pub revision: u64,
    /// The audit view's verdict, when policies in audit mode cover the
    /// endpoint in the record's direction (absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<Audit>,
}

/// What the policies in audit mode say about a record's side: the kernel
/// checks the audit view (enforced and audit-mode policies together) beside
/// the enforced one, and never drops for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Audit {
    /// Whether the audit view would allow the flow.
    pub verdict: AuditVerdict,
    /// The audit-mode policies selecting the endpoint in the record's
    /// direction: for `would_deny`, the policies whose enforcement would
    /// deny it (NetworkPolicies only add allows, so a would-deny needs a
    /// direction that only audit-mode policies isolate, or a staged
    /// cluster-admin Deny). A cluster-admin policy is named `Kind/name`
    /// and carries its `tier`.
    pub policies: Arc<[PolicyRef]>,
}

/// The audit view's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditVerdict {
    /// The audit view allows the flow too.
    Allowed,
    /// The audit view would deny the flow (it passed: audit never drops).
    WouldDeny,
}

impl AuditVerdict {
    /// As in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditVerdict::Allowed => "allowed",
            AuditVerdict::WouldDeny => "would_deny",
        }
    }
}

impl FlowRecord {
    /// Whether `pod` (`namespace/name`) is the endpoint, source or
    /// destination.
    pub fn involves_pod(&self, namespace: &str, name: &str) -> bool {
        let is = |p: Option<&Arc<PodInfo>>| {
            p.is_some_and(|p| &*p.namespace == namespace && &*p.pod == name)
        };
        is(self.endpoint.as_ref())
            || is(self.src.pod.as_ref())
            || is(self.dst.pod.as_ref())
            || is(self.backend().and_then(|b| b.address.pod.as_ref()))
    }

    /// The backend of a Service connection, if the record names one.
    pub fn backend(&self) -> Option<&Backend> {
        self.service.as_ref()?.backend.as_ref()
    }
}

/// The schema marker: serializes as [`SCHEMA`], accepts nothing else.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Schema;

impl Serialize for Schema {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(SCHEMA)
    }
}

impl<'de> Deserialize<'de> for Schema {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        if s == SCHEMA {
            Ok(Schema)
        } else {
            Err(de::Error::custom(format_args!(
                "unsupported schema {s:?} (expected {SCHEMA:?})"
            )))
        }
    }
}

/// `type` of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// Counts from the flow table: what exporters send.
    Flow,
    /// A live notification (new flow, drop): history and `--follow` only.
    Event,
}

/// `event` of a notification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    /// A new connection was allowed.
    NewFlow,
    /// A packet was dropped.
    Drop,
}

/// Why a flow record was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// TCP close seen (FIN both ways, or RST).
    Closed,
    /// No packet for the idle timeout.
    Idle,
    /// Interim record of a long flow (active timeout); the flow goes on.
    Active,
    /// The flow cache was full; the flow was exported early.
    Evicted,
    /// The agent stopped.
    AgentStop,
}

impl EndReason {
    /// The JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Closed => "closed",
            EndReason::Idle => "idle",
            EndReason::Active => "active",
            EndReason::Evicted => "evicted",
            EndReason::AgentStop => "agent_stop",
        }
    }
}

/// Direction of a flow relative to its endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowDirection {
    /// The endpoint opened the connection.
    Egress,
    /// The peer opened the connection.
    Ingress,
}

impl FlowDirection {
    /// The JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            FlowDirection::Egress => "egress",
            FlowDirection::Ingress => "ingress",
        }
    }

    /// The policy direction whose rules decide this side.
    pub fn policy_direction(self) -> Direction {
        match self {
            FlowDirection::Egress => Direction::Egress,
            FlowDirection::Ingress => Direction::Ingress,
        }
    }
}

/// Verdict of a flow at its endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowVerdict {
    /// Passed (possibly with a few packets dropped for other reasons, e.g.
    /// malformed).
    Allowed,
    /// Dropped: no rule allows it, or nothing passed.
    Denied,
    /// Was allowed, then a policy change stopped it.
    Revoked,
    /// Denied or revoked by a quarantine of the endpoint (a rule of the
    /// `Quarantine` tier; its name gives the reason).
    Quarantined,
}

impl FlowVerdict {
    /// The JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            FlowVerdict::Allowed => "allowed",
            FlowVerdict::Denied => "denied",
            FlowVerdict::Revoked => "revoked",
            FlowVerdict::Quarantined => "quarantined",
        }
    }

    /// The verdict of counts: `revoked` if the last drop was a revocation,
    /// `denied` if it was a policy deny or nothing passed, else `allowed`.
    pub fn of(passed_packets: u64, dropped_packets: u64, drop_reason: u8) -> Self {
        if dropped_packets > 0 && drop_reason == DropReason::PolicyRevoked as u8 {
            FlowVerdict::Revoked
        } else if dropped_packets > 0
            && (drop_reason == DropReason::PolicyDenied as u8 || passed_packets == 0)
        {
            FlowVerdict::Denied
        } else {
            FlowVerdict::Allowed
        }
    }
}

impl std::str::FromStr for FlowVerdict {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "allowed" => Ok(FlowVerdict::Allowed),
            "denied" => Ok(FlowVerdict::Denied),
            "revoked" => Ok(FlowVerdict::Revoked),
            "quarantined" => Ok(FlowVerdict::Quarantined),
            _ => Err(()),
        }
    }
}

/// A pod's identity as records show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodInfo {
    /// Namespace.
    pub namespace: Arc<str>,
    /// Pod name.
    pub pod: Arc<str>,
    /// `Kind/name` of the workload owning the pod, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<Arc<str>>,
    /// The pod's labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// One end of a flow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    /// The address.
    pub ip: IpAddr,
    /// Transport port (0 for protocols without ports; ICMP echo identifier).
    pub port: u16,
    /// The pod owning the address, if it is one (fields inlined).
    #[serde(flatten)]
    pub pod: Option<Arc<PodInfo>>,
    /// True when the address is no known pod.
    #[serde(default, skip_serializing_if = "is_false")]
    pub external: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The Service of a connection opened to one of its frontends (a
/// ClusterIP, a node address with a NodePort, an external or load-balancer
/// address), and the backend the node translated it to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInfo {
    /// The Service's namespace (absent when no revision the agent still
    /// keeps has the frontend).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<Arc<str>>,
    /// The Service's name (absent with `namespace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Arc<str>>,
    /// The frontend address (the record's `dst.ip`).
    pub ip: IpAddr,
    /// The frontend port (the record's `dst.port`).
    pub port: u16,
    /// The backend, as the dataplane recorded the translation (absent
    /// when it recorded none: the connection never left the node's stack
    /// translated, or its entry was evicted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<Backend>,
}

impl ServiceInfo {
    /// `namespace/name`, when known.
    pub fn key(&self) -> Option<String> {
        Some(format!(
            "{}/{}",
            self.namespace.as_ref()?,
            self.name.as_ref()?
        ))
    }
}

/// The backend of a Service connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backend {
    /// Its address, port and pod (as `src` and `dst`).
    #[serde(flatten)]
    pub address: Address,
    /// Whether the client's egress allowed the connection to this backend
    /// when the dataplane judged it there (a later revocation shows in the
    /// record's `verdict`).
    pub allowed: bool,
}

/// Counts per direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Original direction (src → dst).
    pub orig: u64,
    /// Reply direction (dst → src).
    pub reply: u64,
}

impl Counts {
    /// Both directions.
    pub fn total(&self) -> u64 {
        self.orig + self.reply
    }
}

/// Dropped packets and bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dropped {
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
}

/// TCP flags per direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpFlagsPair {
    /// Original direction.
    pub orig: TcpFlags,
    /// Reply direction.
    pub reply: TcpFlags,
}

/// TCP flag bits (as in the header), serialized as a list of names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TcpFlags(pub u8);

/// Flag names by bit, lowest first.
const TCP_FLAG_NAMES: [&str; 8] = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"];

impl Serialize for TcpFlags {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.count_ones() as usize))?;
        for (bit, name) in TCP_FLAG_NAMES.iter().enumerate() {
            if self.0 & (1 << bit) != 0 {
                seq.serialize_element(name)?;
            }
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for TcpFlags {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = Vec::<std::borrow::Cow<'de, str>>::deserialize(d)?;
        let mut bits = 0u8;
        for n in names {
            let bit = TCP_FLAG_NAMES
                .iter()
                .position(|f| *f == n)
                .ok_or_else(|| de::Error::custom(format_args!("unknown TCP flag {n:?}")))?;
            bits |= 1 << bit;
        }
        Ok(TcpFlags(bits))
    }
}

/// An IP protocol number: serialized as its name for TCP, UDP, SCTP, ICMP
/// and ICMPv6, else as the number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpProtocol(pub u8);

impl IpProtocol {
    /// The name, for the five named protocols.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            PROTO_TCP => "TCP",
            PROTO_UDP => "UDP",
            PROTO_SCTP => "SCTP",
            PROTO_ICMP => "ICMP",
            PROTO_ICMPV6 => "ICMPv6",
            _ => return None,
        })
    }

    /// Parses a name (case-insensitive) or a number.
    pub fn parse(s: &str) -> Option<Self> {
        if let Ok(n) = s.parse::<u8>() {
            return Some(IpProtocol(n));
        }
        [PROTO_TCP, PROTO_UDP, PROTO_SCTP, PROTO_ICMP, PROTO_ICMPV6]
            .into_iter()
            .map(IpProtocol)
            .find(|p| p.name().is_some_and(|n| n.eq_ignore_ascii_case(s)))
    }
}

impl fmt::Display for IpProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "{}", self.0),
        }
    }
}

impl Serialize for IpProtocol {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.name() {
            Some(n) => s.serialize_str(n),
            None => s.serialize_u8(self.0),
        }
    }
}

impl<'de> Deserialize<'de> for IpProtocol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = IpProtocol;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a protocol name or number")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<IpProtocol, E> {
                u8::try_from(v)
                    .map(IpProtocol)
                    .map_err(|_| E::custom("protocol number above 255"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<IpProtocol, E> {
                IpProtocol::parse(v)
                    .ok_or_else(|| E::custom(format_args!("unknown protocol {v:?}")))
            }
        }
        d.deserialize_any(V)
    }
}

/// A drop reason number, serialized as `DropReason::name` (`reason_N` for
/// a number this build does not know).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Reason(pub u8);

impl Reason {
    /// The known reason.
    pub fn drop_reason(self) -> Option<DropReason> {
        DROP_REASONS
            .into_iter()
            .find(|r| *r as u32 == self.0 as u32)
    }

    /// The stable name, if known.
    pub fn name(self) -> Option<&'static str> {
        self.drop_reason().map(DropReason::name)
    }

    /// Parses a name (or `reason_N`).
    pub fn parse(s: &str) -> Option<Self> {
        if let Some(r) = DROP_REASONS.into_iter().find(|r| r.name() == s) {
            return Some(Reason(r as u8));
        }
        s.strip_prefix("reason_")?.parse().ok().map(Reason)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "reason_{}", self.0),
        }
    }
}

impl Serialize for Reason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.name() {
            Some(n) => s.serialize_str(n),
            None => s.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for Reason {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Reason::parse(&s)
            .ok_or_else(|| de::Error::custom(format_args!("unknown drop reason {s:?}")))
    }
}

/// A deciding policy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PolicyRef {
    /// `namespace/name` of the NetworkPolicy.
    pub name: Arc<str>,
    /// Index of the allowing rule in the policy's `ingress`/`egress` list
    /// (the record's direction); absent for a policy that isolates the
    /// endpoint without allowing the flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<u32>,
    /// The cluster-admin tier of the deciding rule (`Admin`, `Baseline`,
    /// or `Quarantine` for a quarantine);
    /// absent for NetworkPolicy (`name` is then `Kind/name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<Arc<str>>,
    /// The cluster-admin rule's action (`Accept`, `Deny`, `Pass`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Arc<str>>,
    /// The cluster-admin rule's `name`, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_name: Option<Arc<str>>,
}

/// Wall-clock time in milliseconds since the Unix epoch, serialized as
/// RFC 3339 UTC with milliseconds (`2025-01-02T03:04:05.678Z`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// From `CLOCK_MONOTONIC` nanoseconds and the realtime − monotonic
    /// offset in nanoseconds.
    pub fn from_monotonic(mono_ns: u64, offset_ns: i64) -> Self {
        let real = (mono_ns as i128 + offset_ns as i128).max(0);
        Timestamp((real / 1_000_000) as u64)
    }

    /// Milliseconds since the epoch.
    pub fn unix_ms(self) -> u64 {
        self.0
    }

    /// As a `SystemTime`.
    pub fn system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        humantime::format_rfc3339_millis(self.system_time()).fmt(f)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let t = humantime::parse_rfc3339(&s).map_err(de::Error::custom)?;
        let ms = t
            .duration_since(UNIX_EPOCH)
            .map_err(|_| de::Error::custom("timestamp before 1970"))?
            .as_millis();
        Ok(Timestamp(ms as u64))
    }
}

/// An ABI address (`[u8; 16]`, IPv4 mapped) as an `IpAddr`.
pub fn ip_of(addr: [u8; 16]) -> IpAddr {
    Ipv6Addr::from(addr).to_canonical()
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    /// A TCP flow from prod/web-1 to an external address.
    pub(crate) fn sample() -> FlowRecord {
        let web = Arc::new(PodInfo {
            namespace: "prod".into(),
            pod: "web-1".into(),
            workload: Some("Deployment/web".into()),
            labels: [("app".to_string(), "web".to_string())].into(),
        });
        FlowRecord {
            schema: Schema,
            kind: RecordKind::Flow,
            event: None,
            node: "node-a".into(),
            start: Timestamp(1_700_000_000_123),
            end: Timestamp(1_700_000_001_456),
            end_reason: Some(EndReason::Closed),
            ifindex: 7,
            endpoint: Some(web.clone()),
            direction: FlowDirection::Egress,
            src: Address {
                ip: "10.0.0.1".parse().unwrap(),
                port: 40000,
                pod: Some(web),
                external: false,
            },
            dst: Address {
                ip: "2001:db8::1".parse().unwrap(),
                port: 443,
                pod: None,
                external: true,
            },
            service: None,
            protocol: IpProtocol(PROTO_TCP),
            packets: Counts { orig: 3, reply: 2 },
            bytes: Counts {
                orig: 300,
                reply: 200,
            },
            dropped: Dropped::default(),
            tcp_flags: Some(TcpFlagsPair {
                orig: TcpFlags(0x13),
                reply: TcpFlags(0x12),
            }),
            verdict: FlowVerdict::Allowed,
            drop_reason: None,
            policies: vec![PolicyRef {
                name: "prod/allow-web".into(),
                rule: Some(0),
                ..Default::default()
            }]
            .into(),
            revision: 4,
            audit: None,
        }
    }
}

#[cfg(test)]
mod tests;
