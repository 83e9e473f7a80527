//! `bulkhead propose`: NetworkPolicies that allow exactly the observed
//! edges, with the coverage proof. See `docs/learn.md`.

use std::io::Write;
use std::path::PathBuf;

use clap::{ArgGroup, Args, ValueEnum};
use serde_json::json;

use super::{CliError, ManifestArgs};
use crate::learn::{self, History, ReadError, StoreError, render};
use crate::model::Mode;

/// Output format of `propose`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum ProposeOutput {
    /// The policies as YAML (stdout unless --output-dir); the proof on stderr.
    #[default]
    Yaml,
    /// One JSON object on stdout: the policies (YAML text each) and the proof.
    Json,
}

/// Arguments of `bulkhead propose`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("history").required(true).args(["flows", "history_db", "lab"])))]
pub struct ProposeArgs {
    /// The current manifests (workloads, namespaces, existing policies).
    #[command(flatten)]
    pub manifests: ManifestArgs,
    /// Flow records, JSON Lines (`bulkhead.flow/v1`, as the agent's
    /// `--flow-log` or `bulkhead flows --output json` write them).
    #[arg(long, value_name = "FILE.jsonl")]
    pub flows: Option<PathBuf>,
    /// The agent's durable flow history (read-only; not while the agent
    /// holds it open).
    #[arg(long, value_name = "PATH")]
    pub history_db: Option<PathBuf>,
    /// A lab's flow log: /run/bulkhead/lab/NAME/flows.jsonl.
    #[arg(long, value_name = "NAME")]
    pub lab: Option<String>,
    /// Write one file per policy (`<namespace>.<name>.yaml`) here instead
    /// of YAML to stdout.
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub output: ProposeOutput,
    /// Set every proposed policy's own mode (annotation `bulkhead.io/mode`):
    /// enforce, audit or learn. Apply a proposal in audit first, then
    /// `bulkhead promote` it. Default: no annotation (the namespace's or
    /// the agent's mode applies).
    #[arg(long, value_name = "MODE")]
    pub mode: Option<Mode>,
}

/// Why `propose` could not read its input.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    /// The flow file.
    #[error(transparent)]
    Flows(#[from] ReadError),
    /// The history database.
    #[error(transparent)]
    History(#[from] StoreError),
    /// Writing a policy file.
    #[error("writing {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Runs the command.
pub fn run(args: &ProposeArgs) -> Result<(), CliError> {
    if let Some(lab) = &args.lab {
        crate::lab::naming::check_lab_name(lab)?;
    }
    let model = args.manifests.load()?;
    let history = read_history(args)?;
    tracing::info!(
        records = history.records,
        edges = history.edges.len(),
        workloads = history.workloads.len(),
        "read flow history"
    );
    let proposal = learn::propose(&history, &model);
    let proof = learn::prove(&history, &model, &proposal);
    if let Some(dir) = &args.output_dir {
        let io = |path: PathBuf| move |source| ProposeError::Write { path, source };
        std::fs::create_dir_all(dir).map_err(io(dir.clone()))?;
        for p in &proposal.policies {
            let path = dir.join(render::file_name(p));
            std::fs::write(&path, render::policy_yaml_in(p, args.mode))
                .map_err(io(path.clone()))?;
        }
        eprintln!(
            "wrote {} policies to {}",
            proposal.policies.len(),
            dir.display()
        );
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match args.output {
        ProposeOutput::Yaml => {
            if args.output_dir.is_none() {
                out.write_all(render::proposal_yaml_in(&proposal, args.mode).as_bytes())?;
            }
            eprint!("{}", learn::coverage::text(&proof, &proposal));
        }
        ProposeOutput::Json => {
            let policies: Vec<_> = proposal
                .policies
                .iter()
                .map(|p| {
                    let mut v = json!({
                        "namespace": p.namespace,
                        "name": p.name,
                        "workload": p.subject.workload,
                        "yaml": render::policy_yaml_in(p, args.mode),
                    });
                    // Only with --mode, so output without it is unchanged.
                    if let Some(mode) = args.mode {
                        v["mode"] = json!(mode.as_str());
                    }
                    v
                })
                .collect();
            let v = json!({ "policies": policies, "proof": proof });
            serde_json::to_writer(&mut out, &v).map_err(std::io::Error::from)?;
            writeln!(out)?;
        }
    }
    out.flush()?;
    if !proof.complete() {
        return Err(CliError::Uncovered {
            denied: proof.denied.len(),
            replayed: proof.replayed as usize,
        });
    }
    Ok(())
}

fn read_history(args: &ProposeArgs) -> Result<History, ProposeError> {
    if let Some(path) = &args.flows {
        return Ok(learn::read_jsonl(path)?);
    }
    if let Some(path) = &args.history_db {
        return Ok(learn::store::read(path)?.history);
    }
    let name = args.lab.as_deref().unwrap_or_default();
    Ok(learn::read_jsonl(&crate::lab::state::flow_log(name))?)
}
