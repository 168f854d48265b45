//! The fault matrix (issue 20, part B) on one machine: crashes at every stage
//! boundary, concurrent runs of one date, a full disk, and storage faults
//! injected between the job and the S3 server. Every test's name contains
//! `fault` (`cargo test fault` runs them with the cluster's in `cluster`); the
//! docs/operations.md's fault table lists them with what they observed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use audience::failpoint::{ENV as FAILPOINT, JOB_POINTS};
use audience::job::commit::missing_files;
use audience::job::layout::DateDir;
use audience::job::manifest::RunManifest;
use audience::storage::Location;

use crate::cloud::{Backend, Bucket};
use crate::fault_proxy::{Fault, FaultProxy, Rule};
use crate::helpers::*;

/// What a fault test saw, for the fault table of docs/operations.md (`-- --nocapture`).
pub fn observe(scenario: &str, what: String) {
    eprintln!("fault-obs {scenario}: {what}");
}

/// The last line of a process's log: its error, for an observation.
pub fn last_line(out: &Output) -> String {
    stderr(out).lines().last().unwrap_or("").chars().take(160).collect()
}

/// A config writing to the output root `name` (in `[output]`, `extra`).
fn config_to(setup: &Setup, name: &str, extra: &str) -> (PathBuf, PathBuf) {
    let output = setup.dir.path().join(name);
    (setup.config_at(&format!("{name}.toml"), &output, extra), output)
}

/// The committed run of the test date under `output`, checked whole: its
/// manifest parses and every file it names is there. Its run id.
async fn committed_whole(output: &Location) -> Option<String> {
    let date_dir = DateDir::new(output, learnable_config().run_date);
    let marker = date_dir.committed().await.unwrap()?;
    let run_dir = date_dir.run(&marker.run_id);
    let manifest: RunManifest = serde_json::from_slice(&run_dir.join("manifest.json").read().await.unwrap()).unwrap();
    assert_eq!(
        missing_files(&run_dir, &manifest).await.unwrap(),
        Vec::<String>::new(),
        "the committed run is not whole"
    );
    assert!(manifest.campaigns.iter().any(|c| c.audience > 0), "the committed run serves no campaign");
    Some(marker.run_id)
}

/// Every file under `dir` whose name marks a staging or temporary file.
fn staging_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return found };
    for entry in entries {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with('.') || name.contains('#') {
            found.push(path.clone());
        }
        if path.is_dir() {
            found.extend(staging_files(&path));
        }
    }
    found
}

fn run_dirs(output: &Path) -> Vec<String> {
    let date_dir = output.join(format!("dt={}", learnable_config().run_date));
    let Ok(entries) = std::fs::read_dir(date_dir) else { return Vec::new() };
    let mut runs: Vec<String> =
        entries.map(|e| e.unwrap().file_name().into_string().unwrap()).filter(|n| n.starts_with("run=")).collect();
    runs.sort();
    runs
}

/// SIGKILL at each of the job's failpoints, then a rerun: never a partial
/// commit, and the rerun commits a whole run and leaves no other run
/// directory and no staging file behind.
#[tokio::test]
async fn fault_a_crash_at_every_stage_boundary_never_commits_partially() {
    let setup = setup().await;
    for point in JOB_POINTS {
        // In `[output]`: a crashed run counts as abandoned at once.
        let (config, output) = config_to(&setup, &format!("out-{point}"), "abandoned_after_minutes = 0\n");
        let kill = format!("kill@{point}");
        let crashed = run_job(&config, &[], &[(FAILPOINT, &kill)]);
        assert_eq!(crashed.status.code(), None, "{point}: killed by a signal\n{}", stderr(&crashed));
        let committed = committed_whole(&location(&output)).await;
        assert_eq!(committed.is_some(), point == "after-commit", "{point}: committed only once _SUCCESS is written");

        let runs_after_crash = run_dirs(&output).len();
        let rerun = run_job(&config, &[], &[]);
        assert_eq!(rerun.status.code(), Some(0), "{point}: {}", stderr(&rerun));
        let run_id = committed_whole(&location(&output)).await.expect("the rerun commits");
        assert_eq!(run_dirs(&output), vec![format!("run={run_id}")], "{point}: the crashed run is removed");
        assert_eq!(staging_files(&output), Vec::<PathBuf>::new(), "{point}: staging files left");
        observe(
            "crash",
            format!(
                "kill@{point}: {}, committed {}, {runs_after_crash} run dir(s) left; rerun exit 0, 1 run dir, no staging file",
                crashed.status,
                committed.is_some()
            ),
        );
    }
}

/// Four runs of one date started together, one of them `--overwrite`:
/// exactly one whole committed run, and every process names it or succeeds.
#[tokio::test]
async fn fault_four_runs_of_one_date_one_overwriting_commit_one_whole_run() {
    let setup = setup().await;
    let (config, output) = config_to(&setup, "out", "");
    let date = learnable_config().run_date.to_string();
    let spawn = |overwrite: bool| {
        let mut args = vec!["run", "--config", config.to_str().unwrap(), "--date", &date];
        if overwrite {
            args.push("--overwrite");
        }
        Command::new(env!("CARGO_BIN_EXE_audience"))
            .args(&args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let children = vec![spawn(false), spawn(true), spawn(false), spawn(false)];
    let outputs: Vec<Output> = children.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    for (i, out) in outputs.iter().enumerate() {
        assert_eq!(out.status.code(), Some(0), "run {i}: {}", stderr(out));
    }
    let run_id = committed_whole(&location(&output)).await.expect("one run committed");
    let final_url = String::from_utf8(outputs[1].stdout.clone()).unwrap();
    assert!(run_dirs(&output).contains(&format!("run={run_id}")));
    // A run that committed before the overwrite replaced it may name a
    // superseded manifest; every other names the committed one.
    let naming = outputs.iter().filter(|o| String::from_utf8_lossy(&o.stdout).contains(&run_id)).count();
    assert!(naming >= 1, "no process names the committed run {run_id}: {final_url}");
    observe(
        "concurrency",
        format!("4 exits 0, {naming} name the committed run, {} run dir(s) left", run_dirs(&output).len()),
    );
}

/// The output root on a small tmpfs that is full while the audiences are
/// written: exit 3, nothing committed; once space is freed the rerun commits.
#[tokio::test]
async fn fault_a_full_disk_while_writing_exits_3_and_the_rerun_commits() {
    let is_root = unsafe { libc::geteuid() } == 0;
    if !is_root {
        assert!(
            std::env::var("AUDIENCE_REQUIRE_TEST_SERVERS").is_err(),
            "the full-disk test needs root (to mount a tmpfs)"
        );
        eprintln!("skipped: the full-disk test needs root to mount a tmpfs");
        return;
    }
    let setup = setup().await;
    let mount = setup.dir.path().join("small");
    std::fs::create_dir_all(&mount).unwrap();
    let mounted = Command::new("mount").args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"]).arg(&mount).status().unwrap();
    assert!(mounted.success(), "mount -t tmpfs failed");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mount.clone());
    // All but 8 KiB taken: the first audience files fit, the rest do not.
    let filler = mount.join("filler");
    let free = || {
        let out = Command::new("df").args(["--output=avail", "-B1"]).arg(&mount).output().unwrap();
        String::from_utf8(out.stdout).unwrap().lines().nth(1).unwrap().trim().parse::<u64>().unwrap()
    };
    std::fs::write(&filler, vec![0u8; (free() - 8 * 1024) as usize]).unwrap();

    let output = mount.join("out");
    let config = setup.config_at("small.toml", &output, "abandoned_after_minutes = 0\n");
    let full = run_job(&config, &[], &[]);
    assert_eq!(full.status.code(), Some(3), "{}", stderr(&full));
    assert!(stderr(&full).to_lowercase().contains("no space"), "{}", stderr(&full));
    assert_eq!(committed_whole(&location(&output)).await, None);

    observe("disk full", format!("exit 3: {}", last_line(&full)));
    std::fs::remove_file(&filler).unwrap();
    let rerun = run_job(&config, &[], &[]);
    assert_eq!(rerun.status.code(), Some(0), "{}", stderr(&rerun));
    let run_id = committed_whole(&location(&output)).await.expect("the rerun commits");
    assert_eq!(run_dirs(&output), vec![format!("run={run_id}")]);
    assert_eq!(staging_files(&output), Vec::<PathBuf>::new());
}

/// The world and model on local disk, the output in a fresh S3 bucket (on
/// the moto server `scripts/test.sh` starts) seen through a fault proxy with
/// `rules`. `None` (skipped) without the server, a failure where the servers
/// are required.
pub(crate) async fn through_proxy(
    setup: &Setup,
    name: &str,
    rules: Vec<Rule>,
) -> Option<(PathBuf, Location, Vec<(&'static str, String)>, FaultProxy)> {
    let bucket = Bucket::create(Backend::S3, name)?;
    let endpoint = std::env::var("AUDIENCE_TEST_S3_ENDPOINT").unwrap();
    let proxy = FaultProxy::start(&endpoint, rules);
    let path = setup.dir.path().join(format!("{name}.toml"));
    let text = format!(
        "[inputs]\nroot = \"{}\"\n[model]\nuri = \"{}\"\n[output]\nroot = \"{}\"\n[storage.s3]\nendpoint = \"{}\"\nregion = \"us-east-1\"\nallow_http = \"true\"\nvirtual_hosted_style_request = \"false\"\n",
        setup.world.display(),
        setup.model.display(),
        bucket.url("out"),
        proxy.endpoint
    );
    std::fs::write(&path, text).unwrap();
    Some((path, bucket.location("out"), bucket.env.clone(), proxy))
}

/// A job config reading the world and model in `bucket` through `endpoint`,
/// writing to the local folder `output`.
fn reading_config(setup: &Setup, bucket: &Bucket, endpoint: &str, output: &Path) -> PathBuf {
    let path = setup.dir.path().join(format!("reads-{}.toml", output.file_name().unwrap().to_string_lossy()));
    let text = format!(
        "[inputs]\nroot = \"{}\"\n[model]\nuri = \"{}\"\n[output]\nroot = \"{}\"\n[storage.s3]\nendpoint = \"{endpoint}\"\nregion = \"us-east-1\"\nallow_http = \"true\"\nvirtual_hosted_style_request = \"false\"\n",
        bucket.url("world"),
        bucket.url("model"),
        output.display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn secret_of(env: &[(&'static str, String)]) -> String {
    env.iter().find(|(k, _)| *k == "AWS_SECRET_ACCESS_KEY").unwrap().1.clone()
}

fn run_with_env(config: &Path, env: &[(&'static str, String)]) -> Output {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    run_job(config, &[], &env)
}

/// 5xx answers, a reset connection, a torn upload and slow answers during the
/// job's listing, data writes and commit: each retried, and one whole run
/// committed once.
#[tokio::test]
async fn fault_storage_errors_during_writes_and_the_commit_are_retried() {
    let setup = setup().await;
    let rules = vec![
        Rule::new("GET", "list-type=2", Fault::Status(503), 2),
        Rule::new("PUT", "/audiences/", Fault::Status(500), 2),
        Rule::new("PUT", "/audiences/", Fault::Reset, 1),
        Rule::new("PUT", "/audiences/", Fault::TornUpload, 1),
        Rule::new("PUT", "manifest.json", Fault::Slow(Duration::from_millis(1500)), 1),
        Rule::new("PUT", "_SUCCESS", Fault::Status(503), 1),
    ];
    let Some((config, output, env, proxy)) = through_proxy(&setup, "faults-retried", rules).await else { return };
    let started = std::time::Instant::now();
    let out = run_with_env(&config, &env);
    assert_eq!(out.status.code(), Some(0), "{}\n{:#?}", stderr(&out), proxy.seen());
    assert!(proxy.unfired().is_empty(), "faults not injected: {:?}", proxy.unfired());
    committed_whole(&output).await.expect("committed");
    let success_puts =
        proxy.seen().iter().filter(|(m, t, f)| m == "PUT" && t.contains("_SUCCESS") && f.is_none()).count();
    assert_eq!(success_puts, 1, "the commit reached the server once");
    observe(
        "storage retried",
        format!(
            "{} of {} requests faulted, exit 0 in {:.1} s",
            proxy.injected(),
            proxy.seen().len(),
            started.elapsed().as_secs_f64()
        ),
    );
    assert!(!stderr(&out).contains(&secret_of(&env)), "the secret key in the log");
}

/// The answer to the commit's create-only put is lost (the put was carried
/// out): the run reads the marker back, finds its own, and is committed,
/// not "lost to another run" (which would delete its own committed data).
#[tokio::test]
async fn fault_a_lost_commit_answer_still_commits_the_run_once() {
    let setup = setup().await;
    let rules = vec![Rule::new("PUT", "_SUCCESS", Fault::LoseResponse, 1)];
    let Some((config, output, env, proxy)) = through_proxy(&setup, "faults-lost-answer", rules).await else { return };
    let out = run_with_env(&config, &env);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(proxy.unfired().is_empty());
    let run_id = committed_whole(&output).await.expect("committed");
    assert!(String::from_utf8_lossy(&out.stdout).contains(&run_id), "the run names its own committed manifest");
    observe("lost commit answer", format!("exit 0, committed run is this run's ({run_id})"));
}

/// The store answers every write with 503: after its retries the job exits 3
/// (transient, so orchestrators retry), commits nothing, and no credential
/// appears in its messages.
#[tokio::test]
async fn fault_a_storage_outage_exits_3_with_nothing_committed() {
    let setup = setup().await;
    let rules = vec![Rule::new("PUT", "/", Fault::Status(503), usize::MAX)];
    let Some((config, output, env, proxy)) = through_proxy(&setup, "faults-outage", rules).await else { return };
    let started = std::time::Instant::now();
    let out = run_with_env(&config, &env);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    observe(
        "outage",
        format!(
            "exit 3 in {:.1} s after {} faulted requests: {}",
            started.elapsed().as_secs_f64(),
            proxy.injected(),
            last_line(&out)
        ),
    );
    assert!(proxy.injected() > 1, "the puts were answered 503 and retried: {:?}", proxy.seen());
    assert!(stderr(&out).contains("503"), "{}", stderr(&out));
    assert_eq!(committed_whole(&output).await, None);
    assert!(!stderr(&out).contains(&secret_of(&env)), "the secret key in the log");
}

/// 5xx answers, a reset and a slow answer while the job reads its inputs and
/// its model from S3: retried, and the audiences are those of a run without
/// faults.
#[tokio::test]
async fn fault_storage_errors_while_reading_the_inputs_and_model_are_retried() {
    let setup = setup().await;
    let Some(bucket) = Bucket::create(Backend::S3, "faults-reads") else { return };
    crate::cloud::seed(&bucket).await;
    let endpoint = std::env::var("AUDIENCE_TEST_S3_ENDPOINT").unwrap();
    let rules = vec![
        Rule::new("GET", "/world/users/", Fault::Status(503), 2),
        Rule::new("GET", "/world/campaigns/", Fault::Reset, 1),
        Rule::new("GET", "model.safetensors", Fault::Status(500), 1),
        Rule::new("GET", "list-type=2", Fault::Slow(Duration::from_millis(1000)), 1),
    ];
    let proxy = FaultProxy::start(&endpoint, rules);
    let clean_out = setup.dir.path().join("clean");
    let faulty_out = setup.dir.path().join("faulty");
    let clean = run_with_env(&reading_config(&setup, &bucket, &endpoint, &clean_out), &bucket.env);
    assert_eq!(clean.status.code(), Some(0), "{}", stderr(&clean));
    let faulty = run_with_env(&reading_config(&setup, &bucket, &proxy.endpoint, &faulty_out), &bucket.env);
    assert_eq!(faulty.status.code(), Some(0), "{}\n{:#?}", stderr(&faulty), proxy.seen());
    assert!(proxy.unfired().is_empty(), "faults not injected: {:?}", proxy.unfired());
    let rows = |out: &Path| {
        let out = location(out);
        async move {
            let (_, mut rows) = committed_audiences(&out, learnable_config().run_date).await;
            rows.sort_by(|a, b| a.partial_cmp(b).unwrap());
            rows
        }
    };
    assert_eq!(rows(&faulty_out).await, rows(&clean_out).await, "the faults changed the audiences");
    assert!(!stderr(&faulty).contains(&secret_of(&bucket.env)), "the secret key in the log");
    observe(
        "input reads",
        format!(
            "{} of {} requests faulted, exit 0, audiences equal to a run without faults",
            proxy.injected(),
            proxy.seen().len()
        ),
    );
}
