//! The `bulkhead-cni` binary: a CNI plugin when the runtime runs it
//! (`CNI_COMMAND` set), else `install` / `uninstall` for the node's
//! DaemonSet init container.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use bulkhead_cni::spec::{CniError, Command, code};
use bulkhead_cni::{install, plugin, wire};
use clap::{Parser, Subcommand};

/// Bulkhead's chained CNI plugin.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Copy this binary into the CNI bin directory and chain it into the
    /// node's primary network configuration (idempotent).
    Install {
        /// The runtime's CNI plugin directory.
        #[arg(long, default_value = "/opt/cni/bin")]
        bin_dir: PathBuf,
        /// The runtime's network configuration directory.
        #[arg(long, default_value = "/etc/cni/net.d")]
        conf_dir: PathBuf,
        /// The agent's API socket, as the plugin reaches it on the node.
        #[arg(long, default_value = wire::DEFAULT_SOCKET)]
        socket: String,
        /// How long ADD waits for the agent.
        #[arg(long, default_value = "30s")]
        timeout: String,
        /// `fail` (ADD fails when not enforced in time) or `ignore`.
        #[arg(long, default_value = "fail", value_parser = ["fail", "ignore"])]
        failure_policy: String,
    },
    /// Remove the chain entry and the binary (idempotent).
    Uninstall {
        /// The runtime's CNI plugin directory.
        #[arg(long, default_value = "/opt/cni/bin")]
        bin_dir: PathBuf,
        /// The runtime's network configuration directory.
        #[arg(long, default_value = "/etc/cni/net.d")]
        conf_dir: PathBuf,
    },
}

fn main() -> ExitCode {
    match std::env::var("CNI_COMMAND") {
        Ok(c) if !c.is_empty() => cni(&c),
        _ => admin(Cli::parse()),
    }
}

/// One CNI invocation: result or error JSON on stdout.
fn cni(command: &str) -> ExitCode {
    let outcome = match Command::parse(command) {
        None => Err((
            CniError::new(
                code::INVALID_ENV,
                "unknown CNI_COMMAND",
                format!("{command:?} is not ADD, DEL, CHECK, VERSION, GC or STATUS"),
            ),
            "1.1.0".to_owned(),
        )),
        Some(cmd) => {
            let mut stdin = Vec::new();
            match std::io::stdin().read_to_end(&mut stdin) {
                Ok(_) => plugin::run(cmd, |k| std::env::var(k).ok(), &stdin),
                Err(e) => Err((
                    CniError::new(code::IO_FAILURE, "reading stdin", e.to_string()),
                    "1.1.0".to_owned(),
                )),
            }
        }
    };
    let mut out = std::io::stdout().lock();
    match outcome {
        Ok(None) => ExitCode::SUCCESS,
        Ok(Some(v)) => {
            let _ = writeln!(out, "{v}");
            ExitCode::SUCCESS
        }
        Err((e, version)) => {
            eprintln!("bulkhead-cni: {command}: {e}");
            let _ = writeln!(out, "{}", e.to_json(&version));
            ExitCode::FAILURE
        }
    }
}

fn admin(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Cmd::Install {
            bin_dir,
            conf_dir,
            socket,
            timeout,
            failure_policy,
        } => {
            if let Err(e) = humantime::parse_duration(&timeout) {
                eprintln!("bulkhead-cni install: --timeout {timeout:?}: {e}");
                return ExitCode::from(2);
            }
            let entry = serde_json::json!({
                "socket": socket, "timeout": timeout, "failurePolicy": failure_policy,
            });
            let exe = match std::env::current_exe() {
                Ok(e) => e,
                Err(e) => {
                    eprintln!("bulkhead-cni install: finding this binary: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let entry = entry.as_object().cloned().unwrap_or_default();
            install::install(&exe, &bin_dir, &conf_dir, entry).map(|done| {
                let what = if done.changed {
                    "chained into"
                } else {
                    "already in"
                };
                eprintln!(
                    "bulkhead-cni: installed {}; {what} {}",
                    done.binary.display(),
                    done.conflist.display()
                );
            })
        }
        Cmd::Uninstall { bin_dir, conf_dir } => install::uninstall(&bin_dir, &conf_dir).map(|c| {
            for p in c {
                eprintln!("bulkhead-cni: removed from {}", p.display());
            }
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bulkhead-cni: {e}");
            ExitCode::FAILURE
        }
    }
}
