//! The demo's main story, on the shop (`policies/demo/workloads.yaml`:
//! frontend → api → db, DNS, a stray debug pod) in one lab:
//!
//! 1. **learn**: `lab up --mode learn`, no NetworkPolicy; the app's own
//!    connections on real packets, recorded at both ends;
//! 2. **propose**: one policy per workload allowing exactly that, in audit
//!    mode, with its proof; the same history is the shop's baseline;
//! 3. **audit**: the app again, and the stray pod trying everything;
//!    `audit report` says enforcement would deny exactly the stray's
//!    attempts, none of the app's;
//! 4. **enforce**: `promote --all`; the app's paths connect, the rest is
//!    dropped; flows and explain say why; a guardrail over a namespace
//!    owner's allow-all; Services; the node;
//! 5. detection and response ([`super::incident`]);
//! 6. status, fail-static (the agent killed and adopted again), verify.
//!
//! Every verdict told is checked: a scene fails when it is not so.

use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, Result, ensure};
use serde_json::Value;

use super::checks::{self, APP_TRAFFIC, Expect, FlowLogs, check};
use super::{Demo, LAB, WORKLOADS, WorkDir, alertmanager, copy_shown, lab_state, scene};
use crate::cmd;

/// A permissive NetworkPolicy a namespace owner might write.
const OOPS: &str = "policies/guardrail/oops-allow-all.yaml";
/// The cluster-admin guardrail no NetworkPolicy overrides.
const GUARDRAIL: &str = "policies/guardrail/db-guardrail.yaml";

/// The story (the caller takes the lab down).
pub fn run(demo: &Demo<'_>, work: &WorkDir) -> Result<()> {
    let watched = super::watched_dir();
    let w = watched.display().to_string();
    let alerts = work.join("alerts.jsonl");
    let baseline = work.join("shop.baseline.json");
    scene(
        "Lab up in learn mode: the shop (frontend → api → db, DNS, a stray debug pod) as network \
         namespaces, no NetworkPolicy at all; the agent, in the node namespace, lets everything \
         through and records it. Its alerts will go to a JSON Lines file and to an Alertmanager, \
         and it will quarantine a pod that scans (--respond quarantine:scan), once it has a \
         baseline to check traffic against",
    );
    demo.lab_up_learning(
        LAB,
        WORKLOADS,
        "2",
        &[
            "--alertmanager",
            alertmanager::URL,
            "--alerts-jsonl",
            &alerts.display().to_string(),
            "--respond",
            "quarantine:scan",
        ],
    )?;
    learn(demo)?;
    propose(demo, work, &watched, &baseline)?;
    audit(demo)?;
    enforce(demo, &watched)?;
    super::map::run(demo)?;
    guardrail_scene(demo, &watched)?;
    service_scene(demo, &w)?;
    node_scene(demo, &w)?;
    super::incident::run(demo, work, &baseline, &alerts, &w)?;
    scene("What the dataplane enforces: revision, endpoints, map fill, drop counters");
    demo.bulkhead(&["status", "--lab", LAB])?;
    agent_death_scene(demo)?;
    scene("Verify: live probes (TCP, UDP, SCTP; IPv4 and IPv6) against the policy");
    demo.bulkhead(&["lab", "verify", "--name", LAB])
}

/// The app's own traffic, recorded at both ends.
fn learn(demo: &Demo<'_>) -> Result<()> {
    scene(
        "The app's own traffic on real packets: frontend → api:8080, api → db:5432, both → DNS. \
         Learn mode drops nothing; each connection is recorded at both ends",
    );
    for (from, to, port) in APP_TRAFFIC {
        check(demo, LAB, from, to, port, true)?;
    }
    checks::wait_for_both_ends(LAB)?;
    demo.bulkhead(&["flows", "--lab", LAB, "--pod", "shop/api", "--last", "4"])
}

/// Proposals from the learned history, their proof, into the watched
/// directory in audit mode; the same history taken as the shop's baseline.
fn propose(demo: &Demo<'_>, work: &WorkDir, watched: &Path, baseline: &Path) -> Result<()> {
    scene(
        "Propose: one NetworkPolicy per workload allowing exactly what was observed, staged in \
         audit mode; the proof replays the history against them (coverage) and lists what they \
         allow beyond it",
    );
    let proposed = work.join("proposed");
    let dir = proposed.display().to_string();
    demo.bulkhead(&[
        "propose",
        "--lab",
        LAB,
        "--manifests",
        WORKLOADS,
        "--mode",
        "audit",
        "--output-dir",
        &dir,
    ])?;
    let mut files: Vec<_> = std::fs::read_dir(&proposed)
        .context("the proposals")?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.sort();
    let db = files
        .iter()
        .find(|f| f.to_string_lossy().ends_with("-db.yaml"))
        .context("no proposal for the db")?;
    println!("$ cat {}", db.display());
    print!(
        "{}",
        std::fs::read_to_string(db).with_context(|| format!("reading {}", db.display()))?
    );
    scene(
        "The same learned history is the shop's baseline: what it does when nobody attacks it \
         (saved now; the agent will check live traffic against it)",
    );
    let b = baseline.display().to_string();
    demo.bulkhead(&[
        "baseline", "take", "shop", "--scope", "shop", "--lab", LAB, "-o", &b,
    ])?;
    demo.bulkhead(&["baseline", "show", &b])?;
    scene("Stage the proposals: copy them into the watched directory, then lab sync");
    for f in &files {
        let name = f.file_name().context("a proposal's name")?;
        std::fs::copy(f, watched.join(name)).with_context(|| format!("copying {}", f.display()))?;
    }
    println!("$ cp {dir}/*.yaml {}/", watched.display());
    demo.bulkhead(&["lab", "sync", "--name", LAB])
}

/// Audit: everything passes; the report names exactly the stray's attempts.
fn audit(demo: &Demo<'_>) -> Result<()> {
    scene(
        "Audit: the app's paths again, and the stray pod tries everything. Audit never drops; \
         the kernel marks what enforcement would deny",
    );
    for (from, to, port) in APP_TRAFFIC {
        check(demo, LAB, from, to, port, true)?;
    }
    let stray = demo.probe(LAB, &["--from", "sandbox/stray", "--family", "4"])?;
    checks::expect_all(&stray, true).context("audit drops nothing")?;
    // The proposals let every pod resolve names (the DNS server's takes
    // DNS from all pods): the stray's lookups are no attempt to deny.
    let stray: Vec<checks::Probe> = stray
        .into_iter()
        .filter(|p| !(p.dst.starts_with("kube-system/coredns") && p.port == 53))
        .collect();
    // Until the report holds a would-deny for each of the stray's other
    // attempts (their records are written once each connection is over).
    let would_deny = |g: &Value, p: &checks::Probe| {
        g["verdict"] == "would_deny"
            && is_workload(&g["peer"], &p.src)
            && is_workload(&g["subject"], &p.dst)
            && g["port"].as_u64() == Some(p.port)
            && g["protocol"] == p.protocol.as_str()
    };
    let groups = checks::wait_until("the stray's would-deny groups", checks::WAIT, || {
        let groups = audit_groups(demo, &[])?;
        let missing: Vec<String> = stray
            .iter()
            .filter(|p| !groups.iter().any(|g| would_deny(g, p)))
            .map(checks::Probe::describe)
            .collect();
        Ok(if missing.is_empty() {
            Ok(groups)
        } else {
            Err(format!("no would-deny for {missing:?}"))
        })
    })?;
    scene(
        "What enforcing the proposals would deny: exactly the stray pod's attempts but its DNS \
         lookups (every pod may resolve names), nothing of the app's paths",
    );
    demo.bulkhead(&["audit", "report", "--lab", LAB])?;
    for g in groups.iter().filter(|g| g["verdict"] == "would_deny") {
        ensure!(
            stray.iter().any(|p| would_deny(g, p)),
            "the audit would deny more than the stray pod's attempts: {g}"
        );
    }
    for (from, to, port) in APP_TRAFFIC {
        let allowed = groups.iter().any(|g| {
            g["verdict"] == "allowed"
                && g["port"].as_u64() == port.parse().ok()
                && ((is_workload(&g["subject"], from) && is_workload(&g["peer"], to))
                    || (is_workload(&g["subject"], to) && is_workload(&g["peer"], from)))
        });
        ensure!(
            allowed,
            "the audit does not show {from} → {to}:{port} allowed"
        );
    }
    Ok(())
}

/// The groups (`type: group`) of `audit report --lab LAB ARGS --output json`.
fn audit_groups(demo: &Demo<'_>, args: &[&str]) -> Result<Vec<Value>> {
    let mut all = vec!["audit", "report", "--lab", LAB, "--output", "json"];
    all.extend_from_slice(args);
    let report = demo.output(&all)?;
    let lines = report
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<Vec<Value>, _>>()
        .context("audit report JSON")?;
    Ok(lines.into_iter().filter(|l| l["type"] == "group").collect())
}

/// Whether an audit report's party (`{"namespace", "workload":
/// "Kind/name"}`) is the workload of pod `NS/NAME`.
fn is_workload(party: &Value, pod: &str) -> bool {
    let name = party["workload"]
        .as_str()
        .and_then(|w| w.split_once('/'))
        .map_or("", |(_, name)| name);
    format!("{}/{name}", party["namespace"].as_str().unwrap_or_default()) == pod
}

/// Promote the proposals; the app's paths connect, the rest is dropped;
/// flows and explain.
fn enforce(demo: &Demo<'_>, watched: &Path) -> Result<()> {
    let w = watched.display().to_string();
    scene("The report is what was expected: promote every proposal to enforce, then lab sync");
    demo.bulkhead(&["promote", "--manifests", &w, "--all"])?;
    demo.bulkhead(&["lab", "sync", "--name", LAB])?;
    scene("Real packets again: only the app's own paths connect; the rest is dropped (✗)");
    let logs = FlowLogs::mark(LAB)?;
    demo.bulkhead(&["lab", "probe", "--name", LAB])?;
    for (from, to, port) in APP_TRAFFIC {
        check(demo, LAB, from, to, port, true)?;
    }
    check(demo, LAB, "sandbox/stray", "shop/db", "5432", false)?;
    check(demo, LAB, "shop/frontend", "shop/db", "5432", false)?;
    scene("Flows: what the probes did, each with its verdict and the deciding policy");
    logs.wait_for(&[
        Expect {
            from: "shop/api",
            to: "shop/db",
            protocol: "TCP",
            port: 5432,
            verdict: "allowed",
        },
        Expect {
            from: "sandbox/stray",
            to: "shop/db",
            protocol: "TCP",
            port: 5432,
            verdict: "denied",
        },
        Expect {
            from: "shop/frontend",
            to: "shop/db",
            protocol: "TCP",
            port: 5432,
            verdict: "denied",
        },
    ])?;
    demo.bulkhead(&["flows", "--lab", LAB, "--pod", "shop/db", "--last", "12"])?;
    scene("Only the drops, from the stray pod");
    demo.bulkhead(&[
        "flows",
        "--lab",
        LAB,
        "--pod",
        "sandbox/stray",
        "--verdict",
        "denied",
        "--last",
        "8",
    ])?;
    scene("Why can the stray pod not reach the database?");
    demo.bulkhead(&[
        "explain",
        "--manifests",
        &w,
        "--from",
        "sandbox/stray",
        "--to",
        "shop/db",
        "--port",
        "5432",
    ])?;
    scene("And why can the api? Both ends' proposals allow it");
    demo.bulkhead(&[
        "explain",
        "--manifests",
        &w,
        "--from",
        "shop/api",
        "--to",
        "shop/db",
        "--port",
        "5432",
    ])
}

/// The clients that reach the db on 5432 (`connects`) or not, as records.
fn db_clients<'a>(clients: &[(&'a str, &'a str)]) -> Vec<Expect<'a>> {
    clients
        .iter()
        .map(|&(from, verdict)| Expect {
            from,
            to: "shop/db",
            protocol: "TCP",
            port: 5432,
            verdict,
        })
        .collect()
}

/// A cluster-admin guardrail (ClusterNetworkPolicy, Admin tier) holds
/// against a namespace owner's allow-all NetworkPolicy: staged in audit
/// and reported on first, then promoted to enforce; real packets,
/// explain naming the tier and rule, the drop's flow record naming
/// the rule; then the allow-all goes (the guardrail stays).
fn guardrail_scene(demo: &Demo<'_>, watched: &Path) -> Result<()> {
    let w = watched.display().to_string();
    let repo = cmd::repo_root();
    scene(&format!(
        "A namespace owner's mistake: {OOPS} allows everything in shop, marked enforce (this \
         lab's agent still learns by default: an unmarked policy would only record); now every \
         pod reaches the db"
    ));
    copy_shown(&repo.join(OOPS), &watched.join("oops-allow-all.yaml"))?;
    demo.bulkhead(&["lab", "sync", "--name", LAB])?;
    demo.bulkhead(&["lab", "probe", "--name", LAB, "--to", "shop/db"])?;
    check(demo, LAB, "sandbox/stray", "shop/db", "5432", true)?;
    scene(&format!(
        "The security team's guardrail: {GUARDRAIL} (ClusterNetworkPolicy, Admin tier) lets only the api reach the db; no NetworkPolicy can override it"
    ));
    let guardrail = "ClusterNetworkPolicy/db-guardrail";
    scene(
        "Staged first: promote sets the copy to audit before it goes live; the kernel marks what it would deny, drops nothing",
    );
    // Staged beside the watched directory, so the agent never sees it enforced.
    let staged = watched.with_file_name("db-guardrail.yaml");
    let s = staged.display().to_string();
    copy_shown(&repo.join(GUARDRAIL), &staged)?;
    demo.bulkhead(&["promote", "--manifests", &s, guardrail, "--to", "audit"])?;
    println!("$ mv {s} {w}/");
    std::fs::rename(&staged, watched.join("db-guardrail.yaml"))
        .with_context(|| format!("moving {s} into {w}"))?;
    demo.bulkhead(&["lab", "sync", "--name", LAB])?;
    demo.bulkhead(&["lab", "probe", "--name", LAB, "--to", "shop/db"])?;
    checks::wait_until("the guardrail's would-deny groups", checks::WAIT, || {
        let groups = audit_groups(demo, &["--policy", guardrail])?;
        let would_deny = |peer: &str| {
            groups.iter().any(|g| {
                g["verdict"] == "would_deny"
                    && is_workload(&g["peer"], peer)
                    && is_workload(&g["subject"], "shop/db")
            })
        };
        Ok(
            if would_deny("shop/frontend") && would_deny("sandbox/stray") {
                Ok(())
            } else {
                Err(format!("the report has {groups:?}"))
            },
        )
    })?;
    demo.bulkhead(&["audit", "report", "--lab", LAB, "--policy", guardrail])?;
    scene("The report is what the security team expected: promote it to enforce");
    demo.bulkhead(&["promote", "--manifests", &w, guardrail])?;
    demo.bulkhead(&["lab", "sync", "--name", LAB])?;
    let logs = FlowLogs::mark(LAB)?;
    demo.bulkhead(&["lab", "probe", "--name", LAB, "--to", "shop/db"])?;
    check(demo, LAB, "shop/api", "shop/db", "5432", true)?;
    check(demo, LAB, "shop/frontend", "shop/db", "5432", false)?;
    scene(
        "Why is the frontend denied, although shop's NetworkPolicy allows it? explain names the tier and rule",
    );
    demo.bulkhead(&[
        "explain",
        "--manifests",
        &w,
        "--from",
        "shop/frontend",
        "--to",
        "shop/db",
        "--port",
        "5432",
    ])?;
    scene("The drop's flow record names the guardrail's rule");
    logs.wait_for(&db_clients(&[
        ("shop/frontend", "denied"),
        ("sandbox/stray", "denied"),
    ]))?;
    demo.bulkhead(&[
        "flows",
        "--lab",
        LAB,
        "--pod",
        "shop/db",
        "--verdict",
        "denied",
        "--last",
        "3",
    ])?;
    scene("The allow-all goes; the shop's least privilege is back, under the guardrail");
    println!("$ rm {w}/oops-allow-all.yaml");
    std::fs::remove_file(watched.join("oops-allow-all.yaml"))
        .with_context(|| format!("removing oops-allow-all.yaml from {w}"))?;
    demo.bulkhead(&["lab", "sync", "--name", LAB])?;
    check(demo, LAB, "sandbox/stray", "shop/db", "5432", false)
}

/// Through Services: the same verdicts when clients connect to
/// ClusterIPs (the lab's node runs kube-proxy's rules), `explain` per
/// backend, and the flow record naming the Service and the backend.
fn service_scene(demo: &Demo<'_>, watched: &str) -> Result<()> {
    scene(
        "Through Services: every pod connects to the db's ClusterIP (kube-proxy's rules on the node \
         translate it); the verdict is the one for the pod it lands on",
    );
    let logs = FlowLogs::mark(LAB)?;
    demo.bulkhead(&[
        "lab", "probe", "--name", LAB, "--via", "service", "--to", "shop/db",
    ])?;
    scene("Why not the stray pod, through the db Service? explain answers per backend");
    demo.bulkhead(&[
        "explain",
        "--manifests",
        watched,
        "--from",
        "sandbox/stray",
        "--to",
        "svc/shop/db",
        "--port",
        "5432",
    ])?;
    scene("The api's flow record names the Service and the backend its connection reached");
    checks::wait_until(
        "the api's record through the db Service",
        checks::WAIT,
        || {
            let records = logs.records()?;
            let found = records.iter().any(|r| {
                checks::is_pod(&r["src"], "shop/api")
                    && r["service"]["name"] == "db"
                    && checks::is_pod(&r["service"]["backend"], "shop/db")
            });
            Ok(if found { Ok(()) } else { Err("not yet".into()) })
        },
    )?;
    demo.bulkhead(&["flows", "--lab", LAB, "--pod", "shop/api", "--last", "4"])
}

/// The node (where kubelet's probes come from) reaches the isolated
/// database on real packets, and `explain` says why.
fn node_scene(demo: &Demo<'_>, watched: &str) -> Result<()> {
    scene(
        "The node always reaches its pods (kubelet's probes come from there): a TCP probe \
         from the node namespace into the isolated shop/db, then explain",
    );
    let state = lab_state()?;
    let db = state["hosts"]
        .as_array()
        .and_then(|h| h.iter().find(|h| h["name"] == "shop/db"))
        .and_then(|h| h["ips"][0].as_str())
        .context("shop/db's address in the lab state")?;
    let node = state["node"].as_str().context("the node namespace")?;
    let gateways: Vec<&str> = state["gateways"]
        .as_array()
        .context("the node's addresses")?
        .iter()
        .filter_map(|g| g.as_str())
        .collect();
    let logs = FlowLogs::mark(LAB)?;
    let probe = format!("exec 3<>/dev/tcp/{db}/5432 && echo connected from the node");
    println!("$ ip netns exec {node} timeout 3 bash -c '{probe}'");
    demo.status(
        Command::new("ip").args(["netns", "exec", node, "timeout", "3", "bash", "-c", &probe]),
        &["(probe from the node)"],
    )?;
    demo.bulkhead(&[
        "explain",
        "--manifests",
        watched,
        "--node-ip",
        &gateways.join(","),
        "--from",
        "node",
        "--to",
        "shop/db",
        "--port",
        "5432",
    ])?;
    // Its record is written before the baseline is activated (it is no
    // workload's traffic, and no deviation the story is about).
    checks::wait_until("the node's connection's record", checks::WAIT, || {
        let found = logs.records()?.iter().any(|r| {
            r["src"]["pod"].is_null()
                && checks::is_pod(&r["dst"], "shop/db")
                && r["dst"]["port"] == 5432
        });
        Ok(if found { Ok(()) } else { Err("not yet".into()) })
    })
}

/// The agent is killed: enforcement stays pinned, `status` says it is
/// not running, `lab restart-agent` brings it back (verify follows).
fn agent_death_scene(demo: &Demo<'_>) -> Result<()> {
    scene(
        "Fail-static: the agent is killed, enforcement stays as pinned; \
         lab restart-agent adopts it again",
    );
    let state = lab_state()?;
    let pid = state["agent"]["pid"]
        .as_u64()
        .context("the agent's PID in the lab state")?
        .to_string();
    println!("$ kill -KILL {pid}");
    demo.status(
        Command::new("kill").args(["-KILL", &pid]),
        &["(kill the agent)"],
    )?;
    demo.bulkhead(&["status", "--lab", LAB])?;
    check(demo, LAB, "shop/api", "shop/db", "5432", true)?;
    check(demo, LAB, "sandbox/stray", "shop/db", "5432", false)?;
    demo.bulkhead(&["lab", "restart-agent", "--name", LAB])
}
