//! The model artifact: a directory (local or object store) holding
//! `model.safetensors` (every variable, batch-norm statistics included) and
//! `model.json` (architecture, feature spec with hash buckets and normalisation,
//! tasks, training data fingerprint, metrics, versions). `model.json` is written
//! last, so a directory without it is an interrupted save, never a model.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::evaluate::Evaluation;
use super::features::FeatureSpec;
use super::network::{Architecture, TASKS};
use super::train::{PROMOTION_TASKS, TrainingReport};
use super::{Model, ModelError};
use crate::storage::Location;

/// Bumped whenever an older reader could not use the artifact.
pub const ARTIFACT_VERSION: u32 = 1;

pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const MANIFEST_FILE: &str = "model.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub artifact_version: u32,
    /// First 16 hex digits of the SHA-256 of `model.safetensors`.
    pub model_version: String,
    pub created_by: String,
    pub architecture: Architecture,
    pub features: FeatureSpec,
    pub tasks: Vec<String>,
    /// Towers trained on promotion impressions only.
    pub promotion_tasks: Vec<String>,
    pub training: Training,
    /// Metrics on the validation days.
    pub validation: Evaluation,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Training {
    pub data: String,
    pub data_fingerprint: String,
    /// Rows in the train / validation / test split.
    pub split_rows: [usize; 3],
    /// Fine-tuned from this model version, if any.
    pub base_model: Option<String>,
    pub report: TrainingReport,
}

/// Writes `model` and its manifest (whose `model_version` is filled in here)
/// under `out`; returns the manifest written.
pub async fn save(model: &Model, mut manifest: Manifest, out: &Location) -> Result<Manifest, ModelError> {
    let scratch = tempfile::tempdir()?;
    let path = scratch.path().join(WEIGHTS_FILE);
    model.vs.save(&path)?;
    let weights = std::fs::read(&path)?;
    manifest.model_version = hex::encode(&Sha256::digest(&weights)[..8]);
    manifest.artifact_version = ARTIFACT_VERSION;
    manifest.features = model.spec.clone();
    manifest.architecture = model.architecture.clone();
    out.join(WEIGHTS_FILE).write(weights).await?;
    let json = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
    out.join(MANIFEST_FILE).write(json).await?;
    Ok(manifest)
}

/// Reads `model.json` only (its `model_version` names the weights).
pub async fn read_manifest(location: &Location) -> Result<Manifest, ModelError> {
    let json = location.join(MANIFEST_FILE).read().await?;
    serde_json::from_slice(&json).map_err(|e| {
        ModelError::Invalid(format!(
            "model {}: {MANIFEST_FILE} is not a model manifest of this version: {e}",
            location.url()
        ))
    })
}

/// Reads the artifact at `location` and checks it against this build.
pub async fn load(location: &Location) -> Result<(Model, Manifest), ModelError> {
    let invalid = |what: String| ModelError::Invalid(format!("model {}: {what}", location.url()));
    let manifest = read_manifest(location).await?;
    if manifest.artifact_version != ARTIFACT_VERSION {
        return Err(invalid(format!(
            "artifact version {} (this build reads version {ARTIFACT_VERSION})",
            manifest.artifact_version
        )));
    }
    manifest.features.check_compatible().map_err(|e| invalid(e.to_string()))?;
    if manifest.architecture.tasks != TASKS {
        return Err(invalid(format!("tasks {:?}, this build serves {:?}", manifest.architecture.tasks, TASKS)));
    }
    let weights = location.join(WEIGHTS_FILE).read().await?;
    let version = hex::encode(&Sha256::digest(&weights)[..8]);
    if version != manifest.model_version {
        return Err(invalid(format!(
            "{WEIGHTS_FILE} has version {version} but {MANIFEST_FILE} names {}",
            manifest.model_version
        )));
    }
    let scratch = tempfile::tempdir()?;
    let path = scratch.path().join(WEIGHTS_FILE);
    std::fs::write(&path, &weights)?;
    let mut model = Model::new(manifest.features.clone(), manifest.architecture.clone());
    model.vs.load(&path).map_err(|e| invalid(format!("{WEIGHTS_FILE} does not match model.json: {e}")))?;
    Ok((model, manifest))
}

/// A manifest for a freshly trained model (versions are filled in by [`save`]).
pub fn manifest_for(model: &Model, training: Training, validation: Evaluation) -> Manifest {
    Manifest {
        artifact_version: ARTIFACT_VERSION,
        model_version: String::new(),
        created_by: format!("audience {}", env!("CARGO_PKG_VERSION")),
        architecture: model.architecture.clone(),
        features: model.spec.clone(),
        tasks: TASKS.iter().map(|t| t.to_string()).collect(),
        promotion_tasks: PROMOTION_TASKS.iter().map(|&t| TASKS[t].to_string()).collect(),
        training,
        validation,
    }
}
