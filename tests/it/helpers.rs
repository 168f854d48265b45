//! Shared test helpers: generated worlds (small, learnable), a trained setup
//! for job runs, the `audience` binary, the committed audiences read back, and
//! table surgery to break worlds.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, RecordBatch};
use arrow::compute::concat_batches;
use arrow::datatypes::{Field, Schema};
use arrow::datatypes::{Float64Type, Int64Type};
use audience::contract::Table;
use audience::contract::validate::{Report, validate_world};
use audience::model::train::TrainOptions;
use audience::model::workflow::train_and_save;
use audience::storage::Location;
use audience::world::WorldConfig;
use audience::world::write::generate;
use object_store::ObjectStoreExt;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// A small world: quick to generate, big enough to hold every kind of row.
pub fn small_config(seed: u64) -> WorldConfig {
    WorldConfig {
        seed,
        users: 600,
        podcasts: 150,
        campaigns: 30,
        impressions: 3_000,
        days: 3,
        ..WorldConfig::default()
    }
}

/// Generates a small world into a new temporary directory.
pub async fn small_world() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("world");
    generate(&location(&root), small_config(7), false).await.unwrap();
    (dir, root)
}

pub fn location(path: &Path) -> Location {
    Location::parse(path.to_str().unwrap()).unwrap()
}

pub async fn validate(root: &Path) -> Report {
    validate_world(&location(root)).await.unwrap()
}

/// Every data file of a table, sorted.
pub fn table_files(root: &Path, table: Table) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(root.join(table.name())).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files
}

/// The whole table as one batch.
pub fn read_table(root: &Path, table: Table) -> RecordBatch {
    let mut batches = Vec::new();
    let mut schema = None;
    for file in table_files(root, table) {
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(file).unwrap()).unwrap();
        schema.get_or_insert(reader.schema().clone());
        batches.extend(reader.build().unwrap().map(|b| b.unwrap()));
    }
    concat_batches(&schema.unwrap(), &batches).unwrap()
}

/// Replaces the table's files with one file holding `batch`.
pub fn write_table(root: &Path, table: Table, batch: &RecordBatch) {
    for file in table_files(root, table) {
        std::fs::remove_file(file).unwrap();
    }
    let file = std::fs::File::create(root.join(table.name()).join("part-00000.parquet")).unwrap();
    let mut writer = ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    writer.write(batch).unwrap();
    writer.close().unwrap();
}

/// `batch` with column `name` replaced by `array` (whose type may differ).
pub fn with_column(batch: &RecordBatch, name: &str, array: ArrayRef) -> RecordBatch {
    let index = batch.schema().index_of(name).unwrap();
    let mut fields: Vec<Field> = batch.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    fields[index] = Field::new(name, array.data_type().clone(), true);
    let mut columns = batch.columns().to_vec();
    columns[index] = array;
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
}

/// `batch` without column `name`.
pub fn without_column(batch: &RecordBatch, name: &str) -> RecordBatch {
    let index = batch.schema().index_of(name).unwrap();
    let mut batch = batch.clone();
    batch.remove_column(index);
    batch
}

/// Rewrites one column of a table through `edit`.
pub fn edit_column(root: &Path, table: Table, name: &str, edit: impl FnOnce(&ArrayRef) -> ArrayRef) {
    let batch = read_table(root, table);
    let column = batch.column_by_name(name).unwrap().clone();
    write_table(root, table, &with_column(&batch, name, edit(&column)));
}

/// The single problem reported for `table.column`, with a readable failure.
pub fn only_problem(report: &Report, table: Table, column: &str) -> String {
    let found = report.problems_for(table, column);
    assert_eq!(found.len(), 1, "expected one problem for {table}.{column}, got {:#?}", report.problems);
    found[0].to_string()
}

/// A world with enough impressions to learn from, over 8 days.
pub fn learnable_config() -> WorldConfig {
    WorldConfig {
        seed: 11,
        users: 3_000,
        podcasts: 200,
        campaigns: 40,
        impressions: 40_000,
        days: 8,
        ..WorldConfig::default()
    }
}

pub async fn learnable_world() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("world");
    generate(&location(&root), learnable_config(), false).await.unwrap();
    (dir, root)
}

pub struct Setup {
    pub dir: tempfile::TempDir,
    pub world: PathBuf,
    pub model: PathBuf,
}

impl Setup {
    pub fn output(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    /// Writes a config (with `extra` TOML appended) and returns its path.
    pub fn config(&self, name: &str, extra: &str) -> PathBuf {
        self.config_at(name, &self.output(), extra)
    }

    /// Writes a config whose output root is `output` (`extra` appended,
    /// still in `[output]` unless it opens a table); returns its path.
    pub fn config_at(&self, name: &str, output: &Path, extra: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        let text = format!(
            "[inputs]\nroot = \"{}\"\n[model]\nuri = \"{}\"\n[output]\nroot = \"{}\"\n{extra}",
            self.world.display(),
            self.model.display(),
            output.display()
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    pub fn date_dir(&self) -> PathBuf {
        self.output().join(format!("dt={}", learnable_config().run_date))
    }

    pub fn run_dirs(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.date_dir()) else { return Vec::new() };
        let mut runs: Vec<String> =
            entries.map(|e| e.unwrap().file_name().into_string().unwrap()).filter(|n| n.starts_with("run=")).collect();
        runs.sort();
        runs
    }
}

pub async fn setup() -> Setup {
    let (dir, world) = learnable_world().await;
    let model = dir.path().join("model");
    let options = TrainOptions { max_epochs: 1, validation_days: 2, test_days: 2, ..TrainOptions::default() };
    train(&location(&world), &location(&model), &options).await;
    Setup { dir, world, model }
}

/// Tests that draw from libtorch's random generator, one at a time. The
/// generator is one per process (`tch::manual_seed`), and a thread that first
/// uses libtorch takes its thread count from the last `set_num_threads` of any
/// thread, so two tests training at once (or one after a scoring test) could
/// get different weights from the same seed and data.
pub fn libtorch_alone() -> std::sync::MutexGuard<'static, ()> {
    static LIBTORCH: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LIBTORCH.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Trains and saves a model in this process, deterministically for its seed
/// (alone, on a fixed number of libtorch threads: this machine's cores).
// The guard is held across the training's awaits on purpose: it keeps other
// tests (each on its own runtime and thread) off libtorch until this one ends.
#[allow(clippy::await_holding_lock)]
pub async fn train(data: &Location, out: &Location, options: &TrainOptions) -> audience::model::artifact::Manifest {
    let _alone = libtorch_alone();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    tch::set_num_threads(cores as i32);
    train_and_save(data, out, options, None).await.unwrap()
}

pub fn audience(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_audience"));
    command.args(args).env("RUST_LOG", "warn");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().unwrap()
}

/// `audience run` of the test date (the learnable world's run date) with
/// `config`, `extra` flags and `env`.
pub fn run_job(config: &Path, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let date = learnable_config().run_date.to_string();
    let mut args = vec!["run", "--config", config.to_str().unwrap(), "--date", &date];
    args.extend(extra);
    audience(&args, env)
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Every audience row of the run committed for `date` under `output`: its run
/// id and (campaign, user, cost) rows, read from the Parquet files.
pub async fn committed_audiences(output: &Location, date: chrono::NaiveDate) -> (String, Vec<(String, i64, f64)>) {
    let date_dir = output.join(&format!("dt={date}"));
    let marker: serde_json::Value = serde_json::from_slice(&date_dir.join("_SUCCESS").read().await.unwrap()).unwrap();
    let run_id = marker["run_id"].as_str().unwrap().to_string();
    let audiences = date_dir.join(&format!("run={run_id}/audiences"));
    let mut rows = Vec::new();
    for object in audiences.list().await.unwrap() {
        let bytes = output.store().get(&object.location).await.unwrap().bytes().await.unwrap();
        for batch in ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap().build().unwrap() {
            let batch = batch.unwrap();
            let ids = batch.column_by_name("campaign_id").unwrap().as_string::<i32>().clone();
            let users = batch.column_by_name("user_id").unwrap().as_primitive::<Int64Type>().clone();
            let costs = batch.column_by_name("cost").unwrap().as_primitive::<Float64Type>().clone();
            for i in 0..batch.num_rows() {
                rows.push((ids.value(i).to_string(), users.value(i), costs.value(i)));
            }
        }
    }
    (run_id, rows)
}

/// The manifest a successful `run` printed the URL of.
pub fn manifest_of(output: &std::process::Output) -> serde_json::Value {
    assert_eq!(output.status.code(), Some(0), "{}", stderr(output));
    let url = String::from_utf8(output.stdout.clone()).unwrap().trim().to_string();
    let path = url.strip_prefix("file://").unwrap_or(&url);
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}
