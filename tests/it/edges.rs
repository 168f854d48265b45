//! Regression tests for the defects found at the edges of the inputs, configs
//! and commands (issue 28), one test per class, named after what must hold.
//! (`defects.rs` holds the earlier ones; both files stay under 500 lines.)

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, Float64Array, Int8Array};
use arrow::datatypes::{Float64Type, Int8Type};
use audience::contract::Table;

use crate::fault_proxy::{Fault, Rule};
use crate::helpers::*;

/// The committed run's directory and manifest path after one run of `setup`.
fn committed_run(setup: &Setup) -> (std::path::PathBuf, std::path::PathBuf) {
    let out = run_job(&setup.config("job.toml", ""), &[], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let runs = setup.run_dirs();
    let run_dir = setup.date_dir().join(&runs[0]);
    (run_dir.clone(), run_dir.join("manifest.json"))
}

fn assert_refused(out: &std::process::Output, names: &str) {
    assert_eq!(out.status.code(), Some(2), "{}", stderr(out));
    assert!(stderr(out).contains(names), "the message names {names:?}: {}", stderr(out));
}

/// Items 1 and 2: no command writes a run's files outside the commit
/// protocol (only `report` may draw the run's own report.html again), and an
/// output that names a folder is a usage error (2), never "retry" (3).
#[tokio::test]
async fn no_command_overwrites_a_committed_run_and_a_folder_is_no_output_file() {
    let setup = setup().await;
    let (run_dir, manifest) = committed_run(&setup);
    let manifest_arg = manifest.to_str().unwrap();
    let before: Vec<(std::path::PathBuf, Vec<u8>)> =
        walk(&setup.date_dir()).into_iter().map(|p| (p.clone(), std::fs::read(&p).unwrap())).collect();
    let audience_file = walk(&run_dir.join("audiences")).remove(0);
    let success = setup.date_dir().join("_SUCCESS");
    let (world, model) = (setup.world.to_str().unwrap(), setup.model.to_str().unwrap());

    for target in [&manifest, &audience_file, &success, &run_dir.join("notes.html")] {
        let out = audience(&["report", "--manifest", manifest_arg, "--out", target.to_str().unwrap()], &[]);
        assert_refused(&out, "--out");
        assert!(stderr(&out).contains("run --overwrite"), "{}", stderr(&out));
    }
    let trained_into_run =
        audience(&["train", "--data", world, "--out", run_dir.to_str().unwrap(), "--epochs", "1"], &[]);
    assert_refused(&trained_into_run, "--out");
    let evaluated_into_run = audience(&["evaluate", "--data", world, "--model", model, "--report", manifest_arg], &[]);
    assert_refused(&evaluated_into_run, "--report");
    let generated_into_run =
        audience(&["generate", "--out", run_dir.join("world").to_str().unwrap(), "--users", "50"], &[]);
    assert_refused(&generated_into_run, "--out");
    let after: Vec<(std::path::PathBuf, Vec<u8>)> =
        walk(&setup.date_dir()).into_iter().map(|p| (p.clone(), std::fs::read(&p).unwrap())).collect();
    assert_eq!(after, before, "a committed run's files changed");

    // The run's own report may be drawn again in place.
    let again = audience(&["report", "--manifest", manifest_arg], &[]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));

    // A folder where a file is wanted: exit 2, naming it.
    let folder = setup.dir.path().join("a-folder");
    std::fs::create_dir_all(&folder).unwrap();
    let report_into_folder = audience(&["report", "--manifest", manifest_arg, "--out", folder.to_str().unwrap()], &[]);
    assert_refused(&report_into_folder, folder.to_str().unwrap());
    let evaluate_into_folder =
        audience(&["evaluate", "--data", world, "--model", model, "--report", folder.to_str().unwrap()], &[]);
    assert_refused(&evaluate_into_folder, folder.to_str().unwrap());
}

/// Every file below `dir`, sorted.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() { files.extend(walk(&path)) } else { files.push(path) }
    }
    files.sort();
    files
}

/// Item 3: finite but extreme numbers are refused by the contract, naming
/// the table, column and row, so `validate` and `run` agree (exit 2), and
/// the failed run leaves no run folder.
#[tokio::test]
async fn extreme_finite_numbers_are_refused_by_the_contract_before_any_run_writes() {
    let setup = setup().await;
    edit_column(&setup.world, Table::Campaigns, "priority", |column| {
        let mut values: Vec<Option<f64>> = column.as_primitive::<Float64Type>().iter().collect();
        values[0] = Some(1e300);
        Arc::new(Float64Array::from(values)) as ArrayRef
    });
    let validated = audience(&["validate", "--data", setup.world.to_str().unwrap()], &[]);
    assert_eq!(validated.status.code(), Some(2), "{}", String::from_utf8_lossy(&validated.stdout));
    let report = String::from_utf8_lossy(&validated.stdout).to_string() + &stderr(&validated);
    assert!(
        report.contains("priority")
            && report.contains("value above the contract's limit of 1e6")
            && report.contains("1e300"),
        "{report}"
    );
    let run = run_job(&setup.config("job.toml", ""), &[], &[]);
    assert_eq!(run.status.code(), Some(2), "{}", stderr(&run));
    assert!(stderr(&run).contains("priority"), "{}", stderr(&run));
    assert_eq!(setup.run_dirs(), Vec::<String>::new(), "a failed run left a run folder");

    // The other limits: an impression's hour past 23.
    let (_dir, world) = small_world().await;
    edit_column(&world, Table::Impressions, "hour", |column| {
        let mut values: Vec<i8> = column.as_primitive::<Int8Type>().values().to_vec();
        values[0] = 99;
        Arc::new(Int8Array::from(values)) as ArrayRef
    });
    let problem = only_problem(&validate(&world).await, Table::Impressions, "hour");
    assert!(problem.contains("limit of 23") && problem.contains("value 99"), "{problem}");
}

/// Item 3, the run's half: a run that fails after it wrote audience files
/// (here every manifest upload fails) removes its run folder.
#[tokio::test]
async fn a_run_that_fails_after_writing_audiences_leaves_no_files() {
    let setup = setup().await;
    // 403: refused at once (a retried 503 would take a minute to give up).
    let rules = vec![Rule::new("PUT", "manifest.json", Fault::Status(403), usize::MAX)];
    let (config, output, env, proxy) =
        crate::faults::through_proxy(&setup, "edges-cleanup", rules).await.expect("the S3 test server");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = run_job(&config, &[], &env);
    assert_eq!(out.status.code(), Some(2), "permission denied: {}", stderr(&out));
    assert!(
        proxy.seen().iter().any(|(m, t, f)| m == "PUT" && t.contains("/audiences/") && f.is_none()),
        "audiences were written first"
    );
    let left: Vec<String> = output.list().await.unwrap().iter().map(|o| o.location.to_string()).collect();
    assert_eq!(left, Vec::<String>::new(), "files of the failed run left behind");
}

/// Item 4: a numeric setting outside its documented range is refused by
/// `validate --config`, naming the key, before anything is allocated.
#[test]
fn config_values_outside_their_range_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("job.toml");
    let text =
        "[inputs]\nroot = \"w\"\n[model]\nuri = \"m\"\n[output]\nroot = \"o\"\n[scoring]\nbatch_rows = 1000000000000\n";
    std::fs::write(&config, text).unwrap();
    let out = audience(&["validate", "--config", config.to_str().unwrap()], &[]);
    assert_refused(&out, "scoring.batch_rows = 1e12: must be 1–262144");
}

/// Item 5: an environment variable's value is text inside a string; it can
/// never add a key, so it cannot lower the privacy floor.
#[tokio::test]
async fn an_environment_variable_cannot_set_a_config_key() {
    let setup = setup().await;
    // Pasted into the TOML text, this value would close the string and open
    // an [allocation] table with a floor of 1.
    let hostile = "us-east-1\"\n[allocation]\nprivacy_floor = 1\n#";
    let config = setup.config("job.toml", "[storage.s3]\nregion = \"${HW_REGION}\"\n");
    let out = run_job(&config, &[], &[("HW_REGION", hostile)]);
    let manifest = manifest_of(&out);
    assert_eq!(manifest["config"]["allocation"]["privacy_floor"], 100, "the environment changed the privacy floor");
    assert_eq!(manifest["config"]["storage"]["s3"]["region"], hostile, "the value is the region, as given");
}

/// Item 6: `..` in a local path resolves like the file system does.
#[tokio::test]
async fn a_local_path_with_dot_dot_is_a_path() {
    let (dir, world) = small_world().await;
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let relative = format!("../{}", world.file_name().unwrap().to_str().unwrap());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_audience"))
        .args(["validate", "--data", &relative])
        .current_dir(&elsewhere)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// Items 7 and 8: a list flag that repeats a value is refused naming the
/// flag, and the A/B's errors name the user's input, never its scratch folder.
#[tokio::test]
async fn repeated_list_values_are_refused_and_errors_name_the_users_input() {
    let (_dir, world) = small_world().await;
    let data = world.to_str().unwrap();
    for (args, flag) in [
        (vec!["experiment", "ab", "--data", data, "--seeds", "1,1"], "--seeds"),
        (vec!["experiment", "ab", "--data", data, "--world-seeds", "8,8"], "--world-seeds"),
        (vec!["experiment", "ablation", "--data", data, "--seeds", "2,3,2"], "--seeds"),
        (vec!["experiment", "cold-start", "--data", data, "--labels", "10,10"], "--labels"),
        (vec!["bench", "allocate", "--solver", "greedy,greedy"], "--solver"),
        (vec!["bench", "score", "--precision", "fp32,fp32"], "--precision"),
    ] {
        let out = audience(&args, &[]);
        assert_refused(&out, &format!("{flag} names"));
    }
    // The data's own seed among the world seeds: that world would run twice.
    let seed = small_config(7).seed.to_string();
    let out = audience(&["experiment", "ab", "--data", data, "--world-seeds", &seed], &[]);
    assert_refused(&out, &format!("world seed {seed} is the seed of the world at"));
    // It names the user's --data, not a scratch world (`world-<seed>`) or a flag the command lacks.
    let message = stderr(&out);
    assert!(message.contains(&world.display().to_string()), "{message}");
    assert!(!message.contains("/world-") && !message.contains("--overwrite"), "{message}");
}
