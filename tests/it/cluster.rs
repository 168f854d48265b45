//! The Ballista engine: a scheduler and executors started as separate
//! `audience` processes on 127.0.0.1, the job run against them, and what it
//! commits compared row for row with a local-engine run; the plan codecs and
//! planner resolving the job's operators the way the scheduler and executors
//! do. The processes and helpers here serve the cluster's fault tests too
//! (`cluster_faults`).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::util::display::array_value_to_string;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::helpers::{Setup, learnable_config, setup, stderr};

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The HTTP status of `GET path` on 127.0.0.1:`port`, if it answers.
pub(crate) fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.split_whitespace().nth(1)?.parse().ok()
}

pub(crate) fn wait_until(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ready() {
        assert!(started.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub(crate) struct Process {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Process {
    fn start(name: &str, args: &[String], env: &[(&str, &str)], logs: &Path) -> Process {
        let log = logs.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_audience"));
        command.args(args).env("RUST_LOG", "info").stdout(Stdio::null()).stderr(file);
        for (k, v) in env {
            command.env(k, v);
        }
        Process { name: name.to_string(), child: command.spawn().unwrap(), log }
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub(crate) fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("{} exited with {status}:\n{}", self.name, self.log());
        }
    }

    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A scheduler and executors, each its own process; stopped when dropped.
pub struct Cluster {
    dir: tempfile::TempDir,
    scheduler_port: u16,
    pub(crate) scheduler: Process,
    pub(crate) executors: Vec<Process>,
    /// Flags and environment every process of this cluster gets.
    common_args: Vec<String>,
    common_env: Vec<(String, String)>,
}

impl Cluster {
    pub fn start() -> Cluster {
        Cluster::start_with(&[], &[])
    }

    /// A scheduler started with `args` and `env`, as its executors will be.
    pub fn start_with(args: &[String], env: &[(&str, String)]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let scheduler_port = free_port();
        let mut scheduler_args: Vec<String> = [
            "scheduler",
            "--bind-host",
            "127.0.0.1",
            "--external-host",
            "127.0.0.1",
            "--bind-port",
            &scheduler_port.to_string(),
            "--executor-timeout-seconds",
            "5",
        ]
        .map(String::from)
        .to_vec();
        scheduler_args.extend(args.iter().cloned());
        let common_env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        let env_refs: Vec<(&str, &str)> = common_env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut scheduler = Process::start("scheduler", &scheduler_args, &env_refs, dir.path());
        wait_until("the scheduler's /healthz", Duration::from_secs(60), || {
            scheduler.assert_running();
            http_status(scheduler_port, "/healthz") == Some(200)
        });
        Cluster { dir, scheduler_port, scheduler, executors: Vec::new(), common_args: args.to_vec(), common_env }
    }

    /// Starts an executor (with `env`) and waits until it is registered.
    pub fn add_executor(&mut self, env: &[(&str, &str)]) {
        let name = format!("executor-{}", self.executors.len());
        let work = self.dir.path().join(&name);
        std::fs::create_dir_all(&work).unwrap();
        let health = free_port();
        let args: Vec<String> = [
            "executor".to_string(),
            "--bind-host=127.0.0.1".into(),
            "--external-host=127.0.0.1".into(),
            "--scheduler-host=127.0.0.1".into(),
            format!("--scheduler-port={}", self.scheduler_port),
            format!("--bind-port={}", free_port()),
            format!("--grpc-port={}", free_port()),
            format!("--health-port={health}"),
            "--task-slots=1".into(),
            format!("--work-dir={}", work.display()),
            "--heartbeat-seconds=1".into(),
        ]
        .into_iter()
        .chain(self.common_args.iter().cloned())
        .collect();
        let mut env: Vec<(&str, &str)> = env.to_vec();
        env.extend(self.common_env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let mut executor = Process::start(&name, &args, &env, self.dir.path());
        wait_until(&format!("{name}'s /readyz"), Duration::from_secs(60), || {
            executor.assert_running();
            http_status(health, "/readyz") == Some(200)
        });
        self.executors.push(executor);
    }

    pub fn url(&self) -> String {
        format!("df://127.0.0.1:{}", self.scheduler_port)
    }

    pub fn logs(&self) -> String {
        let mut all = format!("--- scheduler\n{}", self.scheduler.log());
        for e in &self.executors {
            all.push_str(&format!("--- {}\n{}", e.name, e.log()));
        }
        all
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for e in &mut self.executors {
            e.kill();
        }
        self.scheduler.kill();
    }
}

/// A job config writing to `output`, with `engine` as its `[engine]` table.
pub(crate) fn config(setup: &Setup, name: &str, output: &Path, engine: &str) -> PathBuf {
    config_with(setup, name, output, engine, "")
}

/// As [`config`], with `scoring` added to the `[scoring]` table.
pub(crate) fn config_with(setup: &Setup, name: &str, output: &Path, engine: &str, scoring: &str) -> PathBuf {
    let path = setup.dir.path().join(name);
    let text = format!(
        "[inputs]\nroot = \"{}\"\n[model]\nuri = \"{}\"\n[output]\nroot = \"{}\"\n[scoring]\nbatch_rows = 512\n{scoring}\n[engine]\n{engine}\n",
        setup.world.display(),
        setup.model.display(),
        output.display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

pub(crate) fn date_dir(output: &Path) -> PathBuf {
    output.join(format!("dt={}", learnable_config().run_date))
}

pub(crate) fn run(config: &Path, extra: &[&str]) -> Output {
    crate::helpers::run_job(config, extra, &[])
}

/// Every committed audience row, every column, as text (floats print in full).
pub(crate) fn committed_rows(output: &Path) -> Vec<String> {
    let marker: serde_json::Value =
        serde_json::from_slice(&std::fs::read(date_dir(output).join("_SUCCESS")).unwrap()).unwrap();
    let audiences = date_dir(output).join(format!("run={}", marker["run_id"].as_str().unwrap())).join("audiences");
    let mut rows = Vec::new();
    for campaign in std::fs::read_dir(audiences).unwrap() {
        for file in std::fs::read_dir(campaign.unwrap().path()).unwrap() {
            let reader =
                ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(file.unwrap().path()).unwrap()).unwrap();
            for batch in reader.build().unwrap() {
                let batch = batch.unwrap();
                for row in 0..batch.num_rows() {
                    let cells: Vec<String> =
                        batch.columns().iter().map(|c| array_value_to_string(c, row).unwrap()).collect();
                    rows.push(cells.join("|"));
                }
            }
        }
    }
    rows.sort();
    rows
}

pub(crate) const PARTITIONS: &str = "partitions = 2";

/// The users table as two files, so that each of two tasks scores real users
/// (a file's single row group would otherwise land in one partition).
pub(crate) fn split_users(setup: &Setup) {
    use audience::contract::Table;
    let users = crate::helpers::read_table(&setup.world, Table::Users);
    let half = users.num_rows() / 2;
    crate::helpers::write_table(&setup.world, Table::Users, &users.slice(0, half));
    let file = std::fs::File::create(setup.world.join("users").join("part-00001.parquet")).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, users.schema(), None).unwrap();
    writer.write(&users.slice(half, users.num_rows() - half)).unwrap();
    writer.close().unwrap();
}

/// A world with a two-file users table and a model, and the output of a
/// local-engine run of it.
pub(crate) async fn local_baseline() -> (Setup, PathBuf) {
    let setup = setup().await;
    split_users(&setup);
    let out = setup.dir.path().join("local");
    let local = run(&config(&setup, "local.toml", &out, PARTITIONS), &[]);
    assert_eq!(local.status.code(), Some(0), "{}", stderr(&local));
    (setup, out)
}

/// The same job config on `cluster` (with `extra` in `[engine]`), and its output root.
pub(crate) fn cluster_config(setup: &Setup, cluster: &Cluster, extra: &str) -> (PathBuf, PathBuf) {
    let out = setup.dir.path().join("cluster");
    let engine = format!("kind = \"ballista\"\nscheduler = \"{}\"\n{PARTITIONS}\n{extra}", cluster.url());
    (config(setup, "cluster.toml", &out, &engine), out)
}

#[tokio::test]
async fn a_two_executor_cluster_commits_the_same_audiences_as_the_local_engine() {
    let (setup, local_out) = local_baseline().await;
    let mut cluster = Cluster::start();
    cluster.add_executor(&[]);
    cluster.add_executor(&[]);
    let (on_cluster, cluster_out) = cluster_config(&setup, &cluster, "");
    let first = run(&on_cluster, &[]);
    assert_eq!(first.status.code(), Some(0), "{}\n{}", stderr(&first), cluster.logs());
    let expected = committed_rows(&local_out);
    assert!(!expected.is_empty());
    assert_eq!(committed_rows(&cluster_out), expected, "cluster and local audiences differ");

    // Both executors ran scoring tasks, and a second scoring job reuses each
    // executor's cached model: fetched at most once per executor.
    let again = run(&on_cluster, &["--overwrite"]);
    assert_eq!(again.status.code(), Some(0), "{}\n{}", stderr(&again), cluster.logs());
    assert_eq!(committed_rows(&cluster_out), expected);
    let prepared: Vec<usize> =
        cluster.executors.iter().map(|e| e.log().matches("scoring state prepared").count()).collect();
    let scored: Vec<usize> = cluster.executors.iter().map(|e| e.log().matches("partition scored").count()).collect();
    let fetched: Vec<usize> = cluster.executors.iter().map(|e| e.log().matches("model fetched").count()).collect();
    eprintln!(
        "per executor: scoring states prepared {prepared:?}, partitions with users scored {scored:?}, models fetched {fetched:?}"
    );
    assert!(scored.iter().all(|&n| n >= 1), "every executor scored users: {scored:?}\n{}", cluster.logs());
    assert!(
        fetched.iter().all(|&n| n <= 1),
        "model fetched per executor {fetched:?} over two jobs\n{}",
        cluster.logs()
    );
}

#[tokio::test]
async fn bf16_scoring_commits_the_same_audiences_on_both_engines() {
    let setup = setup().await;
    split_users(&setup);
    let bf16 = "precision = \"bf16\"";
    let local_out = setup.dir.path().join("local-bf16");
    let local = run(&config_with(&setup, "local-bf16.toml", &local_out, PARTITIONS, bf16), &[]);
    if !audience::model::fused::bf16_supported() {
        // This CPU cannot: the run stops before scoring, naming the setting.
        assert_eq!(local.status.code(), Some(2), "{}", stderr(&local));
        assert!(stderr(&local).contains("scoring.precision = \"bf16\""), "{}", stderr(&local));
        assert!(!date_dir(&local_out).exists());
        return;
    }
    assert_eq!(local.status.code(), Some(0), "{}", stderr(&local));
    let mut cluster = Cluster::start();
    cluster.add_executor(&[]);
    cluster.add_executor(&[]);
    let out = setup.dir.path().join("cluster-bf16");
    let engine = format!("kind = \"ballista\"\nscheduler = \"{}\"\n{PARTITIONS}", cluster.url());
    let on_cluster = run(&config_with(&setup, "cluster-bf16.toml", &out, &engine, bf16), &[]);
    assert_eq!(on_cluster.status.code(), Some(0), "{}\n{}", stderr(&on_cluster), cluster.logs());
    let expected = committed_rows(&local_out);
    assert!(!expected.is_empty());
    assert_eq!(committed_rows(&out), expected, "bf16 audiences differ between the cluster and the local engine");
}

/// The plan the job sends, taken through the scheduler's decoding and planning
/// and the executors' decoding, as the processes do; then executed from the
/// decoded plan. Stock Ballista codecs cannot decode it.
// Long: one round trip per operator of the job's plan, each checked the same way.
#[tokio::test]
async fn every_operator_of_the_job_resolves_on_the_scheduler_and_executor_side() {
    use audience::cluster::codec::{LogicalCodec, PhysicalCodec};
    use audience::cluster::plan::{ScoreExec, ScoreNode};
    use audience::cluster::session;
    use audience::cluster::spec::ScoreSpec;
    use audience::contract::Table;
    use audience::scoring::{ModelParts, ScoreOptions, USER_COLUMNS, merge, prepare};
    use audience::storage::StorageOptions;
    use ballista_core::extension::SessionConfigExt;
    use datafusion::execution::TaskContext;
    use datafusion::physical_plan::{collect, displayable};
    use datafusion::prelude::{SessionConfig, SessionContext, col};
    use datafusion_proto::bytes::{
        logical_plan_from_bytes_with_extension_codec, logical_plan_to_bytes_with_extension_codec,
        physical_plan_from_bytes_with_extension_codec, physical_plan_to_bytes_with_extension_codec,
    };

    let setup = setup().await;
    let root = crate::helpers::location(&setup.world);
    let (model, manifest) = audience::model::artifact::load(&crate::helpers::location(&setup.model)).await.unwrap();
    let options = ScoreOptions { partitions: 2, ..ScoreOptions::new(learnable_config().run_date) };
    let (local, prepared) = prepare(&root, &ModelParts::of(&model).unwrap(), &options).await.unwrap();
    let split = audience::scoring::split_users(&local, 2).await.unwrap();
    let spec = ScoreSpec {
        job: "registry-test".into(),
        inputs_root: root.url().to_string(),
        model_uri: setup.model.display().to_string(),
        model_version: manifest.model_version.clone(),
        date: learnable_config().run_date.to_string(),
        slack: options.slack,
        hour: options.hour,
        batch_rows: options.batch_rows,
        precision: options.precision,
        storage: StorageOptions::default(),
        campaign_ids: prepared.campaigns.iter().map(|c| c.campaign_id.clone()).collect(),
        split,
    };

    // The client's logical plan, as the job builds it.
    let client = SessionContext::new();
    audience::tables::register(&client, &root, &[Table::Users]).await.unwrap();
    let users = client.table("users").await.unwrap().select(USER_COLUMNS.map(col).to_vec()).unwrap();
    let plan = ScoreNode::new(users.into_unoptimized_plan(), &spec).unwrap().into_plan();
    let bytes = logical_plan_to_bytes_with_extension_codec(&plan, &LogicalCodec::default()).unwrap();

    // The scheduler: decode with its codec, plan with its session.
    let config = SessionConfig::new_with_ballista().with_target_partitions(2);
    let scheduler = SessionContext::new_with_state(session::scheduler(config, &StorageOptions::default()).unwrap());
    let stock = logical_plan_from_bytes_with_extension_codec(
        &bytes,
        &scheduler.task_ctx(),
        &ballista_core::serde::BallistaLogicalExtensionCodec::default(),
    );
    assert!(stock.is_err(), "Ballista's stock codec should not know the scoring node");
    let decoded =
        logical_plan_from_bytes_with_extension_codec(&bytes, &scheduler.task_ctx(), &LogicalCodec::default()).unwrap();
    let physical = scheduler.state().create_physical_plan(&decoded).await.unwrap();
    let text = displayable(physical.as_ref()).indent(false).to_string();
    assert!(
        physical.downcast_ref::<ScoreExec>().is_some(),
        "the scheduler plans the scoring node as ScoreExec:\n{text}"
    );

    // The executors: decode the task's plan with their codec and runtime.
    let bytes = physical_plan_to_bytes_with_extension_codec(Arc::clone(&physical), &PhysicalCodec::default()).unwrap();
    // As an executor builds a task's context: Ballista's function registry
    // (what `audience executor` uses), our runtime.
    let registry = ballista_core::registry::BallistaFunctionRegistry::default();
    let executor = Arc::new(TaskContext::new(
        Some("task".into()),
        "session".into(),
        SessionConfig::new_with_ballista(),
        registry.scalar_functions.clone(),
        registry.higher_order_functions.clone(),
        registry.aggregate_functions.clone(),
        registry.window_functions.clone(),
        session::runtime(&StorageOptions::default(), None).unwrap(),
    ));
    let stock = physical_plan_from_bytes_with_extension_codec(
        &bytes,
        &executor,
        &ballista_core::serde::BallistaPhysicalExtensionCodec::default(),
    );
    assert!(stock.is_err(), "Ballista's stock codec should not know ScoreExec");
    let on_executor =
        physical_plan_from_bytes_with_extension_codec(&bytes, &executor, &PhysicalCodec::default()).unwrap();
    assert_eq!(displayable(on_executor.as_ref()).indent(false).to_string(), text);
    assert_eq!(on_executor.properties().output_partitioning().partition_count(), 2, "one task per row range:\n{text}");

    // Running the decoded plan gives the local engine's candidate table.
    let batches = collect(on_executor, executor).await.unwrap();
    let mut result = audience::scoring::scorer::PartitionResult::empty(&prepared);
    for batch in &batches {
        audience::cluster::partial::decode_into(batch, &prepared, &mut result).unwrap();
    }
    let from_plan = merge(Arc::clone(&prepared), vec![result], Instant::now());
    let local = audience::scoring::score(&root, &model, &options).await.unwrap();
    assert_eq!(from_plan.eligible, local.eligible);
    assert_eq!(from_plan.users, local.users);
    assert_eq!(from_plan.candidates(), local.candidates());
}
