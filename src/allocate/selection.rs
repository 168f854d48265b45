//! A selection of candidates that tracks spend per campaign and cap use per
//! user, with the passes that keep it feasible: fill, repair to budgets, and
//! the privacy floors (rescue a short campaign, or withhold it).

use rayon::prelude::*;

use super::instance::{Instance, Open};
use super::{Allocation, CampaignOutcome};
use crate::contract::Channel;

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
            chosen: vec![false; instance.len()],
            spend: vec![0.0; instance.campaigns.len()],
            count: vec![0; instance.campaigns.len()],
            ads: vec![0; instance.users()],
            promotions: vec![0; instance.users()],
        }
    }

    pub(super) fn used(&mut self, instance: &Instance, i: usize) -> &mut u32 {
        let u = instance.group(i);
        match instance.channel(instance.campaign_of(i)) {
            Channel::Ad => &mut self.ads[u],
            Channel::Promotion => &mut self.promotions[u],
        }
    }

    /// How many campaigns of `channel` user group `u` is in.
    pub fn used_by(&self, u: usize, channel: Channel) -> u32 {
        match channel {
            Channel::Ad => self.ads[u],
            Channel::Promotion => self.promotions[u],
        }
    }

    /// Whether candidate `i` can be added without breaking its budget or cap.
    pub fn fits(&mut self, instance: &Instance, i: usize) -> bool {
        let c = instance.campaign_of(i);
        let cap = instance.cap(instance.campaigns[c].channel);
        !self.chosen[i]
            && *self.used(instance, i) < cap
            && self.spend[c] + instance.cost(i) <= instance.campaigns[c].budget
    }

    /// Adds `i` even if over budget (the caller repairs); caps must still hold.
    pub fn take_unchecked(&mut self, instance: &Instance, i: usize) {
        let c = instance.campaign_of(i);
        self.chosen[i] = true;
        self.spend[c] += instance.cost(i);
        self.count[c] += 1;
        *self.used(instance, i) += 1;
    }

    pub fn drop(&mut self, instance: &Instance, i: usize) {
        let c = instance.campaign_of(i);
        self.chosen[i] = false;
        self.spend[c] -= instance.cost(i);
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
    /// candidates per unit of cost (work only for the campaigns over budget).
    pub fn repair(&mut self, instance: &Instance) {
        for c in 0..instance.campaigns.len() {
            let budget = instance.campaigns[c].budget;
            if self.spend[c] <= budget {
                continue;
            }
            let mut members: Vec<usize> =
                instance.campaign_candidates(c).iter().map(|&i| i as usize).filter(|&i| self.chosen[i]).collect();
            // Worst first: lowest density.
            members.sort_unstable_by(|&a, &b| instance.better((instance.density(b), b), (instance.density(a), a)));
            for i in members {
                if self.spend[c] <= budget {
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
    /// gains value over withholding; returns whether it was applied. Long: the
    /// candidates, the bisection on μ and the apply step share their state.
    pub fn rescue(&mut self, instance: &Instance, c: usize) -> bool {
        let members = instance.campaign_candidates(c);
        let floor = instance.floor[c] as usize;
        let budget = instance.campaigns[c].budget;
        let channel = instance.campaigns[c].channel;
        let cap = instance.cap(channel);
        let value = |i: usize| instance.value(i);
        let previous: Vec<usize> = members.iter().map(|&i| i as usize).filter(|&i| self.chosen[i]).collect();
        for &i in &previous {
            self.drop(instance, i);
        }

        // (candidate, assignment it displaces) for every usable candidate of c.
        let mut pool: Vec<(usize, Option<usize>)> = Vec::new();
        for i in members.iter().map(|&i| i as usize).filter(|&i| value(i) > 0.0) {
            if *self.used(instance, i) < cap {
                pool.push((i, None));
                continue;
            }
            let u = instance.group(i);
            let displaced = instance
                .user_candidates(u)
                .filter(|&j| {
                    let other = instance.campaign_of(j);
                    self.chosen[j]
                        && other != c
                        && instance.campaigns[other].channel == channel
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
                let k = instance.cost(entry.0);
                if k > 0.0 { (net(entry) + bonus) / k } else { f64::INFINITY }
            };
            let mut order = pool.clone();
            order.sort_unstable_by(|a, b| instance.better((score(a), a.0), (score(b), b.0)));
            let mut spend = 0.0;
            let mut slack: std::collections::HashMap<usize, u64> = std::collections::HashMap::new();
            order.retain(|&(i, displaced)| {
                if spend + instance.cost(i) > budget {
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
                spend += instance.cost(i);
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
            short.retain(|&c| !self.rescue(instance, c));
        }
        for &c in &short {
            open.withhold(c, self.count[c], instance.floor[c]);
            for &i in instance.campaign_candidates(c) {
                if self.chosen[i as usize] {
                    self.drop(instance, i as usize);
                }
            }
        }
        !short.is_empty()
    }

    /// Σ value of the chosen candidates, summed in position order.
    pub fn value(&self, instance: &Instance) -> f64 {
        (0..self.chosen.len()).filter(|&i| self.chosen[i]).map(|i| instance.value(i)).sum()
    }

    /// The final allocation, with totals recomputed from the chosen set and
    /// the chosen candidates named by their index in the caller's input.
    pub fn finish(self, instance: &Instance, open: Open, dual_bound: Option<f64>, iterations: u32) -> Allocation {
        let mut campaigns: Vec<CampaignOutcome> = open
            .withheld
            .into_iter()
            .map(|withheld| CampaignOutcome { audience: 0, spend: 0.0, value: 0.0, withheld })
            .collect();
        let mut primal = 0.0;
        let mut chosen = Vec::new();
        for i in (0..self.chosen.len()).filter(|&i| self.chosen[i]) {
            let outcome = &mut campaigns[instance.campaign_of(i)];
            outcome.audience += 1;
            outcome.spend += instance.cost(i);
            outcome.value += instance.value(i);
            primal += instance.value(i);
            chosen.push(instance.pairs.source(i));
        }
        chosen.par_sort_unstable();
        let gap = dual_bound.map(|d| if d > 0.0 { ((d - primal) / d).max(0.0) } else { 0.0 });
        Allocation {
            chosen,
            campaigns,
            primal,
            dual_bound,
            gap,
            iterations,
            prices: None,
            warm_started: 0,
            price_solution: None,
        }
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
pub(super) fn reach_floor<T>(choose: impl Fn(f64) -> Vec<T>, largest: f64, floor: usize) -> Vec<T> {
    let unpriced = choose(0.0);
    if unpriced.len() >= floor {
        return unpriced;
    }
    let mut high = 1e4 * (largest + 1.0);
    if choose(high).len() < floor {
        return unpriced;
    }
    let mut low = 0.0;
    for _ in 0..40 {
        let mid = 0.5 * (low + high);
        if choose(mid).len() >= floor { high = mid } else { low = mid }
    }
    choose(high)
}
