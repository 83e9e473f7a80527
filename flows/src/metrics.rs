//! Prometheus metrics of flows, drops, losses, map fill and agent health
//! (prometheus-client registry, OpenMetrics text).
//!
//! Cardinality is bounded: labels are verdicts, directions, reasons,
//! stages, map names and namespaces (`external` for addresses that are no
//! pod), never pods or addresses.
//!
//! Counters that mirror counters kept elsewhere (the kernel's FLOW_STATS
//! and DROPS, exporters' own counts) are set to the source's value, so
//! they stay exact.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bulkhead_common::{DROP_REASONS, DropReason, FLOW_STATS};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::export::ExportStats;
use super::record::{EndReason, FlowRecord, FlowVerdict, PodInfo, RecordKind};
use super::source::KernelFlowStats;

/// Content type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Namespace label of addresses that are no known pod.
pub const EXTERNAL: &str = "external";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FlowLabels {
    verdict: &'static str,
    direction: &'static str,
    src_namespace: Arc<str>,
    dst_namespace: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AuditLabels {
    verdict: &'static str,
    policy: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    tier: &'static str,
    action: &'static str,
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DropLabels {
    reason: &'static str,
    namespace: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatLabel {
    stat: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    stage: Arc<str>,
    reason: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExporterLabel {
    exporter: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabel {
    event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MapLabel {
    map: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: Arc<str>,
}

type GaugeF = Gauge<f64, AtomicU64>;

/// The metrics registry and its handles.
pub struct Metrics {
    registry: Registry,
    external: Arc<str>,
    unknown: Arc<str>,
    flows: Family<FlowLabels, Counter>,
    flow_packets: Family<FlowLabels, Counter>,
    flow_bytes: Family<FlowLabels, Counter>,
    drops: Family<DropLabels, Counter>,
    audit_flows: Family<AuditLabels, Counter>,
    decisions: Family<DecisionLabels, Counter>,
    drop_bytes: Family<DropLabels, Counter>,
    events: Family<EventLabel, Counter>,
    kernel_flow: Family<StatLabel, Counter>,
    kernel_drops: Family<ReasonLabel, Counter>,
    deltas: Family<SourceLabel, Counter>,
    records_lost: Family<StageLabels, Counter>,
    records_exported: Family<ExporterLabel, Counter>,
    records_pending: Family<ExporterLabel, Gauge>,
    cache_flows: Gauge,
    history_records: Gauge,
    map_entries: Family<MapLabel, Gauge>,
    map_capacity: Family<MapLabel, Gauge>,
    map_fill: Family<MapLabel, GaugeF>,
    up: Gauge,
    revision: Gauge,
    since_sync: GaugeF,
    last_sync: Mutex<Option<Instant>>,
    errors: Family<KindLabel, Counter>,
    source_connected: Gauge,
    source_stale: GaugeF,
    /// Since when the source is stale, ms since the epoch (0: current).
    source_stale_since: AtomicU64,
    source_warnings: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn set_counter(c: &Counter, v: u64) {
    c.inner().store(v, Ordering::Relaxed);
}

impl Metrics {
    /// A registry with every metric registered (`bulkhead_up` is 1).
    pub fn new() -> Self {
        let mut r = Registry::default();
        macro_rules! reg {
            ($name:literal, $help:literal, $m:expr) => {{
                let m = $m;
                r.register($name, $help, m.clone());
                m
            }};
        }
        let m = Metrics {
            external: EXTERNAL.into(),
            unknown: "unknown".into(),
            flows: reg!(
                "bulkhead_flows",
                "Flows ended (final records), by verdict, endpoint direction and namespace pair",
                Family::default()
            ),
            flow_packets: reg!(
                "bulkhead_flow_packets",
                "Passed packets of flow records (both directions)",
                Family::default()
            ),
            flow_bytes: reg!(
                "bulkhead_flow_bytes",
                "Passed bytes of flow records (both directions)",
                Family::default()
            ),
            audit_flows: reg!(
                "bulkhead_audit_flows",
                "Flows ended that policies in audit mode judged, by audit verdict (allowed, would_deny) and policy",
                Family::default()
            ),
            decisions: reg!(
                "bulkhead_policy_decisions",
                "Flows ended, by the tier that decided them (admin, networkpolicy, baseline, none) and its action (accept, deny, pass, allow) and endpoint direction",
                Family::default()
            ),
            drops: reg!(
                "bulkhead_drops",
                "Dropped packets in flow records, by reason and endpoint namespace",
                Family::default()
            ),
            drop_bytes: reg!(
                "bulkhead_drop_bytes",
                "Dropped bytes in flow records, by reason and endpoint namespace",
                Family::default()
            ),
            events: reg!(
                "bulkhead_flow_events",
                "Live notifications read from the ring buffer (new_flow, drop)",
                Family::default()
            ),
            kernel_flow: reg!(
                "bulkhead_kernel_flow",
                "The kernel's flow accounting counters (FLOW_STATS), by counter",
                Family::default()
            ),
            kernel_drops: reg!(
                "bulkhead_kernel_drops",
                "Packets dropped by the kernel programs (DROPS), by reason",
                Family::default()
            ),
            deltas: reg!(
                "bulkhead_flow_deltas",
                "Flow deltas received: drained table entries (table) and fallback events (ring)",
                Family::default()
            ),
            records_lost: reg!(
                "bulkhead_flow_records_lost",
                "Flow records lost, by pipeline stage and reason",
                Family::default()
            ),
            records_exported: reg!(
                "bulkhead_flow_records_exported",
                "Flow records delivered, by exporter",
                Family::default()
            ),
            records_pending: reg!(
                "bulkhead_flow_records_pending",
                "Flow records queued in an exporter",
                Family::default()
            ),
            cache_flows: reg!(
                "bulkhead_flow_cache_flows",
                "Flows in the agent's flow cache",
                Gauge::default()
            ),
            history_records: reg!(
                "bulkhead_flow_history_records",
                "Records in the in-memory recent history",
                Gauge::default()
            ),
            map_entries: reg!(
                "bulkhead_map_entries",
                "Entries in use per eBPF map",
                Family::default()
            ),
            map_capacity: reg!(
                "bulkhead_map_capacity",
                "Capacity (max_entries) per eBPF map",
                Family::default()
            ),
            map_fill: reg!(
                "bulkhead_map_fill_ratio",
                "Fill of each eBPF map (entries / capacity)",
                Family::default()
            ),
            up: reg!("bulkhead_up", "1 while the agent runs", Gauge::default()),
            revision: reg!(
                "bulkhead_policy_revision",
                "Policy revision in force",
                Gauge::default()
            ),
            since_sync: reg!(
                "bulkhead_seconds_since_last_sync",
                "Seconds since the last successful policy sync (-1: none yet)",
                GaugeF::default()
            ),
            source_connected: reg!(
                "bulkhead_source_connected",
                "Whether the policy source (manifest directory, Kubernetes API) is reachable now",
                Gauge::default()
            ),
            source_stale: reg!(
                "bulkhead_source_view_stale_seconds",
                "Seconds since the policy source stopped answering (0 while it answers): the age of the view in force",
                GaugeF::default()
            ),
            source_stale_since: AtomicU64::new(0),
            source_warnings: reg!(
                "bulkhead_source_warnings",
                "Objects of the source accepted with a warning or left out (named ports no pod declares, address conflicts, unusable objects)",
                Gauge::default()
            ),
            last_sync: Mutex::new(None),
            errors: reg!(
                "bulkhead_agent_errors",
                "Agent errors, by kind",
                Family::default()
            ),
            registry: Registry::default(),
        };
        m.up.set(1);
        m.since_sync.set(-1.0);
        for s in FLOW_STATS {
            let _ = m.kernel_flow.get_or_create(&StatLabel { stat: s.name() });
        }
        Metrics { registry: r, ..m }
    }

    fn ns(&self, p: &Option<Arc<PodInfo>>) -> Arc<str> {
        p.as_ref()
            .map_or_else(|| self.external.clone(), |p| p.namespace.clone())
    }

    /// Counts a record (flow records into flows, packets, bytes and drops;
    /// notifications into events).
    pub fn observe(&self, r: &FlowRecord) {
        if r.kind == RecordKind::Event {
            let event = match r.event {
                Some(super::record::EventType::NewFlow) => "new_flow",
                Some(super::record::EventType::Drop) => "drop",
                None => "unknown",
            };
            self.events.get_or_create(&EventLabel { event }).inc();
            return;
        }
        let labels = FlowLabels {
            verdict: r.verdict.as_str(),
            direction: r.direction.as_str(),
            src_namespace: self.ns(&r.src.pod),
            dst_namespace: self.ns(&r.dst.pod),
        };
        if r.end_reason != Some(EndReason::Active) {
            self.flows.get_or_create(&labels).inc();
            if let Some((tier, action)) = decision(r) {
                let labels = DecisionLabels {
                    tier,
                    action,
                    direction: r.direction.as_str(),
                };
                self.decisions.get_or_create(&labels).inc();
            }
            if let Some(audit) = &r.audit {
                for p in audit.policies.iter() {
                    let labels = AuditLabels {
                        verdict: audit.verdict.as_str(),
                        policy: p.name.clone(),
                    };
                    self.audit_flows.get_or_create(&labels).inc();
                }
            }
        }
        let packets = r.packets.total();
        if packets > 0 {
            self.flow_packets.get_or_create(&labels).inc_by(packets);
            self.flow_bytes
                .get_or_create(&labels)
                .inc_by(r.bytes.total());
        }
        if r.dropped.packets > 0 {
            let d = DropLabels {
                reason: r.drop_reason.and_then(|d| d.name()).unwrap_or("unknown"),
                namespace: r
                    .endpoint
                    .as_ref()
                    .map_or_else(|| self.unknown.clone(), |p| p.namespace.clone()),
            };
            self.drops.get_or_create(&d).inc_by(r.dropped.packets);
            self.drop_bytes.get_or_create(&d).inc_by(r.dropped.bytes);
        }
    }

    /// Sets the kernel's flow counters and the records it lost
    /// (`stage="kernel"`: `fallback_lost`; `stage="kernel_events"`:
    /// notifications lost, their packets are still counted in flows).
    pub fn set_kernel_flow_stats(&self, stats: &KernelFlowStats) {
        for s in FLOW_STATS {
            set_counter(
                &self
                    .kernel_flow
                    .get_or_create(&StatLabel { stat: s.name() }),
                stats[s as usize],
            );
        }
        use bulkhead_common::FlowStat;
        self.set_lost(
            "kernel",
            "fallback_lost",
            stats[FlowStat::FallbackLost as usize],
        );
        self.set_lost(
            "kernel_events",
            "ring_full",
            stats[FlowStat::EventsLost as usize],
        );
    }

    /// Sets the kernel's per-reason drop counters (DROPS, indexed by
    /// `DropReason` number).
    pub fn set_kernel_drops(&self, by_reason: &[u64]) {
        for r in DROP_REASONS {
            if let Some(v) = by_reason.get(r as usize) {
                set_counter(
                    &self
                        .kernel_drops
                        .get_or_create(&ReasonLabel { reason: r.name() }),
                    *v,
                );
            }
        }
    }

    /// Counts received deltas (`source`: `table` or `ring`).
    pub fn add_deltas(&self, source: &'static str, n: u64) {
        self.deltas.get_or_create(&SourceLabel { source }).inc_by(n);
    }

    /// Sets the records a stage lost for a reason (an absolute count).
    pub fn set_lost(&self, stage: &str, reason: &str, n: u64) {
        set_counter(
            &self.records_lost.get_or_create(&StageLabels {
                stage: stage.into(),
                reason: reason.into(),
            }),
            n,
        );
    }

    /// Mirrors an exporter's counters.
    pub fn set_export_stats(&self, s: &ExportStats) {
        let exporter: Arc<str> = s.exporter.as_str().into();
        for (reason, n) in &s.lost {
            self.set_lost(&s.exporter, reason, *n);
        }
        set_counter(
            &self.records_exported.get_or_create(&ExporterLabel {
                exporter: exporter.clone(),
            }),
            s.exported,
        );
        self.records_pending
            .get_or_create(&ExporterLabel { exporter })
            .set(s.pending as i64);
    }

    /// Sets the flows cached and records in history.
    pub fn set_pipeline(&self, cache_flows: usize, history_records: usize) {
        self.cache_flows.set(cache_flows as i64);
        self.history_records.set(history_records as i64);
    }

    /// Sets the fill of an eBPF map.
    pub fn set_map_fill(&self, map: &str, used: u64, capacity: u64) {
        let l = MapLabel { map: map.into() };
        self.map_entries.get_or_create(&l).set(used as i64);
        self.map_capacity.get_or_create(&l).set(capacity as i64);
        let ratio = if capacity == 0 {
            0.0
        } else {
            used as f64 / capacity as f64
        };
        self.map_fill.get_or_create(&l).set(ratio);
    }

    /// Sets the policy revision in force.
    pub fn set_revision(&self, revision: u64) {
        self.revision.set(revision as i64);
    }

    /// Records a successful policy sync (now).
    pub fn sync_succeeded(&self) {
        *self.last_sync.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    /// Counts an agent error of a kind (`sync`, `hooks`, `manifests`, ...).
    pub fn error(&self, kind: &str) {
        self.errors
            .get_or_create(&KindLabel { kind: kind.into() })
            .inc();
    }

    /// Records the policy source's state.
    pub fn set_source(&self, connected: bool, stale_since_unix_ms: Option<u64>, warnings: u64) {
        self.source_connected.set(connected as i64);
        self.source_stale_since
            .store(stale_since_unix_ms.unwrap_or(0), Ordering::Relaxed);
        self.source_warnings.set(warnings as i64);
    }

    /// Sets `bulkhead_up` (0 while shutting down).
    pub fn set_up(&self, up: bool) {
        self.up.set(up as i64);
    }

    /// The OpenMetrics text exposition ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        if let Some(t) = *self.last_sync.lock().unwrap_or_else(|e| e.into_inner()) {
            self.since_sync.set(t.elapsed().as_secs_f64());
        }
        let stale_since = self.source_stale_since.load(Ordering::Relaxed);
        let stale_ms = match stale_since {
            0 => 0,
            since => bulkhead_policy::source::now_unix_ms().saturating_sub(since),
        };
        self.source_stale.set(stale_ms as f64 / 1000.0);
        let mut out = String::with_capacity(8192);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// The tier and action that decided a flow record, as the
/// `bulkhead_policy_decisions` labels; `None` for a flow dropped for a
/// reason that is no policy's (malformed, spoofed: `bulkhead_drops` counts
/// those).
///
/// - A cluster-admin rule named in `policies` decided: its tier (`admin`,
///   `baseline`) and action (`accept`, `deny`, or `pass` for a flow allowed
///   after a `Pass` that nothing later decided). A denied flow naming a
///   `Pass` rule was denied by NetworkPolicy's isolation after the `Pass`.
/// - Else NetworkPolicy: `allow` (an allowing rule named), `deny`
///   (isolation: no rule allowed it).
/// - Else `none`: allowed with no policy selecting the endpoint that way
///   (`allow`), or a policy drop whose policies are not known any more
///   (`deny`).
pub fn decision(r: &FlowRecord) -> Option<(&'static str, &'static str)> {
    let allowed = r.verdict == FlowVerdict::Allowed;
    let admin = r.policies.iter().find_map(|p| {
        let tier = match p.tier.as_deref()? {
            "Admin" => "admin",
            "Baseline" => "baseline",
            _ => return None,
        };
        let action = match p.action.as_deref()? {
            "Accept" => "accept",
            "Deny" => "deny",
            "Pass" => "pass",
            _ => return None,
        };
        Some((tier, action))
    });
    match admin {
        Some((_, "pass")) if !allowed => return Some(("networkpolicy", "deny")),
        Some(decided) => return Some(decided),
        None => {}
    }
    let networkpolicy = r.policies.iter().any(|p| p.tier.is_none());
    let policy_drop = r.drop_reason.is_some_and(|d| {
        matches!(
            d.drop_reason(),
            Some(DropReason::PolicyDenied | DropReason::PolicyRevoked)
        )
    });
    match (allowed, networkpolicy) {
        (true, true) => Some(("networkpolicy", "allow")),
        (true, false) => Some(("none", "allow")),
        (false, true) => Some(("networkpolicy", "deny")),
        (false, false) if policy_drop => Some(("none", "deny")),
        (false, false) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests_support::sample;
    use crate::record::{Audit, AuditVerdict, Dropped, PolicyRef, Reason};
    use bulkhead_common::{FLOW_STATS_MAX, FlowStat};

    /// The value of the sample line starting with `name ` in `text`.
    fn value(text: &str, name: &str) -> f64 {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    }

    #[test]
    fn the_source_state_and_the_age_of_a_stale_view_are_exported() {
        let m = Metrics::new();
        m.set_source(true, None, 2);
        let text = m.render();
        assert_eq!(value(&text, "bulkhead_source_connected"), 1.0);
        assert_eq!(value(&text, "bulkhead_source_view_stale_seconds"), 0.0);
        assert_eq!(value(&text, "bulkhead_source_warnings"), 2.0);
        let five_seconds_ago = bulkhead_policy::source::now_unix_ms() - 5_000;
        m.set_source(false, Some(five_seconds_ago), 0);
        let text = m.render();
        assert_eq!(value(&text, "bulkhead_source_connected"), 0.0);
        assert!(value(&text, "bulkhead_source_view_stale_seconds") >= 5.0);
    }

    /// Audited flows count once per staged policy; interim records and
    /// unaudited flows do not count.
    #[test]
    fn audited_flows_count_per_policy_and_verdict() {
        let m = Metrics::new();
        let mut r = sample();
        m.observe(&r);
        r.audit = Some(Audit {
            verdict: AuditVerdict::WouldDeny,
            policies: vec![PolicyRef {
                name: "prod/staged".into(),
                rule: None,
                ..Default::default()
            }]
            .into(),
        });
        m.observe(&r);
        m.observe(&r);
        r.end_reason = Some(EndReason::Active);
        m.observe(&r);
        let text = m.render();
        let line = r#"bulkhead_audit_flows_total{verdict="would_deny",policy="prod/staged"} 2"#;
        assert!(text.contains(line), "missing {line} in\n{text}");
        assert_eq!(
            text.matches("bulkhead_audit_flows_total{").count(),
            1,
            "{text}"
        );
    }

    #[test]
    fn renders_every_family_with_bounded_labels() {
        let m = Metrics::new();
        let mut r = sample();
        m.observe(&r);
        r.verdict = FlowVerdict::Denied;
        r.packets = Default::default();
        r.dropped = Dropped {
            packets: 3,
            bytes: 180,
        };
        r.drop_reason = Some(Reason(1));
        m.observe(&r);
        r.end_reason = Some(EndReason::Active);
        m.observe(&r);
        let mut k = [0u64; FLOW_STATS_MAX as usize];
        k[FlowStat::FallbackLost as usize] = 2;
        k[FlowStat::EntriesCreated as usize] = 10;
        m.set_kernel_flow_stats(&k);
        m.set_kernel_drops(&[0, 5, 0, 1]);
        m.set_map_fill("CT", 50, 200);
        m.set_revision(7);
        m.sync_succeeded();
        m.error("sync");
        m.add_deltas("table", 4);
        m.set_export_stats(&ExportStats {
            exporter: "jsonl".into(),
            submitted: 10,
            exported: 9,
            lost: [("queue_full".to_string(), 1)].into(),
            pending: 0,
        });
        let text = m.render();
        for line in [
            r#"bulkhead_flows_total{verdict="allowed",direction="egress",src_namespace="prod",dst_namespace="external"} 1"#,
            r#"bulkhead_flows_total{verdict="denied",direction="egress",src_namespace="prod",dst_namespace="external"} 1"#,
            r#"bulkhead_flow_packets_total{verdict="allowed",direction="egress",src_namespace="prod",dst_namespace="external"} 5"#,
            r#"bulkhead_flow_bytes_total{verdict="allowed",direction="egress",src_namespace="prod",dst_namespace="external"} 500"#,
            r#"bulkhead_drops_total{reason="policy_denied",namespace="prod"} 6"#,
            r#"bulkhead_kernel_flow_total{stat="entries_created"} 10"#,
            r#"bulkhead_kernel_flow_total{stat="events_lost"} 0"#,
            r#"bulkhead_kernel_drops_total{reason="policy_denied"} 5"#,
            r#"bulkhead_kernel_drops_total{reason="policy_revoked"} 1"#,
            r#"bulkhead_flow_records_lost_total{stage="kernel",reason="fallback_lost"} 2"#,
            r#"bulkhead_flow_records_lost_total{stage="jsonl",reason="queue_full"} 1"#,
            r#"bulkhead_flow_records_exported_total{exporter="jsonl"} 9"#,
            r#"bulkhead_flow_deltas_total{source="table"} 4"#,
            r#"bulkhead_map_entries{map="CT"} 50"#,
            r#"bulkhead_map_capacity{map="CT"} 200"#,
            r#"bulkhead_map_fill_ratio{map="CT"} 0.25"#,
            "bulkhead_up 1",
            "bulkhead_policy_revision 7",
            r#"bulkhead_agent_errors_total{kind="sync"} 1"#,
            "# TYPE bulkhead_drops counter",
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(text.contains("bulkhead_seconds_since_last_sync 0."));
        // Never a pod name or address in a label.
        assert!(!text.contains("web-1") && !text.contains("10.0.0.1"));
    }

    fn admin(tier: &str, action: &str) -> PolicyRef {
        PolicyRef {
            name: "ClusterNetworkPolicy/guard".into(),
            rule: Some(1),
            tier: Some(tier.into()),
            action: Some(action.into()),
            rule_name: Some("r".into()),
        }
    }

    /// Each final flow record counts once under the tier and action that
    /// decided it; interim records and drops that are no policy's do not.
    #[test]
    fn decisions_count_per_tier_and_action() {
        let m = Metrics::new();
        let allowed = sample();
        let mut denied = sample();
        denied.verdict = FlowVerdict::Denied;
        denied.packets = Default::default();
        denied.dropped = Dropped {
            packets: 1,
            bytes: 60,
        };
        denied.drop_reason = Some(Reason(DropReason::PolicyDenied as u8));
        let with = |r: &FlowRecord, policies: Vec<PolicyRef>| {
            let mut r = r.clone();
            r.policies = policies.into();
            r
        };
        let isolating = PolicyRef {
            name: "prod/default-deny".into(),
            rule: None,
            ..Default::default()
        };
        // (record, times observed, expected labels)
        type Case = (FlowRecord, u64, Option<(&'static str, &'static str)>);
        let cases: Vec<Case> = vec![
            (allowed.clone(), 2, Some(("networkpolicy", "allow"))),
            (with(&allowed, vec![]), 3, Some(("none", "allow"))),
            (
                with(&allowed, vec![admin("Admin", "Accept")]),
                4,
                Some(("admin", "accept")),
            ),
            (
                with(&allowed, vec![admin("Admin", "Pass")]),
                5,
                Some(("admin", "pass")),
            ),
            (
                with(&allowed, vec![admin("Baseline", "Accept")]),
                6,
                Some(("baseline", "accept")),
            ),
            (
                with(&denied, vec![admin("Admin", "Deny")]),
                7,
                Some(("admin", "deny")),
            ),
            (
                with(&denied, vec![admin("Baseline", "Deny")]),
                8,
                Some(("baseline", "deny")),
            ),
            // Isolation, also after an Admin Pass.
            (
                with(&denied, vec![isolating.clone()]),
                9,
                Some(("networkpolicy", "deny")),
            ),
            (
                with(&denied, vec![admin("Admin", "Pass")]),
                10,
                Some(("networkpolicy", "deny")),
            ),
            (with(&denied, vec![]), 11, Some(("none", "deny"))),
        ];
        let mut expected = std::collections::HashMap::<(&str, &str), u64>::new();
        for (r, times, want) in &cases {
            assert_eq!(decision(r), *want, "{:?}", r.policies);
            for _ in 0..*times {
                m.observe(r);
            }
            *expected.entry(want.unwrap()).or_default() += times;
        }
        // Not counted: a malformed drop, an interim record, a notification.
        let mut malformed = with(&denied, vec![]);
        malformed.drop_reason = Some(Reason(DropReason::Malformed as u8));
        assert_eq!(decision(&malformed), None);
        m.observe(&malformed);
        let mut active = with(&allowed, vec![admin("Admin", "Accept")]);
        active.end_reason = Some(EndReason::Active);
        m.observe(&active);
        let text = m.render();
        for ((tier, action), n) in &expected {
            let line = format!(
                r#"bulkhead_policy_decisions_total{{tier="{tier}",action="{action}",direction="egress"}} {n}"#
            );
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
        assert_eq!(
            text.matches("bulkhead_policy_decisions_total{").count(),
            expected.len(),
            "{text}"
        );
        assert!(text.contains("# TYPE bulkhead_policy_decisions counter"));
    }
}
