//! The fused, factorised scoring operator for one partition of users
//! (docs/design.md §5). Per user batch: the user part of the first layer once
//! per user (libtorch); per eligible (user, campaign) pair, one row of first-
//! layer activations (user part + the campaign's precomputed part + the pair
//! part, through the ReLU) appended to the tile of the one head the campaign's
//! objective needs; a full tile runs the rest of the network for that head
//! ([`crate::model::fused`]). Each pair's probability goes into its campaign's
//! fixed-point sum (the mean the allocation objective compares with) and, if
//! it can still make the pool, into the pool. The five task probabilities the
//! audiences carry are computed after allocation, for the members only
//! ([`super::members`]). Memory: one user batch, one tile per head, the pools.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::DataType;
use tch::Tensor;

use super::eligibility::{ActiveCampaign, Eligibility, UserFacts};
use super::follows::{FollowCache, FollowsError, FollowsIndex};
use super::pool::{Candidate, Pool};
use crate::contract::TASKS;
use crate::exit_code::ExitCode;
use crate::hashing::hash_bytes;
use crate::model::features::{CampaignRows, Columns, FeatureError, UserRows, encode_users, pair_features};
use crate::model::fused::{Kernel, Precision, PrecisionError, Tile};
use crate::model::network::{Factorised, PairTerms};
use crate::model::{Model, ModelError};

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
    /// Where the follow exclusions are read from, per batch.
    pub follows: FollowsIndex,
    pub model: ModelParts,
    /// Pool size per campaign.
    pub capacities: Vec<usize>,
    /// Hour of day the pair features assume.
    pub hour: u8,
    /// The number format of the per-pair layers.
    pub precision: Precision,
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
    // Rounds half up, as `round` does for p ≥ 0, without a libm call: the
    // sum is exact in f64 (below 2⁵³).
    (p as f64 * FIXED_POINT_ONE + 0.5) as u64
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
}

impl PartitionResult {
    /// Nothing found yet, with `prepared`'s pool sizes.
    pub fn empty(prepared: &Prepared) -> PartitionResult {
        let campaigns = prepared.campaigns.len();
        PartitionResult {
            pools: prepared.capacities.iter().map(|&c| Pool::new(c)).collect(),
            eligible: vec![0; campaigns],
            p_sum: vec![0; campaigns],
            users: 0,
        }
    }
}

/// The first layer's constant terms per campaign, with the run's hour and
/// the language match folded in: row `2c + match` is campaign `c`'s part plus
/// the pair part of every pair feature but the genre affinity, whose
/// direction is `affinity`.
struct CampaignTerms {
    rows: Vec<f32>,
    affinity: Vec<f32>,
    width: usize,
}

impl CampaignTerms {
    fn new(campaign_parts: &[f32], terms: &PairTerms, hour: u8) -> CampaignTerms {
        let width = terms.shift.len();
        let mut rows = Vec::with_capacity(campaign_parts.len() * 2);
        for part in campaign_parts.chunks_exact(width) {
            for language_match in [false, true] {
                // The pair features with no affinity: what every pair of this
                // campaign and language match adds besides it.
                let features = pair_features(0.0, language_match, hour);
                rows.extend((0..width).map(|j| {
                    let pair: f32 = features.iter().zip(&terms.scale).map(|(p, scale)| p * scale[j]).sum();
                    part[j] + terms.shift[j] + pair
                }));
            }
        }
        CampaignTerms { rows, affinity: terms.scale[0].clone(), width }
    }

    fn row(&self, campaign: usize, language_match: bool) -> &[f32] {
        let at = (2 * campaign + language_match as usize) * self.width;
        &self.rows[at..at + self.width]
    }
}

pub struct PartitionScorer {
    prepared: Arc<Prepared>,
    // Keeps the variables alive; `factorised` shares them.
    _model: Model,
    factorised: Factorised,
    kernel: Kernel,
    terms: CampaignTerms,
    /// The head each campaign's objective needs.
    heads: Vec<usize>,
    /// One tile per head.
    tiles: Vec<Tile>,
    campaign_seeds: Vec<u64>,
    user_parts: Vec<f32>,
    follows: FollowCache,
    result: PartitionResult,
    eligibility_only: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ScoreBatchError {
    #[error(transparent)]
    Feature(#[from] FeatureError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Precision(#[from] PrecisionError),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    #[error(transparent)]
    Follows(#[from] FollowsError),
}

impl ScoreBatchError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            ScoreBatchError::Feature(_) | ScoreBatchError::Precision(_) => ExitCode::Invalid,
            ScoreBatchError::Model(e) => e.exit_code(),
            ScoreBatchError::Torch(_) => ExitCode::Internal,
            ScoreBatchError::Follows(e) => e.exit_code(),
        }
    }
}

impl PartitionScorer {
    /// A scorer with its own copy of the weights; with `eligibility_only` it
    /// only counts eligible pairs.
    pub fn new(prepared: Arc<Prepared>, eligibility_only: bool) -> Result<PartitionScorer, ScoreBatchError> {
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
        let campaign_parts = Vec::<f32>::try_from(campaign_parts.contiguous().view([-1]))?;
        let terms = CampaignTerms::new(&campaign_parts, &factorised.pair_terms(), prepared.hour);
        let kernel = Kernel::new(&factorised.layers(), prepared.precision)?;
        let heads: Vec<usize> = prepared.campaigns.iter().map(|c| c.objective.head(c.channel)).collect();
        let tiles = (0..TASKS.len()).map(|_| kernel.tile()).collect();
        Ok(PartitionScorer {
            campaign_seeds: prepared.campaigns.iter().map(|c| hash_bytes(c.campaign_id.as_bytes())).collect(),
            result: PartitionResult::empty(&prepared),
            heads,
            tiles,
            kernel,
            terms,
            user_parts: Vec::new(),
            follows: FollowCache::default(),
            eligibility_only,
            prepared,
            _model: model,
            factorised,
        })
    }

    /// Scores a batch of users (the users table's columns).
    pub async fn push(&mut self, batch: &RecordBatch) -> Result<(), ScoreBatchError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let prepared = Arc::clone(&self.prepared);
        let users = encode_users(&prepared.model.spec, "users", batch)?;
        self.result.users += batch.num_rows() as u64;
        cover(&prepared, &mut self.follows, &users.user_id).await?;
        if self.eligibility_only {
            let eligible = &mut self.result.eligible;
            return Ok(for_each_eligible(&prepared, &self.follows, batch, &users, |_, c| eligible[c] += 1)?);
        }
        tch::set_num_threads(SCORING_THREADS);
        let width = self.terms.width;
        self.user_parts = user_parts(&self.factorised, &users.rows, width)?;
        let follows = std::mem::take(&mut self.follows);
        let scored = for_each_eligible(&prepared, &follows, batch, &users, |row, c| {
            self.result.eligible[c] += 1;
            let head = self.heads[c];
            let genre = prepared.campaign_rows.genre[c];
            let language_match = users.language[row] == prepared.campaign_rows.language[c];
            self.tiles[head].push_pair(
                &self.user_parts[row * width..(row + 1) * width],
                self.terms.row(c, language_match),
                users.affinity(row, genre),
                &self.terms.affinity,
                c as u32,
                users.user_id[row],
            );
            if self.tiles[head].is_full() {
                self.run_tile(head);
            }
        });
        self.follows = follows;
        Ok(scored?)
    }

    /// Runs the tile of `head`: every pair's probability into its campaign's
    /// sum, and into its pool if it can still enter it.
    fn run_tile(&mut self, head: usize) {
        let (prepared, result, seeds) = (&self.prepared, &mut self.result, &self.campaign_seeds);
        self.kernel.run(head, &mut self.tiles[head], |probabilities, campaigns, users| {
            for ((&p, &c), &user_id) in probabilities.iter().zip(campaigns).zip(users) {
                let c = c as usize;
                result.p_sum[c] += to_fixed(p);
                let pool = &mut result.pools[c];
                let threshold = match (pool.threshold(), prepared.shared_threshold(c)) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
                if threshold.is_some_and(|t| p < t) {
                    continue;
                }
                pool.offer(Candidate::new(user_id, seeds[c], p));
                if let Some(reached) = pool.threshold() {
                    prepared.raise_threshold(c, reached);
                }
            }
        });
    }

    /// The most follow exclusions held at once, and the follows row groups read.
    pub fn follows_read(&self) -> (u64, u64) {
        (self.follows.peak, self.follows.reads)
    }

    pub fn finish(mut self) -> PartitionResult {
        for head in 0..self.tiles.len() {
            self.run_tile(head);
        }
        self.result
    }
}

/// Users whose first-layer part one GEMM computes. A fixed shape, padded
/// with zeros, so that a user's part does not depend on how many users its
/// batch holds (a table of one-user files gives batches of one, which
/// libtorch computes with another kernel and other rounding).
const USER_BLOCK: usize = 256;

/// The first-layer part of every user of `rows`, `width` values each.
fn user_parts(
    factorised: &Factorised,
    rows: &crate::model::features::Rows,
    width: usize,
) -> Result<Vec<f32>, tch::TchError> {
    let n = rows.n;
    let (cat_width, dense_width) = (rows.cat.len() / n.max(1), rows.dense.len() / n.max(1));
    let mut out = vec![0.0; n * width];
    let mut block = vec![0.0; USER_BLOCK * width];
    for start in (0..n).step_by(USER_BLOCK) {
        let m = (n - start).min(USER_BLOCK);
        let mut cat = vec![0i64; USER_BLOCK * cat_width];
        cat[..m * cat_width].copy_from_slice(&rows.cat[start * cat_width..(start + m) * cat_width]);
        let mut dense = vec![0f32; USER_BLOCK * dense_width];
        dense[..m * dense_width].copy_from_slice(&rows.dense[start * dense_width..(start + m) * dense_width]);
        let cat = Tensor::from_slice(&cat).view([USER_BLOCK as i64, cat_width as i64]);
        let dense = Tensor::from_slice(&dense).view([USER_BLOCK as i64, dense_width as i64]);
        let parts = tch::no_grad(|| factorised.user_part(&cat, &dense)).contiguous();
        parts.f_copy_data(&mut block, USER_BLOCK * width)?;
        out[start * width..(start + m) * width].copy_from_slice(&block[..m * width]);
    }
    Ok(out)
}

/// Makes `follows` hold the exclusions of the users `user_ids`.
pub async fn cover(prepared: &Prepared, follows: &mut FollowCache, user_ids: &[i64]) -> Result<(), FollowsError> {
    let (Some(&min), Some(&max)) = (user_ids.iter().min(), user_ids.iter().max()) else {
        return Ok(());
    };
    follows.cover(&prepared.follows, min, max).await
}

/// Calls `pair(row, campaign)` for every eligible pair of a batch of users
/// (the users table's columns), user by user; `follows` must cover the
/// batch ([`cover`]).
pub fn for_each_eligible(
    prepared: &Prepared,
    follows: &FollowCache,
    batch: &RecordBatch,
    users: &UserRows,
    mut pair: impl FnMut(usize, usize),
) -> Result<(), FeatureError> {
    let columns = Columns::new("users", batch);
    let strings = |name: &str| columns.get(name, &DataType::Utf8);
    let booleans = |name: &str| columns.get(name, &DataType::Boolean);
    let (country, age, platform, language) =
        (strings("country")?, strings("age_bucket")?, strings("platform")?, strings("language")?);
    let (country, age, platform, language) =
        (country.as_string::<i32>(), age.as_string::<i32>(), platform.as_string::<i32>(), language.as_string::<i32>());
    let (premium, opt_out) = (booleans("is_premium")?, booleans("ads_opt_out")?);
    let (premium, opt_out) = (premium.as_boolean(), opt_out.as_boolean());
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
        let mut campaigns = prepared.eligibility.campaigns_for(&facts);
        follows.for_each(&prepared.follows, facts.user_id, |c| campaigns.remove(c));
        for c in campaigns.iter() {
            pair(row, c);
        }
    }
    Ok(())
}

/// Per campaign, the rows of a user batch eligible for it, and their pair
/// features (row-major, 4 per row).
pub type EligiblePairs = (Vec<Vec<i64>>, Vec<Vec<f32>>);

/// The eligible pairs of a batch of users (the users table's columns).
pub async fn eligible_pairs(
    prepared: &Prepared,
    follows: &mut FollowCache,
    batch: &RecordBatch,
    users: &UserRows,
) -> Result<EligiblePairs, ScoreBatchError> {
    cover(prepared, follows, &users.user_id).await?;
    let campaigns = prepared.campaigns.len();
    let mut rows: Vec<Vec<i64>> = vec![Vec::new(); campaigns];
    let mut pairs: Vec<Vec<f32>> = vec![Vec::new(); campaigns];
    for_each_eligible(prepared, follows, batch, users, |row, c| {
        let genre = prepared.campaign_rows.genre[c];
        let same_language = users.language[row] == prepared.campaign_rows.language[c];
        rows[c].push(row as i64);
        pairs[c].extend(pair_features(users.affinity(row, genre), same_language, prepared.hour));
    })?;
    Ok((rows, pairs))
}
