//! `audience validate --config`: a job config, its input tables, its model
//! artifact and its output root checked without running the job. The config's locations are
//! opened with its `[storage.*]` settings when it is loaded, exactly as for
//! `audience run`.

use super::config::JobConfig;
use super::error::JobError;
use crate::contract::validate::{Report, validate_world};
use crate::model::artifact;

/// What a valid config leads to.
pub struct ConfigCheck {
    /// Rows per input table.
    pub inputs: Report,
    pub model_version: String,
}

pub async fn validate_config(config: &JobConfig) -> Result<ConfigCheck, JobError> {
    config.output.check_writable_below().await?;
    let inputs = validate_world(&config.inputs).await?.into_result()?;
    let (_, model) = artifact::load(&config.model).await?;
    Ok(ConfigCheck { inputs, model_version: model.model_version })
}
