//! `propose_bench`: `bulkhead propose` at scale. Generates synthetic flow
//! records (deterministic seed) over a synthetic cluster of workloads, then
//! times history (records → edges) → proposal (policies + YAML) →
//! coverage proof (compile + replay + beyond-observed + diff) and reports
//! peak RSS. Target (issue 5): 1M records over 2k workloads in under 2 s
//! and under 500 MB.
//!
//! Writes `propose.md` and `propose.json` to `bench/results/`.
//!
//! ```text
//! cargo run --release -p bulkhead-bench --bin propose_bench
//! ```

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use bulkhead_bench::machine::{self, Machine};
use bulkhead_bench::report::{int, write_results};
use bulkhead_flows::record::{
    Address, Counts, Dropped, EndReason, FlowDirection, FlowRecord, FlowVerdict, IpProtocol,
    PodInfo, RecordKind, Schema, Timestamp,
};
use bulkhead_learn::{self as learn, History};
use bulkhead_policy::model::addressing::AddressPlan;
use bulkhead_policy::model::{ContainerPort, Model, Origin, Pod, Protocol, Workload};
use clap::Parser;
use serde::Serialize;

/// Proposal benchmark.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Flow records to generate.
    #[arg(long, default_value_t = 1_000_000)]
    records: usize,
    /// Workloads (plus one DNS workload in kube-system).
    #[arg(long, default_value_t = 2000)]
    workloads: usize,
    /// Workloads per namespace.
    #[arg(long, default_value_t = 50)]
    per_namespace: usize,
    /// Peers each workload calls.
    #[arg(long, default_value_t = 4)]
    fan_out: usize,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where to write the report.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/results"))]
    out_dir: PathBuf,
    /// Print the report only; write no files.
    #[arg(long)]
    no_write: bool,
    /// `cargo xtask bench --quick`: the same measurement (about 2 s), but
    /// the recorded results are not overwritten.
    #[arg(long)]
    quick: bool,
}

/// SplitMix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const T0: u64 = 1_795_887_601_000;

/// The cluster: a model and each workload's pod identity as records show it.
fn cluster(args: &Args) -> (Model, Vec<(Arc<PodInfo>, IpAddr)>) {
    let mut m = Model::default();
    let mut add = |ns: String, name: String, labels: Vec<(&str, String)>, port: u16, proto| {
        m.pods.push(Pod {
            namespace: ns,
            name: name.clone(),
            source: Workload {
                kind: "Deployment".into(),
                name,
            },
            owner: None,
            labels: labels
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            ports: vec![ContainerPort {
                name: Some("svc".into()),
                port,
                protocol: proto,
            }],
            ips: vec![],
            claim: Default::default(),
            node: None,
            off_network: None,
            origin: Origin::default(),
        });
    };
    add(
        "kube-system".into(),
        "coredns".into(),
        vec![("k8s-app", "kube-dns".into())],
        53,
        Protocol::Udp,
    );
    for i in 0..args.workloads {
        add(
            format!("ns-{:03}", i / args.per_namespace),
            format!("app-{i:04}"),
            vec![
                ("app", format!("app-{i:04}")),
                ("tier", ["web", "api", "data"][i % 3].into()),
            ],
            8000 + (i % 100) as u16,
            Protocol::Tcp,
        );
    }
    m.normalize();
    AddressPlan::default()
        .assign(&mut m.pods)
        .expect("addresses");
    let infos = m
        .pods
        .iter()
        .map(|p| {
            let mut labels: BTreeMap<String, String> = p.labels.clone();
            labels.insert("pod-template-hash".into(), "5d8f9c".into());
            (
                Arc::new(PodInfo {
                    namespace: p.namespace.as_str().into(),
                    pod: format!("{}-5d8f9c-x1y2z", p.name).into(),
                    workload: Some(format!("Deployment/{}", p.name).into()),
                    labels,
                }),
                p.ips[0],
            )
        })
        .collect();
    (m, infos)
}

/// (src pod index or external address, dst, protocol, port) connections.
type Conn = (Option<usize>, IpAddr, Option<usize>, IpAddr, u8, u16);

fn connections(args: &Args, model: &Model, infos: &[(Arc<PodInfo>, IpAddr)]) -> Vec<Conn> {
    let mut rng = Rng(args.seed);
    let dns = model
        .pods
        .iter()
        .position(|p| p.name == "coredns")
        .expect("dns");
    let n = infos.len();
    let mut out = Vec::new();
    for s in 0..n {
        if s == dns {
            continue;
        }
        out.push((Some(s), infos[s].1, Some(dns), infos[dns].1, 17, 53));
        for _ in 0..args.fan_out {
            let d = rng.below(n);
            if d == s || d == dns {
                continue;
            }
            let port = model.pods[d].ports[0].port;
            out.push((Some(s), infos[s].1, Some(d), infos[d].1, 6, port));
        }
        if rng.below(10) == 0 {
            let ext: IpAddr = format!("198.51.100.{}", rng.below(200) + 1)
                .parse()
                .unwrap();
            out.push((Some(s), infos[s].1, None, ext, 6, 443));
        }
        if rng.below(20) == 0 {
            let ext: IpAddr = format!("203.0.113.{}", rng.below(200) + 1).parse().unwrap();
            out.push((
                None,
                ext,
                Some(s),
                infos[s].1,
                6,
                model.pods[s].ports[0].port,
            ));
        }
    }
    out
}

fn record(
    infos: &[(Arc<PodInfo>, IpAddr)],
    c: &Conn,
    dir: FlowDirection,
    t: u64,
    node: &Arc<str>,
) -> FlowRecord {
    let end = |pod: Option<usize>, ip: IpAddr, port: u16| Address {
        ip,
        port,
        pod: pod.map(|p| infos[p].0.clone()),
        external: pod.is_none(),
    };
    let local = match dir {
        FlowDirection::Egress => c.0,
        FlowDirection::Ingress => c.2,
    };
    FlowRecord {
        schema: Schema,
        kind: RecordKind::Flow,
        event: None,
        node: node.clone(),
        start: Timestamp(t),
        end: Timestamp(t + 250),
        end_reason: Some(EndReason::Closed),
        ifindex: 7,
        endpoint: local.map(|p| infos[p].0.clone()),
        direction: dir,
        src: end(c.0, c.1, 40_000),
        dst: end(c.2, c.3, c.5),
        service: None,
        protocol: IpProtocol(c.4),
        packets: Counts { orig: 6, reply: 5 },
        bytes: Counts {
            orig: 900,
            reply: 4000,
        },
        dropped: Dropped::default(),
        tcp_flags: None,
        verdict: FlowVerdict::Allowed,
        drop_reason: None,
        policies: Arc::from(Vec::new()),
        revision: 1,
        audit: None,
    }
}

/// Records: connections drawn in turn (each a record per pod end) until
/// `count` records exist; time advances 1 ms per connection.
fn records(args: &Args, infos: &[(Arc<PodInfo>, IpAddr)], conns: &[Conn]) -> Vec<FlowRecord> {
    let node: Arc<str> = "node-a".into();
    let mut rng = Rng(args.seed ^ 0xABCD);
    let mut out = Vec::with_capacity(args.records);
    let mut t = T0;
    while out.len() < args.records {
        let c = &conns[rng.below(conns.len())];
        for (pod, dir) in [(c.0, FlowDirection::Egress), (c.2, FlowDirection::Ingress)] {
            if pod.is_some() && out.len() < args.records {
                out.push(record(infos, c, dir, t, &node));
            }
        }
        t += 1;
    }
    out
}

#[derive(Serialize)]
struct Report {
    benchmark: &'static str,
    command: String,
    machine: Machine,
    records: usize,
    workloads: usize,
    connections: usize,
    edges: usize,
    policies: usize,
    yaml_bytes: usize,
    replayed: u64,
    coverage_percent: f64,
    beyond_observed_entries: usize,
    generate_ms: f64,
    history_ms: f64,
    propose_ms: f64,
    render_ms: f64,
    prove_ms: f64,
    total_ms: f64,
    rss_before_kib: Option<u64>,
    peak_rss_kib: Option<u64>,
    target_ms: f64,
    target_mib: f64,
    time_met: bool,
    memory_met: bool,
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let t = Instant::now();
    let (model, infos) = cluster(&args);
    let conns = connections(&args, &model, &infos);
    let recs = records(&args, &infos, &conns);
    let generate_ms = ms(t);
    eprintln!("generated {} records in {generate_ms:.0} ms", recs.len());
    let rss_before_kib = machine::rss_kib();

    let start = Instant::now();
    let t = Instant::now();
    let mut history = History::default();
    for r in &recs {
        history.add_record(r);
    }
    let history_ms = ms(t);
    let t = Instant::now();
    let proposal = learn::propose(&history, &model);
    let propose_ms = ms(t);
    let t = Instant::now();
    let yaml = learn::render::proposal_yaml(&proposal);
    let render_ms = ms(t);
    let t = Instant::now();
    let proof = learn::prove(&history, &model, &proposal);
    let prove_ms = ms(t);
    let total_ms = ms(start);
    let peak_rss_kib = machine::peak_rss_kib();

    let mut command = "cargo run --release -p bulkhead-bench --bin propose_bench --".to_string();
    for a in std::env::args().skip(1) {
        command.push(' ');
        command.push_str(&a);
    }
    let report = Report {
        benchmark: "propose",
        command,
        machine: Machine::detect(),
        records: recs.len(),
        workloads: model.pods.len(),
        connections: conns.len(),
        edges: history.edges.len(),
        policies: proposal.policies.len(),
        yaml_bytes: yaml.len(),
        replayed: proof.replayed,
        coverage_percent: proof.coverage_percent,
        beyond_observed_entries: proof.beyond_observed.len(),
        generate_ms,
        history_ms,
        propose_ms,
        render_ms,
        prove_ms,
        total_ms,
        rss_before_kib,
        peak_rss_kib,
        target_ms: 2000.0,
        target_mib: 500.0,
        time_met: total_ms < 2000.0,
        memory_met: peak_rss_kib.is_some_and(|k| (k as f64) / 1024.0 < 500.0),
    };
    let md = markdown(&report);
    print!("{md}");
    if !args.no_write && !args.quick {
        write_results(&args.out_dir, "propose", &md, &report)?;
    }
    Ok(())
}

fn markdown(r: &Report) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let m = &r.machine;
    let mib = |k: Option<u64>| k.map_or("–".into(), |k| format!("{:.0} MiB", k as f64 / 1024.0));
    let met = |b: bool| if b { "**met**" } else { "**missed**" };
    let _ = writeln!(s, "# Proposal benchmark (`bulkhead propose`)\n");
    let _ = writeln!(s, "Command: `{}`\n", r.command);
    let _ = writeln!(
        s,
        "Machine: {} × {}, {}, kernel {}, {}, {} build, git {}.\n",
        m.nproc,
        m.cpu_model,
        mib(m.mem_total_kib),
        m.kernel,
        m.rustc,
        if m.release_build {
            "release"
        } else {
            "DEBUG (numbers meaningless)"
        },
        m.git
    );
    let _ = writeln!(
        s,
        "Target: {} flow records over {} workloads proposed in under {:.0} ms: {:.0} ms, {}; \
         under {:.0} MB peak RSS: {}, {}.\n",
        int(r.records),
        int(r.workloads),
        r.target_ms,
        r.total_ms,
        met(r.time_met),
        r.target_mib,
        mib(r.peak_rss_kib),
        met(r.memory_met)
    );
    let _ = writeln!(s, "| stage | time |\n| --- | ---: |");
    let _ = writeln!(s, "| records → edges (history) | {:.0} ms |", r.history_ms);
    let _ = writeln!(s, "| edges + model → proposal | {:.0} ms |", r.propose_ms);
    let _ = writeln!(s, "| proposal → YAML | {:.0} ms |", r.render_ms);
    let _ = writeln!(
        s,
        "| coverage proof (compile, replay, beyond observed, diff) | {:.0} ms |",
        r.prove_ms
    );
    let _ = writeln!(s, "| **total** | **{:.0} ms** |\n", r.total_ms);
    let _ = writeln!(s, "| size | |\n| --- | ---: |");
    let _ = writeln!(s, "| records | {} |", int(r.records));
    let _ = writeln!(s, "| workloads (model pods) | {} |", int(r.workloads));
    let _ = writeln!(
        s,
        "| distinct connections drawn from | {} |",
        int(r.connections)
    );
    let _ = writeln!(s, "| edges | {} |", int(r.edges));
    let _ = writeln!(s, "| policies proposed | {} |", int(r.policies));
    let _ = writeln!(s, "| YAML | {} bytes |", int(r.yaml_bytes));
    let _ = writeln!(
        s,
        "| edges replayed / coverage | {} / {:.1}% |",
        int(r.replayed as usize),
        r.coverage_percent
    );
    let _ = writeln!(
        s,
        "| beyond-observed entries | {} |",
        int(r.beyond_observed_entries)
    );
    let _ = writeln!(
        s,
        "| RSS with the records in memory, before timing | {} |",
        mib(r.rss_before_kib)
    );
    let _ = writeln!(
        s,
        "| peak RSS (`VmHWM`, whole process) | {} |\n",
        mib(r.peak_rss_kib)
    );
    let _ = writeln!(
        s,
        "Method: one synthetic cluster (seeded): workloads in namespaces of 50, each a \
         Deployment with `app`/`tier` labels and one declared port, plus CoreDNS in kube-system. \
         Every workload calls DNS and up to 4 random peers; a tenth call an external address, a \
         twentieth are called from one. Records are drawn from those connections at random, one \
         per pod end (egress and ingress), all carrying `pod-template-hash`. Generation is not \
         timed; the timed stages run on one thread. Peak RSS includes the generated records."
    );
    s
}
