//! Local search on a feasible selection: swaps within a campaign, refills of
//! one user's budget by cheaper ones, moves of capped users to better
//! campaigns, and an exact knapsack per small campaign. Every move keeps
//! budgets, caps and floors and only ever raises the value.

use rayon::prelude::*;

use super::instance::{Instance, Open};
use super::selection::{Selection, reach_floor};
use crate::contract::Channel;

/// Chosen users compared per unchosen candidate: keeps a pass linear.
const WORST_CHOSEN: usize = 32;
/// Available users scanned per refill.
const REFILL_SCAN: usize = 256;
/// Most chosen users one swap may drop to make room for a better one.
const MAX_SWAP_OUT: usize = 4;
/// Available users scanned for a replacement.
const REPLACEMENT_SCAN: usize = 64;
/// Unchosen candidates per campaign that the swaps consider (the most valuable).
const AVAILABLE: usize = 1024;

impl Selection {
    /// Local search that only ever raises the value and keeps every budget, cap
    /// and floor: (1) within a campaign, trade a chosen user for a more valuable
    /// unchosen one when the leftover budget pays the difference; (2) drop one
    /// chosen user and refill the budget with cheaper ones; (3) for a user at a
    /// cap, move them from their least valuable campaign to a more valuable one
    /// with budget room. Returns whether anything changed.
    pub fn improve(&mut self, instance: &Instance, open: &Open) -> bool {
        let started = std::time::Instant::now();
        let lap = |what: &str| tracing::debug!(seconds = started.elapsed().as_secs_f64(), "improve: {what}");
        let mut chosen: Vec<Vec<usize>> = (0..instance.campaigns.len())
            .map(|c| instance.campaign_candidates(c).iter().map(|&i| i as usize).filter(|&i| self.chosen[i]).collect())
            .collect();
        let unchosen = self.available_by_campaign(instance, open);
        lap("available");
        let swapped = self.swap_within_campaigns(instance, &mut chosen, &unchosen);
        lap("swap");
        let refilled = self.refill_cheaper(instance, &chosen, &unchosen);
        lap("refill");
        let moved = self.move_capped_users(instance, open);
        lap("move");
        self.top_up(instance, &unchosen);
        swapped || refilled || moved
    }

    /// Pass (1): per campaign, its least valuable members (`chosen[c]`, cut to
    /// the worst [`WORST_CHOSEN`]) against its unchosen candidates.
    fn swap_within_campaigns(
        &mut self,
        instance: &Instance,
        chosen: &mut [Vec<usize>],
        unchosen: &[Vec<usize>],
    ) -> bool {
        let value = |i: usize| instance.value(i);
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
        let mut changed = false;
        for c in 0..instance.campaigns.len() {
            let worst = &mut chosen[c];
            keep_best(worst, WORST_CHOSEN, |a, b| instance.better((value(b), b), (value(a), a)));
            for &j in &unchosen[c] {
                if self.swap_in(instance, c, j, worst, &free) {
                    changed = true;
                }
            }
        }
        changed
    }

    /// Adds unchosen candidate `j` to campaign `c` if that raises the value:
    /// outright, or in place of members of `worst`, freeing j's user from
    /// another campaign if they are capped. Returns whether it did.
    fn swap_in(
        &mut self,
        instance: &Instance,
        c: usize,
        j: usize,
        worst: &mut Vec<usize>,
        free: &[Vec<usize>],
    ) -> bool {
        let value = |i: usize| instance.value(i);
        let cost = |i: usize| instance.cost(i);
        let cap = instance.cap(instance.campaigns[c].channel);
        if self.chosen[j] {
            return false;
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
                    return false;
                }
            }
        }
        let out_value: f64 = outs.iter().map(|&p| value(worst[p])).sum();
        if value(j) - out_value <= 1e-12 {
            return false;
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
            self.cheapest_exit(instance, j, free).map(|(exit, loss)| (Some(exit), loss))
        };
        let Some((freeing, _)) = freeing.filter(|&(_, loss)| value(j) - loss - out_value > 1e-12) else {
            for &i in &out_items {
                self.take_unchecked(instance, i);
            }
            return false;
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
        true
    }

    /// Pass (2): drop one chosen user and refill the freed budget by density
    /// from users with cap room (one expensive user for several cheaper ones).
    /// The floor cannot break: the refill takes at least one user back.
    fn refill_cheaper(&mut self, instance: &Instance, chosen: &[Vec<usize>], unchosen: &[Vec<usize>]) -> bool {
        let value = |i: usize| instance.value(i);
        let cost = |i: usize| instance.cost(i);
        let mut changed = false;
        let campaigns = instance.campaigns.len();
        for c in 0..campaigns {
            let cap = instance.cap(instance.campaigns[c].channel);
            let mut available: Vec<usize> =
                unchosen[c].iter().copied().filter(|&j| !self.chosen[j] && *self.used(instance, j) < cap).collect();
            available.sort_unstable_by(|&a, &b| instance.better((instance.density(a), a), (instance.density(b), b)));
            available.truncate(REFILL_SCAN);
            // The members with the least value per cost: where a refill can gain.
            let mut members: Vec<usize> = chosen[c].iter().copied().filter(|&i| self.chosen[i]).collect();
            keep_best(&mut members, WORST_CHOSEN, |a, b| {
                instance.better((instance.density(b), b), (instance.density(a), a))
            });
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
        changed
    }

    /// Pass (3): for each user at a cap, move them from their least valuable
    /// campaign (if it stays at its floor) to a more valuable one with budget
    /// room. Users below their caps are passed over by their counters alone.
    fn move_capped_users(&mut self, instance: &Instance, open: &Open) -> bool {
        let value = |i: usize| instance.value(i);
        let cost = |i: usize| instance.cost(i);
        let mut changed = false;
        for u in 0..instance.users() {
            for channel in [Channel::Ad, Channel::Promotion] {
                let cap = instance.cap(channel);
                if cap == 0 || self.used_by(u, channel) < cap {
                    continue;
                }
                let mine = instance.user_candidates(u).filter(|&i| {
                    let c = instance.campaign_of(i);
                    instance.channel(c) == channel && open.open[c] && value(i) > 0.0
                });
                let Some(out) = mine
                    .clone()
                    .filter(|&i| {
                        self.chosen[i] && self.count[instance.campaign_of(i)] > instance.floor[instance.campaign_of(i)]
                    })
                    .min_by(|&a, &b| instance.better((value(b), b), (value(a), a)))
                else {
                    continue;
                };
                let into = mine
                    .filter(|&j| {
                        let c = instance.campaign_of(j);
                        !self.chosen[j]
                            && value(j) > value(out)
                            && self.spend[c] + cost(j) <= instance.campaigns[c].budget
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

    /// Adds, per campaign, the candidates of `unchosen[c]` that now fit
    /// (budget freed by the swaps), most valuable first.
    fn top_up(&mut self, instance: &Instance, unchosen: &[Vec<usize>]) {
        for list in unchosen {
            for &j in list {
                if self.fits(instance, j) {
                    self.take_unchecked(instance, j);
                }
            }
        }
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
        let value = |i: usize| instance.value(i);
        let campaigns = instance.campaigns.len();
        let small = |c: usize| {
            open.open[c] && instance.campaign_candidates(c).len() <= MAX_ITEMS && instance.campaigns[c].budget > 0.0
        };
        if !(0..campaigns).any(small) {
            return false;
        }
        let unchosen = self.available_by_campaign(instance, open);
        let mut changed = false;
        for c in (0..campaigns).filter(|&c| small(c)) {
            let all = instance.campaign_candidates(c).iter().map(|&i| i as usize);
            let budget = instance.campaigns[c].budget;
            let cap = instance.cap(instance.campaigns[c].channel);
            // (candidate, value net of its user's exit) for every usable candidate.
            let mut items: Vec<(usize, f64)> = Vec::new();
            for i in all.filter(|&i| value(i) > 0.0) {
                if self.chosen[i] || *self.used(instance, i) < cap {
                    items.push((i, value(i)));
                } else if let Some((_, loss)) = self.cheapest_exit(instance, i, &unchosen) {
                    items.push((i, value(i) - loss));
                }
            }
            let units: Vec<usize> = items
                .iter()
                .map(|&(i, _)| (instance.cost(i) / budget * BUCKETS as f64).ceil().max(0.0) as usize)
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
            if self.apply_set(instance, &items, &keep, &unchosen) {
                changed = true;
            }
        }
        changed
    }

    /// Makes `keep` campaign c's set among `items` (members out first, then
    /// newcomers, capped ones leaving another campaign first); keeps it if it
    /// is feasible and raises the value, else undoes it. Returns whether kept.
    fn apply_set(
        &mut self,
        instance: &Instance,
        items: &[(usize, f64)],
        keep: &std::collections::HashSet<usize>,
        unchosen: &[Vec<usize>],
    ) -> bool {
        let value = |i: usize| instance.value(i);
        let Some(&(first, _)) = items.first() else { return false };
        let cap = instance.cap(instance.campaigns[instance.campaign_of(first)].channel);
        let mut log: Vec<(usize, bool)> = Vec::new();
        for &(i, _) in items {
            if self.chosen[i] && !keep.contains(&i) {
                self.drop(instance, i);
                log.push((i, false));
            }
        }
        let mut applied = true;
        let newcomers: Vec<usize> =
            items.iter().map(|&(i, _)| i).filter(|i| !self.chosen[*i] && keep.contains(i)).collect();
        for i in newcomers {
            if *self.used(instance, i) >= cap {
                let Some(((d, replacement), _)) = self.cheapest_exit(instance, i, unchosen) else {
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
            return true;
        }
        for &(i, taken) in log.iter().rev() {
            if taken { self.drop(instance, i) } else { self.take_unchecked(instance, i) }
        }
        false
    }

    /// Per open campaign, its [`AVAILABLE`] most valuable unchosen candidates
    /// with a positive value, most valuable first (where swaps look for
    /// entrants and exits for replacements). Bounded, so a pass costs one scan
    /// of the candidates, not a sort of them.
    fn available_by_campaign(&self, instance: &Instance, open: &Open) -> Vec<Vec<usize>> {
        let value = |i: usize| instance.value(i);
        (0..instance.campaigns.len())
            .into_par_iter()
            .map(|c| {
                if !open.open[c] {
                    return Vec::new();
                }
                let mut list: Vec<usize> = instance
                    .campaign_candidates(c)
                    .iter()
                    .map(|&i| i as usize)
                    .filter(|&i| !self.chosen[i] && value(i) > 0.0)
                    .collect();
                keep_best(&mut list, AVAILABLE, |a, b| instance.better((value(a), a), (value(b), b)));
                list
            })
            .collect()
    }

    /// The cheapest way to free a slot of j's (capped) user in j's channel: drop
    /// one of their other assignments d there, if its campaign stays at or above
    /// its floor, or replace d in its campaign by the most valuable available
    /// user that fits its budget, whichever loses less. Replacements are
    /// looked for among the first of `replacements[other]` (most valuable
    /// first). Returns ((d, replacement), value lost).
    fn cheapest_exit(
        &mut self,
        instance: &Instance,
        j: usize,
        replacements: &[Vec<usize>],
    ) -> Option<((usize, Option<usize>), f64)> {
        let value = |i: usize| instance.value(i);
        let channel = instance.channel(instance.campaign_of(j));
        let user = instance.group(j);
        let mut best: Option<((usize, Option<usize>), f64)> = None;
        for d in instance.user_candidates(user) {
            let other = instance.campaign_of(d);
            if !self.chosen[d] || d == j || instance.campaigns[other].channel != channel {
                continue;
            }
            // Drop d outright (if its campaign stays at its floor), or replace it
            // there by the most valuable available user that fits the budget d
            // frees: whichever loses less.
            let dropped = (self.count[other] > instance.floor[other]).then_some(((d, None), value(d)));
            let room = instance.campaigns[other].budget - self.spend[other] + instance.cost(d);
            let cap = instance.cap(channel);
            let replaced = replacements[other]
                .iter()
                .take(REPLACEMENT_SCAN)
                .copied()
                .find(|&r| {
                    !self.chosen[r]
                        && instance.group(r) != user
                        && instance.cost(r) <= room
                        && *self.used(instance, r) < cap
                })
                .map(|r| ((d, Some(r)), value(d) - value(r)));
            let exit = match (dropped, replaced) {
                (Some(a), Some(b)) => Some(if b.1 < a.1 { b } else { a }),
                (a, b) => a.or(b),
            };
            if let Some(exit) = exit
                && best.as_ref().is_none_or(|b| exit.1 < b.1)
            {
                best = Some(exit);
            }
        }
        best
    }
}

/// Cuts `list` to its `n` first elements under `order`, sorted: a selection,
/// then a sort of those `n` only.
fn keep_best(list: &mut Vec<usize>, n: usize, order: impl Fn(usize, usize) -> std::cmp::Ordering) {
    if list.len() > n {
        list.select_nth_unstable_by(n, |&a, &b| order(a, b));
        list.truncate(n);
    }
    list.sort_unstable_by(|&a, &b| order(a, b));
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
