//! The run manifest: what a committed run says about itself (per campaign:
//! eligible users, audience, spend against budget, expected events, the
//! solver's price, churn against the previous run, why it was withheld; the
//! solver's value, bound, gap, iterations and warm start; how far the pure
//! price solution missed the budgets, and the constraints the committed
//! solution breaks, which must be none; seconds per stage), and its totals by
//! channel × objective and by stream tier.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::config::{ConfigFile, JobConfig};
use super::layout::Fingerprint;
use crate::allocate::{Allocation, PriceSolution, Withheld};
use crate::choose::{Choice, Violations, spend};
use crate::scoring::Scored;
use crate::scoring::eligibility::ActiveCampaign;

/// Per campaign, in the manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CampaignReport {
    pub campaign_id: String,
    pub kind: String,
    pub objective: String,
    /// The podcast's 30-day streams (its stream tier).
    #[serde(default)]
    pub podcast_streams: i64,
    pub eligible_users: u64,
    pub candidates: u64,
    pub audience: u64,
    pub spend: f64,
    pub budget: f64,
    pub expected_events: f64,
    /// Spend per expected objective event (eCPS for stream campaigns).
    pub expected_ecps: Option<f64>,
    /// Mean objective probability over the eligible users (the `p̄` of the
    /// quality-weighted spend objective).
    #[serde(default)]
    pub mean_p_objective: f64,
    /// The campaign's budget price λ from the Lagrangian solver: the value one
    /// more unit of budget would add (0 when its budget does not bind).
    #[serde(default)]
    pub price: Option<f64>,
    /// Share of the users in this or the previous run's audience that are in
    /// only one of them (`None`: no previous run, or neither has an audience).
    #[serde(default)]
    pub churn: Option<f64>,
    pub withheld: Option<String>,
}

/// The run whose prices started the solver and against which churn is measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreviousRunReport {
    pub date: String,
    pub run_id: String,
}

/// The pure price solution's spend against the budgets, before repair.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PriceSolutionReport {
    pub overspend: f64,
    pub underspend: f64,
    /// The campaign furthest over its budget and by how much (0.05: 5% over).
    pub worst_campaign: Option<String>,
    pub worst_over: Option<f64>,
}

impl PriceSolutionReport {
    pub fn new(solution: &PriceSolution, scored: &Scored) -> PriceSolutionReport {
        PriceSolutionReport {
            overspend: solution.overspend,
            underspend: solution.underspend,
            worst_campaign: solution.worst_over.map(|(c, _)| scored.campaigns[c].campaign_id.clone()),
            worst_over: solution.worst_over.map(|(_, over)| over),
        }
    }
}

/// Bumped whenever a reader of an older manifest could not read this one
/// (`audience report` refuses a manifest of another version).
pub const MANIFEST_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunManifest {
    /// [`MANIFEST_VERSION`] of the build that wrote it (0: written before versions).
    #[serde(default)]
    pub manifest_version: u32,
    pub run_id: String,
    pub date: String,
    pub fingerprint: Fingerprint,
    pub inputs_root: String,
    pub model_uri: String,
    pub model_version: String,
    pub config: ConfigFile,
    pub users_scored: u64,
    pub eligible_pairs: u64,
    pub campaigns: Vec<CampaignReport>,
    pub solver: String,
    pub solver_value: f64,
    pub dual_bound: Option<f64>,
    pub gap: Option<f64>,
    #[serde(default)]
    pub solver_iterations: u32,
    /// Campaigns whose price search started from the previous run's price.
    #[serde(default)]
    pub warm_started_campaigns: u32,
    #[serde(default)]
    pub previous_run: Option<PreviousRunReport>,
    /// Churn over all campaigns that have an audience today or had one in
    /// the previous run: users in only one of the two, over users in either.
    #[serde(default)]
    pub churn: Option<f64>,
    #[serde(default)]
    pub price_solution: Option<PriceSolutionReport>,
    /// Constraints the committed audiences break, from the exact costs: none.
    #[serde(default)]
    pub violations: Violations,
    /// Seconds per stage.
    pub timings: BTreeMap<String, f64>,
}

/// Why a campaign got no audience, in the terms an operator can act on.
fn withheld_reason(campaign: &ActiveCampaign, eligible: u64, privacy_floor: u64, withheld: &Withheld) -> String {
    let floor = (campaign.min_audience.max(0) as u64).max(privacy_floor);
    let affordable = campaign.affordable_users();
    if eligible < floor {
        format!("only {eligible} eligible users, fewer than its privacy floor of {floor}")
    } else if affordable < floor {
        format!("its budget buys {affordable} users, fewer than its privacy floor of {floor}")
    } else {
        format!("{withheld} (its eligible users went to campaigns that value them more)")
    }
}

/// Day-over-day churn against the previous run (see `previous::churn`): per
/// campaign in the scored campaigns' order, and over all campaigns.
pub struct Churn {
    pub per_campaign: Vec<Option<f64>>,
    pub total: Option<f64>,
}

/// What a run's manifest is made of, as the run's stages produced it.
pub struct RunRecord<'a> {
    pub run_id: &'a str,
    pub fingerprint: &'a Fingerprint,
    pub config: &'a JobConfig,
    pub model_version: &'a str,
    pub scored: &'a Scored,
    pub choice: &'a Choice,
    pub violations: Violations,
    pub previous_run: Option<PreviousRunReport>,
    pub churn: Churn,
    pub timings: BTreeMap<String, f64>,
}

impl RunManifest {
    /// The manifest of a run; the config as recorded has its secrets redacted.
    pub fn new(record: RunRecord) -> RunManifest {
        let RunRecord {
            run_id,
            fingerprint,
            config,
            model_version,
            scored,
            choice,
            violations,
            previous_run,
            churn,
            timings,
        } = record;
        let allocation = &choice.allocation;
        let recorded = config.file.redacted();
        RunManifest {
            manifest_version: MANIFEST_VERSION,
            run_id: run_id.to_string(),
            date: fingerprint.date.clone(),
            fingerprint: fingerprint.clone(),
            inputs_root: config.inputs.url().to_string(),
            model_uri: recorded.model.uri.clone(),
            model_version: model_version.to_string(),
            campaigns: campaign_reports(
                scored,
                allocation,
                &choice.members,
                config.allocation.privacy_floor,
                &churn.per_campaign,
            ),
            config: recorded,
            users_scored: scored.users,
            eligible_pairs: scored.pairs(),
            solver: format!("{:?}", config.allocation.solver).to_lowercase(),
            solver_value: allocation.primal,
            dual_bound: allocation.dual_bound,
            gap: allocation.gap,
            solver_iterations: allocation.iterations,
            warm_started_campaigns: allocation.warm_started,
            previous_run,
            churn: churn.total,
            price_solution: allocation.price_solution.as_ref().map(|s| PriceSolutionReport::new(s, scored)),
            violations,
            timings,
        }
    }
}

/// The manifest's per-campaign reports, in the scored campaigns' order
/// (`members` as from [`crate::choose::members`]).
fn campaign_reports(
    scored: &Scored,
    allocation: &Allocation,
    members: &[Vec<usize>],
    privacy_floor: u64,
    churn: &[Option<f64>],
) -> Vec<CampaignReport> {
    let mut reports = Vec::with_capacity(scored.campaigns.len());
    for (c, (campaign, outcome)) in scored.campaigns.iter().zip(&allocation.campaigns).enumerate() {
        let pool = &scored.pools[c];
        let per_user = campaign.impressions_per_user as f64;
        // A fold from +0.0: an empty sum of floats is -0.0, which would print as "-0.0".
        let expected = members[c].iter().map(|&m| pool[m].p_objective as f64 * per_user).fold(0.0, |a, b| a + b);
        // At the exact cost (the allocator's is rounded up to f32).
        let spend = spend(campaign, &members[c]);
        reports.push(CampaignReport {
            campaign_id: campaign.campaign_id.clone(),
            kind: campaign.channel.as_str().to_string(),
            objective: format!("{:?}", campaign.objective).to_lowercase(),
            podcast_streams: campaign.podcast_streams,
            eligible_users: scored.eligible[c],
            candidates: pool.len() as u64,
            audience: outcome.audience,
            spend,
            budget: campaign.budget,
            expected_events: expected,
            expected_ecps: (expected > 0.0).then(|| spend / expected),
            mean_p_objective: scored.mean_p(c),
            price: allocation.prices.as_ref().map(|prices| prices[c]),
            churn: churn[c],
            withheld: outcome
                .withheld
                .as_ref()
                .map(|w| withheld_reason(campaign, scored.eligible[c], privacy_floor, w)),
        });
    }
    reports
}

/// Totals over a group of a run's campaigns.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// e.g. `promotion` / `stream`, `tier 2 (1000-5000)`, or `all`.
    pub name: String,
    pub campaigns: usize,
    /// Campaigns that got an audience.
    pub served: usize,
    pub audience: u64,
    pub budget: f64,
    pub spend: f64,
    pub expected_events: f64,
}

impl Group {
    fn new(name: String) -> Group {
        Group { name, campaigns: 0, served: 0, audience: 0, budget: 0.0, spend: 0.0, expected_events: 0.0 }
    }

    fn add(&mut self, c: &CampaignReport) {
        self.campaigns += 1;
        self.served += (c.audience > 0) as usize;
        self.audience += c.audience;
        self.budget += c.budget;
        self.spend += c.spend;
        self.expected_events += c.expected_events;
    }

    /// Spend per expected event (eCPS for stream campaigns).
    pub fn expected_cost_per_event(&self) -> Option<f64> {
        (self.expected_events > 0.0).then(|| self.spend / self.expected_events)
    }
}

/// Groups `campaigns` by `key` (sorted by key), then a total named `all`.
fn grouped<'a, K: Ord>(
    campaigns: impl Iterator<Item = &'a CampaignReport>,
    key: impl Fn(&CampaignReport) -> (K, String),
) -> Vec<Group> {
    let mut groups: BTreeMap<K, Group> = BTreeMap::new();
    let mut total = Group::new("all".to_string());
    for c in campaigns {
        let (k, name) = key(c);
        groups.entry(k).or_insert_with(|| Group::new(name)).add(c);
        total.add(c);
    }
    groups.into_values().chain([total]).collect()
}

impl RunManifest {
    /// The campaigns by channel × objective (named `kind / objective`), then all.
    pub fn by_market(&self) -> Vec<Group> {
        grouped(self.campaigns.iter(), |c| {
            ((c.kind.clone(), c.objective.clone()), format!("{} / {}", c.kind, c.objective))
        })
    }

    /// The stream campaigns by their podcast's stream tier, then all stream
    /// campaigns: expected events are streams, so cost per event is eCPS.
    pub fn stream_campaigns_by_tier(&self) -> Vec<Group> {
        let streams = self.campaigns.iter().filter(|c| c.objective == "stream");
        grouped(streams, |c| {
            let tier = crate::contract::stream_tier(c.podcast_streams);
            (tier, crate::contract::tier_label(tier))
        })
    }
}
