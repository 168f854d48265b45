//! The ground truth of the synthetic world: the latent variables behind users,
//! podcasts and campaigns, and the true probability of each of the five tasks for
//! any (user, campaign, hour). Labels in the impression logs are sampled from these
//! probabilities; the simulated A/B later uses them to score audiences exactly.
//!
//! All five tasks share one user-podcast affinity (taste · podcast embedding +
//! podcast quality + language match + creative effect), then add channel-, format-
//! and task-specific terms. Ads add a per-user ad receptivity that promotion data
//! cannot reveal. This shared structure is what lets a multi-task model transfer
//! what it learns from plentiful promotion logs to sparse ad logs.

use serde::{Deserialize, Serialize};

pub use crate::contract::Channel;

/// Dimension of the latent taste / podcast embedding space.
pub const LATENT_DIM: usize = 8;

/// Creative format of a campaign; indexes the format effects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Audio,
    Video,
    Display,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Audio => "audio",
            Format::Video => "video",
            Format::Display => "display",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct UserTruth {
    pub taste: [f32; LATENT_DIM],
    /// Drives listening hours, follows and searches.
    pub activity: f32,
    /// How much more (or less) this user responds to ads than promotions predict.
    pub ad_receptivity: f32,
    /// Whether the user listens on a phone (ios, android): video ads work
    /// better there (version 3).
    pub mobile: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PodcastTruth {
    pub embedding: [f32; LATENT_DIM],
    pub quality: f32,
    /// log10(1 + streams_30d), known to the model as a feature too.
    pub log_streams: f32,
}

/// The coefficients of the true probability model, written to `truth/params.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TruthParams {
    /// Weight of the shared affinity in each task's logit.
    pub affinity_weight: [f32; 5],
    /// Intercept of each task.
    pub intercept: [f32; 5],
    /// Per task, the effect of the format (audio, video, display).
    pub format_effect: [[f32; 3]; 5],
    /// Per task, the extra effect when the impression is an ad.
    pub ad_effect: [f32; 5],
    /// Weight of the user's ad receptivity in ad_stream.
    pub ad_receptivity_weight: f32,
    /// Weight of the language match in the shared affinity.
    pub language_match: f32,
    /// Weight of podcast popularity (log10 streams, centred at 3) per task.
    pub popularity_effect: [f32; 5],
    /// Amplitude of the evening peak (hour 20) in every task.
    pub evening_peak: f32,
    /// Added to ad_stream for a video ad shown to a mobile user (version 3;
    /// 0, and not written, in version 2): an ad-only response that promotion
    /// logs cannot teach.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub video_ad_on_mobile: f32,
}

fn is_zero(value: &f32) -> bool {
    *value == 0.0
}

impl Default for TruthParams {
    fn default() -> Self {
        // Order: promo_stream, ad_stream, click, like, follow.
        TruthParams {
            affinity_weight: [1.3, 1.1, 0.6, 0.9, 1.0],
            intercept: [-2.4, -3.4, -3.2, -4.0, -4.4],
            format_effect: [[0.2, 0.1, -0.2], [0.3, 0.2, -0.3], [-0.5, 0.2, 0.5], [0.0, 0.2, -0.1], [0.1, 0.0, 0.0]],
            ad_effect: [0.0, 0.0, 0.3, -0.4, -0.3],
            ad_receptivity_weight: 0.9,
            language_match: 0.8,
            popularity_effect: [0.15, 0.15, 0.0, 0.1, -0.15],
            evening_peak: 0.25,
            video_ad_on_mobile: 0.0,
        }
    }
}

impl TruthParams {
    /// The truth of a generator version: version 3 adds the video-on-mobile
    /// effect to ads (+0.5 on the logit, fixed before any run).
    pub fn for_version(version: u32) -> TruthParams {
        let video_ad_on_mobile = if version >= 3 { 0.5 } else { 0.0 };
        TruthParams { video_ad_on_mobile, ..TruthParams::default() }
    }
}

/// True probabilities of the five tasks, in [`crate::contract::TASKS`] order.
pub type Probabilities = [f32; 5];

/// Everything about one (user, campaign) impression the truth depends on.
pub struct Exposure<'a> {
    pub user: &'a UserTruth,
    pub podcast: &'a PodcastTruth,
    pub language_match: bool,
    pub creative: f32,
    pub channel: Channel,
    pub format: Format,
    pub hour: u8,
}

impl TruthParams {
    /// The shared user-podcast affinity, before task-specific terms.
    pub fn affinity(&self, e: &Exposure) -> f32 {
        let dot: f32 = e.user.taste.iter().zip(&e.podcast.embedding).map(|(a, b)| a * b).sum();
        dot / (LATENT_DIM as f32).sqrt()
            + e.podcast.quality
            + if e.language_match { self.language_match } else { 0.0 }
            + e.creative
            - 0.6
    }

    /// True probability of each task for one impression. For an ad impression
    /// `promo_stream` is the probability the user would have streamed had it been
    /// a promotion, and conversely; a caller picks the stream task of its channel.
    pub fn probabilities(&self, e: &Exposure) -> Probabilities {
        let affinity = self.affinity(e);
        let hour_angle = (e.hour as f32 - 20.0) / 24.0 * std::f32::consts::TAU;
        let context = self.evening_peak * hour_angle.cos();
        let popularity = e.podcast.log_streams - 3.0;
        let is_ad = e.channel == Channel::Ad;
        let mut out = [0.0; 5];
        for (task, p) in out.iter_mut().enumerate() {
            let mut logit = self.intercept[task]
                + self.affinity_weight[task] * affinity
                + self.format_effect[task][e.format.index()]
                + self.popularity_effect[task] * popularity
                + context;
            if is_ad {
                logit += self.ad_effect[task];
            }
            if task == 1 {
                logit += self.ad_receptivity_weight * e.user.ad_receptivity;
                if is_ad && e.format == Format::Video && e.user.mobile {
                    logit += self.video_ad_on_mobile;
                }
            }
            *p = sigmoid(logit);
        }
        out
    }
}

pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::TASKS;

    fn exposure<'a>(user: &'a UserTruth, podcast: &'a PodcastTruth, channel: Channel) -> Exposure<'a> {
        Exposure { user, podcast, language_match: true, creative: 0.0, channel, format: Format::Audio, hour: 20 }
    }

    #[test]
    fn affinity_raises_every_task() {
        let params = TruthParams::default();
        let podcast = PodcastTruth { embedding: [1.0; LATENT_DIM], quality: 0.0, log_streams: 3.0 };
        let fan = UserTruth { taste: [1.0; LATENT_DIM], activity: 0.0, ad_receptivity: 0.0, mobile: false };
        let stranger = UserTruth { taste: [-1.0; LATENT_DIM], activity: 0.0, ad_receptivity: 0.0, mobile: false };
        for channel in [Channel::Ad, Channel::Promotion] {
            let high = params.probabilities(&exposure(&fan, &podcast, channel));
            let low = params.probabilities(&exposure(&stranger, &podcast, channel));
            for task in 0..5 {
                assert!(high[task] > low[task], "task {} channel {channel:?}", TASKS[task]);
            }
        }
    }

    #[test]
    fn ad_receptivity_moves_only_the_ad_stream_task() {
        let params = TruthParams::default();
        let podcast = PodcastTruth { embedding: [0.5; LATENT_DIM], quality: 0.1, log_streams: 4.0 };
        let plain = UserTruth { taste: [0.3; LATENT_DIM], activity: 0.0, ad_receptivity: 0.0, mobile: false };
        let keen = UserTruth { ad_receptivity: 1.0, ..plain.clone() };
        let a = params.probabilities(&exposure(&plain, &podcast, Channel::Ad));
        let b = params.probabilities(&exposure(&keen, &podcast, Channel::Ad));
        assert!(b[1] > a[1]);
        for task in [0, 2, 3, 4] {
            assert_eq!(a[task], b[task], "task {}", TASKS[task]);
        }
    }
}
