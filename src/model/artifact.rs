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
    check_sizes(&manifest, weights.len()).map_err(invalid)?;
    let scratch = tempfile::tempdir()?;
    let path = scratch.path().join(WEIGHTS_FILE);
    std::fs::write(&path, &weights)?;
    let mut model = Model::new(manifest.features.clone(), manifest.architecture.clone());
    model.vs.load(&path).map_err(|e| invalid(format!("{WEIGHTS_FILE} does not match model.json: {e}")))?;
    Ok((model, manifest))
}

/// Checks the sizes `model.json` declares before anything is allocated from
/// them: each must be positive, and the f32 weights they imply must fit in
/// the `weights_len` bytes of `model.safetensors` (which holds every weight).
/// The error names the field that needs the most.
fn check_sizes(manifest: &Manifest, weights_len: usize) -> Result<(), String> {
    let features = &manifest.features;
    let [width, hidden] = manifest.architecture.encoder;
    let tower = manifest.architecture.tower;
    let mut needs: Vec<(String, Option<i64>)> = Vec::new();
    for (side_name, side) in [("user", &features.user), ("campaign", &features.campaign), ("pair", &features.pair)] {
        for c in &side.categorical {
            let field = format!("features.{side_name}.categorical[{:?}]", c.name);
            if c.buckets < 1 || c.dim < 1 || c.slots < 1 {
                return Err(format!(
                    "{MANIFEST_FILE}: {field} has buckets {}, dim {}, slots {} (each must be at least 1)",
                    c.buckets, c.dim, c.slots
                ));
            }
            needs.push((format!("{field}.buckets"), c.buckets.checked_add(1).and_then(|rows| rows.checked_mul(c.dim))));
        }
        let inputs = side.categorical.iter().try_fold(side.dense.len() as i64, |sum, c| sum.checked_add(c.dim));
        needs.push((
            format!("architecture.encoder[0] (from features.{side_name})"),
            inputs.and_then(|n| n.checked_mul(width)),
        ));
    }
    for (field, size) in
        [("architecture.encoder[0]", width), ("architecture.encoder[1]", hidden), ("architecture.tower", tower)]
    {
        if size < 1 {
            return Err(format!("{MANIFEST_FILE}: {field} is {size} (must be at least 1)"));
        }
    }
    needs.push(("architecture.encoder[1]".into(), width.checked_mul(hidden)));
    let towers = manifest.architecture.tasks.len() as i64;
    needs.push(("architecture.tower".into(), hidden.checked_mul(tower).and_then(|n| n.checked_mul(towers))));
    let total = needs.iter().try_fold(0i64, |sum, (_, n)| n.and_then(|n| sum.checked_add(n)));
    let fits = total.and_then(|n| n.checked_mul(4)).is_some_and(|bytes| bytes as u128 <= weights_len as u128);
    if fits {
        return Ok(());
    }
    let (field, largest) = needs.iter().max_by_key(|(_, n)| n.unwrap_or(i64::MAX)).expect("a model has layers");
    let bytes = largest.map_or("more than 2^63".to_string(), |n| format!("{}", n as u128 * 4));
    Err(format!(
        "{MANIFEST_FILE}: {field} implies {bytes} bytes of weights, more than the {weights_len} bytes of {WEIGHTS_FILE}: the sizes in {MANIFEST_FILE} are wrong"
    ))
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
