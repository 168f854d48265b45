//! The commit protocol (docs/design.md §7) for one date's directory, over the
//! files that `layout` names. A run writes only under its own `run=<id>/`;
//! readers trust only the run that `_SUCCESS` names. Before the commit a run checks that every file its
//! manifest names is there. The create-only put makes the commit atomic: of
//! two runs racing for a date exactly one commits, and the other removes its
//! own directory.
//!
//! No run removes a directory another run may still be writing. Only two kinds
//! of directory are removed: the run an `--overwrite` replaced (it was
//! committed, so it is complete), and uncommitted runs whose newest file is
//! older than `[output] abandoned_after_minutes` (crashed runs).

use super::layout::{DateDir, MANIFEST_FILE, Marker, REPORT_FILE, SUCCESS_FILE, audience_file};
use super::manifest::RunManifest;
use crate::storage::{Location, StorageError};

/// Outcome of trying to commit.
#[derive(Debug, PartialEq)]
pub enum Commit {
    Committed,
    /// Another run committed first; its marker.
    Lost(Marker),
}

impl DateDir {
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
            // A put whose response was lost may have been carried out: the
            // marker read back says whose it is.
            Err(error @ StorageError::Io { .. }) => match self.committed().await {
                Ok(Some(winner)) if winner.run_id == marker.run_id => Ok(Commit::Committed),
                Ok(Some(winner)) => Ok(Commit::Lost(winner)),
                _ => Err(error),
            },
            // A retried put that finds its own marker: committed, not lost.
            Err(StorageError::AlreadyExists { .. }) => match self.committed().await? {
                Some(winner) if winner.run_id == marker.run_id => Ok(Commit::Committed),
                Some(winner) => Ok(Commit::Lost(winner)),
                None => Err(StorageError::Corrupt {
                    url: success.url().to_string(),
                    reason: "the create-only put found it, but it cannot be read back".into(),
                }),
            },
            Err(e) => Err(e),
        }
    }

    /// Removes the run directories no run can still be writing: `superseded`
    /// (a run an `--overwrite` replaced) and those, other than `keep`, whose
    /// newest file is older than `abandoned_after`. Returns the ids removed.
    pub async fn remove_finished_runs(
        &self,
        keep: &str,
        superseded: Option<&str>,
        abandoned_after: chrono::Duration,
    ) -> Result<Vec<String>, StorageError> {
        let now = chrono::Utc::now();
        let mut removed = Vec::new();
        for run_id in self.run_ids().await? {
            if run_id == keep {
                continue;
            }
            let run = self.run(&run_id);
            let abandoned = || async {
                let newest = run.list().await?.iter().map(|o| o.last_modified).max();
                Ok::<_, StorageError>(newest.is_some_and(|t| now - t > abandoned_after))
            };
            if Some(run_id.as_str()) == superseded || abandoned().await? {
                run.delete_all().await?;
                removed.push(run_id);
            }
        }
        // A run that failed before writing a file leaves folders on local disk.
        self.location.remove_empty_folders();
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

/// The files of `manifest`'s run missing under `run_dir`: its manifest, its
/// report, and the audience file of every campaign with an audience.
pub async fn missing_files(run_dir: &Location, manifest: &RunManifest) -> Result<Vec<String>, StorageError> {
    let present: std::collections::HashSet<String> =
        run_dir.list().await?.iter().map(|object| run_dir.url_of(&object.location)).collect();
    let expected = manifest
        .campaigns
        .iter()
        .filter(|c| c.audience > 0)
        .map(|c| audience_file(&c.campaign_id))
        .chain([MANIFEST_FILE.to_string(), REPORT_FILE.to_string()]);
    Ok(expected.map(|file| run_dir.join(&file).url().to_string()).filter(|url| !present.contains(url)).collect())
}
