//! The `audience` binary: exit codes and output streams as docs/operations.md documents.

use std::process::{Command, Output};

use crate::helpers::*;

fn audience(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_audience")).args(args).env("RUST_LOG", "warn").output().unwrap()
}

#[tokio::test]
async fn validate_exits_0_on_a_good_world_and_2_listing_every_problem_on_a_bad_one() {
    let (_dir, root) = small_world().await;
    let root_arg = root.to_str().unwrap();
    let ok = audience(&["validate", "--data", root_arg]);
    assert_eq!(ok.status.code(), Some(0), "{}", String::from_utf8_lossy(&ok.stderr));
    let stdout = String::from_utf8(ok.stdout).unwrap();
    assert!(stdout.contains("users\t600 rows\tok"), "{stdout}");

    std::fs::write(root.join("users").join("part-00000.parquet"), b"not parquet").unwrap();
    std::fs::remove_dir_all(root.join("campaigns")).unwrap();
    let bad = audience(&["validate", "--data", root_arg]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(bad.stdout.is_empty(), "stdout must stay clean on failure");
    let stderr = String::from_utf8(bad.stderr).unwrap();
    assert!(stderr.contains("invalid input: 2 problem(s)"), "{stderr}");
    assert!(stderr.contains("users: file is not a readable Parquet file"), "{stderr}");
    assert!(stderr.contains("campaigns: no data files under"), "{stderr}");
}

#[test]
fn generate_into_an_existing_world_is_a_conflict_exit_4() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("w");
    let args = [
        "generate",
        "--out",
        out.to_str().unwrap(),
        "--users",
        "50",
        "--podcasts",
        "20",
        "--campaigns",
        "5",
        "--impressions",
        "100",
        "--days",
        "1",
    ];
    let first = audience(&args);
    assert_eq!(first.status.code(), Some(0), "{}", String::from_utf8_lossy(&first.stderr));
    let second = audience(&args);
    assert_eq!(second.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&second.stderr).contains("already holds a world"));
}

#[test]
fn bad_storage_url_is_invalid_input_exit_2() {
    let out = audience(&["validate", "--data", "ftp://example/world"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unsupported scheme \"ftp\""));
}

#[test]
fn info_runs_libtorch_from_the_binary_without_ld_library_path() {
    let out = Command::new(env!("CARGO_BIN_EXE_audience")).arg("info").env_remove("LD_LIBRARY_PATH").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("libtorch: cpu ok (2x2 matmul sum 8)"), "{stdout}");
}
