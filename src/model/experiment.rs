//! Runnable experiments on one world: the paper's ablation (AP relative to the
//! promotions-only baseline) and cold start (fine-tuning a trained model on a
//! few ad labels versus training from scratch on the same labels).

use super::dataset::{Dataset, Split};
use super::evaluate::{predict, stream_average_precision};
use super::network::TASKS;
use super::train::{Recipe, TrainOptions, train};
use super::{Model, ModelError};
use crate::contract::Channel;

/// The paper's setups. The first is the baseline (A) the others are compared
/// with: promotions data, the promotion-stream head and the ancillary heads.
pub fn ablation_recipes() -> Vec<Recipe> {
    let recipe = |name: &str, promotions, ads, heads: &[usize]| Recipe {
        name: name.to_string(),
        promotions,
        ads,
        heads: heads.to_vec(),
    };
    vec![
        recipe("A: promotions-only baseline", true, false, &[0, 2, 3, 4]),
        recipe("promotion-stream head only", true, false, &[0]),
        recipe("ad-stream head only (ads data)", false, true, &[1]),
        recipe("ad-stream + ancillary heads", false, true, &[1, 2, 3, 4]),
        Recipe::joint(),
    ]
}

/// Test AP of a model's stream prediction on each channel: the channel's own
/// stream head when the recipe trained it, otherwise the other stream head
/// (as a production model trained on one channel is applied to the other).
pub fn channel_aps(model: &Model, recipe: &Recipe, data: &Dataset, rows: &[i64]) -> [f64; 2] {
    let predictions = predict(&model.network, &data.inputs, rows);
    [Channel::Promotion, Channel::Ad].map(|channel| {
        let own = crate::contract::stream_task(channel);
        let head = if recipe.heads.contains(&own) { own } else { 1 - own };
        stream_average_precision(&predictions, data, rows, channel, head).unwrap_or(f64::NAN)
    })
}

/// Mean and sample standard deviation.
pub fn mean_and_spread(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = if values.len() > 1 { values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    (mean, var.sqrt())
}

/// Per recipe, per seed: test AP on promotions and on ads.
pub struct AblationResult {
    pub recipes: Vec<Recipe>,
    pub seeds: Vec<u64>,
    /// `[recipe][seed] = [promotions AP, ads AP]`.
    pub aps: Vec<Vec<[f64; 2]>>,
}

pub fn ablation(
    data: &Dataset,
    split: &Split,
    base: &TrainOptions,
    seeds: &[u64],
) -> Result<AblationResult, ModelError> {
    let recipes = ablation_recipes();
    let mut aps = vec![Vec::new(); recipes.len()];
    for &seed in seeds {
        for (r, recipe) in recipes.iter().enumerate() {
            let options = TrainOptions { seed, recipe: recipe.clone(), ..base.clone() };
            let (model, report) = train(data, split, &options, None)?;
            let result = channel_aps(&model, recipe, data, &split.test);
            tracing::info!(
                recipe = %recipe.name, seed, promotions_ap = result[0], ads_ap = result[1],
                epochs = report.epochs.len(), seconds = report.seconds, "ablation run"
            );
            aps[r].push(result);
        }
    }
    Ok(AblationResult { recipes, seeds: seeds.to_vec(), aps })
}

impl AblationResult {
    /// The paper's table: per setup, AP change relative to the baseline of the
    /// same seed (mean ± spread over seeds), and the absolute APs.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<34} {:>18} {:>18} {:>16} {:>16}\n",
            "setup", "promotions AP vs A", "ads AP vs A", "promotions AP", "ads AP"
        );
        let baseline = &self.aps[0];
        for (recipe, runs) in self.recipes.iter().zip(&self.aps) {
            let mut cells = Vec::new();
            for channel in 0..2 {
                let relative: Vec<f64> =
                    runs.iter().zip(baseline).map(|(run, base)| 100.0 * (run[channel] / base[channel] - 1.0)).collect();
                let (mean, spread) = mean_and_spread(&relative);
                cells.push(format!("{mean:+.1}% ± {spread:.1}"));
            }
            for channel in 0..2 {
                let absolute: Vec<f64> = runs.iter().map(|run| run[channel]).collect();
                let (mean, spread) = mean_and_spread(&absolute);
                cells.push(format!("{mean:.4} ± {spread:.4}"));
            }
            out +=
                &format!("{:<34} {:>18} {:>18} {:>16} {:>16}\n", recipe.name, cells[0], cells[1], cells[2], cells[3]);
        }
        out += &format!("seeds: {:?}; spread is the standard deviation over seeds\n", self.seeds);
        out
    }
}

/// Options for one cold-start run on `budget` labelled impressions: small
/// budgets get smaller batches and more epochs so every run takes a few
/// hundred optimiser steps at least.
pub fn budget_options(base: &TrainOptions, budget: usize) -> TrainOptions {
    let batch_size = (budget / 8).clamp(64, base.batch_size);
    let batches = budget.div_ceil(batch_size);
    TrainOptions {
        batch_size,
        label_budget: Some(budget),
        max_epochs: (400 / batches).clamp(base.max_epochs, 100),
        patience: base.patience.max(3),
        ..base.clone()
    }
}

/// One line of the cold-start table: ads test AP for a label budget.
pub struct ColdStartRow {
    pub budget: usize,
    pub scratch: f64,
    pub frozen_encoder: f64,
    pub slow_encoder: f64,
}

/// Cold start of the ads objective: a model trained on promotions only (the
/// baseline A) is fine-tuned on `budget` ad impressions, its `ad_stream` tower
/// trained afresh, with the encoder frozen or at a tenth of the learning rate;
/// compared with a model trained from scratch on the same impressions. Also
/// returns the zero-shot AP (the promotions model applied to ads as is).
pub fn cold_start(
    data: &Dataset,
    split: &Split,
    base: &TrainOptions,
    budgets: &[usize],
) -> Result<(f64, Vec<ColdStartRow>), ModelError> {
    let recipes = ablation_recipes();
    let promotions = &recipes[0];
    let (pretrained, _) = train(data, split, &TrainOptions { recipe: promotions.clone(), ..base.clone() }, None)?;
    let zero_shot = channel_aps(&pretrained, promotions, data, &split.test)[1];
    let ads = Recipe { name: "ad-stream head (ads data)".into(), promotions: false, ads: true, heads: vec![1] };
    let mut rows = Vec::new();
    for &budget in budgets {
        let options = TrainOptions { recipe: ads.clone(), ..budget_options(base, budget) };
        let ap = |model: &Model| channel_aps(model, &ads, data, &split.test)[1];
        let (scratch, _) = train(data, split, &options, None)?;
        let mut results = [0.0; 2];
        for (slot, scale) in [(0, 0.0), (1, 0.1)] {
            let start = pretrained.copy()?;
            start.network.reset_tower(1);
            let (tuned, _) =
                train(data, split, &TrainOptions { encoder_lr_scale: scale, ..options.clone() }, Some(&start))?;
            results[slot] = ap(&tuned);
        }
        tracing::info!(budget, scratch = ap(&scratch), frozen = results[0], slow = results[1], "cold start");
        rows.push(ColdStartRow { budget, scratch: ap(&scratch), frozen_encoder: results[0], slow_encoder: results[1] });
    }
    Ok((zero_shot, rows))
}

/// The cold-start table.
pub fn cold_start_table(zero_shot: f64, rows: &[ColdStartRow]) -> String {
    let mut out = format!("ads test AP of the {} head; zero-shot (promotions model as is): {zero_shot:.4}\n", TASKS[1]);
    out += &format!("{:>10} {:>10} {:>16} {:>16}\n", "labels", "scratch", "frozen encoder", "slow encoder");
    for row in rows {
        out += &format!(
            "{:>10} {:>10.4} {:>16.4} {:>16.4}\n",
            row.budget, row.scratch, row.frozen_encoder, row.slow_encoder
        );
    }
    out
}
