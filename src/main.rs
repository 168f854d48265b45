//! The `audience` command line: parses flags (`cli`), sets up logging, runs the
//! command on an async runtime, and turns its result into a documented exit
//! code. Logs go to stderr; stdout carries only results an orchestrator may read.

mod cli;

use std::process::ExitCode as ProcessExit;

use audience::ExitCode;
use clap::Parser;

fn main() -> ProcessExit {
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            return report(&anyhow::Error::new(error).context("starting the async runtime"), ExitCode::Internal);
        }
    };
    match runtime.block_on(cli::run(cli.command)) {
        Ok(()) => ProcessExit::SUCCESS,
        Err(error) => {
            let code = error.exit_code();
            report(&anyhow::Error::new(error), code)
        }
    }
}

/// Prints the error with its whole chain of causes and returns `code`.
fn report(error: &anyhow::Error, code: ExitCode) -> ProcessExit {
    eprintln!("error: {error:#}");
    ProcessExit::from(code as u8)
}
