//! The policy compile benchmark's report: one serializable value written as
//! raw JSON, and the same numbers rendered as Markdown.

use std::fmt::Write as _;

use serde::Serialize;

use crate::measure::{CaseResult, PODS_PER_NODE, Plan};
use crate::run_info::RunInfo;

/// The compile time the issue asks for, for the target case.
pub const TARGET_MS: f64 = 1000.0;

/// Whether the target case met [`TARGET_MS`].
#[derive(Clone, Debug, Serialize)]
pub struct Target {
    /// The case it is judged on.
    pub case: String,
    /// Its median compile time.
    pub compile_median_ms: f64,
    /// The limit.
    pub limit_ms: f64,
    /// Median under the limit.
    pub met: bool,
}

/// A whole run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The run: command, machine, time (top-level fields in JSON).
    #[serde(flatten)]
    pub run: RunInfo,
    /// What each headline case measured.
    pub plan: Plan,
    /// The target verdict, if the target case ran.
    pub target: Option<Target>,
    /// Headline cases, fully measured.
    pub cases: Vec<CaseResult>,
    /// One policy set, growing pod counts.
    pub pod_scaling: Vec<CaseResult>,
    /// One pod count and policy set, three label diversities.
    pub label_modes: Vec<CaseResult>,
    /// One pod set, growing policy counts.
    pub policy_scaling: Vec<CaseResult>,
}

/// Writes `<stem>.md` and `<stem>.json` (pretty, newline-terminated) into
/// `out_dir`, creating it, and says where on stderr.
pub fn write_results(
    out_dir: &std::path::Path,
    stem: &str,
    markdown: &str,
    report: &impl Serialize,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let md = out_dir.join(format!("{stem}.md"));
    let json = out_dir.join(format!("{stem}.json"));
    std::fs::write(&md, markdown).with_context(|| format!("writing {}", md.display()))?;
    let mut raw = serde_json::to_string_pretty(report)?;
    raw.push('\n');
    std::fs::write(&json, raw).with_context(|| format!("writing {}", json.display()))?;
    eprintln!("wrote {} and {}", md.display(), json.display());
    Ok(())
}

/// Where a benchmark binary writes its report (its `--out-dir` and
/// `--no-write` flags).
#[derive(clap::Args, Clone, Debug)]
pub struct Output {
    /// Where to write the report.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/results"))]
    pub out_dir: std::path::PathBuf,
    /// Print the report only; write no files.
    #[arg(long)]
    pub no_write: bool,
}

impl Output {
    /// The end of every benchmark: writes `<name>.md` and `<name>.json`
    /// (`<name>-quick.*` if `quick`) into the output directory (see
    /// [`write_results`]) unless `--no-write`, then prints the Markdown to
    /// stdout.
    pub fn publish(
        &self,
        name: &str,
        quick: bool,
        markdown: &str,
        report: &impl Serialize,
    ) -> anyhow::Result<()> {
        if !self.no_write {
            let stem = if quick {
                format!("{name}-quick")
            } else {
                name.to_string()
            };
            write_results(&self.out_dir, &stem, markdown, report)?;
        }
        print!("{markdown}");
        Ok(())
    }
}

/// `1234567` → `1,234,567`.
pub fn int(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn opt_int(n: Option<usize>) -> String {
    n.map_or_else(|| "–".into(), int)
}

/// KiB as whole MiB (`–` when unknown).
pub fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(|| "–".into(), |k| format!("{:.0} MiB", k as f64 / 1024.0))
}

fn qps(q: Option<f64>) -> String {
    match q {
        None => "–".into(),
        Some(q) if q >= 1e6 => format!("{:.2} M/s", q / 1e6),
        Some(q) => format!("{:.0} k/s", q / 1e3),
    }
}

fn ratio(a: f64, b: f64) -> String {
    if b == 0.0 {
        "–".into()
    } else {
        format!("×{:.2}", a / b)
    }
}

impl Report {
    /// The report as Markdown.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        self.run
            .markdown_header(&mut s, "Policy compile benchmark", true);

        if let Some(t) = &self.target {
            let verdict = if t.met { "**met**" } else { "**missed**" };
            let _ = writeln!(
                s,
                "Target (compile {} in under {:.0} ms): median {:.1} ms, {verdict}.\n",
                t.case, t.limit_ms, t.compile_median_ms
            );
        }
        self.headline(&mut s);
        if !self.pod_scaling.is_empty() {
            let _ = writeln!(
                s,
                "## Scaling with pods (one policy set, realistic labels)\n"
            );
            scaling(&mut s, &self.pod_scaling, |c| int(c.spec.pods));
            growth(&mut s, &self.pod_scaling, "pods", |c| c.spec.pods as f64);
        }
        if !self.label_modes.is_empty() {
            let _ = writeln!(s, "## Label diversity (one pod count and policy set)\n");
            let _ = writeln!(
                s,
                "`replicas`: every pod has exactly its workload's template labels. `realistic`: \
                 StatefulSet pods also carry a unique `statefulset.kubernetes.io/pod-name`, a tenth \
                 of the pods are canaries. `distinct`: every pod carries a unique pod-name label.\n"
            );
            scaling(&mut s, &self.label_modes, |c| c.spec.labels.as_str().into());
        }
        if !self.policy_scaling.is_empty() {
            let _ = writeln!(s, "## Scaling with policies (one pod set)\n");
            scaling(&mut s, &self.policy_scaling, |c| int(c.spec.policies));
            growth(&mut s, &self.policy_scaling, "policies", |c| {
                c.spec.policies as f64
            });
        }
        let _ = writeln!(s, "## Method\n");
        let _ = writeln!(
            s,
            "- Synthetic cluster (`bench/src/cluster/`), seed {seed}: {ns} namespaces (incl. kube-system \
             and monitoring), {apps} workloads per application namespace; pods are replicas of them. \
             Policies are drawn from the namespaces and workloads only, so every pod count gets the \
             same policy set: per-namespace default deny, DNS egress to kube-system (numeric and \
             named ports), same-namespace app rules, namespaceSelector+podSelector peers, \
             matchExpressions (In/NotIn/Exists/DoesNotExist), ipBlocks with except (some covering pod \
             addresses), numeric, endPort and named ports, UDP and SCTP, egress to the internet.",
            seed = self.cases.first().map_or(0, |c| c.spec.seed),
            ns = self.cases.first().map_or(0, |c| c.spec.namespaces),
            apps = self.cases.first().map_or(0, |c| c.spec.apps_per_namespace),
        );
        let _ = writeln!(
            s,
            "- Model build (generate, normalize, assign addresses) is timed apart from compile. \
             Compile is `bulkhead_policy::compile::compile(&model)`, {} runs per headline case \
             (median reported; scaling rows use fewer runs); map image is `Compiled::map_image()`.",
            self.plan.compile_runs
        );
        let _ = writeln!(
            s,
            "- Evaluator: a fixed seeded set of {} queries (80% pod→pod, a third of them within the \
             namespace; 10% external→pod; 10% pod→external; 75% IPv4; 60% of pod-destined queries \
             use a port the destination declares). `allowed`: median of {} passes; `evaluate`: the \
             first {} queries, one pass.",
            int(self.plan.queries),
            self.plan.allowed_passes,
            int(self.plan.evaluate_queries)
        );
        let _ = writeln!(
            s,
            "- Per-node policy entries: pods are dealt round-robin to nodes of {PODS_PER_NODE}; a \
             node needs the policy entries of the tables its pods use (each table once)."
        );
        let _ = writeln!(
            s,
            "- Peak RSS is `VmHWM`, reset at the start of each case through `/proc/self/clear_refs`; \
             it includes the model, the compiled policy, one map image and the query set."
        );
        s
    }

    fn headline(&self, s: &mut String) {
        if self.cases.is_empty() {
            return;
        }
        let _ = writeln!(s, "## Headline cases\n");
        let names: Vec<&str> = self.cases.iter().map(|c| c.name.as_str()).collect();
        let _ = writeln!(s, "| | {} |", names.join(" | "));
        let _ = writeln!(s, "| --- |{}", " ---: |".repeat(names.len()));
        let row = |s: &mut String, label: &str, f: &dyn Fn(&CaseResult) -> String| {
            let cells: Vec<String> = self.cases.iter().map(f).collect();
            let _ = writeln!(s, "| {label} | {} |", cells.join(" | "));
        };
        row(s, "model build (not in compile)", &|c| {
            format!("{:.1} ms", c.build_ms)
        });
        row(s, "**compile, median**", &|c| {
            format!("**{:.1} ms**", c.compile.median_ms)
        });
        row(s, "compile, min – max", &|c| {
            format!("{:.1} – {:.1} ms", c.compile.min_ms, c.compile.max_ms)
        });
        row(s, "map image, median", &|c| {
            format!("{:.1} ms", c.map_image.median_ms)
        });
        row(s, "namespaces", &|c| int(c.counts.namespaces));
        row(
            s,
            "distinct pod label sets",
            &|c| int(c.distinct_label_sets),
        );
        row(s, "pod classes", &|c| int(c.counts.pod_classes));
        row(s, "identities (pod + external)", &|c| {
            format!(
                "{} ({} + {})",
                int(c.counts.identities),
                int(c.counts.pod_identities),
                int(c.counts.external_identities)
            )
        });
        row(s, "ipBlocks / address regions", &|c| {
            format!("{} / {}", c.counts.ip_blocks, c.counts.regions)
        });
        row(s, "tables (ingress + egress)", &|c| {
            format!(
                "{} ({} + {})",
                int(c.counts.tables),
                int(c.counts.ingress_tables),
                int(c.counts.egress_tables)
            )
        });
        row(s, "segments (largest table)", &|c| {
            format!(
                "{} ({})",
                int(c.counts.segments),
                int(c.counts.max_table_segments)
            )
        });
        row(s, "rules", &|c| int(c.counts.rules));
        row(s, "isolated endpoints (ingress / egress)", &|c| {
            format!(
                "{} / {}",
                int(c.counts.isolated_ingress),
                int(c.counts.isolated_egress)
            )
        });
        row(s, "map: identity LPM entries", &|c| {
            int(c.counts.map_identities)
        });
        row(s, "map: policy tree nodes", &|c| int(c.counts.map_policy));
        row(s, "map: endpoint entries", &|c| int(c.counts.map_endpoints));
        row(s, "policy tree nodes by peer: any / pod / external", &|c| {
            let k = &c.counts;
            format!(
                "{} / {} / {}",
                int(k.map_policy_any_peer),
                int(k.map_policy_pod_peers),
                int(k.map_policy_external_peers)
            )
        });
        row(s, "policy tree nodes, largest table", &|c| {
            int(c.counts.map_policy_max_table)
        });
        row(s, "policy tree depth, deepest (nodes per lookup)", &|c| {
            int(c.counts.map_policy_max_depth)
        });
        row(
            s,
            &format!("policy tree nodes per node of {PODS_PER_NODE} pods, median / max"),
            &|c| {
                format!(
                    "{} / {}",
                    int(c.counts.map_policy_per_node_median),
                    int(c.counts.map_policy_per_node_max)
                )
            },
        );
        row(s, "`allowed` queries/s", &|c| {
            qps(c.allowed.as_ref().map(|t| t.qps))
        });
        row(s, "`evaluate` queries/s", &|c| {
            qps(c.evaluate.as_ref().map(|t| t.qps))
        });
        row(s, "share of queries allowed", &|c| {
            c.allowed.as_ref().map_or("–".into(), |t| {
                format!("{:.1}%", t.allowed_fraction * 100.0)
            })
        });
        row(s, "`evaluate` ≠ `allowed` (must be 0)", &|c| {
            opt_int(c.evaluate_mismatches)
        });
        row(s, "RSS after model build", &|c| mib(c.memory.rss_model_kib));
        row(s, "peak RSS, build + compile", &|c| {
            mib(c.memory.peak_compile_kib)
        });
        row(s, "peak RSS, whole case", &|c| mib(c.memory.peak_kib));
        s.push('\n');
    }
}

fn scaling(s: &mut String, rows: &[CaseResult], key: impl Fn(&CaseResult) -> String) {
    let _ = writeln!(
        s,
        "| case | pods | label sets | pod classes | identities | tables | segments | rules | policy tree nodes | policy tree nodes per node (median) | identity LPM | compile median |"
    );
    let _ = writeln!(s, "| --- |{}", " ---: |".repeat(11));
    for c in rows {
        let k = &c.counts;
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} ms |",
            key(c),
            int(k.pods),
            int(c.distinct_label_sets),
            int(k.pod_classes),
            int(k.identities),
            int(k.tables),
            int(k.segments),
            int(k.rules),
            int(k.map_policy),
            int(k.map_policy_per_node_median),
            int(k.map_identities),
            c.compile.median_ms
        );
    }
    s.push('\n');
}

/// One line comparing the last row with the first.
fn growth(s: &mut String, rows: &[CaseResult], what: &str, x: impl Fn(&CaseResult) -> f64) {
    let (Some(a), Some(b)) = (rows.first(), rows.last()) else {
        return;
    };
    if rows.len() < 2 {
        return;
    }
    let f = |g: fn(&CaseResult) -> usize| ratio(g(b) as f64, g(a) as f64);
    let _ = writeln!(
        s,
        "From the first row to the last, {what} grow {}; pod classes {}, identities {}, tables {}, \
         segments {}, policy tree nodes {}, identity LPM entries {}, compile time {}.\n",
        ratio(x(b), x(a)),
        f(|c| c.counts.pod_classes),
        f(|c| c.counts.identities),
        f(|c| c.counts.tables),
        f(|c| c.counts.segments),
        f(|c| c.counts.map_policy),
        f(|c| c.counts.map_identities),
        ratio(b.compile.median_ms, a.compile.median_ms),
    );
}
