//! The paper's regime: the regime grid on a small world (every point run and
//! saved, a rerun resumes without training again, the page renders in a
//! browser), and the A/B's refusal of a world whose generator version this
//! build does not know.

use audience::ab::grid::{GridOptions, GridResult, run_grid};
use audience::model::train::TrainOptions;
use audience::world::WorldConfig;

use crate::helpers::*;
use crate::model::quick_options;
use crate::report::{assert_sections, render};

// The libtorch guard is held across the grid's awaits on purpose (see `libtorch_alone`).
#[allow(clippy::await_holding_lock)]
#[tokio::test]
async fn the_regime_grid_runs_every_point_resumes_and_draws_its_page() {
    let dir = tempfile::tempdir().unwrap();
    let out = location(&dir.path().join("grid"));
    let options = GridOptions {
        world: WorldConfig { users: 4_000, ..learnable_config() },
        world_seeds: vec![12],
        seeds: vec![1],
        training: TrainOptions { max_epochs: 1, steps_per_epoch: Some(10), ..quick_options(1) },
    };
    let _alone = libtorch_alone();
    let result = run_grid(&out, &options).await.unwrap();
    let names: Vec<&str> = result.points.iter().map(|p| p.point.name.as_str()).collect();
    assert_eq!(names.len(), 6, "{names:?}");
    assert!(names[0].contains("10000 promotion labels") && names[2].contains("all promotion labels"), "{names:?}");
    assert!(result.ablation.as_ref().is_some_and(|a| a.aps.len() == 5));
    // The curve's points ran on both world seeds; the others on one.
    let runs = |i: usize| result.points[i].ab["runs"].as_array().unwrap().len();
    assert_eq!((runs(0), runs(3)), (2, 1));
    // Every arm trained the same optimiser steps, and at 10,000 labels A and B
    // saw the same promotion rows (the world has fewer: all of them).
    for point in &result.points {
        for run in point.ab["runs"].as_array().unwrap() {
            let (a, b) = (&run["training"]["A"], &run["training"]["B"]);
            assert_eq!(a["steps_per_epoch"], 10);
            assert_eq!(a["steps_per_epoch"], b["steps_per_epoch"]);
            assert_eq!(a["train_promotions"], b["train_promotions"], "{}", point.point.name);
            assert_eq!(a["train_ads"], 0);
        }
    }
    // A rerun finds every point in grid.json and trains nothing again.
    let saved: GridResult = serde_json::from_slice(&out.join("grid.json").read().await.unwrap()).unwrap();
    let again = run_grid(&out, &options).await.unwrap();
    assert_eq!(again.points.len(), saved.points.len());
    assert_eq!(
        again.points.iter().map(|p| p.seconds).collect::<Vec<_>>(),
        saved.points.iter().map(|p| p.seconds).collect::<Vec<_>>()
    );
    // Other options are refused rather than mixed into the same grid.
    let other = GridOptions { seeds: vec![2], ..options.clone() };
    let err = run_grid(&out, &other).await.unwrap_err().to_string();
    assert!(err.contains("other options"), "{err}");

    audience::ab::grid_page::write(&out, &again).await.unwrap();
    let page = dir.path().join("grid/grid.html");
    let rendered = render(&page, dir.path());
    assert_sections(&rendered, &["summary", "labels", "tiers", "points", "ablation"], 3);
}

#[tokio::test]
async fn a_world_of_an_unknown_generator_version_is_refused_and_version_2_is_read_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("world");
    let data = location(&root);
    let config = WorldConfig { users: 500, impressions: 2_000, days: 4, ..learnable_config() }.version_2();
    audience::world::write::generate(&data, config.clone(), false).await.unwrap();
    assert_eq!(audience::ab::world_config(&data).await.unwrap(), config);

    let path = root.join("world.json");
    let mut manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(manifest["generator_version"], 2);
    manifest["generator_version"] = 99.into();
    std::fs::write(&path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let err = audience::ab::world_config(&data).await.unwrap_err();
    assert_eq!(err.exit_code(), audience::ExitCode::Invalid);
    assert!(err.to_string().contains("generator version 99"), "{err}");
}
