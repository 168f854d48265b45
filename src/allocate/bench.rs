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

use super::{Allocation, CampaignSpec, Candidates, Options, Valuation, Solver, allocate};
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

    // Users in parallel blocks, each from its own seeded stream: deterministic.
    const BLOCK: usize = 4096;
    let per_user = shape.per_user.min(shape.campaigns);
    let blocks: Vec<Candidates> = (0..shape.users.div_ceil(BLOCK))
        .into_par_iter()
        .map(|block| {
            let mut rng = ChaCha8Rng::seed_from_u64(shape.seed ^ (block as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let users = block * BLOCK..((block + 1) * BLOCK).min(shape.users);
            let mut out = Candidates::with_capacity(users.len() * per_user);
            let mut seen = vec![false; shape.campaigns];
            for u in users {
                let market = rng.random_range(0.7..1.4);
                let mut picked = Vec::with_capacity(per_user);
                while picked.len() < per_user {
                    let c = rng.random_range(0..shape.campaigns);
                    if !seen[c] {
                        seen[c] = true;
                        picked.push(c);
                    }
                }
                for &c in &picked {
                    seen[c] = false;
                    // The value column holds p until the campaigns' means are known.
                    let p: f64 = rng.random::<f64>().powi(3) * 0.3;
                    let cost = impressions[c] * cpm[c] * market / 1000.0;
                    out.push(u as i64 + 1, c as u32, p, cost);
                }
            }
            out
        })
        .collect();
    let mut candidates = Candidates::with_capacity(shape.users * per_user);
    for block in blocks {
        candidates.user.extend(block.user);
        candidates.campaign.extend(block.campaign);
        candidates.value.extend(block.value);
        candidates.cost.extend(block.cost);
    }

    let mut total_cost = vec![0.0; shape.campaigns];
    let (mut p_sum, mut count) = (vec![0.0; shape.campaigns], vec![0usize; shape.campaigns]);
    for ((c, k), p) in candidates.campaign.iter().zip(&candidates.cost).zip(&candidates.value) {
        total_cost[*c as usize] += k;
        p_sum[*c as usize] += p;
        count[*c as usize] += 1;
    }
    for i in 0..candidates.len() {
        let c = candidates.campaign[i] as usize;
        let mean = p_sum[c] / count[c] as f64;
        candidates.value[i] = shape.objective.value(priority[c], impressions[c], candidates.cost[i], candidates.value[i], mean);
    }
    for (campaign, total) in campaigns.iter_mut().zip(total_cost) {
        campaign.budget = (total * rng.random_range(0.05..0.6) * 100.0).round() / 100.0;
    }
    (campaigns, candidates)
}

/// One solver's measured run.
pub struct Measured {
    pub solver: Solver,
    pub seconds: f64,
    pub allocation: Allocation,
}

/// Runs `solvers` on one random instance of `candidates` pairs over `campaigns`
/// campaigns and prints the figures. Returns the runs for callers that check them.
pub fn run(candidates: usize, campaigns: usize, solvers: &[Solver], objective: Valuation, seed: u64) -> Vec<Measured> {
    let per_user = 20.min(campaigns);
    let shape = Shape { users: candidates.div_ceil(per_user), campaigns, per_user, min_audience: 100, seed, objective };
    let started = Instant::now();
    let (specs, pairs) = random_instance(shape);
    println!(
        "instance: {} candidates, {} campaigns, {} users, objective {}, generated in {:.2} s",
        pairs.len(),
        campaigns,
        shape.users,
        objective.as_str(),
        started.elapsed().as_secs_f64()
    );
    let mut runs = Vec::new();
    for &solver in solvers {
        let options = Options { solver, seed, ..Options::default() };
        let started = Instant::now();
        let allocation = allocate(&specs, &pairs, &options).expect("random instances are valid");
        let seconds = started.elapsed().as_secs_f64();
        let withheld = allocation.campaigns.iter().filter(|c| c.withheld.is_some()).count();
        print!(
            "{:<10} {:>8.2} s  {:>12.0} candidates/s  iterations {:>3}  chosen {:>9}  withheld {:>3}  primal {:.2}",
            format!("{solver:?}").to_lowercase(),
            seconds,
            pairs.len() as f64 / seconds,
            allocation.iterations,
            allocation.chosen.len(),
            withheld,
            allocation.primal,
        );
        match (allocation.dual_bound, allocation.gap) {
            (Some(dual), Some(gap)) => println!("  dual {dual:.2}  gap {:.4}%", gap * 100.0),
            _ => println!(),
        }
        runs.push(Measured { solver, seconds, allocation });
    }
    if let [first, second] = &runs[..] {
        println!(
            "{:?}/{:?} value ratio: {:.4}",
            second.solver,
            first.solver,
            second.allocation.primal / first.allocation.primal
        );
    }
    runs
}
