//! Pod churn with an allowed flow running: remote pods created, relabeled
//! and deleted at a fixed rate (one change every 1/rate s, on schedule),
//! while the client sends requests to the server's echo port at a fixed
//! rate and counts those left unanswered. A recorder thread notes every
//! new enforced revision (inotify on the state file), so each change's
//! time to enforcement and how far the agent was behind at any moment are
//! known afterwards.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use serde::Serialize;

use super::flow::{Flow, FlowResult};
use super::logstats::{self, AgentSteps};
use super::measure::{Latencies, Series, rv_of};
use super::node::{ECHO_PORT, Node};
use super::procfs::Memory;
use super::state_watch::{StateWatch, enforced};
use super::synth::{Change, Synthetic};
use crate::dataplane::netns::SERVER_IP;

/// What the churn does.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct ChurnPlan {
    /// Pod changes per second.
    pub rate: u32,
    /// How long, seconds.
    pub seconds: u64,
    /// Requests per second of the allowed flow.
    pub flow_rate: u32,
    /// How long the agent may take to catch up afterwards.
    pub catch_up_limit_s: u64,
}

/// What the churn saw.
#[derive(Clone, Debug, Serialize)]
pub struct ChurnResult {
    /// The plan.
    pub plan: ChurnPlan,
    /// Remote pods before and after.
    pub pods_before: usize,
    /// After.
    pub pods_after: usize,
    /// Changes made.
    pub changes: u64,
    /// Changes per second achieved.
    pub achieved_rate: f64,
    /// The allowed flow.
    pub flow: FlowResult,
    /// Policy switches during the churn (the dataplane's revision advanced
    /// by this much).
    pub switches: u64,
    /// Changes each switch covered, on average.
    pub changes_per_switch: f64,
    /// Time from each change to its enforcement.
    pub change_to_enforced: Series,
    /// Changes not yet enforced, most at any change, in each tenth of the
    /// run (a lag that grows shows as a rising row).
    pub behind_by_tenth: Vec<u64>,
    /// resourceVersions the agent was behind the server right after the
    /// last change.
    pub lag_at_end_revisions: u64,
    /// Changes not yet enforced right after the last change.
    pub lag_at_end_changes: u64,
    /// Seconds from the last change until it was enforced.
    pub catch_up_s: Option<f64>,
    /// The agent's error at the end, if any.
    pub agent_error: Option<String>,
    /// The agent's compiles and switches during the churn.
    pub steps: AgentSteps,
    /// The agent's memory after the churn.
    pub memory_after: Memory,
}

/// Every enforced revision the agent wrote, with when it was seen.
struct Recorder {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Vec<(Instant, u64)>>,
}

impl Recorder {
    fn start(node: &Node) -> Result<Self> {
        let watch = StateWatch::new(&node.pins)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut last = watch.read().as_ref().and_then(enforced).unwrap_or(0);
            while !stop2.load(Ordering::Relaxed) {
                let new = |s: &bulkhead_agent::AgentState| enforced(s).is_some_and(|e| e > last);
                if let Some((s, at)) = watch.wait(Duration::from_millis(100), new) {
                    last = enforced(&s).unwrap_or(last);
                    seen.push((at, last));
                }
            }
            seen
        });
        Ok(Self { stop, handle })
    }

    fn finish(self) -> Vec<(Instant, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or_default()
    }
}

/// Runs the churn on `node`'s API server with `synth`'s remote pods.
pub fn run(node: &Node, synth: &mut Synthetic, plan: ChurnPlan) -> Result<ChurnResult> {
    let api = node.api();
    let watch = StateWatch::new(&node.pins)?;
    let state = watch.read().context("no agent state")?;
    let revision_before = state.revision;
    let pods_before = synth.remote.len();
    let log_mark = logstats::mark(&node.agent_log());
    let recorder = Recorder::start(node)?;
    let max_for = Duration::from_secs(plan.seconds + plan.catch_up_limit_s + 10);
    let flow = Flow::start(
        &node.topo.client,
        SERVER_IP,
        ECHO_PORT,
        plan.flow_rate,
        max_for,
    );
    std::thread::sleep(Duration::from_secs(1));
    let total = plan.rate as u64 * plan.seconds;
    let every = Duration::from_secs(1) / plan.rate.max(1);
    let mut changes: Vec<(Instant, u64)> = Vec::with_capacity(total as usize);
    let started = Instant::now();
    for i in 0..total {
        let due = started + every * i as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let Some(change) = synth.churn_change(i) else {
            break;
        };
        let at = Instant::now();
        let rv = match change {
            Change::Apply(pod) => rv_of(&api.apply(pod)?)?,
            Change::DeletePod(ns, name) => {
                api.delete("Pod", Some(&ns), &name)?;
                api.resource_version()
            }
        };
        changes.push((at, rv));
        if (i + 1) % (plan.rate as u64 * 5) == 0 {
            eprint!(
                "\r[cluster]   churn: {} s, {} changes",
                started.elapsed().as_secs(),
                i + 1
            );
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!();
    let end_rv = api.resource_version();
    let at_end = watch.read().as_ref().and_then(enforced).unwrap_or(0);
    let caught = watch.until_enforced(end_rv, Duration::from_secs(plan.catch_up_limit_s));
    let last_change = changes.last().map_or(started, |c| c.0);
    std::thread::sleep(Duration::from_secs(1));
    let flow = flow.finish();
    let seen = recorder.finish();
    let end = watch.read().context("no agent state")?;
    let switches = end.revision.saturating_sub(revision_before);
    Ok(ChurnResult {
        plan,
        pods_before,
        pods_after: synth.remote.len(),
        changes: changes.len() as u64,
        achieved_rate: changes.len() as f64 / elapsed,
        flow,
        switches,
        changes_per_switch: changes.len() as f64 / switches.max(1) as f64,
        change_to_enforced: to_enforced(&changes, &seen).series("pod change during churn"),
        behind_by_tenth: behind_by_tenth(&changes, &seen),
        lag_at_end_revisions: end_rv.saturating_sub(at_end),
        lag_at_end_changes: changes.iter().filter(|c| c.1 > at_end).count() as u64,
        catch_up_s: caught.map(|(_, at)| (at - last_change).as_secs_f64()),
        agent_error: end.error,
        steps: logstats::since(&node.agent_log(), log_mark),
        memory_after: node
            .agent
            .as_ref()
            .and_then(|a| Memory::of(a.pid))
            .unwrap_or_default(),
    })
}

/// Each change's time until an enforced revision covered it.
fn to_enforced(changes: &[(Instant, u64)], seen: &[(Instant, u64)]) -> Latencies {
    let mut out = Latencies::default();
    let mut j = 0;
    for &(at, rv) in changes {
        while j < seen.len() && seen[j].1 < rv {
            j += 1;
        }
        out.record(seen.get(j).map(|s| s.0.saturating_duration_since(at)));
    }
    out
}

/// Changes not yet enforced just after each change; the most in each
/// tenth of the run.
fn behind_by_tenth(changes: &[(Instant, u64)], seen: &[(Instant, u64)]) -> Vec<u64> {
    let mut out = vec![0u64; 10];
    let mut j = 0;
    let mut enforced = 0;
    for (i, &(at, _)) in changes.iter().enumerate() {
        while j < seen.len() && seen[j].0 <= at {
            enforced = seen[j].1;
            j += 1;
        }
        let done = changes[..=i].partition_point(|c| c.1 <= enforced);
        let tenth = i * 10 / changes.len();
        out[tenth] = out[tenth].max((i + 1 - done) as u64);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_meet_the_revisions_that_enforced_them() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        // Ten changes 10 ms apart at resourceVersions 101..=110.
        let changes: Vec<_> = (0..10).map(|i| (ms(i * 10), 101 + i)).collect();
        // Enforced: up to 103 at 35 ms, up to 110 at 200 ms.
        let seen = vec![(ms(35), 103), (ms(200), 110)];
        let s = to_enforced(&changes, &seen).series("x");
        assert_eq!((s.samples, s.timeouts), (10, 0));
        assert!((s.min_ms - 15.0).abs() < 0.1, "{s:?}");
        assert!((s.max_ms - 170.0).abs() < 0.2, "{s:?}");
        // Only the first three enforced: the rest time out.
        let s = to_enforced(&changes, &seen[..1]).series("x");
        assert_eq!((s.samples, s.timeouts), (3, 7));
        // At change i (10·i ms), changes after the enforced revision wait.
        let b = behind_by_tenth(&changes, &seen);
        assert_eq!(b, vec![1, 2, 3, 4, 2, 3, 4, 5, 6, 7]);
    }
}
