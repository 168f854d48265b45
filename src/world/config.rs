//! A world's config: its sizes, seed and run date, and its regime (the
//! generator version and version 3's settings; docs/world.md, "The
//! regime"), with the checks of what each version accepts.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// Total demand of the active campaigns over supply, per channel, unless a
/// world says otherwise (docs/world.md, "The market").
pub const DEFAULT_SELL_THROUGH: f64 = 0.65;

/// The generator versions this build can produce (and rebuild the truth of).
pub const KNOWN_VERSIONS: [u32; 2] = [2, 3];
/// The version `generate` writes unless told otherwise.
pub const CURRENT_VERSION: u32 = 3;

/// How a channel's campaigns choose the podcast they promote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CampaignDraw {
    /// Half uniformly over the catalogue, half by √streams (version 2).
    #[default]
    Half,
    /// Three quarters uniformly: podcasts of every size buy them (the paper's ads).
    Uniform,
    /// Three quarters by √streams: strategically important content (the paper's promotions).
    Streams,
}

impl CampaignDraw {
    /// The share of campaigns whose podcast is drawn uniformly.
    pub fn uniform_share(self) -> f64 {
        match self {
            CampaignDraw::Half => 0.5,
            CampaignDraw::Uniform => 0.75,
            CampaignDraw::Streams => 0.25,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CampaignDraw::Half => "half",
            CampaignDraw::Uniform => "uniform",
            CampaignDraw::Streams => "streams",
        }
    }
}

impl std::str::FromStr for CampaignDraw {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "half" => Ok(CampaignDraw::Half),
            "uniform" => Ok(CampaignDraw::Uniform),
            "streams" => Ok(CampaignDraw::Streams),
            other => Err(format!("unknown campaign draw {other:?} (half, uniform or streams)")),
        }
    }
}

/// Version 3's defaults, fixed from the paper's text before any run.
pub const DEFAULT_AD_SHARE: f64 = 0.75;
pub const DEFAULT_AD_RECEPTIVITY_OBSERVED: f64 = 0.5;

/// The size and shape of a world.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WorldConfig {
    pub seed: u64,
    pub users: u64,
    pub podcasts: u64,
    pub campaigns: u64,
    /// Impression log rows, spread over `days`.
    pub impressions: u64,
    /// Days of impression logs, ending the day before `run_date`.
    pub days: u32,
    /// The day the job would run for: campaigns are flighted around it.
    pub run_date: NaiveDate,
    /// Total demand of the active campaigns over supply (users × cap), per
    /// channel: see [`market`].
    #[serde(default = "default_sell_through")]
    pub sell_through: f64,
    /// The generator version whose behaviour this world follows. A config
    /// without one (written before version 3) is version 2's, and so are the
    /// defaults of the keys below when they are absent.
    /// (Version 2's settings are not written, so its `world.json` is as it was.)
    #[serde(default = "version_2", skip_serializing_if = "is_version_2")]
    pub generator_version: u32,
    /// Share of the logged impressions that are ads, after eligibility
    /// (version 3). Version 2 has none: its logs draw a promotion with
    /// probability 0.75 per attempt and redraw failed ad draws (about 17% ads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ad_share: Option<f64>,
    /// Share of the ad receptivity's variance that user features the model
    /// sees explain (platform, age bucket, activity); 0 in version 2.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ad_receptivity_observed: f64,
    /// How ad campaigns choose their podcast.
    #[serde(default, skip_serializing_if = "is_half")]
    pub ad_campaigns: CampaignDraw,
    /// How promotions choose their podcast.
    #[serde(default, skip_serializing_if = "is_half")]
    pub promotion_campaigns: CampaignDraw,
}

fn default_sell_through() -> f64 {
    DEFAULT_SELL_THROUGH
}

fn version_2() -> u32 {
    2
}

fn is_version_2(version: &u32) -> bool {
    *version == 2
}

fn is_zero(value: &f64) -> bool {
    *value == 0.0
}

fn is_half(draw: &CampaignDraw) -> bool {
    *draw == CampaignDraw::Half
}

impl WorldConfig {
    /// The version 2 world of the same sizes and seed (the world before the
    /// paper's regime), byte for byte as version 2 wrote it.
    pub fn version_2(self) -> WorldConfig {
        WorldConfig {
            generator_version: 2,
            ad_share: None,
            ad_receptivity_observed: 0.0,
            ad_campaigns: CampaignDraw::Half,
            promotion_campaigns: CampaignDraw::Half,
            ..self
        }
    }

    /// What is wrong with the regime settings for the config's version, if anything.
    pub fn regime_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match self.generator_version {
            2 => {
                if self.ad_share.is_some()
                    || self.ad_receptivity_observed != 0.0
                    || self.ad_campaigns != CampaignDraw::Half
                    || self.promotion_campaigns != CampaignDraw::Half
                {
                    problems.push(
                        "generator version 2 has no ad share, observed receptivity or campaign draw settings \
                         (they are version 3's)"
                            .to_string(),
                    );
                }
            }
            3 => {
                match self.ad_share {
                    Some(share) if share > 0.0 && share < 1.0 => {}
                    Some(share) => problems.push(format!("ad share {share} must be above 0 and below 1")),
                    None => problems.push("generator version 3 needs an ad share".to_string()),
                }
                if !(0.0..=1.0).contains(&self.ad_receptivity_observed) {
                    problems.push(format!(
                        "observed ad receptivity {} must be between 0 and 1",
                        self.ad_receptivity_observed
                    ));
                }
            }
            other => {
                problems.push(format!("generator version {other} is not one this build knows ({:?})", KNOWN_VERSIONS))
            }
        }
        problems
    }
}

impl Default for WorldConfig {
    fn default() -> Self {
        WorldConfig {
            seed: 7,
            users: 100_000,
            podcasts: 2_000,
            campaigns: 200,
            impressions: 1_000_000,
            days: 28,
            run_date: NaiveDate::from_ymd_opt(2026, 6, 1).expect("valid date"),
            sell_through: DEFAULT_SELL_THROUGH,
            generator_version: CURRENT_VERSION,
            ad_share: Some(DEFAULT_AD_SHARE),
            ad_receptivity_observed: DEFAULT_AD_RECEPTIVITY_OBSERVED,
            ad_campaigns: CampaignDraw::Uniform,
            promotion_campaigns: CampaignDraw::Streams,
        }
    }
}
