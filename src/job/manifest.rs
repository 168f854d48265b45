//! The run manifest: what a committed run says about itself (per campaign:
//! eligible users, audience, spend against budget, expected events, the
//! solver's price, why it was withheld; the solver's value, bound and gap;
//! seconds per stage).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::commit::Fingerprint;
use super::config::ConfigFile;
use crate::allocate::{Allocation, Withheld};
use crate::scoring::Scored;
use crate::scoring::eligibility::ActiveCampaign;

/// Per campaign, in the manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CampaignReport {
    pub campaign_id: String,
    pub kind: String,
    pub objective: String,
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
    pub withheld: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunManifest {
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

/// The manifest's per-campaign reports, in the scored campaigns' order.
pub fn campaign_reports(scored: &Scored, allocation: &Allocation, privacy_floor: u64) -> Vec<CampaignReport> {
    let mut expected = vec![0.0f64; scored.campaigns.len()];
    let offsets = super::audiences::pool_offsets(scored);
    for &i in &allocation.chosen {
        let c = offsets.partition_point(|&o| o <= i) - 1;
        let candidate = &scored.pools[c][i - offsets[c]];
        expected[c] += candidate.p_objective as f64 * scored.campaigns[c].impressions_per_user as f64;
    }
    scored
        .campaigns
        .iter()
        .zip(&allocation.campaigns)
        .enumerate()
        .map(|(c, (campaign, outcome))| CampaignReport {
            campaign_id: campaign.campaign_id.clone(),
            kind: campaign.channel.as_str().to_string(),
            objective: format!("{:?}", campaign.objective).to_lowercase(),
            eligible_users: scored.eligible[c],
            candidates: scored.pools[c].len() as u64,
            audience: outcome.audience,
            spend: outcome.spend,
            budget: campaign.budget,
            expected_events: expected[c],
            expected_ecps: (expected[c] > 0.0).then(|| outcome.spend / expected[c]),
            mean_p_objective: scored.mean_p(c),
            price: allocation.prices.as_ref().map(|prices| prices[c]),
            withheld: outcome.withheld.as_ref().map(|w| withheld_reason(campaign, scored.eligible[c], privacy_floor, w)),
        })
        .collect()
}
