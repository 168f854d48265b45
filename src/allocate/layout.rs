//! The candidates as the solvers read them: validated, grouped by user
//! (ascending id, then campaign) in compact columns that a price iteration
//! streams through once, with an index by campaign for the passes that work
//! campaign by campaign. Built from the caller's [`Candidates`], whose columns
//! are released as their grouped copies are made, so the two never both live
//! in full.

use rayon::prelude::*;

use super::{AllocateError, CampaignSpec, Candidates};

pub(crate) struct Layout {
    /// User id of each user group, ascending.
    pub user_ids: Vec<i64>,
    /// Group g holds positions `user_start[g]..user_start[g + 1]`.
    pub user_start: Vec<u32>,
    /// Per position: campaign index, value and cost.
    pub campaign: Vec<u32>,
    pub value: Vec<f32>,
    pub cost: Vec<f32>,
    /// Per position: its user group.
    pub group: Vec<u32>,
    /// Per position: its index in the caller's input (`None`: the input was
    /// already grouped, so positions are input indices).
    source: Option<Vec<u32>>,
    /// Positions of campaign c, ascending: `by_campaign[campaign_start[c]..campaign_start[c + 1]]`.
    by_campaign: Vec<u32>,
    campaign_start: Vec<u32>,
}

impl Layout {
    /// Checks the candidate table and builds the layout. Long: the checks,
    /// the sort by (user, campaign), the per-user groups and the per-campaign
    /// index are steps over the same moved-in columns, each freeing what the
    /// next no longer needs (`drop`), which split functions would hide.
    pub fn new(campaigns: &[CampaignSpec], candidates: Candidates) -> Result<Layout, AllocateError> {
        let Candidates { user, campaign, value, cost } = candidates;
        let n = user.len();
        if campaign.len() != n || value.len() != n || cost.len() != n {
            return Err(AllocateError::LengthMismatch {
                user: n,
                campaign: campaign.len(),
                value: value.len(),
                cost: cost.len(),
            });
        }
        assert!(n < u32::MAX as usize, "more than 4 billion candidates");
        for spec in campaigns {
            if !spec.budget.is_finite() || spec.budget < 0.0 {
                return Err(AllocateError::BadBudget { campaign: spec.id.clone(), budget: spec.budget });
            }
        }
        if let Some(i) = (0..n).into_par_iter().position_first(|i| {
            campaign[i] as usize >= campaigns.len() || !value[i].is_finite() || !cost[i].is_finite() || cost[i] < 0.0
        }) {
            let Some(spec) = campaigns.get(campaign[i] as usize) else {
                return Err(AllocateError::UnknownCampaign {
                    user: user[i],
                    index: campaign[i],
                    campaigns: campaigns.len(),
                });
            };
            let bad = |what, number: f32| AllocateError::BadNumber {
                user: user[i],
                campaign: spec.id.clone(),
                what,
                number: number as f64,
            };
            return Err(if value[i].is_finite() { bad("cost", cost[i]) } else { bad("value", value[i]) });
        }

        let key = |i: usize| (user[i], campaign[i]);
        let grouped = (1..n).into_par_iter().all(|i| key(i - 1) <= key(i));
        let source: Option<Vec<u32>> = (!grouped).then(|| {
            let mut keyed: Vec<(i64, u32, u32)> =
                (0..n).into_par_iter().map(|i| (user[i], campaign[i], i as u32)).collect();
            keyed.par_sort_unstable();
            keyed.into_par_iter().map(|(_, _, i)| i).collect()
        });
        let order = source.as_deref();
        let (user, campaign, value, cost) =
            (gather(user, order), gather(campaign, order), gather(value, order), gather(cost, order));
        if let Some(i) =
            (1..n).into_par_iter().position_first(|i| user[i - 1] == user[i] && campaign[i - 1] == campaign[i])
        {
            return Err(AllocateError::DuplicatePair {
                user: user[i],
                campaign: campaigns[campaign[i] as usize].id.clone(),
            });
        }

        let mut user_ids = Vec::new();
        let mut user_start = Vec::new();
        let mut group = Vec::with_capacity(n);
        for i in 0..n {
            if i == 0 || user[i - 1] != user[i] {
                user_ids.push(user[i]);
                user_start.push(i as u32);
            }
            group.push((user_ids.len() - 1) as u32);
        }
        user_start.push(n as u32);
        drop(user);

        // A counting sort of the positions by campaign.
        let mut campaign_start = vec![0u32; campaigns.len() + 1];
        for &c in &campaign {
            campaign_start[c as usize + 1] += 1;
        }
        for c in 0..campaigns.len() {
            campaign_start[c + 1] += campaign_start[c];
        }
        let mut next = campaign_start.clone();
        let mut by_campaign = vec![0u32; n];
        for (i, &c) in campaign.iter().enumerate() {
            by_campaign[next[c as usize] as usize] = i as u32;
            next[c as usize] += 1;
        }
        Ok(Layout { user_ids, user_start, campaign, value, cost, group, source, by_campaign, campaign_start })
    }

    pub fn len(&self) -> usize {
        self.campaign.len()
    }

    /// The positions of campaign `c`, ascending.
    pub fn of_campaign(&self, c: usize) -> &[u32] {
        &self.by_campaign[self.campaign_start[c] as usize..self.campaign_start[c + 1] as usize]
    }

    /// The caller's index of position `i`.
    pub fn source(&self, i: usize) -> usize {
        self.source.as_ref().map_or(i, |order| order[i] as usize)
    }
}

/// `column` in `order` (unchanged without one); the input is released.
fn gather<T: Copy + Send + Sync>(column: Vec<T>, order: Option<&[u32]>) -> Vec<T> {
    match order {
        None => column,
        Some(order) => order.par_iter().map(|&i| column[i as usize]).collect(),
    }
}
