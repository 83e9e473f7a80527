//! The incremental compiler's side of a change, measured beside a full
//! compile of the same model in the same run: how long
//! [`Incremental::apply`] takes to turn one change into its map writes,
//! against compiling the model in full (compile, image and index, what
//! every change cost before). Pure: no kernel, no root. What the kernel
//! adds (writing the delta, the switch) is in the comparison benchmark.
//!
//! Cases: the comparison benchmark's allow-list (N entries over policies
//! of 1,000 rules) with one entry added to and removed from its last
//! policy; and the policy benchmark's synthetic cluster (1k policies) with
//! a replica of a pod arriving and leaving, and a pod relabelled with a
//! label no selector reads. Every sample's outcome is checked to be the
//! fast path, and after each case the incremental image is checked
//! against the full compile's.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::ensure;
use bulkhead_policy::compile::compile_on_node;
use bulkhead_policy::compile::incremental::{Change, Incremental, LocalPod, Outcome, full_image};
use bulkhead_policy::model::{Model, Pod};
use serde::Serialize;

use crate::cluster::{ClusterSpec, LabelMode};
use crate::compare::allowlist;

/// One case: a kind of change at one size.
#[derive(Clone, Debug, Serialize)]
pub struct CaseResult {
    /// What changes.
    pub case: String,
    /// The model's size, in words.
    pub size: String,
    /// Full compile (compile, image, index) of the model, median of runs,
    /// milliseconds.
    pub full_ms: f64,
    /// The change on the fast path: percentiles, microseconds.
    pub change_us: Percentiles,
    /// Changes applied (all on the fast path).
    pub samples: usize,
    /// Map writes per change, median.
    pub writes: usize,
}

/// Percentiles of a sample, in its unit.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Percentiles {
    /// Of `v` (sorted here).
    pub fn of(v: &mut [f64]) -> Self {
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        Self {
            p50: at(0.5),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

/// Times `apply` of each change `samples` times; checks each is on the
/// fast path; returns the times (µs) and write counts.
fn time_changes(
    inc: &mut Incremental,
    mut change: impl FnMut(&Incremental, usize) -> Change,
    samples: usize,
) -> anyhow::Result<(Vec<f64>, Vec<usize>)> {
    let mut times = Vec::with_capacity(samples);
    let mut writes = Vec::with_capacity(samples);
    for i in 0..samples {
        let c = change(inc, i);
        let started = Instant::now();
        let outcome = inc.apply(c);
        times.push(started.elapsed().as_secs_f64() * 1e6);
        match outcome {
            Outcome::Delta(d) => writes.push(d.len()),
            Outcome::Full => anyhow::bail!("change {i} needed a full compile"),
        }
    }
    Ok((times, writes))
}

/// Median of `runs` full compiles of `model` (compile, image, index), ms.
fn full_ms(model: &Model, local: &BTreeMap<String, LocalPod>, runs: usize) -> f64 {
    let mut v: Vec<f64> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            let inc = Incremental::new(model.clone(), Vec::new(), local.clone());
            let t = started.elapsed().as_secs_f64() * 1e3;
            drop(inc);
            t
        })
        .collect();
    Percentiles::of(&mut v).p50
}

/// Checks the incremental image against a full compile of its model.
fn check(inc: &Incremental) -> anyhow::Result<()> {
    let compiled = compile_on_node(inc.model(), inc.node_ips());
    let want = full_image(inc.model(), &compiled, inc.local());
    ensure!(
        *inc.image() == want,
        "the incremental image differs from the full compile's"
    );
    Ok(())
}

fn result(
    case: &str,
    size: String,
    full_ms: f64,
    times: &mut [f64],
    writes: &mut [usize],
) -> CaseResult {
    writes.sort_unstable();
    CaseResult {
        case: case.into(),
        size,
        full_ms,
        change_us: Percentiles::of(times),
        samples: times.len(),
        writes: writes[writes.len() / 2],
    }
}

/// The allow-list of `n` entries: one entry added to its last policy, and
/// removed again, `samples` times each.
pub fn allow_list(n: usize, samples: usize, runs: usize) -> anyhow::Result<Vec<CaseResult>> {
    let entries = allowlist::entries(n);
    let model = allowlist::model(&entries);
    let local: BTreeMap<String, LocalPod> = [("client", 1), ("server", 2)]
        .into_iter()
        .map(|(name, ifindex)| {
            let key = format!("{}/{name}", allowlist::NAMESPACE);
            (key, LocalPod { ifindex, mac: None })
        })
        .collect();
    let full = full_ms(&model, &local, runs);
    let mut inc = Incremental::new(model, Vec::new(), local);
    let with = allowlist::last_policy_with(&entries, allowlist::update_entry());
    let last = (entries.len() - 1) / allowlist::POLICY_RULES_MAX;
    let without = allowlist::policy(last, &entries[last * allowlist::POLICY_RULES_MAX..]);
    let (mut add_t, mut add_w, mut del_t, mut del_w) = (vec![], vec![], vec![], vec![]);
    for _ in 0..samples {
        let (t, w) = time_changes(&mut inc, |_, _| Change::PolicyUpsert(with.clone()), 1)?;
        add_t.extend(t);
        add_w.extend(w);
        let (t, w) = time_changes(&mut inc, |_, _| Change::PolicyUpsert(without.clone()), 1)?;
        del_t.extend(t);
        del_w.extend(w);
    }
    check(&inc)?;
    let size = format!("{n} entries");
    Ok(vec![
        result(
            "allow-list: one entry added",
            size.clone(),
            full,
            &mut add_t,
            &mut add_w,
        ),
        result(
            "allow-list: one entry removed",
            size,
            full,
            &mut del_t,
            &mut del_w,
        ),
    ])
}

/// The synthetic cluster of `pods` pods and 1,000 policies, 110 of its
/// pods local: a pod leaving, its replacement arriving, and that one
/// relabelled, `samples` times.
pub fn cluster(
    pods: usize,
    samples: usize,
    runs: usize,
    seed: u64,
) -> anyhow::Result<Vec<CaseResult>> {
    let spec = ClusterSpec {
        seed,
        namespaces: 50,
        apps_per_namespace: 12,
        pods,
        policies: 1000,
        labels: LabelMode::Realistic,
    };
    let model = spec.build().model;
    let stride = (model.pods.len() / 110).max(1);
    let local: BTreeMap<String, LocalPod> = model
        .pods
        .iter()
        .enumerate()
        .filter(|(i, _)| i % stride == 0)
        .map(|(i, p)| {
            let l = LocalPod {
                ifindex: 10 + i as u32,
                mac: None,
            };
            (p.key(), l)
        })
        .collect();
    let full = full_ms(&model, &local, runs);
    // Pods off the node whose identity other pods share (replicas of a
    // workload, as far as the selectors see): a rollout replaces one by a
    // new pod of the same template, here on the address the old one left
    // (the same ipBlocks, as its node's pod CIDR would give). A pod alone
    // in its identity makes the identity vanish and appear: a full compile
    // (see the module doc of the incremental compiler).
    let compiled = bulkhead_policy::compile::compile_on_node(&model, &[]);
    let shared = |p: &Pod| {
        p.ips.iter().all(|a| {
            compiled
                .identities
                .by_pod_addr
                .get(a)
                .is_some_and(|&(id, _)| {
                    matches!(&compiled.identities.get(id).kind,
                    bulkhead_policy::compile::IdentityKind::Pods { pods, .. } if pods.len() >= 2)
                })
        })
    };
    let candidates: Vec<Pod> = model
        .pods
        .iter()
        .filter(|p| !local.contains_key(&p.key()) && !p.ips.is_empty() && shared(p))
        .cloned()
        .collect();
    drop(compiled);
    ensure!(candidates.len() >= samples, "{samples} pods with siblings");
    let step = candidates.len() / samples;
    let chosen: Vec<Pod> = candidates.into_iter().step_by(step).take(samples).collect();
    let mut inc = Incremental::new(model, Vec::new(), local);
    let (mut del_t, mut del_w, mut add_t, mut add_w, mut rel_t, mut rel_w) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for (i, old) in chosen.iter().enumerate() {
        let mut new = old.clone();
        new.name = format!("{}-next", old.name);
        let (t, w) = time_changes(
            &mut inc,
            |_, _| Change::PodDelete {
                namespace: old.namespace.clone(),
                name: old.name.clone(),
            },
            1,
        )?;
        del_t.extend(t);
        del_w.extend(w);
        let (t, w) = time_changes(&mut inc, |_, _| Change::PodUpsert(new.clone()), 1)?;
        add_t.extend(t);
        add_w.extend(w);
        new.labels
            .insert("bench.bulkhead.io/touched".into(), i.to_string());
        let (t, w) = time_changes(&mut inc, |_, _| Change::PodUpsert(new.clone()), 1)?;
        rel_t.extend(t);
        rel_w.extend(w);
    }
    check(&inc)?;
    let size = format!("{pods} pods, 1,000 policies");
    Ok(vec![
        result(
            "pod arrives (a replica)",
            size.clone(),
            full,
            &mut add_t,
            &mut add_w,
        ),
        result(
            "pod relabelled (a label no selector reads)",
            size.clone(),
            full,
            &mut rel_t,
            &mut rel_w,
        ),
        result("pod leaves", size, full, &mut del_t, &mut del_w),
    ])
}
