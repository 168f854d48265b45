//! The validated allocation instance both solvers share: candidates grouped by
//! user, floors, tie keys, orderings, and which campaigns can be open at all.

use std::cmp::Ordering;

use rayon::prelude::*;

use super::{AllocateError, CampaignSpec, Candidates, Limits, Withheld};
use crate::contract::Channel;
use crate::hashing::{hash_bytes, splitmix64};

pub(crate) struct Instance<'a> {
    pub campaigns: &'a [CampaignSpec],
    pub candidates: &'a Candidates,
    pub limits: Limits,
    /// Candidate indices grouped by user (ascending user id, then campaign index).
    pub by_user: Vec<u32>,
    /// Start of each user's group in `by_user`; one entry more than users.
    pub user_start: Vec<usize>,
    /// The user group (index into `user_start`) of each candidate.
    pub group: Vec<u32>,
    /// max(min_audience, privacy floor) per campaign.
    pub floor: Vec<u64>,
    /// Tie-break key per candidate: a hash of (user_id, campaign_id, seed).
    ties: Vec<u64>,
}

impl<'a> Instance<'a> {
    pub fn new(
        campaigns: &'a [CampaignSpec],
        candidates: &'a Candidates,
        limits: Limits,
        seed: u64,
    ) -> Result<Instance<'a>, AllocateError> {
        let c = candidates;
        let n = c.user.len();
        if c.campaign.len() != n || c.value.len() != n || c.cost.len() != n {
            return Err(AllocateError::LengthMismatch {
                user: n,
                campaign: c.campaign.len(),
                value: c.value.len(),
                cost: c.cost.len(),
            });
        }
        assert!(n < u32::MAX as usize, "more than 4 billion candidates");
        for spec in campaigns {
            if !spec.budget.is_finite() || spec.budget < 0.0 {
                return Err(AllocateError::BadBudget { campaign: spec.id.clone(), budget: spec.budget });
            }
        }
        for i in 0..n {
            let index = c.campaign[i];
            let Some(spec) = campaigns.get(index as usize) else {
                return Err(AllocateError::UnknownCampaign { user: c.user[i], index, campaigns: campaigns.len() });
            };
            let bad = |what, number| AllocateError::BadNumber { user: c.user[i], campaign: spec.id.clone(), what, number };
            if !c.value[i].is_finite() {
                return Err(bad("value", c.value[i]));
            }
            if !c.cost[i].is_finite() || c.cost[i] < 0.0 {
                return Err(bad("cost", c.cost[i]));
            }
        }

        let mut by_user: Vec<u32> = (0..n as u32).collect();
        by_user.par_sort_unstable_by_key(|&i| (c.user[i as usize], c.campaign[i as usize]));
        let mut user_start = Vec::new();
        let mut group = vec![0u32; n];
        for (position, pair) in by_user.iter().enumerate() {
            let i = *pair as usize;
            let new_user = position == 0 || c.user[by_user[position - 1] as usize] != c.user[i];
            if new_user {
                user_start.push(position);
            } else if c.campaign[by_user[position - 1] as usize] == c.campaign[i] {
                let campaign = campaigns[c.campaign[i] as usize].id.clone();
                return Err(AllocateError::DuplicatePair { user: c.user[i], campaign });
            }
            group[i] = (user_start.len() - 1) as u32;
        }
        user_start.push(n);

        let floor = campaigns.iter().map(|s| s.min_audience.max(limits.privacy_floor)).collect();
        let campaign_key: Vec<u64> = campaigns.iter().map(|s| hash_bytes(s.id.as_bytes())).collect();
        let ties = (0..n)
            .into_par_iter()
            .map(|i| splitmix64(splitmix64(c.user[i] as u64 ^ seed) ^ campaign_key[c.campaign[i] as usize]))
            .collect();
        Ok(Instance { campaigns, candidates, limits, by_user, user_start, group, floor, ties })
    }

    pub fn users(&self) -> usize {
        self.user_start.len() - 1
    }

    /// The candidates of user group `u`.
    pub fn user_candidates(&self, u: usize) -> &[u32] {
        &self.by_user[self.user_start[u]..self.user_start[u + 1]]
    }

    pub fn campaign_of(&self, i: usize) -> usize {
        self.candidates.campaign[i] as usize
    }

    pub fn cap(&self, channel: Channel) -> u32 {
        match channel {
            Channel::Ad => self.limits.max_ads_per_user,
            Channel::Promotion => self.limits.max_promotions_per_user,
        }
    }

    /// Stable tie-break key of a candidate: a hash of (user_id, campaign_id, seed).
    pub fn tie(&self, i: usize) -> u64 {
        self.ties[i]
    }

    /// Orders candidates by `score` descending, then tie key, then index.
    pub fn better(&self, a: (f64, usize), b: (f64, usize)) -> Ordering {
        b.0.total_cmp(&a.0).then_with(|| self.tie(a.1).cmp(&self.tie(b.1))).then(a.1.cmp(&b.1))
    }

    /// Candidates with a positive value, best `score` first.
    pub fn order_by(&self, score: impl Fn(usize) -> f64 + Sync) -> Vec<u32> {
        let c = self.candidates;
        let mut keyed: Vec<(f64, u64, u32)> = (0..c.len())
            .into_par_iter()
            .filter(|&i| c.value[i] > 0.0)
            .map(|i| (score(i), self.tie(i), i as u32))
            .collect();
        keyed.par_sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        keyed.into_iter().map(|(_, _, i)| i).collect()
    }

    /// Value per unit of cost (cost-free candidates first).
    pub fn density(&self, i: usize) -> f64 {
        let (value, cost) = (self.candidates.value[i], self.candidates.cost[i]);
        if cost > 0.0 { value / cost } else { f64::INFINITY }
    }

    /// Campaigns that can be open at all: those that could reach their floor with
    /// their cheapest candidates within budget. The others are withheld up front,
    /// which every feasible allocation must do too (so bounds stay valid).
    pub fn initially_open(&self) -> Open {
        let mut costs: Vec<Vec<f64>> = vec![Vec::new(); self.campaigns.len()];
        for i in 0..self.candidates.len() {
            if self.candidates.value[i] > 0.0 {
                costs[self.campaign_of(i)].push(self.candidates.cost[i]);
            }
        }
        let mut open = Open { open: vec![true; self.campaigns.len()], withheld: vec![None; self.campaigns.len()] };
        for (c, mut costs) in costs.into_iter().enumerate() {
            costs.sort_unstable_by(f64::total_cmp);
            let mut spend = 0.0;
            let reachable = costs.iter().take_while(|&&k| { spend += k; spend <= self.campaigns[c].budget }).count() as u64;
            if reachable < self.floor[c] {
                open.withhold(c, reachable, self.floor[c]);
            }
        }
        open
    }
}

/// Which campaigns may still get an audience, and why the others do not.
#[derive(Clone)]
pub(crate) struct Open {
    pub open: Vec<bool>,
    pub withheld: Vec<Option<Withheld>>,
}

impl Open {
    pub(super) fn withhold(&mut self, c: usize, audience: u64, floor: u64) {
        self.open[c] = false;
        self.withheld[c] = Some(Withheld::BelowPrivacyFloor { audience, floor });
    }
}
