//! From candidate pools to audiences: the allocator's input (each pair valued
//! by the configured objective) and the Parquet files of the chosen users, one
//! per campaign, in rank order.

use std::sync::Arc;

use arrow::array::{Float32Array, Float64Array, Int64Array, RecordBatch, StringArray};

use super::run::JobError;
use crate::allocate::{CampaignSpec, Candidates, Valuation};
use crate::contract::{TASKS, audience_schema};
use crate::scoring::Scored;
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

/// Writes one Parquet file per campaign with an audience; returns rows written.
pub async fn write_audiences(run_dir: &Location, scored: &Scored, table: &Candidates, chosen: &[usize]) -> Result<u64, JobError> {
    let offsets = pool_offsets(scored);
    let mut per_campaign: Vec<Vec<usize>> = vec![Vec::new(); scored.campaigns.len()];
    for &i in chosen {
        let c = table.campaign[i] as usize;
        per_campaign[c].push(i - offsets[c]);
    }
    let mut written = 0;
    for (c, mut members) in per_campaign.into_iter().enumerate() {
        if members.is_empty() {
            continue;
        }
        members.sort_unstable(); // pools are best first, so this is rank order
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
            columns.push(Arc::new(Float32Array::from_iter_values(members.iter().map(|&m| pool[m].probabilities[task]))));
        }
        let batch = RecordBatch::try_new(audience_schema(), columns).expect("columns match the schema");
        let file = run_dir.join(&format!("audiences/campaign_id={}/part-00000.parquet", campaign.campaign_id));
        let mut writer = file.parquet_writer(audience_schema())?;
        writer.write(&batch).await?;
        writer.finish().await?;
        written += n as u64;
    }
    Ok(written)
}
