//! Choosing each campaign's audience from the scored pools, as the job does
//! (docs/design.md §6): the allocator's input (each pair valued by the
//! configured objective), the allocation, each campaign's members in rank
//! order, and an independent check of the chosen set against every
//! constraint at the exact costs. The job, the A/B and the benchmarks all
//! choose through [`choose`].

use std::collections::HashMap;

use crate::allocate::{self, AllocateError, Allocation, CampaignSpec, Candidates, Limits, Options, Valuation};
use crate::contract::Channel;
use crate::scoring::Scored;
use crate::scoring::eligibility::ActiveCampaign;

/// The allocation and, per campaign, its members as positions in its pool.
pub struct Choice {
    pub allocation: Allocation,
    pub members: Vec<Vec<usize>>,
}

impl Choice {
    /// Each campaign's members as user ids, in rank order.
    pub fn user_ids(&self, scored: &Scored) -> Vec<Vec<i64>> {
        self.members
            .iter()
            .zip(&scored.pools)
            .map(|(members, pool)| members.iter().map(|&m| pool[m].user_id).collect())
            .collect()
    }
}

/// Allocates the scored pools with each pair valued by `objective`, and
/// reads each campaign's members off the allocation.
pub fn choose(scored: &Scored, objective: Valuation, options: &Options) -> Result<Choice, AllocateError> {
    let (specs, table) = allocation_input(scored, objective);
    let allocation = allocate::allocate(&specs, table, options)?;
    let members = members(scored, &allocation.chosen);
    Ok(Choice { allocation, members })
}

/// Campaign specs and the candidate table for the allocator, each pair valued
/// by `objective` (see [`Valuation`]).
pub fn allocation_input(scored: &Scored, objective: Valuation) -> (Vec<CampaignSpec>, Candidates) {
    let specs = scored
        .campaigns
        .iter()
        .map(|c| CampaignSpec {
            id: c.campaign_id.clone(),
            channel: c.channel,
            budget: c.budget,
            min_audience: c.min_audience.max(0) as u64,
        })
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
fn pool_offsets(scored: &Scored) -> Vec<usize> {
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
fn pool_entry(offsets: &[usize], i: usize) -> (usize, usize) {
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
