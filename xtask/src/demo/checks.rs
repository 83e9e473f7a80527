//! What the demo's stories check, not only show: probes with real packets
//! that must connect or be dropped, and bounded waits on real conditions
//! (the agents' flow logs holding the records a scene reads next; a record
//! is written once its connection closed, or stayed idle for the lab's flow
//! timeout), never fixed sleeps.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use serde_json::Value;

use super::Demo;

/// The app's own connections: (client, server, TCP port).
pub const APP_TRAFFIC: [(&str, &str, &str); 4] = [
    ("shop/frontend", "shop/api", "8080"),
    ("shop/api", "shop/db", "5432"),
    ("shop/frontend", "kube-system/coredns", "53"),
    ("shop/api", "kube-system/coredns", "53"),
];

/// How long a wait for the agents (records, alerts, a quarantine) may take
/// on a loaded machine before the demo fails, saying what it waited for.
pub const WAIT: Duration = Duration::from_secs(60);

/// One probe's outcome, as `lab probe --output json` gives it.
#[derive(Clone, Debug)]
pub struct Probe {
    /// Source pod, `namespace/name`.
    pub src: String,
    /// Destination pod.
    pub dst: String,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
    /// Destination port.
    pub port: u64,
    /// Whether the packet got through and its answer came back.
    pub allowed: bool,
    /// `connected`, `refused`, `timeout`...
    pub outcome: String,
}

impl Probe {
    /// `src → dst PROTO/port`.
    pub fn describe(&self) -> String {
        format!(
            "{} → {} {}/{}",
            self.src, self.dst, self.protocol, self.port
        )
    }
}

/// Runs `bulkhead lab probe --name LAB ARGS --output json` quietly and
/// returns its probes.
pub fn probes(demo: &Demo<'_>, lab: &str, args: &[&str]) -> Result<Vec<Probe>> {
    let mut all = vec!["lab", "probe", "--name", lab];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--output", "json"]);
    let text = demo.output(&all)?;
    let mut probes = Vec::new();
    for line in text.lines() {
        let p: Value = serde_json::from_str(line).context("a probe's JSON")?;
        probes.push(Probe {
            src: p["src"].as_str().unwrap_or_default().to_owned(),
            dst: p["dst"].as_str().unwrap_or_default().to_owned(),
            protocol: p["protocol"].as_str().unwrap_or_default().to_owned(),
            port: p["port"].as_u64().unwrap_or_default(),
            allowed: p["allowed"].as_bool().unwrap_or_default(),
            outcome: p["outcome"].as_str().unwrap_or_default().to_owned(),
        });
    }
    ensure!(
        !probes.is_empty(),
        "`bulkhead {}` probed nothing",
        all.join(" ")
    );
    Ok(probes)
}

/// Fails unless every probe got through (`connects`) or none did.
pub fn expect_all(probes: &[Probe], connects: bool) -> Result<()> {
    let wrong: Vec<String> = probes
        .iter()
        .filter(|p| p.allowed != connects)
        .map(Probe::describe)
        .collect();
    ensure!(
        wrong.is_empty(),
        "these should {}connect: {wrong:?}",
        if connects { "" } else { "not " }
    );
    Ok(())
}

/// Probes `from` → `to` on TCP `port` (IPv4) in lab `lab` with real
/// packets, shows the verdict and insists on the expected one.
pub fn check(
    demo: &Demo<'_>,
    lab: &str,
    from: &str,
    to: &str,
    port: &str,
    connects: bool,
) -> Result<()> {
    check_on(demo, lab, (from, to, "TCP", port), &[], connects)
}

/// Probes `from` → `to` on `protocol`/`port` (IPv4; `extra` probe
/// arguments, e.g. `--via service`) in lab `lab` with real packets, shows
/// the verdict and insists on the expected one.
pub fn check_on(
    demo: &Demo<'_>,
    lab: &str,
    (from, to, protocol, port): (&str, &str, &str, &str),
    extra: &[&str],
    connects: bool,
) -> Result<()> {
    let mut args = vec![
        "--from",
        from,
        "--to",
        to,
        "--ports",
        port,
        "--protocols",
        protocol,
        "--family",
        "4",
    ];
    args.extend_from_slice(extra);
    let found = probes(demo, lab, &args)?;
    let mark = if connects { "✓" } else { "✗" };
    let how = match extra {
        [] => String::new(),
        e => format!(" ({})", e.join(" ")),
    };
    println!("  {from} → {to} {protocol}/{port}{how}: {mark}");
    expect_all(&found, connects).with_context(|| {
        format!(
            "{from} → {to} {protocol}/{port} should {}connect",
            if connects { "" } else { "not " }
        )
    })
}

/// Calls `poll` until it returns a value (at most `timeout`); fails
/// naming `what` and the last thing `poll` said was missing.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut poll: impl FnMut() -> Result<Result<T, String>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        match poll()? {
            Ok(v) => return Ok(v),
            Err(missing) => ensure!(
                Instant::now() < deadline,
                "{what}: still not there after {timeout:?} ({missing})"
            ),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A lab's flow logs (every node's), read from a mark: the records
/// written after it.
pub struct FlowLogs {
    logs: Vec<(PathBuf, u64)>,
}

impl FlowLogs {
    /// Every node's flow log of lab `lab`, from its beginning.
    pub fn all(lab: &str) -> Result<FlowLogs> {
        let state = super::lab_state_of(lab)?;
        let logs = state["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n["agent"]["flow_log"].as_str())
            .map(|p| (PathBuf::from(p), 0))
            .collect::<Vec<_>>();
        ensure!(!logs.is_empty(), "lab {lab} has no flow log");
        Ok(FlowLogs { logs })
    }

    /// Every node's flow log of lab `lab`, from its current end: what is
    /// written from now on.
    pub fn mark(lab: &str) -> Result<FlowLogs> {
        let mut logs = Self::all(lab)?;
        for (path, offset) in &mut logs.logs {
            *offset = std::fs::metadata(&*path).map(|m| m.len()).unwrap_or(0);
        }
        Ok(logs)
    }

    /// The flow records (`type: flow`) written since the mark; a line
    /// still being written is left for the next call.
    pub fn records(&self) -> Result<Vec<Value>> {
        let mut records = Vec::new();
        for (path, offset) in &self.logs {
            let Ok(bytes) = std::fs::read(path) else {
                continue;
            };
            let new = bytes.get(*offset as usize..).unwrap_or_default();
            let text = String::from_utf8_lossy(new);
            records.extend(
                text.split_inclusive('\n')
                    .filter(|l| l.ends_with('\n'))
                    .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                    .filter(|r| r["type"] == "flow"),
            );
        }
        Ok(records)
    }

    /// Waits (at most [`WAIT`]) until the records since the mark hold,
    /// for every expected connection, a record whose verdict is the one
    /// expected (at either end); returns the records.
    pub fn wait_for(&self, expected: &[Expect<'_>]) -> Result<Vec<Value>> {
        wait_until("flow records", WAIT, || {
            let records = self.records()?;
            let missing: Vec<String> = expected
                .iter()
                .filter(|e| !records.iter().any(|r| e.matches(r)))
                .map(|e| e.to_string())
                .collect();
            Ok(if missing.is_empty() {
                Ok(records)
            } else {
                Err(format!("missing {missing:?}"))
            })
        })
    }
}

/// An expected flow record: a connection from `from` to `to` on
/// `protocol` and `port` (pods by their workload's name, see [`is_pod`])
/// with `verdict`.
#[derive(Clone, Copy, Debug)]
pub struct Expect<'a> {
    /// Client.
    pub from: &'a str,
    /// Server.
    pub to: &'a str,
    /// `TCP`, `UDP`, `SCTP`.
    pub protocol: &'a str,
    /// Destination port.
    pub port: u64,
    /// `allowed`, `denied`, `quarantined`...
    pub verdict: &'a str,
}

impl Expect<'_> {
    /// Whether `r` is such a record.
    pub fn matches(&self, r: &Value) -> bool {
        is_pod(&r["src"], self.from)
            && is_pod(&r["dst"], self.to)
            && r["dst"]["port"].as_u64() == Some(self.port)
            && r["protocol"] == self.protocol
            && r["verdict"] == self.verdict
    }
}

impl std::fmt::Display for Expect<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} → {} {}/{} {}",
            self.from, self.to, self.protocol, self.port, self.verdict
        )
    }
}

/// Whether a flow record's end (`src` or `dst`) is a pod of `workload`
/// (`NS/NAME`): the pod is named so, or that and a suffix.
pub fn is_pod(end: &Value, workload: &str) -> bool {
    let name = format!(
        "{}/{}",
        end["namespace"].as_str().unwrap_or("?"),
        end["pod"].as_str().unwrap_or("?")
    );
    name == workload || name.starts_with(&format!("{workload}-"))
}

/// Flow records to wait for (pods by their workload's name, other ends
/// by address), as the lab tests have them.
#[path = "../../../netns-tests/tests/lab_support/logged.rs"]
mod logged;
pub use logged::{BOTH, Logged};

/// Whether a record's end is `name`: a pod of that workload (see
/// [`is_pod`]) or that address.
fn is_end(end: &Value, name: &str) -> bool {
    is_pod(end, name) || end["ip"].as_str() == Some(name)
}

/// How many of `records` are of `conn` at `side`. The server of a
/// client's connection to a Service is the backend it was translated to.
fn count(records: &[Value], (from, to, port): (&str, &str, u16), side: &str) -> usize {
    records
        .iter()
        .filter(|r| r["direction"] == side && is_end(&r["src"], from))
        .filter(|r| {
            let backend = &r["service"]["backend"];
            let server = if side == "egress" && backend.is_object() {
                backend
            } else {
                &r["dst"]
            };
            is_end(server, to) && server["port"].as_u64() == Some(u64::from(port))
        })
        .count()
}

/// Waits (at most [`WAIT`]) until lab `lab`'s flow logs hold every
/// `wanted` connection's records.
pub fn wait_for_logged(lab: &str, wanted: &[Logged<'_>]) -> Result<()> {
    let logs = FlowLogs::all(lab)?;
    wait_until("flow records", WAIT, || {
        let records = logs.records()?;
        let missing: Vec<String> = wanted
            .iter()
            .flat_map(|l| l.sides.iter().map(move |side| (l, *side)))
            .filter(|(l, side)| count(&records, l.conn, side) < l.at_least)
            .map(|(l, side)| {
                let (from, to, port) = l.conn;
                format!("{from} → {to}:{port} {side} ×{}", l.at_least)
            })
            .collect();
        Ok(if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("missing {} of them: {missing:?}", missing.len()))
        })
    })
}

/// Waits (at most [`WAIT`]) until lab `lab`'s flow logs hold every app
/// connection at both ends, egress at the client's node and ingress at
/// the server's: `propose` and `baseline take` should see them all.
pub fn wait_for_both_ends(lab: &str) -> Result<()> {
    let wanted: Vec<Logged<'_>> = APP_TRAFFIC
        .iter()
        .map(|(from, to, port)| {
            Ok(Logged {
                conn: (from, to, port.parse().context("a port")?),
                sides: BOTH,
                at_least: 1,
            })
        })
        .collect::<Result<_>>()?;
    wait_for_logged(lab, &wanted)
}
