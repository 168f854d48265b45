//! The run before this one: the most recent committed date in the week before
//! a run's date. Its manifest gives the allocator's warm-start prices, and its
//! audiences the day-over-day churn of today's.

use std::collections::{HashMap, HashSet};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use chrono::NaiveDate;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::error::JobError;
use super::layout::{DateDir, audience_file};
use super::manifest::{Churn, PreviousRunReport, RunManifest};
use crate::scoring::Scored;
use crate::storage::{Location, StorageError};

/// Days before a run's date searched for the previous committed run.
pub const LOOKBACK_DAYS: i64 = 7;

/// The previous committed run and what today's run takes from it.
pub struct PreviousRun {
    pub date: NaiveDate,
    pub run_id: String,
    pub manifest: RunManifest,
    run_dir: Location,
}

/// The most recent committed run in the [`LOOKBACK_DAYS`] before `date`. A
/// manifest that cannot be parsed (another version) is skipped with a warning:
/// the run then starts cold, which changes nothing it must get right.
pub async fn find(output: &Location, date: NaiveDate) -> Result<Option<PreviousRun>, StorageError> {
    for back in 1..=LOOKBACK_DAYS {
        let day = date - chrono::Duration::days(back);
        let dir = DateDir::new(output, day);
        let Some(marker) = dir.committed().await? else { continue };
        let location = dir.location.join(&marker.manifest);
        let manifest: RunManifest = match serde_json::from_slice(&location.read().await?) {
            Ok(manifest) => manifest,
            Err(error) => {
                tracing::warn!(manifest = %location.url(), %error, "previous run's manifest unreadable; starting cold");
                return Ok(None);
            }
        };
        return Ok(Some(PreviousRun {
            date: day,
            run_id: marker.run_id.clone(),
            manifest,
            run_dir: dir.run(&marker.run_id),
        }));
    }
    Ok(None)
}

impl PreviousRun {
    /// The run as today's manifest names it.
    pub fn report(&self) -> PreviousRunReport {
        PreviousRunReport { date: self.date.to_string(), run_id: self.run_id.clone() }
    }

    /// The Lagrangian price of each campaign the previous run priced.
    pub fn prices(&self) -> HashMap<&str, f64> {
        self.manifest.campaigns.iter().filter_map(|c| Some((c.campaign_id.as_str(), c.price?))).collect()
    }

    /// The members of the previous run's audience of `campaign_id` (empty when
    /// it had none: then nothing is read).
    pub async fn members(&self, campaign_id: &str) -> Result<HashSet<i64>, JobError> {
        let served = self.manifest.campaigns.iter().any(|c| c.campaign_id == campaign_id && c.audience > 0);
        if !served {
            return Ok(HashSet::new());
        }
        let file = self.run_dir.join(&audience_file(campaign_id));
        let bytes = match file.read().await {
            Ok(bytes) => bytes,
            Err(StorageError::NotFound { .. }) => return Ok(HashSet::new()),
            Err(error) => return Err(error.into()),
        };
        let corrupt = |reason: String| JobError::from(StorageError::Corrupt { url: file.url().to_string(), reason });
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .and_then(|b| b.build())
            .map_err(|e| corrupt(e.to_string()))?;
        let mut members = HashSet::new();
        for batch in reader {
            let batch: RecordBatch = batch.map_err(|e| corrupt(e.to_string()))?;
            let users = batch.column_by_name("user_id").ok_or_else(|| corrupt("no user_id column".into()))?;
            let users = users.as_primitive_opt::<Int64Type>().ok_or_else(|| corrupt("user_id is not int64".into()))?;
            members.extend(users.values().iter().copied());
        }
        Ok(members)
    }
}

/// How an audience differs from the previous one: users in only one of the
/// two, and users in either. Churn is their ratio (0: the same users; 1: all
/// different).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Overlap {
    pub in_one: usize,
    pub in_either: usize,
}

impl std::ops::Add for Overlap {
    type Output = Overlap;

    fn add(self, other: Overlap) -> Overlap {
        Overlap { in_one: self.in_one + other.in_one, in_either: self.in_either + other.in_either }
    }
}

impl Overlap {
    pub fn of(today: &HashSet<i64>, previous: &HashSet<i64>) -> Overlap {
        let both = today.intersection(previous).count();
        let in_either = today.len() + previous.len() - both;
        Overlap { in_one: in_either - both, in_either }
    }

    pub fn churn(self) -> Option<f64> {
        (self.in_either > 0).then(|| self.in_one as f64 / self.in_either as f64)
    }
}

/// Today's audiences (`members` as positions in the scored pools) against the
/// previous run's: per campaign, and over all campaigns. Without a previous
/// run there is no churn to report.
pub async fn churn(previous: Option<&PreviousRun>, scored: &Scored, members: &[Vec<usize>]) -> Result<Churn, JobError> {
    let Some(previous) = previous else {
        return Ok(Churn { per_campaign: vec![None; scored.campaigns.len()], total: None });
    };
    let mut total = Overlap::default();
    let mut per_campaign = Vec::with_capacity(scored.campaigns.len());
    for (c, campaign) in scored.campaigns.iter().enumerate() {
        let today = members[c].iter().map(|&m| scored.pools[c][m].user_id).collect();
        let overlap = Overlap::of(&today, &previous.members(&campaign.campaign_id).await?);
        total = total + overlap;
        per_campaign.push(overlap.churn());
    }
    Ok(Churn { per_campaign, total: total.churn() })
}
