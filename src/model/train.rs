//! Training: masked binary cross-entropy over the five towers, source-balanced
//! mini-batches, Adam, early stopping on the validation AP of the stream tasks.
//!
//! The mask (docs/design.md §4, the paper's): promotion impressions train every
//! tower; ad impressions train every tower except the promotion towers. The only
//! promotion tower is `promo_stream`: click, like and follow are the same user
//! action whichever channel showed the podcast, so ads data may shape them, and
//! `ad_stream` learns from streams after promotions too. A [`Recipe`] narrows
//! the data and heads for the ablation and fine-tuning experiments.

use std::time::Instant;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::nn::OptimizerConfig;
use tch::{Kind, Reduction, Tensor, nn};

use super::dataset::{Dataset, Split};
use super::evaluate::{predict, stream_average_precision};
use super::network::{Architecture, ENCODER_GROUP, TASKS, TOWER_GROUP};
use super::{Model, ModelError};
use crate::contract::Channel;
use crate::progress::Progress;

/// Optimiser steps per epoch when models are compared (the ablation, the A/B):
/// every model gets the same budget, `max_epochs` × 700 steps, and stops
/// early by patience on its own validation AP. 700 is one pass over the
/// default world's training rows at the default batch of 1,024 (714,288 rows),
/// the budget the joint model had before; fixed before any comparison ran.
pub const FAIR_STEPS_PER_EPOCH: usize = 700;

/// Tag of the label budget's random stream (the rows kept), apart from the
/// training's own stream (batches).
const LABEL_STREAM: u64 = 0x4C41_4245_4C53; // "LABELS"

/// Tasks whose towers only promotion impressions may train.
pub const PROMOTION_TASKS: [usize; 1] = [0];

/// Which impressions and which heads a model is trained on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    pub name: String,
    pub promotions: bool,
    pub ads: bool,
    /// Indices into [`TASKS`] of the heads that get a loss.
    pub heads: Vec<usize>,
}

impl Recipe {
    /// The production model: both sources, all five heads.
    pub fn joint() -> Recipe {
        Recipe {
            name: "promotions + ads, 5-task".into(),
            promotions: true,
            ads: true,
            heads: (0..TASKS.len()).collect(),
        }
    }

    fn trains(&self, task: usize, is_ad: bool) -> bool {
        self.heads.contains(&task) && !(is_ad && PROMOTION_TASKS.contains(&task))
    }

    fn uses(&self, is_ad: bool) -> bool {
        if is_ad { self.ads } else { self.promotions }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainOptions {
    pub seed: u64,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub max_epochs: usize,
    /// Epochs without a better validation AP before stopping.
    pub patience: usize,
    /// The temporal split: the newest `test_days` days are held out for
    /// evaluation, the `validation_days` before them for early stopping.
    pub validation_days: u32,
    pub test_days: u32,
    pub recipe: Recipe,
    pub architecture: Architecture,
    /// Train on at most this many training impressions: of `label_source`
    /// only (the other source's rows are all kept), or of all the recipe's
    /// rows when it is `None`. The rows are drawn from a stream of their own
    /// (seeded by `seed`), so recipes that use the same source get the same rows.
    pub label_budget: Option<usize>,
    #[serde(default)]
    pub label_source: Option<Channel>,
    /// Optimiser steps per epoch; `None`: one pass over the training rows.
    /// A fixed number gives every recipe the same budget of steps whatever
    /// its rows (the A/B and the ablation), a budget of the promotion rows
    /// repeating as often as the steps need them.
    #[serde(default)]
    pub steps_per_epoch: Option<usize>,
    /// When fine-tuning: learning rate of the embeddings and encoder relative to
    /// the towers; 0 freezes them (batch norm statistics included).
    pub encoder_lr_scale: f64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            seed: 1,
            batch_size: 1024,
            learning_rate: 2e-3,
            max_epochs: 8,
            patience: 2,
            validation_days: 4,
            test_days: 4,
            recipe: Recipe::joint(),
            architecture: Architecture::default(),
            label_budget: None,
            label_source: None,
            steps_per_epoch: None,
            encoder_lr_scale: 1.0,
        }
    }
}

/// What happened during training, kept in `model.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainingReport {
    pub options: TrainOptions,
    pub train_examples: usize,
    /// The training rows by source (after the recipe and the label budget).
    #[serde(default)]
    pub train_promotions: usize,
    #[serde(default)]
    pub train_ads: usize,
    pub epochs: Vec<EpochReport>,
    pub best_epoch: usize,
    /// Optimiser steps taken (every epoch's, including those after the best).
    #[serde(default)]
    pub steps: usize,
    /// Mean validation AP of the stream heads at the best epoch.
    pub validation_stream_ap: f64,
    pub seconds: f64,
    pub examples_per_second: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochReport {
    pub epoch: usize,
    pub loss: f64,
    pub validation_stream_ap: f64,
}

/// Trains a model on the training rows of `split`. With `start`, fine-tunes a
/// copy of that model (its feature normalisation is kept); otherwise fits the
/// normalisation on the training rows and starts from random weights.
pub fn train(
    data: &Dataset,
    split: &Split,
    options: &TrainOptions,
    start: Option<&Model>,
) -> Result<(Model, TrainingReport), ModelError> {
    tch::manual_seed(options.seed as i64);
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    let recipe = &options.recipe;
    let rows = training_rows(&data.is_ad, split, options)?;
    let model = match start {
        Some(trained) => trained.copy()?,
        None => fresh_model(data, &rows, options),
    };
    let (targets, mask) = targets_and_mask(data, recipe);
    let mut optimizer = nn::Adam::default().build(&model.vs, options.learning_rate)?;
    optimizer.set_lr_group(ENCODER_GROUP, options.learning_rate * options.encoder_lr_scale);
    optimizer.set_lr_group(TOWER_GROUP, options.learning_rate);
    let train_encoder = options.encoder_lr_scale > 0.0;

    let (promotions, ads): (Vec<i64>, Vec<i64>) = rows.iter().partition(|&&i| !data.is_ad[i as usize]);
    let mut sampler = BalancedSampler::new(promotions, ads);
    let batches_per_epoch = options.steps_per_epoch.unwrap_or_else(|| rows.len().div_ceil(options.batch_size));
    let mut progress = Progress::new("training", (batches_per_epoch * options.max_epochs) as u64);
    let mut report = TrainingReport {
        options: options.clone(),
        train_examples: rows.len(),
        train_promotions: rows.iter().filter(|&&i| !data.is_ad[i as usize]).count(),
        train_ads: rows.iter().filter(|&&i| data.is_ad[i as usize]).count(),
        epochs: Vec::new(),
        best_epoch: 0,
        steps: 0,
        validation_stream_ap: f64::NEG_INFINITY,
        seconds: 0.0,
        examples_per_second: 0.0,
    };
    let mut best_weights = None;
    let (mut trained_examples, mut train_seconds) = (0usize, 0.0);
    for epoch in 1..=options.max_epochs {
        let started = Instant::now();
        let mut loss_sum = 0.0;
        for _ in 0..batches_per_epoch {
            let index = Tensor::from_slice(&sampler.next(options.batch_size, &mut rng));
            let batch = data.inputs.select(&index);
            let logits = model.network.forward_t(&batch, train_encoder);
            let loss = masked_bce(&logits, &targets.index_select(0, &index), &mask.index_select(0, &index));
            optimizer.backward_step(&loss);
            loss_sum += loss.double_value(&[]);
            trained_examples += index.size()[0] as usize;
            report.steps += 1;
            progress.inc(1);
        }
        train_seconds += started.elapsed().as_secs_f64();
        let loss = loss_sum / batches_per_epoch as f64;
        let validation = validation_stream_ap(&model, data, &split.validation, recipe);
        progress.message(format!(
            "loss {loss:.4} val AP {validation:.4} {:.0} ex/s",
            trained_examples as f64 / train_seconds
        ));
        tracing::info!(epoch, loss, validation_stream_ap = validation, "epoch");
        report.epochs.push(EpochReport { epoch, loss, validation_stream_ap: validation });
        if validation > report.validation_stream_ap {
            report.validation_stream_ap = validation;
            report.best_epoch = epoch;
            best_weights = Some(model.weights()?);
        } else if epoch - report.best_epoch >= options.patience {
            break;
        }
    }
    progress.finish();
    let mut model = model;
    if let Some(weights) = best_weights {
        model.load_weights(&weights)?;
    }
    report.seconds = train_seconds;
    report.examples_per_second = trained_examples as f64 / train_seconds.max(1e-9);
    Ok((model, report))
}

/// The training rows the recipe uses, cut to the label budget (a random
/// subset, in row order) when one is set: see [`TrainOptions::label_budget`].
fn training_rows(is_ad: &[bool], split: &Split, options: &TrainOptions) -> Result<Vec<i64>, ModelError> {
    let recipe = &options.recipe;
    let budgeted = |i: i64| match options.label_source {
        Some(channel) => is_ad[i as usize] == (channel == Channel::Ad),
        None => recipe.uses(is_ad[i as usize]),
    };
    // A source's budget is drawn from every training row of that source,
    // before the recipe narrows them, so the draw is the same for every recipe.
    let mut drawn: Vec<i64> = split.train.iter().copied().filter(|&i| budgeted(i)).collect();
    let kept: Option<std::collections::HashSet<i64>> =
        options.label_budget.filter(|&b| b < drawn.len()).map(|budget| {
            let mut rng = ChaCha8Rng::seed_from_u64(crate::hashing::splitmix64(options.seed ^ LABEL_STREAM));
            drawn.shuffle(&mut rng);
            drawn.into_iter().take(budget).collect()
        });
    let kept = |i: i64| !budgeted(i) || kept.as_ref().is_none_or(|k| k.contains(&i));
    let rows: Vec<i64> = split.train.iter().copied().filter(|&i| recipe.uses(is_ad[i as usize]) && kept(i)).collect();
    if rows.is_empty() {
        return Err(ModelError::Invalid(format!("recipe {:?} has no training impressions", recipe.name)));
    }
    Ok(rows)
}

/// A model with random weights and the feature normalisation fitted on `rows`.
fn fresh_model(data: &Dataset, rows: &[i64], options: &TrainOptions) -> Model {
    let mut spec = super::features::FeatureSpec::default();
    let pick = |values: &[f32], width: usize| -> Vec<f32> {
        rows.iter().flat_map(|&i| &values[i as usize * width..(i as usize + 1) * width]).copied().collect()
    };
    for (side, raw) in [&mut spec.user, &mut spec.campaign, &mut spec.pair].into_iter().zip(&data.raw) {
        let width = side.dense.len();
        super::features::FeatureSpec::fit_normalisation(side, &pick(raw, width));
    }
    Model::new(spec, options.architecture.clone())
}

/// `[n, 5]` targets (the stream label feeds both stream heads) and the mask of
/// which (row, task) pairs the recipe trains.
fn targets_and_mask(data: &Dataset, recipe: &Recipe) -> (Tensor, Tensor) {
    let targets = data.labels.index_select(1, &Tensor::from_slice(&[0i64, 0, 1, 2, 3]));
    let mask: Vec<f32> = data
        .is_ad
        .iter()
        .flat_map(|&is_ad| (0..TASKS.len()).map(move |t| recipe.trains(t, is_ad) as u8 as f32))
        .collect();
    (targets, Tensor::from_slice(&mask).view([data.len() as i64, TASKS.len() as i64]))
}

/// Sum over tasks of the masked mean binary cross-entropy (task weights 1).
fn masked_bce(logits: &Tensor, targets: &Tensor, mask: &Tensor) -> Tensor {
    let loss = logits.binary_cross_entropy_with_logits::<Tensor>(targets, None, None, Reduction::None);
    let per_task = (loss * mask).sum_dim_intlist(0, false, Kind::Float)
        / mask.sum_dim_intlist(0, false, Kind::Float).clamp_min(1.0);
    per_task.sum(Kind::Float)
}

/// Mean validation AP of the recipe's stream heads, each on its own channel.
fn validation_stream_ap(model: &Model, data: &Dataset, rows: &[i64], recipe: &Recipe) -> f64 {
    let rows: Vec<i64> = rows.iter().copied().filter(|&i| recipe.uses(data.is_ad[i as usize])).collect();
    let rows = rows.as_slice();
    let predictions = predict(&model.network, &data.inputs, rows);
    let aps: Vec<f64> = [(0, Channel::Promotion), (1, Channel::Ad)]
        .into_iter()
        .filter(|(head, channel)| recipe.heads.contains(head) && recipe.uses(*channel == Channel::Ad))
        .filter_map(|(head, channel)| stream_average_precision(&predictions, data, rows, channel, head))
        .collect();
    if aps.is_empty() { 0.0 } else { aps.iter().sum::<f64>() / aps.len() as f64 }
}

/// Mini-batches of half promotion and half ad impressions (when both are
/// used), each source reshuffled whenever it is used up.
struct BalancedSampler {
    sources: Vec<(Vec<i64>, usize)>,
}

impl BalancedSampler {
    fn new(promotions: Vec<i64>, ads: Vec<i64>) -> BalancedSampler {
        BalancedSampler {
            sources: [promotions, ads].into_iter().filter(|s| !s.is_empty()).map(|s| (s, usize::MAX)).collect(),
        }
    }

    fn next(&mut self, batch_size: usize, rng: &mut ChaCha8Rng) -> Vec<i64> {
        let share = batch_size.div_ceil(self.sources.len());
        let mut batch = Vec::with_capacity(batch_size);
        for (rows, cursor) in &mut self.sources {
            for _ in 0..share.min(rows.len()) {
                if *cursor >= rows.len() {
                    rows.shuffle(rng);
                    *cursor = 0;
                }
                batch.push(rows[*cursor]);
                *cursor += 1;
            }
        }
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_promotion_budget_gives_every_recipe_the_same_promotion_rows_and_keeps_every_ad() {
        // 1,000 training rows, every third an ad (334 ads, 666 promotions).
        let is_ad: Vec<bool> = (0..1000).map(|i| i % 3 == 0).collect();
        let split = Split { train: (0..1000).collect(), ..Split::default() };
        let budget =
            TrainOptions { label_budget: Some(100), label_source: Some(Channel::Promotion), ..TrainOptions::default() };
        let rows = |recipe: Recipe, seed: u64| {
            training_rows(&is_ad, &split, &TrainOptions { recipe, seed, ..budget.clone() }).unwrap()
        };
        let promotions = |rows: &[i64]| rows.iter().copied().filter(|&i| !is_ad[i as usize]).collect::<Vec<_>>();
        let baseline = Recipe { name: "A".into(), promotions: true, ads: false, heads: vec![0, 2, 3, 4] };
        let (a, b) = (rows(baseline.clone(), 1), rows(Recipe::joint(), 1));
        assert_eq!(promotions(&a).len(), 100);
        assert_eq!(promotions(&a), promotions(&b), "both arms train on the same promotion rows");
        assert_eq!(b.len(), 100 + 334, "every ad row is kept");
        assert_ne!(promotions(&rows(baseline, 2)), promotions(&a), "another seed draws other rows");
        // Without a source, the budget caps the recipe's own rows (fine-tuning, cold start).
        let capped = TrainOptions { label_budget: Some(50), recipe: Recipe::joint(), ..TrainOptions::default() };
        assert_eq!(training_rows(&is_ad, &split, &capped).unwrap().len(), 50);
    }

    #[test]
    fn ads_never_train_the_promotion_tower() {
        let joint = Recipe::joint();
        assert!(!joint.trains(0, true), "promo_stream on an ad impression");
        assert!(joint.trains(0, false));
        for (task, name) in TASKS.iter().enumerate().skip(1) {
            assert!(joint.trains(task, true) && joint.trains(task, false), "{name}");
        }
    }

    #[test]
    fn batches_are_half_promotions_half_ads() {
        let mut sampler = BalancedSampler::new((0..1000).collect(), (1000..1100).collect());
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let batch = sampler.next(64, &mut rng);
        assert_eq!(batch.len(), 64);
        assert_eq!(batch.iter().filter(|&&i| i >= 1000).count(), 32);
    }

    #[test]
    fn the_mask_removes_masked_tasks_from_the_loss() {
        let logits = Tensor::from_slice(&[5.0f32, -5.0]).view([1, 2]);
        let targets = Tensor::from_slice(&[0.0f32, 0.0]).view([1, 2]);
        let only_second = masked_bce(&logits, &targets, &Tensor::from_slice(&[0.0f32, 1.0]).view([1, 2]));
        let expected = (1.0f64 + 5f64.exp()).ln() - 5.0; // BCE of logit -5 against 0
        assert!((only_second.double_value(&[]) - expected).abs() < 1e-4);
    }
}
