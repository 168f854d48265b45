//! The market: each campaign's budget follows from the reach it buys, so the
//! world's economics are the same at 20,000 users as at 10 million.
//!
//! Supply is what the job can sell in a day: every user the channel may reach
//! times the per-user cap ([`ASSUMED_CAP`], the job's default). Demand is what
//! the campaigns want to buy, in users: a campaign's targeting reaches a share
//! of the users (measured on a sample of the world's own users), and it wants a
//! drawn share of that reach, larger for narrow targeting (a niche advertiser
//! wants much of its niche), so that small markets and narrow segments are
//! oversubscribed while the whole market is not. One scale per channel makes
//! the active campaigns' total demand the world's `sell_through` share of the
//! supply. No campaign books less than [`FLOOR_MARGIN`] times its own minimum
//! audience: a platform does not sell audiences below its privacy floor. Where
//! those floors alone exceed the target (many campaigns on few users: 200
//! campaigns on 20,000 users), the floors win and the channel is oversubscribed.
//! Budget = wanted users × cost per user. See docs/world.md, "The market".

use rand::Rng;

use super::truth::Channel;
use super::{Campaign, Stream, World, normal, rng_for};

pub use super::config::DEFAULT_SELL_THROUGH;
/// Campaigns per user and channel that supply assumes (the job's default
/// `max_ads_per_user` and `max_promotions_per_user`).
pub const ASSUMED_CAP: f64 = 2.0;
/// Users whose targeting facts measure each campaign's reach.
const REACH_SAMPLE: u64 = 20_000;
/// The most of its reach a campaign wants.
const MAX_SHARE: f64 = 0.8;
/// How strongly narrow targeting raises the share wanted: share ∝ reach^−NARROWNESS.
/// At 1 a campaign wants about as many users whatever its reach (up to
/// [`MAX_SHARE`] of it): on a default world of 100,000 users about 4% of users
/// are then wanted by more promotions, and 10% of ad-reachable users by more
/// ads, than their cap (0.2% and 0.9% at 0.5).
const NARROWNESS: f64 = 1.0;
/// Spread of the campaigns' appetites: lognormal(0, APPETITE_SPREAD²).
const APPETITE_SPREAD: f32 = 0.6;
/// A campaign wants at least this many times its minimum audience.
const FLOOR_MARGIN: f64 = 1.2;
/// Share of ads that pace a total budget instead of giving a daily one.
const PACED_ADS: f64 = 0.25;

/// What the market looked like when budgets were set (for docs and tests).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MarketShape {
    /// Per campaign, the share of all users its targeting and channel reach.
    pub reach_share: Vec<f64>,
    /// Per campaign, the users it wants to buy today.
    pub wanted_users: Vec<f64>,
    /// Per channel (ad, promotion): users × cap.
    pub supply: [f64; 2],
    /// Per channel: Σ wanted users of the active campaigns.
    pub demand: [f64; 2],
    /// Per channel: what the active campaigns' floors alone want.
    pub floor_demand: [f64; 2],
}

fn channel_index(channel: Channel) -> usize {
    (channel == Channel::Promotion) as usize
}

/// Sets every campaign's budget (daily, or total and spent to date for paced
/// ads) from the market; returns the market's shape.
pub(super) fn set_budgets(world: &mut World) -> MarketShape {
    let config = world.config.clone();
    let users = config.users as f64;
    let sample: Vec<super::User> = (0..config.users.min(REACH_SAMPLE)).map(|i| world.user(i)).collect();
    let share_of_sample = |count: usize| count as f64 / sample.len() as f64;
    let reach_share: Vec<f64> =
        world.campaigns.iter().map(|c| share_of_sample(sample.iter().filter(|u| c.targets(u)).count())).collect();
    let ad_reachable = share_of_sample(sample.iter().filter(|u| !u.is_premium && !u.ads_opt_out).count());
    let supply = [ASSUMED_CAP * ad_reachable * users, ASSUMED_CAP * users];

    let drawn: Vec<Draw> =
        (0..world.campaigns.len()).map(|i| Draw::new(config.seed, i, world.campaigns[i].channel)).collect();
    let active: Vec<bool> = world
        .campaigns
        .iter()
        .map(|c| c.status == "active" && c.start_date <= config.run_date && config.run_date <= c.end_date)
        .collect();
    let wanted = |scale: f64, c: usize| {
        let campaign = &world.campaigns[c];
        let reach = reach_share[c] * users;
        let share = if reach_share[c] > 0.0 {
            (scale * drawn[c].appetite / reach_share[c].powf(NARROWNESS)).min(MAX_SHARE)
        } else {
            0.0
        };
        (share * reach).max(FLOOR_MARGIN * campaign.min_audience as f64)
    };
    let mut scales = [0.0; 2];
    let mut demand = [0.0; 2];
    let mut floor_demand = [0.0; 2];
    for channel in [Channel::Ad, Channel::Promotion] {
        let k = channel_index(channel);
        let members: Vec<usize> =
            (0..world.campaigns.len()).filter(|&c| active[c] && world.campaigns[c].channel == channel).collect();
        let total = |scale: f64| members.iter().map(|&c| wanted(scale, c)).sum::<f64>();
        scales[k] = solve_scale(total, config.sell_through * supply[k]);
        demand[k] = total(scales[k]);
        floor_demand[k] = total(0.0);
    }

    let wanted_users: Vec<f64> =
        (0..world.campaigns.len()).map(|c| wanted(scales[channel_index(world.campaigns[c].channel)], c)).collect();
    for ((campaign, draw), &users) in world.campaigns.iter_mut().zip(&drawn).zip(&wanted_users) {
        let daily = cents(users * cost_per_user(campaign));
        draw.apply(campaign, daily, config.run_date);
    }
    MarketShape { reach_share, wanted_users, supply, demand, floor_demand }
}

/// The scale at which `total(scale)` (non-decreasing) meets `target`, by
/// bisection; 0 when the floors alone exceed it.
fn solve_scale(total: impl Fn(f64) -> f64, target: f64) -> f64 {
    if total(0.0) >= target {
        return 0.0;
    }
    let mut high = 1e-3;
    while total(high) < target && high < 1e6 {
        high *= 2.0;
    }
    let mut low = 0.0;
    for _ in 0..100 {
        let mid = 0.5 * (low + high);
        if total(mid) < target { low = mid } else { high = mid }
    }
    high
}

fn cost_per_user(campaign: &Campaign) -> f64 {
    campaign.cpm * campaign.impressions_per_user as f64 / 1000.0
}

fn cents(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// A campaign's own market draws, from its own random stream.
struct Draw {
    appetite: f64,
    /// For a paced ad: the share of the planned spend it has spent so far.
    paced: Option<f64>,
}

impl Draw {
    fn new(seed: u64, index: usize, channel: Channel) -> Draw {
        let mut rng = rng_for(seed, Stream::Market, index as u64);
        let appetite = ((APPETITE_SPREAD * normal(&mut rng)) as f64).exp();
        let paced = (channel == Channel::Ad && rng.random_bool(PACED_ADS)).then(|| rng.random_range(0.8..1.1));
        Draw { appetite, paced }
    }

    /// Writes the budget fields: a daily budget, or for a paced ad the total
    /// and spend to date whose even pacing over the days left gives `daily`.
    fn apply(&self, campaign: &mut Campaign, daily: f64, run_date: chrono::NaiveDate) {
        match self.paced {
            None => (campaign.budget, campaign.total_budget, campaign.spent_to_date) = (Some(daily), None, None),
            Some(spent_share) => {
                let elapsed = (run_date - campaign.start_date).num_days().max(0) as f64;
                // The job paces over today and the days after it up to the end date.
                let days_left = ((campaign.end_date - run_date).num_days() + 1).max(1) as f64;
                let spent = cents(daily * elapsed * spent_share);
                campaign.budget = None;
                campaign.spent_to_date = Some(spent);
                campaign.total_budget = Some(cents(spent + daily * days_left));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::WorldConfig;

    fn world(users: u64, seed: u64) -> (World, MarketShape) {
        let world = World::new(WorldConfig { users, seed, impressions: 1_000, days: 2, ..WorldConfig::default() });
        let shape = world.market.clone();
        (world, shape)
    }

    #[test]
    fn demand_is_the_set_share_of_supply_at_every_size() {
        for users in [100_000, 1_000_000, 10_000_000] {
            let (_, shape) = world(users, 7);
            for k in 0..2 {
                let ratio = shape.demand[k] / shape.supply[k];
                assert!(
                    (ratio - DEFAULT_SELL_THROUGH).abs() < 1e-6,
                    "{users} users, channel {k}: sell-through {ratio}"
                );
            }
        }
        // 20,000 users: the same with 60 campaigns; with the default 200, the
        // ads' floors alone want more than that, and the floors win.
        for (campaigns, floors_win) in [(60, false), (200, true)] {
            let world = World::new(WorldConfig {
                users: 20_000,
                campaigns,
                impressions: 1_000,
                days: 2,
                ..WorldConfig::default()
            });
            let shape = &world.market;
            for k in 0..2 {
                let target = DEFAULT_SELL_THROUGH * shape.supply[k];
                let expected = target.max(shape.floor_demand[k]);
                assert!(
                    (shape.demand[k] - expected).abs() < 1e-6 * expected,
                    "{campaigns} campaigns, channel {k}: {shape:?}"
                );
            }
            assert_eq!(
                shape.floor_demand[0] > DEFAULT_SELL_THROUGH * shape.supply[0],
                floors_win,
                "{campaigns} campaigns"
            );
        }
    }

    #[test]
    fn budgets_scale_with_the_users_and_buy_at_least_the_floor() {
        let (small, _) = world(100_000, 7);
        let (large, _) = world(1_000_000, 7);
        let daily = |w: &World| -> f64 { w.campaigns.iter().filter_map(|c| c.budget).sum() };
        let ratio = daily(&large) / daily(&small);
        assert!((8.0..12.0).contains(&ratio), "10x the users, {ratio:.2}x the daily budgets");
        for c in &small.campaigns {
            let budget = c.budget.unwrap_or_else(|| {
                let days_left = ((c.end_date - small.config.run_date).num_days() + 1).max(1) as f64;
                (c.total_budget.unwrap() - c.spent_to_date.unwrap()) / days_left
            });
            let users = budget / cost_per_user(c);
            assert!(
                users >= FLOOR_MARGIN * c.min_audience as f64 * 0.97,
                "{} buys {users:.0} users, floor {}",
                c.campaign_id,
                c.min_audience
            );
        }
    }

    #[test]
    fn some_segments_are_oversubscribed_while_the_market_is_not() {
        let (world, shape) = world(100_000, 7);
        let date = world.config.run_date;
        // Per sampled user: the campaigns that want them, in expectation.
        let wanted_share: Vec<f64> = (0..world.campaigns.len())
            .map(|c| {
                if shape.reach_share[c] > 0.0 {
                    shape.wanted_users[c] / (shape.reach_share[c] * 100_000.0)
                } else {
                    0.0
                }
            })
            .collect();
        let (mut over, mut n) = (0usize, 0usize);
        for i in 0..5_000 {
            let user = world.user(i);
            let demand: f64 = world
                .campaigns
                .iter()
                .enumerate()
                .filter(|(_, c)| c.status == "active" && c.start_date <= date && date <= c.end_date)
                .filter(|(_, c)| c.channel == Channel::Promotion && c.targets(&user))
                .map(|(k, _)| wanted_share[k].min(1.0))
                .sum();
            over += (demand > ASSUMED_CAP) as usize;
            n += 1;
        }
        let share = over as f64 / n as f64;
        assert!((0.01..0.5).contains(&share), "share of users wanted by more promotions than their cap: {share:.3}");
    }
}
