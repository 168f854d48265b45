//! Regression tests for the defects an adversarial user found (issue 20,
//! part A), one test each, named after the defect.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, ListArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field};
use audience::contract::Table;
use audience::job::commit::missing_files;
use audience::job::layout::DateDir;
use audience::job::manifest::RunManifest;

use crate::helpers::*;

fn run(config: &Path, extra: &[&str]) -> std::process::Output {
    run_job(config, extra, &[])
}

/// Writes `batch` as the file `name` of `table` (next to the files already there).
fn add_file(root: &Path, table: Table, name: &str, batch: &RecordBatch) {
    let file = std::fs::File::create(root.join(table.name()).join(name)).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    writer.write(batch).unwrap();
    writer.close().unwrap();
}

/// The committed audiences of a run into `output`, sorted: (campaign, user, cost).
async fn audiences_in(output: &Path) -> Vec<(String, i64, f64)> {
    let (_, mut rows) = committed_audiences(&location(output), learnable_config().run_date).await;
    rows.sort_by(|a, b| a.partial_cmp(b).unwrap());
    rows
}

/// A config like `job.toml` writing to its own output root `name`.
fn config_to(setup: &Setup, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let output = setup.dir.path().join(name);
    (setup.config_at(&format!("{name}.toml"), &output, ""), output)
}

/// A1: a no-op retry removed every run directory but the committed one,
/// including a run still being written; the writer then committed a run
/// without its audience files.
#[tokio::test]
async fn a_retry_never_removes_a_run_that_may_still_be_written() {
    let setup = setup().await;
    let config = setup.config("job.toml", "");
    let first = run(&config, &[]);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let committed = setup.run_dirs();

    // A run being written right now, and one abandoned seven hours ago.
    let writing = setup.date_dir().join("run=20991231T000000Z-0000000a/audiences/campaign_id=x");
    let abandoned = setup.date_dir().join("run=20000101T000000Z-0000000b/audiences/campaign_id=x");
    for dir in [&writing, &abandoned] {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("part-00000.parquet"), b"partial").unwrap();
    }
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(7 * 3600);
    std::fs::File::options().write(true).open(abandoned.join("part-00000.parquet")).unwrap().set_modified(old).unwrap();

    let retry = run(&config, &[]);
    assert_eq!(retry.status.code(), Some(0), "{}", stderr(&retry));
    let mut expected = committed.clone();
    expected.push("run=20991231T000000Z-0000000a".into());
    expected.sort();
    assert_eq!(setup.run_dirs(), expected, "the run being written stays; the abandoned one goes");
}

/// A1, second half: a commit checks that every file its manifest names is there.
#[tokio::test]
async fn a_run_missing_an_audience_file_is_found_incomplete() {
    let setup = setup().await;
    let first = run(&setup.config("job.toml", ""), &[]);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let date_dir = DateDir::new(&location(&setup.output()), learnable_config().run_date);
    let marker = date_dir.committed().await.unwrap().unwrap();
    let run_dir = date_dir.run(&marker.run_id);
    let manifest: RunManifest = serde_json::from_slice(&run_dir.join("manifest.json").read().await.unwrap()).unwrap();
    assert_eq!(missing_files(&run_dir, &manifest).await.unwrap(), Vec::<String>::new());

    let served = manifest.campaigns.iter().find(|c| c.audience > 0).unwrap();
    let file = run_dir.join(&audience::job::layout::audience_file(&served.campaign_id));
    file.delete().await.unwrap();
    assert_eq!(missing_files(&run_dir, &manifest).await.unwrap(), vec![file.url().to_string()]);
}

/// A2: a date with no active campaign panicked in the scorer (a zero-row
/// reshape); it must commit a valid empty run, so backfills over quiet days pass.
#[tokio::test]
async fn a_date_with_no_active_campaign_commits_an_empty_run() {
    let setup = setup().await;
    let config = setup.config("job.toml", "");
    let quiet = "2031-01-01";
    let dry = audience(&["run", "--config", config.to_str().unwrap(), "--date", quiet, "--dry-run"], &[]);
    assert_eq!(dry.status.code(), Some(0), "{}", stderr(&dry));
    let out = audience(&["run", "--config", config.to_str().unwrap(), "--date", quiet], &[]);
    let manifest = manifest_of(&out);
    assert_eq!(manifest["campaigns"].as_array().map(Vec::len), Some(0), "{manifest:#}");
    assert!(setup.output().join(format!("dt={quiet}")).join("_SUCCESS").exists());
}

/// A3: a data file without a `.parquet` extension was validated and
/// fingerprinted but not read (its users dropped); a `_`-prefixed file was
/// read but neither validated nor fingerprinted.
#[tokio::test]
async fn the_validator_the_fingerprint_and_the_reader_see_the_same_files() {
    let setup = setup().await;
    let users = read_table(&setup.world, Table::Users);
    let half = users.num_rows() / 2;
    write_table(&setup.world, Table::Users, &users.slice(0, half));
    add_file(&setup.world, Table::Users, "part-00001", &users.slice(half, users.num_rows() - half));
    // Duplicate users a validator would reject, in a file every reader skips.
    add_file(&setup.world, Table::Users, "_scratch.parquet", &users.slice(0, 10));
    let report = validate(&setup.world).await;
    assert!(report.is_ok(), "{:#?}", report.problems);
    assert_eq!(report.rows[&Table::Users], users.num_rows() as u64);

    let manifest = manifest_of(&run(&setup.config("job.toml", ""), &[]));
    assert_eq!(
        manifest["users_scored"].as_u64(),
        Some(users.num_rows() as u64),
        "every validated user is read, no other"
    );
}

/// `array` (a List or FixedSizeList of Float32) as a List whose child is
/// named `element`, as pyarrow writes it.
fn as_pyarrow_list(array: &ArrayRef) -> ArrayRef {
    let list =
        arrow::compute::cast(array, &DataType::List(Arc::new(Field::new_list_field(DataType::Float32, true)))).unwrap();
    let list = list.as_list::<i32>();
    let field = Arc::new(Field::new("element", DataType::Float32, true));
    Arc::new(ListArray::new(field, list.offsets().clone(), list.values().clone(), list.nulls().cloned()))
}

/// A4: files of one table from different writers passed `validate` but failed
/// `run` with a schema-merge error; the reader now reads what the validator accepts.
#[tokio::test]
async fn files_of_one_table_from_different_writers_are_read_as_the_contract() {
    let setup = setup().await;
    let (config, output) = config_to(&setup, "baseline");
    manifest_of(&run(&config, &[]));
    let expected = audiences_in(&output).await;

    let users = read_table(&setup.world, Table::Users);
    let half = users.num_rows() / 2;
    let other = users.slice(half, users.num_rows() - half);
    let country = arrow::compute::cast(other.column_by_name("country").unwrap(), &DataType::LargeUtf8).unwrap();
    let other = with_column(&other, "country", country);
    let affinity = as_pyarrow_list(other.column_by_name("genre_affinity").unwrap());
    let other = with_column(&other, "genre_affinity", affinity);
    write_table(&setup.world, Table::Users, &users.slice(0, half));
    add_file(&setup.world, Table::Users, "part-00001.parquet", &other);
    let report = validate(&setup.world).await;
    assert!(report.is_ok(), "{:#?}", report.problems);

    let (config, output) = config_to(&setup, "mixed");
    let manifest = manifest_of(&run(&config, &[]));
    assert_eq!(manifest["users_scored"].as_u64(), Some(users.num_rows() as u64));
    assert_eq!(audiences_in(&output).await, expected, "the same users, read through other encodings");
}

/// A5: an extra `genre` column in campaigns replaced the podcast's genre in
/// the join and changed the audiences. Extra columns are ignored everywhere.
#[tokio::test]
async fn an_extra_column_changes_no_result() {
    let setup = setup().await;
    let (config, output) = config_to(&setup, "baseline");
    manifest_of(&run(&config, &[]));
    let expected = audiences_in(&output).await;

    let campaigns = read_table(&setup.world, Table::Campaigns);
    let rows = campaigns.num_rows();
    let mut columns = campaigns.columns().to_vec();
    columns.push(Arc::new(StringArray::from(vec!["true_crime"; rows])) as ArrayRef);
    let mut fields: Vec<Field> = campaigns.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new("genre", DataType::Utf8, true));
    let extra = RecordBatch::try_new(Arc::new(arrow::datatypes::Schema::new(fields)), columns).unwrap();
    write_table(&setup.world, Table::Campaigns, &extra);

    let (config, output) = config_to(&setup, "extra");
    manifest_of(&run(&config, &[]));
    assert_eq!(audiences_in(&output).await, expected);
}

/// A7: a model.json whose sizes would allocate terabytes panicked (exit 101).
#[tokio::test]
async fn a_model_json_with_impossible_sizes_is_rejected_naming_the_field() {
    let setup = setup().await;
    let path = setup.model.join("model.json");
    let mut manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    manifest["features"]["user"]["categorical"][0]["buckets"] = serde_json::json!(1_000_000_000_000i64);
    std::fs::write(&path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let config = setup.config("job.toml", "");
    for out in [audience(&["validate", "--config", config.to_str().unwrap()], &[]), run(&config, &[])] {
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("features.user.categorical") && stderr(&out).contains("buckets"),
            "{}",
            stderr(&out)
        );
    }
}

/// A8: an output root that is a file exited 3, which orchestrators retry; it
/// is a config error, and `validate --config` finds it.
#[tokio::test]
async fn an_output_root_that_is_a_file_is_a_config_error() {
    let setup = setup().await;
    std::fs::write(setup.output(), b"not a folder").unwrap();
    let config = setup.config("job.toml", "");
    for out in [audience(&["validate", "--config", config.to_str().unwrap()], &[]), run(&config, &[])] {
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains("is a file, not a folder"), "{}", stderr(&out));
    }
}

/// A9: a password in a URL setting was copied into manifest.json.
#[tokio::test]
async fn a_password_in_a_url_setting_never_reaches_the_manifest_or_the_log() {
    let setup = setup().await;
    let config = setup.config("job.toml", "[storage.s3]\nproxy_url = \"http://ops:hunter2-secret@127.0.0.1:3128\"\n");
    let date = learnable_config().run_date.to_string();
    let out = audience(&["run", "--config", config.to_str().unwrap(), "--date", &date], &[("RUST_LOG", "debug")]);
    let manifest = manifest_of(&out);
    let text = manifest.to_string();
    assert!(!text.contains("hunter2-secret") && !stderr(&out).contains("hunter2-secret"), "{text}");
    assert_eq!(manifest["config"]["storage"]["s3"]["proxy_url"].as_str(), Some("http://redacted@127.0.0.1:3128/"));
}

/// The single null inside a genre_affinity vector, named by the user it belongs to.
#[tokio::test]
async fn a_null_inside_genre_affinity_is_rejected_by_name() {
    let (_dir, root) = small_world().await;
    edit_column(&root, Table::Users, "genre_affinity", |array| {
        let list =
            arrow::compute::cast(array, &DataType::List(Arc::new(Field::new_list_field(DataType::Float32, true))))
                .unwrap();
        let list = list.as_list::<i32>();
        let values = list.values().as_primitive::<arrow::datatypes::Float32Type>();
        let with_null: arrow::array::Float32Array =
            values.iter().enumerate().map(|(i, v)| if i == 3 { None } else { v }).collect();
        let field = Arc::new(Field::new_list_field(DataType::Float32, true));
        Arc::new(ListArray::new(field, list.offsets().clone(), Arc::new(with_null), list.nulls().cloned()))
    });
    let problem = only_problem(&validate(&root).await, Table::Users, "genre_affinity");
    assert!(problem.contains("null element") && problem.contains("user_id="), "{problem}");
}
