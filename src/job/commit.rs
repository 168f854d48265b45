//! The commit protocol (docs/design.md §7) for one date's directory:
//!
//! ```text
//! <output>/dt=<date>/run=<run_id>/audiences/campaign_id=<id>/part-00000.parquet
//! <output>/dt=<date>/run=<run_id>/manifest.json
//! <output>/dt=<date>/_SUCCESS     names the committed run; written last, create-only
//! ```
//!
//! A run writes only under its own `run=<id>/`; readers trust only the run that
//! `_SUCCESS` names. The create-only put makes the commit atomic: of two runs
//! racing for a date exactly one commits, and the other removes its own
//! directory. After a commit, every other run directory of the date (crashed or
//! superseded runs) is removed.

use serde::{Deserialize, Serialize};

use crate::storage::{Location, StorageError};

pub const SUCCESS_FILE: &str = "_SUCCESS";
pub const MANIFEST_FILE: &str = "manifest.json";

/// What makes two runs of a date the same run: equal fingerprints, equal audiences.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub date: String,
    pub config_hash: String,
    pub inputs: String,
    pub model_version: String,
}

/// The content of `_SUCCESS`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    pub run_id: String,
    /// Path of the manifest, relative to the date directory.
    pub manifest: String,
    pub fingerprint: Fingerprint,
}

/// The directory of one date under the output root.
pub struct DateDir {
    pub location: Location,
}

/// Outcome of trying to commit.
#[derive(Debug, PartialEq)]
pub enum Commit {
    Committed,
    /// Another run committed first; its marker.
    Lost(Marker),
}

impl DateDir {
    pub fn new(output: &Location, date: chrono::NaiveDate) -> DateDir {
        DateDir { location: output.join(&format!("dt={}", date.format("%Y-%m-%d"))) }
    }

    pub fn run(&self, run_id: &str) -> Location {
        self.location.join(&format!("run={run_id}"))
    }

    /// The committed run's marker, if the date is committed.
    pub async fn committed(&self) -> Result<Option<Marker>, StorageError> {
        match self.location.join(SUCCESS_FILE).read().await {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| StorageError::Corrupt {
                url: self.location.join(SUCCESS_FILE).url().to_string(),
                reason: e.to_string(),
            }),
            Err(StorageError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes `_SUCCESS` if no run has; with `replace`, removes the existing one
    /// first (the `--overwrite` path).
    pub async fn commit(&self, marker: &Marker, replace: bool) -> Result<Commit, StorageError> {
        let success = self.location.join(SUCCESS_FILE);
        if replace {
            match success.delete().await {
                Ok(()) | Err(StorageError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let bytes = serde_json::to_vec_pretty(marker).expect("marker serialises");
        match success.write_if_absent(bytes).await {
            Ok(()) => Ok(Commit::Committed),
            Err(StorageError::AlreadyExists { .. }) => {
                Ok(Commit::Lost(self.committed().await?.expect("_SUCCESS exists after AlreadyExists")))
            }
            Err(e) => Err(e),
        }
    }

    /// Removes every `run=*` directory except `keep`; returns the ids removed.
    pub async fn remove_runs_except(&self, keep: Option<&str>) -> Result<Vec<String>, StorageError> {
        let mut removed = Vec::new();
        for run_id in self.run_ids().await? {
            if Some(run_id.as_str()) != keep {
                self.run(&run_id).delete_all().await?;
                removed.push(run_id);
            }
        }
        Ok(removed)
    }

    /// Ids of the run directories present, sorted.
    pub async fn run_ids(&self) -> Result<Vec<String>, StorageError> {
        let mut ids: Vec<String> = self
            .location
            .list()
            .await?
            .iter()
            .filter_map(|object| {
                let relative = object.location.as_ref().strip_prefix(self.location.path().as_ref())?;
                let first = relative.trim_start_matches('/').split('/').next()?;
                first.strip_prefix("run=").map(str::to_string)
            })
            .collect();
        ids.sort();
        ids.dedup();
        Ok(ids)
    }
}
