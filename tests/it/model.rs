//! The model: training on a generated world, the artifact, evaluation, and the
//! checks loading does.

use std::path::Path;

use audience::contract::Table;
use audience::model::artifact::{self, MANIFEST_FILE, WEIGHTS_FILE};
use audience::model::train::TrainOptions;
use audience::model::workflow::{evaluate_saved, load_split};

use crate::helpers::*;

pub fn quick_options(seed: u64) -> TrainOptions {
    TrainOptions { seed, max_epochs: 2, batch_size: 512, validation_days: 2, test_days: 2, ..TrainOptions::default() }
}

async fn train_into(root: &Path, out: &Path, options: &TrainOptions) -> artifact::Manifest {
    train(&location(root), &location(out), options).await
}

#[tokio::test]
async fn training_is_deterministic_and_the_model_learns_the_signal() {
    let (dir, root) = learnable_world().await;
    let options = quick_options(5);
    let first = train_into(&root, &dir.path().join("m1"), &options).await;
    let second = train_into(&root, &dir.path().join("m2"), &options).await;
    assert_eq!(first.model_version, second.model_version, "same data and seed, same weights");
    assert_eq!(
        std::fs::read(dir.path().join("m1").join(WEIGHTS_FILE)).unwrap(),
        std::fs::read(dir.path().join("m2").join(WEIGHTS_FILE)).unwrap()
    );
    let other = train_into(&root, &dir.path().join("m3"), &quick_options(6)).await;
    assert_ne!(first.model_version, other.model_version, "the seed matters");

    let (_, evaluation, _) = evaluate_saved(&location(&root), &location(&dir.path().join("m1"))).await.unwrap();
    let promo = evaluation
        .metrics
        .iter()
        .find(|m| m.task == "promo_stream" && m.channel == "promotion" && m.slice == "all")
        .unwrap();
    assert!(promo.examples > 1000, "{promo:?}");
    let auc = promo.roc_auc.unwrap();
    let base_rate = promo.positives as f64 / promo.examples as f64;
    assert!(auc > 0.6, "the model should rank streams better than chance: {promo:?}");
    assert!(promo.ap.unwrap() > 1.2 * base_rate, "AP above the base rate: {promo:?}");
}

#[tokio::test]
async fn the_artifact_records_what_it_was_trained_on_and_evaluation_covers_every_slice() {
    let (dir, root) = learnable_world().await;
    let out = dir.path().join("model");
    let manifest = train_into(&root, &out, &quick_options(1)).await;
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join(MANIFEST_FILE)).unwrap()).unwrap();
    assert_eq!(json["artifact_version"], 1);
    assert_eq!(json["tasks"].as_array().unwrap().len(), 5);
    assert_eq!(json["promotion_tasks"], serde_json::json!(["promo_stream"]));
    assert_eq!(json["features"]["genres"].as_array().unwrap().len(), 16);
    assert_eq!(json["training"]["data_fingerprint"].as_str().unwrap().len(), 64);
    assert!(json["features"]["user"]["dense"][0]["std"].as_f64().unwrap() != 1.0, "normalisation fitted");
    assert_eq!(manifest.training.split_rows.iter().sum::<usize>(), 40_000);
    assert!(manifest.training.report.examples_per_second > 0.0);

    let (_, evaluation, _) = evaluate_saved(&location(&root), &location(&out)).await.unwrap();
    let tasks = evaluation.metrics.iter().filter(|m| m.slice == "all").count();
    assert_eq!(tasks, 8, "promo_stream on promotions, ad_stream on ads, 3 ancillary tasks on both channels");
    for channel in ["promotion", "ad"] {
        let tiers = evaluation.metrics.iter().filter(|m| m.channel == channel && m.slice.starts_with("tier ")).count();
        assert_eq!(tiers, 8, "{channel}");
        assert!(evaluation.metrics.iter().any(|m| m.channel == channel && m.slice.starts_with("less-streamed")));
    }
    assert!(evaluation.table().contains("less-streamed (< 5000)"));
}

#[tokio::test]
async fn loading_refuses_an_artifact_this_build_cannot_use() {
    let (dir, root) = small_world().await;
    let out = dir.path().join("model");
    let options = TrainOptions { max_epochs: 1, validation_days: 1, test_days: 1, ..TrainOptions::default() };
    train_into(&root, &out, &options).await;
    let original = std::fs::read_to_string(out.join(MANIFEST_FILE)).unwrap();
    let edit = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut json: serde_json::Value = serde_json::from_str(&original).unwrap();
        f(&mut json);
        std::fs::write(out.join(MANIFEST_FILE), serde_json::to_vec(&json).unwrap()).unwrap();
    };
    let load_error = || async { artifact::load(&location(&out)).await.err().expect("must fail").to_string() };

    edit(&|j| j["artifact_version"] = 99.into());
    assert!(load_error().await.contains("artifact version 99"));
    edit(&|j| {
        j["features"]["genres"].as_array_mut().unwrap().pop();
    });
    assert!(load_error().await.contains("15 genres"));
    edit(&|j| {
        j["features"]["user"]["dense"].as_array_mut().unwrap().remove(0);
    });
    assert!(load_error().await.contains("user features"));
    edit(&|j| j["model_version"] = "0000000000000000".into());
    assert!(load_error().await.contains("model.safetensors has version"));
    edit(&|_| {});
    artifact::load(&location(&out)).await.unwrap();
    std::fs::remove_file(out.join(WEIGHTS_FILE)).unwrap();
    assert!(load_error().await.contains(WEIGHTS_FILE));
}

#[tokio::test]
async fn input_without_a_model_feature_is_rejected_naming_table_and_column() {
    let (_dir, root) = small_world().await;
    let users = read_table(&root, Table::Users);
    write_table(&root, Table::Users, &without_column(&users, "searches_30d"));
    let options = TrainOptions { validation_days: 1, test_days: 1, ..TrainOptions::default() };
    let err = load_split(&location(&root), None, &options).await.err().expect("must fail").to_string();
    assert!(err.contains("searches_30d"), "{err}");
}
