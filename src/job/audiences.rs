//! From candidate pools to audiences: the allocator's input (each pair valued
//! by the configured objective), an independent check of the chosen set against
//! every constraint (at the exact costs), and the Parquet files of the chosen
//! users, one per campaign, in rank order.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Float32Array, Float64Array, Int64Array, RecordBatch, StringArray};

use super::commit::audience_file;
use super::run::JobError;
use crate::allocate::{CampaignSpec, Candidates, Limits, Valuation};
use crate::contract::{Channel, TASKS, audience_schema};
use crate::scoring::Scored;
use crate::scoring::eligibility::ActiveCampaign;
use crate::storage::Location;

/// Campaign specs and the candidate table for the allocator, each pair valued
/// by `objective` (see [`Valuation`]).
pub fn allocation_input(scored: &Scored, objective: Valuation) -> (Vec<CampaignSpec>, Candidates) {
    let specs = scored
        .campaigns
        .iter()
        .map(|c| CampaignSpec { id: c.campaign_id.clone(), channel: c.channel, budget: c.budget, min_audience: c.min_audience.max(0) as u64 })
        .collect();
    let mut table = Candidates::with_capacity(scored.pools.iter().map(Vec::len).sum());
    for (c, (campaign, pool)) in scored.campaigns.iter().zip(&scored.pools).enumerate() {
        let (cost, mean_p) = (campaign.cost_per_user(), scored.mean_p(c));
        let per_user = campaign.impressions_per_user as f64;
        for candidate in pool {
            let value = objective.value(campaign.priority, per_user, cost, candidate.p_objective as f64, mean_p);
            table.push(candidate.user_id, c as u32, value, cost);
        }
    }
    (specs, table)
}

/// Where each campaign's pool starts in the candidate table, which holds the
/// pools one after another (see [`allocation_input`]).
pub fn pool_offsets(scored: &Scored) -> Vec<usize> {
    scored
        .pools
        .iter()
        .scan(0, |start, pool| {
            let offset = *start;
            *start += pool.len();
            Some(offset)
        })
        .collect()
}

/// The campaign and pool position of candidate `i` of the table that
/// [`allocation_input`] built (`offsets` from [`pool_offsets`]).
pub fn pool_entry(offsets: &[usize], i: usize) -> (usize, usize) {
    let c = offsets.partition_point(|&o| o <= i) - 1;
    (c, i - offsets[c])
}

/// The chosen members of each campaign, as positions in its pool, ascending
/// (pools are best first, so this is rank order: `chosen` is ascending and
/// the table holds the pools one after another).
pub fn members(scored: &Scored, chosen: &[usize]) -> Vec<Vec<usize>> {
    let offsets = pool_offsets(scored);
    let mut per_campaign: Vec<Vec<usize>> = vec![Vec::new(); scored.campaigns.len()];
    for &i in chosen {
        let (c, position) = pool_entry(&offsets, i);
        per_campaign[c].push(position);
    }
    per_campaign
}

/// Constraints the chosen set breaks, counted from the exact costs (the
/// allocator works in single precision, rounded so that this finds none).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Violations {
    /// Campaigns spending more than their budget.
    pub budgets: u64,
    /// Users in more campaigns of a channel than its cap.
    pub caps: u64,
    /// Campaigns served below max(min_audience, privacy floor).
    pub floors: u64,
}

impl Violations {
    pub fn any(&self) -> bool {
        self.budgets + self.caps + self.floors > 0
    }
}

/// Checks the chosen set (`members`, from [`members`]) against budgets, caps and floors.
pub fn violations(scored: &Scored, members: &[Vec<usize>], limits: Limits) -> Violations {
    let mut found = Violations::default();
    let mut per_user: HashMap<(i64, Channel), u32> = HashMap::new();
    for (c, members) in members.iter().enumerate() {
        let campaign = &scored.campaigns[c];
        if spend(campaign, members) > campaign.budget {
            found.budgets += 1;
        }
        let floor = (campaign.min_audience.max(0) as u64).max(limits.privacy_floor);
        if !members.is_empty() && (members.len() as u64) < floor {
            found.floors += 1;
        }
        for &m in members {
            *per_user.entry((scored.pools[c][m].user_id, campaign.channel)).or_default() += 1;
        }
    }
    let cap = |channel| match channel {
        Channel::Ad => limits.max_ads_per_user,
        Channel::Promotion => limits.max_promotions_per_user,
    };
    found.caps = per_user.iter().filter(|((_, channel), n)| **n > cap(*channel)).count() as u64;
    found
}

/// What campaign `campaign` spends on `members`, at the exact cost.
pub fn spend(campaign: &ActiveCampaign, members: &[usize]) -> f64 {
    members.len() as f64 * campaign.cost_per_user()
}

/// Writes one Parquet file per campaign with an audience (`members` from
/// [`members`], in rank order, with their five probabilities from
/// [`crate::scoring::members`]); returns rows written.
pub async fn write_audiences(
    run_dir: &Location,
    scored: &Scored,
    members: &[Vec<usize>],
    probabilities: &[Vec<[f32; 5]>],
) -> Result<u64, JobError> {
    let mut written = 0;
    for (c, (members, probabilities)) in members.iter().zip(probabilities).enumerate() {
        if members.is_empty() {
            continue;
        }
        let campaign = &scored.campaigns[c];
        let pool = &scored.pools[c];
        let n = members.len();
        let per_user = campaign.impressions_per_user as f32;
        let mut columns: Vec<Arc<dyn arrow::array::Array>> = vec![
            Arc::new(StringArray::from(vec![campaign.campaign_id.as_str(); n])),
            Arc::new(Int64Array::from_iter_values(members.iter().map(|&m| pool[m].user_id))),
            Arc::new(Int64Array::from_iter_values(1..=n as i64)),
            Arc::new(Float32Array::from_iter_values(members.iter().map(|&m| pool[m].p_objective))),
            Arc::new(Float32Array::from_iter_values(members.iter().map(|&m| pool[m].p_objective * per_user))),
            Arc::new(Float64Array::from(vec![campaign.cost_per_user(); n])),
        ];
        for task in 0..TASKS.len() {
            columns.push(Arc::new(Float32Array::from_iter_values(probabilities.iter().map(|p| p[task]))));
        }
        let batch = RecordBatch::try_new(audience_schema(), columns).expect("columns match the schema");
        let file = run_dir.join(&audience_file(&campaign.campaign_id));
        let mut writer = file.parquet_writer(audience_schema())?;
        writer.write(&batch).await?;
        writer.finish().await?;
        if written == 0 {
            super::run::failpoint("mid-write")?;
        }
        written += n as u64;
    }
    Ok(written)
}
