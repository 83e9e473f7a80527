//! The comparison benchmark's harness end to end, small (root only; run by
//! `cargo xtask test`): every contender at N = 10 in one short round, with
//! the real tools (`cargo xtask setup` installs them). Every metric that
//! applies must come back, nothing may fail, the report and the plots must
//! render, and nothing may be left behind (namespaces, pins).
//!
//! It checks that the harness works, not how fast anything is.

use std::collections::BTreeSet;
use std::process::Command;

use bulkhead_bench::compare::model::{CompareResult, Contender, Metric, Plan};
use bulkhead_bench::compare::run::{RunConfig, breakdown, run};
use bulkhead_bench::compare::{plot, report, summary};
use bulkhead_bench::run_info::RunInfo;

fn netns_list() -> BTreeSet<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// bpffs mount points and what `/sys/fs/bpf` holds (the benchmark must
/// mount its own bpffs and leave the host's alone).
fn pins() -> BTreeSet<String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut out: BTreeSet<String> = mounts
        .lines()
        .filter(|l| l.split_whitespace().nth(2) == Some("bpf"))
        .map(|l| format!("mount {}", l.split_whitespace().nth(1).unwrap_or("?")))
        .collect();
    if let Ok(d) = std::fs::read_dir("/sys/fs/bpf") {
        out.extend(
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned()),
        );
    }
    out
}

#[test]
fn every_contender_and_metric_at_n_10() {
    if !bulkhead_bench::elf::root_or_skip("compare_smoke", "namespaces, eBPF, netfilter") {
        return;
    }
    let Ok(elf) = bulkhead_bench::elf::resolve(None) else {
        eprintln!("skipped: no eBPF ELF (cargo xtask build-ebpf)");
        return;
    };
    let (ns_before, pins_before) = (netns_list(), pins());
    let started = std::time::Instant::now();
    let plan = Plan {
        rules: vec![10],
        rounds: 1,
        seconds: 0.3,
        contenders: Contender::ALL.to_vec(),
        metrics: Metric::ALL.to_vec(),
    };
    let cfg = RunConfig {
        elf: elf.clone(),
        plan: plan.clone(),
        reloads: 1,
        profile: false,
    };
    let measured = run(&cfg).expect("run");
    assert!(measured.notes.is_empty(), "failures: {:#?}", measured.notes);
    for c in Contender::ALL {
        for m in Metric::ALL.into_iter().filter(|m| m.applies_to(c)) {
            let n = measured
                .samples
                .iter()
                .filter(|s| s.contender == c && s.metric == m && s.value.is_finite())
                .count();
            assert_eq!(n, 1, "{} {}", c.key(), m.key());
        }
    }
    // Allowed traffic flowed through every contender.
    for s in measured
        .samples
        .iter()
        .filter(|s| s.metric == Metric::PacketRate)
    {
        assert!(s.value > 0.0, "{} passed nothing", s.contender.key());
    }
    assert_eq!(measured.program_cost.len(), 1, "program cost at N = 10");
    let cells = summary::cells(&measured.samples);
    let result = CompareResult {
        run: RunInfo::start("compare", "compare_bench", true, started).with_ebpf(&elf),
        breakdown: breakdown(&cells, &measured),
        plan,
        tools: Vec::new(),
        samples: measured.samples,
        cells,
        notes: Vec::new(),
    };
    let md = report::markdown(&result);
    assert!(md.contains("## Targets"), "{md}");
    let dir = tempfile::tempdir().unwrap();
    let pngs = plot::plots(&result, dir.path(), "smoke").expect("plots");
    assert!(!pngs.is_empty());
    assert_eq!(netns_list(), ns_before, "namespaces left behind");
    assert_eq!(pins(), pins_before, "bpffs mounts or pins left behind");
}
