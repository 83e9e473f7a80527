//! `bulkhead promote`: set the mode of NetworkPolicies and cluster-admin
//! policies in their manifests (audit → enforce by default), verified
//! before anything is written.
//! See `docs/learn.md`.

use std::io::Write;
use std::path::PathBuf;

use clap::{ArgGroup, Args};
use serde_json::json;

use super::{CliError, Output};
use bulkhead_learn::promote::{self, Plan, Selection};
use bulkhead_policy::model::Mode;

/// Arguments of `bulkhead promote`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("which").required(true).args(["policies", "all"])))]
pub struct PromoteArgs {
    /// Directory (searched recursively) or file of Kubernetes manifests, YAML or JSON.
    #[arg(long, value_name = "DIR")]
    pub manifests: PathBuf,
    /// Policies to change: namespace/name for a NetworkPolicy, Kind/name
    /// for a cluster-admin policy (e.g. ClusterNetworkPolicy/db-guardrail).
    #[arg(value_name = "POLICY")]
    pub policies: Vec<String>,
    /// Every policy now in audit mode: NetworkPolicies (by their own
    /// annotation or their namespace's) and cluster-admin policies.
    #[arg(long, conflicts_with = "policies")]
    pub all: bool,
    /// The mode to set: enforce, audit or learn.
    #[arg(long, value_name = "MODE", default_value = "enforce")]
    pub to: Mode,
    /// Print the changes as a diff; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Output format: a line per policy, or JSON Lines.
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
}

/// Runs the command.
pub fn run(args: &PromoteArgs) -> Result<(), CliError> {
    let selection = if args.all {
        Selection::Audit
    } else {
        Selection::Policies(args.policies.clone())
    };
    let plan = promote::plan(&args.manifests, &selection, args.to)?;
    if args.all && plan.promotions.is_empty() {
        eprintln!("no policy is in audit mode");
        return Ok(());
    }
    if !args.dry_run {
        plan.write()?;
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match args.output {
        Output::Text => {
            for p in &plan.promotions {
                writeln!(out, "{p}")?;
            }
            if args.dry_run {
                out.write_all(plan.diff().as_bytes())?;
            }
        }
        Output::Json => {
            for p in &plan.promotions {
                let status = match (p.changed, args.dry_run) {
                    (false, _) => "already",
                    (true, true) => "would-change",
                    (true, false) => "changed",
                };
                let v = json!({
                    "policy": p.policy,
                    "from": p.from.as_str(),
                    "to": p.to.as_str(),
                    "file": p.file,
                    "line": p.line,
                    "status": status,
                });
                serde_json::to_writer(&mut out, &v).map_err(std::io::Error::from)?;
                writeln!(out)?;
            }
        }
    }
    out.flush()?;
    eprintln!("{}", summary(&plan, args.dry_run));
    Ok(())
}

fn summary(plan: &Plan, dry_run: bool) -> String {
    let n = |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let changed = n(
        plan.promotions.iter().filter(|p| p.changed).count(),
        "policy",
        "policies",
    );
    let files = n(plan.files.len(), "file", "files");
    if plan.files.is_empty() {
        "nothing to change".into()
    } else if dry_run {
        format!("dry run: {changed} in {files} would change; nothing written")
    } else {
        format!("changed {changed} in {files}")
    }
}
