//! Random allocation instances (for the benchmark and the reference tests) and
//! the `audience bench allocate` measurement.
//!
//! An instance has `users` users, each a candidate for a random subset of the
//! campaigns with a skewed objective probability; values follow the shape's
//! [`Valuation`] (quality-weighted spend or expected events), costs are
//! impressions × CPM / 1000 with a per-user market factor, budgets buy between 5%
//! and 60% of a campaign's candidates (tight and loose), and some campaigns have
//! a minimum audience.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::allocate::{Allocation, CampaignSpec, Candidates, Options, Solver, Valuation, allocate, round_up};
use crate::contract::Channel;

/// The shape of a random instance.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub users: usize,
    pub campaigns: usize,
    /// Campaigns each user is a candidate for (at most `campaigns`).
    pub per_user: usize,
    /// Minimum audience of campaigns that set one.
    pub min_audience: u64,
    pub seed: u64,
    pub objective: Valuation,
}

/// A random instance; identical for identical shapes.
pub fn random_instance(shape: Shape) -> (Vec<CampaignSpec>, Candidates) {
    let mut rng = ChaCha8Rng::seed_from_u64(shape.seed);
    let cpm: Vec<f64> = (0..shape.campaigns).map(|_| rng.random_range(1.0..30.0)).collect();
    let impressions: Vec<f64> = (0..shape.campaigns).map(|_| rng.random_range(1..=3) as f64).collect();
    let priority: Vec<f64> = (0..shape.campaigns).map(|_| if rng.random_bool(0.1) { 2.0 } else { 1.0 }).collect();
    let mut campaigns: Vec<CampaignSpec> = (0..shape.campaigns)
        .map(|c| CampaignSpec {
            id: format!("c{c:04}"),
            channel: if rng.random_bool(0.5) { Channel::Ad } else { Channel::Promotion },
            budget: 0.0,
            min_audience: if rng.random_bool(0.3) { shape.min_audience } else { 0 },
        })
        .collect();

    // Users in parallel blocks, each from its own seeded stream, written into
    // their own stretch of the columns: deterministic, and never held twice.
    const BLOCK: usize = 4096;
    let per_user = shape.per_user.min(shape.campaigns);
    let n = shape.users * per_user;
    let mut candidates = Candidates { user: vec![0; n], campaign: vec![0; n], value: vec![0.0; n], cost: vec![0.0; n] };
    let stretch = BLOCK * per_user.max(1);
    candidates
        .user
        .par_chunks_mut(stretch)
        .zip(candidates.campaign.par_chunks_mut(stretch))
        .zip(candidates.value.par_chunks_mut(stretch))
        .zip(candidates.cost.par_chunks_mut(stretch))
        .enumerate()
        .for_each(|(block, (((user, campaign), value), cost))| {
            let mut rng =
                ChaCha8Rng::seed_from_u64(shape.seed ^ (block as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let mut seen = vec![false; shape.campaigns];
            let mut picked = Vec::with_capacity(per_user);
            let mut pairs: Vec<(usize, f64)> = Vec::with_capacity(per_user);
            for (u, at) in (block * BLOCK..).zip((0..user.len()).step_by(per_user)) {
                let market = rng.random_range(0.7..1.4);
                picked.clear();
                while picked.len() < per_user {
                    let c = rng.random_range(0..shape.campaigns);
                    if !seen[c] {
                        seen[c] = true;
                        picked.push(c);
                    }
                }
                // The value column holds p until the campaigns' means are known;
                // each user's pairs are then put in campaign order, as the
                // allocator groups them.
                pairs.clear();
                pairs.extend(picked.iter().map(|&c| (c, rng.random::<f64>().powi(3) * 0.3)));
                pairs.sort_unstable_by_key(|&(c, _)| c);
                for (k, &(c, p)) in pairs.iter().enumerate() {
                    seen[c] = false;
                    user[at + k] = u as i64 + 1;
                    campaign[at + k] = c as u32;
                    value[at + k] = p as f32;
                    cost[at + k] = round_up(impressions[c] * cpm[c] * market / 1000.0);
                }
            }
        });

    let mut total_cost = vec![0.0; shape.campaigns];
    let (mut p_sum, mut count) = (vec![0.0; shape.campaigns], vec![0usize; shape.campaigns]);
    for ((c, k), p) in candidates.campaign.iter().zip(&candidates.cost).zip(&candidates.value) {
        total_cost[*c as usize] += *k as f64;
        p_sum[*c as usize] += *p as f64;
        count[*c as usize] += 1;
    }
    let mean: Vec<f64> = p_sum.iter().zip(&count).map(|(&p, &n)| p / n.max(1) as f64).collect();
    let Candidates { campaign, value, cost, .. } = &mut candidates;
    value.par_iter_mut().zip(campaign.par_iter()).zip(cost.par_iter()).for_each(|((value, &c), &cost)| {
        let c = c as usize;
        *value = shape.objective.value(priority[c], impressions[c], cost as f64, *value as f64, mean[c]) as f32;
    });
    for (campaign, total) in campaigns.iter_mut().zip(total_cost) {
        campaign.budget = (total * rng.random_range(0.05..0.6) * 100.0).round() / 100.0;
    }
    (campaigns, candidates)
}

/// One solver's measured run.
pub struct Measured {
    pub solver: Solver,
    pub seconds: f64,
    /// Peak resident memory while the instance was generated and solved, and
    /// the resident memory before (the process's own), when known.
    pub peak_rss: Option<u64>,
    pub base_rss: Option<u64>,
    pub allocation: Allocation,
}

/// What `audience bench allocate` runs.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub candidates: usize,
    pub campaigns: usize,
    pub solvers: Vec<Solver>,
    pub objective: Valuation,
    pub seed: u64,
    /// Also solve a perturbed next day, cold and warm-started from this one's prices.
    pub warm_start: bool,
}

/// Runs the solvers, each on a freshly generated copy of one random instance
/// (the solver consumes its input), and prints the figures. Returns the runs
/// for callers that check them.
pub fn run(options: &BenchOptions) -> Vec<Measured> {
    let BenchOptions { candidates, campaigns, objective, seed, .. } = *options;
    let per_user = 20.min(campaigns);
    let shape = Shape { users: candidates.div_ceil(per_user), campaigns, per_user, min_audience: 100, seed, objective };
    println!("cpu: {}, {} threads", crate::measure::cpu_model(), rayon::current_num_threads());
    let mut runs = Vec::new();
    let mut lagrangian_prices = None;
    for &solver in &options.solvers {
        let (measured, pairs) = measure(shape, solver, Vec::new(), |specs| specs);
        print_run(&measured, pairs);
        if solver == Solver::Lagrangian {
            lagrangian_prices = measured.allocation.prices.clone();
        }
        runs.push(measured);
    }
    if let (Some(first), Some(second)) =
        (runs.iter().find(|r| r.solver == Solver::Lagrangian), runs.iter().find(|r| r.solver == Solver::Greedy))
    {
        println!(
            "lagrangian/greedy: value {:.4}, time {:.2}x",
            first.allocation.primal / second.allocation.primal,
            first.seconds / second.seconds
        );
    }
    if options.warm_start {
        let Some(prices) = lagrangian_prices else {
            println!("warm start: needs the lagrangian solver in --solver");
            return runs;
        };
        // The next day: every budget moved by up to ±3%.
        let next_day = |mut specs: Vec<CampaignSpec>| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xDA7E);
            for spec in &mut specs {
                spec.budget = (spec.budget * rng.random_range(0.97..1.03) * 100.0).round() / 100.0;
            }
            specs
        };
        for (label, warm) in
            [("next day, cold", Vec::new()), ("next day, warm", prices.into_iter().map(Some).collect())]
        {
            let (measured, pairs) = measure(shape, Solver::Lagrangian, warm, next_day);
            print!("{label}: ");
            print_run(&measured, pairs);
            runs.push(measured);
        }
    }
    runs
}

/// Generates the instance (its budgets passed through `adjust`), solves it,
/// and measures time and memory; returns the run and the candidate count.
fn measure(
    shape: Shape,
    solver: Solver,
    warm_start: Vec<Option<f64>>,
    adjust: impl Fn(Vec<CampaignSpec>) -> Vec<CampaignSpec>,
) -> (Measured, usize) {
    crate::measure::reset_peak_rss();
    let base_rss = crate::measure::current_rss_bytes();
    let started = Instant::now();
    let (specs, pairs) = random_instance(shape);
    let specs = adjust(specs);
    let n = pairs.len();
    println!(
        "instance: {n} candidates, {} campaigns, {} users, objective {}, generated in {:.2} s",
        shape.campaigns,
        shape.users,
        shape.objective.as_str(),
        started.elapsed().as_secs_f64()
    );
    let options = Options { solver, seed: shape.seed, warm_start, ..Options::default() };
    let started = Instant::now();
    let allocation = allocate(&specs, pairs, &options).expect("random instances are valid");
    let seconds = started.elapsed().as_secs_f64();
    let peak_rss = crate::measure::peak_rss_bytes();
    (Measured { solver, seconds, peak_rss, base_rss, allocation }, n)
}

fn print_run(run: &Measured, candidates: usize) {
    let allocation = &run.allocation;
    let withheld = allocation.campaigns.iter().filter(|c| c.withheld.is_some()).count();
    print!(
        "{:<10} {:>8.2} s  {:>12.0} candidates/s  iterations {:>3}  chosen {:>9}  withheld {:>3}  primal {:.2}",
        format!("{:?}", run.solver).to_lowercase(),
        run.seconds,
        candidates as f64 / run.seconds,
        allocation.iterations,
        allocation.chosen.len(),
        withheld,
        allocation.primal,
    );
    if let (Some(dual), Some(gap)) = (allocation.dual_bound, allocation.gap) {
        print!("  dual {dual:.2}  gap {:.4}%", gap * 100.0);
    }
    if let (Some(peak), Some(base)) = (run.peak_rss, run.base_rss) {
        let per = peak.saturating_sub(base) as f64 / candidates as f64;
        print!("  peak RSS {} MiB ({per:.1} B/candidate above {} MiB before)", peak >> 20, base >> 20);
    }
    println!();
}
