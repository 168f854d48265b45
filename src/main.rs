//! The `audience` command line: parses flags, sets up logging, calls the library,
//! and turns its result into a documented exit code. Logs go to stderr; stdout
//! carries only results an orchestrator may read.

use std::process::ExitCode as ProcessExit;

use anyhow::Context;
use audience::allocate::Solver;
use audience::contract::validate::validate_world;
use audience::cluster;
use audience::cluster::process::{ExecutorOptions, SchedulerOptions};
use audience::storage::{Location, StorageOptions};
use std::path::PathBuf;

use audience::job;
use audience::job::config::JobConfig;
use audience::job::run::{JobError, RunFlags};
use audience::model::network::TASKS;
use audience::model::train::{Recipe, TrainOptions};
use audience::model::workflow::{evaluate_saved, load_split, train_and_save};
use audience::model::{artifact, experiment};
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
    /// With --config, checks the job config, its inputs and its model instead.
    Validate {
        /// Root of the world (one prefix per table, as `generate` writes it).
        #[arg(long, conflicts_with = "config", required_unless_present = "config")]
        data: Option<String>,
        /// A job config: validates it, its input tables and its model artifact.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// The nightly job: validate, score, allocate, write audiences, commit.
    Run {
        #[arg(long)]
        config: PathBuf,
        /// The run date (YYYY-MM-DD); default today (UTC).
        #[arg(long)]
        date: Option<NaiveDate>,
        /// Replace a committed run of this date that differs.
        #[arg(long)]
        overwrite: bool,
        /// Validate, count eligible pairs, estimate scoring time; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// One committed run per date in a range; skips dates already committed.
    Backfill {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        from: NaiveDate,
        #[arg(long)]
        to: NaiveDate,
        #[arg(long)]
        overwrite: bool,
    },
    /// Train the multi-task model on a world's impression logs; writes a model artifact.
    Train {
        /// Root of the world (tables as `generate` writes them).
        #[arg(long)]
        data: String,
        /// Where to write the model artifact directory.
        #[arg(long)]
        out: String,
        #[command(flatten)]
        training: TrainingArgs,
    },
    /// AP and ROC-AUC per task, channel and stream tier on the test days.
    Evaluate {
        #[arg(long)]
        data: String,
        /// The model artifact directory.
        #[arg(long)]
        model: String,
        /// Also write the metrics as JSON to this local file.
        #[arg(long)]
        json: Option<std::path::PathBuf>,
    },
    /// Fine-tune a trained model's head on (a few) labels of one channel.
    Finetune {
        #[arg(long)]
        data: String,
        #[arg(long)]
        model: String,
        #[arg(long)]
        out: String,
        /// The head to train: promo_stream, ad_stream, click, like or follow.
        #[arg(long, default_value = "ad_stream")]
        task: String,
        /// Impressions to learn from: ad, promotion or both.
        #[arg(long, default_value = "ad")]
        source: String,
        /// Train on at most this many labelled impressions.
        #[arg(long)]
        labels: Option<usize>,
        /// Encoder learning rate relative to the head's; 0 freezes it.
        #[arg(long, default_value_t = 0.1)]
        encoder_lr_scale: f64,
        /// Re-initialise the head first (a new objective) instead of refining it.
        #[arg(long)]
        new_head: bool,
        #[command(flatten)]
        training: TrainingArgs,
    },
    /// Experiments that print the paper's tables.
    Experiment {
        #[command(subcommand)]
        experiment: Experiment,
    },
    /// Print versions and what libtorch sees (threads, CUDA).
    Info,
    /// Benchmarks that print their figures.
    Bench {
        #[command(subcommand)]
        bench: Bench,
    },
    /// A Ballista scheduler that can plan the job's scoring (engine = "ballista").
    Scheduler {
        #[arg(long, default_value = "0.0.0.0")]
        bind_host: String,
        /// The host executors and clients reach this scheduler at.
        #[arg(long, default_value = "localhost")]
        external_host: String,
        /// gRPC port; /healthz and /readyz are served on it too.
        #[arg(long, default_value_t = 50050)]
        bind_port: u16,
        /// An executor silent for this long is declared lost and its tasks rerun elsewhere.
        #[arg(long, default_value_t = 60)]
        executor_timeout_seconds: u64,
        /// Attempts per task before the job fails.
        #[arg(long, default_value_t = 4)]
        task_max_failures: usize,
        /// A job config whose [storage.*] settings apply to this process's object stores.
        #[arg(long)]
        storage_config: Option<PathBuf>,
    },
    /// A Ballista executor that can run the job's scoring tasks.
    Executor {
        #[arg(long, default_value = "0.0.0.0")]
        bind_host: String,
        /// The host the scheduler and other executors reach this executor at (a pod's IP).
        #[arg(long, env = "AUDIENCE_EXECUTOR_EXTERNAL_HOST")]
        external_host: Option<String>,
        #[arg(long, default_value = "localhost")]
        scheduler_host: String,
        #[arg(long, default_value_t = 50050)]
        scheduler_port: u16,
        /// Arrow Flight port (shuffle data and results).
        #[arg(long, default_value_t = 50051)]
        bind_port: u16,
        /// gRPC port (tasks from the scheduler).
        #[arg(long, default_value_t = 50052)]
        grpc_port: u16,
        /// /healthz and /readyz (ready once registered with the scheduler).
        #[arg(long, default_value_t = 8080)]
        health_port: u16,
        /// Concurrent tasks (0: one per core).
        #[arg(long, default_value_t = 0)]
        task_slots: usize,
        /// Shuffle and spill files (default: a temporary directory).
        #[arg(long)]
        work_dir: Option<String>,
        /// Memory for DataFusion's operators: bytes, or with KiB, MiB, GiB
        /// (default: a share of the machine's or cgroup's memory).
        #[arg(long, value_parser = parse_bytes)]
        memory_limit: Option<u64>,
        #[arg(long, default_value_t = 15)]
        heartbeat_seconds: u64,
        /// A job config whose [storage.*] settings apply to this process's object stores.
        #[arg(long)]
        storage_config: Option<PathBuf>,
    },
    /// The end-to-end demo on local storage: generate a world, train a model,
    /// run the job for the world's run date, print the audiences' summary.
    Demo {
        /// Local directory for the demo (world, model, audiences; replaced if present).
        #[arg(long, default_value = "demo")]
        out: String,
        #[command(flatten)]
        world: WorldArgs,
        /// Most training epochs of the demo's model.
        #[arg(long, default_value_t = 3)]
        epochs: usize,
    },
}

#[derive(Subcommand)]
enum Experiment {
    /// The paper's ablation: AP relative to the promotions-only baseline.
    Ablation {
        #[arg(long)]
        data: String,
        #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
        seeds: Vec<u64>,
        #[command(flatten)]
        training: TrainingArgs,
    },
    /// Cold start: fine-tune the promotions model on few ad labels vs from scratch.
    ColdStart {
        #[arg(long)]
        data: String,
        #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
        labels: Vec<usize>,
        #[command(flatten)]
        training: TrainingArgs,
    },
}

#[derive(Args)]
struct TrainingArgs {
    #[arg(long, default_value_t = TrainOptions::default().seed)]
    seed: u64,
    /// Most epochs (early stopping usually ends sooner).
    #[arg(long, default_value_t = TrainOptions::default().max_epochs)]
    epochs: usize,
    #[arg(long, default_value_t = TrainOptions::default().batch_size)]
    batch_size: usize,
    #[arg(long, default_value_t = TrainOptions::default().learning_rate)]
    learning_rate: f64,
    /// Newest days held out for evaluation.
    #[arg(long, default_value_t = TrainOptions::default().test_days)]
    test_days: u32,
    /// Days before the test days used for early stopping.
    #[arg(long, default_value_t = TrainOptions::default().validation_days)]
    validation_days: u32,
}

impl TrainingArgs {
    fn options(&self) -> Result<TrainOptions, Error> {
        if self.epochs == 0 || self.batch_size < 2 || !(self.learning_rate > 0.0) {
            return Err(Error::Usage("--epochs must be ≥ 1, --batch-size ≥ 2 and --learning-rate > 0".into()));
        }
        Ok(TrainOptions {
            seed: self.seed,
            max_epochs: self.epochs,
            batch_size: self.batch_size,
            learning_rate: self.learning_rate,
            test_days: self.test_days,
            validation_days: self.validation_days,
            ..TrainOptions::default()
        })
    }
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
    /// Scoring: naive per-pair forward vs the factorised fused operator, GEMM share.
    Score {
        #[arg(long, default_value_t = 1_000_000)]
        users: u64,
        #[arg(long, default_value_t = 200)]
        campaigns: u64,
        /// Users in the naive path's sample.
        #[arg(long, default_value_t = 5_000)]
        naive_users: usize,
        /// Score this world instead of generating one.
        #[arg(long)]
        data: Option<String>,
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

/// `6GiB`, `512MiB`, `64KiB` or plain bytes.
fn parse_bytes(text: &str) -> Result<u64, String> {
    let (digits, unit) = text.find(|c: char| !c.is_ascii_digit()).map_or((text, ""), |i| text.split_at(i));
    let scale: u64 = match unit {
        "" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return Err(format!("{text:?}: use bytes or a number with KiB, MiB or GiB")),
    };
    let number: u64 = digits.parse().map_err(|_| format!("{text:?}: use bytes or a number with KiB, MiB or GiB"))?;
    number.checked_mul(scale).ok_or_else(|| format!("{text:?} is too large"))
}

/// The [storage.*] settings of a job config (none without one).
fn storage_options(config: Option<&std::path::Path>) -> Result<StorageOptions, Error> {
    match config {
        Some(path) => Ok(JobConfig::load(path).map_err(JobError::from)?.storage),
        None => Ok(StorageOptions::default()),
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
        Command::Validate { data: None, config: Some(path) } => {
            let config = JobConfig::load(&path).map_err(JobError::from).map_err(Error::from)?;
            let root = Location::parse(&config.inputs.root).map_err(Error::from)?;
            let report = validate_world(&root).await.map_err(Error::from)?.into_result().map_err(Error::from)?;
            let (_, model) = artifact::load(&Location::parse(&config.model.uri).map_err(Error::from)?).await.map_err(Error::from)?;
            println!("config {}	ok", path.display());
            for (table, rows) in &report.rows {
                println!("{table}	{rows} rows	ok");
            }
            println!("model	{}	ok", model.model_version);
        }
        Command::Validate { data, config: _ } => {
            let root = Location::parse(&data.expect("clap requires --data or --config")).map_err(Error::from)?;
            let report = validate_world(&root).await.map_err(Error::from)?;
            let report = report.into_result().map_err(Error::from)?;
            for (table, rows) in &report.rows {
                println!("{table}\t{rows} rows\tok");
            }
        }
        Command::Train { data, out, training } => {
            let (data, out) = (Location::parse(&data).map_err(Error::from)?, Location::parse(&out).map_err(Error::from)?);
            let manifest = train_and_save(&data, &out, &training.options()?, None).await.map_err(Error::from)?;
            let report = &manifest.training.report;
            eprintln!(
                "trained {} in {:.1}s ({:.0} examples/s), best epoch {}/{}, validation stream AP {:.4}",
                manifest.model_version,
                report.seconds,
                report.examples_per_second,
                report.best_epoch,
                report.epochs.len(),
                report.validation_stream_ap
            );
            println!("{out}");
        }
        Command::Evaluate { data, model, json } => {
            let (data, model) = (Location::parse(&data).map_err(Error::from)?, Location::parse(&model).map_err(Error::from)?);
            let (manifest, evaluation) = evaluate_saved(&data, &model).await.map_err(Error::from)?;
            println!("model {} on the test days of {data}: {} impressions", manifest.model_version, evaluation.test_examples);
            print!("{}", evaluation.table());
            if let Some(path) = json {
                std::fs::write(&path, serde_json::to_vec_pretty(&evaluation)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
        Command::Finetune { data, model, out, task, source, labels, encoder_lr_scale, new_head, training } => {
            let head = TASKS.iter().position(|t| *t == task).ok_or_else(|| Error::Usage(format!("--task {task:?} is not one of {TASKS:?}")))?;
            let (promotions, ads) = match source.as_str() {
                "ad" => (false, true),
                "promotion" => (true, false),
                "both" => (true, true),
                other => return Err(Error::Usage(format!("--source {other:?}: use ad, promotion or both")).into()),
            };
            if !(encoder_lr_scale >= 0.0) {
                return Err(Error::Usage("--encoder-lr-scale must be ≥ 0".into()).into());
            }
            let (data, out) = (Location::parse(&data).map_err(Error::from)?, Location::parse(&out).map_err(Error::from)?);
            let (base, base_manifest) = artifact::load(&Location::parse(&model).map_err(Error::from)?).await.map_err(Error::from)?;
            if new_head {
                base.network.reset_tower(head);
            }
            let mut options = training.options()?;
            options.recipe = Recipe { name: format!("fine-tune {task} on {source} impressions"), promotions, ads, heads: vec![head] };
            options.label_budget = labels;
            options.encoder_lr_scale = encoder_lr_scale;
            let manifest = train_and_save(&data, &out, &options, Some((&base, &base_manifest))).await.map_err(Error::from)?;
            eprintln!("fine-tuned {} from {}: validation stream AP {:.4}", manifest.model_version, base_manifest.model_version, manifest.training.report.validation_stream_ap);
            println!("{out}");
        }
        Command::Experiment { experiment } => match experiment {
            Experiment::Ablation { data, seeds, training } => {
                let options = training.options()?;
                let data = Location::parse(&data).map_err(Error::from)?;
                let (dataset, split) = load_split(&data, None, &options).await.map_err(Error::from)?;
                let result = experiment::ablation(&dataset, &split, &options, &seeds).map_err(Error::from)?;
                print!("{}", result.table());
            }
            Experiment::ColdStart { data, labels, training } => {
                let options = training.options()?;
                let data = Location::parse(&data).map_err(Error::from)?;
                let (dataset, split) = load_split(&data, None, &options).await.map_err(Error::from)?;
                let (zero_shot, rows) = experiment::cold_start(&dataset, &split, &options, &labels).map_err(Error::from)?;
                print!("{}", experiment::cold_start_table(zero_shot, &rows));
            }
        },
        Command::Run { config: path, date, overwrite, dry_run } => {
            let config = JobConfig::load(&path).map_err(JobError::from).map_err(Error::from)?;
            let date = date.unwrap_or_else(|| chrono::Utc::now().date_naive());
            if dry_run {
                let report = job::dry_run::dry_run(&config, date).await.map_err(Error::from)?;
                print!("{}", report.report());
            } else {
                let outcome = job::run::run(&config, &RunFlags { date, overwrite }).await.map_err(Error::from)?;
                println!("{}", outcome.manifest_url());
            }
        }
        Command::Backfill { config: path, from, to, overwrite } => {
            if from > to {
                return Err(Error::Usage(format!("--from {from} is after --to {to}")).into());
            }
            let config = JobConfig::load(&path).map_err(JobError::from).map_err(Error::from)?;
            for (date, outcome) in job::run::backfill(&config, from, to, overwrite).await.map_err(Error::from)? {
                match outcome {
                    Some(outcome) => println!("{date}	{}", outcome.manifest_url()),
                    None => println!("{date}	already committed"),
                }
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
        Command::Bench { bench: Bench::Score { users, campaigns, naive_users, data } } => {
            if users == 0 || campaigns == 0 || naive_users == 0 {
                return Err(Error::Usage("--users, --campaigns and --naive-users must be at least 1".into()).into());
            }
            audience::scoring::bench::run(&audience::scoring::bench::BenchOptions { users, campaigns, naive_users, data }).await?;
            println!("{}", audience::measure::peak_rss_line());
        }
        Command::Scheduler { bind_host, external_host, bind_port, executor_timeout_seconds, task_max_failures, storage_config } => {
            let storage = storage_options(storage_config.as_deref())?;
            let options = SchedulerOptions { bind_host, external_host, port: bind_port, executor_timeout_seconds, task_max_failures, storage };
            cluster::process::scheduler(options).await?;
        }
        Command::Executor {
            bind_host,
            external_host,
            scheduler_host,
            scheduler_port,
            bind_port,
            grpc_port,
            health_port,
            task_slots,
            work_dir,
            memory_limit,
            heartbeat_seconds,
            storage_config,
        } => {
            let storage = storage_options(storage_config.as_deref())?;
            let options = ExecutorOptions {
                bind_host,
                external_host,
                port: bind_port,
                grpc_port,
                health_port,
                scheduler_host,
                scheduler_port,
                task_slots,
                work_dir,
                memory_limit,
                heartbeat_seconds: heartbeat_seconds.max(1),
                storage,
            };
            cluster::process::executor(options).await?;
        }
        Command::Demo { out, world, epochs } => {
            if epochs == 0 {
                return Err(Error::Usage("--epochs must be at least 1".into()).into());
            }
            let options = TrainOptions { max_epochs: epochs, ..TrainOptions::default() };
            let demo = job::demo::demo(std::path::Path::new(&out), world.into(), &options).await.map_err(|e| match e {
                job::demo::DemoError::Generate(e) => Error::from(e),
                job::demo::DemoError::Model(e) => Error::from(e),
                job::demo::DemoError::Job(e) => Error::from(e),
                job::demo::DemoError::Storage(e) => Error::from(e),
            })?;
            print!("{}", demo.summary());
            println!("{}", demo.manifest_url);
        }
    }
    Ok(())
}
