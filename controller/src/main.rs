//! The `bulkhead` binary: parses the command line, sets up logging to stderr,
//! and maps errors to exit status 2.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BULKHEAD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cli = bulkhead::cli::Cli::parse();
    match bulkhead::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(bulkhead::cli::CliError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(e) => {
            let code = e.exit_code();
            let text = anyhow::Error::from(e);
            for line in format!("{text:#}").lines() {
                eprintln!("error: {line}");
            }
            ExitCode::from(code)
        }
    }
}
