//! The phases of one scale: load the objects into the API server, start
//! the agent and time its initial sync, check that the policy is enforced,
//! read its memory, its CPU when idle, and the latency from a change in the
//! API to its enforcement.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::Value;

use super::agent::{Agent, AgentSpec};
use super::flow;
use super::node::{DENIED_PORT, ECHO_PORT, Node};
use super::procfs::{self, CpuUse, Memory};
use super::state_watch::{StateWatch, enforced, seen};
use super::synth::{self, LOCAL_NS, NODE_NAME, Synthetic};
use crate::dataplane::netns::SERVER_IP;

/// The resourceVersion the API server stored an object at.
pub fn rv_of(stored: &Value) -> Result<u64> {
    stored["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .context("the stored object has no numeric resourceVersion")
}

/// Applies every object; seconds it took.
pub fn load(node: &Node, objects: &[Value]) -> Result<f64> {
    let started = Instant::now();
    let step = (objects.len() / 10).max(1);
    for (i, o) in objects.iter().enumerate() {
        node.api().apply(o.clone()).context("loading an object")?;
        if (i + 1) % step == 0 {
            eprint!("\r[cluster]   loaded {}/{} objects", i + 1, objects.len());
        }
    }
    eprintln!();
    Ok(started.elapsed().as_secs_f64())
}

/// How the initial sync went.
#[derive(Clone, Debug, Serialize)]
pub struct InitialSync {
    /// Seconds from starting the agent to the view in force (or to the
    /// view being complete, when it could not be enforced).
    pub seconds: f64,
    /// The agent enforces the whole view.
    pub enforced: bool,
    /// The agent's error, if it could not.
    pub error: Option<String>,
    /// Memory right after it.
    pub memory_at_sync: Memory,
}

/// Starts the agent and waits (at most `timeout`) until it enforces
/// resourceVersion `rv`, or has the complete view and says why it cannot
/// enforce it.
pub fn start_agent(
    node: &mut Node,
    watch: &StateWatch,
    rv: u64,
    timeout: Duration,
) -> Result<InitialSync> {
    let kubeconfig = node.kubeconfig()?;
    let (socket, log) = (node.dir.join("agent.sock"), node.agent_log());
    let agent = Agent::start(&AgentSpec {
        netns: &node.topo.node,
        pins: &node.pins,
        kubeconfig: &kubeconfig,
        node_name: NODE_NAME,
        socket: &socket,
        log: &log,
    })?;
    let (pid, started) = (agent.pid, agent.started);
    node.agent = Some(agent);
    let done = watch.wait(timeout, |s| {
        s.pid == pid
            && (enforced(s).is_some_and(|e| e >= rv)
                || (seen(s).is_some_and(|e| e >= rv) && s.error.is_some()))
    });
    let Some((state, at)) = done else {
        let exited = node.agent.as_mut().and_then(Agent::exited);
        bail!(
            "the agent did not sync resourceVersion {rv} within {timeout:?} (exited: {exited:?}); state {:?}; log {}",
            node.state(),
            node.agent_log().display()
        );
    };
    let is_enforced = enforced(&state).is_some_and(|e| e >= rv);
    Ok(InitialSync {
        seconds: (at - started).as_secs_f64(),
        enforced: is_enforced,
        error: if is_enforced { None } else { state.error },
        memory_at_sync: Memory::of(pid).unwrap_or_default(),
    })
}

/// Whether the policy is in force on the wire: the allowed port answers,
/// the other does not.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Enforcement {
    /// The client's requests to the server's echo port are answered.
    pub allowed_answered: bool,
    /// The client's requests to a port no policy allows are answered
    /// (must be false).
    pub denied_answered: bool,
}

impl Enforcement {
    /// Both as the policy says.
    pub fn ok(&self) -> bool {
        self.allowed_answered && !self.denied_answered
    }
}

/// Probes both ports from the client.
pub fn enforcement(node: &Node) -> Result<Enforcement> {
    let wait = Duration::from_millis(500);
    Ok(Enforcement {
        allowed_answered: flow::answered(&node.topo.client, SERVER_IP, ECHO_PORT, wait)?,
        denied_answered: flow::answered(&node.topo.client, SERVER_IP, DENIED_PORT, wait)?,
    })
}

/// The agent's memory after `settle`.
pub fn memory(node: &Node, settle: Duration) -> Result<Memory> {
    std::thread::sleep(settle);
    let pid = node.agent.as_ref().context("no agent")?.pid;
    Memory::of(pid).context("the agent is gone")
}

/// The agent's CPU use over `window` with nothing changing.
pub fn idle_cpu(node: &Node, window: Duration) -> Result<CpuUse> {
    let pid = node.agent.as_ref().context("no agent")?.pid;
    procfs::cpu_over(pid, window).context("the agent is gone")
}

/// Latencies of one kind of change, milliseconds.
#[derive(Clone, Debug, Serialize)]
pub struct Series {
    /// What changed.
    pub change: String,
    /// Samples measured.
    pub samples: u64,
    /// Changes not enforced within the timeout (not in the percentiles).
    pub timeouts: u64,
    /// Percentiles and extremes, ms.
    pub min_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

/// An HDR histogram of microseconds (1 µs to 10 min, 3 significant
/// digits) and the changes that timed out.
pub struct Latencies {
    hist: Histogram<u64>,
    timeouts: u64,
}

impl Default for Latencies {
    fn default() -> Self {
        Self {
            hist: Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds"),
            timeouts: 0,
        }
    }
}

impl Latencies {
    /// Records one latency (`None`: timed out).
    pub fn record(&mut self, d: Option<Duration>) {
        match d {
            Some(d) => {
                let us = (d.as_micros() as u64).clamp(1, self.hist.high());
                self.hist.record(us).expect("clamped into range");
            }
            None => self.timeouts += 1,
        }
    }

    /// The summary, named `change`.
    pub fn series(&self, change: &str) -> Series {
        let ms = |us: u64| us as f64 / 1e3;
        let h = &self.hist;
        let empty = h.is_empty();
        let q = |q: f64| {
            if empty {
                0.0
            } else {
                ms(h.value_at_quantile(q))
            }
        };
        Series {
            change: change.to_owned(),
            samples: h.len(),
            timeouts: self.timeouts,
            min_ms: if empty { 0.0 } else { ms(h.min()) },
            p50_ms: q(0.5),
            p90_ms: q(0.9),
            p99_ms: q(0.99),
            max_ms: if empty { 0.0 } else { ms(h.max()) },
        }
    }
}

/// Makes a change (`write` returns its resourceVersion) and times it until
/// the agent enforces it.
fn timed(
    watch: &StateWatch,
    timeout: Duration,
    write: impl FnOnce() -> Result<u64>,
) -> Result<Option<Duration>> {
    let started = Instant::now();
    let rv = write()?;
    Ok(watch
        .until_enforced(rv, timeout)
        .map(|(_, at)| at - started))
}

/// `samples` rounds of: a remote pod created in the local namespace (a new
/// allowed peer of the local server), the local client relabeled, that
/// remote pod deleted; each timed from the write to the agent enforcing
/// it, one change at a time, with a short varying pause between.
pub fn latency(
    node: &Node,
    watch: &StateWatch,
    synth: &mut Synthetic,
    samples: usize,
    timeout: Duration,
) -> Result<Vec<Series>> {
    let api = node.api();
    let mut created = Latencies::default();
    let mut relabeled = Latencies::default();
    let mut deleted = Latencies::default();
    let mut probe = false;
    let pause = |i: usize| std::thread::sleep(Duration::from_millis(10 + (i * 7 % 30) as u64));
    for i in 0..samples {
        let pod = synth.new_local_ns_peer().context("the pod CIDR is full")?;
        let name = pod["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        created.record(timed(watch, timeout, || rv_of(&api.apply(pod.clone())?))?);
        pause(i);
        probe = !probe;
        relabeled.record(timed(watch, timeout, || {
            rv_of(&api.apply(synth::client(probe))?)
        })?);
        pause(i + 1);
        let d = timed(watch, timeout, || {
            api.delete("Pod", Some(LOCAL_NS), &name)?;
            Ok(api.resource_version())
        })?;
        deleted.record(d);
        synth.release(&pod);
        pause(i + 2);
        if (i + 1) % 10 == 0 || i + 1 == samples {
            eprint!("\r[cluster]   latency: {}/{samples} rounds", i + 1);
        }
    }
    eprintln!();
    Ok(vec![
        created.series("remote pod created (a new allowed peer)"),
        relabeled.series("local pod relabeled"),
        deleted.series("remote pod deleted"),
    ])
}
