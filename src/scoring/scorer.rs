//! The fused, factorised scoring operator for one partition of users
//! (docs/design.md §5). Per user batch: the user part of the first layer once
//! per user; per campaign, its eligible users' parts plus the campaign's
//! precomputed part plus the pair part, then the rest of the network for the
//! one head the campaign's objective needs; the campaign's pool keeps its best
//! users, and the campaign's sum of objective probabilities over all its
//! eligible users gives the mean that the allocation objective compares with.
//! Users that enter a pool also get the other four heads (they are few
//! once pools are full), so the candidate table carries all five
//! probabilities. Memory: one batch × campaigns plus the pools.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::DataType;
use tch::Tensor;

use super::eligibility::{ActiveCampaign, Eligibility, UserFacts};
use super::pool::{Candidate, Pool};
use crate::hashing::hash_bytes;
use crate::model::features::{CampaignRows, Columns, FeatureError, UserRows, encode_users, pair_features};
use crate::contract::TASKS;
use crate::model::network::Factorised;
use crate::model::{Model, ModelError};
use crate::exit_code::ExitCode;

/// libtorch intra-op threads while scoring, set on the thread that scores (the
/// setting is per thread). One: how threads split a matrix product changes its
/// float rounding, so with more the probabilities would depend on the
/// machine's cores and the two engines could commit different audiences;
/// partitions (tasks on a cluster) give the parallelism.
pub const SCORING_THREADS: i32 = 1;

/// What scoring needs of a model, as plain data (a `Model` holds libtorch
/// tensors and cannot be shared between threads).
#[derive(Clone)]
pub struct ModelParts {
    pub spec: crate::model::features::FeatureSpec,
    pub architecture: crate::model::network::Architecture,
    pub weights: Vec<u8>,
}

impl ModelParts {
    pub fn of(model: &Model) -> Result<ModelParts, ModelError> {
        Ok(ModelParts { spec: model.spec.clone(), architecture: model.architecture.clone(), weights: model.weights()? })
    }
}

/// Everything the partitions share (plain data: each partition builds its own
/// tensors from it, since a `tch::Tensor` is `Send` but not `Sync`).
pub struct Prepared {
    pub campaigns: Vec<ActiveCampaign>,
    pub campaign_rows: CampaignRows,
    pub eligibility: Eligibility,
    pub model: ModelParts,
    /// Pool size per campaign.
    pub capacities: Vec<usize>,
    /// Hour of day the pair features assume.
    pub hour: u8,
    /// Per campaign, the best threshold any partition's full pool has reached
    /// (an f32 probability's bits; probabilities are ≥ 0, so bit order is
    /// numeric order). A pair below it cannot be in the merged pool, whichever
    /// partition sees it.
    pub thresholds: Vec<AtomicU32>,
}

impl Prepared {
    fn shared_threshold(&self, campaign: usize) -> Option<f32> {
        let bits = self.thresholds[campaign].load(Ordering::Relaxed);
        (bits != 0).then(|| f32::from_bits(bits))
    }

    fn raise_threshold(&self, campaign: usize, p: f32) {
        if p > 0.0 {
            self.thresholds[campaign].fetch_max(p.to_bits(), Ordering::Relaxed);
        }
    }
}

/// Probabilities are summed in fixed point (units of 2⁻³²), so the sum is
/// exact and the same for any split of the users into partitions and any
/// order of merging: a campaign's mean, and so every value derived from it,
/// is identical on both engines. A u64 holds the sum of 4 billion pairs.
const FIXED_POINT_ONE: f64 = 4_294_967_296.0;

pub(crate) fn to_fixed(p: f32) -> u64 {
    (p as f64 * FIXED_POINT_ONE).round() as u64
}

/// The mean probability behind a fixed-point sum over `count` pairs.
pub fn mean_of_fixed(sum: u64, count: u64) -> f64 {
    if count == 0 { 0.0 } else { sum as f64 / FIXED_POINT_ONE / count as f64 }
}

/// What one partition found.
pub struct PartitionResult {
    pub pools: Vec<Pool>,
    pub eligible: Vec<u64>,
    /// Per campaign, the fixed-point sum of the objective probability over
    /// its eligible pairs (see [`mean_of_fixed`]).
    pub p_sum: Vec<u64>,
    pub users: u64,
    /// Pairs that entered a pool and so got all five heads.
    pub all_head_pairs: u64,
}

pub struct PartitionScorer {
    prepared: Arc<Prepared>,
    // Keeps the variables alive; `factorised` shares them.
    _model: Model,
    factorised: Factorised,
    campaign_parts: Tensor,
    campaign_seeds: Vec<u64>,
    pools: Vec<Pool>,
    eligible: Vec<u64>,
    p_sum: Vec<u64>,
    users: u64,
    all_head_pairs: u64,
    eligibility_only: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ScoreBatchError {
    #[error(transparent)]
    Feature(#[from] FeatureError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

impl ScoreBatchError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            ScoreBatchError::Feature(_) => ExitCode::Invalid,
            ScoreBatchError::Model(e) => e.exit_code(),
            ScoreBatchError::Torch(_) => ExitCode::Internal,
        }
    }
}

impl PartitionScorer {
    /// A scorer with its own copy of the weights; with `eligibility_only` it
    /// only counts eligible pairs.
    pub fn new(prepared: Arc<Prepared>, eligibility_only: bool) -> Result<PartitionScorer, ModelError> {
        tch::set_num_threads(SCORING_THREADS);
        let mut model = Model::new(prepared.model.spec.clone(), prepared.model.architecture.clone());
        model.load_weights(&prepared.model.weights)?;
        let factorised = model.network.factorised();
        let rows = &prepared.campaign_rows.rows;
        // Widths from the spec, not inferred: a date with no active campaign has zero rows.
        let side = &prepared.model.spec.campaign;
        let cat = Tensor::from_slice(&rows.cat).view([rows.n as i64, side.cat_width() as i64]);
        let dense = Tensor::from_slice(&rows.dense).view([rows.n as i64, side.dense.len() as i64]);
        let campaign_parts = tch::no_grad(|| factorised.campaign_part(&cat, &dense));
        let campaigns = prepared.campaigns.len();
        Ok(PartitionScorer {
            campaign_seeds: prepared.campaigns.iter().map(|c| hash_bytes(c.campaign_id.as_bytes())).collect(),
            pools: prepared.capacities.iter().map(|&c| Pool::new(c)).collect(),
            eligible: vec![0; campaigns],
            p_sum: vec![0; campaigns],
            users: 0,
            all_head_pairs: 0,
            eligibility_only,
            prepared,
            _model: model,
            factorised,
            campaign_parts,
        })
    }

    /// Scores a batch of users (the users table's columns).
    pub fn push(&mut self, batch: &RecordBatch) -> Result<(), ScoreBatchError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let prepared = Arc::clone(&self.prepared);
        let users = encode_users(&prepared.model.spec, "users", batch)?;
        let (rows, pairs) = eligible_pairs(&prepared, batch, &users)?;
        self.users += batch.num_rows() as u64;
        for (count, rows) in self.eligible.iter_mut().zip(&rows) {
            *count += rows.len() as u64;
        }
        if self.eligibility_only {
            return Ok(());
        }
        tch::set_num_threads(SCORING_THREADS);
        tch::no_grad(|| {
            let n = users.rows.n as i64;
            let cat = Tensor::from_slice(&users.rows.cat).view([n, -1]);
            let dense = Tensor::from_slice(&users.rows.dense).view([n, -1]);
            let user_parts = self.factorised.user_part(&cat, &dense);
            for (c, (rows, pairs)) in rows.iter().zip(&pairs).enumerate() {
                if !rows.is_empty() {
                    self.score_campaign(c, &users, &user_parts, rows, pairs);
                }
            }
        });
        Ok(())
    }

    fn score_campaign(&mut self, c: usize, users: &UserRows, user_parts: &Tensor, rows: &[i64], pairs: &[f32]) {
        let campaign = &self.prepared.campaigns[c];
        let head = campaign.objective.head(campaign.channel);
        let k = rows.len() as i64;
        let index = Tensor::from_slice(rows);
        let pair = Tensor::from_slice(pairs).view([k, -1]);
        let first = self.factorised.combine(user_parts.index_select(0, &index), &self.campaign_parts.get(c as i64), &pair);
        let shared = self.factorised.shared(first);
        let all_heads: Vec<usize> = (0..TASKS.len()).collect();
        let probabilities = |shared: &Tensor| {
            let all = self.factorised.heads(shared, &all_heads).sigmoid().contiguous();
            Vec::<f32>::try_from(all.view([-1])).expect("float probabilities")
        };
        // While no threshold is known (this partition's pool not full, no other
        // partition's either) every row enters the pool and needs all five
        // heads; after that the objective head alone decides who may enter,
        // and only batches with a row that may enter need the other heads.
        // They run on all the batch's rows even then: libtorch rounds a row's
        // result differently depending on the rows computed with it, and which
        // rows pass depends on thresholds that race between partitions, so
        // probabilities computed on the survivors alone would differ in their
        // last bit from run to run and between engines.
        let local = self.pools[c].threshold();
        let threshold = match (local, self.prepared.shared_threshold(c)) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        // The objective head on every row: its sum gives the campaign's mean
        // (computed the same way on every batch, whichever path it takes, so
        // the sum does not depend on racing thresholds).
        let p = self.factorised.heads(&shared, &[head]).sigmoid().view([-1]);
        let p = Vec::<f32>::try_from(&p).expect("float probabilities");
        self.p_sum[c] += p.iter().map(|&p| to_fixed(p)).sum::<u64>();
        let survivors: Vec<usize> = match threshold {
            None => (0..rows.len()).collect(),
            Some(threshold) => (0..rows.len()).filter(|&i| p[i] >= threshold).collect(),
        };
        if survivors.is_empty() {
            return;
        }
        let all = probabilities(&shared);
        self.all_head_pairs += survivors.len() as u64;
        for &i in &survivors {
            let probabilities: [f32; 5] = all[i * 5..i * 5 + 5].try_into().expect("five heads");
            let p = probabilities[head];
            let user_id = users.user_id[rows[i] as usize];
            self.pools[c].offer(Candidate::new(user_id, self.campaign_seeds[c], p, probabilities));
        }
        if let Some(reached) = self.pools[c].threshold() {
            self.prepared.raise_threshold(c, reached);
        }
    }

    pub fn finish(self) -> PartitionResult {
        PartitionResult {
            pools: self.pools,
            eligible: self.eligible,
            p_sum: self.p_sum,
            users: self.users,
            all_head_pairs: self.all_head_pairs,
        }
    }
}

/// Per campaign, the rows of a user batch eligible for it, and their pair
/// features (row-major, 4 per row).
pub type EligiblePairs = (Vec<Vec<i64>>, Vec<Vec<f32>>);

/// The eligible pairs of a batch of users (the users table's columns).
pub fn eligible_pairs(prepared: &Prepared, batch: &RecordBatch, users: &UserRows) -> Result<EligiblePairs, FeatureError> {
    let columns = Columns::new("users", batch);
    let strings = |name: &str| columns.get(name, &DataType::Utf8);
    let booleans = |name: &str| columns.get(name, &DataType::Boolean);
    let (country, age, platform, language) =
        (strings("country")?, strings("age_bucket")?, strings("platform")?, strings("language")?);
    let (country, age, platform, language) =
        (country.as_string::<i32>(), age.as_string::<i32>(), platform.as_string::<i32>(), language.as_string::<i32>());
    let (premium, opt_out) = (booleans("is_premium")?, booleans("ads_opt_out")?);
    let (premium, opt_out) = (premium.as_boolean(), opt_out.as_boolean());
    let campaigns = prepared.campaigns.len();
    let mut rows: Vec<Vec<i64>> = vec![Vec::new(); campaigns];
    let mut pairs: Vec<Vec<f32>> = vec![Vec::new(); campaigns];
    for row in 0..batch.num_rows() {
        let facts = UserFacts {
            user_id: users.user_id[row],
            country: country.value(row),
            age_bucket: age.value(row),
            platform: platform.value(row),
            language: language.value(row),
            is_premium: premium.value(row),
            ads_opt_out: opt_out.value(row),
        };
        for c in prepared.eligibility.campaigns_for(&facts).iter() {
            let genre = prepared.campaign_rows.genre[c];
            let same_language = users.language[row] == prepared.campaign_rows.language[c];
            rows[c].push(row as i64);
            pairs[c].extend(pair_features(users.affinity(row, genre), same_language, prepared.hour));
        }
    }
    Ok((rows, pairs))
}
