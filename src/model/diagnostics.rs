//! What the model report draws beyond the metric table: per task head and
//! channel, the precision-recall curve and the calibration (mean predicted
//! probability against the observed rate, by decile of the prediction).

use serde::{Deserialize, Serialize};

use super::dataset::Dataset;
use super::evaluate::{HEAD_LABELS, channel_of, slice};
use super::network::TASKS;

/// Points kept per precision-recall curve (evenly spaced in rank).
const CURVE_POINTS: usize = 200;
const DECILES: usize = 10;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Curve {
    pub task: String,
    pub channel: String,
    /// (recall, precision), by descending score.
    pub points: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CalibrationBin {
    pub examples: usize,
    pub mean_predicted: f64,
    pub observed_rate: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Calibration {
    pub task: String,
    pub channel: String,
    /// Ten bins of equal size by ascending prediction.
    pub bins: Vec<CalibrationBin>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Diagnostics {
    pub curves: Vec<Curve>,
    pub calibration: Vec<Calibration>,
}

/// The precision-recall curve of `scores` against `labels` (empty without
/// positives), thinned to about [`CURVE_POINTS`] points.
pub fn precision_recall(scores: &[f32], labels: &[bool]) -> Vec<(f64, f64)> {
    let positives = labels.iter().filter(|&&l| l).count();
    if positives == 0 {
        return Vec::new();
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let step = (order.len() / CURVE_POINTS).max(1);
    let mut hits = 0usize;
    let mut points = Vec::with_capacity(CURVE_POINTS + 2);
    for (k, &i) in order.iter().enumerate() {
        hits += labels[i] as usize;
        if (k + 1) % step == 0 || k + 1 == order.len() {
            points.push((hits as f64 / positives as f64, hits as f64 / (k + 1) as f64));
        }
    }
    points
}

/// Mean prediction and observed rate in [`DECILES`] equal bins by prediction.
pub fn calibration(scores: &[f32], labels: &[bool]) -> Vec<CalibrationBin> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(a.cmp(&b)));
    let n = order.len();
    (0..DECILES)
        .filter_map(|d| {
            let bin = &order[d * n / DECILES..(d + 1) * n / DECILES];
            (!bin.is_empty()).then(|| CalibrationBin {
                examples: bin.len(),
                mean_predicted: bin.iter().map(|&i| scores[i] as f64).sum::<f64>() / bin.len() as f64,
                observed_rate: bin.iter().filter(|&&i| labels[i]).count() as f64 / bin.len() as f64,
            })
        })
        .collect()
}

/// Curves and calibration of every head and channel for `predictions` (as
/// `evaluate::predict` returns them) of `rows`.
pub fn diagnose(predictions: &[f32], data: &Dataset, rows: &[i64]) -> Diagnostics {
    let (mut curves, mut calibrations) = (Vec::new(), Vec::new());
    for (head, label, channels) in HEAD_LABELS {
        for &channel in channels {
            let (scores, labels) = slice(predictions, data, rows, head, label, |i| channel_of(data, i) == channel);
            let (task, channel) = (TASKS[head].to_string(), channel.as_str().to_string());
            curves.push(Curve {
                task: task.clone(),
                channel: channel.clone(),
                points: precision_recall(&scores, &labels),
            });
            calibrations.push(Calibration { task, channel, bins: calibration(&scores, &labels) });
        }
    }
    Diagnostics { curves, calibration: calibrations }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_perfect_ranking_keeps_full_precision_until_all_positives_are_found() {
        let scores = [0.9, 0.8, 0.3, 0.2];
        let labels = [true, true, false, false];
        let curve = precision_recall(&scores, &labels);
        assert_eq!(curve, vec![(0.5, 1.0), (1.0, 1.0), (1.0, 2.0 / 3.0), (1.0, 0.5)]);
        assert!(precision_recall(&scores, &[false; 4]).is_empty());
    }

    #[test]
    fn calibration_bins_are_equal_and_ordered_by_prediction() {
        let scores: Vec<f32> = (0..100).map(|i| i as f32 / 100.0).collect();
        let labels: Vec<bool> = (0..100).map(|i| i >= 50).collect();
        let bins = calibration(&scores, &labels);
        assert_eq!(bins.len(), 10);
        assert!(bins.iter().all(|b| b.examples == 10));
        assert!((bins[0].mean_predicted - 0.045).abs() < 1e-6 && bins[0].observed_rate == 0.0);
        assert_eq!(bins[9].observed_rate, 1.0);
    }
}
