//! What an executor keeps between tasks: models, fetched from object storage
//! once per (URI, version), and each job's prepared scoring state (active
//! campaigns and their features, follows, pool sizes), built once per job by
//! its first task on this executor. Only the newest few of each are kept.

use std::collections::VecDeque;
use std::sync::{Arc, LazyLock, Mutex};

use datafusion::error::{DataFusionError, Result};

use super::external;
use super::spec::ScoreSpec;
use crate::model::artifact;
use crate::scoring::ModelParts;
use crate::scoring::scorer::Prepared;
use crate::storage::Location;

/// Models and jobs kept per executor.
const KEPT: usize = 4;

struct CachedModel {
    uri: String,
    version: String,
    parts: Arc<ModelParts>,
}

static MODELS: LazyLock<Mutex<VecDeque<Arc<CachedModel>>>> = LazyLock::new(Default::default);
/// Held across a job's preparation, so its other tasks wait for it instead of
/// preparing again.
static JOBS: LazyLock<tokio::sync::Mutex<VecDeque<PreparedJob>>> = LazyLock::new(Default::default);

/// A job's id and its prepared scoring state.
type PreparedJob = (String, Arc<Prepared>);

/// The prepared scoring state of `spec`'s job.
pub async fn prepared(spec: &ScoreSpec) -> Result<Arc<Prepared>> {
    let mut jobs = JOBS.lock().await;
    if let Some((_, prepared)) = jobs.iter().find(|(job, _)| *job == spec.job) {
        return Ok(Arc::clone(prepared));
    }
    let model = model(spec).await?;
    let root = Location::parse_with(&spec.inputs_root, &spec.storage).map_err(external)?;
    let options = spec.options().map_err(external)?;
    let (_, prepared) = crate::scoring::prepare(&root, &model, &options).await.map_err(external)?;
    let ids: Vec<&str> = prepared.campaigns.iter().map(|c| c.campaign_id.as_str()).collect();
    if ids != spec.campaign_ids {
        return Err(DataFusionError::Execution(format!(
            "the active campaigns at {} on {} differ from the job's ({} here, {} planned): the inputs changed during the run",
            spec.inputs_root,
            spec.date,
            ids.len(),
            spec.campaign_ids.len()
        )));
    }
    tracing::info!(job = %spec.job, campaigns = ids.len(), "scoring state prepared");
    jobs.push_back((spec.job.clone(), Arc::clone(&prepared)));
    if jobs.len() > KEPT {
        jobs.pop_front();
    }
    Ok(prepared)
}

/// The model of `spec`, from the cache or fetched (and checked to be the
/// version the job planned with).
async fn model(spec: &ScoreSpec) -> Result<Arc<ModelParts>> {
    let cached = {
        let models = MODELS.lock().expect("model cache lock");
        models.iter().find(|m| m.uri == spec.model_uri && m.version == spec.model_version).map(|m| Arc::clone(&m.parts))
    };
    if let Some(parts) = cached {
        return Ok(parts);
    }
    let location = Location::parse_with(&spec.model_uri, &spec.storage).map_err(external)?;
    let (parts, manifest) = load(&location).await?;
    if manifest.model_version != spec.model_version {
        return Err(DataFusionError::Execution(format!(
            "model {} is version {}, the job planned with {}: the artifact changed during the run",
            spec.model_uri, manifest.model_version, spec.model_version
        )));
    }
    tracing::info!(model = %spec.model_uri, version = %manifest.model_version, "model fetched");
    let parts = Arc::new(parts);
    let mut models = MODELS.lock().expect("model cache lock");
    models.push_back(Arc::new(CachedModel {
        uri: spec.model_uri.clone(),
        version: manifest.model_version,
        parts: Arc::clone(&parts),
    }));
    if models.len() > KEPT {
        models.pop_front();
    }
    Ok(parts)
}

/// Loads and checks the artifact at `location` on a blocking thread (the
/// libtorch model never crosses an await) and keeps its plain parts.
async fn load(location: &Location) -> Result<(ModelParts, artifact::Manifest)> {
    let location = location.clone();
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let (model, manifest) = handle.block_on(artifact::load(&location)).map_err(external)?;
        Ok((ModelParts::of(&model).map_err(external)?, manifest))
    })
    .await
    .map_err(external)?
}
