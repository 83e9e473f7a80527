//! Bulkhead's developer entry points: `cargo xtask setup | build-ebpf | build-ui | test | demo`.
//!
//! Every step prints what it does to stderr. `setup` is idempotent and takes a
//! few seconds once the machine is set up.

mod bench;
mod cmd;
mod demo;
mod ebpf;
// Shared with the dataplane crate's build script, which refuses a stale ELF.
#[path = "../../dataplane/build/ebpf_sources.rs"]
#[allow(dead_code)]
mod ebpf_sources;
mod setup;
mod test;
mod tools;
mod ui;
// Shared with the agent crate's build script, which refuses a stale bundle.
#[path = "../../agent/build/ui_sources.rs"]
#[allow(dead_code)]
mod ui_sources;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Bulkhead's setup, build, demo and test entry points.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install what building and testing need (Debian packages, Helm and
    /// kubernetes-validate for deploy/, nightly rust-src, bpf-linker built
    /// against nightly's LLVM). Idempotent.
    Setup,
    /// Build the eBPF dataplane ELF and print its path on stdout.
    BuildEbpf,
    /// Build the web UI's bundle (npm ci and npm run build in ui/, into
    /// ui/dist, which the agent embeds) unless it is up to date, and print
    /// its directory on stdout.
    BuildUi,
    /// Run every check CI runs: fmt, clippy, unit tests and, as root, the
    /// privileged netns tests.
    Test,
    /// Build the controller and run the demo.
    Demo,
    /// Run the benchmarks; results go to bench/results/. The dataplane
    /// benchmark needs root and is skipped otherwise.
    Bench {
        /// A short run (under two minutes) that leaves the recorded results alone.
        #[arg(long)]
        quick: bool,
    },
    /// Side-by-side benchmark against iptables, ipset and nftables (root):
    /// installs its tools, builds the ELF, writes bench/results/compare*.
    Compare {
        /// One round of 1 s measurements (under 10 minutes); writes
        /// compare-quick.* and leaves the recorded results alone.
        #[arg(long)]
        quick: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The cause chain on one line; no backtrace (RUST_BACKTRACE is
            // often set for the tests and would bury the message).
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Setup => {
            setup::run()?;
        }
        Command::BuildEbpf => {
            let elf = ebpf::build()?;
            println!("{}", elf.display());
        }
        Command::BuildUi => {
            let dist = ui::build()?;
            println!("{}", dist.display());
        }
        Command::Test => test::run()?,
        Command::Demo => demo::run()?,
        Command::Bench { quick } => bench::run(quick)?,
        Command::Compare { quick } => bench::compare(quick)?,
    }
    Ok(())
}
