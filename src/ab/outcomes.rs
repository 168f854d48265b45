//! What an arm's audiences would have done, from the world's truth: for each
//! chosen (user, campaign), the true probability of each task for each of the
//! campaign's impressions, summed into expected streams, clicks and follows,
//! with the spend; per slice (overall, less-streamed podcasts, each stream
//! tier) and per channel.

use serde::{Deserialize, Serialize};

use super::arms::Chosen;
use super::{AbError, campaign_in_world};
use crate::contract::{Channel, LESS_STREAMED_BELOW, TIER_BOUNDS, stream_task, stream_tier};
use crate::world::World;

/// Sums over a slice of an arm's audiences.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    pub campaigns: u64,
    pub users: u64,
    pub impressions: f64,
    pub spend: f64,
    /// Expected streams of the podcasts promoted (the stream task of the
    /// campaign's channel), from the true probabilities.
    pub true_streams: f64,
    pub true_clicks: f64,
    pub true_follows: f64,
}

impl Totals {
    fn add(&mut self, other: &Totals) {
        self.campaigns += other.campaigns;
        self.users += other.users;
        self.impressions += other.impressions;
        self.spend += other.spend;
        self.true_streams += other.true_streams;
        self.true_clicks += other.true_clicks;
        self.true_follows += other.true_follows;
    }

    fn scaled(&self, by: f64) -> Totals {
        Totals {
            campaigns: self.campaigns,
            users: self.users,
            impressions: self.impressions * by,
            spend: self.spend * by,
            true_streams: self.true_streams * by,
            true_clicks: self.true_clicks * by,
            true_follows: self.true_follows * by,
        }
    }

    /// Impression-to-stream rate.
    pub fn i2s(&self) -> f64 {
        ratio(self.true_streams, self.impressions)
    }

    pub fn ctr(&self) -> f64 {
        ratio(self.true_clicks, self.impressions)
    }

    /// Effective cost per stream.
    pub fn ecps(&self) -> f64 {
        ratio(self.spend, self.true_streams)
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { f64::NAN }
}

/// One channel's slices.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Slices {
    pub overall: Totals,
    /// Podcasts under [`LESS_STREAMED_BELOW`] 30-day streams.
    pub less_streamed: Totals,
    /// The eight stream tiers of the podcast.
    pub tiers: Vec<Totals>,
}

impl Slices {
    fn new() -> Slices {
        Slices { tiers: vec![Totals::default(); TIER_BOUNDS.len() + 1], ..Default::default() }
    }

    fn add(&mut self, other: &Slices) {
        self.overall.add(&other.overall);
        self.less_streamed.add(&other.less_streamed);
        for (a, b) in self.tiers.iter_mut().zip(&other.tiers) {
            a.add(b);
        }
    }

    fn scaled(&self, by: f64) -> Slices {
        Slices {
            overall: self.overall.scaled(by),
            less_streamed: self.less_streamed.scaled(by),
            tiers: self.tiers.iter().map(|t| t.scaled(by)).collect(),
        }
    }
}

/// An arm's outcome: all campaigns, and promotions and ads apart.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub all: Slices,
    pub promotion: Slices,
    pub ad: Slices,
}

impl Outcome {
    /// The outcome of one arm that ran on several halves, per half.
    pub fn mean(outcomes: &[Outcome]) -> Outcome {
        let mut sum = Outcome { all: Slices::new(), promotion: Slices::new(), ad: Slices::new() };
        for o in outcomes {
            sum.all.add(&o.all);
            sum.promotion.add(&o.promotion);
            sum.ad.add(&o.ad);
        }
        let by = 1.0 / outcomes.len().max(1) as f64;
        Outcome { all: sum.all.scaled(by), promotion: sum.promotion.scaled(by), ad: sum.ad.scaled(by) }
    }

    pub fn channel(&self, channel: Option<Channel>) -> &Slices {
        match channel {
            None => &self.all,
            Some(Channel::Promotion) => &self.promotion,
            Some(Channel::Ad) => &self.ad,
        }
    }
}

/// The true outcome of `chosen`, the audiences of an arm in `world`.
pub fn outcome(world: &World, chosen: &Chosen, hour: u8) -> Result<Outcome, AbError> {
    let mut out = Outcome { all: Slices::new(), promotion: Slices::new(), ad: Slices::new() };
    for (campaign, members) in chosen.scored.campaigns.iter().zip(&chosen.members) {
        if members.is_empty() {
            continue;
        }
        let c = campaign_in_world(world, &campaign.campaign_id)?;
        let per_user = campaign.impressions_per_user as f64;
        let stream = stream_task(campaign.channel);
        let mut totals = Totals { campaigns: 1, users: members.len() as u64, ..Default::default() };
        for &user_id in members {
            let user = world.user(user_id as u64 - 1);
            let p = world.params.probabilities(&world.exposure(&user, c, hour));
            totals.impressions += per_user;
            totals.spend += campaign.cost_per_user();
            totals.true_streams += per_user * p[stream] as f64;
            totals.true_clicks += per_user * p[2] as f64;
            totals.true_follows += per_user * p[4] as f64;
        }
        let streams = campaign.podcast_streams;
        let channel = if campaign.channel == Channel::Ad { &mut out.ad } else { &mut out.promotion };
        for slices in [&mut out.all, channel] {
            slices.overall.add(&totals);
            slices.tiers[stream_tier(streams)].add(&totals);
            if streams < LESS_STREAMED_BELOW {
                slices.less_streamed.add(&totals);
            }
        }
    }
    Ok(out)
}
