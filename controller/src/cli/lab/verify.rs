//! `bulkhead lab verify`: live probes against `bulkhead connectivity` on
//! the policy in force, read where the lab's agent reads it (the watched
//! manifests, or the Kubernetes API).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use super::{VerifyArgs, exe, load_state, progress};
use crate::cli::CliError;
use crate::cli::Output;
use crate::cli::connectivity::json_line;
use bulkhead_lab::plan::{has_host_network, with_agent_addresses};
use bulkhead_lab::probe::run_probes;
use bulkhead_lab::state::{AgentSource, LabState};
use bulkhead_lab::verify::{ConnectivityLine, PodAddresses, address_mismatch, disagreements};
use bulkhead_lab::{LabError, agent, cluster};
use bulkhead_policy::compile::compile;
use bulkhead_policy::eval::connectivity::connectivity;
use bulkhead_policy::model::addressing::AddressPlan;
use bulkhead_policy::model::{Mode, Model, OffNetwork};
use bulkhead_policy::source::manifest;

/// How long verify waits for the agent (and the API).
const SYNC_TIMEOUT: Duration = Duration::from_secs(10);

/// The manifests whose policy is in force: without an agent, the watched
/// directory; with one, the watched directory once the agent enforces it,
/// or, when the agent rejected it (or has stopped: pins stay in force),
/// the copy of what it last enforced.
fn manifests_in_force(state: &LabState) -> Result<PathBuf, CliError> {
    let Some(a) = &state.agent else {
        return Ok(state.watched().to_owned());
    };
    match agent::wait(state, SYNC_TIMEOUT) {
        Ok(enforced) => {
            if let Some((_, first)) = enforced.first() {
                agent::keep_enforced(state, &first.source_revision)?;
            }
            Ok(state.watched().to_owned())
        }
        Err(e @ (LabError::Rejected { .. } | LabError::Agent { .. })) => {
            // Every node enforces the same content; the first one's word
            // names the copy (a node whose agent stopped keeps its pins).
            let kept = bulkhead_agent::AgentState::read(&a.pin_dir)
                .and_then(|s| s.enforced_revision)
                .and_then(|h| agent::enforced_copy(&state.name, &h));
            match kept {
                Some(dir) => {
                    progress(&format!(
                        "{e}\nlab: verifying against the policy in force (as last synced)"
                    ));
                    Ok(dir)
                }
                None => Err(e.into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// The model whose policy is in force, checked against the lab's pods and
/// addresses, as the agents enforce it: hostNetwork pods are no pods there
/// (their addresses, their nodes', are addresses like any other; no agent
/// enforces on them), so probes to them are judged on their address.
fn model_in_force(state: &LabState) -> Result<Model, CliError> {
    // A hostNetwork pod's address is its node's, whatever its status says:
    // compared by name only.
    let lab: Vec<PodAddresses> = state
        .hosts
        .iter()
        .filter(|h| !h.external)
        .map(|h| {
            let ips = if h.host_network {
                Vec::new()
            } else {
                h.ips.clone()
            };
            (h.name.clone(), ips)
        })
        .collect();
    let lab_pods: Vec<PodAddresses> = state
        .hosts
        .iter()
        .filter(|h| h.is_pod())
        .map(|h| (h.name.clone(), h.ips.clone()))
        .collect();
    let host_network = |p: &bulkhead_policy::model::Pod| {
        !state.assign_pod_ips && p.off_network == Some(OffNetwork::HostNetwork)
    };
    let pods = |m: &Model| -> Vec<PodAddresses> {
        m.pods
            .iter()
            .map(|p| {
                let ips = if host_network(p) {
                    Vec::new()
                } else {
                    p.ips.clone()
                };
                (p.key(), ips)
            })
            .collect()
    };
    if let Some(a) = &state.agent
        && let AgentSource::Kubernetes { kubeconfig } = &a.source
    {
        // Every node's agent enforces what the API had; then the API is
        // read from the first node, as its agent reads it.
        agent::wait(state, SYNC_TIMEOUT)?;
        let model = cluster::model_in_force(&state.node, a, kubeconfig, SYNC_TIMEOUT)?;
        if let Some(what) = address_mismatch(&pods(&model), &lab_pods, false) {
            return Err(LabError::ApiAddresses { what }.into());
        }
        return Ok(model);
    }
    let dir = manifests_in_force(state)?;
    let plan = AddressPlan {
        cidrs: state
            .pod_cidrs
            .iter()
            .filter_map(|c| c.parse().ok())
            .collect(),
        ignore_status: state.assign_pod_ips,
        ..AddressPlan::default()
    };
    let mut model = manifest::load_dir(&dir, &plan)?;
    if has_host_network(&model, state.assign_pod_ips) {
        let agents = manifest::load_dir_for(&dir, &plan, manifest::Purpose::Enforcement)?;
        model = with_agent_addresses(model, &agents);
    }
    // What the agent enforces: policies in audit or learn mode allow all.
    model.default_mode = state.agent.as_ref().map_or(Mode::Enforce, |a| a.mode);
    if let Some(what) = address_mismatch(&pods(&model), &lab, true) {
        return Err(LabError::ManifestsChanged {
            manifests: dir,
            what,
        }
        .into());
    }
    model.pods.retain(|p| !host_network(p));
    Ok(model)
}

/// The connectivity lines of `model`.
fn expected_lines(model: &Model) -> Result<Vec<ConnectivityLine>, CliError> {
    let compiled = compile(model);
    connectivity(model, &compiled)
        .iter()
        .map(|c| ConnectivityLine::from_json(json_line(c)).map_err(|e| CliError::Output(e.into())))
        .collect()
}

/// Runs `lab verify`.
pub fn run(args: &VerifyArgs) -> Result<(), CliError> {
    let state = load_state(&args.name.name)?;
    args.selection.check_hosts(&state)?;
    let model = model_in_force(&state)?;
    let lines = expected_lines(&model)?;
    let routes = args.selection.routes(|| Ok(model.clone()))?;
    let opts = args.selection.options(args.family, routes);
    let results = run_probes(&state, &opts, &exe()?)?;
    let found = disagreements(&results, &lines);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match args.output {
        Output::Json => {
            for d in &found {
                serde_json::to_writer(&mut out, &d.to_json()).map_err(std::io::Error::from)?;
                writeln!(out)?;
            }
        }
        Output::Text => {
            for d in &found {
                writeln!(out, "{}", d.text())?;
            }
            writeln!(
                out,
                "{} probes, {} disagreement{} with the policy.",
                results.len(),
                found.len(),
                if found.len() == 1 { "" } else { "s" }
            )?;
        }
    }
    out.flush()?;
    if found.is_empty() {
        Ok(())
    } else {
        Err(CliError::Disagreements {
            count: found.len(),
            probes: results.len(),
        })
    }
}
