//! `audience scheduler` and `audience executor`: Ballista's scheduler and
//! executor with our codecs, planner and object stores registered, so they can
//! run the job's plans (stock Ballista binaries cannot). The scheduler serves
//! `/healthz` and `/readyz` on its gRPC port (Ballista does); the executor
//! serves them on its own health port, ready once the scheduler has answered
//! a heartbeat.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_executor::health::ExecutorHealth;
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;

use super::codec::{LogicalCodec, PhysicalCodec};
use super::session;
use crate::exit_code::ExitCode;
use crate::storage::StorageOptions;

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("{what} address {address:?}: {source}")]
    BadAddress { what: &'static str, address: String, source: std::net::AddrParseError },
    #[error("binding {address}: {source}")]
    Bind { address: SocketAddr, source: std::io::Error },
    #[error("{what}: {source}")]
    Ballista { what: &'static str, source: ballista_core::error::BallistaError },
}

impl ProcessError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            ProcessError::BadAddress { .. } => ExitCode::Invalid,
            // A port in use or a scheduler not up yet: try again.
            ProcessError::Bind { .. } | ProcessError::Ballista { .. } => ExitCode::Transient,
        }
    }
}

fn address(what: &'static str, host: &str, port: u16) -> Result<SocketAddr, ProcessError> {
    let address = format!("{host}:{port}");
    address.parse().map_err(|source| ProcessError::BadAddress { what, address, source })
}

pub struct SchedulerOptions {
    pub bind_host: String,
    /// The host executors and clients reach this scheduler at.
    pub external_host: String,
    pub port: u16,
    /// Tasks whose executor sends no heartbeat for this long are rescheduled.
    pub executor_timeout_seconds: u64,
    /// Attempts per task before the job fails.
    pub task_max_failures: usize,
    pub storage: StorageOptions,
}

pub async fn scheduler(options: SchedulerOptions) -> Result<(), ProcessError> {
    let address = address("bind", &options.bind_host, options.port)?;
    let storage = options.storage;
    let config = SchedulerConfig {
        bind_host: options.bind_host,
        external_host: options.external_host,
        bind_port: options.port,
        executor_timeout_seconds: options.executor_timeout_seconds,
        no_executors_grace_period_seconds: options.executor_timeout_seconds,
        expire_dead_executor_interval_seconds: (options.executor_timeout_seconds / 4).clamp(1, 15),
        task_max_failures: options.task_max_failures,
        override_session_builder: Some(Arc::new(move |config| session::scheduler(config, &storage))),
        override_logical_codec: Some(Arc::new(LogicalCodec::default())),
        override_physical_codec: Some(Arc::new(PhysicalCodec::default())),
        ..SchedulerConfig::default()
    };
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(|source| ProcessError::Ballista { what: "creating the scheduler's cluster state", source })?;
    tracing::info!(%address, "scheduler listening (health: /healthz, /readyz on the same port)");
    start_server(cluster, address, Arc::new(config))
        .await
        .map_err(|source| ProcessError::Ballista { what: "scheduler", source })
}

pub struct ExecutorOptions {
    pub bind_host: String,
    /// The host the scheduler and other executors reach this executor at.
    pub external_host: Option<String>,
    /// Arrow Flight port (shuffle and results).
    pub port: u16,
    /// gRPC port (tasks from the scheduler).
    pub grpc_port: u16,
    pub health_port: u16,
    pub scheduler_host: String,
    pub scheduler_port: u16,
    /// Concurrent tasks (0: one per core).
    pub task_slots: usize,
    pub work_dir: Option<String>,
    /// Memory pool for DataFusion's operators, bytes (None: a share of the machine's or cgroup's).
    pub memory_limit: Option<u64>,
    pub heartbeat_seconds: u64,
    pub storage: StorageOptions,
}

pub async fn executor(options: ExecutorOptions) -> Result<(), ProcessError> {
    // Tasks own the cores (each scores with one libtorch thread, as partitions do locally).
    let slots = if options.task_slots == 0 { crate::scoring::cores() } else { options.task_slots };
    let health = ExecutorHealth::new();
    let health_address = address("health", &options.bind_host, options.health_port)?;
    let listener = tokio::net::TcpListener::bind(health_address)
        .await
        .map_err(|source| ProcessError::Bind { address: health_address, source })?;
    tokio::spawn(serve_health(listener, health.clone()));

    let storage = options.storage;
    let work_dir = options.work_dir.clone();
    let config = ExecutorProcessConfig {
        bind_host: options.bind_host,
        external_host: options.external_host,
        port: options.port,
        grpc_port: options.grpc_port,
        scheduler_host: options.scheduler_host,
        scheduler_port: options.scheduler_port,
        vcores: slots,
        work_dir: options.work_dir,
        memory_pool_size: options.memory_limit,
        executor_heartbeat_interval_seconds: options.heartbeat_seconds,
        override_logical_codec: Some(Arc::new(LogicalCodec::default())),
        override_physical_codec: Some(Arc::new(PhysicalCodec::default())),
        override_runtime_producer: Some(Arc::new(move |_| session::runtime(&storage, work_dir.as_deref()))),
        health,
        ..ExecutorProcessConfig::default()
    };
    tracing::info!(slots, health = %health_address, "executor starting");
    start_executor_process(Arc::new(config)).await.map_err(|source| ProcessError::Ballista { what: "executor", source })
}

async fn serve_health(listener: tokio::net::TcpListener, health: ExecutorHealth) {
    let ready = move || {
        let health = health.clone();
        async move {
            if health.is_ready() {
                (StatusCode::OK, "ready")
            } else {
                (StatusCode::SERVICE_UNAVAILABLE, "not registered yet")
            }
        }
    };
    let router = Router::new().route("/healthz", get(|| async { "ok" })).route("/readyz", get(ready));
    if let Err(error) = axum::serve(listener, router).await {
        tracing::error!(%error, "health server stopped");
    }
}
