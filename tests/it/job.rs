//! `audience run` end to end on local storage: what it commits (read back from
//! Parquet, not trusted from the solver), reruns, conflicts, crashes, races.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Command, Output};

use arrow::array::AsArray;
use audience::contract::Table;
use audience::world::World;

use crate::helpers::*;

fn run(config: &Path, extra: &[&str]) -> Output {
    run_job(config, extra, &[])
}

#[tokio::test]
async fn a_run_commits_audiences_that_respect_every_rule_and_reruns_are_safe() {
    let setup = setup().await;
    let config = setup.config("job.toml", "");
    let first = run(&config, &[]);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let manifest_url = String::from_utf8(first.stdout.clone()).unwrap().trim().to_string();
    assert!(manifest_url.ends_with("manifest.json"), "stdout is the manifest URL only: {manifest_url}");

    // Read back what was committed and check it against the world's own rules.
    let (run_id, rows) = committed_audiences(&location(&setup.output()), learnable_config().run_date).await;
    assert!(!rows.is_empty());
    let world = World::new(learnable_config());
    let date = learnable_config().run_date;
    let campaigns: HashMap<&str, &audience::world::Campaign> =
        world.campaigns.iter().map(|c| (c.campaign_id.as_str(), c)).collect();
    let mut spend: HashMap<&str, f64> = HashMap::new();
    let mut size: HashMap<&str, u64> = HashMap::new();
    let mut per_user: HashMap<(i64, bool), u32> = HashMap::new();
    let mut seen = HashSet::new();
    for (campaign_id, user_id, cost) in &rows {
        let campaign = campaigns[campaign_id.as_str()];
        assert!(seen.insert((campaign_id.clone(), *user_id)), "duplicate row");
        assert_eq!(campaign.status, "active");
        assert!(campaign.start_date <= date && date <= campaign.end_date);
        let index = (*user_id - 1) as u64;
        let user = world.user(index);
        assert!(campaign.targets(&user), "{user_id} is outside {campaign_id}'s targeting or channel rules");
        assert!(
            !world.follows(index, &user).contains(&campaign.podcast),
            "{user_id} already follows {campaign_id}'s podcast"
        );
        *spend.entry(campaign.campaign_id.as_str()).or_default() += cost;
        *size.entry(campaign.campaign_id.as_str()).or_default() += 1;
        *per_user.entry((*user_id, campaign.channel == audience::contract::Channel::Ad)).or_default() += 1;
    }
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(setup.date_dir().join(format!("run={run_id}")).join("manifest.json")).unwrap(),
    )
    .unwrap();
    for report in manifest["campaigns"].as_array().unwrap() {
        let id = report["campaign_id"].as_str().unwrap();
        let budget = report["budget"].as_f64().unwrap();
        let written = spend.get(id).copied().unwrap_or(0.0);
        assert!(written <= budget + 1e-6, "{id} spends {written} of {budget}");
        let audience = size.get(id).copied().unwrap_or(0);
        assert_eq!(audience, report["audience"].as_u64().unwrap(), "{id}: manifest and data agree");
        let floor = campaigns[id].min_audience.max(100) as u64;
        assert!(audience == 0 || audience >= floor, "{id}: audience {audience} below the floor {floor}");
    }
    assert!(per_user.values().all(|&n| n <= 2), "a user is in more than 2 campaigns of one channel");
    assert!(manifest["timings"]["score"].as_f64().is_some(), "{:#}", manifest["timings"]);

    // The same run again: nothing to do.
    let again = run(&config, &[]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert_eq!(String::from_utf8(again.stdout).unwrap().trim(), manifest_url);
    assert_eq!(setup.run_dirs(), vec![format!("run={run_id}")]);

    // A different config: a conflict unless --overwrite.
    let changed = setup.config("changed.toml", "[allocation]\nprivacy_floor = 150\n");
    let conflict = run(&changed, &[]);
    assert_eq!(conflict.status.code(), Some(4), "{}", stderr(&conflict));
    assert!(stderr(&conflict).contains("--overwrite"), "{}", stderr(&conflict));
    let replaced = run(&changed, &["--overwrite"]);
    assert_eq!(replaced.status.code(), Some(0), "{}", stderr(&replaced));
    let (new_run, _) = committed_audiences(&location(&setup.output()), learnable_config().run_date).await;
    assert_ne!(new_run, run_id);
    assert_eq!(
        setup.run_dirs(),
        vec![format!("run={new_run}")],
        "the superseded run is removed: {}",
        stderr(&replaced)
    );
}

#[tokio::test]
async fn a_crash_before_the_commit_leaves_no_success_and_the_next_run_recovers() {
    let setup = setup().await;
    // In `[output]`: a crashed run counts as abandoned at once.
    let config = setup.config("job.toml", "abandoned_after_minutes = 0\n");
    let date = learnable_config().run_date.to_string();
    let args = ["run", "--config", config.to_str().unwrap(), "--date", &date];
    let crashed = audience(&args, &[("AUDIENCE_FAILPOINT", "before-commit")]);
    assert_eq!(crashed.status.code(), Some(3), "transient: {}", stderr(&crashed));
    assert!(!setup.date_dir().join("_SUCCESS").exists());
    assert_eq!(setup.run_dirs().len(), 1, "the crashed run's data is there, uncommitted");
    let next = run(&config, &[]);
    assert_eq!(next.status.code(), Some(0), "{}", stderr(&next));
    let (run_id, _) = committed_audiences(&location(&setup.output()), learnable_config().run_date).await;
    assert_eq!(setup.run_dirs(), vec![format!("run={run_id}")], "the crashed run is cleaned up");
}

#[tokio::test]
async fn two_runs_of_one_date_started_together_commit_exactly_once() {
    let setup = setup().await;
    let config = setup.config("job.toml", "");
    let date = learnable_config().run_date.to_string();
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_audience"))
            .args(["run", "--config", config.to_str().unwrap(), "--date", &date])
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert_eq!(a.status.code(), Some(0), "{}", stderr(&a));
    assert_eq!(b.status.code(), Some(0), "{}", stderr(&b));
    assert_eq!(a.stdout, b.stdout, "both name the one committed manifest");
    let (run_id, _) = committed_audiences(&location(&setup.output()), learnable_config().run_date).await;
    assert_eq!(setup.run_dirs(), vec![format!("run={run_id}")]);
}

#[tokio::test]
async fn a_campaign_id_that_could_escape_the_output_is_rejected_before_writing() {
    let setup = setup().await;
    edit_column(&setup.world, Table::Campaigns, "campaign_id", |ids| {
        let mut ids: Vec<String> = ids.as_string::<i32>().iter().map(|v| v.unwrap().to_string()).collect();
        ids[0] = "../x".into();
        std::sync::Arc::new(arrow::array::StringArray::from(ids))
    });
    let config = setup.config("job.toml", "");
    let rejected = run(&config, &[]);
    assert_eq!(rejected.status.code(), Some(2), "{}", stderr(&rejected));
    assert!(stderr(&rejected).contains("campaign_id"), "{}", stderr(&rejected));
    assert!(!setup.output().exists(), "nothing may be written");
}

#[tokio::test]
async fn config_errors_name_the_file_and_the_problem_with_exit_2() {
    let setup = setup().await;
    let typo = setup.config("typo.toml", "[scoring]\npool_slak = 3\n");
    let out = run(&typo, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("typo.toml") && stderr(&out).contains("pool_slak"), "{}", stderr(&out));
    let path = setup.dir.path().join("env.toml");
    std::fs::write(&path, "[inputs]\nroot = \"${AUDIENCE_TEST_UNSET_VAR:?set the world root}\"\n[model]\nuri = \"m\"\n[output]\nroot = \"o\"\n").unwrap();
    let out = run(&path, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("set the world root"), "{}", stderr(&out));
    let ok = audience(&["validate", "--config", setup.config("job.toml", "").to_str().unwrap()], &[]);
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    let dry = run(&setup.config("job.toml", ""), &["--dry-run"]);
    assert_eq!(dry.status.code(), Some(0), "{}", stderr(&dry));
    assert!(String::from_utf8_lossy(&dry.stdout).contains("eligible pairs"));
    assert!(!setup.output().exists(), "a dry run writes nothing");
}

/// Two consecutive dates in one output root: the second starts its prices
/// from the first's (fewer iterations than the same date solved cold, the
/// same gap) and reports its churn against it.
#[tokio::test]
async fn the_next_date_warm_starts_from_the_last_run_and_reports_churn() {
    let setup = setup().await;
    let config = setup.config("job.toml", "");
    let date = learnable_config().run_date;
    let day_before = (date - chrono::Duration::days(1)).to_string();
    let first = audience(&["run", "--config", config.to_str().unwrap(), "--date", &day_before], &[]);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let warm = manifest_of(&run(&config, &[]));

    let cold_config = setup.config("cold.toml", "");
    let cold_root = setup.dir.path().join("cold");
    let text = std::fs::read_to_string(&cold_config)
        .unwrap()
        .replace(setup.output().to_str().unwrap(), cold_root.to_str().unwrap());
    std::fs::write(&cold_config, text).unwrap();
    let cold = manifest_of(&run(&cold_config, &[]));

    assert_eq!(warm["previous_run"]["date"].as_str(), Some(day_before.as_str()), "{:#}", warm["previous_run"]);
    assert!(cold["previous_run"].is_null());
    assert!(warm["warm_started_campaigns"].as_u64().unwrap() > 0);
    assert_eq!(cold["warm_started_campaigns"].as_u64(), Some(0));
    let (warm_iterations, cold_iterations) =
        (warm["solver_iterations"].as_u64().unwrap(), cold["solver_iterations"].as_u64().unwrap());
    assert!(
        warm_iterations < cold_iterations,
        "warm {warm_iterations} vs cold {cold_iterations} iterations, model {}, gaps {} {}, values {} {}",
        warm["model_version"],
        warm["gap"],
        cold["gap"],
        warm["solver_value"],
        cold["solver_value"]
    );
    let (warm_gap, cold_gap) = (warm["gap"].as_f64().unwrap(), cold["gap"].as_f64().unwrap());
    assert!(warm_gap <= cold_gap + 0.002, "warm gap {warm_gap} vs cold {cold_gap}");

    let churn = warm["churn"].as_f64().expect("churn against the previous run");
    assert!((0.0..=1.0).contains(&churn), "{churn}");
    assert!(cold["churn"].is_null());
    let served: Vec<&serde_json::Value> =
        warm["campaigns"].as_array().unwrap().iter().filter(|c| c["audience"].as_u64() > Some(0)).collect();
    assert!(!served.is_empty());
    for campaign in &served {
        let churn = campaign["churn"].as_f64().unwrap_or_else(|| panic!("{}: no churn", campaign["campaign_id"]));
        assert!((0.0..=1.0).contains(&churn), "{churn}");
    }
    for manifest in [&warm, &cold] {
        assert_eq!(manifest["violations"], serde_json::json!({"budgets": 0, "caps": 0, "floors": 0}));
        let price_solution = &manifest["price_solution"];
        assert!(price_solution["overspend"].as_f64().unwrap() >= 0.0, "{price_solution:#}");
        assert!(price_solution["underspend"].as_f64().unwrap() >= 0.0, "{price_solution:#}");
    }
}
