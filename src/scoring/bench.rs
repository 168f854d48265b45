//! `audience bench score`: scored pairs per second of the naive per-pair
//! forward pass and of the factorised fused operator (one partition, and one
//! partition per core), the libtorch GEMM FLOP/s of this machine measured in the
//! same run, the scoring's effective FLOP/s as a fraction of it, and the
//! process's peak RSS.
//!
//! Effective FLOPs count the work the factorised operator must do: per user its
//! first-layer part (2·user_width·width), per eligible pair the pair part
//! (2·pair_width·width), the hidden layer (2·width·hidden) and one tower
//! (2·hidden·tower + 2·tower); per pair that enters a pool, the four other
//! towers (the candidate table carries all five probabilities). The naive path is timed on its forward passes
//! only (feature gathering included, eligibility and reading excluded), which
//! flatters it; the factorised path is timed end to end (scan, eligibility,
//! scoring, pools).

use std::time::Instant;

use chrono::NaiveDate;
use tch::{Device, Kind, Tensor};

use super::scorer::eligible_pairs;
use super::{ScoreOptions, prepare, score};
use crate::model::Model;
use crate::model::features::{FeatureSpec, encode_users};
use crate::model::network::{Architecture, Inputs};
use crate::storage::Location;
use crate::world::WorldConfig;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Score(#[from] super::ScoreError),
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error(transparent)]
    Feature(#[from] crate::model::features::FeatureError),
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    #[error(transparent)]
    Generate(#[from] crate::world::write::GenerateError),
    #[error("reading the sample users: {0}")]
    Query(#[from] datafusion::error::DataFusionError),
    #[error("reading the sample users: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("world.json: {0}")]
    WorldManifest(#[from] serde_json::Error),
    #[error("scratch directory: {0}")]
    Scratch(#[from] std::io::Error),
}

impl BenchError {
    pub fn exit_code(&self) -> crate::exit_code::ExitCode {
        use crate::exit_code::ExitCode;
        match self {
            BenchError::Score(e) => e.exit_code(),
            BenchError::Model(e) => e.exit_code(),
            BenchError::Storage(e) => e.exit_code(),
            BenchError::Generate(e) => e.exit_code(),
            BenchError::Query(e) => crate::exit_code::of_query(e),
            BenchError::Feature(_) | BenchError::WorldManifest(_) => ExitCode::Invalid,
            BenchError::Arrow(_) | BenchError::Scratch(_) => ExitCode::Internal,
        }
    }
}

pub struct BenchOptions {
    pub users: u64,
    pub campaigns: u64,
    /// Users of the naive path's sample.
    pub naive_users: usize,
    /// An existing world to score instead of generating one.
    pub data: Option<String>,
}

/// FLOP/s of a square f32 matmul on this machine with the current libtorch
/// threads: the best of three one-second runs (the machine is shared).
pub fn gemm_flops() -> f64 {
    let n = 1024;
    let a = Tensor::randn([n, n], (Kind::Float, Device::Cpu));
    let b = Tensor::randn([n, n], (Kind::Float, Device::Cpu));
    let _ = a.matmul(&b);
    let run = || {
        let started = Instant::now();
        let mut reps = 0;
        while started.elapsed().as_secs_f64() < 1.0 {
            let _ = a.matmul(&b);
            reps += 1;
        }
        2.0 * (n * n * n) as f64 * reps as f64 / started.elapsed().as_secs_f64()
    };
    (0..3).map(|_| run()).fold(0.0, f64::max)
}

fn useful_flops(spec: &FeatureSpec, arch: &Architecture, scored: &super::Scored) -> f64 {
    let [width, hidden] = arch.encoder.map(|v| v as f64);
    let head = 2.0 * hidden * arch.tower as f64 + 2.0 * arch.tower as f64;
    let per_user = 2.0 * spec.user.input_width() as f64 * width;
    let per_pair = 2.0 * spec.pair.input_width() as f64 * width + 2.0 * width * hidden + head;
    let other_heads = (arch.tasks.len() - 1) as f64 * head;
    per_user * scored.users as f64 + per_pair * scored.pairs() as f64 + other_heads * scored.all_head_pairs as f64
}

pub async fn run(options: &BenchOptions) -> Result<(), BenchError> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let scratch = tempfile::tempdir()?;
    let root = match &options.data {
        Some(url) => Location::parse(url)?,
        None => {
            let root = Location::parse(scratch.path().join("world").to_str().expect("utf-8 temp path"))?;
            let config = WorldConfig {
                users: options.users,
                campaigns: options.campaigns,
                impressions: 28_000,
                ..WorldConfig::default()
            };
            let started = Instant::now();
            crate::world::write::generate(&root, config, false).await?;
            println!("world: {} users, {} campaigns, generated in {:.1}s", options.users, options.campaigns, started.elapsed().as_secs_f64());
            root
        }
    };
    let date = world_date(&root).await?;
    tch::manual_seed(1);
    let model = Model::new(FeatureSpec::default(), Architecture::default());

    tch::set_num_threads(cores as i32);
    let gemm = gemm_flops();
    println!("GEMM: {:.1} GFLOP/s (libtorch f32 1024x1024x1024, {cores} threads)", gemm / 1e9);

    let naive = naive(&root, &model, date, options.naive_users).await?;
    println!(
        "naive per-pair forward: {:.0} pairs/s ({} pairs from {} users, {cores} libtorch threads)",
        naive.0, naive.1, options.naive_users
    );

    let mut rates = Vec::new();
    for (label, partitions) in [("1 partition", 1), ("all cores", cores)] {
        let options = ScoreOptions { partitions, ..ScoreOptions::new(date) };
        let scored = score(&root, &model, &options).await?;
        let pairs = scored.pairs();
        let rate = pairs as f64 / scored.seconds;
        let flops = useful_flops(&model.spec, &model.architecture, &scored) / scored.seconds;
        println!(
            "factorised fused, {label} ({partitions} partitions x {} thread): {:.0} pairs/s, {} pairs ({} entered a pool), {} users, {:.1}s, {:.1} GFLOP/s effective",
            super::scorer::SCORING_THREADS,
            rate,
            pairs,
            scored.all_head_pairs,
            scored.users,
            scored.seconds,
            flops / 1e9
        );
        rates.push((label, rate, flops));
    }
    let speedups: Vec<String> = rates.iter().map(|(label, rate, _)| format!("{:.2}x ({label})", rate / naive.0)).collect();
    println!("speedup factorised/naive: {}", speedups.join(", "));
    let shares: Vec<String> = rates.iter().map(|(label, _, flops)| format!("{:.0}% ({label})", 100.0 * flops / gemm)).collect();
    println!("of GEMM: {}", shares.join(", "));
    println!("{}", crate::measure::peak_rss_line());
    Ok(())
}

/// The run date of a generated world (`world.json`), or today for other data.
async fn world_date(root: &Location) -> Result<NaiveDate, BenchError> {
    match root.join("world.json").read().await {
        Ok(bytes) => {
            let manifest: serde_json::Value = serde_json::from_slice(&bytes)?;
            Ok(serde_json::from_value(manifest["config"]["run_date"].clone())?)
        }
        Err(_) => Ok(chrono::Utc::now().date_naive()),
    }
}

/// Pairs per second of the plain forward pass on concatenated per-pair
/// features, over the eligible pairs of the first `users` users (best of 3).
async fn naive(root: &Location, model: &Model, date: NaiveDate, users: usize) -> Result<(f64, usize), BenchError> {
    let (ctx, prepared) = prepare(root, &super::ModelParts::of(model)?, &ScoreOptions::new(date)).await?;
    let batch = ctx.sql(&format!("SELECT * FROM users ORDER BY user_id LIMIT {users}")).await?.collect().await?;
    let batch = arrow::compute::concat_batches(&batch[0].schema(), &batch)?;
    let encoded = encode_users(&model.spec, "users", &batch)?;
    let (rows, pairs) = eligible_pairs(&prepared, &batch, &encoded)?;
    let (mut user_index, mut campaign_index, mut pair_values) = (Vec::<i64>::new(), Vec::<i64>::new(), Vec::<f32>::new());
    for (c, (rows, pairs)) in rows.iter().zip(&pairs).enumerate() {
        user_index.extend(rows);
        campaign_index.extend(std::iter::repeat_n(c as i64, rows.len()));
        pair_values.extend(pairs);
    }
    let n = encoded.rows.n as i64;
    let user_cat = Tensor::from_slice(&encoded.rows.cat).view([n, -1]);
    let user_dense = Tensor::from_slice(&encoded.rows.dense).view([n, -1]);
    let c = prepared.campaign_rows.rows.n as i64;
    let campaign_cat = Tensor::from_slice(&prepared.campaign_rows.rows.cat).view([c, -1]);
    let campaign_dense = Tensor::from_slice(&prepared.campaign_rows.rows.dense).view([c, -1]);
    let total = user_index.len();
    const CHUNK: usize = 8192;
    let pass = || {
        let started = Instant::now();
        for start in (0..total).step_by(CHUNK) {
            let end = (start + CHUNK).min(total);
            let users = Tensor::from_slice(&user_index[start..end]);
            let campaigns = Tensor::from_slice(&campaign_index[start..end]);
            let inputs = Inputs {
                user_cat: user_cat.index_select(0, &users),
                user_dense: user_dense.index_select(0, &users),
                campaign_cat: campaign_cat.index_select(0, &campaigns),
                campaign_dense: campaign_dense.index_select(0, &campaigns),
                pair: Tensor::from_slice(&pair_values[start * 4..end * 4]).view([(end - start) as i64, 4]),
            };
            let _ = model.network.predict(&inputs);
        }
        total as f64 / started.elapsed().as_secs_f64()
    };
    // The best of three passes, as for the GEMM: the machine is shared.
    Ok(((0..3).map(|_| pass()).fold(0.0, f64::max), total))
}
