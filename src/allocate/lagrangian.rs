//! The Lagrangian solver. Budgets are priced out: with a price λ_c ≥ 0 per
//! campaign, each user independently takes its best campaigns by reduced value
//! v − λ_c·k, up to its caps. For any λ,
//!
//!   D(λ) = Σ_c λ_c·B_c + Σ_u (best reduced value of u under its caps)
//!
//! is an upper bound on the optimum (weak duality; campaigns that cannot reach
//! their floor are closed first, as in every feasible allocation, and floors only
//! shrink the feasible set). Prices are searched per campaign by bisection until
//! each budget binds or its price is zero; a warm start (the last run's prices)
//! first brackets the price by steps that double from 1% of it, so a price
//! that moved little is found in a few iterations. One iteration streams
//! once through the candidates, grouped by user. The primal is built from the prices,
//! repaired to budgets, filled by value per cost, settled against floors (rescuing
//! a short campaign before withholding it), and improved by local search (swaps,
//! and a knapsack by dynamic programming for each campaign with few candidates,
//! where capped users count net of leaving their other campaign).

use rayon::prelude::*;

use super::instance::{Instance, Open};
use super::selection::{Selection, settle_floors};
use super::{Allocation, PriceSolution};
use crate::contract::Channel;

/// Users evaluated per parallel task; fixed (not derived from the thread count)
/// so sums, and so results, are identical on every machine.
const USERS_PER_BLOCK: usize = 8192;
/// A budget counts as binding when spend is within this fraction of it.
const BINDING: f64 = 1e-4;
/// Upper limit on local-search passes after the floors are settled.
const IMPROVEMENT_PASSES: usize = 1;
/// Up to this many candidates the solver is thorough, since it costs little
/// there: prices searched to convergence (no stall stop), a second primal from
/// the last prices, up to three local-search passes with a full fill after
/// each. On the CBC reference instances this is worth up to 1.5% of value; at
/// millions of candidates one pass is within 0.1% of the bound.
const THOROUGH_BELOW: usize = 100_000;
const THOROUGH_PASSES: usize = 3;
/// Width, relative to the campaign's price ceiling, at which a price bracket
/// counts as converged.
const PRICE_TOLERANCE: f64 = 1e-6;
/// The search stops when the best bound has not improved by `STALL`
/// (relative) for `STALL_ITERATIONS` iterations: prices then only trade
/// overspend between campaigns, which the repair absorbs.
const STALL: f64 = 1e-5;
const STALL_ITERATIONS: u32 = 4;

pub(crate) fn solve(instance: &Instance, max_iterations: u32, warm_start: &[Option<f64>]) -> Allocation {
    let started = std::time::Instant::now();
    let open = instance.initially_open();
    let search = search_prices(instance, &open, max_iterations, warm_start);
    tracing::debug!(
        iterations = search.iterations,
        dual = search.best_dual,
        seconds = started.elapsed().as_secs_f64(),
        "price search"
    );
    let order = instance.order_by(|i| instance.density(i));
    tracing::debug!(seconds = started.elapsed().as_secs_f64(), "ordered by density");

    let mut final_open = open.clone();
    let mut selection = primal(instance, &search.best_prices, &order, &mut final_open);
    if instance.len() <= THOROUGH_BELOW && search.last_prices != search.best_prices {
        let mut other_open = open.clone();
        let other = primal(instance, &search.last_prices, &order, &mut other_open);
        if other.value(instance) > selection.value(instance) {
            (selection, final_open) = (other, other_open);
        }
    }
    tracing::debug!(seconds = started.elapsed().as_secs_f64(), "primal built");
    let mut allocation = selection.finish(instance, final_open, Some(search.best_dual), search.iterations);
    allocation.price_solution = Some(price_solution(instance, &search.best_spend, &open));
    allocation.prices = Some(search.best_prices);
    allocation.warm_started = search.warm_started;
    allocation
}

struct Search {
    best_dual: f64,
    best_prices: Vec<f64>,
    /// Spend per campaign of the pure price solution at `best_prices`.
    best_spend: Vec<f64>,
    last_prices: Vec<f64>,
    iterations: u32,
    warm_started: u32,
}

/// One campaign's price search: a bracket [low, high] with spend over budget
/// at `low` and within it at `high`, and, from a warm start, the relative step
/// by which the price moves until the bracket closes around it.
struct Bracket {
    low: f64,
    high: f64,
    step: Option<f64>,
}

/// First step of a warm start, relative to the starting price.
const WARM_STEP: f64 = 0.01;

fn search_prices(instance: &Instance, open: &Open, max_iterations: u32, warm_start: &[Option<f64>]) -> Search {
    let campaigns = instance.campaigns.len();
    // At λ_c = max value/cost of its candidates, nobody gains from campaign c.
    let ceiling: Vec<f64> = (0..campaigns)
        .into_par_iter()
        .map(|c| {
            let candidates = instance.campaign_candidates(c).iter().map(|&i| i as usize);
            candidates.filter(|&i| instance.cost(i) > 0.0).map(|i| instance.density(i)).fold(0.0, f64::max)
        })
        .collect();
    let mut lambda = vec![0.0f64; campaigns];
    let mut brackets: Vec<Bracket> = ceiling.iter().map(|&high| Bracket { low: 0.0, high, step: None }).collect();
    let mut warm_started = 0;
    for c in (0..campaigns).filter(|&c| open.open[c]) {
        let Some(price) = warm_start.get(c).copied().flatten().filter(|p| p.is_finite() && *p >= 0.0) else { continue };
        warm_started += 1;
        if price > 0.0 {
            lambda[c] = price.min(ceiling[c]);
            brackets[c].step = Some(WARM_STEP);
        }
    }
    let mut search = Search {
        best_dual: f64::INFINITY,
        best_prices: lambda.clone(),
        best_spend: vec![0.0; campaigns],
        last_prices: lambda.clone(),
        iterations: 0,
        warm_started,
    };

    let mut last_progress = 0;
    for iteration in 1..=max_iterations.max(1) {
        let (spend, dual) = evaluate(instance, &lambda, open);
        search.iterations = iteration;
        search.last_prices.clone_from(&lambda);
        if dual < search.best_dual * (1.0 - STALL) {
            last_progress = iteration;
        }
        if dual < search.best_dual {
            search.best_dual = dual;
            search.best_prices.clone_from(&lambda);
            search.best_spend.clone_from(&spend);
        }
        let mut converged = true;
        for c in (0..campaigns).filter(|&c| open.open[c]) {
            let budget = instance.campaigns[c].budget;
            let over = spend[c] > budget;
            let bracket = &mut brackets[c];
            if over {
                bracket.low = lambda[c];
                // Other prices moved demand here: reopen the bracket upwards.
                if lambda[c] >= bracket.high {
                    bracket.high = ceiling[c].max(lambda[c] * 2.0);
                }
            } else {
                bracket.high = lambda[c];
                // Demand moved away: reopen the bracket downwards.
                if lambda[c] > 0.0 && lambda[c] <= bracket.low {
                    bracket.low = 0.0;
                }
            }
            let binding = !over && (lambda[c] == 0.0 || spend[c] >= budget * (1.0 - BINDING));
            let narrow = bracket.high - bracket.low <= PRICE_TOLERANCE * ceiling[c].max(bracket.high);
            if !(binding || narrow) {
                converged = false;
            }
            lambda[c] = next_price(bracket, lambda[c], over);
        }
        tracing::trace!(iteration, dual, "price iteration");
        let stalled = iteration - last_progress >= STALL_ITERATIONS && instance.len() > THOROUGH_BELOW;
        if converged || stalled {
            break;
        }
    }
    search
}

/// The next price to try: a step away from `price` while a warm start's
/// bracket is still open on that side, else the bracket's midpoint.
fn next_price(bracket: &mut Bracket, price: f64, over: bool) -> f64 {
    if let Some(step) = bracket.step {
        let next = if over { price * (1.0 + step) } else { price * (1.0 - step) };
        if next > bracket.low && next < bracket.high {
            bracket.step = Some(step * 2.0);
            return next;
        }
        bracket.step = None;
    }
    if bracket.high == 0.0 { 0.0 } else { 0.5 * (bracket.low + bracket.high) }
}

/// How far the pure price solution's spend misses the open campaigns' budgets.
fn price_solution(instance: &Instance, spend: &[f64], open: &Open) -> PriceSolution {
    let mut report = PriceSolution { overspend: 0.0, underspend: 0.0, worst_over: None };
    for c in (0..instance.campaigns.len()).filter(|&c| open.open[c]) {
        let budget = instance.campaigns[c].budget;
        if spend[c] > budget {
            report.overspend += spend[c] - budget;
            let relative = if budget > 0.0 { spend[c] / budget - 1.0 } else { f64::INFINITY };
            if report.worst_over.is_none_or(|(_, worst)| relative > worst) {
                report.worst_over = Some((c, relative));
            }
        } else {
            report.underspend += budget - spend[c];
        }
    }
    report
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
                    spend[instance.campaign_of(i)] += instance.cost(i);
                    reduced += r;
                }
            }
            (spend, reduced)
        })
        .collect();
    let mut spend = vec![0.0; campaigns];
    let mut dual: f64 =
        (0..campaigns).filter(|&c| open.open[c]).map(|c| lambda[c] * instance.campaigns[c].budget).sum();
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
    let started = std::time::Instant::now();
    let lap = |what: &str| tracing::debug!(seconds = started.elapsed().as_secs_f64(), "primal: {what}");
    let mut selection = Selection::new(instance);
    let mut picks = Picks::default();
    for u in 0..instance.users() {
        picks.choose(instance, u, lambda, open);
        for &(_, i) in picks.all() {
            selection.take_unchecked(instance, i);
        }
    }
    lap("picks");
    selection.repair(instance);
    lap("repair");
    selection.fill(instance, order, open);
    lap("fill");
    settle_floors(&mut selection, instance, order, open);
    lap("floors");
    let passes = if instance.len() <= THOROUGH_BELOW { THOROUGH_PASSES } else { IMPROVEMENT_PASSES };
    for _ in 0..passes {
        let swapped = selection.improve(instance, open);
        lap("improve");
        let packed = selection.knapsack_small_campaigns(instance, open);
        lap("knapsack");
        if packed || (swapped && instance.len() <= THOROUGH_BELOW) {
            selection.fill(instance, order, open);
            lap("fill");
        }
        if !(swapped || packed) {
            break;
        }
    }
    selection
}

/// One user's best candidates per channel by reduced value, up to the caps.
#[derive(Default)]
struct Picks {
    ads: Vec<(f64, usize)>,
    promotions: Vec<(f64, usize)>,
}

impl Picks {
    fn choose(&mut self, instance: &Instance, u: usize, lambda: &[f64], open: &Open) {
        self.ads.clear();
        self.promotions.clear();
        for i in instance.user_candidates(u) {
            let c = instance.campaign_of(i);
            let reduced = instance.value(i) - lambda[c] * instance.cost(i);
            if reduced <= 0.0 || !open.open[c] {
                continue;
            }
            let (list, cap) = match instance.channel(c) {
                Channel::Ad => (&mut self.ads, instance.limits.max_ads_per_user),
                Channel::Promotion => (&mut self.promotions, instance.limits.max_promotions_per_user),
            };
            insert_top(instance, list, cap as usize, (reduced, i));
        }
    }

    fn all(&self) -> impl Iterator<Item = &(f64, usize)> {
        self.ads.iter().chain(&self.promotions)
    }
}

/// Keeps `list` as the best `cap` entries, best first (caps are small: an
/// insertion from the back).
fn insert_top(instance: &Instance, list: &mut Vec<(f64, usize)>, cap: usize, entry: (f64, usize)) {
    if cap == 0 {
        return;
    }
    if list.len() == cap {
        if !instance.better(entry, list[cap - 1]).is_lt() {
            return;
        }
        list.pop();
    }
    list.push(entry);
    let mut k = list.len() - 1;
    while k > 0 && instance.better(list[k], list[k - 1]).is_lt() {
        list.swap(k, k - 1);
        k -= 1;
    }
}
