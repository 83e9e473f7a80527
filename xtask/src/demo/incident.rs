//! The demo's detection-and-response scenes, in the shop's lab once it
//! enforces: a real Alertmanager in the node namespace
//! ([`super::alertmanager`]); the shop's baseline (taken from what was
//! learned) activated in the running agent; then `shop/api` is
//! compromised: it reaches for a peer it never had (a new-peer alert),
//! then scans many ports of three pods with real connection attempts from
//! inside its namespace (one scan alert, not one per port). The alerts are
//! read back from the agent's JSON Lines and from Alertmanager (`amtool`);
//! the agent, started with `--respond quarantine:scan`, quarantines the
//! scan's source by itself, naming the alert; every attempt after it is
//! dropped; its timeline shows the scan, the alerts, the quarantine and the
//! drops after it, in that order; then the quarantine is lifted.
//!
//! Each of these is checked, not only shown.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, ensure};
use serde_json::Value;

use super::alertmanager::Alertmanager;
use super::checks::{self, Expect, FlowLogs, WAIT, check, wait_until};
use super::{Demo, LAB, WorkDir, lab_state, scene};

/// The compromised pod.
const POD: &str = "shop/api";
/// Its workload, as alerts name it.
const WORKLOAD: &str = "Deployment/api";
/// The pods it scans, and how many ports of each.
const SCAN_TARGETS: &str = "shop/db,shop/frontend,kube-system/coredns";
const SCAN_PORTS: u16 = 100;

/// The scenes (the caller takes the lab down).
pub fn run(
    demo: &Demo<'_>,
    work: &WorkDir,
    baseline: &Path,
    alerts: &Path,
    watched: &str,
) -> Result<()> {
    scene(
        "Detection: a real Alertmanager (Debian's prometheus-alertmanager) in the lab's node \
         namespace, on 127.0.0.1:9093, where the agent posts its alerts",
    );
    let node = lab_state()?["node"]
        .as_str()
        .context("the node namespace")?
        .to_owned();
    let am = Alertmanager::start(&node, &work.join("alertmanager"))?;
    scene(
        "The agent checks live traffic against the shop's baseline from now on (activated \
         through its API; it keeps it across restarts)",
    );
    let b = baseline.display().to_string();
    demo.bulkhead(&["baseline", "activate", &b, "--lab", LAB])?;
    // The timeline from here: a second of slack for the records' clock.
    let since = rfc3339(SystemTime::now() - Duration::from_secs(1));

    scene(
        "shop/api is compromised. First it reaches for the frontend, a peer it never had: \
         the policy drops it, and the agent raises a new-peer alert",
    );
    check(demo, LAB, POD, "shop/frontend", "8080", false)?;
    let new_peer = |a: &Value| {
        a["kind"] == "new_peer"
            && a["subject"]["workload"] == WORKLOAD
            && a["dst"]["workload"]["workload"] == "Deployment/frontend"
    };
    let line = wait_until("the new-peer alert in the alerts file", WAIT, || {
        let lines = alert_lines(alerts)?;
        Ok(lines.into_iter().find(new_peer).ok_or("not yet".to_owned()))
    })?;
    println!("$ tail -n 1 {}", alerts.display());
    println!("{line}");

    scene(&format!(
        "Then it scans: ports 1 to {SCAN_PORTS} of the db, the frontend and the DNS pod, real \
         connection attempts from inside its namespace. The agent raises one scan alert (not one \
         per port) and, started with --respond quarantine:scan, quarantines the scan's source"
    ));
    let ports: Vec<String> = (1..=SCAN_PORTS).map(|p| p.to_string()).collect();
    let ports = ports.join(",");
    let args = [
        "--from",
        POD,
        "--to",
        SCAN_TARGETS,
        "--protocols",
        "TCP",
        "--family",
        "4",
    ];
    println!(
        "$ bulkhead lab probe --name {LAB} {} --ports $(seq -s, 1 {SCAN_PORTS}) --output json",
        args.join(" ")
    );
    let mut all = args.to_vec();
    all.extend(["--ports", &ports]);
    let scan = checks::probes(demo, LAB, &all)?;
    let through: Vec<String> = scan
        .iter()
        .filter(|p| p.allowed)
        .map(|p| p.describe())
        .collect();
    println!(
        "  {} attempts: {} connected [{}], {} dropped (by the api's policy, and by the \
         quarantine once it is in force)",
        scan.len(),
        through.len(),
        through.join(", "),
        scan.len() - through.len()
    );
    for p in scan.iter().filter(|p| p.allowed) {
        ensure!(
            (p.dst == "shop/db" && p.port == 5432)
                || (p.dst == "kube-system/coredns" && p.port == 53),
            "the scan connected where the api's policy allows nothing: {}",
            p.describe()
        );
    }

    scene("The alerts, as Alertmanager has them: the new peer, and one scan");
    let is_scan = |labels: &Value| labels["kind"] == "scan" && labels["workload"] == WORKLOAD;
    let held = wait_until("the scan alert in Alertmanager", WAIT, || {
        let alerts = am.alerts()?;
        let found = alerts.iter().any(|a| is_scan(&a["labels"]))
            && alerts.iter().any(|a| {
                a["labels"]["kind"] == "new_peer"
                    && a["labels"]["workload"] == WORKLOAD
                    && a["labels"]["peer"] == "shop/Deployment/frontend"
            });
        Ok(if found {
            Ok(alerts)
        } else {
            Err(format!("Alertmanager has {alerts:?}"))
        })
    })?;
    ensure!(
        held.iter().filter(|a| is_scan(&a["labels"])).count() == 1,
        "one scan alert in Alertmanager, not {held:?}"
    );
    am.show(&[])?;
    am.show(&["-o", "extended", "kind=scan"])?;

    scene(
        "The response: the agent quarantined shop/api by itself, above every policy and tier, \
         naming the alert",
    );
    let reason = wait_until("shop/api's quarantine", WAIT, || {
        let text = demo.output(&["quarantine", "--list", "--lab", LAB, "--output", "json"])?;
        Ok(quarantine_reason(&text)?.ok_or(text))
    })?;
    ensure!(
        reason.contains("scan"),
        "the quarantine's reason names no scan alert: {reason:?}"
    );
    demo.bulkhead(&["quarantine", "--list", "--lab", LAB])?;
    let scans = alert_lines(alerts)?
        .into_iter()
        .filter(|a| a["kind"] == "scan" && a["subject"]["workload"] == WORKLOAD)
        .count();
    ensure!(
        scans == 1,
        "one scan alert in the alerts file, not {scans}: a scan is one alert, not one per port"
    );

    scene(
        "After the quarantine: nothing reaches the api, and the api reaches nothing (DNS included)",
    );
    let logs = FlowLogs::mark(LAB)?;
    let to = demo.probe(LAB, &["--to", POD, "--family", "4"])?;
    let from = demo.probe(LAB, &["--from", POD, "--family", "4"])?;
    checks::expect_all(&to, false).context("the quarantine lets connections in")?;
    checks::expect_all(&from, false).context("the quarantine lets connections out")?;
    logs.wait_for(&[
        Expect {
            from: "shop/frontend",
            to: POD,
            protocol: "TCP",
            port: 8080,
            verdict: "quarantined",
        },
        Expect {
            from: POD,
            to: "shop/db",
            protocol: "TCP",
            port: 5432,
            verdict: "quarantined",
        },
    ])?;
    demo.bulkhead(&[
        "flows",
        "--lab",
        LAB,
        "--pod",
        POD,
        "--verdict",
        "quarantined",
        "--last",
        "4",
    ])?;
    scene("Why can the frontend no longer reach the api? explain names the quarantine");
    demo.bulkhead(&[
        "explain",
        "--manifests",
        watched,
        "--quarantined",
        POD,
        "--from",
        "shop/frontend",
        "--to",
        POD,
        "--port",
        "8080",
    ])?;

    timeline(demo, &since)?;

    scene("Lifted: the api's connections are judged by the policies again, exactly as before");
    demo.bulkhead(&["unquarantine", POD, "--lab", LAB])?;
    check(demo, LAB, "shop/frontend", POD, "8080", true)?;
    check(demo, LAB, POD, "shop/db", "5432", true)?;
    check(demo, LAB, POD, "shop/frontend", "8080", false)?;
    drop(am);
    Ok(())
}

/// The pod's timeline: the scan, the alerts, the quarantine and the drops
/// after it, shown, then checked in that order.
fn timeline(demo: &Demo<'_>, since: &str) -> Result<()> {
    scene(
        "Its timeline, from the agent's forensic store: the scan's flows, the alerts, the \
         quarantine and the drops after it, in order",
    );
    let args = ["timeline", "--pod", POD, "--lab", LAB, "--since", since];
    demo.bulkhead(&args)?;
    let mut json = args.to_vec();
    json.extend(["--output", "json"]);
    let page: Value = serde_json::from_str(&demo.output(&json)?).context("timeline JSON")?;
    let events = page["events"].as_array().context("the timeline's events")?;
    let first = |what: &str, from: usize, pred: &dyn Fn(&Value) -> bool| {
        events
            .iter()
            .skip(from)
            .position(pred)
            .map(|i| i + from)
            .with_context(|| format!("the timeline has no {what} (after event {from})"))
    };
    let is_flow = |e: &Value, verdict: &str| {
        e["type"] == "flow"
            && e["record"]["verdict"] == verdict
            && checks::is_pod(&e["record"]["src"], POD)
    };
    let scan = first("denied flow of the scan", 0, &|e| is_flow(e, "denied"))?;
    let alert = first("scan alert", scan, &|e| {
        e["type"] == "alert" && e["alert"]["kind"] == "scan"
    })?;
    first("new-peer alert", 0, &|e| {
        e["type"] == "alert" && e["alert"]["kind"] == "new_peer"
    })?;
    let quarantine = first("quarantine", alert, &|e| e["type"] == "quarantined")?;
    first("quarantined flow", quarantine, &|e| {
        e["type"] == "flow" && e["record"]["verdict"] == "quarantined"
    })?;
    Ok(())
}

/// The reason of `shop/api`'s quarantine in `quarantine --list --output
/// json`'s answer (one line per agent), if it is in force.
fn quarantine_reason(text: &str) -> Result<Option<String>> {
    let (ns, name) = POD.split_once('/').expect("NS/NAME");
    for line in text.lines() {
        let answer: Value = serde_json::from_str(line).context("quarantine --list JSON")?;
        let list = answer["quarantines"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for q in list {
            if q["namespace"] == ns && q["pod"] == name && q["enforced"] == true {
                return Ok(Some(q["reason"].as_str().unwrap_or_default().to_owned()));
            }
        }
    }
    Ok(None)
}

/// The alerts file's lines (whole ones).
fn alert_lines(path: &Path) -> Result<Vec<Value>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    Ok(text
        .split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

/// `t` as RFC 3339 UTC, to the second (`2026-01-02T03:04:05Z`).
fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_is_utc_civil_time() {
        let at = |s: u64| rfc3339(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_798_761_599), "2026-12-31T23:59:59Z");
    }
}
