//! The command line's flags (clap) and their dispatch to the library, one file
//! per group of commands. Binary-only: the library never sees clap. Each
//! command turns its raw flags into the library's options once, then calls it;
//! results go to stdout, logs to stderr.

mod bench;
mod cluster;
mod data;
mod job;
mod model;

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
