//! The Lagrangian solver. Budgets are priced out: with a price λ_c ≥ 0 per
//! campaign, each user independently takes its best campaigns by reduced value
//! v − λ_c·k, up to its caps. For any λ,
//!
//!   D(λ) = Σ_c λ_c·B_c + Σ_u (best reduced value of u under its caps)
//!
//! is an upper bound on the optimum (weak duality; campaigns that cannot reach
//! their floor are closed first, as in every feasible allocation, and floors only
//! shrink the feasible set). Prices are searched per campaign by bisection until
//! each budget binds or its price is zero. The primal is built from the prices,
//! repaired to budgets, filled by value per cost, settled against floors (rescuing
//! a short campaign before withholding it), and improved by local search (swaps,
//! and a knapsack by dynamic programming for each campaign with few candidates,
//! where capped users count net of leaving their other campaign).

use rayon::prelude::*;

use super::Allocation;
use super::instance::{Instance, Open};
use super::selection::{Selection, settle_floors};
use crate::contract::Channel;

/// Users evaluated per parallel task; fixed (not derived from the thread count)
/// so sums, and so results, are identical on every machine.
const USERS_PER_BLOCK: usize = 8192;
/// A budget counts as binding when spend is within this fraction of it.
const BINDING: f64 = 1e-4;
/// Upper limit on local-search passes after the floors are settled.
const IMPROVEMENT_PASSES: usize = 2;
/// Relative width at which a price bracket counts as converged.
const PRICE_TOLERANCE: f64 = 1e-6;

pub(crate) fn solve(instance: &Instance, max_iterations: u32) -> Allocation {
    let started = std::time::Instant::now();
    let open = instance.initially_open();
    let search = search_prices(instance, &open, max_iterations);
    tracing::debug!(iterations = search.iterations, dual = search.best_dual, seconds = started.elapsed().as_secs_f64(), "price search");
    let order = instance.order_by(|i| instance.density(i));

    // Build a primal from the prices with the best bound and from the last ones;
    // keep the better (the first on a tie, for determinism).
    let mut best: Option<(Selection, Open)> = None;
    for prices in [&search.best_prices, &search.last_prices] {
        let mut trial_open = open.clone();
        let selection = primal(instance, prices, &order, &mut trial_open);
        if best.as_ref().is_none_or(|(b, _)| selection.value(instance) > b.value(instance)) {
            best = Some((selection, trial_open));
        }
    }
    tracing::debug!(seconds = started.elapsed().as_secs_f64(), "primal built");
    let (selection, open) = best.expect("two trials");
    let mut allocation = selection.finish(instance, open, Some(search.best_dual), search.iterations);
    allocation.prices = Some(search.best_prices);
    allocation
}

struct Search {
    best_dual: f64,
    best_prices: Vec<f64>,
    last_prices: Vec<f64>,
    iterations: u32,
}

fn search_prices(instance: &Instance, open: &Open, max_iterations: u32) -> Search {
    let campaigns = instance.campaigns.len();
    // At λ_c = max value/cost of its candidates, nobody gains from campaign c.
    let mut ceiling = vec![0.0f64; campaigns];
    for i in 0..instance.candidates.len() {
        let c = instance.campaign_of(i);
        if instance.candidates.cost[i] > 0.0 {
            ceiling[c] = ceiling[c].max(instance.candidates.value[i] / instance.candidates.cost[i]);
        }
    }
    let mut lambda = vec![0.0f64; campaigns];
    let mut low = vec![0.0f64; campaigns];
    let mut high = ceiling.clone();
    let mut search = Search { best_dual: f64::INFINITY, best_prices: lambda.clone(), last_prices: lambda.clone(), iterations: 0 };

    for iteration in 1..=max_iterations.max(1) {
        let (spend, dual) = evaluate(instance, &lambda, open);
        search.iterations = iteration;
        search.last_prices.clone_from(&lambda);
        if dual < search.best_dual {
            search.best_dual = dual;
            search.best_prices.clone_from(&lambda);
        }
        let mut converged = true;
        for c in (0..campaigns).filter(|&c| open.open[c]) {
            let budget = instance.campaigns[c].budget;
            let over = spend[c] > budget;
            if over {
                low[c] = lambda[c];
                // Other prices moved demand here: reopen the bracket upwards.
                if lambda[c] >= high[c] {
                    high[c] = ceiling[c].max(lambda[c] * 2.0);
                }
            } else {
                high[c] = lambda[c];
                // Demand moved away: reopen the bracket downwards.
                if lambda[c] > 0.0 && lambda[c] <= low[c] {
                    low[c] = 0.0;
                }
            }
            let binding = !over && (lambda[c] == 0.0 || spend[c] >= budget * (1.0 - BINDING));
            let narrow = high[c] - low[c] <= PRICE_TOLERANCE * high[c].max(1e-12);
            if !(binding || narrow) {
                converged = false;
            }
            lambda[c] = if high[c] == 0.0 { 0.0 } else { 0.5 * (low[c] + high[c]) };
        }
        if converged {
            break;
        }
    }
    search
}

/// Spend per campaign and D(λ) when every user takes its best reduced values.
fn evaluate(instance: &Instance, lambda: &[f64], open: &Open) -> (Vec<f64>, f64) {
    let campaigns = instance.campaigns.len();
    let blocks: Vec<(Vec<f64>, f64)> = (0..instance.users().div_ceil(USERS_PER_BLOCK))
        .into_par_iter()
        .map(|block| {
            let mut spend = vec![0.0; campaigns];
            let mut reduced = 0.0;
            let mut picks = Picks::default();
            let users = block * USERS_PER_BLOCK..((block + 1) * USERS_PER_BLOCK).min(instance.users());
            for u in users {
                picks.choose(instance, u, lambda, open);
                for &(r, i) in picks.all() {
                    spend[instance.campaign_of(i)] += instance.candidates.cost[i];
                    reduced += r;
                }
            }
            (spend, reduced)
        })
        .collect();
    let mut spend = vec![0.0; campaigns];
    let mut dual: f64 = (0..campaigns).filter(|&c| open.open[c]).map(|c| lambda[c] * instance.campaigns[c].budget).sum();
    for (block_spend, reduced) in blocks {
        for (total, s) in spend.iter_mut().zip(block_spend) {
            *total += s;
        }
        dual += reduced;
    }
    (spend, dual)
}

/// Builds a feasible allocation from prices.
fn primal(instance: &Instance, lambda: &[f64], order: &[u32], open: &mut Open) -> Selection {
    let mut selection = Selection::new(instance);
    let mut picks = Picks::default();
    for u in 0..instance.users() {
        picks.choose(instance, u, lambda, open);
        for &(_, i) in picks.all() {
            selection.take_unchecked(instance, i);
        }
    }
    selection.repair(instance);
    selection.fill(instance, order, open);
    settle_floors(&mut selection, instance, order, open);
    for _ in 0..IMPROVEMENT_PASSES {
        let swapped = selection.improve(instance, open);
        let packed = selection.knapsack_small_campaigns(instance, open);
        if !(swapped || packed) {
            break;
        }
        selection.fill(instance, order, open);
    }
    selection
}

/// One user's best candidates per channel by reduced value, up to the caps.
#[derive(Default)]
struct Picks {
    ads: Vec<(f64, usize)>,
    promotions: Vec<(f64, usize)>,
    all: Vec<(f64, usize)>,
}

impl Picks {
    fn choose(&mut self, instance: &Instance, u: usize, lambda: &[f64], open: &Open) {
        self.ads.clear();
        self.promotions.clear();
        for &i in instance.user_candidates(u) {
            let i = i as usize;
            let c = instance.campaign_of(i);
            if !open.open[c] {
                continue;
            }
            let reduced = instance.candidates.value[i] - lambda[c] * instance.candidates.cost[i];
            if reduced <= 0.0 {
                continue;
            }
            let channel = instance.campaigns[c].channel;
            let (list, cap) = match channel {
                Channel::Ad => (&mut self.ads, instance.limits.max_ads_per_user),
                Channel::Promotion => (&mut self.promotions, instance.limits.max_promotions_per_user),
            };
            insert_top(instance, list, cap as usize, (reduced, i));
        }
        self.all.clear();
        self.all.extend_from_slice(&self.ads);
        self.all.extend_from_slice(&self.promotions);
    }

    fn all(&self) -> &[(f64, usize)] {
        &self.all
    }
}

/// Keeps `list` as the best `cap` entries, best first.
fn insert_top(instance: &Instance, list: &mut Vec<(f64, usize)>, cap: usize, entry: (f64, usize)) {
    if cap == 0 {
        return;
    }
    let position = list.partition_point(|&other| instance.better(other, entry).is_lt());
    if position < cap {
        list.insert(position, entry);
        list.truncate(cap);
    }
}
