//! `audience bench score`: what the machine is (CPU, instruction sets,
//! threads), its libtorch GEMM rate laid out as the operator runs (one thread
//! per core, one libtorch thread each; fp32, and bf16 where the CPU has it),
//! the naive per-pair forward pass, and the factorised fused operator end to
//! end (scan, eligibility, scoring, pools) in each precision, with its
//! effective FLOP/s as a share of the fp32 GEMM rate, its working memory and
//! the bytes per pool entry; with both precisions, the bf16/fp32 ratio and how
//! far the two runs' audiences overlap. Every figure also goes out as a JSON
//! line.
//!
//! Effective FLOPs count the work the model needs, not what the code does:
//! per user its first-layer part (2·user_width·width), per campaign its part,
//! per eligible pair the pair part (2·pair_width·width), the hidden layer
//! (2·width·hidden) and the objective's tower (2·hidden·tower + 2·tower).
//! Padding rows of partial tiles are not counted. The naive path is timed on
//! its forward passes only (feature gathering included, eligibility and
//! reading excluded), which flatters it.

use std::time::Instant;

use chrono::NaiveDate;
use tch::{Device, Kind, Tensor};

use super::layout::{Layout, LayoutError, rewrite_users};
use crate::model::Model;
use crate::model::features::{FeatureSpec, encode_users};
use crate::model::fused::{Isa, Precision};
use crate::model::network::{Architecture, Inputs};
use crate::scoring::pool::Candidate;
use crate::scoring::scorer::eligible_pairs;
use crate::scoring::{ScoreOptions, prepare, score};
use crate::storage::Location;
use crate::world::WorldConfig;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Score(#[from] crate::scoring::ScoreError),
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
    #[error(transparent)]
    Allocate(#[from] crate::allocate::AllocateError),
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error(transparent)]
    Batch(#[from] crate::scoring::scorer::ScoreBatchError),
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
            BenchError::Layout(LayoutError::Storage(e)) => e.exit_code(),
            BenchError::Batch(e) => e.exit_code(),
            BenchError::Layout(LayoutError::Query(e)) => crate::exit_code::of_query(e),
            BenchError::Arrow(_) | BenchError::Scratch(_) | BenchError::Allocate(_) => ExitCode::Internal,
        }
    }
}

pub struct BenchOptions {
    pub users: u64,
    pub campaigns: u64,
    /// Users of the naive path's sample (0: skip the naive path).
    pub naive_users: usize,
    /// An existing world to score instead of generating one.
    pub data: Option<String>,
    /// A trained model to score with instead of a random one.
    pub model: Option<String>,
    /// The precisions to run: fp32 and, where the CPU has it, bf16.
    pub precisions: Vec<Precision>,
    /// Also run one partition (the default runs all cores only).
    pub one_partition: bool,
    /// How the generated world's users table is laid out.
    pub layout: Layout,
    /// Pool size over the users a budget can buy (the job's 2; 0 keeps no
    /// candidate, so the memory figures are the operator's alone).
    pub slack: f64,
}

/// FLOP/s of a square matmul of `kind` on this machine laid out as the
/// operator runs: `threads` threads at once, each with one libtorch thread;
/// the sum of their rates over the best of three one-second rounds (the
/// machine is shared).
pub fn gemm_flops(kind: Kind, threads: usize) -> f64 {
    let n = 1024;
    let round = || {
        let rates: Vec<f64> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(move || {
                        tch::set_num_threads(1);
                        let a = Tensor::randn([n, n], (Kind::Float, Device::Cpu)).to_kind(kind);
                        let b = Tensor::randn([n, n], (Kind::Float, Device::Cpu)).to_kind(kind);
                        let _ = a.matmul(&b);
                        let started = Instant::now();
                        let mut reps = 0;
                        while started.elapsed().as_secs_f64() < 1.0 {
                            let _ = a.matmul(&b);
                            reps += 1;
                        }
                        2.0 * (n * n * n) as f64 * reps as f64 / started.elapsed().as_secs_f64()
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().expect("GEMM thread")).collect()
        });
        rates.iter().sum::<f64>()
    };
    (0..3).map(|_| round()).fold(0.0, f64::max)
}

/// The FLOPs the model needs for a scoring run: per user its first-layer
/// part, per campaign its part, per eligible pair the pair part, the hidden
/// layer and the objective's tower.
fn useful_flops(spec: &FeatureSpec, arch: &Architecture, scored: &crate::scoring::Scored) -> f64 {
    let [width, hidden] = arch.encoder.map(|v| v as f64);
    let tower = arch.tower as f64;
    let per_user = 2.0 * spec.user.input_width() as f64 * width;
    let per_campaign = 2.0 * spec.campaign.input_width() as f64 * width;
    let per_pair =
        2.0 * spec.pair.input_width() as f64 * width + 2.0 * width * hidden + 2.0 * hidden * tower + 2.0 * tower;
    per_user * scored.users as f64 + per_campaign * scored.campaigns.len() as f64 + per_pair * scored.pairs() as f64
}

/// One figure as a JSON line, so runs can be compared by machine.
fn figure(name: &str, value: f64, unit: &str, context: serde_json::Value) {
    println!(
        "{}",
        serde_json::json!({ "bench": "score", "figure": name, "value": value, "unit": unit, "context": context })
    );
}

/// One scoring run's figures.
struct Run {
    label: String,
    precision: Precision,
    partitions: usize,
    scored: crate::scoring::Scored,
    flops: f64,
}

/// Runs the benchmark and prints its figures: the machine, the GEMM rates,
/// the naive forward pass, each scoring run, and the summary.
pub async fn run(options: &BenchOptions) -> Result<(), BenchError> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("cpu: {}; row passes: {}", crate::measure::cpu_model(), Isa::detect().as_str());
    println!("threads: {cores} cores; the operator runs one partition per core, one libtorch thread each");
    let scratch = tempfile::tempdir()?;
    let root = bench_world(options, scratch.path()).await?;
    let date = world_date(&root).await?;
    let model = match &options.model {
        Some(url) => crate::model::artifact::load(&Location::parse(url)?).await?.0,
        None => {
            tch::manual_seed(1);
            Model::new(FeatureSpec::default(), Architecture::default())
        }
    };
    let layout = serde_json::json!({
        "cpu": crate::measure::cpu_model(), "threads": cores, "libtorch_threads": 1, "table_layout": options.layout.as_str()
    });

    // Measured before and after the scoring runs (the machines are shared and
    // their speed drifts); shares are of the mean of the two.
    let gemm_before = gemm_flops(Kind::Float, cores);
    println!(
        "GEMM fp32: {:.1} GFLOP/s (libtorch 1024x1024x1024; {cores} threads at once, 1 libtorch thread each, as the operator runs)",
        gemm_before / 1e9
    );
    if options.precisions.contains(&Precision::Bf16) {
        let gemm_bf16 = gemm_flops(Kind::BFloat16, cores);
        println!("GEMM bf16: {:.1} GFLOP/s (same layout)", gemm_bf16 / 1e9);
        figure("gemm_bf16", gemm_bf16 / 1e9, "GFLOP/s", layout.clone());
    }
    let naive = if options.naive_users > 0 {
        tch::set_num_threads(cores as i32);
        let naive = naive(&root, &model, date, options.naive_users).await?;
        println!(
            "naive per-pair forward: {:.0} pairs/s ({} pairs from {} users, {cores} libtorch threads)",
            naive.0, naive.1, options.naive_users
        );
        figure("naive_pairs_per_second", naive.0, "pairs/s", layout.clone());
        Some(naive.0)
    } else {
        None
    };

    let mut runs: Vec<Run> = Vec::new();
    for &precision in &options.precisions {
        let layouts: &[(&str, usize)] =
            if options.one_partition { &[("1 partition", 1), ("all cores", cores)] } else { &[("all cores", cores)] };
        for &(label, partitions) in layouts {
            runs.push(scoring_run(&root, &model, date, (precision, options.slack), label, partitions).await?);
        }
    }
    let gemm_after = gemm_flops(Kind::Float, cores);
    let gemm = (gemm_before + gemm_after) / 2.0;
    println!(
        "GEMM fp32 after the runs: {:.1} GFLOP/s; shares below are of the mean, {:.1} GFLOP/s",
        gemm_after / 1e9,
        gemm / 1e9
    );
    figure(
        "gemm_fp32",
        gemm / 1e9,
        "GFLOP/s",
        serde_json::json!({ "before": gemm_before / 1e9, "after": gemm_after / 1e9, "layout": layout }),
    );
    summary(&root, &runs, gemm, naive, cores)
}

/// The world to score: `--data`, or one generated into `scratch`.
async fn bench_world(options: &BenchOptions, scratch: &std::path::Path) -> Result<Location, BenchError> {
    if let Some(url) = &options.data {
        return Ok(Location::parse(url)?);
    }
    let root = Location::parse(scratch.join("world").to_str().expect("utf-8 temp path"))?;
    let config = WorldConfig {
        users: options.users,
        campaigns: options.campaigns,
        impressions: 28_000,
        ..WorldConfig::default()
    };
    let started = Instant::now();
    crate::world::write::generate(&root, config, false).await?;
    println!(
        "world: {} users, {} campaigns, generated in {:.1}s",
        options.users,
        options.campaigns,
        started.elapsed().as_secs_f64()
    );
    rewrite_users(&root, options.users, options.layout).await?;
    let files = root.join("users").list().await?.len();
    println!("users table: layout {}, {files} files", options.layout.as_str());
    Ok(root)
}

/// One run of the fused operator on `partitions` partitions, with its
/// throughput, effective FLOP/s and working memory printed.
async fn scoring_run(
    root: &Location,
    model: &Model,
    date: NaiveDate,
    (precision, slack): (Precision, f64),
    label: &str,
    partitions: usize,
) -> Result<Run, BenchError> {
    let score_options = ScoreOptions { partitions, precision, slack, ..ScoreOptions::new(date) };
    let reset = crate::measure::reset_peak_rss();
    let before = crate::measure::current_rss_bytes();
    let scored = score(root, model, &score_options).await?;
    let pool_bytes = scored.pool_bytes;
    let peak = crate::measure::peak_rss_bytes().filter(|_| reset);
    // What scoring added to the process, less its output.
    let working_bytes = peak.zip(before).map(|(peak, before)| peak.saturating_sub(before).saturating_sub(pool_bytes));
    let flops = useful_flops(&model.spec, &model.architecture, &scored) / scored.seconds;
    let pairs = scored.pairs();
    let label = format!("{}, {label}", precision.as_str());
    println!(
        "factorised fused {label} ({partitions} partitions x {} thread): {:.0} pairs/s, {} pairs, {} users, {:.1}s, {:.1} GFLOP/s effective",
        crate::scoring::scorer::SCORING_THREADS,
        pairs as f64 / scored.seconds,
        pairs,
        scored.users,
        scored.seconds,
        flops / 1e9
    );
    let context = serde_json::json!({ "precision": precision.as_str(), "partitions": partitions, "users": scored.users, "pairs": pairs });
    figure("scoring_pairs_per_second", pairs as f64 / scored.seconds, "pairs/s", context.clone());
    figure("scoring_effective_flops", flops / 1e9, "GFLOP/s", context.clone());
    if let Some(utilisation) = &scored.utilisation {
        let percents = |shares: Vec<f64>| shares.iter().map(|s| format!("{:.0}%", 100.0 * s)).collect::<Vec<_>>();
        println!(
            "  threads: per partition, busy {} of the scan's {:.2}s wall (on a thread: reading, preparing, scoring), of which scoring {}",
            percents(utilisation.busy_shares()).join(" / "),
            utilisation.wall,
            percents(utilisation.scoring_shares()).join(" / ")
        );
        let lowest = utilisation.busy_shares().into_iter().fold(f64::INFINITY, f64::min);
        figure("thread_busy_lowest", 100.0 * lowest, "%", context.clone());
    }
    let candidates: usize = scored.pools.iter().map(Vec::len).sum();
    if let Some(bytes) = working_bytes {
        println!(
            "  memory: operator working set {:.0} MiB (peak RSS over the scoring {:.0} MiB, less {:.0} MiB before it, less the pools at their largest, {:.1} MiB); {candidates} candidates x {} bytes",
            bytes as f64 / (1 << 20) as f64,
            peak.unwrap_or(0) as f64 / (1 << 20) as f64,
            before.unwrap_or(0) as f64 / (1 << 20) as f64,
            pool_bytes as f64 / (1 << 20) as f64,
            std::mem::size_of::<Candidate>()
        );
        figure("operator_working_set", bytes as f64 / (1 << 20) as f64, "MiB", context.clone());
        if let Some(heap) = &scored.heap {
            attribution(heap, bytes, pool_bytes, &context);
        }
    }
    figure("bytes_per_candidate", std::mem::size_of::<Candidate>() as f64, "bytes", context);
    Ok(Run { label, precision, partitions, scored, flops })
}

/// The working set split by what the Rust heap counters saw: what preparing
/// holds (with the follow exclusions), the scan's own peak less the pools,
/// and the rest (libtorch's own allocations, memory the allocator keeps).
fn attribution(heap: &crate::scoring::HeapUse, working: u64, pool_bytes: u64, context: &serde_json::Value) {
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let scan = heap.scan_peak.saturating_sub(pool_bytes);
    let counted = heap.prepare_peak.max(heap.prepared + scan);
    let rest = working as i64 - counted as i64;
    println!(
        "  working set by part (Rust heap counters): prepared {:.1} MiB held ({:.1} MiB at its peak), scan {:.1} MiB at its peak less the pools (batches, reader buffers, tiles, follow exclusions: at most {} held at once, {} follows row groups read), not in the Rust heap {:.1} MiB (libtorch's own, allocator free lists)",
        mib(heap.prepared),
        mib(heap.prepare_peak),
        mib(scan),
        heap.follows_peak,
        heap.follows_reads,
        rest as f64 / (1 << 20) as f64
    );
    figure("heap_prepared", mib(heap.prepared), "MiB", context.clone());
    figure("heap_prepare_peak", mib(heap.prepare_peak), "MiB", context.clone());
    figure("heap_scan_less_pools", mib(scan), "MiB", context.clone());
    figure("follow_exclusions_held_peak", heap.follows_peak as f64, "pairs", context.clone());
    figure("working_set_outside_heap", rest as f64 / (1 << 20) as f64, "MiB", context.clone());
}

/// The runs against the GEMM rate and the naive path; with both precisions,
/// bf16 against fp32 and how far their audiences overlap.
fn summary(root: &Location, runs: &[Run], gemm: f64, naive: Option<f64>, cores: usize) -> Result<(), BenchError> {
    for run in runs {
        let context = serde_json::json!({ "precision": run.precision.as_str(), "partitions": run.partitions });
        figure("scoring_share_of_fp32_gemm", 100.0 * run.flops / gemm, "%", context);
    }
    if let Some(naive) = naive {
        let speedups: Vec<String> = runs
            .iter()
            .map(|r| format!("{:.2}x ({})", r.scored.pairs() as f64 / r.scored.seconds / naive, r.label))
            .collect();
        println!("speedup factorised/naive: {}", speedups.join(", "));
    }
    let all_cores = |precision| runs.iter().find(|r| r.precision == precision && r.partitions == cores);
    let mut shares = Vec::new();
    if let Some(fp32) = all_cores(Precision::Fp32) {
        shares.push(format!("{:.0}% (all cores)", 100.0 * fp32.flops / gemm));
    }
    if let Some(bf16) = all_cores(Precision::Bf16) {
        shares.push(format!("{:.0}% (bf16, all cores)", 100.0 * bf16.flops / gemm));
    }
    println!("of GEMM: {}", shares.join(", "));
    if let (Some(fp32), Some(bf16)) = (all_cores(Precision::Fp32), all_cores(Precision::Bf16)) {
        println!("bf16/fp32: {:.1}x", bf16.flops / fp32.flops);
        figure("bf16_over_fp32", bf16.flops / fp32.flops, "x", serde_json::json!({ "partitions": cores }));
        if fp32.scored.pools.iter().all(Vec::is_empty) {
            println!("bf16 audiences vs fp32: not compared (no candidates kept: --slack 0)");
            return Ok(());
        }
        let overlap = audience_overlap(root, &fp32.scored, &bf16.scored)?;
        let median = median(overlap.clone());
        println!(
            "bf16 audiences vs fp32 (the job's allocation, default config): overlap per campaign median {:.2}%, lowest {:.2}%, over {} campaigns with an audience",
            100.0 * median,
            100.0 * overlap.iter().cloned().fold(1.0, f64::min),
            overlap.len()
        );
        figure("bf16_audience_overlap_median", 100.0 * median, "%", serde_json::json!({ "campaigns": overlap.len() }));
    }
    Ok(())
}

/// Per campaign with an fp32 audience, the share of it that the bf16
/// audience also holds (audiences picked by the job's allocation with the
/// default config).
fn audience_overlap(
    root: &Location,
    fp32: &crate::scoring::Scored,
    bf16: &crate::scoring::Scored,
) -> Result<Vec<f64>, BenchError> {
    let config = crate::ab::arm_config(root);
    let audiences = |scored: &crate::scoring::Scored| -> Result<Vec<std::collections::HashSet<i64>>, BenchError> {
        let choice = crate::choose::choose(scored, config.allocation.objective, &config.allocate_options(Vec::new()))?;
        Ok(choice.user_ids(scored).into_iter().map(|members| members.into_iter().collect()).collect())
    };
    let (a, b) = (audiences(fp32)?, audiences(bf16)?);
    Ok(a.iter()
        .zip(&b)
        .filter(|(a, _)| !a.is_empty())
        .map(|(a, b)| a.intersection(b).count() as f64 / a.len() as f64)
        .collect())
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 { values[mid] } else { (values[mid - 1] + values[mid]) / 2.0 }
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
    let (ctx, prepared) = prepare(root, &crate::scoring::ModelParts::of(model)?, &ScoreOptions::new(date)).await?;
    let batch = ctx.sql(&format!("SELECT * FROM users ORDER BY user_id LIMIT {users}")).await?.collect().await?;
    let batch = arrow::compute::concat_batches(&batch[0].schema(), &batch)?;
    let encoded = encode_users(&model.spec, "users", &batch)?;
    let mut follows = crate::scoring::follows::FollowCache::default();
    let (rows, pairs) = eligible_pairs(&prepared, &mut follows, &batch, &encoded).await?;
    let (mut user_index, mut campaign_index, mut pair_values) =
        (Vec::<i64>::new(), Vec::<i64>::new(), Vec::<f32>::new());
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
