//! The contract's closed vocabularies: genres, stream tiers, channels, the
//! model's tasks, campaign objectives, formats, statuses, and the shape of a
//! campaign id. Everything that names one of these (the generator, the model,
//! scoring, the audiences' columns) takes it from here.

/// Podcast genres. `users.genre_affinity[i]` is the user's share of listening in
/// `GENRES[i]`, so the vector length G is the number of genres.
pub const GENRES: [&str; 16] = [
    "comedy",
    "news",
    "true_crime",
    "society",
    "sports",
    "business",
    "health",
    "education",
    "technology",
    "history",
    "science",
    "music",
    "arts",
    "religion",
    "kids",
    "fiction",
];

/// Number of genres, the length of `genre_affinity`.
pub const GENRE_COUNT: usize = GENRES.len();

/// Lower bounds (inclusive) of stream tiers 1..=7 by `podcasts.streams_30d`; tier 0
/// is everything below the first bound. Eight tiers, as in the paper.
pub const TIER_BOUNDS: [i64; 7] = [1_000, 5_000, 20_000, 100_000, 500_000, 2_000_000, 10_000_000];

/// Podcasts below this many 30-day streams are "less-streamed" (the paper's cut).
pub const LESS_STREAMED_BELOW: i64 = 5_000;

/// The stream tier (0..8) of a podcast with `streams_30d` streams.
pub fn stream_tier(streams_30d: i64) -> usize {
    TIER_BOUNDS.iter().take_while(|&&bound| streams_30d >= bound).count()
}

/// How reports name a tier: "tier 3 (5000-20000)", "tier 8 (>= 10000000)".
pub fn tier_label(tier: usize) -> String {
    let low = if tier == 0 { 0 } else { TIER_BOUNDS[tier - 1] };
    match TIER_BOUNDS.get(tier) {
        Some(high) => format!("tier {} ({low}-{high})", tier + 1),
        None => format!("tier {} (>= {low})", tier + 1),
    }
}

pub const CAMPAIGN_KINDS: [&str; 2] = ["ad", "promotion"];

/// The channel of a campaign (`campaigns.kind`) or impression (`impressions.source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Ad,
    Promotion,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Ad => "ad",
            Channel::Promotion => "promotion",
        }
    }
}

/// The model's five tasks, in head order: the names of its outputs, of the
/// audiences' `p_<task>` columns and of the artifact's towers.
pub const TASKS: [&str; 5] = ["promo_stream", "ad_stream", "click", "like", "follow"];

/// One of the model's tasks; its discriminant is the head's index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Task {
    PromoStream = 0,
    AdStream = 1,
    Click = 2,
    Like = 3,
    Follow = 4,
}

impl Task {
    pub const ALL: [Task; 5] = [Task::PromoStream, Task::AdStream, Task::Click, Task::Like, Task::Follow];

    /// The index of the task's head (and of its probability in five-task rows).
    pub fn head(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        TASKS[self.head()]
    }

    /// The stream task of a channel: what "streamed" means after an ad or a promotion.
    pub fn stream(channel: Channel) -> Task {
        match channel {
            Channel::Promotion => Task::PromoStream,
            Channel::Ad => Task::AdStream,
        }
    }
}

impl std::str::FromStr for Task {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Task::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| format!("unknown task {s:?} (expected one of {})", TASKS.join(", ")))
    }
}

/// The head index of a channel's stream task.
pub fn stream_task(channel: Channel) -> usize {
    Task::stream(channel).head()
}

pub const OBJECTIVES: [&str; 3] = ["stream", "click", "follow"];

/// What a campaign pays for (`campaigns.objective`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    Stream,
    Click,
    Follow,
}

impl Objective {
    /// The task whose probability is the objective on `channel`.
    pub fn task(self, channel: Channel) -> Task {
        match self {
            Objective::Stream => Task::stream(channel),
            Objective::Click => Task::Click,
            Objective::Follow => Task::Follow,
        }
    }

    /// The model head of [`Objective::task`].
    pub fn head(self, channel: Channel) -> usize {
        self.task(channel).head()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Objective::Stream => "stream",
            Objective::Click => "click",
            Objective::Follow => "follow",
        }
    }
}
pub const FORMATS: [&str; 3] = ["audio", "video", "display"];
pub const STATUSES: [&str; 3] = ["active", "paused", "ended"];
pub const SOURCES: [&str; 2] = ["ad", "promotion"];

/// Campaign ids become part of object paths, so they are restricted to this.
pub const CAMPAIGN_ID_PATTERN: &str = "^[A-Za-z0-9_-]{1,64}$";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_cover_eight_buckets_and_less_streamed_is_the_bottom_two() {
        assert_eq!(stream_tier(0), 0);
        assert_eq!(stream_tier(999), 0);
        assert_eq!(stream_tier(1_000), 1);
        assert_eq!(stream_tier(LESS_STREAMED_BELOW - 1), 1);
        assert_eq!(stream_tier(LESS_STREAMED_BELOW), 2);
        assert_eq!(stream_tier(i64::MAX), 7);
    }

    #[test]
    fn tasks_parse_by_name_and_objectives_name_their_head() {
        assert_eq!("follow".parse::<Task>(), Ok(Task::Follow));
        assert!("streams".parse::<Task>().unwrap_err().contains("promo_stream"));
        assert_eq!(Objective::Stream.head(Channel::Ad), 1);
        assert_eq!(Objective::Stream.head(Channel::Promotion), 0);
        assert_eq!(Objective::Click.task(Channel::Ad).name(), "click");
        assert_eq!(Objective::Follow.head(Channel::Promotion), 4);
    }
}
