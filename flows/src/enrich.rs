//! Enrichment: turns kernel flow data (addresses, ifindex, rule numbers)
//! into names. Built from the model and its compiled policy; keeps the last
//! few revisions, since a record drained after a policy switch still carries
//! rule numbers of the revision that judged it.
//!
//! Everything a record shares (pod identities, policy lists) is built once
//! here as an `Arc`, so enriching a record allocates nothing but the record.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use bulkhead_common::{
    CtKey, DropReason, FLOW_F_AUDIT_DENY, FLOW_F_AUDITED, FLOW_SIDE_EGRESS, FlowKey, FlowValue,
    PROTO_TCP, RULE_NONE, ServiceBackend, rule_denies, rule_id,
};

use super::record::{
    Address, Audit, AuditVerdict, Backend, Counts, Dropped, EndReason, EventType, FlowDirection,
    FlowRecord, FlowVerdict, IpProtocol, PodInfo, PolicyRef, Reason, RecordKind, Schema,
    ServiceInfo, TcpFlags, TcpFlagsPair, Timestamp, ip_of,
};
use bulkhead_policy::compile::Compiled;
use bulkhead_policy::model::{Direction, Mode, Model, Pod, Tier};

/// An enricher shared between the agent (which replaces it on each policy
/// change through [`Enricher::update`]) and the pipeline (which reads it).
pub type SharedEnricher = Arc<RwLock<Enricher>>;

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A frontend as the kernel keys it: (address, IP protocol, port).
type FrontendKey = (IpAddr, u8, u16);

/// What one revision knows.
struct Snapshot {
    revision: u64,
    /// By model pod index.
    pods: Vec<Arc<PodInfo>>,
    /// Pod address → pod index.
    by_ip: FastMap<IpAddr, u32>,
    /// Host-side veth ifindex → pod index.
    by_ifindex: FastMap<u32, u32>,
    /// By the kernel's rule number (`Compiled::kernel`, as flow records
    /// carry it): the policy and rule index.
    rules: FastMap<u32, Arc<[PolicyRef]>>,
    /// By pod index: policies isolating it, [ingress, egress].
    isolating: Vec<[Arc<[PolicyRef]>; 2]>,
    /// By pod index: audit-mode policies selecting it, [ingress, egress].
    auditing: Vec<[Arc<[PolicyRef]>; 2]>,
    /// The frontends the node translates, each with its Service's
    /// (namespace, name).
    frontends: FastMap<FrontendKey, (Arc<str>, Arc<str>)>,
}

/// Names for flow data: ifindex → endpoint pod, IP → pod, rule → policy.
pub struct Enricher {
    /// Newest last.
    snapshots: VecDeque<Snapshot>,
    none: Arc<[PolicyRef]>,
}

/// What a record is built from.
#[derive(Clone, Copy, Debug)]
pub struct RecordInput<'a> {
    /// The flow.
    pub key: &'a FlowKey,
    /// Counts and verdict data (for a flow: since its previous record).
    pub value: &'a FlowValue,
    /// The revision `value.rule` belongs to.
    pub rule_revision: u64,
    /// Flow record or notification.
    pub kind: RecordKind,
    /// For a notification.
    pub event: Option<EventType>,
    /// For a flow record.
    pub end_reason: Option<EndReason>,
    /// For a connection to a Service frontend: the backend the node
    /// translated it to (SERVICE_CT).
    pub service: Option<&'a ServiceBackend>,
}

/// Constant context of records: the node name and the monotonic →
/// wall-clock offset.
#[derive(Clone, Debug)]
pub struct RecordContext {
    /// The node name.
    pub node: Arc<str>,
    /// `CLOCK_REALTIME − CLOCK_MONOTONIC` in nanoseconds.
    pub realtime_offset_ns: i64,
}

impl Default for Enricher {
    fn default() -> Self {
        Self::empty()
    }
}

impl Enricher {
    /// Revisions kept for late records.
    pub const KEEP_REVISIONS: usize = 4;

    /// An enricher that knows nothing yet (before the first sync): records
    /// carry addresses only.
    pub fn empty() -> Self {
        Self {
            snapshots: VecDeque::new(),
            none: Arc::from(Vec::new()),
        }
    }

    /// An enricher for one revision. `local` holds (pod index, host-side
    /// ifindex) of the node's endpoints.
    pub fn new(model: &Model, compiled: &Compiled, local: &[(usize, u32)], revision: u64) -> Self {
        let mut e = Self::empty();
        e.update(model, compiled, local, revision);
        e
    }

    /// Adds a revision (replacing one with the same number), dropping the
    /// oldest beyond [`Self::KEEP_REVISIONS`].
    pub fn update(
        &mut self,
        model: &Model,
        compiled: &Compiled,
        local: &[(usize, u32)],
        revision: u64,
    ) {
        let snap = Snapshot::build(model, compiled, local, revision, &self.none);
        self.snapshots.retain(|s| s.revision != revision);
        self.snapshots.push_back(snap);
        while self.snapshots.len() > Self::KEEP_REVISIONS {
            self.snapshots.pop_front();
        }
    }

    /// The newest revision known.
    pub fn revision(&self) -> Option<u64> {
        self.snapshots.back().map(|s| s.revision)
    }

    /// Revisions kept, oldest first.
    pub fn revisions(&self) -> Vec<u64> {
        self.snapshots.iter().map(|s| s.revision).collect()
    }

    /// The pod behind a host-side ifindex (newest revision that knows it).
    pub fn endpoint(&self, ifindex: u32) -> Option<&Arc<PodInfo>> {
        self.snapshots
            .iter()
            .rev()
            .find_map(|s| s.by_ifindex.get(&ifindex).map(|&p| &s.pods[p as usize]))
    }

    /// Whether `tuple`'s destination is a Service frontend the node
    /// translates (in a revision kept): the record names the Service, and
    /// the collector reads the connection's backend for it.
    pub fn is_frontend(&self, tuple: &CtKey) -> bool {
        let k = (ip_of(tuple.dst), tuple.proto, tuple.dport);
        self.snapshots.iter().any(|s| s.frontends.contains_key(&k))
    }

    /// The Service part of a record with this original tuple: the Service
    /// (newest revision that knows the frontend) and `backend`. `None`
    /// when the destination is no frontend and there is no backend.
    pub fn service(&self, tuple: &CtKey, backend: Option<&ServiceBackend>) -> Option<ServiceInfo> {
        let (ip, port) = (ip_of(tuple.dst), tuple.dport);
        let names = self
            .snapshots
            .iter()
            .rev()
            .find_map(|s| s.frontends.get(&(ip, tuple.proto, port)));
        if names.is_none() && backend.is_none() {
            return None;
        }
        Some(ServiceInfo {
            namespace: names.map(|n| n.0.clone()),
            name: names.map(|n| n.1.clone()),
            ip,
            port,
            backend: backend.map(|b| Backend {
                address: self.address(b.addr, b.port),
                allowed: b.allowed != 0,
            }),
        })
    }

    /// The pod owning an address (newest revision that knows it).
    pub fn pod_by_ip(&self, ip: IpAddr) -> Option<&Arc<PodInfo>> {
        self.snapshots
            .iter()
            .rev()
            .find_map(|s| s.by_ip.get(&ip).map(|&p| &s.pods[p as usize]))
    }

    fn snapshot(&self, revision: u64) -> Option<&Snapshot> {
        self.snapshots.iter().rev().find(|s| s.revision == revision)
    }

    /// The policy and rule behind rule `rule` (the kernel's number, as a
    /// record carries it) of `revision`; empty for [`RULE_NONE`] (not
    /// isolated) or a revision no longer kept.
    pub fn allowing(&self, revision: u64, rule: u32) -> Arc<[PolicyRef]> {
        if rule == RULE_NONE {
            return self.none.clone();
        }
        self.snapshot(revision)
            .and_then(|s| s.rules.get(&rule))
            .unwrap_or(&self.none)
            .clone()
    }

    /// The policies isolating the endpoint on `ifindex` in `direction` under
    /// `revision` (falling back to the newest revision that knows it).
    pub fn isolating(&self, revision: u64, ifindex: u32, direction: Direction) -> Arc<[PolicyRef]> {
        self.per_endpoint(revision, ifindex, direction, |s| &s.isolating)
    }

    /// The audit-mode policies selecting the endpoint on `ifindex` in
    /// `direction` under `revision` (as [`Self::isolating`]).
    pub fn auditing(&self, revision: u64, ifindex: u32, direction: Direction) -> Arc<[PolicyRef]> {
        self.per_endpoint(revision, ifindex, direction, |s| &s.auditing)
    }

    fn per_endpoint(
        &self,
        revision: u64,
        ifindex: u32,
        direction: Direction,
        field: impl Fn(&Snapshot) -> &Vec<[Arc<[PolicyRef]>; 2]>,
    ) -> Arc<[PolicyRef]> {
        let d = match direction {
            Direction::Ingress => 0,
            Direction::Egress => 1,
        };
        let lookup = |s: &Snapshot| {
            s.by_ifindex
                .get(&ifindex)
                .map(|&p| field(s)[p as usize][d].clone())
        };
        self.snapshot(revision)
            .and_then(lookup)
            .or_else(|| self.snapshots.iter().rev().find_map(lookup))
            .unwrap_or_else(|| self.none.clone())
    }

    fn address(&self, addr: [u8; 16], port: u16) -> Address {
        let ip = ip_of(addr);
        let pod = self.pod_by_ip(ip).cloned();
        Address {
            ip,
            port,
            external: pod.is_none(),
            pod,
        }
    }

    /// Builds the record of a flow or notification.
    pub fn record(&self, ctx: &RecordContext, input: &RecordInput<'_>) -> FlowRecord {
        let (key, v) = (input.key, input.value);
        let direction = if key.side == FLOW_SIDE_EGRESS {
            FlowDirection::Egress
        } else {
            FlowDirection::Ingress
        };
        let passed = v.packets_orig + v.packets_reply;
        let verdict = FlowVerdict::of(passed, v.dropped_packets, v.drop_reason);
        let policies = match verdict {
            FlowVerdict::Allowed => self.allowing(input.rule_revision, v.rule),
            // Denied by a rule (a cluster-admin Deny): that rule; or
            // passed by an Admin Pass to NetworkPolicy, whose isolation
            // denied it: the Pass and the isolating policies.
            FlowVerdict::Denied | FlowVerdict::Revoked if rule_denies(v.rule) => {
                let by = self.allowing(v.revision, rule_id(v.rule));
                if by.iter().any(|p| p.action.as_deref() == Some("Pass")) {
                    let isolating =
                        self.isolating(v.revision, key.ifindex, direction.policy_direction());
                    by.iter().chain(isolating.iter()).cloned().collect()
                } else {
                    by
                }
            }
            FlowVerdict::Denied | FlowVerdict::Revoked
                if v.drop_reason == DropReason::PolicyDenied as u8
                    || v.drop_reason == DropReason::PolicyRevoked as u8 =>
            {
                self.isolating(v.revision, key.ifindex, direction.policy_direction())
            }
            _ => self.none.clone(),
        };
        let verdict = quarantined(verdict, &policies);
        let proto = key.tuple.proto;
        FlowRecord {
            schema: Schema,
            kind: input.kind,
            event: input.event,
            node: ctx.node.clone(),
            start: Timestamp::from_monotonic(v.first_seen_ns, ctx.realtime_offset_ns),
            end: Timestamp::from_monotonic(v.last_seen_ns, ctx.realtime_offset_ns),
            end_reason: input.end_reason,
            ifindex: key.ifindex,
            endpoint: self.endpoint(key.ifindex).cloned(),
            direction,
            src: self.address(key.tuple.src, key.tuple.sport),
            dst: self.address(key.tuple.dst, key.tuple.dport),
            service: self.service(&key.tuple, input.service),
            protocol: IpProtocol(proto),
            packets: Counts {
                orig: v.packets_orig,
                reply: v.packets_reply,
            },
            bytes: Counts {
                orig: v.bytes_orig,
                reply: v.bytes_reply,
            },
            dropped: Dropped {
                packets: v.dropped_packets,
                bytes: v.dropped_bytes,
            },
            tcp_flags: (proto == PROTO_TCP).then_some(TcpFlagsPair {
                orig: TcpFlags(v.tcp_flags_orig),
                reply: TcpFlags(v.tcp_flags_reply),
            }),
            verdict,
            drop_reason: (v.drop_reason != 0).then_some(Reason(v.drop_reason)),
            policies,
            revision: v.revision,
            audit: (v.flags & FLOW_F_AUDITED != 0).then(|| Audit {
                verdict: if v.flags & FLOW_F_AUDIT_DENY != 0 {
                    AuditVerdict::WouldDeny
                } else {
                    AuditVerdict::Allowed
                },
                policies: self.auditing(v.revision, key.ifindex, direction.policy_direction()),
            }),
        }
    }
}

impl Snapshot {
    fn build(
        model: &Model,
        compiled: &Compiled,
        local: &[(usize, u32)],
        revision: u64,
        none: &Arc<[PolicyRef]>,
    ) -> Self {
        let pods: Vec<Arc<PodInfo>> = model
            .pods
            .iter()
            .map(|p| {
                Arc::new(PodInfo {
                    namespace: p.namespace.as_str().into(),
                    pod: p.name.as_str().into(),
                    workload: workload(p).map(Into::into),
                    labels: p.labels.clone(),
                })
            })
            .collect();
        let by_ip = model
            .pods
            .iter()
            .enumerate()
            .flat_map(|(i, p)| p.ips.iter().map(move |ip| (*ip, i as u32)))
            .collect();
        let by_ifindex = local.iter().map(|&(p, ifx)| (ifx, p as u32)).collect();
        let names: Vec<Arc<str>> = model
            .policies
            .iter()
            .map(|p| Arc::from(p.key().as_str()))
            .collect();
        let admin_names: Vec<Arc<str>> = model
            .admin_policies
            .iter()
            .map(|p| Arc::from(p.key().as_str()))
            .collect();
        let rules = compiled
            .rules
            .iter()
            .enumerate()
            .map(|(id, o)| {
                let reference = match o.tier {
                    None => PolicyRef {
                        name: names[o.policy].clone(),
                        rule: Some(o.rule as u32),
                        ..Default::default()
                    },
                    Some(tier) => {
                        let rule = &model.admin_policies[o.policy].rules(o.direction)[o.rule];
                        PolicyRef {
                            name: admin_names[o.policy].clone(),
                            rule: Some(o.rule as u32),
                            tier: Some(tier.as_str().into()),
                            action: Some(rule.action.as_str().into()),
                            rule_name: rule.name.as_deref().map(Arc::from),
                        }
                    }
                };
                let reference: Arc<[PolicyRef]> = Arc::from(vec![reference]);
                (compiled.kernel.rule(id as u32), reference)
            })
            .collect();
        let tables: Vec<Arc<[PolicyRef]>> = compiled
            .tables
            .iter()
            .map(|t| {
                t.policies
                    .iter()
                    .map(|&pi| PolicyRef {
                        name: names[pi].clone(),
                        rule: None,
                        ..Default::default()
                    })
                    .collect::<Vec<_>>()
                    .into()
            })
            .collect();
        let table = |t: Option<u32>| t.map_or_else(|| none.clone(), |t| tables[t as usize].clone());
        let isolating = compiled
            .endpoints
            .iter()
            .map(|ep| [table(ep.ingress), table(ep.egress)])
            .collect();
        // The audit-mode policies of each audit table: NetworkPolicies,
        // then cluster-admin policies (staged guardrails), in evaluation
        // order, with their tier.
        let staged: Vec<Arc<[PolicyRef]>> = compiled
            .tables
            .iter()
            .map(|t| {
                let policies = t
                    .policies
                    .iter()
                    .filter(|&&pi| compiled.modes[pi] == Mode::Audit)
                    .map(|&pi| PolicyRef {
                        name: names[pi].clone(),
                        rule: None,
                        ..Default::default()
                    });
                let admin = t
                    .admin
                    .iter()
                    .filter(|&&ai| compiled.admin_modes[ai] == Mode::Audit)
                    .map(|&ai| PolicyRef {
                        name: admin_names[ai].clone(),
                        rule: None,
                        tier: Some(model.admin_policies[ai].tier.as_str().into()),
                        ..Default::default()
                    });
                policies.chain(admin).collect::<Vec<_>>().into()
            })
            .collect();
        let staged =
            |t: Option<u32>| t.map_or_else(|| none.clone(), |t| staged[t as usize].clone());
        let auditing = compiled
            .audit_endpoints
            .iter()
            .map(|ep| [staged(ep.ingress), staged(ep.egress)])
            .collect();
        Snapshot {
            revision,
            pods,
            by_ip,
            by_ifindex,
            rules,
            isolating,
            auditing,
            frontends: frontends(model, compiled),
        }
    }
}

/// Each frontend of `compiled` with its Service's (namespace, name). The
/// Services' own addresses name theirs; any other frontend is a node
/// address, named by its NodePort.
fn frontends(model: &Model, compiled: &Compiled) -> FastMap<FrontendKey, (Arc<str>, Arc<str>)> {
    let mut by_addr: FastMap<FrontendKey, usize> = FastMap::default();
    let mut by_node_port: FastMap<(u8, u16), usize> = FastMap::default();
    for (i, svc) in model.services.iter().enumerate() {
        // Headless and ExternalName Services translate nothing.
        let own = svc.frontends(&[]);
        if own.is_empty() {
            continue;
        }
        for f in own {
            by_addr.insert((f.addr, f.protocol.number(), f.port), i);
        }
        for p in &svc.ports {
            if let Some(np) = p.node_port {
                by_node_port.insert((p.protocol.number(), np), i);
            }
        }
    }
    let names: Vec<(Arc<str>, Arc<str>)> = model
        .services
        .iter()
        .map(|s| (Arc::from(s.namespace.as_str()), Arc::from(s.name.as_str())))
        .collect();
    compiled
        .frontends
        .iter()
        .filter_map(|f| {
            let k = (f.addr, f.protocol.number(), f.port);
            let i = by_addr.get(&k).or_else(|| by_node_port.get(&(k.1, k.2)))?;
            Some((k, names[*i].clone()))
        })
        .collect()
}

/// `Kind/name` of the workload a pod belongs to, as far as the model knows:
/// the workload object it came from; else its controlling owner, a
/// ReplicaSet named `<deployment>-<pod-template-hash>` standing for its
/// Deployment; else unknown.
pub fn workload(pod: &Pod) -> Option<String> {
    if pod.source.kind != "Pod" {
        return Some(format!("{}/{}", pod.source.kind, pod.source.name));
    }
    let owner = pod.owner.as_ref()?;
    if owner.kind == "ReplicaSet"
        && let Some(hash) = pod.labels.get("pod-template-hash")
        && let Some(deploy) = owner
            .name
            .strip_suffix(hash.as_str())
            .and_then(|s| s.strip_suffix('-'))
        && !deploy.is_empty()
    {
        return Some(format!("Deployment/{deploy}"));
    }
    Some(format!("{}/{}", owner.kind, owner.name))
}

#[cfg(test)]
pub(crate) mod tests;

/// `verdict`, or [`FlowVerdict::Quarantined`] when a rule of the quarantine
/// tier denied (or revoked) the flow.
fn quarantined(verdict: FlowVerdict, deciding: &[PolicyRef]) -> FlowVerdict {
    let quarantine = Tier::Quarantine.as_str();
    match verdict {
        FlowVerdict::Denied | FlowVerdict::Revoked
            if deciding
                .iter()
                .any(|p| p.tier.as_deref() == Some(quarantine)) =>
        {
            FlowVerdict::Quarantined
        }
        v => v,
    }
}
