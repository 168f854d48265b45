//! Scoring (docs/design.md §5): every eligible user against every active
//! campaign, fused with candidate selection. A DataFusion plan finds the
//! active campaigns and the follows that exclude users; the users table is
//! scanned as partitioned streams, each consumed by its own
//! [`scorer::PartitionScorer`] (own copy of the weights, one libtorch thread); per-partition pools are
//! merged into one candidate table. After allocation, [`members`] computes
//! the five task probabilities of the audiences' members.

pub mod eligibility;
pub mod follows;
pub mod members;
pub mod pool;
pub mod scorer;
pub mod split;

use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Float32Array, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chrono::NaiveDate;
use datafusion::error::DataFusionError;
use datafusion::physical_plan::execute_stream_partitioned;
use datafusion::prelude::{SessionConfig, SessionContext, col};
use futures::StreamExt;

use crate::contract::Table;
use crate::exit_code::ExitCode;
use crate::model::features::CampaignRows;
use crate::model::features::encode_campaigns;
use crate::model::fused::Precision;
use crate::model::{Model, ModelError};
use crate::progress::Progress;
use crate::storage::Location;
use eligibility::{ActiveCampaign, Eligibility, active_campaigns};
use follows::{FollowsError, FollowsIndex};
use pool::{Candidate, Pool};
pub use scorer::ModelParts;
use scorer::{PartitionResult, PartitionScorer, Prepared, ScoreBatchError};

#[derive(Debug, Clone)]
pub struct ScoreOptions {
    pub date: NaiveDate,
    /// Pool = slack × the most users a campaign's budget can buy.
    pub slack: f64,
    /// DataFusion partitions (0: one per core).
    pub partitions: usize,
    /// Users per batch.
    pub batch_rows: usize,
    /// Hour of day assumed for the pair features (the evening peak).
    pub hour: u8,
    /// Only count eligible pairs; run no model (dry runs).
    pub eligibility_only: bool,
    /// Score only the first this many users (timing samples).
    pub user_limit: Option<usize>,
    /// The number format of the per-pair layers.
    pub precision: Precision,
}

impl ScoreOptions {
    pub fn new(date: NaiveDate) -> ScoreOptions {
        ScoreOptions {
            date,
            slack: 2.0,
            partitions: 0,
            batch_rows: 16_384,
            hour: 20,
            eligibility_only: false,
            user_limit: None,
            precision: Precision::Fp32,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    #[error(transparent)]
    Batch(#[from] ScoreBatchError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Feature(#[from] crate::model::features::FeatureError),
    #[error("scoring {url}: {source}")]
    Query { url: String, source: DataFusionError },
    #[error("scoring task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error(transparent)]
    Precision(#[from] crate::model::fused::PrecisionError),
    #[error(transparent)]
    Follows(#[from] FollowsError),
    #[error(
        "audience member {user_id} of campaign {campaign} is not in the users table any more (did the inputs change during the run?)"
    )]
    MissingMember { campaign: String, user_id: i64 },
    #[error("libtorch: {0}")]
    Torch(tch::TchError),
    #[error(
        "scoring on the cluster did not finish within {seconds} s ([engine] timeout_seconds); are its executors alive?"
    )]
    Timeout { seconds: u64 },
}

impl ScoreError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            ScoreError::Feature(_) | ScoreError::Precision(_) => ExitCode::Invalid,
            ScoreError::MissingMember { .. } => ExitCode::Invalid,
            ScoreError::Torch(_) => ExitCode::Internal,
            ScoreError::Model(e) => e.exit_code(),
            ScoreError::Batch(e) => e.exit_code(),
            ScoreError::Task(_) => ExitCode::Internal,
            ScoreError::Timeout { .. } => ExitCode::Transient,
            ScoreError::Follows(e) => e.exit_code(),
            ScoreError::Query { source, .. } => crate::exit_code::of_query(source),
        }
    }
}

/// The candidate pools of a run.
pub struct Scored {
    pub campaigns: Vec<ActiveCampaign>,
    /// Eligible users per campaign.
    pub eligible: Vec<u64>,
    /// Per campaign, the fixed-point sum of its objective probability over
    /// its eligible users ([`Scored::mean_p`] reads it).
    pub p_sum: Vec<u64>,
    /// Per campaign, its pool, best first.
    pub pools: Vec<Vec<Candidate>>,
    /// The features of the campaigns, for the members' probabilities.
    pub campaign_rows: CampaignRows,
    pub users: u64,
    /// Bytes the pools reached at their largest: the partitions' pools and
    /// the merged ones.
    pub pool_bytes: u64,
    pub seconds: f64,
    /// How busy each partition's scorer was (local engine only).
    pub utilisation: Option<Utilisation>,
    /// The Rust heap scoring used (local engine, where the binary counts it).
    pub heap: Option<HeapUse>,
}

/// Rust heap bytes scoring added, by step ([`crate::measure::CountingAllocator`]).
#[derive(Debug, Clone, PartialEq)]
pub struct HeapUse {
    /// Held after preparing: campaigns, their features, the pair rules, the
    /// follows table's row-group index.
    pub prepared: u64,
    /// The most held while preparing (the follows files' footers included).
    pub prepare_peak: u64,
    /// The most held during the scan above the prepared heap: the pools,
    /// the user batches and Parquet reader buffers, the scorers' tiles, the
    /// follow exclusions of the batches.
    pub scan_peak: u64,
    /// Follow exclusions held at once, summed over the partitions' peaks.
    pub follows_peak: u64,
    /// Row groups of the follows table read, over all partitions.
    pub follows_reads: u64,
}

/// Per partition, the seconds its task ran on a thread (reading and
/// decoding its users, preparing its scorer, scoring; not waiting) and the
/// seconds of those spent scoring; the wall seconds from the scan's start
/// to the last partition's end.
#[derive(Debug, Clone, PartialEq)]
pub struct Utilisation {
    pub busy: Vec<f64>,
    pub scoring: Vec<f64>,
    pub wall: f64,
}

impl Utilisation {
    /// Each partition's busy time over the wall time.
    pub fn busy_shares(&self) -> Vec<f64> {
        self.busy.iter().map(|b| if self.wall > 0.0 { b / self.wall } else { 0.0 }).collect()
    }

    /// Each partition's scoring time over the wall time.
    pub fn scoring_shares(&self) -> Vec<f64> {
        self.scoring.iter().map(|b| if self.wall > 0.0 { b / self.wall } else { 0.0 }).collect()
    }
}

impl Scored {
    pub fn pairs(&self) -> u64 {
        self.eligible.iter().sum()
    }

    /// Campaign `c`'s mean objective probability over its eligible users (0
    /// when it has none, or in a dry run, which scores nothing).
    pub fn mean_p(&self, c: usize) -> f64 {
        scorer::mean_of_fixed(self.p_sum[c], self.eligible[c])
    }

    /// The candidate table: one row per (campaign, user) in a pool.
    pub fn candidates(&self) -> RecordBatch {
        let rows = self.pools.iter().map(Vec::len).sum();
        let mut campaign_id = Vec::with_capacity(rows);
        let mut user_id = Vec::with_capacity(rows);
        let (mut p_objective, mut mean_p, mut cost) = (Vec::new(), Vec::new(), Vec::new());
        for (c, (campaign, pool)) in self.campaigns.iter().zip(&self.pools).enumerate() {
            for candidate in pool {
                campaign_id.push(campaign.campaign_id.as_str());
                user_id.push(candidate.user_id);
                p_objective.push(candidate.p_objective);
                mean_p.push(self.mean_p(c));
                cost.push(campaign.cost_per_user());
            }
        }
        let mut columns: Vec<Arc<dyn arrow::array::Array>> =
            vec![Arc::new(StringArray::from(campaign_id)), Arc::new(Int64Array::from(user_id))];
        columns.push(Arc::new(Float32Array::from(p_objective)));
        columns.push(Arc::new(Float64Array::from(mean_p)));
        columns.push(Arc::new(Float64Array::from(cost)));
        RecordBatch::try_new(candidates_schema(), columns).expect("columns match the schema")
    }
}

/// Schema of the candidate table.
pub fn candidates_schema() -> SchemaRef {
    let mut fields =
        vec![Field::new("campaign_id", DataType::Utf8, false), Field::new("user_id", DataType::Int64, false)];
    fields.push(Field::new("p_objective", DataType::Float32, false));
    fields.push(Field::new("mean_p_objective", DataType::Float64, false));
    fields.push(Field::new("cost", DataType::Float64, false));
    Arc::new(Schema::new(fields))
}

/// The columns of `users` the scorer reads.
pub const USER_COLUMNS: [&str; 11] = [
    "user_id",
    "country",
    "age_bucket",
    "platform",
    "language",
    "is_premium",
    "ads_opt_out",
    "listening_hours_30d",
    "follows_count",
    "searches_30d",
    "genre_affinity",
];

pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The session and what every partition shares: active campaigns and their
/// features, the pair rules, the model's weights and the pool sizes.
pub async fn prepare(
    root: &Location,
    model: &ModelParts,
    options: &ScoreOptions,
) -> Result<(SessionContext, Arc<Prepared>), ScoreError> {
    options.precision.check()?;
    let query = |source| ScoreError::Query { url: root.url().to_string(), source };
    let partitions = if options.partitions == 0 { cores() } else { options.partitions };
    let tables = [Table::Users, Table::Campaigns, Table::Podcasts, Table::Follows];
    let config = SessionConfig::new()
        .with_target_partitions(partitions)
        .with_batch_size(options.batch_rows)
        .with_repartition_file_min_size(0);
    let ctx = crate::tables::session(root, &tables, config).await.map_err(query)?;

    let (campaigns, campaign_batches) = active_campaigns(&ctx, options.date).await.map_err(query)?;
    let mut campaign_rows = crate::model::features::CampaignRows::default();
    for batch in &campaign_batches {
        let rows = encode_campaigns(&model.spec, "active campaigns ⋈ podcasts", batch)?;
        campaign_rows.rows.extend(rows.rows);
        campaign_rows.genre.extend(rows.genre);
        campaign_rows.language.extend(rows.language);
    }
    let follows = FollowsIndex::new(root, &campaigns).await?;
    let capacities: Vec<usize> = campaigns
        .iter()
        .map(|c| ((c.affordable_users() as f64 * options.slack).ceil()).min(usize::MAX as f64) as usize)
        .collect();
    let prepared = Arc::new(Prepared {
        eligibility: Eligibility::new(&campaigns),
        follows,
        campaigns,
        campaign_rows,
        model: model.clone(),
        thresholds: capacities.iter().map(|_| Default::default()).collect(),
        capacities,
        hour: options.hour,
        precision: options.precision,
    });
    tracing::info!(
        campaigns = prepared.campaigns.len(),
        follows_row_groups = prepared.follows.row_groups(),
        partitions,
        "scoring"
    );
    Ok((ctx, prepared))
}

/// Scores the world at `root` with `model` for `options.date`.
pub async fn score(root: &Location, model: &Model, options: &ScoreOptions) -> Result<Scored, ScoreError> {
    let started = Instant::now();
    let query = |source| ScoreError::Query { url: root.url().to_string(), source };
    let heap_start = crate::measure::heap_bytes();
    crate::measure::reset_heap_peak();
    let (ctx, prepared) = prepare(root, &ModelParts::of(model)?, options).await?;
    let (heap_prepared, heap_prepare_peak) = (crate::measure::heap_bytes(), crate::measure::heap_peak_bytes());
    crate::measure::reset_heap_peak();
    let partitions = ctx.state().config().target_partitions();
    let mut users = ctx.table("users").await.map_err(query)?.select(USER_COLUMNS.map(col).to_vec()).map_err(query)?;
    if let Some(limit) = options.user_limit {
        users = users.limit(0, Some(limit)).map_err(query)?;
    }
    // Split the scan into `partitions` equal row ranges, whatever the files
    // and row groups (as the cluster engine does): partitions are the parallelism.
    let split = split_users(&ctx, partitions).await.map_err(query)?;
    // The footers the split read give the row count: no second pass over them.
    let total_users: u64 = split.files.iter().map(|f| f.rows).sum();
    let total_users = options.user_limit.map_or(total_users, |limit| total_users.min(limit as u64));
    let plan = split.apply(users.create_physical_plan().await.map_err(query)?).map_err(query)?;
    let streams = execute_stream_partitioned(plan, ctx.task_ctx()).map_err(query)?;
    let progress = Arc::new(std::sync::Mutex::new(Progress::new("scoring users", total_users)));
    let scan_started = Instant::now();
    let mut tasks = Vec::new();
    for mut stream in streams {
        let prepared = Arc::clone(&prepared);
        let progress = Arc::clone(&progress);
        let url = root.url().to_string();
        let eligibility_only = options.eligibility_only;
        tasks.push(tokio::spawn(crate::measure::timed(async move {
            let mut scorer = PartitionScorer::new(prepared, eligibility_only)?;
            let mut scoring = std::time::Duration::ZERO;
            while let Some(batch) = stream.next().await {
                let batch = batch.map_err(|source| ScoreError::Query { url: url.clone(), source })?;
                let pushed = Instant::now();
                scorer.push(&batch).await?;
                scoring += pushed.elapsed();
                progress.lock().expect("progress lock").inc(batch.num_rows() as u64);
            }
            let finished = Instant::now();
            let follows = scorer.follows_read();
            let result = scorer.finish();
            Ok::<_, ScoreError>((result, (scoring + finished.elapsed()).as_secs_f64(), follows))
        })));
    }
    let mut results = Vec::with_capacity(tasks.len());
    let (mut busy, mut scoring) = (Vec::with_capacity(tasks.len()), Vec::with_capacity(tasks.len()));
    let (mut follows_peak, mut follows_reads) = (0, 0);
    for task in tasks {
        let (outcome, polled) = task.await?;
        let (result, seconds, (peak, reads)) = outcome?;
        results.push(result);
        busy.push(polled.as_secs_f64());
        scoring.push(seconds);
        follows_peak += peak;
        follows_reads += reads;
    }
    let scan_seconds = scan_started.elapsed().as_secs_f64();
    let heap_scan_peak = crate::measure::heap_peak_bytes();
    if let Ok(progress) = Arc::try_unwrap(progress) {
        progress.into_inner().expect("progress lock").finish();
    }
    let mut scored = merge(prepared, results, started);
    scored.utilisation = Some(Utilisation { busy, scoring, wall: scan_seconds });
    if let (Some(start), Some(prepared), Some(prepare_peak), Some(scan_peak)) =
        (heap_start, heap_prepared, heap_prepare_peak, heap_scan_peak)
    {
        scored.heap = Some(HeapUse {
            prepared: prepared.saturating_sub(start),
            prepare_peak: prepare_peak.saturating_sub(start),
            scan_peak: scan_peak.saturating_sub(prepared),
            follows_peak,
            follows_reads,
        });
    }
    Ok(scored)
}

/// One candidate table from the partitions' pools and counts (any split of
/// the users gives the same table: pools order candidates totally).
pub fn merge(prepared: Arc<Prepared>, results: Vec<PartitionResult>, started: Instant) -> Scored {
    let campaigns = prepared.campaigns.len();
    let mut pools: Vec<Pool> = prepared.capacities.iter().map(|&c| Pool::new(c)).collect();
    let mut eligible = vec![0u64; campaigns];
    let mut p_sum = vec![0u64; campaigns];
    let mut scored_users = 0;
    let mut pool_bytes: usize = results.iter().flat_map(|r| &r.pools).map(Pool::bytes).sum();
    for result in results {
        scored_users += result.users;
        for (c, pool) in result.pools.into_iter().enumerate() {
            pools[c].merge(pool);
            eligible[c] += result.eligible[c];
            p_sum[c] += result.p_sum[c];
        }
    }
    pool_bytes += pools.iter().map(Pool::bytes).sum::<usize>();
    Scored {
        pool_bytes: pool_bytes as u64,
        campaigns: prepared.campaigns.clone(),
        eligible,
        p_sum,
        pools: pools.into_iter().map(Pool::into_sorted).collect(),
        campaign_rows: prepared.campaign_rows.clone(),
        users: scored_users,
        seconds: started.elapsed().as_secs_f64(),
        utilisation: None,
        heap: None,
    }
}

/// The users table of `ctx` split into `partitions` equal row ranges.
pub async fn split_users(ctx: &SessionContext, partitions: usize) -> Result<split::RowSplit, DataFusionError> {
    let scan = ctx.table("users").await?.create_physical_plan().await?;
    split::RowSplit::plan(&scan, partitions, &ctx.task_ctx()).await
}
