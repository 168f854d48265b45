//! The synthetic world (docs/world.md): users, podcasts with a Zipf
//! popularity over 8 stream tiers, campaigns whose budgets follow the market
//! ([`market`]), follows and impression logs from a popularity-biased logging
//! policy, with labels drawn from known true probabilities ([`truth`]).
//!
//! Determinism and scale: podcasts and campaigns are small and held in memory;
//! a user is a pure function of (seed, index), drawn from its own random stream, so
//! users, follows and impressions can be produced in any order, in bounded memory,
//! for any number of users. See docs/world.md for the generative model.

mod catalog;
mod config;
pub mod market;
pub mod regime;
pub mod truth;
pub mod write;

use chrono::NaiveDate;
use rand::distr::weighted::WeightedIndex;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Poisson, StandardNormal};

use crate::contract::{GENRE_COUNT, Task};
use crate::hashing::splitmix64;
pub use catalog::{Campaign, Podcast};
use catalog::{make_campaigns, make_podcasts};
pub use config::{CampaignDraw, KNOWN_VERSIONS, WorldConfig};
use truth::{Channel, Exposure, LATENT_DIM, TruthParams, UserTruth};

/// Bumped whenever the same seed would produce different data. The previous
/// version stays reproducible: a config names the version it follows
/// ([`WorldConfig::generator_version`], [`regime`]).
pub const GENERATOR_VERSION: u32 = config::CURRENT_VERSION;

/// Countries with their main language and share of users.
const COUNTRIES: [((&str, &str), f64); 10] = [
    (("US", "en"), 0.30),
    (("GB", "en"), 0.10),
    (("DE", "de"), 0.09),
    (("BR", "pt"), 0.10),
    (("MX", "es"), 0.08),
    (("ES", "es"), 0.05),
    (("FR", "fr"), 0.08),
    (("SE", "sv"), 0.05),
    (("IN", "hi"), 0.10),
    (("JP", "ja"), 0.05),
];
pub const AGE_BUCKETS: [(&str, f64); 5] =
    [("18-24", 0.25), ("25-34", 0.30), ("35-44", 0.20), ("45-54", 0.15), ("55+", 0.10)];
pub const PLATFORMS: [(&str, f64); 4] = [("ios", 0.35), ("android", 0.45), ("desktop", 0.12), ("web", 0.08)];
/// Version 2: the probability that a logging draw is a promotion.
const V2_PROMOTION_DRAW: f64 = 0.75;
/// Version 3: logging draws of the chosen channel before a slot is given up
/// (a user no campaign of the channel targets is drawn again).
const MAX_DRAWS: usize = 1_000;
/// Campaigns the logging policy considers per impression.
const POLICY_CANDIDATES: usize = 6;

#[derive(Debug, Clone)]
pub struct User {
    pub user_id: i64,
    pub country: &'static str,
    pub language: &'static str,
    pub age_bucket: &'static str,
    pub platform: &'static str,
    pub is_premium: bool,
    pub ads_opt_out: bool,
    pub listening_hours_30d: f32,
    pub follows_count: i32,
    pub searches_30d: i32,
    pub genre_affinity: [f32; GENRE_COUNT],
    pub truth: UserTruth,
}

/// One logged impression.
#[derive(Debug, Clone)]
pub struct Impression {
    pub ts_micros: i64,
    pub user_id: i64,
    pub campaign: usize,
    pub hour: u8,
    pub streamed: bool,
    pub clicked: bool,
    pub liked: bool,
    pub followed: bool,
}

/// The in-memory part of a world: everything but users, which are drawn on demand.
pub struct World {
    pub config: WorldConfig,
    pub params: TruthParams,
    pub genre_embeddings: [[f32; LATENT_DIM]; GENRE_COUNT],
    pub podcasts: Vec<Podcast>,
    pub campaigns: Vec<Campaign>,
    /// Reach, demand and supply behind the campaigns' budgets.
    pub market: market::MarketShape,
    /// Popularity-weighted podcast sampler, for follows.
    follow_sampler: WeightedIndex<f64>,
    /// Per channel (ad, promotion): campaign indices and their logging weights.
    policy: [(Vec<usize>, Option<WeightedIndex<f64>>); 2],
}

/// Random stream tags, so each part of the world draws from its own stream.
#[derive(Clone, Copy)]
enum Stream {
    Genres = 1,
    Podcasts,
    Campaigns,
    User,
    Follows,
    Impressions,
    Market,
}

/// A ChaCha generator for (seed, stream, index): independent, reproducible streams.
fn rng_for(seed: u64, stream: Stream, index: u64) -> ChaCha8Rng {
    let mut words = [0u8; 32];
    let mut state = seed ^ (stream as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for (chunk, salt) in words.chunks_mut(8).zip([index, !index, index.rotate_left(17), 0xA5A5]) {
        state = splitmix64(state ^ salt);
        chunk.copy_from_slice(&state.to_le_bytes());
    }
    ChaCha8Rng::from_seed(words)
}

fn normal(rng: &mut ChaCha8Rng) -> f32 {
    rng.sample::<f32, _>(StandardNormal)
}

fn pick<T: Copy>(rng: &mut ChaCha8Rng, options: &[(T, f64)]) -> T {
    let total: f64 = options.iter().map(|(_, w)| w).sum();
    let mut x = rng.random::<f64>() * total;
    for &(value, weight) in options {
        if x < weight {
            return value;
        }
        x -= weight;
    }
    options[options.len() - 1].0
}

/// As [`pick`], the index of the option drawn.
fn pick_index<T>(rng: &mut ChaCha8Rng, options: &[(T, f64)]) -> usize {
    let indexed: Vec<(usize, f64)> = options.iter().enumerate().map(|(i, (_, w))| (i, *w)).collect();
    pick(rng, &indexed)
}

fn latent(rng: &mut ChaCha8Rng, scale: f32) -> [f32; LATENT_DIM] {
    std::array::from_fn(|_| normal(rng) * scale)
}

/// A random subset of `options` (by value) of size 1..=max.
fn subset<T: Copy + PartialEq>(rng: &mut ChaCha8Rng, options: &[T], max: usize) -> Vec<T> {
    let size = rng.random_range(1..=max.min(options.len()));
    let mut chosen = Vec::with_capacity(size);
    while chosen.len() < size {
        let value = options[rng.random_range(0..options.len())];
        if !chosen.contains(&value) {
            chosen.push(value);
        }
    }
    chosen
}

impl World {
    /// Builds the in-memory part of the world: genres, podcasts, campaigns.
    pub fn new(config: WorldConfig) -> World {
        let params = TruthParams::for_version(config.generator_version);
        let mut rng = rng_for(config.seed, Stream::Genres, 0);
        let genre_embeddings = std::array::from_fn(|_| latent(&mut rng, 1.0));
        let podcasts = make_podcasts(&config, &genre_embeddings);
        let campaigns = make_campaigns(&config, &podcasts);
        let follow_sampler = WeightedIndex::new(podcasts.iter().map(|p| (1.0 + p.streams_30d as f64).powf(0.5)))
            .expect("podcasts exist");
        let policy = [Channel::Ad, Channel::Promotion].map(|channel| {
            let members: Vec<usize> = (0..campaigns.len()).filter(|&c| campaigns[c].channel == channel).collect();
            // Popularity bias: the logging policy favours popular podcasts.
            let weights = members.iter().map(|&c| (1.0 + podcasts[campaigns[c].podcast].streams_30d as f64).powf(0.35));
            let sampler = WeightedIndex::new(weights).ok();
            (members, sampler)
        });
        // The market samples the world's own users, so it is set once the world exists.
        let market = market::MarketShape::default();
        let mut world = World { config, params, genre_embeddings, podcasts, campaigns, market, follow_sampler, policy };
        world.market = market::set_budgets(&mut world);
        world
    }

    /// User number `index` (0-based); `user_id` is `index + 1`.
    pub fn user(&self, index: u64) -> User {
        let mut rng = rng_for(self.config.seed, Stream::User, index);
        let (country, main_language) = pick(&mut rng, &COUNTRIES);
        // One user in eight listens in English whatever the country.
        let language = if rng.random_bool(0.125) { "en" } else { main_language };
        let age = pick_index(&mut rng, &AGE_BUCKETS);
        let platform = pick_index(&mut rng, &PLATFORMS);
        let is_premium = rng.random_bool(0.35);
        let ads_opt_out = rng.random_bool(0.06);
        let taste = latent(&mut rng, 1.0);
        let activity = normal(&mut rng);
        let observed = regime::observed_receptivity(platform, age, activity);
        let ad_receptivity = regime::ad_receptivity(self.config.ad_receptivity_observed, observed, normal(&mut rng));
        let truth = UserTruth { taste, activity, ad_receptivity, mobile: regime::is_mobile(platform) };
        let (age_bucket, platform) = (AGE_BUCKETS[age].0, PLATFORMS[platform].0);
        // Observed listening shares: a noisy softmax of the user's taste per genre.
        let logits: [f32; GENRE_COUNT] = std::array::from_fn(|g| {
            let dot: f32 = self.genre_embeddings[g].iter().zip(&truth.taste).map(|(a, b)| a * b).sum();
            1.2 * dot / (LATENT_DIM as f32).sqrt() + 0.5 * normal(&mut rng)
        });
        let max = logits.iter().copied().fold(f32::MIN, f32::max);
        let exp = logits.map(|l| (l - max).exp());
        let sum: f32 = exp.iter().sum();
        let genre_affinity = exp.map(|e| e / sum);
        // Capped at the hours in 30 days, the contract's limit: the lognormal
        // passes it above 5.1 standard deviations of activity (about two
        // users in ten million).
        let listening_hours_30d = (2.0 + 0.9 * truth.activity).exp().min(crate::contract::HOURS_IN_30_DAYS as f32);
        let follows_count = poisson(&mut rng, (0.8 + 0.5 * truth.activity as f64).exp()).min(40) as i32;
        let searches_30d = poisson(&mut rng, (1.0 + 0.4 * truth.activity as f64).exp()) as i32;
        User {
            user_id: index as i64 + 1,
            country,
            language,
            age_bucket,
            platform,
            is_premium,
            ads_opt_out,
            listening_hours_30d,
            follows_count,
            searches_30d,
            genre_affinity,
            truth,
        }
    }

    /// The podcasts (indices) a user follows: `follows_count` of them, drawn by
    /// popularity and kept by affinity.
    pub fn follows(&self, index: u64, user: &User) -> Vec<usize> {
        let mut rng = rng_for(self.config.seed, Stream::Follows, index);
        let wanted = (user.follows_count as usize).min(self.podcasts.len());
        let mut scored: Vec<(f32, usize)> = Vec::with_capacity(wanted * 3);
        for _ in 0..wanted * 3 {
            let p = self.follow_sampler.sample(&mut rng);
            if scored.iter().any(|&(_, q)| q == p) {
                continue;
            }
            let podcast = &self.podcasts[p];
            let dot: f32 = user.truth.taste.iter().zip(&podcast.truth.embedding).map(|(a, b)| a * b).sum();
            scored.push((dot + normal(&mut rng), p));
        }
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut follows: Vec<usize> = scored.into_iter().take(wanted).map(|(_, p)| p).collect();
        follows.sort_unstable();
        follows
    }

    /// The impressions logged on day `day` (0-based from the first log day), in
    /// time order.
    pub fn impressions_on(&self, day: u32) -> Vec<Impression> {
        let days = self.config.days as u64;
        let count = self.config.impressions / days + u64::from((day as u64) < self.config.impressions % days);
        let mut rng = rng_for(self.config.seed, Stream::Impressions, day as u64);
        let day_start = self.first_log_day() + chrono::Days::new(day as u64);
        let day_micros = day_start.and_hms_opt(0, 0, 0).expect("midnight").and_utc().timestamp_micros();
        let hours: Vec<(u8, f64)> =
            (0..24u8).map(|h| (h, 1.0 + 0.6 * ((h as f64 - 20.0) / 24.0 * std::f64::consts::TAU).cos())).collect();
        let mut out = Vec::with_capacity(count as usize);
        while (out.len() as u64) < count {
            let logged = match self.config.ad_share {
                // Version 2: the channel is drawn again with every attempt.
                None => {
                    let channel = if rng.random_bool(V2_PROMOTION_DRAW) { Channel::Promotion } else { Channel::Ad };
                    self.log_one(&mut rng, channel, day_micros, &hours)
                }
                // Version 3: the slot's channel is kept until an impression is
                // logged, so `ad_share` of the logs are ads.
                Some(share) => {
                    let channel = self.slot_channel(rng.random_bool(share));
                    (0..MAX_DRAWS).find_map(|_| self.log_one(&mut rng, channel?, day_micros, &hours))
                }
            };
            match logged {
                Some(impression) => out.push(impression),
                // No campaign of either channel can be shown: the logs end here.
                None if self.policy.iter().all(|(_, sampler)| sampler.is_none()) => break,
                None => {}
            }
        }
        out.sort_by_key(|i| (i.ts_micros, i.user_id, i.campaign));
        out
    }

    /// The channel of a version 3 log slot: ads when drawn so, unless the world
    /// has no campaign of that channel (then the other, or none).
    fn slot_channel(&self, ad: bool) -> Option<Channel> {
        let wanted = if ad { Channel::Ad } else { Channel::Promotion };
        let other = if ad { Channel::Promotion } else { Channel::Ad };
        let has = |channel: Channel| self.policy[(channel == Channel::Promotion) as usize].1.is_some();
        [wanted, other].into_iter().find(|&c| has(c))
    }

    /// One impression of `channel`, or None when the drawn user fits no candidate.
    fn log_one(
        &self,
        rng: &mut ChaCha8Rng,
        channel: Channel,
        day_micros: i64,
        hours: &[(u8, f64)],
    ) -> Option<Impression> {
        let (members, sampler) = &self.policy[(channel == Channel::Promotion) as usize];
        let sampler = sampler.as_ref()?;
        let index = rng.random_range(0..self.config.users);
        let user = self.user(index);
        let hour = pick(rng, hours);
        let mut best: Option<(f32, usize)> = None;
        for _ in 0..POLICY_CANDIDATES {
            let c = members[sampler.sample(rng)];
            let campaign = &self.campaigns[c];
            if !campaign.targets(&user) {
                continue;
            }
            let exposure = self.exposure(&user, c, hour);
            // The production policy sees popularity and a noisy view of affinity.
            let score = 0.5 * exposure.podcast.log_streams + 0.5 * (self.params.affinity(&exposure) + normal(rng));
            if best.is_none_or(|(s, _)| score > s) {
                best = Some((score, c));
            }
        }
        let (_, c) = best?;
        let probabilities = self.params.probabilities(&self.exposure(&user, c, hour));
        let stream = crate::contract::stream_task(channel);
        let second = rng.random_range(0..3600i64);
        Some(Impression {
            ts_micros: day_micros + (hour as i64 * 3600 + second) * 1_000_000,
            user_id: user.user_id,
            campaign: c,
            hour,
            streamed: rng.random::<f32>() < probabilities[stream],
            clicked: rng.random::<f32>() < probabilities[Task::Click.head()],
            liked: rng.random::<f32>() < probabilities[Task::Like.head()],
            followed: rng.random::<f32>() < probabilities[Task::Follow.head()],
        })
    }

    /// What the truth needs to know about showing campaign `c` to `user` at `hour`.
    pub fn exposure<'a>(&'a self, user: &'a User, c: usize, hour: u8) -> Exposure<'a> {
        let campaign = &self.campaigns[c];
        let podcast = &self.podcasts[campaign.podcast];
        Exposure {
            user: &user.truth,
            podcast: &podcast.truth,
            language_match: user.language == podcast.language,
            creative: campaign.creative,
            channel: campaign.channel,
            format: campaign.format,
            hour,
        }
    }

    pub fn first_log_day(&self) -> NaiveDate {
        self.config.run_date - chrono::Days::new(self.config.days as u64)
    }
}

fn poisson(rng: &mut ChaCha8Rng, mean: f64) -> u64 {
    Poisson::new(mean.max(1e-6)).map(|d| d.sample(rng) as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{LESS_STREAMED_BELOW, stream_tier};

    fn small() -> World {
        World::new(WorldConfig { users: 2_000, impressions: 20_000, days: 4, ..WorldConfig::default() })
    }

    #[test]
    fn listening_hours_stay_within_the_hours_of_30_days() {
        // User 4,488,862 of the ten-million-user world of seed 7 drew 879.8
        // hours before the cap, and `validate` refused the world.
        let world = World::new(WorldConfig { users: 10_000_000, seed: 7, ..WorldConfig::default() });
        let hours = world.user(4_488_861).listening_hours_30d;
        assert_eq!(hours, crate::contract::HOURS_IN_30_DAYS as f32);
    }

    #[test]
    fn users_are_a_pure_function_of_seed_and_index() {
        let world = small();
        let a = world.user(123);
        let b = world.user(123);
        assert_eq!(a.truth, b.truth);
        assert_eq!(a.genre_affinity, b.genre_affinity);
        assert_ne!(world.user(124).truth, a.truth);
        let other = World::new(WorldConfig { seed: 8, ..world.config.clone() });
        assert_ne!(other.user(123).truth, a.truth);
    }

    #[test]
    fn podcast_popularity_spans_all_eight_tiers_with_a_long_tail() {
        let world = small();
        let mut tiers = [0usize; 8];
        for p in &world.podcasts {
            tiers[stream_tier(p.streams_30d)] += 1;
        }
        assert!(tiers.iter().all(|&n| n > 0), "tiers {tiers:?}");
        let less = world.podcasts.iter().filter(|p| p.streams_30d < LESS_STREAMED_BELOW).count();
        assert!(less * 2 > world.podcasts.len(), "less-streamed podcasts: {less}");
    }

    #[test]
    fn in_version_2_ads_are_sparser_and_never_shown_to_premium_or_opted_out_users() {
        let world = World::new(small().config.version_2());
        let impressions = world.impressions_on(0);
        let ads: Vec<_> = impressions.iter().filter(|i| world.campaigns[i.campaign].channel == Channel::Ad).collect();
        assert!(ads.len() * 2 < impressions.len(), "{} ads of {}", ads.len(), impressions.len());
        for impression in ads {
            let user = world.user(impression.user_id as u64 - 1);
            assert!(!user.is_premium && !user.ads_opt_out, "user {}", user.user_id);
        }
    }

    #[test]
    fn logged_stream_rate_matches_the_true_probabilities() {
        let world = small();
        let (mut streams, mut expected, mut n) = (0.0, 0.0, 0.0);
        for day in 0..world.config.days {
            for i in world.impressions_on(day) {
                let user = world.user(i.user_id as u64 - 1);
                let channel = world.campaigns[i.campaign].channel;
                let p = world.params.probabilities(&world.exposure(&user, i.campaign, i.hour));
                expected += p[crate::contract::stream_task(channel)] as f64;
                streams += i.streamed as u8 as f64;
                n += 1.0;
            }
        }
        // 20,000 Bernoulli draws: the two rates agree to within a few standard errors.
        let (observed, expected) = (streams / n, expected / n);
        let tolerance = 4.0 * (expected * (1.0 - expected) / n).sqrt();
        assert!((observed - expected).abs() < tolerance, "observed {observed}, expected {expected}");
    }
}
