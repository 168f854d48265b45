//! The scoring step as a plan node: [`ScoreNode`] in the logical plan the job's
//! client sends to the scheduler, [`ScoreExec`] in the physical plan the
//! executors run (one task per users partition, each emitting its partition's
//! pools and counts as [`super::partial`] rows), and [`ScorePlanner`], which
//! turns the first into the second on the scheduler.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DFSchema, DFSchemaRef};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, LogicalPlan, UserDefinedLogicalNode, UserDefinedLogicalNodeCore};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties};
use datafusion::physical_planner::{ExtensionPlanner, PhysicalPlanner};
use futures::StreamExt;

use super::spec::ScoreSpec;
use super::{cache, external, partial};
use crate::failpoint;
use crate::scoring::scorer::PartitionScorer;

/// Name of both nodes in plans and in EXPLAIN.
pub const NAME: &str = "AudienceScore";

/// Scores its input (the users table's scoring columns) per partition.
#[derive(Debug, Clone)]
pub struct ScoreNode {
    input: LogicalPlan,
    /// The [`ScoreSpec`] as JSON: what the node is compared and hashed by.
    spec: String,
    schema: DFSchemaRef,
}

impl ScoreNode {
    pub fn new(input: LogicalPlan, spec: &ScoreSpec) -> Result<ScoreNode> {
        Self::from_json(input, spec.to_json())
    }

    pub(super) fn from_json(input: LogicalPlan, spec: String) -> Result<ScoreNode> {
        ScoreSpec::from_json(&spec).map_err(|e| DataFusionError::Plan(format!("{NAME}: bad spec: {e}")))?;
        let schema = Arc::new(DFSchema::try_from(partial::schema())?);
        Ok(ScoreNode { input, spec, schema })
    }

    pub fn spec_json(&self) -> &str {
        &self.spec
    }

    /// The logical plan node wrapping this one.
    pub fn into_plan(self) -> LogicalPlan {
        LogicalPlan::Extension(datafusion::logical_expr::Extension { node: Arc::new(self) })
    }
}

impl PartialEq for ScoreNode {
    fn eq(&self, other: &Self) -> bool {
        self.spec == other.spec && self.input == other.input
    }
}

impl Eq for ScoreNode {}

impl Hash for ScoreNode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.spec.hash(state);
        self.input.hash(state);
    }
}

impl PartialOrd for ScoreNode {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        match self.spec.cmp(&other.spec) {
            Ordering::Equal => self.input.partial_cmp(&other.input),
            order => Some(order),
        }
    }
}

impl UserDefinedLogicalNodeCore for ScoreNode {
    fn name(&self) -> &str {
        NAME
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        Vec::new()
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{NAME}: {}", self.spec)
    }

    fn with_exprs_and_inputs(&self, _exprs: Vec<Expr>, mut inputs: Vec<LogicalPlan>) -> Result<Self> {
        if inputs.len() != 1 {
            return Err(DataFusionError::Internal(format!("{NAME} takes one input, got {}", inputs.len())));
        }
        Ok(ScoreNode { input: inputs.swap_remove(0), ..self.clone() })
    }
}

/// One task per input partition: scores the partition's users, then emits its
/// pools and counts in one batch.
#[derive(Debug)]
pub struct ScoreExec {
    input: Arc<dyn ExecutionPlan>,
    spec: ScoreSpec,
    properties: Arc<PlanProperties>,
}

impl ScoreExec {
    /// Scores `input` (the users scan) read as `spec.split` says: one task
    /// per row range of the users table.
    pub fn try_new(input: Arc<dyn ExecutionPlan>, spec: ScoreSpec) -> Result<ScoreExec> {
        let input = spec.split.apply(input)?;
        let partitions = input.properties().output_partitioning().partition_count();
        let properties = PlanProperties::new(
            EquivalenceProperties::new(partial::schema()),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        Ok(ScoreExec { input, spec, properties: Arc::new(properties) })
    }

    pub fn spec(&self) -> &ScoreSpec {
        &self.spec
    }
}

impl DisplayAs for ScoreExec {
    fn fmt_as(&self, _format: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "{NAME}Exec: job={}, date={}, model={}@{}, campaigns={}",
            self.spec.job,
            self.spec.date,
            self.spec.model_uri,
            self.spec.model_version,
            self.spec.campaign_ids.len()
        )
    }
}

impl ExecutionPlan for ScoreExec {
    fn name(&self) -> &'static str {
        "ScoreExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    /// Its input's partitions are the split's row ranges: no optimizer may
    /// repartition them.
    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, mut children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return Err(DataFusionError::Internal(format!("ScoreExec takes one child, got {}", children.len())));
        }
        Ok(Arc::new(ScoreExec::try_new(children.swap_remove(0), self.spec.clone())?))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let mut users = self.input.execute(partition, context)?;
        let spec = self.spec.clone();
        let scored = async move {
            let prepared = cache::prepared(&spec).await?;
            if failpoint::armed("stall-scoring") {
                // Drills: a task that never ends, so its executor can be killed mid-stage.
                tracing::warn!(job = %spec.job, partition, "scoring task stalled (failpoint stall-scoring)");
                std::future::pending::<()>().await;
            }
            if failpoint::armed("fail-scoring") {
                tracing::warn!(job = %spec.job, partition, "failpoint fired: fail-scoring");
                return Err(DataFusionError::IoError(std::io::Error::other(
                    "scoring task failed (failpoint fail-scoring)",
                )));
            }
            if failpoint::armed("panic-scoring") {
                panic!("scoring task panicked (failpoint panic-scoring)");
            }
            let mut scorer = PartitionScorer::new(prepared, false).map_err(external)?;
            while let Some(batch) = users.next().await {
                scorer.push(&batch?).await.map_err(external)?;
            }
            let result = scorer.finish();
            if result.users > 0 {
                tracing::info!(job = %spec.job, partition, users = result.users, "partition scored");
            }
            Ok(partial::encode(result))
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(partial::schema(), futures::stream::once(scored))))
    }
}

/// Plans [`ScoreNode`] as [`ScoreExec`] (registered in the scheduler's sessions).
#[derive(Debug, Default)]
pub struct ScorePlanner;

#[async_trait]
impl ExtensionPlanner for ScorePlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        _session: &dyn datafusion::catalog::Session,
        _planning_ctx: &datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let Some(node) = node.as_any().downcast_ref::<ScoreNode>() else {
            return Ok(None);
        };
        let spec = ScoreSpec::from_json(node.spec_json())
            .map_err(|e| DataFusionError::Plan(format!("{NAME}: bad spec: {e}")))?;
        let [input] = physical_inputs else {
            return Err(DataFusionError::Internal(format!("{NAME} takes one input, got {}", physical_inputs.len())));
        };
        Ok(Some(Arc::new(ScoreExec::try_new(Arc::clone(input), spec)?)))
    }
}
