//! `audience demo`: the whole pipeline on local storage. Generates a world,
//! trains a small model on it, runs the job for the world's run date with
//! `configs/demo.toml`'s settings, and summarises the committed audiences.

use std::path::Path;
use std::time::Instant;

use super::config::{ConfigFile, JobConfig};
use super::error::JobError;
use super::manifest::RunManifest;
use super::run::{RunFlags, run};
use crate::exit_code::ExitCode;
use crate::model::train::TrainOptions;
use crate::model::workflow::train_and_save;
use crate::world::WorldConfig;
use crate::world::write::generate;

pub struct Demo {
    pub manifest: RunManifest,
    pub manifest_url: String,
    /// (step, seconds): generate, train, run.
    pub steps: Vec<(&'static str, f64)>,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Generate(#[from] crate::world::write::GenerateError),
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error(transparent)]
    Job(#[from] JobError),
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
}

impl DemoError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            DemoError::Generate(e) => e.exit_code(),
            DemoError::Model(e) => e.exit_code(),
            DemoError::Job(e) => e.exit_code(),
            DemoError::Storage(e) => e.exit_code(),
        }
    }
}

/// The demo's job config: everything under `dir`.
pub fn config(dir: &Path) -> JobConfig {
    let at = |child: &str| dir.join(child).display().to_string();
    let file = ConfigFile::with_defaults(at("world"), at("model"), at("audiences"));
    JobConfig::try_from(file).expect("the demo's config is valid")
}

pub async fn demo(dir: &Path, world: WorldConfig, training: &TrainOptions) -> Result<Demo, DemoError> {
    let config = config(dir);
    let mut steps = Vec::new();
    let started = Instant::now();
    generate(&config.inputs, world.clone(), true).await?;
    steps.push(("generate", started.elapsed().as_secs_f64()));
    let started = Instant::now();
    train_and_save(&config.inputs, &config.model, training, None).await?;
    steps.push(("train", started.elapsed().as_secs_f64()));
    let started = Instant::now();
    // A regenerated world has new files: replace the previous demo's run.
    let outcome = run(&config, &RunFlags { date: world.run_date, overwrite: true }).await?;
    steps.push(("run", started.elapsed().as_secs_f64()));
    let manifest_url = outcome.manifest_url().to_string();
    let manifest: RunManifest = serde_json::from_slice(&config.location(&manifest_url)?.read().await?)
        .map_err(|e| crate::storage::StorageError::Corrupt { url: manifest_url.clone(), reason: e.to_string() })?;
    Ok(Demo { manifest, manifest_url, steps })
}

impl Demo {
    /// Per campaign: audience, spend/budget, expected events and eCPS.
    pub fn summary(&self) -> String {
        let m = &self.manifest;
        let mut out = format!(
            "{:<14} {:<9} {:<8} {:>9} {:>9} {:>20} {:>10} {:>10}  {}\n",
            "campaign", "kind", "goal", "eligible", "audience", "spend / budget", "exp.events", "exp.eCPS", "note"
        );
        for c in &m.campaigns {
            out += &format!(
                "{:<14} {:<9} {:<8} {:>9} {:>9} {:>20} {:>10.1} {:>10}  {}\n",
                c.campaign_id,
                c.kind,
                c.objective,
                c.eligible_users,
                c.audience,
                format!("{:.2} / {:.2}", c.spend, c.budget),
                c.expected_events,
                c.expected_ecps.map_or("-".to_string(), |e| format!("{e:.3}")),
                c.withheld.as_deref().unwrap_or("")
            );
        }
        let audience: u64 = m.campaigns.iter().map(|c| c.audience).sum();
        let spend: f64 = m.campaigns.iter().map(|c| c.spend).sum();
        let budget: f64 = m.campaigns.iter().map(|c| c.budget).sum();
        let events: f64 = m.campaigns.iter().map(|c| c.expected_events).sum();
        out += &format!(
            "total: {} campaigns, {audience} users targeted, spend {spend:.2} of {budget:.2}, {events:.1} expected events; solver value {:.2}, dual bound {}, gap {}\n",
            m.campaigns.len(),
            m.solver_value,
            m.dual_bound.map_or("-".into(), |b| format!("{b:.2}")),
            m.gap.map_or("-".into(), |g| format!("{:.3}%", 100.0 * g))
        );
        out += &self.market();
        let stages: Vec<String> = m.timings.iter().map(|(k, v)| format!("{k} {v:.1}s")).collect();
        out += &format!("job stages: {}\n", stages.join(", "));
        let steps: Vec<String> = self.steps.iter().map(|(k, v)| format!("{k} {v:.1}s")).collect();
        out += &format!("demo steps: {}\n", steps.join(", "));
        let run_dir = self.manifest_url.rsplit_once('/').map_or("", |(dir, _)| dir);
        out += &format!("report: {run_dir}/{}\n", super::layout::REPORT_FILE);
        out
    }

    /// Per channel × objective: active campaigns served and budget spent.
    pub fn market(&self) -> String {
        let mut out = format!(
            "{:<19} {:>9} {:>8} {:>7} {:>12} {:>12} {:>7}\n",
            "kind / goal", "campaigns", "served", "share", "budget", "spend", "spent"
        );
        for group in self.manifest.by_market() {
            out += &format!(
                "{:<19} {:>9} {:>8} {:>6.1}% {:>12.2} {:>12.2} {:>6.1}%\n",
                group.name,
                group.campaigns,
                group.served,
                100.0 * group.served as f64 / group.campaigns.max(1) as f64,
                group.budget,
                group.spend,
                100.0 * group.spend / group.budget.max(f64::MIN_POSITIVE)
            );
        }
        out
    }
}
