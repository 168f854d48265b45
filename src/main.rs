//! The `audience` command line: parses flags, sets up logging, calls the library,
//! and turns its result into a documented exit code. Logs go to stderr; stdout
//! carries only results an orchestrator may read.

use std::process::ExitCode as ProcessExit;

use anyhow::Context;
use audience::allocate::Solver;
use audience::contract::validate::validate_world;
use audience::storage::Location;
use audience::world::WorldConfig;
use audience::world::generate::generate;
use audience::{Error, ExitCode};
use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "audience", version, about = "Batch audience targeting for podcast ads and promotions")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a deterministic synthetic world (tables + ground truth) to a URL.
    Generate {
        /// Where to write: a local directory or an object store URL.
        #[arg(long)]
        out: String,
        #[command(flatten)]
        world: WorldArgs,
        /// Replace a world already written there.
        #[arg(long)]
        overwrite: bool,
    },
    /// Check a world's tables against the data contract; lists every problem.
    Validate {
        /// Root of the world (one prefix per table, as `generate` writes it).
        #[arg(long)]
        data: String,
    },
    /// Print versions and what libtorch sees (threads, CUDA).
    Info,
    /// Benchmarks that print their figures.
    Bench {
        #[command(subcommand)]
        bench: Bench,
    },
    /// The end-to-end demo on local storage: today, generate a world and validate it.
    Demo {
        /// Local directory for the demo world (replaced if present).
        #[arg(long, default_value = "demo")]
        out: String,
        #[command(flatten)]
        world: WorldArgs,
    },
}

#[derive(Subcommand)]
enum Bench {
    /// Allocation on a random instance: candidates/s, iterations, gap, peak RSS.
    Allocate {
        #[arg(long, default_value_t = 1_000_000)]
        candidates: usize,
        #[arg(long, default_value_t = 200)]
        campaigns: usize,
        /// Solvers to run, comma separated.
        #[arg(long, value_delimiter = ',', default_value = "lagrangian,greedy")]
        solver: Vec<Solver>,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

#[derive(Args)]
struct WorldArgs {
    #[arg(long, default_value_t = WorldConfig::default().users)]
    users: u64,
    #[arg(long, default_value_t = WorldConfig::default().podcasts)]
    podcasts: u64,
    #[arg(long, default_value_t = WorldConfig::default().campaigns)]
    campaigns: u64,
    /// Impression log rows in total.
    #[arg(long, default_value_t = WorldConfig::default().impressions)]
    impressions: u64,
    /// Days of impression logs, ending the day before --date.
    #[arg(long, default_value_t = WorldConfig::default().days)]
    days: u32,
    /// The run date the campaigns are flighted around (YYYY-MM-DD).
    #[arg(long, default_value_t = WorldConfig::default().run_date)]
    date: NaiveDate,
    #[arg(long, default_value_t = WorldConfig::default().seed)]
    seed: u64,
}

impl From<WorldArgs> for WorldConfig {
    fn from(a: WorldArgs) -> Self {
        WorldConfig {
            seed: a.seed,
            users: a.users,
            podcasts: a.podcasts,
            campaigns: a.campaigns,
            impressions: a.impressions,
            days: a.days,
            run_date: a.date,
        }
    }
}

fn main() -> ProcessExit {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let runtime = match tokio::runtime::Runtime::new().context("starting the async runtime") {
        Ok(runtime) => runtime,
        Err(error) => return report(&error, ExitCode::Internal),
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ProcessExit::SUCCESS,
        Err(error) => {
            let code = error.downcast_ref::<Error>().map_or(ExitCode::Internal, Error::exit_code);
            report(&error, code)
        }
    }
}

fn report(error: &anyhow::Error, code: ExitCode) -> ProcessExit {
    eprintln!("error: {error:#}");
    ProcessExit::from(code as u8)
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Generate { out, world, overwrite } => {
            let out = Location::parse(&out).map_err(Error::from)?;
            let manifest = generate(&out, world.into(), overwrite).await.map_err(Error::from)?;
            tracing::info!(rows = ?manifest.rows, "world written");
            println!("{out}");
        }
        Command::Validate { data } => {
            let root = Location::parse(&data).map_err(Error::from)?;
            let report = validate_world(&root).await.map_err(Error::from)?;
            let report = report.into_result().map_err(Error::from)?;
            for (table, rows) in &report.rows {
                println!("{table}\t{rows} rows\tok");
            }
        }
        Command::Info => {
            println!("audience {}", env!("CARGO_PKG_VERSION"));
            let probe = tch::Tensor::ones([2, 2], (tch::Kind::Float, tch::Device::Cpu)).matmul(&tch::Tensor::ones([2, 2], (tch::Kind::Float, tch::Device::Cpu)));
            println!("libtorch: cpu ok (2x2 matmul sum {}), {} intra-op threads", probe.sum(tch::Kind::Float).double_value(&[]), tch::get_num_threads());
            println!("cuda: {}", if tch::Cuda::is_available() { "available" } else { "not available (CPU only)" });
        }
        Command::Bench { bench: Bench::Allocate { candidates, campaigns, solver, seed } } => {
            if campaigns == 0 || candidates == 0 {
                return Err(Error::Usage("--candidates and --campaigns must be at least 1".into()).into());
            }
            audience::allocate::bench::run(candidates, campaigns, &solver, seed);
            println!("{}", audience::measure::peak_rss_line());
        }
        Command::Demo { out, world } => {
            let out = Location::parse(&out).map_err(Error::from)?;
            let started = std::time::Instant::now();
            generate(&out, world.into(), true).await.map_err(Error::from)?;
            let generated = started.elapsed();
            let report = validate_world(&out).await.map_err(Error::from)?;
            let report = report.into_result().map_err(Error::from)?;
            println!("demo world at {out}");
            println!("generated in {:.1}s, validated in {:.1}s", generated.as_secs_f64(), (started.elapsed() - generated).as_secs_f64());
            for (table, rows) in &report.rows {
                println!("  {table:<12} {rows:>10} rows  ok");
            }
        }
    }
    Ok(())
}
