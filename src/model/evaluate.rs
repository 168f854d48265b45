//! Offline evaluation on the test days: AP and ROC-AUC per task and channel, and
//! of the stream task per stream tier (8 tiers and "less-streamed").

use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::dataset::Dataset;
use super::fused::{Kernel, Precision, PrecisionError};
use super::metrics::{average_precision, roc_auc};
use super::network::{Inputs, Network, TASKS};
use crate::contract::{Channel, LESS_STREAMED_BELOW, TIER_BOUNDS, stream_tier, tier_label};

const PREDICT_BATCH: usize = 16_384;

/// Probabilities of every task for `rows` of `inputs`, row-major `[rows, 5]`.
pub fn predict(network: &Network, inputs: &Inputs, rows: &[i64]) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows.len() * TASKS.len());
    for chunk in rows.chunks(PREDICT_BATCH) {
        let batch = inputs.select(&Tensor::from_slice(chunk));
        let probabilities = network.predict(&batch).contiguous();
        out.extend(Vec::<f32>::try_from(probabilities.view([-1])).expect("float probabilities"));
    }
    out
}

/// As [`predict`], with the layers after the first in `precision` through the
/// scoring kernel ([`super::fused`]); the first layer in fp32, as scoring
/// computes it.
pub fn predict_in(
    network: &Network,
    inputs: &Inputs,
    rows: &[i64],
    precision: Precision,
) -> Result<Vec<f32>, PrecisionError> {
    let factorised = network.factorised();
    let mut kernel = Kernel::new(&factorised.layers(), precision)?;
    let mut out = Vec::with_capacity(rows.len() * TASKS.len());
    for chunk in rows.chunks(PREDICT_BATCH) {
        let first = factorised.first_layer(&inputs.select(&Tensor::from_slice(chunk))).contiguous();
        out.extend(kernel.all_heads(&Vec::<f32>::try_from(first.view([-1])).expect("float activations")));
    }
    Ok(out)
}

/// AP of `head` on the stream label of the `channel` impressions among `rows`.
pub fn stream_average_precision(
    predictions: &[f32],
    data: &Dataset,
    rows: &[i64],
    channel: Channel,
    head: usize,
) -> Option<f64> {
    let (scores, labels) = slice(predictions, data, rows, head, 0, |i| channel_of(data, i) == channel);
    average_precision(&scores, &labels)
}

pub(super) fn channel_of(data: &Dataset, row: usize) -> Channel {
    if data.is_ad[row] { Channel::Ad } else { Channel::Promotion }
}

/// Scores of `head` and values of label column `label` for the rows kept by `keep`.
pub(super) fn slice(
    predictions: &[f32],
    data: &Dataset,
    rows: &[i64],
    head: usize,
    label: usize,
    keep: impl Fn(usize) -> bool,
) -> (Vec<f32>, Vec<bool>) {
    let labels = data.label_column(label);
    rows.iter()
        .enumerate()
        .filter(|&(_, &row)| keep(row as usize))
        .map(|(k, &row)| (predictions[k * TASKS.len() + head], labels[row as usize]))
        .unzip()
}

/// One line of the evaluation table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Metric {
    pub task: String,
    pub channel: String,
    /// "all", a tier "tier N (lo-hi streams)", or "less-streamed".
    pub slice: String,
    pub examples: usize,
    pub positives: usize,
    pub ap: Option<f64>,
    pub roc_auc: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Evaluation {
    pub test_examples: usize,
    pub metrics: Vec<Metric>,
}

fn metric(task: &str, channel: Channel, slice_name: String, scores: &[f32], labels: &[bool]) -> Metric {
    Metric {
        task: task.to_string(),
        channel: channel.as_str().to_string(),
        slice: slice_name,
        examples: scores.len(),
        positives: labels.iter().filter(|&&l| l).count(),
        ap: average_precision(scores, labels),
        roc_auc: roc_auc(scores, labels),
    }
}

/// Each task head, the label column it predicts, and the channels it is evaluated on.
pub(super) const HEAD_LABELS: [(usize, usize, &[Channel]); 5] = [
    (0, 0, &[Channel::Promotion]),
    (1, 0, &[Channel::Ad]),
    (2, 1, &[Channel::Promotion, Channel::Ad]),
    (3, 2, &[Channel::Promotion, Channel::Ad]),
    (4, 3, &[Channel::Promotion, Channel::Ad]),
];

/// Evaluates `network` on `rows` (usually the test split).
pub fn evaluate(network: &Network, data: &Dataset, rows: &[i64]) -> Evaluation {
    evaluate_predictions(&predict(network, &data.inputs, rows), data, rows)
}

/// The evaluation of `predictions` (as [`predict`] returns them) of `rows`.
pub fn evaluate_predictions(predictions: &[f32], data: &Dataset, rows: &[i64]) -> Evaluation {
    let mut metrics = Vec::new();
    for (head, label, channels) in HEAD_LABELS {
        for &channel in channels {
            let (scores, labels) = slice(predictions, data, rows, head, label, |i| channel_of(data, i) == channel);
            metrics.push(metric(TASKS[head], channel, "all".into(), &scores, &labels));
        }
    }
    let less_streamed_tiers = TIER_BOUNDS.iter().take_while(|&&b| b <= LESS_STREAMED_BELOW).count();
    debug_assert_eq!(stream_tier(LESS_STREAMED_BELOW - 1), less_streamed_tiers - 1);
    for channel in [Channel::Promotion, Channel::Ad] {
        let head = crate::contract::stream_task(channel);
        for tier in 0..=TIER_BOUNDS.len() {
            let keep = |i: usize| channel_of(data, i) == channel && data.tier[i] as usize == tier;
            let (scores, labels) = slice(predictions, data, rows, head, 0, keep);
            metrics.push(metric(TASKS[head], channel, tier_label(tier), &scores, &labels));
        }
        let keep = |i: usize| channel_of(data, i) == channel && (data.tier[i] as usize) < less_streamed_tiers;
        let (scores, labels) = slice(predictions, data, rows, head, 0, keep);
        metrics.push(metric(
            TASKS[head],
            channel,
            format!("less-streamed (< {LESS_STREAMED_BELOW})"),
            &scores,
            &labels,
        ));
    }
    Evaluation { test_examples: rows.len(), metrics }
}

impl Evaluation {
    /// The table printed by `audience evaluate`.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<13} {:<10} {:<26} {:>9} {:>9} {:>7} {:>7}\n",
            "task", "channel", "slice", "examples", "positives", "AP", "AUC"
        );
        let number = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
        for m in &self.metrics {
            out += &format!(
                "{:<13} {:<10} {:<26} {:>9} {:>9} {:>7} {:>7}\n",
                m.task,
                m.channel,
                m.slice,
                m.examples,
                m.positives,
                number(m.ap),
                number(m.roc_auc)
            );
        }
        out
    }
}
