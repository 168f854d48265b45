//! The truth behind a world's regime (docs/world.md, "The regime"; its
//! settings are in the world's config), per generator version. Version 3 follows the paper's regime: ad logs are the
//! rich source (`ad_share` of the logged impressions are ads), part of a
//! user's ad receptivity shows in features the model sees
//! (`ad_receptivity_observed`), video ads work better on mobile, ads are
//! bought for podcasts of every size and promotions surface popular ones.
//! Version 2 is the world before: promotions were three quarters of the
//! logging draws, receptivity was invisible, and both channels drew their
//! podcasts half uniformly, half by popularity. A version 2 config reproduces
//! its worlds byte for byte.

use super::{AGE_BUCKETS, PLATFORMS};

/// Spread of the ad receptivity `r_u` (both versions).
pub const RECEPTIVITY_SD: f32 = 0.7;

/// Per platform and age bucket, their part of the observed receptivity
/// signal (in [`PLATFORMS`] and [`AGE_BUCKETS`] order): mobile users and
/// younger users respond to ads more. Activity adds [`ACTIVITY_WEIGHT`].
const PLATFORM_EFFECT: [f64; 4] = [0.5, 0.3, -0.8, -1.0];
const AGE_EFFECT: [f64; 5] = [0.6, 0.3, 0.0, -0.3, -0.6];
const ACTIVITY_WEIGHT: f64 = 0.5;

/// The observed part of the ad receptivity, standardised to mean 0 and
/// variance 1 over the population: `(platform + age + 0.5·activity − mean) / sd`,
/// with the mean and sd computed from the platform and age shares.
pub fn observed_receptivity(platform: usize, age_bucket: usize, activity: f32) -> f32 {
    let moments = |effects: &[f64], weights: &[f64]| {
        let mean: f64 = effects.iter().zip(weights).map(|(e, w)| e * w).sum();
        let var: f64 = effects.iter().zip(weights).map(|(e, w)| w * (e - mean).powi(2)).sum();
        (mean, var)
    };
    let (platform_mean, platform_var) = moments(&PLATFORM_EFFECT, &PLATFORMS.map(|p| p.1));
    let (age_mean, age_var) = moments(&AGE_EFFECT, &AGE_BUCKETS.map(|a| a.1));
    let sd = (platform_var + age_var + ACTIVITY_WEIGHT * ACTIVITY_WEIGHT).sqrt();
    let signal = PLATFORM_EFFECT[platform] - platform_mean + AGE_EFFECT[age_bucket] - age_mean
        + ACTIVITY_WEIGHT * activity as f64;
    (signal / sd) as f32
}

/// A user's ad receptivity: `RECEPTIVITY_SD · (√ρ·observed + √(1−ρ)·unobserved)`,
/// so that a share ρ of its variance is explained by the observed features.
/// With ρ = 0 it is version 2's `0.7·unobserved`, exactly.
pub fn ad_receptivity(observed_share: f64, observed: f32, unobserved: f32) -> f32 {
    if observed_share == 0.0 {
        return unobserved * RECEPTIVITY_SD;
    }
    let (a, b) = (observed_share.sqrt() as f32, (1.0 - observed_share).sqrt() as f32);
    (a * observed + b * unobserved) * RECEPTIVITY_SD
}

/// Whether a platform (an index into [`PLATFORMS`]) is a mobile one.
pub fn is_mobile(platform: usize) -> bool {
    matches!(PLATFORMS[platform].0, "ios" | "android")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::config::DEFAULT_AD_RECEPTIVITY_OBSERVED;
    use crate::world::{Channel, World, WorldConfig};

    fn small(config: WorldConfig) -> World {
        World::new(WorldConfig { users: 20_000, impressions: 20_000, days: 4, ..config })
    }

    /// The squared correlation of users' receptivity with its observed signal.
    fn explained(world: &World) -> f64 {
        let pairs: Vec<(f64, f64)> = (0..world.config.users)
            .map(|i| {
                let user = world.user(i);
                let platform = PLATFORMS.iter().position(|p| p.0 == user.platform).unwrap();
                let age = AGE_BUCKETS.iter().position(|a| a.0 == user.age_bucket).unwrap();
                (user.truth.ad_receptivity as f64, observed_receptivity(platform, age, user.truth.activity) as f64)
            })
            .collect();
        let n = pairs.len() as f64;
        let (mx, my) = (pairs.iter().map(|p| p.0).sum::<f64>() / n, pairs.iter().map(|p| p.1).sum::<f64>() / n);
        let cov: f64 = pairs.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
        let (vx, vy): (f64, f64) =
            (pairs.iter().map(|(x, _)| (x - mx).powi(2)).sum(), pairs.iter().map(|(_, y)| (y - my).powi(2)).sum());
        cov * cov / (vx * vy)
    }

    #[test]
    fn the_observed_features_explain_rho_of_the_receptivity() {
        // 20,000 users: the sample r² is within about 0.01 of ρ (two standard
        // errors of 2·√(ρ(1−ρ)/n) ≈ 0.007 at ρ = 0.5); 0.03 leaves room.
        let world = small(WorldConfig::default());
        let r2 = explained(&world);
        assert!((r2 - DEFAULT_AD_RECEPTIVITY_OBSERVED).abs() < 0.03, "r² {r2}");
        let hidden = small(WorldConfig { ad_receptivity_observed: 0.0, ..WorldConfig::default() });
        assert!(explained(&hidden) < 0.01, "r² {} with ρ = 0", explained(&hidden));
    }

    #[test]
    fn a_version_3_world_logs_its_ad_share() {
        for share in [0.75, 0.17] {
            let world = small(WorldConfig { ad_share: Some(share), ..WorldConfig::default() });
            let impressions = world.impressions_on(0);
            let ads = impressions.iter().filter(|i| world.campaigns[i.campaign].channel == Channel::Ad).count();
            // 5,000 impressions a day: a standard error of about 0.006.
            let observed = ads as f64 / impressions.len() as f64;
            assert!((observed - share).abs() < 0.03, "ad share {observed}, wanted {share}");
        }
    }

    #[test]
    fn each_version_takes_only_its_own_settings() {
        assert!(WorldConfig::default().regime_problems().is_empty());
        assert!(WorldConfig::default().version_2().regime_problems().is_empty());
        let mixed = WorldConfig { ad_share: Some(0.5), ..WorldConfig::default().version_2() };
        assert!(mixed.regime_problems()[0].contains("version 2"), "{:?}", mixed.regime_problems());
        let unknown = WorldConfig { generator_version: 9, ..WorldConfig::default() };
        assert!(unknown.regime_problems()[0].contains("generator version 9"));
        let old: WorldConfig = serde_json::from_str(
            r#"{"seed":7,"users":10,"podcasts":5,"campaigns":4,"impressions":10,"days":1,"run_date":"2026-06-01"}"#,
        )
        .unwrap();
        assert_eq!(
            old,
            WorldConfig { users: 10, podcasts: 5, campaigns: 4, impressions: 10, days: 1, ..WorldConfig::default() }
                .version_2()
        );
    }

    #[test]
    fn video_ads_work_better_on_mobile_in_version_3_only() {
        use crate::world::truth::{Exposure, Format, PodcastTruth, TruthParams, UserTruth};
        let podcast = PodcastTruth { embedding: [0.2; 8], quality: 0.0, log_streams: 3.0 };
        let user = |mobile| UserTruth { taste: [0.2; 8], activity: 0.0, ad_receptivity: 0.0, mobile };
        let p = |version: u32, mobile: bool, channel: Channel| {
            let (params, user) = (TruthParams::for_version(version), user(mobile));
            let e = Exposure {
                user: &user,
                podcast: &podcast,
                language_match: true,
                creative: 0.0,
                channel,
                format: Format::Video,
                hour: 20,
            };
            params.probabilities(&e)[1]
        };
        assert!(p(3, true, Channel::Ad) > p(3, false, Channel::Ad));
        assert_eq!(p(3, true, Channel::Promotion), p(3, false, Channel::Promotion), "promotions have no such effect");
        assert_eq!(p(2, true, Channel::Ad), p(2, false, Channel::Ad));
    }

    #[test]
    fn the_observed_signal_has_mean_zero_and_variance_one_over_the_population() {
        let (mut mean, mut second) = (0.0f64, 0.0f64);
        for (p, (_, wp)) in PLATFORMS.iter().enumerate() {
            for (a, (_, wa)) in AGE_BUCKETS.iter().enumerate() {
                // Activity is N(0, 1) and independent: its mean is 0, its variance adds 0.25.
                let x = observed_receptivity(p, a, 0.0) as f64;
                mean += wp * wa * x;
                second += wp * wa * x * x;
            }
        }
        let sd = (observed_receptivity(0, 0, 1.0) - observed_receptivity(0, 0, 0.0)) as f64;
        let variance = second - mean * mean + sd * sd;
        assert!(mean.abs() < 1e-6, "mean {mean}");
        assert!((variance - 1.0).abs() < 1e-5, "variance {variance}");
    }

    #[test]
    fn without_an_observed_share_receptivity_is_version_2s() {
        for unobserved in [-1.3f32, 0.0, 0.4, 2.2] {
            assert_eq!(ad_receptivity(0.0, 5.0, unobserved).to_bits(), (unobserved * 0.7).to_bits());
        }
    }
}
