//! The sessions of the three cluster roles. The client's plans go to the
//! scheduler through our logical codec; the scheduler plans our nodes with
//! [`ScorePlanner`]; scheduler and executors open object stores with the
//! process's `[storage.*]` settings.

use std::sync::Arc;

use async_trait::async_trait;
use ballista::prelude::SessionConfigExt;
use ballista_core::extension::{ballista_aggregate_functions, ballista_scalar_functions, ballista_window_functions};
use datafusion::catalog::Session;
use datafusion::error::Result;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::{QueryPlanner, SessionState};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_planner::{DefaultPhysicalPlanner, PhysicalPlanner};
use datafusion::prelude::SessionConfig;

use super::codec::{LogicalCodec, PhysicalCodec};
use super::plan::ScorePlanner;
use super::stores::StoreRegistry;
use crate::storage::StorageOptions;

/// DataFusion's planner plus our scoring node.
#[derive(Debug, Default)]
struct AudienceQueryPlanner;

#[async_trait]
impl QueryPlanner for AudienceQueryPlanner {
    async fn create_physical_plan(&self, plan: &LogicalPlan, session: &dyn Session) -> Result<Arc<dyn ExecutionPlan>> {
        DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(ScorePlanner)])
            .create_physical_plan(plan, session)
            .await
    }
}

/// A runtime whose object stores follow `storage`; spill files under `temp_dir`.
pub fn runtime(storage: &StorageOptions, temp_dir: Option<&str>) -> Result<Arc<RuntimeEnv>> {
    let mut builder =
        RuntimeEnvBuilder::new().with_object_store_registry(Arc::new(StoreRegistry::new(storage.clone())));
    if let Some(dir) = temp_dir {
        builder = builder.with_temp_file_path(dir);
    }
    Ok(Arc::new(builder.build()?))
}

/// A scheduler session: Ballista's defaults plus our planner and stores.
pub fn scheduler(config: SessionConfig, storage: &StorageOptions) -> Result<SessionState> {
    Ok(SessionStateBuilder::new()
        .with_default_features()
        .with_config(config)
        .with_runtime_env(runtime(storage, None)?)
        .with_query_planner(Arc::new(AudienceQueryPlanner))
        .with_optimizer_rules(ballista_core::optimizer::ballista_default_optimizer_rules())
        .with_scalar_functions(ballista_scalar_functions())
        .with_aggregate_functions(ballista_aggregate_functions())
        .with_window_functions(ballista_window_functions())
        .build())
}

/// The job's side: a session whose plans run on the cluster (see
/// `SessionContextExt::remote_with_state`), sending our nodes with our codecs.
pub fn client(partitions: usize, batch_rows: usize, job_name: &str) -> Result<SessionState> {
    // Split even small users files into `partitions` scans: one scoring task each.
    let config = SessionConfig::new_with_ballista()
        .with_target_partitions(partitions)
        .with_repartition_file_min_size(0)
        .with_batch_size(batch_rows)
        .with_ballista_job_name(job_name)
        .with_ballista_logical_extension_codec(Arc::new(LogicalCodec::default()))
        .with_ballista_physical_extension_codec(Arc::new(PhysicalCodec::default()));
    Ok(SessionStateBuilder::new().with_default_features().with_config(config).build())
}
