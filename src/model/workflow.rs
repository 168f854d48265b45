//! The workflows behind `audience train`, `evaluate` and `finetune`: load the
//! data, split it by day, train or fine-tune, evaluate, save the artifact.

use super::artifact::{self, Manifest, Training};
use super::dataset::{Dataset, Split};
use super::diagnostics::{Diagnostics, diagnose};
use super::evaluate::{Evaluation, evaluate, evaluate_predictions, predict, predict_in};
use super::fused::Precision;
use super::train::{Recipe, TrainOptions, train};
use super::{Model, ModelError};
use crate::contract::Task;
use crate::storage::Location;

/// Loads the world at `data` and splits it as `options` say.
pub async fn load_split(
    data: &Location,
    model: Option<&Model>,
    options: &TrainOptions,
) -> Result<(Dataset, Split), ModelError> {
    let spec = model.map_or_else(Default::default, |m| m.spec.clone());
    let dataset = Dataset::load(data, &spec).await?;
    let split = dataset.split(options.validation_days, options.test_days)?;
    tracing::info!(
        impressions = dataset.len(),
        train = split.train.len(),
        validation = split.validation.len(),
        test = split.test.len(),
        "training data loaded"
    );
    Ok((dataset, split))
}

/// Trains a model on the world at `data` (or fine-tunes `base`) and writes the
/// artifact to `out`.
pub async fn train_and_save(
    data: &Location,
    out: &Location,
    options: &TrainOptions,
    base: Option<(&Model, &Manifest)>,
) -> Result<Manifest, ModelError> {
    let (dataset, split) = load_split(data, base.map(|(m, _)| m), options).await?;
    let (model, report) = train(&dataset, &split, options, base.map(|(m, _)| m))?;
    tracing::info!(
        epochs = report.epochs.len(),
        best_epoch = report.best_epoch,
        validation_stream_ap = report.validation_stream_ap,
        seconds = report.seconds,
        examples_per_second = report.examples_per_second,
        "trained"
    );
    let validation = evaluate(&model.network, &dataset, &split.validation);
    let training = Training {
        data: data.url().to_string(),
        data_fingerprint: dataset.fingerprint.clone(),
        split_rows: [split.train.len(), split.validation.len(), split.test.len()],
        base_model: base.map(|(_, m)| m.model_version.clone()),
        report,
    };
    artifact::save(&model, artifact::manifest_for(&model, training, validation), out).await
}

/// Evaluates the model at `model` on the test days of the world at `data`
/// (split as the model was trained).
/// Also returns the curves and calibration the model report draws.
pub async fn evaluate_saved(
    data: &Location,
    model: &Location,
) -> Result<(Manifest, Evaluation, Diagnostics), ModelError> {
    let (model, manifest) = artifact::load(model).await?;
    let (dataset, split) = load_split(data, Some(&model), &manifest.training.report.options).await?;
    let predictions = predict(&model.network, &dataset.inputs, &split.test);
    let evaluation = evaluate_predictions(&predictions, &dataset, &split.test);
    Ok((manifest, evaluation, diagnose(&predictions, &dataset, &split.test)))
}

/// The saved model's evaluation on the test days with its layers after the
/// first in `precision` (the scoring kernel's arithmetic).
pub async fn evaluate_saved_in(
    data: &Location,
    model: &Location,
    precision: Precision,
) -> Result<Evaluation, ModelError> {
    let (model, manifest) = artifact::load(model).await?;
    let (dataset, split) = load_split(data, Some(&model), &manifest.training.report.options).await?;
    let predictions = predict_in(&model.network, &dataset.inputs, &split.test, precision)?;
    Ok(evaluate_predictions(&predictions, &dataset, &split.test))
}

/// Which impressions a fine-tune learns from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Ad,
    Promotion,
    Both,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Ad => "ad",
            Source::Promotion => "promotion",
            Source::Both => "both",
        }
    }
}

impl std::str::FromStr for Source {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ad" => Ok(Source::Ad),
            "promotion" => Ok(Source::Promotion),
            "both" => Ok(Source::Both),
            other => Err(format!("unknown source {other:?} (expected ad, promotion or both)")),
        }
    }
}

/// A fine-tune of one head of a trained model (cold start for a new objective
/// or channel).
#[derive(Debug, Clone)]
pub struct Finetune {
    pub task: Task,
    pub source: Source,
    /// Train on at most this many labelled impressions.
    pub labels: Option<usize>,
    /// Encoder learning rate relative to the head's; 0 freezes the encoder.
    pub encoder_lr_scale: f64,
    /// Re-initialise the head first (a new objective) instead of refining it.
    pub new_head: bool,
}

/// Fine-tunes the model at `model` as `finetune` says, on the world at
/// `data`, and writes the new artifact to `out`; returns its manifest and the
/// base model's version.
pub async fn finetune(
    data: &Location,
    model: &Location,
    out: &Location,
    finetune: &Finetune,
    training: &TrainOptions,
) -> Result<(Manifest, String), ModelError> {
    if finetune.encoder_lr_scale.is_nan() || finetune.encoder_lr_scale < 0.0 {
        return Err(ModelError::Invalid(format!(
            "encoder learning-rate scale {} must be ≥ 0",
            finetune.encoder_lr_scale
        )));
    }
    let (base, base_manifest) = artifact::load(model).await?;
    let head = finetune.task.head();
    if finetune.new_head {
        base.network.reset_tower(head);
    }
    let (promotions, ads) = match finetune.source {
        Source::Ad => (false, true),
        Source::Promotion => (true, false),
        Source::Both => (true, true),
    };
    let name = format!("fine-tune {} on {} impressions", finetune.task.name(), finetune.source.as_str());
    let options = TrainOptions {
        recipe: Recipe { name, promotions, ads, heads: vec![head] },
        // `--labels` caps the recipe's rows; without it, a promotion budget stands.
        label_budget: finetune.labels.or(training.label_budget),
        label_source: if finetune.labels.is_some() { None } else { training.label_source },
        encoder_lr_scale: finetune.encoder_lr_scale,
        ..training.clone()
    };
    let manifest = train_and_save(data, out, &options, Some((&base, &base_manifest))).await?;
    Ok((manifest, base_manifest.model_version))
}
