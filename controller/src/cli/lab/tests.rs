//! `bulkhead lab` arguments: the agent's source on `up` and
//! `restart-agent`, and `lab status`.

use clap::Parser as _;

use super::{LabCommand, RestartArgs, UpArgs};
use crate::cli::{Cli, Command, Output};
use bulkhead_lab::state::AgentSource;

fn lab(argv: &[&str]) -> Result<LabCommand, clap::Error> {
    let argv = ["bulkhead", "lab"].iter().chain(argv).copied();
    Cli::try_parse_from(argv).map(|cli| match cli.command {
        Command::Lab(a) => a.command,
        _ => unreachable!(),
    })
}

fn up(extra: &[&str]) -> Result<UpArgs, clap::Error> {
    let mut argv = vec!["up", "--manifests", "m"];
    argv.extend_from_slice(extra);
    lab(&argv).map(|c| match c {
        LabCommand::Up(a) => *a,
        _ => unreachable!(),
    })
}

fn restart(extra: &[&str]) -> Result<RestartArgs, clap::Error> {
    let mut argv = vec!["restart-agent", "--name", "k"];
    argv.extend_from_slice(extra);
    lab(&argv).map(|c| match c {
        LabCommand::RestartAgent(a) => a,
        _ => unreachable!(),
    })
}

#[test]
fn lab_up_takes_a_kubeconfig_for_its_agent_unless_it_runs_none() {
    assert_eq!(up(&[]).unwrap().kubeconfig, None);
    let a = up(&["--kubeconfig", "/k"]).unwrap();
    assert_eq!(a.kubeconfig.as_deref(), Some(std::path::Path::new("/k")));
    assert!(up(&["--kubeconfig", "/k", "--no-agent"]).is_err());
    assert!(up(&["--kubeconfig"]).is_err());
}

#[test]
fn restart_agent_switches_the_source_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let k = dir.path().join("kubeconfig");
    std::fs::write(&k, "").unwrap();
    assert_eq!(restart(&[]).unwrap().source().unwrap(), None);
    assert_eq!(
        restart(&["--manifests"]).unwrap().source().unwrap(),
        Some(AgentSource::Manifests)
    );
    let ks = k.display().to_string();
    assert_eq!(
        restart(&["--kubeconfig", &ks]).unwrap().source().unwrap(),
        Some(AgentSource::Kubernetes {
            kubeconfig: std::fs::canonicalize(&k).unwrap()
        })
    );
    assert!(restart(&["--kubeconfig", &ks, "--manifests"]).is_err());
    let missing = dir.path().join("missing").display().to_string();
    assert!(
        restart(&["--kubeconfig", &missing])
            .unwrap()
            .source()
            .is_err(),
        "a kubeconfig that does not exist is refused before the agent is touched"
    );
}

#[test]
fn lab_status_has_text_and_json() {
    match lab(&["status", "--name", "k", "--output", "json"]).unwrap() {
        LabCommand::Status(a) => {
            assert_eq!(a.name.name, "k");
            assert_eq!(a.output, Output::Json);
        }
        _ => unreachable!(),
    }
    match lab(&["status"]).unwrap() {
        LabCommand::Status(a) => assert_eq!(a.output, Output::Text),
        _ => unreachable!(),
    }
}
