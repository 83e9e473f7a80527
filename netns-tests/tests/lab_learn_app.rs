//! Issue 18's acceptance, on real packets: a lab of an eleven-service shop
//! (`policies/boutique/`), learnt while its traffic follows the call graph,
//! with what a real cluster's window holds besides: DNS through the
//! `kube-dns` Service, an internet client of the frontend (behind a
//! LoadBalancer Service), a stray connection seen once, a port scan, and a
//! workload (`reports`) that does nothing while the shop is learnt.
//!
//! 1. `lab up --mode learn`; three rounds of the call graph (every edge,
//!    real connections to the pods' servers), DNS from every app pod and
//!    the internet client; then the stray once and the scan (ports 1-100
//!    of three pods). The test waits for their flow records.
//! 2. `bulkhead propose --lab --manifests --output json` with defaults: its
//!    policies, evaluated by `bulkhead connectivity` over the app's
//!    manifests, allow the call graph, DNS to the DNS server from every pod,
//!    and nothing the scan touched; the proof is 100% covered and lists the
//!    scan, the stray (rare), `reports` (not seen), the DNS server and the
//!    internet-facing frontend; a second run prints the same bytes.
//! 3. The proposal (`--mode enforce`) applied in the lab: "no change" when
//!    proposed again; every call-graph edge connects, an unlearned
//!    connection is dropped, DNS works from `reports`, both internet
//!    clients (the one seen and one never seen) reach the frontend, the
//!    DNS server reaches an upstream resolver, the scanner no longer
//!    reaches the listener its scan found, and the stray connects (it is
//!    proposed, flagged).
//!
//! Every expectation is written here (the call graph is a constant), never
//! read from the output under test. The claims are checked one by one and
//! all reported before the test fails on any of them.

#[path = "lab_support/boutique.rs"]
mod boutique;
mod lab_support;
#[path = "lab_support/learning.rs"]
mod learning;
#[path = "lab_support/traffic.rs"]
mod traffic;

use std::collections::BTreeSet;
use std::fmt::Display;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use boutique::*;
use lab_support::{Lab, bulkhead_ok, json_lines, privileged, serial, snapshot};
use learning::{BOTH, Logged, connect, names, now_ms, pod, policies, wait_for_logged};
use traffic::{Pod, tcp_attempt, udp_answers, udp_exchange};

/// The acceptance claims, checked one by one: each is printed, and the
/// test fails at the end naming every claim that does not hold.
#[derive(Default)]
struct Claims {
    failed: Vec<String>,
    held: usize,
}

impl Claims {
    fn check(&mut self, claim: &str, ok: bool, detail: impl Display) {
        if ok {
            self.held += 1;
            eprintln!("claim holds: {claim}");
        } else {
            eprintln!("claim FAILS: {claim}: {detail}");
            self.failed.push(format!("{claim}: {detail}"));
        }
    }

    fn assert_all(&self) {
        assert!(
            self.failed.is_empty(),
            "{} of {} claims fail:\n- {}",
            self.failed.len(),
            self.failed.len() + self.held,
            self.failed.join("\n- ")
        );
    }
}

/// One UDP lookup from `from` to `server`: whether it was answered. Only
/// ever expected to pass, so the wait is generous (it ends at the answer):
/// a busy machine must not turn a late answer into a failed claim.
fn lookup(from: &Pod, server: SocketAddr) -> bool {
    udp_answers(from, server, 1, 32, Duration::from_secs(10)).1 == 1
}

/// `bulkhead propose --lab NAME --manifests DIR extra...`: its stdout,
/// insisting on success (coverage 100%).
fn propose(lab: &Lab, manifests: &Path, extra: &[&str]) -> String {
    let dir = manifests.display().to_string();
    let mut args = vec!["propose", "--lab", &lab.name, "--manifests", &dir];
    args.extend_from_slice(extra);
    bulkhead_ok(&args)
}

/// What `bulkhead connectivity` says `src` may reach at `dst`, as
/// (protocol, port) membership over every line (family) of the pair;
/// `false` when no line names the pair (nothing allowed).
struct Connectivity(Vec<Value>);

impl Connectivity {
    fn of(manifests: &Path) -> Connectivity {
        let dir = manifests.display().to_string();
        let out = bulkhead_ok(&["connectivity", "--manifests", &dir, "--output", "json"]);
        Connectivity(json_lines(&out))
    }

    fn lines(&self, src: &str, dst: &str) -> Vec<&Value> {
        self.0
            .iter()
            .filter(|l| {
                names(l["src"].as_str().unwrap_or(""), src)
                    && names(l["dst"].as_str().unwrap_or(""), dst)
            })
            .collect()
    }

    /// Whether every family's line allows `port` (over `protocol`).
    fn allows(&self, src: &str, dst: &str, protocol: &str, port: u16) -> bool {
        let lines = self.lines(src, dst);
        !lines.is_empty()
            && lines
                .iter()
                .all(|l| ranges(&l["allowed"][protocol]).any(|(lo, hi)| lo <= port && port <= hi))
    }

    /// The port ranges allowed on any line, clipped to `first..=last`.
    fn allowed_in(
        &self,
        src: &str,
        dst: &str,
        protocol: &str,
        first: u16,
        last: u16,
    ) -> Vec<(u16, u16)> {
        self.lines(src, dst)
            .iter()
            .flat_map(|l| ranges(&l["allowed"][protocol]))
            .map(|(lo, hi)| (lo.max(first), hi.min(last)))
            .filter(|(lo, hi)| lo <= hi)
            .collect()
    }
}

/// `[[lo, hi], ...]` of a connectivity line.
fn ranges(v: &Value) -> impl Iterator<Item = (u16, u16)> + '_ {
    v.as_array().into_iter().flatten().map(|r| {
        let n = |i: usize| u16::try_from(r[i].as_u64().expect("a port")).expect("a port");
        (n(0), n(1))
    })
}

/// The proof's list `field` (empty when absent).
fn list<'a>(proof: &'a Value, field: &str) -> &'a [Value] {
    proof[field].as_array().map_or(&[], Vec::as_slice)
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect()
}

/// Learning: the call graph, DNS and the internet client in rounds (every
/// edge first seen in the first round), then the stray once, then the
/// scan. Returns when their flow records are in the flow log.
fn learn(lab: &Lab, hosts: &[Pod]) {
    let t0 = now_ms();
    let dns: SocketAddr = KUBE_DNS.parse().unwrap();
    for round in 0..ROUNDS {
        for client in dns_clients() {
            udp_exchange(pod(hosts, client), dns, 1, 32);
        }
        for edge in CALL_GRAPH {
            assert!(connect(hosts, edge), "learning, round {round}: {edge:?}");
        }
        let internet = (CLIENT, FRONTEND, FRONTEND_PORT);
        assert!(connect(hosts, internet), "learning: {internet:?}");
    }
    assert!(connect(hosts, STRAY), "learning: the stray {STRAY:?}");
    let scanner = pod(hosts, SCANNER);
    for target in SCANNED {
        let ip = pod(hosts, target).ip(true);
        for port in SCAN_FIRST..=SCAN_LAST {
            // Refused at once, or connected on the listener.
            let _ = tcp_attempt(
                scanner,
                SocketAddr::new(ip, port),
                Duration::from_millis(300),
            );
        }
    }
    wait_for_logged(lab, &window_records(), t0, Duration::from_secs(30));
}

/// Step 2: the proposal with defaults, as JSON, checked.
fn check_proposal(claims: &mut Claims, lab: &Lab, work: &Path) {
    let json = propose(lab, lab.manifests.path(), &["--output", "json"]);
    let again = propose(lab, lab.manifests.path(), &["--output", "json"]);
    claims.check(
        "the same history proposes the same bytes",
        json == again,
        "two runs differ",
    );
    let out: Value = serde_json::from_str(&json).expect("propose JSON");
    let proof = &out["proof"];
    claims.check(
        "coverage 100%, no observed edge denied",
        proof["coverage_percent"] == 100.0 && list(proof, "denied").is_empty(),
        format!("{} {:?}", proof["coverage_percent"], list(proof, "denied")),
    );

    // The proposed policies over the app's manifests, as the evaluator
    // reads them.
    let evaluated = work.join("proposed-with-app");
    std::fs::create_dir_all(&evaluated).unwrap();
    std::fs::copy(
        lab.manifests.path().join("manifests.yaml"),
        evaluated.join("app.yaml"),
    )
    .unwrap();
    for p in out["policies"].as_array().expect("policies") {
        let file = format!(
            "{}.{}.yaml",
            p["namespace"].as_str().unwrap(),
            p["name"].as_str().unwrap()
        );
        std::fs::write(evaluated.join(file), p["yaml"].as_str().expect("yaml")).unwrap();
    }
    let conn = Connectivity::of(&evaluated);
    let missing: Vec<_> = CALL_GRAPH
        .iter()
        .filter(|(s, d, p)| !conn.allows(s, d, "TCP", *p))
        .collect();
    claims.check(
        "the proposal allows the call graph",
        missing.is_empty(),
        format!("{missing:?}"),
    );
    let mut all_pods = dns_clients();
    all_pods.insert(IDLE);
    let no_dns: Vec<(&str, &str)> = all_pods
        .iter()
        .flat_map(|p| ["UDP", "TCP"].map(|proto| (*p, proto)))
        .filter(|(p, proto)| !conn.allows(p, DNS_SERVER, proto, 53))
        .collect();
    claims.check(
        "the proposal allows DNS (UDP and TCP 53) to the DNS server from every pod, \
         those not seen included",
        no_dns.is_empty(),
        format!("not from {no_dns:?}"),
    );
    let scanned: Vec<(&str, Vec<(u16, u16)>)> = SCANNED
        .iter()
        .map(|t| {
            (
                *t,
                conn.allowed_in(SCANNER, t, "TCP", SCAN_FIRST, SCAN_LAST),
            )
        })
        .filter(|(_, ports)| !ports.is_empty())
        .collect();
    claims.check(
        "the proposal admits the scanner to none of the peers and ports it probed",
        scanned.is_empty(),
        format!("{scanned:?}"),
    );

    // The proof's findings.
    let scan = list(proof, "scans")
        .iter()
        .find(|s| s["source"] == workload(SCANNER).as_str());
    let scan_ok = scan.is_some_and(|s| {
        let edges = strings(&s["edges"]);
        strings(&s["peers"]) == SCANNED.iter().map(|p| workload(p)).collect()
            && s["ports"] == format!("{SCAN_FIRST}-{SCAN_LAST}")
            && edges.len() == SCANNED.len() * usize::from(SCAN_LAST - SCAN_FIRST + 1)
            && !edges.iter().any(|e| e.ends_with("TCP/3550"))
    });
    claims.check(
        "proof.scans lists the scan: its source, the three peers, ports 1-100, its 300 edges \
         (and not the scanner's call-graph edge)",
        scan_ok,
        format!("{:?}", list(proof, "scans")),
    );
    let stray = list(proof, "flagged").iter().any(|f| {
        let ends = [&f["subject"], &f["peer"]].map(|e| e.as_str().unwrap_or("").to_owned());
        let stray = [workload(STRAY.0), workload(STRAY.1)];
        (ends == stray || ends == [stray[1].clone(), stray[0].clone()])
            && f["port"] == STRAY.2
            && f["flows"] == 1
            && f["rare"] == true
    });
    claims.check(
        "proof.flagged lists the stray edge as rare (1 flow)",
        stray,
        format!("{:?}", list(proof, "flagged")),
    );
    let steady_flagged: Vec<&Value> = list(proof, "flagged")
        .iter()
        .filter(|f| {
            let peer = f["peer"].as_str().unwrap_or("");
            let subject = f["subject"].as_str().unwrap_or("");
            CALL_GRAPH.iter().any(|(s, d, p)| {
                let (s, d) = (workload(s), workload(d));
                f["port"] == *p && ((subject == s && peer == d) || (subject == d && peer == s))
            })
        })
        .collect();
    claims.check(
        "no call-graph edge is flagged (each was seen steadily from the first round)",
        steady_flagged.is_empty(),
        format!("{steady_flagged:?}"),
    );
    let idle = list(proof, "unproposed_workloads")
        .iter()
        .any(|w| w["workload"] == workload(IDLE).as_str() && w["reason"] == "not_seen");
    claims.check(
        "proof.unproposed_workloads names reports, not seen",
        idle,
        format!("{:?}", list(proof, "unproposed_workloads")),
    );
    let dns = list(proof, "infrastructure")
        .iter()
        .any(|i| i["workload"] == workload(DNS_SERVER).as_str() && i["role"] == "dns_server");
    claims.check(
        "proof.infrastructure names the DNS server",
        dns,
        format!("{:?}", list(proof, "infrastructure")),
    );
    let facing = list(proof, "internet_facing").iter().any(|i| {
        i["workload"] == workload(FRONTEND).as_str()
            && strings(&i["services"]).contains(FRONTEND_LB)
            && strings(&i["ports"]).contains(&format!("TCP/{FRONTEND_PORT}"))
            && i["open_to_all"] == true
    });
    claims.check(
        "proof.internet_facing: the frontend's 8080 open to all, behind its LoadBalancer",
        facing,
        format!("{:?}", list(proof, "internet_facing")),
    );
}

/// Step 3: the proposal in enforce, applied in the lab, on real packets.
fn check_applied(claims: &mut Claims, lab: &Lab, hosts: &[Pod], work: &Path) {
    let out_dir = work.join("enforce");
    let dir = out_dir.display().to_string();
    propose(
        lab,
        lab.manifests.path(),
        &["--mode", "enforce", "--output-dir", &dir],
    );
    for e in std::fs::read_dir(&out_dir).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        lab.write_policy(&name, &std::fs::read_to_string(&path).unwrap());
    }
    lab.ok("sync", &[]);
    let again: Value = serde_json::from_str(&propose(
        lab,
        &lab.watched(),
        &["--mode", "enforce", "--output", "json"],
    ))
    .expect("propose JSON");
    let diff = &again["proof"]["diff"];
    claims.check(
        "proposed again over the applied policies: no change",
        list(diff, "added").is_empty() && list(diff, "changed").is_empty(),
        diff,
    );

    let cut: Vec<_> = CALL_GRAPH.iter().filter(|e| !connect(hosts, **e)).collect();
    claims.check(
        "applied: every call-graph edge connects",
        cut.is_empty(),
        format!("{cut:?}"),
    );
    claims.check(
        "applied: an unlearned connection is dropped",
        !connect(hosts, UNLEARNED),
        format!("{UNLEARNED:?} connected"),
    );
    let dns: SocketAddr = KUBE_DNS.parse().unwrap();
    claims.check(
        "applied: DNS through kube-dns from a learnt pod",
        lookup(pod(hosts, FRONTEND), dns),
        "no answer",
    );
    claims.check(
        "applied: DNS through kube-dns from reports (not seen while learning)",
        lookup(pod(hosts, IDLE), dns),
        "no answer",
    );
    claims.check(
        "applied: the internet client seen while learning reaches the frontend",
        connect(hosts, (CLIENT, FRONTEND, FRONTEND_PORT)),
        "dropped",
    );
    claims.check(
        "applied: an internet client never seen reaches the frontend",
        connect(hosts, (NEW_CLIENT, FRONTEND, FRONTEND_PORT)),
        "dropped",
    );
    let upstream = SocketAddr::new(pod(hosts, NEW_CLIENT).ip(true), 53);
    claims.check(
        "applied: the DNS server keeps its egress (reaches an upstream resolver)",
        lookup(pod(hosts, DNS_SERVER), upstream),
        "no answer",
    );
    claims.check(
        "applied: the scanner cannot reach the listener its scan found",
        !connect(hosts, SCAN_LISTENER),
        format!("{SCAN_LISTENER:?} connected"),
    );
    claims.check(
        "applied: the stray is as proposed (allowed, flagged)",
        connect(hosts, STRAY) == STRAY_PROPOSED,
        format!("connected: {}", !STRAY_PROPOSED),
    );
}

#[test]
fn a_learnt_shop_gets_a_proposal_a_security_engineer_would_sign() {
    if !privileged() {
        return;
    }
    let _serial = serial();
    let before = snapshot();
    let started = Instant::now();
    {
        let name = format!("ba{}", std::process::id() % 10_000);
        let lab = Lab::new(
            &name,
            &policies("boutique", &["app.yaml", "kube-system.yaml"]),
        );
        let externals = format!("{CLIENT},{NEW_CLIENT}");
        let up = lab.up(&[
            "--mode",
            "learn",
            "--flow-idle-timeout",
            "1",
            "--external",
            &externals,
        ]);
        assert!(up.status.success(), "lab up failed");
        let state = lab.state();
        let mut hosts = Pod::all(&state);
        hosts.extend(Pod::externals(&state));
        eprintln!("lab up after {:?}", started.elapsed());

        learn(&lab, &hosts);
        eprintln!("learnt after {:?}", started.elapsed());
        let work = lab_support::tempdir::Dir::new(&format!("{name}-work"));
        let mut claims = Claims::default();
        check_proposal(&mut claims, &lab, work.path());
        eprintln!("proposed after {:?}", started.elapsed());
        check_applied(&mut claims, &lab, &hosts, work.path());
        eprintln!("applied after {:?}", started.elapsed());
        claims.assert_all();
    }
    assert_eq!(snapshot(), before, "the lab left something behind");
}
