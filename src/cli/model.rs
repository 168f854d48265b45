//! `train`, `evaluate`, `finetune`, `experiment` and `info`: the model.

use crate::Error;
use crate::ab::grid::{GridOptions, GridResult, run_grid};
use crate::contract::{Channel, Task};
use crate::model::evaluate::Evaluation;
use crate::model::fused::Precision;
use crate::model::train::{FAIR_STEPS_PER_EPOCH, TrainOptions};
use crate::model::workflow::{
    Finetune, Source, evaluate_saved, evaluate_saved_in, finetune, load_split, train_and_save,
};
use crate::model::{experiment, probe_libtorch};
use crate::world::WorldConfig;
use clap::{Args, Subcommand};

use super::{distinct, location, output, output_file};

#[derive(Subcommand)]
pub enum Command {
    /// Train the multi-task model on a world's impression logs; writes a model artifact.
    Train {
        /// Root of the world (tables as `generate` writes them).
        #[arg(long)]
        data: String,
        /// Where to write the model artifact directory.
        #[arg(long)]
        out: String,
        #[command(flatten)]
        training: TrainingArgs,
    },
    /// AP and ROC-AUC per task, channel and stream tier on the test days.
    Evaluate {
        /// The world whose logs to read (a generated world or a warehouse export).
        #[arg(long)]
        data: String,
        /// The model artifact directory.
        #[arg(long)]
        model: String,
        /// Also write the metrics as JSON to this local file.
        #[arg(long)]
        json: Option<std::path::PathBuf>,
        /// Also write the model report (precision-recall, calibration, tiers) to this HTML file.
        #[arg(long)]
        report: Option<String>,
        /// Also evaluate with the scoring kernel in this precision (bf16) and
        /// print its AP next to fp32's.
        #[arg(long)]
        precision: Option<Precision>,
    },
    /// Fine-tune a trained model's head on (a few) labels of one channel.
    Finetune {
        /// The world whose logs to read (a generated world or a warehouse export).
        #[arg(long)]
        data: String,
        /// The trained model artifact to start from.
        #[arg(long)]
        model: String,
        /// Where to write the fine-tuned model artifact.
        #[arg(long)]
        out: String,
        /// The head to train: promo_stream, ad_stream, click, like or follow.
        #[arg(long, default_value = "ad_stream")]
        task: Task,
        /// Impressions to learn from: ad, promotion or both.
        #[arg(long, default_value = "ad")]
        source: Source,
        /// Train on at most this many labelled impressions.
        #[arg(long)]
        labels: Option<usize>,
        /// Encoder learning rate relative to the head's; 0 freezes it.
        #[arg(long, default_value_t = 0.1)]
        encoder_lr_scale: f64,
        /// Re-initialise the head first (a new objective) instead of refining it.
        #[arg(long)]
        new_head: bool,
        #[command(flatten)]
        training: TrainingArgs,
    },
    /// Experiments that print the paper's tables.
    Experiment {
        #[command(subcommand)]
        experiment: Experiment,
    },
    /// Print versions and what libtorch sees (threads, CUDA).
    Info,
}

#[derive(Subcommand)]
pub enum Experiment {
    /// The paper's ablation: AP relative to the promotions-only baseline.
    Ablation {
        /// The world whose logs to read (a generated world or a warehouse export).
        #[arg(long)]
        data: String,
        /// Training seeds; each trains every variant once, and the table shows mean and spread.
        #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
        seeds: Vec<u64>,
        #[command(flatten)]
        training: TrainingArgs,
    },
    /// The paper's online test simulated on the world's truth: a budget-split
    /// A/B of the promotions-only baseline (A) and the five-task model (B).
    Ab {
        /// A generated world (its truth is rebuilt from world.json).
        #[arg(long)]
        data: String,
        /// Training seeds: each retrains both models and redraws the user split.
        #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
        seeds: Vec<u64>,
        /// Also run on the world regenerated with each of these seeds.
        #[arg(long, value_delimiter = ',')]
        world_seeds: Vec<u64>,
        /// Also write every figure as JSON to this local file.
        #[arg(long)]
        json: Option<std::path::PathBuf>,
        #[command(flatten)]
        training: TrainingArgs,
    },
    /// Cold start: fine-tune the promotions model on few ad labels vs from scratch.
    ColdStart {
        /// The world whose logs to read (a generated world or a warehouse export).
        #[arg(long)]
        data: String,
        /// Ad labels to fine-tune on, one run per count.
        #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
        labels: Vec<usize>,
        #[command(flatten)]
        training: TrainingArgs,
    },
    /// The paper's regime as one fixed grid (docs/ab.md): B vs A against
    /// promotion labels, the one-change worlds, the version 2 world and the
    /// ablation; writes grid.json (a rerun resumes it) and grid.html.
    Regime {
        /// Where the worlds, grid.json and grid.html go (a local directory or URL).
        #[arg(long)]
        out: String,
        /// Users of every world of the grid.
        #[arg(long, default_value_t = WorldConfig::default().users)]
        users: u64,
        /// Campaigns of every world.
        #[arg(long, default_value_t = WorldConfig::default().campaigns)]
        campaigns: u64,
        /// Impression log rows of every world.
        #[arg(long, default_value_t = WorldConfig::default().impressions)]
        impressions: u64,
        /// The default world's seed; --world-seeds adds more worlds of the curve.
        #[arg(long, default_value_t = WorldConfig::default().seed)]
        world_seed: u64,
        /// Further seeds of the default world, at every promotion-label level.
        #[arg(long, value_delimiter = ',', default_value = "8,9")]
        world_seeds: Vec<u64>,
        /// Training seeds, at every point.
        #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
        seeds: Vec<u64>,
        #[command(flatten)]
        training: TrainingArgs,
    },
}

impl Command {
    pub async fn run(self) -> Result<(), Error> {
        match self {
            Command::Train { data, out, training } => {
                let (data, out) = (location(&data)?, output("--out", &out)?);
                let manifest = train_and_save(&data, &out, &training.options()?, None).await?;
                let report = &manifest.training.report;
                eprintln!(
                    "trained {} in {:.1}s ({:.0} examples/s), best epoch {}/{}, validation stream AP {:.4}",
                    manifest.model_version,
                    report.seconds,
                    report.examples_per_second,
                    report.best_epoch,
                    report.epochs.len(),
                    report.validation_stream_ap
                );
                println!("{out}");
            }
            Command::Evaluate { data, model, json, report, precision } => {
                if let Some(path) = &json {
                    output_file("--json", path)?;
                }
                let report = report.map(|out| output("--report", &out).map(|location| (out, location))).transpose()?;
                let (data, model_url) = (location(&data)?, location(&model)?);
                let (manifest, evaluation, diagnostics) = evaluate_saved(&data, &model_url).await?;
                println!(
                    "model {} on the test days of {data}: {} impressions",
                    manifest.model_version, evaluation.test_examples
                );
                print!("{}", evaluation.table());
                if let Some(precision) = precision {
                    let other = evaluate_saved_in(&data, &model_url, precision).await?;
                    print!("{}", compare_ap(&evaluation, &other, precision));
                }
                if let Some(path) = json {
                    let text = serde_json::to_vec_pretty(&evaluation).expect("metrics serialise");
                    std::fs::write(&path, text)
                        .map_err(|source| Error::Write { path: path.display().to_string(), source })?;
                }
                if let Some((out, location)) = report {
                    let html = crate::model::report::render(&manifest, data.url(), &evaluation, &diagnostics)
                        .map_err(crate::job::report::ReportError::from)?;
                    location.write(html).await?;
                    eprintln!("model report written to {out}");
                }
            }
            Command::Finetune { data, model, out, task, source, labels, encoder_lr_scale, new_head, training } => {
                if labels.is_some() && training.promotion_labels.is_some() {
                    return Err(Error::Usage("--labels and --promotion-labels both cap the labels: give one".into()));
                }
                let recipe = Finetune { task, source, labels, encoder_lr_scale, new_head };
                let (data, model, out) = (location(&data)?, location(&model)?, output("--out", &out)?);
                let (manifest, base) = finetune(&data, &model, &out, &recipe, &training.options()?).await?;
                eprintln!(
                    "fine-tuned {} from {base}: validation stream AP {:.4}",
                    manifest.model_version, manifest.training.report.validation_stream_ap
                );
                println!("{out}");
            }
            Command::Experiment { experiment } => experiment.run().await?,
            Command::Info => {
                println!("audience {}", env!("CARGO_PKG_VERSION"));
                let probe = probe_libtorch();
                println!(
                    "libtorch: cpu ok (2x2 matmul sum {}), {} intra-op threads",
                    probe.matmul_sum, probe.intra_op_threads
                );
                println!("cuda: {}", if probe.cuda_available { "available" } else { "not available (CPU only)" });
            }
        }
        Ok(())
    }
}

impl Experiment {
    async fn run(self) -> Result<(), Error> {
        match self {
            Experiment::Ablation { data, seeds, training } => {
                distinct("--seeds", &seeds)?;
                let options = training.fair_options()?;
                let (dataset, split) = load_split(&location(&data)?, None, &options).await?;
                print!("{}", experiment::ablation(&dataset, &split, &options, &seeds)?.table());
            }
            Experiment::Ab { data, seeds, world_seeds, json, training } => {
                if seeds.is_empty() {
                    return Err(Error::Usage("--seeds needs at least one seed".into()));
                }
                distinct("--seeds", &seeds)?;
                distinct("--world-seeds", &world_seeds)?;
                if let Some(path) = &json {
                    output_file("--json", path)?;
                }
                let options = crate::ab::AbOptions { seeds, world_seeds, training: training.fair_options()? };
                let result = crate::ab::run(&location(&data)?, &options).await?;
                print!("{}", result.table());
                if let Some(path) = json {
                    let text = serde_json::to_vec_pretty(&result.json()).expect("figures serialise");
                    std::fs::write(&path, text)
                        .map_err(|source| Error::Write { path: path.display().to_string(), source })?;
                }
            }
            Experiment::ColdStart { data, labels, training } => {
                distinct("--labels", &labels)?;
                let options = training.options()?;
                let (dataset, split) = load_split(&location(&data)?, None, &options).await?;
                let (zero_shot, rows) = experiment::cold_start(&dataset, &split, &options, &labels)?;
                print!("{}", experiment::cold_start_table(zero_shot, &rows));
            }
            Experiment::Regime { out, users, campaigns, impressions, world_seed, world_seeds, seeds, training } => {
                distinct("--seeds", &seeds)?;
                distinct("--world-seeds", &world_seeds)?;
                if seeds.is_empty() || world_seeds.contains(&world_seed) {
                    return Err(Error::Usage(
                        "--seeds needs a seed, and --world-seeds may not repeat --world-seed".into(),
                    ));
                }
                if training.promotion_labels.is_some() {
                    return Err(Error::Usage("the grid sets its own promotion labels: drop --promotion-labels".into()));
                }
                let world = WorldConfig { users, campaigns, impressions, seed: world_seed, ..WorldConfig::default() };
                let options = GridOptions { world, world_seeds, seeds, training: training.fair_options()? };
                let root = output("--out", &out)?;
                let result = run_grid(&root, &options).await?;
                crate::ab::grid_page::write(&root, &result).await?;
                print!("{}", grid_summary(&result));
                println!("{}", location(&out)?.join("grid.html"));
            }
        }
        Ok(())
    }
}

/// Training settings shared by `train`, `finetune` and the experiments.
#[derive(Args)]
pub struct TrainingArgs {
    /// Seed of the weights' initialisation and the batch order.
    #[arg(long, default_value_t = TrainOptions::default().seed)]
    seed: u64,
    /// Most epochs (early stopping usually ends sooner).
    #[arg(long, default_value_t = TrainOptions::default().max_epochs)]
    epochs: usize,
    /// Impressions per batch (half promotions, half ads where both train).
    #[arg(long, default_value_t = TrainOptions::default().batch_size)]
    batch_size: usize,
    /// Adam's learning rate.
    #[arg(long, default_value_t = TrainOptions::default().learning_rate)]
    learning_rate: f64,
    /// Newest days held out for evaluation.
    #[arg(long, default_value_t = TrainOptions::default().test_days)]
    test_days: u32,
    /// Days before the test days used for early stopping.
    #[arg(long, default_value_t = TrainOptions::default().validation_days)]
    validation_days: u32,
    /// Train on this many promotion impressions only: drawn once per seed, the
    /// same rows for every model; ad impressions are all kept.
    #[arg(long)]
    promotion_labels: Option<usize>,
    /// Optimiser steps per epoch [default: one pass over the training rows;
    /// for the ablation and the A/B, 700, the same budget for every model].
    #[arg(long)]
    steps_per_epoch: Option<usize>,
}

impl TrainingArgs {
    fn options(&self) -> Result<TrainOptions, Error> {
        // Upper ends past which training would exhaust memory (a batch's
        // activations) or never end, rather than be refused by name.
        if !(1..=10_000).contains(&self.epochs)
            || !(2..=1 << 20).contains(&self.batch_size)
            || self.learning_rate.is_nan()
            || self.learning_rate <= 0.0
            || self.learning_rate > 10.0
        {
            return Err(Error::Usage(
                "--epochs must be 1–10000, --batch-size 2–1048576 and --learning-rate in (0, 10]".into(),
            ));
        }
        if self.promotion_labels == Some(0) || self.steps_per_epoch == Some(0) {
            return Err(Error::Usage("--promotion-labels and --steps-per-epoch must be at least 1".into()));
        }
        Ok(TrainOptions {
            seed: self.seed,
            max_epochs: self.epochs,
            batch_size: self.batch_size,
            learning_rate: self.learning_rate,
            test_days: self.test_days,
            validation_days: self.validation_days,
            label_budget: self.promotion_labels,
            label_source: self.promotion_labels.map(|_| Channel::Promotion),
            steps_per_epoch: self.steps_per_epoch,
            ..TrainOptions::default()
        })
    }

    /// The options of an experiment that compares models: every model gets
    /// the same budget of optimiser steps ([`FAIR_STEPS_PER_EPOCH`] unless
    /// `--steps-per-epoch` says otherwise).
    fn fair_options(&self) -> Result<TrainOptions, Error> {
        let options = self.options()?;
        Ok(TrainOptions { steps_per_epoch: options.steps_per_epoch.or(Some(FAIR_STEPS_PER_EPOCH)), ..options })
    }
}

/// AP per task head and channel (all tiers), fp32 next to `precision`, with
/// the relative difference.
fn compare_ap(fp32: &Evaluation, other: &Evaluation, precision: Precision) -> String {
    let mut out = format!("AP, the scoring kernel in {} vs fp32 (the plain forward pass):\n", precision.as_str());
    for (a, b) in fp32.metrics.iter().zip(&other.metrics).filter(|(a, _)| a.slice == "all") {
        if let (Some(x), Some(y)) = (a.ap, b.ap) {
            out += &format!(
                "  {:<13} {:<9} fp32 {x:.5}  {} {y:.5}  {:+.3}%\n",
                a.task,
                a.channel,
                precision.as_str(),
                100.0 * (y - x) / x
            );
        }
    }
    out
}

/// One line per grid point: B's change against A on ads and promotions.
fn grid_summary(grid: &GridResult) -> String {
    let mut out = String::new();
    for point in &grid.points {
        let change = |key: &str| {
            let v = &point.ab["b_vs_a"][key];
            match (v["mean"].as_f64(), v["low"].as_f64(), v["high"].as_f64()) {
                (Some(m), Some(l), Some(h)) => format!("{:+.1}% [{:+.1}, {:+.1}]", 100.0 * m, 100.0 * l, 100.0 * h),
                (Some(m), _, _) => format!("{:+.1}%", 100.0 * m),
                _ => "-".to_string(),
            }
        };
        out += &format!(
            "{}: ads i2s {}, eCPS {}; promotions i2s {}, eCPS {} ({:.0} s)\n",
            point.point.name,
            change("ads.overall.i2s"),
            change("ads.overall.ecps"),
            change("promotions.overall.i2s"),
            change("promotions.overall.ecps"),
            point.seconds
        );
    }
    out
}
