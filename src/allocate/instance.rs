//! What both solvers share: a validated instance grouped by user, a selection that
//! tracks spend and per-user cap use, and the fill, repair and privacy-floor
//! passes that keep every returned allocation feasible.

use std::cmp::Ordering;

use rayon::prelude::*;

use super::{AllocateError, Allocation, CampaignOutcome, CampaignSpec, Candidates, Limits, Withheld};
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
    fn withhold(&mut self, c: usize, audience: u64, floor: u64) {
        self.open[c] = false;
        self.withheld[c] = Some(Withheld::BelowPrivacyFloor { audience, floor });
    }
}

/// A set of chosen candidates with its spend per campaign and cap use per user.
/// Every method but [`Selection::take_unchecked`] keeps budgets and caps.
#[derive(Clone)]
pub(crate) struct Selection {
    pub chosen: Vec<bool>,
    pub spend: Vec<f64>,
    pub count: Vec<u64>,
    ads: Vec<u32>,
    promotions: Vec<u32>,
}

impl Selection {
    pub fn new(instance: &Instance) -> Selection {
        Selection {
            chosen: vec![false; instance.candidates.len()],
            spend: vec![0.0; instance.campaigns.len()],
            count: vec![0; instance.campaigns.len()],
            ads: vec![0; instance.users()],
            promotions: vec![0; instance.users()],
        }
    }

    fn used(&mut self, instance: &Instance, i: usize) -> &mut u32 {
        let u = instance.group[i] as usize;
        match instance.campaigns[instance.campaign_of(i)].channel {
            Channel::Ad => &mut self.ads[u],
            Channel::Promotion => &mut self.promotions[u],
        }
    }

    /// Whether candidate `i` can be added without breaking its budget or cap.
    pub fn fits(&mut self, instance: &Instance, i: usize) -> bool {
        let c = instance.campaign_of(i);
        let cap = instance.cap(instance.campaigns[c].channel);
        !self.chosen[i]
            && *self.used(instance, i) < cap
            && self.spend[c] + instance.candidates.cost[i] <= instance.campaigns[c].budget
    }

    /// Adds `i` even if over budget (the caller repairs); caps must still hold.
    pub fn take_unchecked(&mut self, instance: &Instance, i: usize) {
        let c = instance.campaign_of(i);
        self.chosen[i] = true;
        self.spend[c] += instance.candidates.cost[i];
        self.count[c] += 1;
        *self.used(instance, i) += 1;
    }

    pub fn drop(&mut self, instance: &Instance, i: usize) {
        let c = instance.campaign_of(i);
        self.chosen[i] = false;
        self.spend[c] -= instance.candidates.cost[i];
        self.count[c] -= 1;
        *self.used(instance, i) -= 1;
    }

    /// Adds candidates in `order` wherever they fit, for open campaigns.
    pub fn fill(&mut self, instance: &Instance, order: &[u32], open: &Open) {
        for &i in order {
            let i = i as usize;
            if open.open[instance.campaign_of(i)] && self.fits(instance, i) {
                self.take_unchecked(instance, i);
            }
        }
    }

    /// Brings every campaign back within budget by dropping its least valuable
    /// candidates per unit of cost.
    pub fn repair(&mut self, instance: &Instance) {
        let budgets: Vec<f64> = instance.campaigns.iter().map(|s| s.budget).collect();
        let over: Vec<bool> = self.spend.iter().zip(&budgets).map(|(s, b)| s > b).collect();
        if !over.contains(&true) {
            return;
        }
        let mut members: Vec<Vec<usize>> = vec![Vec::new(); budgets.len()];
        for i in (0..self.chosen.len()).filter(|&i| self.chosen[i]) {
            if over[instance.campaign_of(i)] {
                members[instance.campaign_of(i)].push(i);
            }
        }
        for (c, mut members) in members.into_iter().enumerate() {
            // Worst first: lowest density.
            members.sort_unstable_by(|&a, &b| instance.better((instance.density(b), b), (instance.density(a), a)));
            for i in members {
                if self.spend[c] <= budgets[c] {
                    break;
                }
                self.drop(instance, i);
            }
        }
    }

    /// Tries to bring campaign `c` up to its floor. Its candidates are users with
    /// cap room, or capped users who give up their least valuable assignment in
    /// the same channel (its value is the opportunity cost; no other campaign is
    /// pushed below its floor). It solves max Σ(v − loss) s.t. Σk ≤ budget,
    /// count ≥ floor by pricing the count: each candidate gets a bonus μ, they are
    /// taken by (v − loss + μ)/k within budget, and μ is the smallest (bisection)
    /// that reaches the floor. The rescue is applied only if it is feasible and
    /// gains value over withholding; returns whether it was applied.
    pub fn rescue(&mut self, instance: &Instance, c: usize, members: &[usize]) -> bool {
        let floor = instance.floor[c] as usize;
        let budget = instance.campaigns[c].budget;
        let channel = instance.campaigns[c].channel;
        let cap = instance.cap(channel);
        let value = |i: usize| instance.candidates.value[i];
        let previous: Vec<usize> = members.iter().copied().filter(|&i| self.chosen[i]).collect();
        for &i in &previous {
            self.drop(instance, i);
        }

        // (candidate, assignment it displaces) for every usable candidate of c.
        let mut pool: Vec<(usize, Option<usize>)> = Vec::new();
        for &i in members.iter().filter(|&&i| value(i) > 0.0) {
            if *self.used(instance, i) < cap {
                pool.push((i, None));
                continue;
            }
            let u = instance.group[i] as usize;
            let displaced = instance
                .user_candidates(u)
                .iter()
                .map(|&j| j as usize)
                .filter(|&j| {
                    let other = instance.campaign_of(j);
                    self.chosen[j] && other != c && instance.campaigns[other].channel == channel
                        && self.count[other] > instance.floor[other]
                })
                .min_by(|&a, &b| instance.better((value(b), b), (value(a), a)));
            if let Some(j) = displaced {
                pool.push((i, Some(j)));
            }
        }
        let net = |&(i, displaced): &(usize, Option<usize>)| value(i) - displaced.map_or(0.0, value);
        let pick = |bonus: f64| -> Vec<(usize, Option<usize>)> {
            let score = |entry: &(usize, Option<usize>)| {
                let k = instance.candidates.cost[entry.0];
                if k > 0.0 { (net(entry) + bonus) / k } else { f64::INFINITY }
            };
            let mut order = pool.clone();
            order.sort_unstable_by(|a, b| instance.better((score(a), a.0), (score(b), b.0)));
            let mut spend = 0.0;
            let mut slack: std::collections::HashMap<usize, u64> = std::collections::HashMap::new();
            order.retain(|&(i, displaced)| {
                if spend + instance.candidates.cost[i] > budget {
                    return false;
                }
                // Only worth taking beyond the floor if it adds value.
                if net(&(i, displaced)) <= 0.0 && bonus == 0.0 {
                    return false;
                }
                if let Some(j) = displaced {
                    let other = instance.campaign_of(j);
                    let left = slack.entry(other).or_insert(self.count[other] - instance.floor[other]);
                    if *left == 0 {
                        return false;
                    }
                    *left -= 1;
                }
                spend += instance.candidates.cost[i];
                true
            });
            order
        };
        let largest = pool.iter().map(|e| net(e).abs()).fold(0.0, f64::max);
        let taken = reach_floor(pick, largest, floor);
        let gain: f64 = taken.iter().map(net).sum();
        if taken.len() < floor || gain <= 0.0 {
            for i in previous {
                self.take_unchecked(instance, i);
            }
            return false;
        }
        for (i, displaced) in taken {
            if let Some(j) = displaced {
                self.drop(instance, j);
            }
            self.take_unchecked(instance, i);
        }
        true
    }

    /// Withholds every open campaign whose audience is below its floor, after
    /// trying to [`rescue`](Self::rescue) it when `rescue` is set; returns whether
    /// any was withheld (their users are then free for a new fill).
    pub fn enforce_floors(&mut self, instance: &Instance, open: &mut Open, rescue: bool) -> bool {
        let mut short: Vec<usize> =
            (0..instance.campaigns.len()).filter(|&c| open.open[c] && self.count[c] < instance.floor[c]).collect();
        if short.is_empty() {
            return false;
        }
        if rescue {
            let mut members: Vec<Vec<usize>> = vec![Vec::new(); instance.campaigns.len()];
            let mut is_short = vec![false; instance.campaigns.len()];
            for &c in &short {
                is_short[c] = true;
            }
            for i in 0..self.chosen.len() {
                let c = instance.campaign_of(i);
                if is_short[c] {
                    members[c].push(i);
                }
            }
            short.retain(|&c| !self.rescue(instance, c, &members[c]));
        }
        for &c in &short {
            open.withhold(c, self.count[c], instance.floor[c]);
        }
        for i in 0..self.chosen.len() {
            if self.chosen[i] && !open.open[instance.campaign_of(i)] {
                self.drop(instance, i);
            }
        }
        !short.is_empty()
    }

    /// Local search that only ever raises the value and keeps every budget, cap
    /// and floor: (1) within a campaign, trade a chosen user for a more valuable
    /// unchosen one when the leftover budget pays the difference; (2) drop one
    /// chosen user and refill the budget with cheaper ones; (3) for a user at a
    /// cap, move them from their least valuable campaign to a more valuable one
    /// with budget room. Returns whether anything changed.
    pub fn improve(&mut self, instance: &Instance, open: &Open) -> bool {
        /// Chosen users compared per unchosen candidate: keeps a pass linear.
        const WORST_CHOSEN: usize = 32;
        /// Available users scanned per refill.
        const REFILL_SCAN: usize = 256;
        /// Most chosen users one swap may drop to make room for a better one.
        const MAX_SWAP_OUT: usize = 4;
        let value = |i: usize| instance.candidates.value[i];
        let cost = |i: usize| instance.candidates.cost[i];
        let mut changed = false;

        // (1) Swaps within a campaign.
        let campaigns = instance.campaigns.len();
        let mut chosen: Vec<Vec<usize>> = vec![Vec::new(); campaigns];
        for i in (0..self.chosen.len()).filter(|&i| self.chosen[i]) {
            chosen[instance.campaign_of(i)].push(i);
        }
        let unchosen = self.available_by_campaign(instance, open);
        // Replacements for exits come from users with cap room now (users
        // freed during the pass are found by the next).
        let free: Vec<Vec<usize>> = unchosen
            .iter()
            .enumerate()
            .map(|(c, list)| {
                let cap = instance.cap(instance.campaigns[c].channel);
                list.iter().copied().filter(|&r| *self.used(instance, r) < cap).collect()
            })
            .collect();
        for c in 0..campaigns {
            let worst = &mut chosen[c];
            worst.sort_unstable_by(|&a, &b| instance.better((value(b), b), (value(a), a)));
            worst.truncate(WORST_CHOSEN);
            let cap = instance.cap(instance.campaigns[c].channel);
            for &j in &unchosen[c] {
                if self.chosen[j] {
                    continue;
                }
                let leftover = instance.campaigns[c].budget - self.spend[c];
                // Add j outright, or in place of the least valuable chosen user
                // whose cost frees enough budget, or else of the fewest of the
                // chosen users with the lowest value per cost that do (a
                // costly valuable user for several cheap ones), keeping the
                // campaign at its floor.
                let mut outs: Vec<usize> = Vec::new();
                if cost(j) > leftover {
                    if let Some(position) = worst.iter().position(|&i| self.chosen[i] && cost(j) - cost(i) <= leftover) {
                        outs.push(position);
                    } else {
                        let mut by_density: Vec<usize> = (0..worst.len()).filter(|&p| self.chosen[worst[p]]).collect();
                        by_density.sort_by(|&a, &b| {
                            instance.better((instance.density(worst[b]), worst[b]), (instance.density(worst[a]), worst[a]))
                        });
                        let mut freed = 0.0;
                        for p in by_density.into_iter().take(MAX_SWAP_OUT) {
                            outs.push(p);
                            freed += cost(worst[p]);
                            if cost(j) - freed <= leftover {
                                break;
                            }
                        }
                        let fits = cost(j) - freed <= leftover;
                        let keeps_floor = self.count[c] + 1 >= instance.floor[c] + outs.len() as u64;
                        if !(fits && keeps_floor) {
                            continue;
                        }
                    }
                }
                let out_value: f64 = outs.iter().map(|&p| value(worst[p])).sum();
                if value(j) - out_value <= 1e-12 {
                    continue;
                }
                // The outs leave first, so their users may take the place j's
                // user frees (two users trading campaigns).
                let out_items: Vec<usize> = outs.iter().map(|&p| worst[p]).collect();
                for &i in &out_items {
                    self.drop(instance, i);
                }
                // What freeing j's user costs: nothing with cap room, else the
                // cheapest way out of one of their other campaigns.
                let freeing = if *self.used(instance, j) < cap {
                    Some((None, 0.0))
                } else {
                    self.cheapest_exit(instance, j, &free).map(|(exit, loss)| (Some(exit), loss))
                };
                let Some((freeing, _)) = freeing.filter(|&(_, loss)| value(j) - loss - out_value > 1e-12) else {
                    for &i in &out_items {
                        self.take_unchecked(instance, i);
                    }
                    continue;
                };
                outs.sort_unstable_by(|a, b| b.cmp(a));
                for position in outs {
                    worst.remove(position);
                }
                if let Some((d, replacement)) = freeing {
                    self.drop(instance, d);
                    if let Some(r) = replacement {
                        self.take_unchecked(instance, r);
                    }
                }
                self.take_unchecked(instance, j);
                changed = true;
            }
        }

        // (2) Drop one chosen user and refill the freed budget by density from
        // users with cap room (one expensive user for several cheaper ones).
        // The floor cannot break: the refill takes at least one user back.
        for c in 0..campaigns {
            let cap = instance.cap(instance.campaigns[c].channel);
            let mut available: Vec<usize> = unchosen[c]
                .iter()
                .copied()
                .filter(|&j| !self.chosen[j] && *self.used(instance, j) < cap)
                .collect();
            available.sort_unstable_by(|&a, &b| instance.better((instance.density(a), a), (instance.density(b), b)));
            available.truncate(REFILL_SCAN);
            let members: Vec<usize> = chosen[c].iter().copied().filter(|&i| self.chosen[i]).collect();
            for i in members {
                let mut room = instance.campaigns[c].budget - self.spend[c] + cost(i);
                let mut gain = -value(i);
                let mut taken = Vec::new();
                for &j in &available {
                    if !self.chosen[j] && cost(j) <= room {
                        room -= cost(j);
                        gain += value(j);
                        taken.push(j);
                    }
                }
                if gain > 1e-12 && !taken.is_empty() {
                    self.drop(instance, i);
                    for j in taken {
                        self.take_unchecked(instance, j);
                    }
                    changed = true;
                }
            }
        }

        // (3) Moves of capped users to a better campaign.
        for u in 0..instance.users() {
            for channel in [Channel::Ad, Channel::Promotion] {
                let mine = instance.user_candidates(u).iter().map(|&i| i as usize).filter(|&i| {
                    let c = instance.campaign_of(i);
                    instance.campaigns[c].channel == channel && open.open[c] && value(i) > 0.0
                });
                let used = mine.clone().filter(|&i| self.chosen[i]).count() as u32;
                if used < instance.cap(channel) || used == 0 {
                    continue;
                }
                let Some(out) = mine
                    .clone()
                    .filter(|&i| self.chosen[i] && self.count[instance.campaign_of(i)] > instance.floor[instance.campaign_of(i)])
                    .min_by(|&a, &b| instance.better((value(b), b), (value(a), a)))
                else {
                    continue;
                };
                let into = mine
                    .filter(|&j| {
                        let c = instance.campaign_of(j);
                        !self.chosen[j] && value(j) > value(out) && self.spend[c] + cost(j) <= instance.campaigns[c].budget
                    })
                    .min_by(|&a, &b| instance.better((value(a), a), (value(b), b)));
                if let Some(j) = into {
                    self.drop(instance, out);
                    self.take_unchecked(instance, j);
                    changed = true;
                }
            }
        }
        changed
    }

    /// Re-solves each small campaign's choice of users as a 0/1 knapsack by
    /// dynamic programming over its members, the unchosen candidates whose users
    /// have cap room, and those whose users are capped, valued net of their
    /// [cheapest exit](Self::cheapest_exit) (so two users may trade campaigns, or
    /// a third campaign take a replacement). Costs are rounded up to
    /// 1/`BUCKETS` of the budget (every set found fits the true budget); the
    /// floor is met by pricing the count: every item gets a bonus μ, the
    /// smallest (bisection) whose solution reaches the floor. A new set is kept
    /// only if, applied (exits recomputed), it keeps every budget, cap and floor
    /// and raises the total value; otherwise it is undone. With few users a
    /// campaign's choice is where rounding from prices and swaps lose most; with
    /// many, taking users by value per cost is already within one user's value
    /// of the bound, and the table (items × buckets) would be large.
    pub fn knapsack_small_campaigns(&mut self, instance: &Instance, open: &Open) -> bool {
        const BUCKETS: usize = 2048;
        /// Candidates above which a campaign is left to the swaps (the table
        /// would cost items × buckets per pass).
        const MAX_ITEMS: usize = 512;
        let value = |i: usize| instance.candidates.value[i];
        let campaigns = instance.campaigns.len();
        let mut sizes = vec![0usize; campaigns];
        for i in 0..self.chosen.len() {
            sizes[instance.campaign_of(i)] += 1;
        }
        let small = |c: usize| open.open[c] && sizes[c] <= MAX_ITEMS && instance.campaigns[c].budget > 0.0;
        if !(0..campaigns).any(small) {
            return false;
        }
        let mut candidates: Vec<Vec<usize>> = vec![Vec::new(); campaigns];
        for i in (0..self.chosen.len()).filter(|&i| small(instance.campaign_of(i))) {
            candidates[instance.campaign_of(i)].push(i);
        }
        let unchosen = self.available_by_campaign(instance, open);
        let mut changed = false;
        for (c, all) in candidates.into_iter().enumerate() {
            if !small(c) {
                continue;
            }
            let budget = instance.campaigns[c].budget;
            let cap = instance.cap(instance.campaigns[c].channel);
            // (candidate, value net of its user's exit) for every usable candidate.
            let mut items: Vec<(usize, f64)> = Vec::new();
            for i in all.into_iter().filter(|&i| value(i) > 0.0) {
                if self.chosen[i] || *self.used(instance, i) < cap {
                    items.push((i, value(i)));
                } else if let Some((_, loss)) = self.cheapest_exit(instance, i, &unchosen) {
                    items.push((i, value(i) - loss));
                }
            }
            let units: Vec<usize> = items
                .iter()
                .map(|&(i, _)| (instance.candidates.cost[i] / budget * BUCKETS as f64).ceil().max(0.0) as usize)
                .collect();
            let floor = instance.floor[c] as usize;
            let solve = |bonus: f64| {
                let values: Vec<f64> = items.iter().map(|&(_, net)| net + bonus).collect();
                knapsack(&values, &units, BUCKETS)
            };
            let largest = items.iter().map(|&(_, net)| net.abs()).fold(0.0, f64::max);
            let set = reach_floor(solve, largest, floor);
            if set.len() < floor {
                continue;
            }
            let keep: std::collections::HashSet<usize> = set.iter().map(|&n| items[n].0).collect();
            if items.iter().all(|&(i, _)| self.chosen[i] == keep.contains(&i)) {
                continue;
            }
            // Apply: members out first, then newcomers (capped ones exit first).
            let mut log: Vec<(usize, bool)> = Vec::new();
            for &(i, _) in &items {
                if self.chosen[i] && !keep.contains(&i) {
                    self.drop(instance, i);
                    log.push((i, false));
                }
            }
            let mut applied = true;
            let newcomers: Vec<usize> = items.iter().map(|&(i, _)| i).filter(|i| !self.chosen[*i] && keep.contains(i)).collect();
            for i in newcomers {
                if *self.used(instance, i) >= cap {
                    let Some(((d, replacement), _)) = self.cheapest_exit(instance, i, &unchosen) else {
                        applied = false;
                        break;
                    };
                    self.drop(instance, d);
                    log.push((d, false));
                    if let Some(r) = replacement {
                        self.take_unchecked(instance, r);
                        log.push((r, true));
                    }
                }
                self.take_unchecked(instance, i);
                log.push((i, true));
            }
            let gain: f64 = log.iter().map(|&(i, taken)| if taken { value(i) } else { -value(i) }).sum();
            let feasible = log.iter().all(|&(i, _)| {
                let other = instance.campaign_of(i);
                self.spend[other] <= instance.campaigns[other].budget && self.count[other] >= instance.floor[other]
            });
            if applied && feasible && gain > 1e-12 {
                changed = true;
                continue;
            }
            for &(i, taken) in log.iter().rev() {
                if taken { self.drop(instance, i) } else { self.take_unchecked(instance, i) }
            }
        }
        changed
    }

    /// Per open campaign, its unchosen candidates with a positive value, most
    /// valuable first (where exits look for replacements).
    fn available_by_campaign(&self, instance: &Instance, open: &Open) -> Vec<Vec<usize>> {
        let value = |i: usize| instance.candidates.value[i];
        let mut unchosen: Vec<Vec<usize>> = vec![Vec::new(); instance.campaigns.len()];
        for i in (0..self.chosen.len()).filter(|&i| !self.chosen[i] && value(i) > 0.0) {
            let c = instance.campaign_of(i);
            if open.open[c] {
                unchosen[c].push(i);
            }
        }
        for list in &mut unchosen {
            list.sort_unstable_by(|&a, &b| instance.better((value(a), a), (value(b), b)));
        }
        unchosen
    }

    /// The cheapest way to free a slot of j's (capped) user in j's channel: drop
    /// one of their other assignments d there, if its campaign stays at or above
    /// its floor, or replace d in its campaign by the most valuable available
    /// user that fits its budget, whichever loses less. Replacements are
    /// looked for among the first of `replacements[other]` (most valuable
    /// first). Returns ((d, replacement), value lost).
    fn cheapest_exit(&mut self, instance: &Instance, j: usize, replacements: &[Vec<usize>]) -> Option<((usize, Option<usize>), f64)> {
        /// Available users scanned for a replacement.
        const REPLACEMENT_SCAN: usize = 64;
        let value = |i: usize| instance.candidates.value[i];
        let channel = instance.campaigns[instance.campaign_of(j)].channel;
        let user = instance.group[j] as usize;
        let mut best: Option<((usize, Option<usize>), f64)> = None;
        for &d in instance.user_candidates(user) {
            let d = d as usize;
            let other = instance.campaign_of(d);
            if !self.chosen[d] || d == j || instance.campaigns[other].channel != channel {
                continue;
            }
            // Drop d outright (if its campaign stays at its floor), or replace it
            // there by the most valuable available user that fits the budget d
            // frees: whichever loses less.
            let dropped = (self.count[other] > instance.floor[other]).then_some(((d, None), value(d)));
            let room = instance.campaigns[other].budget - self.spend[other] + instance.candidates.cost[d];
            let cap = instance.cap(channel);
            let replaced = replacements[other]
                .iter()
                .take(REPLACEMENT_SCAN)
                .copied()
                .find(|&r| {
                    !self.chosen[r]
                        && instance.group[r] as usize != user
                        && instance.candidates.cost[r] <= room
                        && *self.used(instance, r) < cap
                })
                .map(|r| ((d, Some(r)), value(d) - value(r)));
            let exit = match (dropped, replaced) {
                (Some(a), Some(b)) => Some(if b.1 < a.1 { b } else { a }),
                (a, b) => a.or(b),
            };
            if let Some(exit) = exit {
                if best.as_ref().is_none_or(|b| exit.1 < b.1) {
                    best = Some(exit);
                }
            }
        }
        best
    }

    /// Σ value of the chosen candidates, summed in index order.
    pub fn value(&self, instance: &Instance) -> f64 {
        (0..self.chosen.len()).filter(|&i| self.chosen[i]).map(|i| instance.candidates.value[i]).sum()
    }

    /// The final allocation, with totals recomputed from the chosen set.
    pub fn finish(self, instance: &Instance, open: Open, dual_bound: Option<f64>, iterations: u32) -> Allocation {
        let chosen: Vec<usize> = (0..self.chosen.len()).filter(|&i| self.chosen[i]).collect();
        let mut campaigns: Vec<CampaignOutcome> = open
            .withheld
            .into_iter()
            .map(|withheld| CampaignOutcome { audience: 0, spend: 0.0, value: 0.0, withheld })
            .collect();
        for &i in &chosen {
            let outcome = &mut campaigns[instance.campaign_of(i)];
            outcome.audience += 1;
            outcome.spend += instance.candidates.cost[i];
            outcome.value += instance.candidates.value[i];
        }
        let primal: f64 = chosen.iter().map(|&i| instance.candidates.value[i]).sum();
        let gap = dual_bound.map(|d| if d > 0.0 { ((d - primal) / d).max(0.0) } else { 0.0 });
        Allocation { chosen, campaigns, primal, dual_bound, gap, iterations }
    }
}

/// Repeats rescue, floor enforcement and fill until every open campaign meets
/// its floor.
pub(crate) fn settle_floors(selection: &mut Selection, instance: &Instance, order: &[u32], open: &mut Open) {
    while selection.enforce_floors(instance, open, true) {
        selection.fill(instance, order, open);
    }
}

/// Pricing a count: `choose(bonus)` picks items with `bonus` added to each
/// one's value (`largest` bounds the values' magnitude). Returns the choice
/// without a bonus if it already has `floor` items, else the choice at the
/// smallest bonus (by bisection) that reaches `floor`, or else the choice
/// without a bonus (short of the floor: the caller gives up).
fn reach_floor<T>(choose: impl Fn(f64) -> Vec<T>, largest: f64, floor: usize) -> Vec<T> {
    let unpriced = choose(0.0);
    if unpriced.len() >= floor {
        return unpriced;
    }
    let mut high = 1e6 * (largest + 1.0);
    if choose(high).len() < floor {
        return unpriced;
    }
    let mut low = 0.0;
    for _ in 0..50 {
        let mid = 0.5 * (low + high);
        if choose(mid).len() >= floor { high = mid } else { low = mid }
    }
    choose(high)
}

/// A 0/1 knapsack by dynamic programming over integer weights: the items (by
/// position) of greatest total value within `capacity`.
fn knapsack(values: &[f64], weights: &[usize], capacity: usize) -> Vec<usize> {
    let mut best = vec![0.0f64; capacity + 1];
    let mut keep = vec![false; values.len() * (capacity + 1)];
    for (n, (&v, &w)) in values.iter().zip(weights).enumerate() {
        if w > capacity || v <= 0.0 {
            continue;
        }
        for room in (w..=capacity).rev() {
            if best[room - w] + v > best[room] {
                best[room] = best[room - w] + v;
                keep[n * (capacity + 1) + room] = true;
            }
        }
    }
    let mut room = capacity;
    let mut set = Vec::new();
    for n in (0..values.len()).rev() {
        if keep[n * (capacity + 1) + room] {
            set.push(n);
            room -= weights[n];
        }
    }
    set
}
