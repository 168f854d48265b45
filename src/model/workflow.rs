//! The workflows behind `audience train`, `evaluate` and `finetune`: load the
//! data, split it by day, train or fine-tune, evaluate, save the artifact.

use super::artifact::{self, Manifest, Training};
use super::dataset::{Dataset, Split};
use super::evaluate::{Evaluation, evaluate};
use super::train::{TrainOptions, train};
use super::{Model, ModelError};
use crate::storage::Location;

/// Loads the world at `data` and splits it as `options` say.
pub async fn load_split(data: &Location, model: Option<&Model>, options: &TrainOptions) -> Result<(Dataset, Split), ModelError> {
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
pub async fn evaluate_saved(data: &Location, model: &Location) -> Result<(Manifest, Evaluation), ModelError> {
    let (model, manifest) = artifact::load(model).await?;
    let (dataset, split) = load_split(data, Some(&model), &manifest.training.report.options).await?;
    Ok((manifest, evaluate(&model.network, &dataset, &split.test)))
}
