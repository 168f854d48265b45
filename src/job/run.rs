//! One run of the nightly job: fingerprint → (no-op if committed) → validate →
//! eligibility + fused scoring (in process, or on a Ballista cluster) → allocation → write audiences → manifest →
//! report → commit. One structured log line per stage with counts and durations.

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::NaiveDate;

use super::audiences::write_audiences;
use super::commit::{Commit, missing_files};
use super::config::{Engine, JobConfig};
use super::error::{JobError, failpoint};
use super::layout::{DateDir, Fingerprint, MANIFEST_FILE, Marker, REPORT_FILE};
use super::manifest::{RunManifest, RunRecord};
use super::previous::{self, PreviousRun};
use super::report::{parse_manifest, render};
use crate::choose::{Choice, Violations, choose, violations};
use crate::cluster::client::Cluster;
use crate::contract::files::fingerprint;
use crate::contract::validate::validate_world;
use crate::contract::{CAMPAIGN_ID_PATTERN, Table};
use crate::model::Model;
use crate::model::artifact::{self, Manifest as ArtifactManifest};
use crate::scoring::members::member_probabilities;
use crate::scoring::{Scored, score};
use crate::storage::Location;

#[derive(Debug, Clone)]
pub struct RunFlags {
    pub date: NaiveDate,
    pub overwrite: bool,
}

#[derive(Debug)]
pub enum Outcome {
    Committed {
        manifest_url: String,
    },
    /// The date was already committed with the same inputs and config.
    Unchanged {
        manifest_url: String,
    },
}

impl Outcome {
    pub fn manifest_url(&self) -> &str {
        match self {
            Outcome::Committed { manifest_url } | Outcome::Unchanged { manifest_url } => manifest_url,
        }
    }
}

const INPUT_TABLES: [Table; 4] = [Table::Users, Table::Podcasts, Table::Campaigns, Table::Follows];

struct Stages {
    timings: BTreeMap<String, f64>,
    last: Instant,
}

impl Stages {
    fn new() -> Stages {
        Stages { timings: BTreeMap::new(), last: Instant::now() }
    }

    /// Ends a stage; returns its duration in seconds.
    fn done(&mut self, stage: &str) -> f64 {
        let seconds = self.last.elapsed().as_secs_f64();
        self.timings.insert(stage.to_string(), seconds);
        self.last = Instant::now();
        seconds
    }
}

/// What identifies this run's result: date, decisive config, input files, model.
pub async fn fingerprint_of(config: &JobConfig, date: NaiveDate) -> Result<Fingerprint, JobError> {
    let model = artifact::read_manifest(&config.model).await?;
    Ok(Fingerprint {
        date: date.format("%Y-%m-%d").to_string(),
        config_hash: config.hash(),
        inputs: fingerprint(&config.inputs, &INPUT_TABLES).await?,
        model_version: model.model_version,
    })
}

fn differences(a: &Fingerprint, b: &Fingerprint) -> String {
    let mut what = Vec::new();
    if a.config_hash != b.config_hash {
        what.push("config");
    }
    if a.inputs != b.inputs {
        what.push("input files");
    }
    if a.model_version != b.model_version {
        what.push("model");
    }
    what.join(", ")
}

/// Runs the job for one date: each stage below is one function, logs one
/// line with its counts and seconds, and is timed in the manifest.
pub async fn run(config: &JobConfig, flags: &RunFlags) -> Result<Outcome, JobError> {
    let mut stages = Stages::new();
    config.output.check_writable_below().await?;
    let date_dir = DateDir::new(&config.output, flags.date);
    let ours = fingerprint_of(config, flags.date).await?;
    if let Some(unchanged) = already_committed(&date_dir, &ours, flags.overwrite, config.abandoned_after()).await? {
        return Ok(unchanged);
    }
    let seconds = stages.done("fingerprint");
    tracing::info!(stage = "fingerprint", seconds, "inputs fingerprinted");

    validate_stage(config, &mut stages).await?;
    let (model, model_manifest) = artifact::load(&config.model).await?;
    let seconds = stages.done("model");
    tracing::info!(stage = "model", version = %model_manifest.model_version, seconds, "model loaded");
    let scored = score_stage(config, &model, &model_manifest.model_version, flags.date, &mut stages).await?;
    let previous = previous::find(&config.output, flags.date).await?;
    let (choice, violations) = allocate_stage(config, &scored, previous.as_ref(), &mut stages)?;
    let probabilities = probabilities_stage(config, &model, &scored, &choice, &mut stages).await?;

    let run_id = format!("{}-{:08x}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ"), rand::random::<u32>());
    let run_dir = date_dir.run(&run_id);
    let written = write_stage(&run_dir, &scored, &choice, &probabilities, &mut stages).await;
    let record = async {
        written?;
        let churn = previous::churn(previous.as_ref(), &scored, &choice.members).await?;
        let manifest = RunManifest::new(RunRecord {
            run_id: &run_id,
            fingerprint: &ours,
            config,
            model_version: &model_manifest.model_version,
            scored: &scored,
            choice: &choice,
            violations,
            previous_run: previous.as_ref().map(PreviousRun::report),
            churn,
            timings: stages.timings.clone(),
        });
        write_manifest_and_report(&run_dir, &manifest, &model_manifest).await?;
        Ok::<_, JobError>(manifest)
    };
    // Everything up to the commit is written under the run's own directory:
    // a run that fails there removes it (a failpoint stands for a crash, after
    // which nothing is cleaned up; the next run removes it as abandoned).
    let manifest = match record.await {
        Ok(manifest) => manifest,
        Err(error) => return Err(discard(&run_dir, error).await),
    };
    failpoint("before-commit")?;
    commit(&date_dir, &manifest, flags, config.abandoned_after(), &mut stages).await
}

/// Validates the input tables against the data contract.
async fn validate_stage(config: &JobConfig, stages: &mut Stages) -> Result<(), JobError> {
    let report = validate_world(&config.inputs).await?.into_result()?;
    let rows: BTreeMap<String, u64> = report.rows.iter().map(|(t, n)| (t.name().to_string(), *n)).collect();
    failpoint("after-validate")?;
    let seconds = stages.done("validate");
    tracing::info!(stage = "validate", ?rows, seconds, "inputs valid");
    Ok(())
}

/// Chooses the audiences as [`crate::choose`] does, warm-started from the
/// previous run's prices when configured, and checks them against every
/// constraint: a broken one fails the run.
fn allocate_stage(
    config: &JobConfig,
    scored: &Scored,
    previous: Option<&PreviousRun>,
    stages: &mut Stages,
) -> Result<(Choice, Violations), JobError> {
    let warm_start = match previous {
        Some(previous) if config.allocation.warm_start => {
            let prices = previous.prices();
            scored.campaigns.iter().map(|c| prices.get(c.campaign_id.as_str()).copied()).collect()
        }
        _ => Vec::new(),
    };
    let choice = choose(scored, config.allocation.objective, &config.allocate_options(warm_start))?;
    let violations = violations(scored, &choice.members, config.limits());
    if violations.any() {
        return Err(JobError::Infeasible(violations));
    }
    failpoint("after-allocate")?;
    let seconds = stages.done("allocate");
    let allocation = &choice.allocation;
    tracing::info!(
        stage = "allocate",
        chosen = allocation.chosen.len(),
        value = allocation.primal,
        gap = ?allocation.gap,
        iterations = allocation.iterations,
        warm_started = allocation.warm_started,
        seconds,
        "allocated"
    );
    Ok((choice, violations))
}

/// The five task probabilities of every chosen member.
async fn probabilities_stage(
    config: &JobConfig,
    model: &Model,
    scored: &Scored,
    choice: &Choice,
    stages: &mut Stages,
) -> Result<Vec<Vec<[f32; 5]>>, JobError> {
    let probabilities =
        member_probabilities(&config.inputs, model, scored, &choice.members, config.file.scoring.hour).await?;
    let seconds = stages.done("probabilities");
    let members = choice.members.iter().map(Vec::len).sum::<usize>();
    tracing::info!(stage = "probabilities", members, seconds, "members' task probabilities");
    Ok(probabilities)
}

/// Writes the audience files under the run's directory.
async fn write_stage(
    run_dir: &Location,
    scored: &Scored,
    choice: &Choice,
    probabilities: &[Vec<[f32; 5]>],
    stages: &mut Stages,
) -> Result<(), JobError> {
    let written = write_audiences(run_dir, scored, &choice.members, probabilities).await?;
    let seconds = stages.done("write");
    tracing::info!(stage = "write", run = %run_dir, rows = written, seconds, "audiences written");
    Ok(())
}

/// Writes the manifest and the report drawn from it. The report is drawn
/// from the manifest as written (numbers as read back from its JSON), so that
/// `audience report` draws the same page from the file later.
async fn write_manifest_and_report(
    run_dir: &Location,
    manifest: &RunManifest,
    model: &ArtifactManifest,
) -> Result<(), JobError> {
    let manifest_location = run_dir.join(MANIFEST_FILE);
    let json = serde_json::to_vec_pretty(manifest).expect("manifest serialises");
    let report = render(&parse_manifest(manifest_location.url(), &json)?, model)?;
    manifest_location.write(json).await?;
    run_dir.join(REPORT_FILE).write(report).await?;
    Ok(())
}

/// Removes the directory of a run that failed before its commit, and returns
/// the failure. A failpoint stands for a crash: its run stays, as a crashed
/// one would. A removal that fails is logged; the run is then left for the
/// next run to remove as abandoned.
async fn discard(run_dir: &Location, error: JobError) -> JobError {
    if !matches!(error, JobError::Failpoint(_)) {
        match run_dir.delete_all().await {
            Ok(_) => {
                run_dir.remove_empty_folders();
                if let Some(path) = run_dir.url().strip_prefix("file://") {
                    let _ = std::fs::remove_dir(path);
                }
                tracing::warn!(run = %run_dir, "the failed run's files were removed");
            }
            Err(e) => tracing::warn!(run = %run_dir, error = %e, "the failed run's files could not be removed"),
        }
    }
    error
}

/// `Some` when the date is already committed with the same fingerprint (and no
/// overwrite was asked): nothing to do. A different committed fingerprint is a
/// conflict unless `overwrite`.
async fn already_committed(
    date_dir: &DateDir,
    ours: &Fingerprint,
    overwrite: bool,
    abandoned_after: chrono::Duration,
) -> Result<Option<Outcome>, JobError> {
    let Some(marker) = date_dir.committed().await? else { return Ok(None) };
    let manifest_url = date_dir.location.join(&marker.manifest).url().to_string();
    if marker.fingerprint == *ours && !overwrite {
        let removed = date_dir.remove_finished_runs(&marker.run_id, None, abandoned_after).await?;
        tracing::info!(stage = "commit", run = %marker.run_id, stale_runs_removed = removed.len(), "already committed with the same inputs and config: nothing to do");
        return Ok(Some(Outcome::Unchanged { manifest_url }));
    }
    if !overwrite {
        return Err(JobError::Conflict {
            date: ours.date.clone(),
            run: marker.run_id.clone(),
            what: differences(&marker.fingerprint, ours),
        });
    }
    Ok(None)
}

/// Eligibility and scoring on the configured engine; campaign ids checked
/// before any of them names an output path.
async fn score_stage(
    config: &JobConfig,
    model: &Model,
    model_version: &str,
    date: NaiveDate,
    stages: &mut Stages,
) -> Result<Scored, JobError> {
    let (inputs, options) = (&config.inputs, config.score_options(date));
    let scored = match &config.engine {
        Engine::Local { .. } => score(inputs, model, &options).await?,
        Engine::Ballista { scheduler, .. } => {
            let cluster = Cluster {
                scheduler,
                storage: &config.storage,
                model_uri: &config.file.model.uri,
                model_version,
                timeout: std::time::Duration::from_secs(config.file.engine.timeout_seconds),
            };
            crate::cluster::client::score(&cluster, inputs, model, &options).await?
        }
    };
    let id_pattern = regex::Regex::new(CAMPAIGN_ID_PATTERN).expect("valid pattern");
    if let Some(bad) = scored.campaigns.iter().find(|c| !id_pattern.is_match(&c.campaign_id)) {
        return Err(JobError::UnsafeCampaignId(bad.campaign_id.clone()));
    }
    failpoint("after-score")?;
    let seconds = stages.done("score");
    tracing::info!(
        stage = "score",
        campaigns = scored.campaigns.len(),
        users = scored.users,
        eligible_pairs = scored.pairs(),
        candidates = scored.pools.iter().map(Vec::len).sum::<usize>(),
        seconds,
        "scored"
    );
    Ok(scored)
}

/// Checks that every file `manifest` names is there, then puts `_SUCCESS`
/// (create-only). The winner removes the runs it can prove finished; a loser
/// removes its own run, and is unchanged if the winner's result is the same
/// as ours.
async fn commit(
    date_dir: &DateDir,
    manifest: &RunManifest,
    flags: &RunFlags,
    abandoned_after: chrono::Duration,
    stages: &mut Stages,
) -> Result<Outcome, JobError> {
    let (run_id, ours) = (manifest.run_id.as_str(), &manifest.fingerprint);
    let run_dir = date_dir.run(run_id);
    let missing = missing_files(&run_dir, manifest).await?;
    if !missing.is_empty() {
        return Err(JobError::Incomplete { run: run_id.to_string(), missing });
    }
    let marker = Marker {
        run_id: run_id.to_string(),
        manifest: format!("run={run_id}/{MANIFEST_FILE}"),
        fingerprint: ours.clone(),
    };
    let superseded = if flags.overwrite { date_dir.committed().await?.map(|m| m.run_id) } else { None };
    match date_dir.commit(&marker, flags.overwrite).await? {
        Commit::Committed => {
            failpoint("after-commit")?;
            let removed = date_dir.remove_finished_runs(run_id, superseded.as_deref(), abandoned_after).await?;
            let seconds = stages.done("commit");
            tracing::info!(stage = "commit", run = %run_id, stale_runs_removed = removed.len(), seconds, "committed");
            Ok(Outcome::Committed { manifest_url: run_dir.join(MANIFEST_FILE).url().to_string() })
        }
        Commit::Lost(winner) => {
            run_dir.delete_all().await?;
            let manifest_url = date_dir.location.join(&winner.manifest).url().to_string();
            if winner.fingerprint == *ours {
                tracing::info!(stage = "commit", run = %winner.run_id, "another run committed the same result first");
                Ok(Outcome::Unchanged { manifest_url })
            } else {
                Err(JobError::Conflict {
                    what: differences(&winner.fingerprint, ours),
                    date: ours.date.clone(),
                    run: winner.run_id.clone(),
                })
            }
        }
    }
}

/// One committed run per date from `from` to `to` (inclusive). Dates already
/// committed are skipped (unless `overwrite`), so an interrupted backfill
/// resumes where it stopped.
pub async fn backfill(
    config: &JobConfig,
    from: NaiveDate,
    to: NaiveDate,
    overwrite: bool,
) -> Result<Vec<(NaiveDate, Option<Outcome>)>, JobError> {
    let mut results = Vec::new();
    for date in from.iter_days().take_while(|d| *d <= to) {
        if !overwrite && let Some(marker) = DateDir::new(&config.output, date).committed().await? {
            tracing::info!(stage = "backfill", %date, run = %marker.run_id, "already committed: skipped");
            results.push((date, None));
            continue;
        }
        let outcome = run(config, &RunFlags { date, overwrite }).await?;
        results.push((date, Some(outcome)));
    }
    Ok(results)
}
