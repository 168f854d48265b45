//! One arm of the test on one half world: who ranks the users (a trained
//! model through the job's own scoring, the world's true probabilities, or a
//! seeded random draw), then the job's allocation with the job's default
//! config. The oracle and random arms use the job's eligibility rules and
//! candidate pools too; only the score of a pair differs.

use std::sync::Arc;

use arrow::array::RecordBatch;
use chrono::NaiveDate;
use datafusion::prelude::col;

use super::{AbError, campaign_in_world};
use crate::hashing::{hash_bytes, splitmix64};
use crate::job::config::JobConfig;
use crate::model::Model;
use crate::model::features::encode_users;
use crate::scoring::pool::Candidate;
use crate::scoring::scorer::{PartitionResult, eligible_pairs, to_fixed};
use crate::scoring::{ModelParts, Scored, USER_COLUMNS, merge, prepare, score};
use crate::storage::Location;
use crate::world::World;

/// What ranks the users of an arm.
pub enum Ranker<'a> {
    Model(&'a Model),
    Reference(Reference<'a>),
}

/// The arms that score pairs without a model.
#[derive(Clone, Copy)]
pub enum Reference<'a> {
    /// The world's true probabilities (the ceiling).
    Oracle(&'a World),
    /// Uniform draws, seeded (the floor).
    Random(u64),
}

/// An arm's audiences: per campaign (in the scored campaigns' order) the
/// chosen user ids; and the campaigns as the arm saw them (half budgets).
pub struct Chosen {
    pub scored: Scored,
    pub members: Vec<Vec<i64>>,
}

/// The arm's audiences on the world at `half`, ranked by `ranker`, allocated
/// as the job would with `config` (`features` encodes the campaigns when the
/// ranker is not a model; its weights are not used).
pub async fn choose(
    half: &Location,
    ranker: &Ranker<'_>,
    features: &Model,
    config: &JobConfig,
    date: NaiveDate,
) -> Result<Chosen, AbError> {
    let options = config.score_options(date);
    let scored = match ranker {
        Ranker::Model(model) => score(half, model, &options).await?,
        Ranker::Reference(reference) => score_by(half, features, &options, *reference).await?,
    };
    let options = config.allocate_options(Vec::new());
    let members = crate::choose::choose(&scored, config.allocation.objective, &options)?.user_ids(&scored);
    Ok(Chosen { scored, members })
}

/// The job's candidate pools with each eligible pair scored by the world's
/// truth or a seeded draw instead of a model: the same eligibility, pool
/// sizes and order.
async fn score_by(
    half: &Location,
    features: &Model,
    options: &crate::scoring::ScoreOptions,
    reference: Reference<'_>,
) -> Result<Scored, AbError> {
    let started = std::time::Instant::now();
    let (ctx, prepared) = prepare(half, &ModelParts::of(features)?, options).await?;
    let batches: Vec<RecordBatch> = ctx.table("users").await?.select(USER_COLUMNS.map(col).to_vec())?.collect().await?;
    let campaigns = &prepared.campaigns;
    let mut result = PartitionResult::empty(&prepared);
    let seeds: Vec<u64> = campaigns.iter().map(|c| hash_bytes(c.campaign_id.as_bytes())).collect();
    let heads: Vec<usize> = campaigns.iter().map(|c| c.objective.head(c.channel)).collect();
    let world_campaigns: Vec<usize> = match reference {
        Reference::Oracle(world) => {
            campaigns.iter().map(|c| campaign_in_world(world, &c.campaign_id)).collect::<Result<_, _>>()?
        }
        Reference::Random(_) => Vec::new(),
    };
    let mut follows = crate::scoring::follows::FollowCache::default();
    for batch in &batches {
        let users = encode_users(&features.spec, "users", batch)?;
        let (rows, _) =
            eligible_pairs(&prepared, &mut follows, batch, &users).await.map_err(crate::scoring::ScoreError::from)?;
        result.users += batch.num_rows() as u64;
        let mut truths: Vec<Option<crate::world::User>> = vec![None; batch.num_rows()];
        for (c, rows) in rows.iter().enumerate() {
            for &row in rows {
                let user_id = users.user_id[row as usize];
                let p = match reference {
                    Reference::Oracle(world) => {
                        let user = truths[row as usize].get_or_insert_with(|| world.user(user_id as u64 - 1));
                        world.params.probabilities(&world.exposure(user, world_campaigns[c], options.hour))[heads[c]]
                    }
                    Reference::Random(seed) => uniform(seed, user_id, seeds[c]),
                };
                result.eligible[c] += 1;
                result.p_sum[c] += to_fixed(p);
                result.pools[c].offer(Candidate::new(user_id, seeds[c], p));
            }
        }
    }
    Ok(merge(Arc::clone(&prepared), vec![result], started))
}

/// A uniform draw in [0, 1) for (seed, user, campaign).
fn uniform(seed: u64, user_id: i64, campaign_seed: u64) -> f32 {
    let bits = splitmix64(seed ^ splitmix64(user_id as u64 ^ campaign_seed));
    (bits >> 40) as f32 / (1u64 << 24) as f32
}
