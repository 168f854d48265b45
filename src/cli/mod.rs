//! The command line's flags (clap) and their dispatch to the library, one file
//! per group of commands. Binary-only: the library never sees clap. Each
//! command turns its raw flags into the library's options once, then calls it;
//! results go to stdout, logs to stderr.

mod bench;
mod cluster;
mod data;
mod job;
mod model;
#[cfg(test)]
mod reference;

use audience::Error;
use clap::{Parser, Subcommand};

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

pub async fn run(command: Command) -> Result<(), Error> {
    match command {
        Command::Data(command) => command.run().await,
        Command::Job(command) => command.run().await,
        Command::Model(command) => command.run().await,
        Command::Cluster(command) => command.run().await,
        Command::Bench { bench } => bench.run().await,
    }
}

/// An object store location from a flag.
fn location(url: &str) -> Result<audience::storage::Location, Error> {
    Ok(audience::storage::Location::parse(url)?)
}

/// A location a command writes to, from the flag `flag`: refused (exit 2)
/// where it would overwrite a run's files outside the commit protocol.
fn output(flag: &str, url: &str) -> Result<audience::storage::Location, Error> {
    let location = location(url)?;
    audience::job::layout::check_outside_runs(flag, &location, false).map_err(Error::Usage)?;
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
