//! What a scoring plan carries to the executors: where the inputs and the model
//! are, the run's scoring options, and the campaign set the client planned with
//! (executors recompute it from the inputs and refuse to score if it differs).

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::model::fused::Precision;
use crate::scoring::ScoreOptions;
use crate::scoring::split::RowSplit;
use crate::storage::StorageOptions;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreSpec {
    /// Identifies one scoring call: an executor builds its shared state
    /// (campaigns, follows, weights) once per job, whatever its task count.
    pub job: String,
    pub inputs_root: String,
    pub model_uri: String,
    /// The model version the client loaded; the executors load the same.
    pub model_version: String,
    /// The run date, YYYY-MM-DD.
    pub date: String,
    pub slack: f64,
    pub hour: u8,
    pub batch_rows: usize,
    /// The number format of the per-pair layers (each executor checks its CPU).
    #[serde(default)]
    pub precision: Precision,
    /// Client settings for the object stores (never credentials; see `StorageOptions::check`).
    pub storage: StorageOptions,
    /// Active campaign ids, in the client's order.
    pub campaign_ids: Vec<String>,
    /// The users each task scores: equal row ranges of the users table,
    /// planned by the client from the files' footers.
    pub split: RowSplit,
}

impl ScoreSpec {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a scoring spec serialises")
    }

    pub fn from_json(json: &str) -> Result<ScoreSpec, serde_json::Error> {
        serde_json::from_str(json)
    }

    /// The scoring options an executor prepares with.
    pub fn options(&self) -> Result<ScoreOptions, chrono::ParseError> {
        let date = NaiveDate::parse_from_str(&self.date, "%Y-%m-%d")?;
        Ok(ScoreOptions {
            slack: self.slack,
            hour: self.hour,
            batch_rows: self.batch_rows,
            partitions: 1,
            precision: self.precision,
            ..ScoreOptions::new(date)
        })
    }
}
