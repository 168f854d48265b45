//! Allocation under budgets, per-user caps and privacy floors (docs/design.md §6).
//!
//! Given candidates (user, campaign, value, cost), choose x(u,c) ∈ {0,1} to maximise
//! Σ value·x subject to: each campaign's spend ≤ its budget; each user in at most
//! `max_ads_per_user` ad campaigns and `max_promotions_per_user` promotions; and a
//! campaign whose audience would be below max(min_audience, privacy floor) is
//! withheld entirely, its budget released.
//!
//! Pure: no DataFusion, no object_store. Two solvers share the feasibility
//! machinery in [`instance`]: the Lagrangian solver ([`lagrangian`], the default,
//! which also certifies its result with a dual upper bound) and a greedy baseline
//! ([`greedy`]). Both are deterministic: ties are broken by a stable hash of
//! (user_id, campaign_id, seed).

mod greedy;
mod instance;
mod lagrangian;
mod layout;
mod search;
mod selection;

use std::fmt;

use crate::contract::Channel;

/// A campaign as allocation sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct CampaignSpec {
    pub id: String,
    pub channel: Channel,
    /// Today's budget in currency units.
    pub budget: f64,
    /// The campaign's own minimum audience (the global privacy floor also applies).
    pub min_audience: u64,
}

/// Candidate pairs, column by column, in any order (the allocator regroups
/// them by user). Costs may differ per user within a campaign. Values and
/// costs are held in single precision (20 bytes a pair): [`Candidates::push`]
/// rounds a cost up, so spend summed from the exact costs never exceeds the
/// spend the allocator kept within budget.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Candidates {
    pub user: Vec<i64>,
    /// Index into the campaign list.
    pub campaign: Vec<u32>,
    /// Value of choosing the pair, in the unit of the [`Valuation`].
    pub value: Vec<f32>,
    /// Cost of choosing the pair (impressions × cpm / 1000), rounded up.
    pub cost: Vec<f32>,
}

impl Candidates {
    pub fn with_capacity(n: usize) -> Self {
        Candidates {
            user: Vec::with_capacity(n),
            campaign: Vec::with_capacity(n),
            value: Vec::with_capacity(n),
            cost: Vec::with_capacity(n),
        }
    }

    pub fn push(&mut self, user: i64, campaign: u32, value: f64, cost: f64) {
        self.user.push(user);
        self.campaign.push(campaign);
        self.value.push(value as f32);
        self.cost.push(round_up(cost));
    }

    pub fn len(&self) -> usize {
        self.user.len()
    }

    pub fn is_empty(&self) -> bool {
        self.user.is_empty()
    }
}

/// The nearest `f32` at or above `x` (NaN and infinities kept).
pub fn round_up(x: f64) -> f32 {
    let rounded = x as f32;
    if (rounded as f64) < x { rounded.next_up() } else { rounded }
}

/// Per-user caps and the global privacy floor.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    pub max_ads_per_user: u32,
    pub max_promotions_per_user: u32,
    pub privacy_floor: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_ads_per_user: 2, max_promotions_per_user: 2, privacy_floor: 100 }
    }
}

/// What a chosen pair is worth: the unit in which campaigns are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Valuation {
    /// Quality-weighted spend (currency): `priority × cost × p / p̄`, where `p̄`
    /// is the campaign's mean objective probability over its eligible users. A
    /// campaign's typical user is worth what it pays, a better one more, so
    /// every campaign's budget counts in the same unit whatever its objective.
    #[default]
    QualitySpend,
    /// Expected objective events, `priority × impressions_per_user × p`: adds
    /// streams, clicks and follows as if they were worth the same, so campaigns
    /// with rare objectives lose every contested user.
    Events,
}

impl Valuation {
    /// The value of one candidate pair. `cost` is what the pair costs
    /// (`impressions_per_user × cpm / 1000`), `p` its objective probability
    /// and `mean_p` the campaign's mean `p` over its eligible users.
    pub fn value(self, priority: f64, impressions_per_user: f64, cost: f64, p: f64, mean_p: f64) -> f64 {
        match self {
            Valuation::QualitySpend if mean_p > 0.0 => priority * cost * p / mean_p,
            Valuation::QualitySpend => 0.0,
            Valuation::Events => priority * impressions_per_user * p,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Valuation::QualitySpend => "quality_spend",
            Valuation::Events => "events",
        }
    }
}

impl std::str::FromStr for Valuation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "quality_spend" => Ok(Valuation::QualitySpend),
            "events" => Ok(Valuation::Events),
            other => Err(format!("unknown objective {other:?} (expected quality_spend or events)")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Solver {
    /// Prices per campaign, repair and fill; reports a dual bound and gap.
    Lagrangian,
    /// Take pairs by value while budgets and caps allow; no bound.
    Greedy,
}

impl std::str::FromStr for Solver {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "lagrangian" => Ok(Solver::Lagrangian),
            "greedy" => Ok(Solver::Greedy),
            other => Err(format!("unknown solver {other:?} (expected lagrangian or greedy)")),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub limits: Limits,
    pub solver: Solver,
    /// Seed of the tie-breaking hash.
    pub seed: u64,
    /// Upper limit on price iterations of the Lagrangian solver.
    pub max_iterations: u32,
    /// Prices to start the Lagrangian solver's search from, per campaign (in
    /// input order; `None` for a campaign without one), e.g. the last run's.
    /// Empty: a cold start. Prices that are not finite and ≥ 0 are ignored.
    pub warm_start: Vec<Option<f64>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            limits: Limits::default(),
            solver: Solver::Lagrangian,
            seed: 0,
            max_iterations: 60,
            warm_start: Vec::new(),
        }
    }
}

/// Why a campaign gets no audience.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Withheld {
    /// Its audience would be smaller than max(min_audience, privacy floor).
    BelowPrivacyFloor { audience: u64, floor: u64 },
}

impl fmt::Display for Withheld {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Withheld::BelowPrivacyFloor { audience, floor } => {
                write!(f, "audience of {audience} would be below the privacy floor of {floor}")
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CampaignOutcome {
    pub audience: u64,
    pub spend: f64,
    pub value: f64,
    pub withheld: Option<Withheld>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Allocation {
    /// Indices of the chosen candidates, ascending.
    pub chosen: Vec<usize>,
    /// Per campaign, in input order.
    pub campaigns: Vec<CampaignOutcome>,
    /// Σ value of the chosen candidates.
    pub primal: f64,
    /// An upper bound on the optimum (Lagrangian solver only).
    pub dual_bound: Option<f64>,
    /// (dual_bound − primal) / dual_bound.
    pub gap: Option<f64>,
    /// The budget prices λ_c behind the dual bound (Lagrangian solver only):
    /// what one more unit of campaign c's budget would add to the objective,
    /// and the reduced value v − λ_c·k a pair needed to be worth taking.
    pub prices: Option<Vec<f64>>,
    /// Price iterations run (0 for greedy).
    pub iterations: u32,
    /// Campaigns whose price search started from a warm-start price.
    pub warm_started: u32,
    /// How far the pure price solution (every user taking its best reduced
    /// values at the best prices) missed the budgets before repair
    /// (Lagrangian solver only).
    pub price_solution: Option<PriceSolution>,
}

/// Spend of the pure price solution against the budgets of open campaigns.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PriceSolution {
    /// Σ over campaigns of spend above budget.
    pub overspend: f64,
    /// Σ over campaigns of budget left unspent.
    pub underspend: f64,
    /// The campaign (index) furthest over its budget, relative to the budget,
    /// and by how much (0.05: 5% over); `None` when none is over.
    pub worst_over: Option<(usize, f64)>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AllocateError {
    #[error("candidate columns differ in length (user {user}, campaign {campaign}, value {value}, cost {cost})")]
    LengthMismatch { user: usize, campaign: usize, value: usize, cost: usize },
    #[error("candidate for user {user} names campaign index {index}, but there are {campaigns} campaigns")]
    UnknownCampaign { user: i64, index: u32, campaigns: usize },
    #[error("candidate (user {user}, campaign {campaign}) has a {what} of {number}: must be finite{}", if *.what == "cost" { " and >= 0" } else { "" })]
    BadNumber { user: i64, campaign: String, what: &'static str, number: f64 },
    #[error("campaign {campaign} has a budget of {budget}: must be finite and >= 0")]
    BadBudget { campaign: String, budget: f64 },
    #[error("user {user} is a candidate for campaign {campaign} more than once")]
    DuplicatePair { user: i64, campaign: String },
    #[error("the warm start has {prices} prices for {campaigns} campaigns")]
    WarmStartLength { prices: usize, campaigns: usize },
}

/// Allocates `candidates` to `campaigns` under `options`. The candidates are
/// taken by value: the solver regroups them and releases the caller's columns
/// as it goes, so a large instance is never held twice.
pub fn allocate(
    campaigns: &[CampaignSpec],
    candidates: Candidates,
    options: &Options,
) -> Result<Allocation, AllocateError> {
    if !options.warm_start.is_empty() && options.warm_start.len() != campaigns.len() {
        return Err(AllocateError::WarmStartLength { prices: options.warm_start.len(), campaigns: campaigns.len() });
    }
    let instance = instance::Instance::new(campaigns, candidates, options.limits, options.seed)?;
    Ok(match options.solver {
        Solver::Lagrangian => lagrangian::solve(&instance, options.max_iterations, &options.warm_start),
        Solver::Greedy => greedy::solve(&instance),
    })
}
