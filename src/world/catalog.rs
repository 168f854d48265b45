//! The catalogue of a world: podcasts (genre, language, topics, a Zipf
//! popularity over 8 stream tiers) and campaigns (channel, objective, format,
//! flight, price, targeting). Budgets are set afterwards by the market
//! ([`super::market`]), once every campaign exists.

use chrono::NaiveDate;
use rand::Rng;
use rand::distr::weighted::WeightedIndex;
use rand_distr::Distribution;

use super::truth::{Channel, Format, LATENT_DIM, PodcastTruth};
use super::{AGE_BUCKETS, COUNTRIES, PLATFORMS, Stream, User, WorldConfig, normal, pick, rng_for, subset};
use crate::contract::GENRE_COUNT;

const LANGUAGES: [(&str, f64); 8] =
    [("en", 0.45), ("es", 0.12), ("de", 0.08), ("pt", 0.09), ("fr", 0.07), ("sv", 0.05), ("hi", 0.08), ("ja", 0.06)];

const TOPICS: [&str; 24] = [
    "interviews",
    "storytelling",
    "daily",
    "investigative",
    "improv",
    "politics",
    "football",
    "basketball",
    "startups",
    "investing",
    "fitness",
    "mental_health",
    "parenting",
    "ai",
    "gaming",
    "ancient",
    "space",
    "climate",
    "film",
    "books",
    "faith",
    "bedtime",
    "mystery",
    "relationships",
];
const PROMOTION_SURFACES: [&str; 4] = ["home", "search", "now_playing", "podcast_page"];
const AD_SURFACES: [&str; 3] = ["in_stream", "home", "now_playing"];

/// Streams of the most popular podcast and the Zipf exponent: with 2,000 podcasts
/// this spans all 8 tiers, with most podcasts under 5,000 streams (the long tail).
const ZIPF_TOP_STREAMS: f64 = 80_000_000.0;
const ZIPF_EXPONENT: f64 = 1.6;

#[derive(Debug, Clone)]
pub struct Podcast {
    pub podcast_id: i64,
    pub genre: usize,
    pub language: &'static str,
    pub topics: Vec<&'static str>,
    pub streams_30d: i64,
    pub is_original: bool,
    pub truth: PodcastTruth,
}

#[derive(Debug, Clone)]
pub struct Campaign {
    pub campaign_id: String,
    pub channel: Channel,
    /// Index into [`World::podcasts`].
    pub podcast: usize,
    pub objective: &'static str,
    pub format: Format,
    pub surface: &'static str,
    pub status: &'static str,
    pub start_date: NaiveDate,
    pub end_date: NaiveDate,
    pub budget: Option<f64>,
    pub total_budget: Option<f64>,
    pub spent_to_date: Option<f64>,
    pub cpm: f64,
    pub impressions_per_user: i32,
    pub priority: f64,
    pub target_countries: Vec<&'static str>,
    pub target_age_buckets: Vec<&'static str>,
    pub target_platforms: Vec<&'static str>,
    pub target_languages: Vec<&'static str>,
    pub min_audience: i64,
    /// True creative effect on every task's logit.
    pub creative: f32,
}

impl Campaign {
    /// Whether the campaign's targeting and channel rules allow showing it to `user`.
    pub fn targets(&self, user: &User) -> bool {
        fn allows(list: &[&str], value: &str) -> bool {
            list.is_empty() || list.contains(&value)
        }
        if self.channel == Channel::Ad && (user.is_premium || user.ads_opt_out) {
            return false;
        }
        allows(&self.target_countries, user.country)
            && allows(&self.target_age_buckets, user.age_bucket)
            && allows(&self.target_platforms, user.platform)
            && allows(&self.target_languages, user.language)
    }
}

pub(super) fn make_podcasts(config: &WorldConfig, genres: &[[f32; LATENT_DIM]; GENRE_COUNT]) -> Vec<Podcast> {
    let mut rng = rng_for(config.seed, Stream::Podcasts, 0);
    let n = config.podcasts as usize;
    // Popularity ranks are a random permutation, so ids carry no popularity.
    let mut ranks: Vec<usize> = (1..=n).collect();
    for i in (1..n).rev() {
        ranks.swap(i, rng.random_range(0..=i));
    }
    let genre_weights: Vec<(usize, f64)> = (0..GENRE_COUNT).map(|g| (g, 1.0 + (g % 4) as f64 * 0.5)).collect();
    (0..n)
        .map(|i| {
            let genre = pick(&mut rng, &genre_weights);
            let language = pick(&mut rng, &LANGUAGES);
            let topics = subset(&mut rng, &TOPICS, 3);
            let noise = (0.3 * normal(&mut rng) as f64).exp();
            let streams_30d = (ZIPF_TOP_STREAMS / (ranks[i] as f64).powf(ZIPF_EXPONENT) * noise).round() as i64;
            let embedding = std::array::from_fn(|d| 0.8 * genres[genre][d] + 0.6 * normal(&mut rng));
            let truth = PodcastTruth {
                embedding,
                quality: 0.4 * normal(&mut rng),
                log_streams: (1.0 + streams_30d as f32).log10(),
            };
            Podcast {
                podcast_id: i as i64 + 1,
                genre,
                language,
                topics,
                streams_30d,
                is_original: rng.random_bool(0.05),
                truth,
            }
        })
        .collect()
}

pub(super) fn make_campaigns(config: &WorldConfig, podcasts: &[Podcast]) -> Vec<Campaign> {
    let mut rng = rng_for(config.seed, Stream::Campaigns, 0);
    let popular =
        WeightedIndex::new(podcasts.iter().map(|p| (1.0 + p.streams_30d as f64).sqrt())).expect("podcasts exist");
    let day = |offset: i64| config.run_date + chrono::TimeDelta::days(offset);
    let countries: Vec<&str> = COUNTRIES.iter().map(|((country, _), _)| *country).collect();
    (0..config.campaigns as usize)
        .map(|i| {
            let channel = if rng.random_bool(0.5) { Channel::Ad } else { Channel::Promotion };
            // Some campaigns promote any podcast, the others lean to popular
            // ones, in the shares of the channel's draw (docs/world.md).
            let draw = if channel == Channel::Ad { config.ad_campaigns } else { config.promotion_campaigns };
            let podcast = if rng.random_bool(draw.uniform_share()) {
                rng.random_range(0..podcasts.len())
            } else {
                popular.sample(&mut rng)
            };
            let objective = pick(&mut rng, &[("stream", 0.6), ("click", 0.2), ("follow", 0.2)]);
            let (format, surface, cpm) = match channel {
                Channel::Ad => (
                    pick(&mut rng, &[(Format::Audio, 0.6), (Format::Video, 0.2), (Format::Display, 0.2)]),
                    AD_SURFACES[rng.random_range(0..AD_SURFACES.len())],
                    rng.random_range(8.0..30.0f64),
                ),
                Channel::Promotion => (
                    pick(&mut rng, &[(Format::Audio, 0.3), (Format::Video, 0.2), (Format::Display, 0.5)]),
                    PROMOTION_SURFACES[rng.random_range(0..PROMOTION_SURFACES.len())],
                    rng.random_range(1.0..5.0f64),
                ),
            };
            let status = pick(&mut rng, &[("active", 0.8), ("paused", 0.1), ("ended", 0.1)]);
            let (start_date, end_date) = match status {
                "ended" => {
                    let end = rng.random_range(1..15);
                    (day(-end - rng.random_range(7..60)), day(-end))
                }
                // One active campaign in twenty has not started yet.
                _ if rng.random_bool(0.05) => {
                    let start = rng.random_range(1..10);
                    (day(start), day(start + rng.random_range(7..60)))
                }
                _ => (day(-rng.random_range(0..60)), day(rng.random_range(0..60))),
            };
            let language = podcasts[podcast].language;
            Campaign {
                campaign_id: format!("{}-{:05}", if channel == Channel::Ad { "ad" } else { "promo" }, i + 1),
                channel,
                podcast,
                objective,
                format,
                surface,
                status,
                start_date,
                end_date,
                // Set by the market once every campaign exists.
                budget: None,
                total_budget: None,
                spent_to_date: None,
                cpm: (cpm * 100.0).round() / 100.0,
                impressions_per_user: rng.random_range(1..=3),
                priority: if rng.random_bool(0.1) { 2.0 } else { 1.0 },
                target_countries: if rng.random_bool(0.3) { subset(&mut rng, &countries, 3) } else { vec![] },
                target_age_buckets: if rng.random_bool(0.2) {
                    subset(&mut rng, &AGE_BUCKETS.map(|a| a.0), 3)
                } else {
                    vec![]
                },
                target_platforms: if rng.random_bool(0.15) {
                    subset(&mut rng, &PLATFORMS.map(|p| p.0), 2)
                } else {
                    vec![]
                },
                target_languages: if rng.random_bool(0.3) { vec![language] } else { vec![] },
                min_audience: [100, 250, 500][rng.random_range(0..3)],
                creative: 0.3 * normal(&mut rng),
            }
        })
        .collect()
}
