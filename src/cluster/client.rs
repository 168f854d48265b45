//! Scoring on a Ballista cluster, from the job's side: prepares the run's
//! campaigns as the local engine does (they size the pools and are checked by
//! every executor), sends the users scan wrapped in a [`ScoreNode`] to the
//! scheduler, and merges the partitions' pools the executors return.

use std::time::Instant;

use ballista::prelude::SessionContextExt;
use datafusion::error::DataFusionError;
use datafusion::prelude::{SessionContext, col};

use super::plan::ScoreNode;
use super::spec::ScoreSpec;
use super::{partial, session};
use crate::contract::Table;
use crate::model::Model;
use crate::scoring::scorer::PartitionResult;
use crate::scoring::{ModelParts, ScoreError, ScoreOptions, Scored, USER_COLUMNS, cores, merge, prepare, split_users};
use crate::storage::{Location, StorageOptions};

/// Where and how to score on the cluster.
pub struct Cluster<'a> {
    /// The scheduler, e.g. `df://scheduler:50050`.
    pub scheduler: &'a str,
    /// The `[storage.*]` settings the executors open inputs and model with.
    pub storage: &'a StorageOptions,
    /// The model's URI and version, which executors load themselves.
    pub model_uri: &'a str,
    pub model_version: &'a str,
    /// The most the scoring may take.
    pub timeout: std::time::Duration,
}

/// Scores the world at `root` with `model` for `options.date` on `cluster`;
/// the same candidate table as [`crate::scoring::score`].
pub async fn score(
    cluster: &Cluster<'_>,
    root: &Location,
    model: &Model,
    options: &ScoreOptions,
) -> Result<Scored, ScoreError> {
    let started = Instant::now();
    let query = |source| ScoreError::Query { url: root.url().to_string(), source };
    let (local, prepared) = prepare(root, &ModelParts::of(model)?, options).await?;
    // No job for the cluster when there is nothing to score.
    if prepared.campaigns.is_empty() {
        tracing::info!(date = %options.date, "no active campaign: nothing to score");
        return Ok(merge(prepared, Vec::new(), started));
    }
    let partitions = if options.partitions == 0 { cores() } else { options.partitions };
    let date = options.date.format("%Y-%m-%d").to_string();
    let split = split_users(&local, partitions).await.map_err(query)?;
    let spec = ScoreSpec {
        job: format!("{date}-{:016x}", rand::random::<u64>()),
        inputs_root: root.url().to_string(),
        model_uri: cluster.model_uri.to_string(),
        model_version: cluster.model_version.to_string(),
        date: date.clone(),
        slack: options.slack,
        hour: options.hour,
        batch_rows: options.batch_rows,
        precision: options.precision,
        storage: cluster.storage.clone(),
        campaign_ids: prepared.campaigns.iter().map(|c| c.campaign_id.clone()).collect(),
        split,
    };
    let state = session::client(partitions, options.batch_rows, &format!("audience score {date}")).map_err(query)?;
    let ctx = SessionContext::remote_with_state(cluster.scheduler, state).await.map_err(query)?;
    crate::tables::register(&ctx, root, &[Table::Users]).await.map_err(query)?;
    let mut users = ctx.table("users").await.map_err(query)?.select(USER_COLUMNS.map(col).to_vec()).map_err(query)?;
    if let Some(limit) = options.user_limit {
        users = users.limit(0, Some(limit)).map_err(query)?;
    }
    let plan = ScoreNode::new(users.into_unoptimized_plan(), &spec).map_err(query)?.into_plan();
    tracing::info!(scheduler = cluster.scheduler, job = %spec.job, partitions, campaigns = spec.campaign_ids.len(), "scoring on the cluster");
    let scoring = async { ctx.execute_logical_plan(plan).await?.collect().await };
    let batches = tokio::time::timeout(cluster.timeout, scoring)
        .await
        .map_err(|_| ScoreError::Timeout { seconds: cluster.timeout.as_secs() })?
        .map_err(query)?;
    let mut result = PartitionResult::empty(&prepared);
    for batch in &batches {
        partial::decode_into(batch, &prepared, &mut result)
            .map_err(|e| query(DataFusionError::Internal(e.to_string())))?;
    }
    Ok(merge(prepared, vec![result], started))
}
