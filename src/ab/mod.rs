//! `audience experiment ab`: the paper's online budget-split A/B test,
//! simulated on the world's ground truth. Per seed: train the promotions-only
//! baseline (arm A) and the five-task model (arm B) on the world's logs, split
//! the users in two by a stable hash and every campaign's budget in half, let
//! each model pick its half's audiences through the job's own scoring and
//! allocation, and score what they would have done with the true
//! probabilities. The oracle (ranks by the truth) and random arms run on both
//! halves and are reported per half, as the ceiling and the floor.
//! `split` makes the half worlds, `arms` picks an arm's audiences, `outcomes`
//! scores them, `table` prints and serialises the result.

pub mod arms;
pub mod grid;
pub mod grid_page;
pub mod outcomes;
pub mod split;
pub mod table;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::exit_code::ExitCode;
use crate::job::config::JobConfig;
use crate::model::Model;
use crate::model::experiment::{ablation_recipes, channel_aps};
use crate::model::train::{Recipe, TrainOptions, train};
use crate::model::workflow::load_split;
use crate::storage::Location;
use crate::world::{World, WorldConfig};
use arms::{Ranker, Reference, choose};
use outcomes::{Outcome, outcome};

#[derive(Debug, thiserror::Error)]
pub enum AbError {
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    #[error(transparent)]
    Score(#[from] crate::scoring::ScoreError),
    #[error(transparent)]
    Feature(#[from] crate::model::features::FeatureError),
    #[error(transparent)]
    Generate(#[from] crate::world::write::GenerateError),
    #[error("allocation: {0}")]
    Allocate(#[from] crate::allocate::AllocateError),
    #[error("reading the world: {0}")]
    Query(#[from] datafusion::error::DataFusionError),
    #[error("splitting the world: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error(
        "{url}/world.json: {reason} (the A/B needs a generated world: its truth comes from the generator's config)"
    )]
    NoTruth { url: String, reason: String },
    #[error("campaign {0} is not in the world's truth")]
    NotInWorld(String),
    #[error("scratch directory: {0}")]
    Scratch(#[from] std::io::Error),
    #[error(transparent)]
    Chart(#[from] crate::report::ChartError),
    /// Options that would run one world twice.
    #[error("{0}")]
    Options(String),
    /// Regenerating a world in the scratch folder failed: not the user's
    /// input, so neither their fault nor a conflict for them to resolve.
    #[error("regenerating the world with seed {seed} (world seeds) failed: {source}")]
    Regenerate {
        seed: u64,
        #[source]
        source: crate::world::write::GenerateError,
    },
}

impl AbError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            AbError::Model(e) => e.exit_code(),
            AbError::Storage(e) => e.exit_code(),
            AbError::Score(e) => e.exit_code(),
            AbError::Generate(e) => e.exit_code(),
            AbError::Query(e) => crate::exit_code::of_query(e),
            AbError::Feature(_) | AbError::NoTruth { .. } | AbError::NotInWorld(_) | AbError::Options(_) => {
                ExitCode::Invalid
            }
            AbError::Regenerate { source, .. } => match source.exit_code() {
                ExitCode::Transient => ExitCode::Transient,
                _ => ExitCode::Internal,
            },
            AbError::Allocate(_) | AbError::Arrow(_) | AbError::Scratch(_) | AbError::Chart(_) => ExitCode::Internal,
        }
    }
}

/// The arms, in the order of the tables.
pub const ARMS: [&str; 4] = ["A", "B", "oracle", "random"];

pub struct AbOptions {
    /// Training seeds (each retrains both models and redraws the split).
    pub seeds: Vec<u64>,
    /// Also regenerate the world with each of these seeds (its size and
    /// settings otherwise unchanged).
    pub world_seeds: Vec<u64>,
    pub training: TrainOptions,
}

/// One run of the test: a world and a training seed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Run {
    pub world_seed: u64,
    pub seed: u64,
    /// Per arm, its outcome (per half for the oracle and random arms).
    pub arms: BTreeMap<String, Outcome>,
    /// Per arm: budget of its half, to check that no arm spent more.
    pub budgets: BTreeMap<String, f64>,
    /// Per model arm (A, B): how it trained and its offline test AP.
    #[serde(default)]
    pub training: BTreeMap<String, ArmTraining>,
}

/// How a model arm trained, and what it scored offline on the test days.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArmTraining {
    pub best_epoch: usize,
    pub epochs_run: usize,
    pub steps_per_epoch: usize,
    /// Training rows by source.
    pub train_promotions: usize,
    pub train_ads: usize,
    /// Test AP of the stream prediction the arm serves on each channel.
    pub test_ap_promotions: f64,
    pub test_ap_ads: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AbResult {
    pub data: String,
    pub runs: Vec<Run>,
}

/// The world's generator config, from `world.json`, with the generator
/// version it names (a world written before versions were recorded in the
/// config is version 2's). A version this build does not know is refused:
/// its truth cannot be rebuilt.
pub async fn world_config(data: &Location) -> Result<WorldConfig, AbError> {
    let no_truth = |reason: String| AbError::NoTruth { url: data.url().to_string(), reason };
    let bytes = data.join("world.json").read().await.map_err(|e| no_truth(e.to_string()))?;
    let manifest: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| no_truth(e.to_string()))?;
    let mut config: WorldConfig =
        serde_json::from_value(manifest["config"].clone()).map_err(|e| no_truth(e.to_string()))?;
    let version = manifest["generator_version"].as_u64().ok_or_else(|| no_truth("no generator_version".into()))?;
    if !crate::world::KNOWN_VERSIONS.contains(&(version as u32)) {
        return Err(no_truth(format!(
            "generator version {version} is not one this build knows ({:?})",
            crate::world::KNOWN_VERSIONS
        )));
    }
    config.generator_version = version as u32;
    if let Some(problem) = config.regime_problems().first() {
        return Err(no_truth(problem.clone()));
    }
    Ok(config)
}

/// Where campaign `id` is in the world's truth.
pub fn campaign_in_world(world: &World, id: &str) -> Result<usize, AbError> {
    world.campaigns.iter().position(|c| c.campaign_id == id).ok_or_else(|| AbError::NotInWorld(id.to_string()))
}

/// The baseline's recipe (the ablation's A) and the five-task model's.
pub fn recipes() -> (Recipe, Recipe) {
    (ablation_recipes().remove(0), Recipe::joint())
}

/// Runs the test on the world at `data` (and on regenerated worlds for
/// `options.world_seeds`), once per training seed.
pub async fn run(data: &Location, options: &AbOptions) -> Result<AbResult, AbError> {
    let config = world_config(data).await?;
    check_seeds(options, config.seed, data)?;
    let scratch = tempfile::tempdir()?;
    let scratch_root = Location::parse(scratch.path().to_str().expect("utf-8 temp path"))?;
    let mut worlds = vec![(config.seed, data.clone())];
    for &seed in &options.world_seeds {
        let root = scratch_root.join(&format!("world-{seed}"));
        crate::world::write::generate(&root, WorldConfig { seed, ..config.clone() }, false)
            .await
            .map_err(|source| AbError::Regenerate { seed, source })?;
        worlds.push((seed, root));
    }
    let mut runs = Vec::new();
    for (world_seed, root) in &worlds {
        let world = World::new(WorldConfig { seed: *world_seed, ..config.clone() });
        let (dataset, split) = load_split(root, None, &options.training).await?;
        for &seed in &options.seeds {
            let (baseline, joint) = recipes();
            let mut training = BTreeMap::new();
            let mut train_arm = |name: &str, recipe: Recipe| -> Result<Model, AbError> {
                let arm_options = TrainOptions { seed, recipe: recipe.clone(), ..options.training.clone() };
                let (model, report) = train(&dataset, &split, &arm_options, None)?;
                let [test_ap_promotions, test_ap_ads] = channel_aps(&model, &recipe, &dataset, &split.test);
                let steps = report.epochs.len().max(1);
                training.insert(
                    name.to_string(),
                    ArmTraining {
                        best_epoch: report.best_epoch,
                        epochs_run: steps,
                        steps_per_epoch: options
                            .training
                            .steps_per_epoch
                            .unwrap_or_else(|| report.train_examples.div_ceil(options.training.batch_size)),
                        train_promotions: report.train_promotions,
                        train_ads: report.train_ads,
                        test_ap_promotions,
                        test_ap_ads,
                    },
                );
                Ok(model)
            };
            let model_a = train_arm("A", baseline)?;
            // The baseline never learnt ads: it serves them through its
            // promotion-stream head, as a promotions-only production model would.
            model_a.network.copy_tower(
                crate::contract::stream_task(crate::contract::Channel::Promotion),
                crate::contract::stream_task(crate::contract::Channel::Ad),
            );
            let model_b = train_arm("B", joint)?;
            let halves =
                split::split_world(root, &scratch_root.join(&format!("split-{world_seed}-{seed}")), seed).await?;
            let job = arm_config(&halves[0]);
            let date = world.config.run_date;
            let hour = job.score_options(date).hour;
            let mut arms = BTreeMap::new();
            let mut budgets = BTreeMap::new();
            for (name, half, ranker) in [("A", 0, Ranker::Model(&model_a)), ("B", 1, Ranker::Model(&model_b))] {
                let chosen = choose(&halves[half], &ranker, &model_b, &job, date).await?;
                budgets.insert(name.to_string(), chosen.scored.campaigns.iter().map(|c| c.budget).sum());
                arms.insert(name.to_string(), outcome(&world, &chosen, hour)?);
            }
            for (name, reference) in [("oracle", Reference::Oracle(&world)), ("random", Reference::Random(seed))] {
                let ranker = Ranker::Reference(reference);
                let mut per_half = Vec::new();
                for half in &halves {
                    let chosen = choose(half, &ranker, &model_b, &job, date).await?;
                    per_half.push(outcome(&world, &chosen, hour)?);
                }
                arms.insert(name.to_string(), Outcome::mean(&per_half));
            }
            tracing::info!(
                world_seed,
                seed,
                a = arms["A"].all.overall.true_streams,
                b = arms["B"].all.overall.true_streams,
                "A/B run"
            );
            runs.push(Run { world_seed: *world_seed, seed, arms, budgets, training });
        }
    }
    Ok(AbResult { data: data.url().to_string(), runs })
}

/// Refuses a world seed that is the seed of the world at `data` itself: that
/// world runs anyway, so it would be counted twice. (Seeds named twice in one
/// list are refused where the lists are read, naming the flag.)
fn check_seeds(options: &AbOptions, data_seed: u64, data: &Location) -> Result<(), AbError> {
    if options.world_seeds.contains(&data_seed) {
        return Err(AbError::Options(format!(
            "world seed {data_seed} is the seed of the world at {data} (its world.json): that world runs anyway"
        )));
    }
    Ok(())
}

/// The job's default config, on a half world (nothing is written: only
/// scoring and allocation settings are read).
pub fn arm_config(half: &Location) -> JobConfig {
    let (root, unused) = (half.url().to_string(), half.join("unused-output").url().to_string());
    let file = crate::job::config::ConfigFile::with_defaults(root.clone(), root, unused);
    JobConfig::try_from(file).expect("the default config is valid")
}
