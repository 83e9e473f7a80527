//! The cluster-mode benchmark's report: one serializable value written as
//! raw JSON, and the same numbers as Markdown, the acceptance items of
//! issue 13 first.

use std::fmt::Write as _;

use serde::Serialize;

use super::churn::{ChurnPlan, ChurnResult};
use super::logstats::AgentSteps;
use super::measure::{Enforcement, InitialSync, Series};
use super::procfs::{CpuUse, Memory};
use crate::report::int;
use crate::run_info::{ElfIdentity, RunInfo};

/// The aim of the issue for agent memory per remote pod, KiB.
pub const AIM_KIB_PER_POD: f64 = 2.0;
/// The anchor the issue compares with, KiB per pod.
pub const ANCHOR_KIB_PER_POD: f64 = 10.5;
/// Where the anchor comes from.
pub const ANCHOR_SOURCE: &str = "Cilium's scalability report (docs.cilium.io, Operations → \
     Performance → Scalability report: 1,000 nodes, 100k pods), about 10.5 KiB of agent memory \
     per pod, as issue 13 cites it";

/// What the run did.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    /// Seed of the synthetic cluster and the churn.
    pub seed: u64,
    /// Namespaces of the synthetic cluster (plus the local one).
    pub namespaces: usize,
    /// Workloads per application namespace.
    pub apps_per_namespace: usize,
    /// Synthetic NetworkPolicies (plus the 4 local ones).
    pub policies: usize,
    /// (remote pods, latency rounds) of the latency scales.
    pub latency: Vec<(usize, usize)>,
    /// Remote pods of the churn, idle CPU scale.
    pub churn_pods: usize,
    /// The churn.
    pub churn: ChurnPlan,
    /// Seconds of the idle CPU window.
    pub idle_seconds: u64,
    /// The two scales memory per pod is computed from.
    pub memory_pods: (usize, usize),
    /// Seconds between the initial sync and the memory reading.
    pub settle_seconds: u64,
}

/// What the API server did during a scale (its counters).
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct ApiCounts {
    /// List requests (pages).
    pub lists: u64,
    /// Watches opened.
    pub watches_opened: u64,
    /// 410 Gone answers.
    pub gone_sent: u64,
    /// Writes.
    pub writes: u64,
}

/// One scale.
#[derive(Clone, Debug, Serialize)]
pub struct ScaleResult {
    /// Remote pods (other nodes) at the start.
    pub remote_pods: usize,
    /// Namespaces.
    pub namespaces: usize,
    /// NetworkPolicies.
    pub policies: usize,
    /// JSON size of all objects, MiB.
    pub objects_mib: f64,
    /// Seconds to load them into the API server.
    pub load_seconds: f64,
    /// The agent's initial sync.
    pub initial_sync: InitialSync,
    /// The policy on the wire after it.
    pub enforcement: Option<Enforcement>,
    /// The agent's memory after the settle.
    pub memory: Memory,
    /// CPU with nothing changing.
    pub idle_cpu: Option<CpuUse>,
    /// Change → enforced latencies.
    pub latency: Vec<Series>,
    /// The agent's memory after the latency rounds (the pod count is back
    /// where it was).
    pub memory_after_latency: Option<Memory>,
    /// The agent's steps during the latency rounds.
    pub latency_steps: Option<AgentSteps>,
    /// The churn.
    pub churn: Option<ChurnResult>,
    /// The API server's counters at the end.
    pub api: ApiCounts,
}

/// Memory per remote pod from two scales.
#[derive(Clone, Debug, Serialize)]
pub struct PerPod {
    /// Smaller scale's remote pods and RSS.
    pub small: (usize, u64),
    /// Larger scale's.
    pub big: (usize, u64),
    /// (RSS_big − RSS_small) / (pods_big − pods_small), KiB.
    pub kib_per_pod: f64,
    /// The same from anonymous RSS, KiB.
    pub anon_kib_per_pod: f64,
    /// The aim, KiB.
    pub aim_kib: f64,
    /// The anchor, KiB.
    pub anchor_kib: f64,
    /// Its source.
    pub anchor_source: String,
    /// Both scales enforced their view (else the larger number holds the
    /// compiled model but no map image in force).
    pub both_enforced: bool,
}

/// A whole run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The run (top-level fields in JSON).
    #[serde(flatten)]
    pub run: RunInfo,
    /// The agent binary measured.
    pub agent: ElfIdentity,
    /// What the run did.
    pub plan: Plan,
    /// Each scale.
    pub scales: Vec<ScaleResult>,
    /// Memory per remote pod.
    pub per_pod: Option<PerPod>,
    /// `/proc/loadavg` at the start and at the end (other work on the
    /// machine stretches the latencies).
    pub loadavg: (String, String),
}

impl PerPod {
    /// From the two scales' results, if both have a reading.
    pub fn of(small: &ScaleResult, big: &ScaleResult) -> Option<Self> {
        let dp = big
            .remote_pods
            .checked_sub(small.remote_pods)
            .filter(|&d| d > 0)? as f64;
        let d = |a: u64, b: u64| (b as f64 - a as f64) / dp;
        (small.memory.rss_kib > 0 && big.memory.rss_kib > 0).then(|| Self {
            small: (small.remote_pods, small.memory.rss_kib),
            big: (big.remote_pods, big.memory.rss_kib),
            kib_per_pod: d(small.memory.rss_kib, big.memory.rss_kib),
            anon_kib_per_pod: d(small.memory.anon_kib, big.memory.anon_kib),
            aim_kib: AIM_KIB_PER_POD,
            anchor_kib: ANCHOR_KIB_PER_POD,
            anchor_source: ANCHOR_SOURCE.to_owned(),
            both_enforced: small.initial_sync.enforced && big.initial_sync.enforced,
        })
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0} ms")
    } else {
        format!("{v:.1} ms")
    }
}

fn k(n: usize) -> String {
    if n >= 1000 && n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        int(n)
    }
}

impl Report {
    /// The report as Markdown.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        self.run.markdown_header(
            &mut s,
            "Cluster-mode benchmark (agent with the Kubernetes API)",
            true,
        );
        let _ = writeln!(
            s,
            "Agent binary: `{}` ({}).\n",
            self.agent.path,
            self.agent.describe()
        );
        let _ = writeln!(
            s,
            "Load average (1, 5, 15 min) at the start: {}; at the end: {}.\n",
            self.loadavg.0, self.loadavg.1
        );
        self.summary(&mut s);
        self.latency(&mut s);
        self.scales_table(&mut s);
        self.churn(&mut s);
        super::method::write(&mut s, self);
        s
    }

    fn summary(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "## Issue 13's acceptance items\n\n| item | result |\n| --- | --- |"
        );
        for sc in &self.scales {
            if let Some(l) = sc.latency.first() {
                let _ = writeln!(
                    s,
                    "| pod created in the API → its policy enforced, {} pods, {} policies: p50 / p99 | {} / {} (max {}, {} samples) |",
                    k(sc.remote_pods),
                    int(sc.policies),
                    ms(l.p50_ms),
                    ms(l.p99_ms),
                    ms(l.max_ms),
                    l.samples
                );
            }
        }
        for sc in &self.scales {
            if let Some(c) = &sc.churn {
                let _ = writeln!(
                    s,
                    "| {} pod changes/s for {} s at {} pods: allowed requests unanswered | **{}** of {} ({}/s) |",
                    c.plan.rate,
                    c.plan.seconds,
                    k(sc.remote_pods),
                    c.flow.unanswered,
                    int(c.flow.sent as usize),
                    c.flow.rate
                );
            }
        }
        if let Some(p) = &self.per_pod {
            let verdict = if p.kib_per_pod <= p.aim_kib {
                "within"
            } else {
                "**above**"
            };
            let _ = writeln!(
                s,
                "| agent memory per remote pod ({} → {} pods) | **{:.2} KiB** ({verdict} the {:.0} KiB aim; anchor {:.1} KiB{}) |",
                k(p.small.0),
                k(p.big.0),
                p.kib_per_pod,
                p.aim_kib,
                p.anchor_kib,
                if p.both_enforced {
                    ""
                } else {
                    "; the larger scale could not be enforced, see below"
                }
            );
        }
        for sc in &self.scales {
            if let Some(c) = &sc.idle_cpu {
                let _ = writeln!(
                    s,
                    "| agent CPU when idle, {} pods | {:.2}% of one core ({:.2} s CPU in {:.0} s) |",
                    k(sc.remote_pods),
                    c.percent_of_core,
                    c.cpu_seconds,
                    c.seconds
                );
                let threads: Vec<String> = c
                    .by_thread
                    .iter()
                    .map(|(n, t)| format!("`{n}` {t:.2} s"))
                    .collect();
                let _ = writeln!(s, "| idle CPU by thread | {} |", threads.join(", "));
            }
        }
        let _ = writeln!(s);
        if let Some(p) = &self.per_pod {
            let _ = writeln!(
                s,
                "Memory per remote pod = (RSS at {} − RSS at {}) / ({} − {}) = ({} − {}) / {} pods; from anonymous RSS only: {:.2} KiB. Anchor: {}.\n",
                int(p.big.0),
                int(p.small.0),
                int(p.big.0),
                int(p.small.0),
                mib(p.big.1),
                mib(p.small.1),
                int(p.big.0 - p.small.0),
                p.anon_kib_per_pod,
                p.anchor_source
            );
        }
    }

    fn latency(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "## Change in the API → enforced on the node\n\n\
             One change at a time, timed from the write to the API server until the agent's state file says a revision at least the change's resourceVersion is in force (seen by inotify). The agent's own compile and switch times (its log) are over the same rounds.\n\n\
             | pods | change | samples | min | p50 | p90 | p99 | max | timeouts | agent compile p50 / max | agent switch p50 / max |\n\
             | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        );
        for sc in &self.scales {
            for l in &sc.latency {
                let steps = sc.latency_steps.clone().unwrap_or_default();
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | **{}** | {} | **{}** | {} | {} | {} / {} | {} / {} |",
                    k(sc.remote_pods),
                    l.change,
                    l.samples,
                    ms(l.min_ms),
                    ms(l.p50_ms),
                    ms(l.p90_ms),
                    ms(l.p99_ms),
                    ms(l.max_ms),
                    l.timeouts,
                    ms(steps.compile.median_ms),
                    ms(steps.compile.max_ms),
                    ms(steps.switch.median_ms),
                    ms(steps.switch.max_ms)
                );
            }
        }
        let _ = writeln!(s);
    }

    fn scales_table(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "## Initial sync and memory by scale\n\n\
             | remote pods | namespaces | policies | objects (JSON) | load into API server | initial sync | enforced | wire check (allowed / denied answered) | RSS at sync | RSS after settle | anon RSS | peak RSS | threads | RSS after the latency rounds |\n\
             | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
        );
        for sc in &self.scales {
            let i = &sc.initial_sync;
            let enforced = match &i.error {
                None if i.enforced => "yes".to_owned(),
                Some(e) => format!("**no**: {e}"),
                None => "**no**".to_owned(),
            };
            let wire = sc.enforcement.map_or("–".to_owned(), |e| {
                format!(
                    "{} / {}{}",
                    e.allowed_answered,
                    e.denied_answered,
                    if e.ok() { "" } else { " **wrong**" }
                )
            });
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.1} MiB | {:.1} s | {:.1} s | {enforced} | {wire} | {} | {} | {} | {} | {} | {} |",
                int(sc.remote_pods),
                sc.namespaces,
                int(sc.policies),
                sc.objects_mib,
                sc.load_seconds,
                i.seconds,
                mib(i.memory_at_sync.rss_kib),
                mib(sc.memory.rss_kib),
                mib(sc.memory.anon_kib),
                mib(sc.memory.peak_kib),
                sc.memory.threads,
                sc.memory_after_latency
                    .map_or("–".to_owned(), |m| mib(m.rss_kib))
            );
        }
        let _ = writeln!(s);
    }

    fn churn(&self, s: &mut String) {
        for sc in &self.scales {
            let Some(c) = &sc.churn else { continue };
            let e = &c.change_to_enforced;
            let _ = writeln!(
                s,
                "## Churn at {} pods\n\n\
                 Remote pods created, relabeled (canary track on/off) and deleted in turn, {} changes/s for {} s, while the client sends {} UDP requests/s to the server's echo port (allowed throughout).\n\n\
                 | | |\n| --- | --- |\n\
                 | changes made (achieved rate) | {} ({:.1}/s) |\n\
                 | remote pods before → after | {} → {} |\n\
                 | requests sent / answered / **unanswered** | {} / {} / **{}** |\n\
                 | slowest answer; answers over 100 ms | {:.1} ms; {} |\n\
                 | policy switches (dataplane revisions) | {} ({:.1} changes per switch) |\n\
                 | change → enforced p50 / p99 / max | {} / {} / {} ({} not enforced by the end) |\n\
                 | most changes not yet enforced, per tenth of the run | {:?} |\n\
                 | lag right after the last change | {} resourceVersions, {} changes |\n\
                 | caught up after the last change in | {} |\n\
                 | agent compiles: count, p50 / p99 / max | {}, {} / {} / {} |\n\
                 | agent switches: count, p50 / p99 / max | {}, {} / {} / {} |\n\
                 | agent RSS after the churn | {} |\n\
                 | agent error at the end | {} |\n",
                k(sc.remote_pods),
                c.plan.rate,
                c.plan.seconds,
                c.plan.flow_rate,
                c.changes,
                c.achieved_rate,
                int(c.pods_before),
                int(c.pods_after),
                c.flow.sent,
                c.flow.answered,
                c.flow.unanswered,
                c.flow.max_rtt_ms,
                c.flow.slow_answers,
                c.switches,
                c.changes_per_switch,
                ms(e.p50_ms),
                ms(e.p99_ms),
                ms(e.max_ms),
                e.timeouts,
                c.behind_by_tenth,
                c.lag_at_end_revisions,
                c.lag_at_end_changes,
                c.catch_up_s
                    .map_or("**not within the limit**".to_owned(), |t| format!(
                        "{t:.2} s"
                    )),
                c.steps.compile.count,
                ms(c.steps.compile.median_ms),
                ms(c.steps.compile.p99_ms),
                ms(c.steps.compile.max_ms),
                c.steps.switch.count,
                ms(c.steps.switch.median_ms),
                ms(c.steps.switch.p99_ms),
                ms(c.steps.switch.max_ms),
                mib(c.memory_after.rss_kib),
                c.agent_error.as_deref().unwrap_or("none"),
            );
            if !c.flow.unanswered_at_s.is_empty() {
                let _ = writeln!(
                    s,
                    "Unanswered requests were sent at (s into the flow): {:?}\n",
                    c.flow.unanswered_at_s
                );
            }
        }
    }
}
