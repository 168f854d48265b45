//! One run of the nightly job: fingerprint → (no-op if committed) → validate →
//! eligibility + fused scoring (in process, or on a Ballista cluster) → allocation → write audiences → manifest →
//! commit. One structured log line per stage with counts and durations.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Float32Array, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::commit::{Commit, DateDir, Fingerprint, MANIFEST_FILE, Marker};
use super::config::{EngineKind, JobConfig};
use crate::allocate::{self, CampaignSpec, Candidates, Options as AllocateOptions};
use crate::cluster::client::Cluster;
use crate::contract::validate::validate_world;
use crate::contract::{CAMPAIGN_ID_PATTERN, Table};
use crate::failpoint;
use crate::model::artifact;
use crate::model::dataset::fingerprint;
use crate::model::network::TASKS;
use crate::scoring::{ScoreOptions, Scored, score};
use crate::storage::Location;

#[derive(Debug, Clone)]
pub struct RunFlags {
    pub date: NaiveDate,
    pub overwrite: bool,
}

#[derive(Debug)]
pub enum Outcome {
    Committed { manifest_url: String },
    /// The date was already committed with the same inputs and config.
    Unchanged { manifest_url: String },
}

impl Outcome {
    pub fn manifest_url(&self) -> &str {
        match self {
            Outcome::Committed { manifest_url } | Outcome::Unchanged { manifest_url } => manifest_url,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Config(#[from] super::config::ConfigError),
    #[error(transparent)]
    InvalidInput(#[from] crate::contract::validate::InvalidInput),
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error(transparent)]
    Score(#[from] crate::scoring::ScoreError),
    #[error("allocation: {0}")]
    Allocate(#[from] allocate::AllocateError),
    #[error("campaign id {0:?} cannot name an output path (must match {CAMPAIGN_ID_PATTERN})")]
    UnsafeCampaignId(String),
    #[error(
        "{date} was already committed by run {run} with different inputs or config ({what}); rerun with --overwrite to replace it"
    )]
    Conflict { date: String, run: String, what: String },
    #[error("failpoint {0} reached (AUDIENCE_FAILPOINT)")]
    Failpoint(String),
}

/// Per campaign, in the manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CampaignReport {
    pub campaign_id: String,
    pub kind: String,
    pub objective: String,
    pub eligible_users: u64,
    pub candidates: u64,
    pub audience: u64,
    pub spend: f64,
    pub budget: f64,
    pub expected_events: f64,
    /// Spend per expected objective event (eCPS for stream campaigns).
    pub expected_ecps: Option<f64>,
    pub withheld: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunManifest {
    pub run_id: String,
    pub date: String,
    pub fingerprint: Fingerprint,
    pub inputs_root: String,
    pub model_uri: String,
    pub model_version: String,
    pub config: JobConfig,
    pub users_scored: u64,
    pub eligible_pairs: u64,
    pub campaigns: Vec<CampaignReport>,
    pub solver: String,
    pub solver_value: f64,
    pub dual_bound: Option<f64>,
    pub gap: Option<f64>,
    /// Seconds per stage.
    pub timings: BTreeMap<String, f64>,
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
    let inputs = config.location(&config.inputs.root)?;
    let model = artifact::read_manifest(&config.location(&config.model.uri)?).await?;
    Ok(Fingerprint {
        date: date.format("%Y-%m-%d").to_string(),
        config_hash: config.hash(),
        inputs: fingerprint(&inputs, &INPUT_TABLES).await?,
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

/// Runs the job for one date.
pub async fn run(config: &JobConfig, flags: &RunFlags) -> Result<Outcome, JobError> {
    let mut stages = Stages::new();
    let output = config.location(&config.output.root)?;
    let inputs = config.location(&config.inputs.root)?;
    let date_dir = DateDir::new(&output, flags.date);
    let ours = fingerprint_of(config, flags.date).await?;
    let committed = date_dir.committed().await?;
    if let Some(marker) = &committed {
        let manifest_url = date_dir.location.join(&marker.manifest).url().to_string();
        if marker.fingerprint == ours && !flags.overwrite {
            let removed = date_dir.remove_runs_except(Some(&marker.run_id)).await?;
            tracing::info!(stage = "commit", run = %marker.run_id, stale_runs_removed = removed.len(), "already committed with the same inputs and config: nothing to do");
            return Ok(Outcome::Unchanged { manifest_url });
        }
        if !flags.overwrite {
            return Err(JobError::Conflict {
                date: ours.date.clone(),
                run: marker.run_id.clone(),
                what: differences(&marker.fingerprint, &ours),
            });
        }
    }
    let seconds = stages.done("fingerprint");
    tracing::info!(stage = "fingerprint", seconds, "inputs fingerprinted");

    let report = validate_world(&inputs).await?.into_result()?;
    let rows: BTreeMap<String, u64> = report.rows.iter().map(|(t, n)| (t.name().to_string(), *n)).collect();
    let seconds = stages.done("validate");
    tracing::info!(stage = "validate", ?rows, seconds, "inputs valid");

    let (model, model_manifest) = artifact::load(&config.location(&config.model.uri)?).await?;
    let seconds = stages.done("model");
    tracing::info!(stage = "model", version = %model_manifest.model_version, seconds, "model loaded");

    let options = ScoreOptions {
        slack: config.scoring.pool_slack,
        partitions: config.engine.partitions,
        batch_rows: config.scoring.batch_rows,
        hour: config.scoring.hour,
        ..ScoreOptions::new(flags.date)
    };
    let scored = match config.engine.kind {
        EngineKind::Local => score(&inputs, &model, &options).await?,
        EngineKind::Ballista => {
            let cluster = Cluster {
                scheduler: config.engine.scheduler.as_deref().expect("checked when the config was loaded"),
                storage: &config.storage,
                model_uri: &config.model.uri,
                model_version: &model_manifest.model_version,
            };
            crate::cluster::client::score(&cluster, &inputs, &model, &options).await?
        }
    };
    let id_pattern = regex::Regex::new(CAMPAIGN_ID_PATTERN).expect("valid pattern");
    if let Some(bad) = scored.campaigns.iter().find(|c| !id_pattern.is_match(&c.campaign_id)) {
        return Err(JobError::UnsafeCampaignId(bad.campaign_id.clone()));
    }
    let candidates: usize = scored.pools.iter().map(Vec::len).sum();
    let seconds = stages.done("score");
    tracing::info!(
        stage = "score",
        campaigns = scored.campaigns.len(),
        users = scored.users,
        eligible_pairs = scored.pairs(),
        candidates,
        seconds,
        "scored"
    );

    let (specs, table) = allocation_input(&scored);
    let allocate_options =
        AllocateOptions { limits: config.limits(), solver: config.allocation.solver, seed: config.allocation.seed, ..Default::default() };
    let allocation = allocate::allocate(&specs, &table, &allocate_options)?;
    let seconds = stages.done("allocate");
    tracing::info!(
        stage = "allocate",
        chosen = allocation.chosen.len(),
        value = allocation.primal,
        gap = ?allocation.gap,
        seconds,
        "allocated"
    );

    let run_id = format!("{}-{:08x}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ"), rand::random::<u32>());
    let run_dir = date_dir.run(&run_id);
    let written = write_audiences(&run_dir, &scored, &table, &allocation.chosen).await?;
    let seconds = stages.done("write");
    tracing::info!(stage = "write", run = %run_id, rows = written, seconds, "audiences written");

    let campaigns = campaign_reports(&scored, &allocation);
    let manifest = RunManifest {
        run_id: run_id.clone(),
        date: ours.date.clone(),
        fingerprint: ours.clone(),
        inputs_root: inputs.url().to_string(),
        model_uri: config.model.uri.clone(),
        model_version: model_manifest.model_version.clone(),
        config: config.clone(),
        users_scored: scored.users,
        eligible_pairs: scored.pairs(),
        campaigns,
        solver: format!("{:?}", config.allocation.solver).to_lowercase(),
        solver_value: allocation.primal,
        dual_bound: allocation.dual_bound,
        gap: allocation.gap,
        timings: stages.timings.clone(),
    };
    let manifest_location = run_dir.join(MANIFEST_FILE);
    manifest_location.write(serde_json::to_vec_pretty(&manifest).expect("manifest serialises")).await?;
    if failpoint::armed("before-commit") {
        return Err(JobError::Failpoint("before-commit".into()));
    }

    let marker = Marker { run_id: run_id.clone(), manifest: format!("run={run_id}/{MANIFEST_FILE}"), fingerprint: ours.clone() };
    match date_dir.commit(&marker, flags.overwrite).await? {
        Commit::Committed => {
            let removed = date_dir.remove_runs_except(Some(&run_id)).await?;
            let seconds = stages.done("commit");
            tracing::info!(stage = "commit", run = %run_id, stale_runs_removed = removed.len(), seconds, "committed");
            Ok(Outcome::Committed { manifest_url: manifest_location.url().to_string() })
        }
        Commit::Lost(winner) => {
            run_dir.delete_all().await?;
            let manifest_url = date_dir.location.join(&winner.manifest).url().to_string();
            if winner.fingerprint == ours {
                tracing::info!(stage = "commit", run = %winner.run_id, "another run committed the same result first");
                Ok(Outcome::Unchanged { manifest_url })
            } else {
                Err(JobError::Conflict { what: differences(&winner.fingerprint, &ours), date: ours.date, run: winner.run_id.clone() })
            }
        }
    }
}

/// Campaign specs and the candidate table for the allocator.
fn allocation_input(scored: &Scored) -> (Vec<CampaignSpec>, Candidates) {
    let specs = scored
        .campaigns
        .iter()
        .map(|c| CampaignSpec { id: c.campaign_id.clone(), channel: c.channel, budget: c.budget, min_audience: c.min_audience.max(0) as u64 })
        .collect();
    let mut table = Candidates::with_capacity(scored.pools.iter().map(Vec::len).sum());
    for (c, (campaign, pool)) in scored.campaigns.iter().zip(&scored.pools).enumerate() {
        for candidate in pool {
            table.push(candidate.user_id, c as u32, candidate.value, campaign.cost_per_user());
        }
    }
    (specs, table)
}

/// Where each campaign's pool starts in the candidate table, which holds the
/// pools one after another (see [`allocation_input`]).
fn pool_offsets(scored: &Scored) -> Vec<usize> {
    scored
        .pools
        .iter()
        .scan(0, |start, pool| {
            let offset = *start;
            *start += pool.len();
            Some(offset)
        })
        .collect()
}

/// Schema of the audiences written (DESIGN.md section 3).
pub fn audience_schema() -> SchemaRef {
    let mut fields = vec![
        Field::new("campaign_id", DataType::Utf8, false),
        Field::new("user_id", DataType::Int64, false),
        Field::new("rank", DataType::Int64, false),
        Field::new("p_objective", DataType::Float32, false),
        Field::new("expected_events", DataType::Float32, false),
        Field::new("cost", DataType::Float64, false),
    ];
    fields.extend(TASKS.iter().map(|t| Field::new(format!("p_{t}"), DataType::Float32, false)));
    Arc::new(Schema::new(fields))
}

/// Writes one Parquet file per campaign with an audience; returns rows written.
async fn write_audiences(run_dir: &Location, scored: &Scored, table: &Candidates, chosen: &[usize]) -> Result<u64, JobError> {
    let offsets = pool_offsets(scored);
    let mut per_campaign: Vec<Vec<usize>> = vec![Vec::new(); scored.campaigns.len()];
    for &i in chosen {
        let c = table.campaign[i] as usize;
        per_campaign[c].push(i - offsets[c]);
    }
    let mut written = 0;
    for (c, mut members) in per_campaign.into_iter().enumerate() {
        if members.is_empty() {
            continue;
        }
        members.sort_unstable(); // pools are best first, so this is rank order
        let campaign = &scored.campaigns[c];
        let pool = &scored.pools[c];
        let n = members.len();
        let per_user = campaign.impressions_per_user as f32;
        let mut columns: Vec<Arc<dyn arrow::array::Array>> = vec![
            Arc::new(StringArray::from(vec![campaign.campaign_id.as_str(); n])),
            Arc::new(Int64Array::from_iter_values(members.iter().map(|&m| pool[m].user_id))),
            Arc::new(Int64Array::from_iter_values(1..=n as i64)),
            Arc::new(Float32Array::from_iter_values(members.iter().map(|&m| pool[m].p_objective))),
            Arc::new(Float32Array::from_iter_values(members.iter().map(|&m| pool[m].p_objective * per_user))),
            Arc::new(Float64Array::from(vec![campaign.cost_per_user(); n])),
        ];
        for task in 0..TASKS.len() {
            columns.push(Arc::new(Float32Array::from_iter_values(members.iter().map(|&m| pool[m].probabilities[task]))));
        }
        let batch = RecordBatch::try_new(audience_schema(), columns).expect("columns match the schema");
        let file = run_dir.join(&format!("audiences/campaign_id={}/part-00000.parquet", campaign.campaign_id));
        let mut writer = file.parquet_writer(audience_schema())?;
        writer.write(&batch).await?;
        writer.finish().await?;
        written += n as u64;
    }
    Ok(written)
}

fn campaign_reports(scored: &Scored, allocation: &allocate::Allocation) -> Vec<CampaignReport> {
    let mut expected = vec![0.0f64; scored.campaigns.len()];
    let offsets = pool_offsets(scored);
    for &i in &allocation.chosen {
        let c = offsets.partition_point(|&o| o <= i) - 1;
        let candidate = &scored.pools[c][i - offsets[c]];
        expected[c] += candidate.p_objective as f64 * scored.campaigns[c].impressions_per_user as f64;
    }
    scored
        .campaigns
        .iter()
        .zip(&allocation.campaigns)
        .enumerate()
        .map(|(c, (campaign, outcome))| CampaignReport {
            campaign_id: campaign.campaign_id.clone(),
            kind: campaign.channel.as_str().to_string(),
            objective: format!("{:?}", campaign.objective).to_lowercase(),
            eligible_users: scored.eligible[c],
            candidates: scored.pools[c].len() as u64,
            audience: outcome.audience,
            spend: outcome.spend,
            budget: campaign.budget,
            expected_events: expected[c],
            expected_ecps: (expected[c] > 0.0).then(|| outcome.spend / expected[c]),
            withheld: outcome.withheld.as_ref().map(ToString::to_string),
        })
        .collect()
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
    let output = config.location(&config.output.root)?;
    let mut results = Vec::new();
    for date in from.iter_days().take_while(|d| *d <= to) {
        if !overwrite && let Some(marker) = DateDir::new(&output, date).committed().await? {
            tracing::info!(stage = "backfill", %date, run = %marker.run_id, "already committed: skipped");
            results.push((date, None));
            continue;
        }
        let outcome = run(config, &RunFlags { date, overwrite }).await?;
        results.push((date, Some(outcome)));
    }
    Ok(results)
}
