//! Which (user, campaign) pairs may be scored.
//!
//! Campaign rules run as a DataFusion plan over the campaigns and podcasts
//! tables: active on the run date (status, flight dates) with budget left
//! today. Pair rules run per user batch inside the scoring operator, compiled
//! into bitsets over the active campaigns so a user costs a few hash lookups:
//! the campaign's targeting lists (countries, age buckets, platforms,
//! languages; an empty or missing list means everyone), no ads for premium or
//! `ads_opt_out` users. No campaign for a user who already follows its
//! podcast is the last pair rule; [`super::follows`] reads those per batch.

use std::collections::HashMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Date32Type, Field, Float64Type, Int64Type};
use chrono::NaiveDate;
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use std::sync::Arc;

use crate::contract::Channel;
pub use crate::contract::Objective;

/// Targeting lists; `None` or empty means everyone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Targeting {
    pub countries: Vec<String>,
    pub age_buckets: Vec<String>,
    pub platforms: Vec<String>,
    pub languages: Vec<String>,
}

/// A campaign that may run today, with everything scoring and allocation need.
#[derive(Debug, Clone)]
pub struct ActiveCampaign {
    pub campaign_id: String,
    pub channel: Channel,
    pub podcast_id: i64,
    /// The podcast's `streams_30d` (its stream tier, for reports).
    pub podcast_streams: i64,
    pub objective: Objective,
    /// Value of one objective event.
    pub priority: f64,
    /// Budget for today (paced from `total_budget` − `spent_to_date` when
    /// `budget` is null).
    pub budget: f64,
    pub cpm: f64,
    pub impressions_per_user: i32,
    pub min_audience: i64,
    pub targeting: Targeting,
}

impl ActiveCampaign {
    /// Cost of reaching one user: `impressions_per_user` impressions at `cpm`.
    pub fn cost_per_user(&self) -> f64 {
        self.cpm * self.impressions_per_user as f64 / 1000.0
    }

    /// The most users the budget can buy.
    pub fn affordable_users(&self) -> u64 {
        let cost = self.cost_per_user();
        if cost > 0.0 { (self.budget / cost).floor() as u64 } else { u64::MAX }
    }
}

/// The SQL of the campaign rules; `{date}` is the run date.
const ACTIVE_CAMPAIGNS: &str = "
SELECT c.*, p.genre, p.language AS podcast_language, p.topics, p.streams_30d, p.is_original
FROM campaigns c JOIN podcasts p ON c.podcast_id = p.podcast_id
WHERE c.status = 'active' AND c.start_date <= DATE '{date}' AND c.end_date >= DATE '{date}'
ORDER BY c.campaign_id";

/// Active campaigns on `date` with budget left today, joined with their
/// podcasts (the batches also feed the campaign features); campaigns sorted by id.
pub async fn active_campaigns(
    ctx: &SessionContext,
    date: NaiveDate,
) -> Result<(Vec<ActiveCampaign>, Vec<RecordBatch>), DataFusionError> {
    let sql = ACTIVE_CAMPAIGNS.replace("{date}", &date.format("%Y-%m-%d").to_string());
    let batches = ctx.sql(&sql).await?.collect().await?;
    let mut campaigns = Vec::new();
    let mut kept = Vec::new();
    for batch in batches {
        let parsed = parse_campaigns(&batch, date)?;
        let keep: Vec<bool> = parsed.iter().map(|c| c.as_ref().is_some_and(|c| c.budget > 0.0)).collect();
        campaigns.extend(parsed.into_iter().flatten().filter(|c| c.budget > 0.0));
        kept.push(arrow::compute::filter_record_batch(&batch, &keep.into())?);
    }
    Ok((campaigns, kept))
}

/// The campaigns of one batch, active on `date` (others `None`). Long: one
/// typed column reader per contract column, then one loop that builds each
/// campaign from them, read best as one piece.
fn parse_campaigns(batch: &RecordBatch, date: NaiveDate) -> Result<Vec<Option<ActiveCampaign>>, DataFusionError> {
    let get = |name: &str, to: &DataType| -> Result<Option<Arc<dyn Array>>, DataFusionError> {
        batch.column_by_name(name).map(|c| cast(c, to).map_err(DataFusionError::from)).transpose()
    };
    let utf8 = |name: &str| -> Result<Vec<String>, DataFusionError> {
        let array =
            get(name, &DataType::Utf8)?.ok_or_else(|| DataFusionError::Plan(format!("campaigns: no column {name}")))?;
        Ok(array.as_string::<i32>().iter().map(|v| v.unwrap_or_default().to_string()).collect())
    };
    let f64s = |name: &str| -> Result<Option<Vec<Option<f64>>>, DataFusionError> {
        Ok(get(name, &DataType::Float64)?.map(|a| a.as_primitive::<Float64Type>().iter().collect()))
    };
    let i64s = |name: &str| -> Result<Option<Vec<Option<i64>>>, DataFusionError> {
        Ok(get(name, &DataType::Int64)?.map(|a| a.as_primitive::<Int64Type>().iter().collect()))
    };
    let list_type = DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)));
    let lists = |name: &str| -> Result<Vec<Vec<String>>, DataFusionError> {
        let Some(array) = get(name, &list_type)? else { return Ok(vec![Vec::new(); batch.num_rows()]) };
        let list = array.as_list::<i32>();
        Ok((0..batch.num_rows())
            .map(|row| {
                if list.is_null(row) {
                    return Vec::new();
                }
                let values = list.value(row);
                values.as_string::<i32>().iter().flatten().map(str::to_string).collect()
            })
            .collect())
    };
    let required = |v: Option<Vec<Option<f64>>>, name: &str| {
        v.ok_or_else(|| DataFusionError::Plan(format!("campaigns: no column {name}")))
    };
    let ids = utf8("campaign_id")?;
    let kinds = utf8("kind")?;
    let objectives = utf8("objective")?;
    let podcast = i64s("podcast_id")?.ok_or_else(|| DataFusionError::Plan("campaigns: no column podcast_id".into()))?;
    let streams =
        i64s("streams_30d")?.ok_or_else(|| DataFusionError::Plan("podcasts: no column streams_30d".into()))?;
    let budget = required(f64s("budget")?, "budget")?;
    let total = f64s("total_budget")?;
    let spent = f64s("spent_to_date")?;
    let cpm = required(f64s("cpm")?, "cpm")?;
    let per_user = i64s("impressions_per_user")?
        .ok_or_else(|| DataFusionError::Plan("campaigns: no column impressions_per_user".into()))?;
    let priority = f64s("priority")?;
    let min_audience = i64s("min_audience")?;
    let end = cast(batch.column_by_name("end_date").expect("selected"), &DataType::Date32)?;
    let end = end.as_primitive::<Date32Type>();
    let (countries, ages, platforms, languages) = (
        lists("target_countries")?,
        lists("target_age_buckets")?,
        lists("target_platforms")?,
        lists("target_languages")?,
    );
    let today = (date - NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days() as i32;
    Ok((0..batch.num_rows())
        .map(|row| {
            let budget = budget[row].or_else(|| {
                let total = total.as_ref()?[row]?;
                let spent = spent.as_ref()?[row].unwrap_or(0.0);
                let days_left = (end.value(row) - today + 1).max(1) as f64;
                Some(((total - spent) / days_left).max(0.0))
            })?;
            Some(ActiveCampaign {
                campaign_id: ids[row].clone(),
                channel: if kinds[row] == "ad" { Channel::Ad } else { Channel::Promotion },
                podcast_id: podcast[row]?,
                podcast_streams: streams[row].unwrap_or(0),
                objective: match objectives[row].as_str() {
                    "click" => Objective::Click,
                    "follow" => Objective::Follow,
                    _ => Objective::Stream,
                },
                priority: priority.as_ref().and_then(|p| p[row]).unwrap_or(1.0),
                budget,
                cpm: cpm[row]?,
                impressions_per_user: per_user[row]? as i32,
                min_audience: min_audience.as_ref().and_then(|m| m[row]).unwrap_or(0),
                targeting: Targeting {
                    countries: countries[row].clone(),
                    age_buckets: ages[row].clone(),
                    platforms: platforms[row].clone(),
                    languages: languages[row].clone(),
                },
            })
        })
        .collect())
}

/// A set of campaigns, one bit each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignSet(Vec<u64>);

impl CampaignSet {
    fn empty(campaigns: usize) -> CampaignSet {
        CampaignSet(vec![0; campaigns.div_ceil(64)])
    }

    fn insert(&mut self, campaign: usize) {
        self.0[campaign / 64] |= 1 << (campaign % 64);
    }

    pub fn remove(&mut self, campaign: usize) {
        self.0[campaign / 64] &= !(1 << (campaign % 64));
    }

    fn intersect(&mut self, other: &CampaignSet) {
        self.0.iter_mut().zip(&other.0).for_each(|(a, b)| *a &= b);
    }

    /// The campaigns in the set, ascending.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().enumerate().flat_map(|(w, &word)| {
            let mut bits = word;
            std::iter::from_fn(move || {
                (bits != 0).then(|| {
                    let bit = bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    w * 64 + bit
                })
            })
        })
    }
}

/// One targeting dimension: the campaigns that accept everyone, and per value
/// the campaigns that list it.
struct Dimension {
    everyone: CampaignSet,
    by_value: HashMap<String, CampaignSet>,
}

impl Dimension {
    fn new<'a>(campaigns: &'a [ActiveCampaign], list: impl Fn(&'a ActiveCampaign) -> &'a [String]) -> Dimension {
        let mut everyone = CampaignSet::empty(campaigns.len());
        let mut by_value: HashMap<String, CampaignSet> = HashMap::new();
        for (i, campaign) in campaigns.iter().enumerate() {
            let values = list(campaign);
            if values.is_empty() {
                everyone.insert(i);
            }
            for value in values {
                by_value.entry(value.clone()).or_insert_with(|| CampaignSet::empty(campaigns.len())).insert(i);
            }
        }
        Dimension { everyone, by_value }
    }

    fn allowed(&self, value: &str) -> CampaignSet {
        let mut set = self.everyone.clone();
        if let Some(listed) = self.by_value.get(value) {
            set.0.iter_mut().zip(&listed.0).for_each(|(a, b)| *a |= b);
        }
        set
    }
}

/// What the pair rules need to know about a user.
pub struct UserFacts<'a> {
    pub user_id: i64,
    pub country: &'a str,
    pub age_bucket: &'a str,
    pub platform: &'a str,
    pub language: &'a str,
    pub is_premium: bool,
    pub ads_opt_out: bool,
}

/// The pair rules compiled over a list of active campaigns.
pub struct Eligibility {
    dimensions: [Dimension; 4],
    promotions: CampaignSet,
}

impl Eligibility {
    /// The targeting and channel rules; the follow exclusions are read per
    /// batch ([`super::follows`]).
    pub fn new(campaigns: &[ActiveCampaign]) -> Eligibility {
        let mut promotions = CampaignSet::empty(campaigns.len());
        for (i, campaign) in campaigns.iter().enumerate() {
            if campaign.channel == Channel::Promotion {
                promotions.insert(i);
            }
        }
        Eligibility {
            dimensions: [
                Dimension::new(campaigns, |c| &c.targeting.countries),
                Dimension::new(campaigns, |c| &c.targeting.age_buckets),
                Dimension::new(campaigns, |c| &c.targeting.platforms),
                Dimension::new(campaigns, |c| &c.targeting.languages),
            ],
            promotions,
        }
    }

    /// The campaigns `user` may be scored for by targeting and channel (the
    /// caller removes the campaigns of podcasts the user follows).
    pub fn campaigns_for(&self, user: &UserFacts) -> CampaignSet {
        let mut set = self.dimensions[0].allowed(user.country);
        set.intersect(&self.dimensions[1].allowed(user.age_bucket));
        set.intersect(&self.dimensions[2].allowed(user.platform));
        set.intersect(&self.dimensions[3].allowed(user.language));
        if user.is_premium || user.ads_opt_out {
            set.intersect(&self.promotions);
        }
        set
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A campaign with a budget and no other rule, for tests.
    pub(crate) fn campaign(id: &str, channel: Channel, podcast_id: i64, targeting: Targeting) -> ActiveCampaign {
        ActiveCampaign {
            campaign_id: id.into(),
            channel,
            podcast_id,
            podcast_streams: 0,
            objective: Objective::Stream,
            priority: 1.0,
            budget: 100.0,
            cpm: 10.0,
            impressions_per_user: 1,
            min_audience: 0,
            targeting,
        }
    }

    fn user(user_id: i64) -> UserFacts<'static> {
        UserFacts {
            user_id,
            country: "US",
            age_bucket: "25-34",
            platform: "ios",
            language: "en",
            is_premium: false,
            ads_opt_out: false,
        }
    }

    fn ids(set: &CampaignSet) -> Vec<usize> {
        set.iter().collect()
    }

    #[test]
    fn targeting_lists_restrict_and_empty_lists_allow_everyone() {
        let only = |f: fn(&mut Targeting)| {
            let mut t = Targeting::default();
            f(&mut t);
            t
        };
        let campaigns = vec![
            campaign("all", Channel::Promotion, 1, Targeting::default()),
            campaign("de", Channel::Promotion, 1, only(|t| t.countries = vec!["DE".into()])),
            campaign("us", Channel::Promotion, 1, only(|t| t.countries = vec!["US".into(), "GB".into()])),
            campaign("old", Channel::Promotion, 1, only(|t| t.age_buckets = vec!["55+".into()])),
            campaign("web", Channel::Promotion, 1, only(|t| t.platforms = vec!["web".into()])),
            campaign("es", Channel::Promotion, 1, only(|t| t.languages = vec!["es".into()])),
        ];
        let rules = Eligibility::new(&campaigns);
        assert_eq!(ids(&rules.campaigns_for(&user(1))), vec![0, 2]);
        let spanish_web = UserFacts { language: "es", platform: "web", ..user(1) };
        assert_eq!(ids(&rules.campaigns_for(&spanish_web)), vec![0, 2, 4, 5]);
    }

    #[test]
    fn premium_users_get_promotions_but_no_ads() {
        let campaigns = vec![
            campaign("ad", Channel::Ad, 1, Targeting::default()),
            campaign("promo", Channel::Promotion, 1, Targeting::default()),
        ];
        let rules = Eligibility::new(&campaigns);
        assert_eq!(ids(&rules.campaigns_for(&user(1))), vec![0, 1]);
        assert_eq!(ids(&rules.campaigns_for(&UserFacts { is_premium: true, ..user(1) })), vec![1]);
    }

    #[test]
    fn opted_out_users_get_no_ads() {
        let campaigns = vec![
            campaign("ad", Channel::Ad, 1, Targeting::default()),
            campaign("promo", Channel::Promotion, 1, Targeting::default()),
        ];
        let rules = Eligibility::new(&campaigns);
        assert_eq!(ids(&rules.campaigns_for(&UserFacts { ads_opt_out: true, ..user(1) })), vec![1]);
    }

    #[test]
    fn campaign_sets_iterate_across_words() {
        let mut set = CampaignSet::empty(130);
        for c in [0, 63, 64, 129] {
            set.insert(c);
        }
        assert_eq!(ids(&set), vec![0, 63, 64, 129]);
    }
}
