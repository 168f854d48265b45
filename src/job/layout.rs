//! The run layout (docs/design.md §7): the names and paths of everything a
//! run writes under the output root, what identifies a run's result (its
//! fingerprint) and the content of the commit marker.
//!
//! ```text
//! <output>/dt=<date>/run=<run_id>/audiences/campaign_id=<id>/part-00000.parquet
//! <output>/dt=<date>/run=<run_id>/manifest.json
//! <output>/dt=<date>/run=<run_id>/report.html
//! <output>/dt=<date>/_SUCCESS     names the committed run; written last, create-only
//! ```

use serde::{Deserialize, Serialize};

use crate::storage::Location;

pub const SUCCESS_FILE: &str = "_SUCCESS";
pub const MANIFEST_FILE: &str = "manifest.json";
/// The run's HTML report, drawn from its manifest.
pub const REPORT_FILE: &str = "report.html";

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

impl DateDir {
    pub fn new(output: &Location, date: chrono::NaiveDate) -> DateDir {
        DateDir { location: output.join(&format!("dt={}", date.format("%Y-%m-%d"))) }
    }

    pub fn run(&self, run_id: &str) -> Location {
        self.location.join(&format!("run={run_id}"))
    }
}

/// Refuses `target` as the output of a command that writes outside the commit
/// protocol (`report --out`, `train --out`, `evaluate --report` ...): a run's
/// files and a date's `_SUCCESS` change only through a run's commit (`run
/// --overwrite`). `target` may not be a run directory (`dt=<date>/run=<id>`),
/// anything inside one, or a `_SUCCESS`; with `allow_report`, a run's
/// `report.html` may be drawn again in place (it is derived from the
/// manifest). The message names `flag` and what the target is.
pub fn check_outside_runs(flag: &str, target: &Location, allow_report: bool) -> Result<(), String> {
    let parts: Vec<String> = target.path().parts().map(|p| p.as_ref().to_string()).collect();
    let refuse = |what: &str| {
        Err(format!("{flag} {}: {what}; a run's files change only through `audience run --overwrite`", target.url()))
    };
    for i in 1..parts.len() {
        let in_date_dir = parts[i - 1].starts_with("dt=");
        if in_date_dir && parts[i] == SUCCESS_FILE {
            return refuse("is a date's commit marker");
        }
        if in_date_dir && parts[i].starts_with("run=") {
            let inside = &parts[i + 1..];
            if allow_report && inside.len() == 1 && inside[0] == REPORT_FILE {
                return Ok(());
            }
            return refuse(if inside.is_empty() { "is a run's directory" } else { "is inside a run's directory" });
        }
    }
    Ok(())
}

/// Path of a campaign's audience file, relative to its run directory.
pub fn audience_file(campaign_id: &str) -> String {
    format!("audiences/campaign_id={campaign_id}/part-00000.parquet")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_outside_the_commit_writes_into_a_run() {
        let root = Location::parse("/tmp/audiences").unwrap();
        let run = root.join("dt=2026-06-01/run=20260601T000000Z-0000000a");
        let check = |target: &Location, allow_report| check_outside_runs("--out", target, allow_report);
        for refused in
            [run.clone(), run.join(MANIFEST_FILE), run.join(&audience_file("c1")), root.join("dt=2026-06-01/_SUCCESS")]
        {
            let err = check(&refused, true).unwrap_err();
            assert!(err.starts_with(&format!("--out {}", refused.url())) && err.contains("run --overwrite"), "{err}");
        }
        assert!(check(&run.join(REPORT_FILE), false).is_err(), "report.html only where allowed");
        check(&run.join(REPORT_FILE), true).unwrap();
        for allowed in [
            root.clone(),
            root.join("report.html"),
            root.join("run=x/manifest.json"),
            root.join("dt=2026-06-01/notes.html"),
        ] {
            check(&allowed, false).unwrap();
        }
        let s3 = Location::parse("s3://bucket/out/dt=2026-06-01/run=r/manifest.json").unwrap();
        assert!(check(&s3, true).is_err());
    }
}
