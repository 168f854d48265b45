//! `audience run --dry-run`: validates the inputs, counts eligible pairs per
//! campaign and estimates the scoring time from a short timed sample. Writes
//! nothing.

use chrono::NaiveDate;

use super::config::JobConfig;
use super::error::JobError;
use crate::contract::validate::validate_world;
use crate::model::artifact;
use crate::scoring::{ScoreOptions, score};

/// Users scored to time the sample.
const SAMPLE_USERS: usize = 20_000;

pub struct DryRun {
    pub date: NaiveDate,
    pub users: u64,
    /// (campaign id, eligible users), active campaigns only.
    pub eligible: Vec<(String, u64)>,
    pub sample_users: u64,
    pub sample_seconds: f64,
    pub estimated_scoring_seconds: f64,
}

pub async fn dry_run(config: &JobConfig, date: NaiveDate) -> Result<DryRun, JobError> {
    let inputs = &config.inputs;
    validate_world(inputs).await?.into_result()?;
    let (model, _) = artifact::load(&config.model).await?;
    let options = config.score_options(date);
    let counted = score(inputs, &model, &ScoreOptions { eligibility_only: true, ..options.clone() }).await?;
    let sample = score(inputs, &model, &ScoreOptions { user_limit: Some(SAMPLE_USERS), ..options }).await?;
    let per_user = sample.seconds / sample.users.max(1) as f64;
    Ok(DryRun {
        date,
        users: counted.users,
        eligible: counted
            .campaigns
            .iter()
            .map(|c| c.campaign_id.clone())
            .zip(counted.eligible.iter().copied())
            .collect(),
        sample_users: sample.users,
        sample_seconds: sample.seconds,
        estimated_scoring_seconds: per_user * counted.users as f64,
    })
}

impl DryRun {
    pub fn report(&self) -> String {
        let pairs: u64 = self.eligible.iter().map(|(_, n)| n).sum();
        let mut out = format!(
            "dry run for {}: {} users, {} active campaigns, {pairs} eligible pairs\n",
            self.date,
            self.users,
            self.eligible.len()
        );
        out += &format!("{:<24} {:>14}\n", "campaign", "eligible users");
        for (id, n) in &self.eligible {
            out += &format!("{id:<24} {n:>14}\n");
        }
        out += &format!(
            "scoring estimate: {:.1}s (sample of {} users scored in {:.2}s)\n",
            self.estimated_scoring_seconds, self.sample_users, self.sample_seconds
        );
        out
    }
}
