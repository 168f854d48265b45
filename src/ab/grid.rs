//! `audience experiment regime`: the paper's regime as one fixed grid
//! (docs/ab.md), every point reported. On the version 3 default world:
//! B against A at 10,000, 50,000 and all promotion labels, each over the
//! world seeds × training seeds; at all labels, the two one-change worlds
//! (ads rich with receptivity unobserved; ads sparse with it observed), and
//! the version 2 world, over the training seeds on one world; and the
//! ablation (Table 1) on the default world. Points are fixed here, before
//! any run. Each point's result is saved in `grid.json` as soon as it is
//! done, so an interrupted grid resumes where it stopped; `grid_page` draws
//! the curves into `grid.html`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{AbError, AbOptions, run};
use crate::model::experiment::ablation;
use crate::model::train::TrainOptions;
use crate::model::workflow::load_split;
use crate::storage::Location;
use crate::world::CampaignDraw;
use crate::world::WorldConfig;
use crate::world::write::generate;

/// Promotion-label levels of the curve (`None`: all the world's promotion rows).
pub const LABEL_LEVELS: [Option<usize>; 3] = [Some(10_000), Some(50_000), None];

/// What the grid runs on: the sizes of its worlds and the seeds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GridOptions {
    /// The default world's config (version 3); the other worlds differ from
    /// it in their regime only. Its seed is the first world seed.
    pub world: WorldConfig,
    /// Further world seeds of the default world (the curve's points).
    pub world_seeds: Vec<u64>,
    /// Training seeds, at every point.
    pub seeds: Vec<u64>,
    pub training: TrainOptions,
}

/// One point of the grid: a world and a promotion-label level.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Point {
    pub name: String,
    pub world: WorldConfig,
    pub world_seeds: Vec<u64>,
    pub promotion_labels: Option<usize>,
}

/// The grid's points, in the order they run.
pub fn points(options: &GridOptions) -> Vec<Point> {
    let default = options.world.clone();
    let mut points: Vec<Point> = LABEL_LEVELS
        .iter()
        .map(|&labels| Point {
            name: format!("paper regime, {} promotion labels", labels.map_or("all".to_string(), |n| n.to_string())),
            world: default.clone(),
            world_seeds: options.world_seeds.clone(),
            promotion_labels: labels,
        })
        .collect();
    let one_world = |name: &str, world: WorldConfig| Point {
        name: name.to_string(),
        world,
        world_seeds: Vec::new(),
        promotion_labels: None,
    };
    points.push(one_world(
        "ads rich, receptivity unobserved (ad share 0.75, ρ 0)",
        WorldConfig { ad_receptivity_observed: 0.0, ..default.clone() },
    ));
    points.push(one_world(
        "ads sparse, receptivity observed (ad share 0.17, ρ 0.5)",
        WorldConfig { ad_share: Some(0.17), ..default.clone() },
    ));
    points.push(one_world("version 2 world (today's), new training", default.clone().version_2()));
    points
}

/// A point's result, as saved.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PointResult {
    pub point: Point,
    /// The A/B's JSON (`AbResult::json`).
    pub ab: Value,
    pub seconds: f64,
}

/// The ablation (Table 1) on the default world: per recipe, per seed,
/// [promotions AP, ads AP].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AblationPoint {
    pub recipes: Vec<String>,
    pub seeds: Vec<u64>,
    pub aps: Vec<Vec<[f64; 2]>>,
    pub seconds: f64,
}

/// Everything the grid measured, as `grid.json` holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GridResult {
    pub options: GridOptions,
    pub points: Vec<PointResult>,
    pub ablation: Option<AblationPoint>,
}

/// Runs every point not yet in `<out>/grid.json` (a rerun resumes), saving
/// after each. Worlds are generated under `<out>/worlds/`.
pub async fn run_grid(out: &Location, options: &GridOptions) -> Result<GridResult, AbError> {
    let file = out.join("grid.json");
    let mut result = match file.read().await {
        Ok(bytes) => {
            let saved: GridResult = serde_json::from_slice(&bytes)
                .map_err(|e| AbError::Options(format!("{}: {e} (remove it to start the grid again)", file.url())))?;
            if serde_json::to_value(&saved.options).ok() != serde_json::to_value(options).ok() {
                return Err(AbError::Options(format!(
                    "{} was run with other options; remove it (or choose another --out) to start again",
                    file.url()
                )));
            }
            saved
        }
        Err(crate::storage::StorageError::NotFound { .. }) => {
            GridResult { options: options.clone(), points: Vec::new(), ablation: None }
        }
        Err(e) => return Err(e.into()),
    };
    for point in points(options) {
        if result.points.iter().any(|p| p.point.name == point.name) {
            tracing::info!(point = %point.name, "already in grid.json: skipped");
            continue;
        }
        let started = std::time::Instant::now();
        let root = world_root(out, &point.world).await?;
        let training = TrainOptions {
            label_budget: point.promotion_labels,
            label_source: point.promotion_labels.map(|_| crate::contract::Channel::Promotion),
            ..options.training.clone()
        };
        let ab = AbOptions { seeds: options.seeds.clone(), world_seeds: point.world_seeds.clone(), training };
        let outcome = run(&root, &ab).await?;
        let seconds = started.elapsed().as_secs_f64();
        tracing::info!(point = %point.name, seconds, "grid point done");
        result.points.push(PointResult { point, ab: outcome.json(), seconds });
        save(&file, &result).await?;
    }
    if result.ablation.is_none() {
        let started = std::time::Instant::now();
        let root = world_root(out, &options.world).await?;
        let (dataset, split) = load_split(&root, None, &options.training).await?;
        let table = ablation(&dataset, &split, &options.training, &options.seeds)?;
        result.ablation = Some(AblationPoint {
            recipes: table.recipes.iter().map(|r| r.name.clone()).collect(),
            seeds: table.seeds.clone(),
            aps: table.aps.clone(),
            seconds: started.elapsed().as_secs_f64(),
        });
        save(&file, &result).await?;
    }
    Ok(result)
}

/// The world of `config` under `<out>/worlds/`, generated once: a folder per
/// regime and seed, reused when its `world.json` holds the same config.
async fn world_root(out: &Location, config: &WorldConfig) -> Result<Location, AbError> {
    let draw = |d: CampaignDraw| d.as_str();
    let name = format!(
        "v{}-ads{}-rho{}-{}-{}-seed{}",
        config.generator_version,
        config.ad_share.map_or("v2".to_string(), |s| s.to_string()),
        config.ad_receptivity_observed,
        draw(config.ad_campaigns),
        draw(config.promotion_campaigns),
        config.seed
    );
    let root = out.join(&format!("worlds/{name}"));
    if super::world_config(&root).await.ok().as_ref() == Some(config) {
        return Ok(root);
    }
    generate(&root, config.clone(), true).await?;
    Ok(root)
}

async fn save(file: &Location, result: &GridResult) -> Result<(), AbError> {
    let mut bytes = serde_json::to_vec_pretty(result).expect("the grid serialises");
    bytes.push(b'\n');
    file.write(bytes).await?;
    Ok(())
}
