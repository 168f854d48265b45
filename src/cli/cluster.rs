//! `scheduler` and `executor`: the cluster engine's processes.

use std::path::{Path, PathBuf};

use crate::Error;
use crate::cluster::process::{self, ExecutorOptions, SchedulerOptions};
use crate::job::config::JobConfig;
use crate::storage::StorageOptions;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum Command {
    /// A Ballista scheduler that can plan the job's scoring (engine = "ballista").
    Scheduler {
        /// Address the scheduler listens on.
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
        /// Address the executor listens on.
        #[arg(long, default_value = "0.0.0.0")]
        bind_host: String,
        /// The host the scheduler and other executors reach this executor at (a pod's IP).
        #[arg(long, env = "AUDIENCE_EXECUTOR_EXTERNAL_HOST", hide_env_values = true)]
        external_host: Option<String>,
        /// Host of the scheduler to register with.
        #[arg(long, default_value = "localhost")]
        scheduler_host: String,
        /// gRPC port of the scheduler.
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
        /// Seconds between heartbeats to the scheduler.
        #[arg(long, default_value_t = 15)]
        heartbeat_seconds: u64,
        /// A job config whose [storage.*] settings apply to this process's object stores.
        #[arg(long)]
        storage_config: Option<PathBuf>,
    },
}

impl Command {
    pub async fn run(self) -> Result<(), Error> {
        match self {
            Command::Scheduler {
                bind_host,
                external_host,
                bind_port,
                executor_timeout_seconds,
                task_max_failures,
                storage_config,
            } => {
                let storage = storage_options(storage_config.as_deref())?;
                let options = SchedulerOptions {
                    bind_host,
                    external_host,
                    port: bind_port,
                    executor_timeout_seconds,
                    task_max_failures,
                    storage,
                };
                process::scheduler(options).await?;
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
                process::executor(options).await?;
            }
        }
        Ok(())
    }
}

/// The [storage.*] settings of a job config (none without one).
fn storage_options(config: Option<&Path>) -> Result<StorageOptions, Error> {
    match config {
        Some(path) => Ok(JobConfig::load(path)?.storage),
        None => Ok(StorageOptions::default()),
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
