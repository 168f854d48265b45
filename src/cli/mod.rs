//! The command line: its flags (clap) and their dispatch to the library, one
//! file per group of commands, and `main`, which the `audience` binary calls:
//! logging, the async runtime, and the documented exit code. Each command
//! turns its raw flags into the library's options once, then calls it; results
//! go to stdout, logs to stderr. It lives in the library, not in the binary,
//! so that the runtime and every command's future are compiled once, here:
//! in the binary they were compiled a second time (docs/build.md).

mod bench;
mod cluster;
mod data;
mod job;
mod model;
#[cfg(test)]
mod reference;

use std::process::ExitCode as ProcessExit;

use clap::{Parser, Subcommand};

use crate::{Error, ExitCode};

#[derive(Parser)]
#[command(name = "audience", version, about = "Batch audience targeting for podcast ads and promotions")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    #[command(flatten)]
    Data(data::Command),
    #[command(flatten)]
    Job(job::Command),
    #[command(flatten)]
    Model(model::Command),
    #[command(flatten)]
    Cluster(cluster::Command),
    /// Benchmarks that print their figures.
    Bench {
        #[command(subcommand)]
        bench: bench::Command,
    },
}

/// The `audience` command: parses the flags, sets up logging to stderr, runs
/// the command on an async runtime, and returns its exit code.
pub fn main() -> ProcessExit {
    let cli = Cli::parse();
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
    match runtime.block_on(run(cli.command)) {
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

async fn run(command: Command) -> Result<(), Error> {
    match command {
        Command::Data(command) => command.run().await,
        Command::Job(command) => command.run().await,
        Command::Model(command) => command.run().await,
        Command::Cluster(command) => command.run().await,
        Command::Bench { bench } => bench.run().await,
    }
}

/// An object store location from a flag.
fn location(url: &str) -> Result<crate::storage::Location, Error> {
    Ok(crate::storage::Location::parse(url)?)
}

/// A location a command writes to, from the flag `flag`: refused (exit 2)
/// where it would overwrite a run's files outside the commit protocol.
fn output(flag: &str, url: &str) -> Result<crate::storage::Location, Error> {
    let location = location(url)?;
    crate::job::layout::check_outside_runs(flag, &location, false).map_err(Error::Usage)?;
    Ok(location)
}

/// A local file a command writes to, from the flag `flag` (as [`output`]).
fn output_file(flag: &str, path: &std::path::Path) -> Result<(), Error> {
    output(flag, &path.display().to_string()).map(|_| ())
}

/// Refuses a list flag that names a value twice (exit 2, naming the flag):
/// a repeated seed or size would be counted twice in a mean, or run twice.
fn distinct<T: PartialEq + std::fmt::Debug>(flag: &str, values: &[T]) -> Result<(), Error> {
    for (i, value) in values.iter().enumerate() {
        if values[..i].contains(value) {
            return Err(Error::Usage(format!("{flag} names {} more than once", format!("{value:?}").to_lowercase())));
        }
    }
    Ok(())
}
