//! Offline ranking metrics: average precision (the headline metric, as in the
//! paper) and ROC-AUC. Both are `None` when a slice has no positives or (AUC)
//! no negatives, rather than a misleading number.

/// Average precision: the mean of precision@k over the ranks k of the
/// positives, ranking by score (ties broken by position, as most libraries do).
pub fn average_precision(scores: &[f32], labels: &[bool]) -> Option<f64> {
    let positives = labels.iter().filter(|&&l| l).count();
    if positives == 0 {
        return None;
    }
    let order = ranking(scores);
    let (mut hits, mut sum) = (0usize, 0.0);
    for (k, &i) in order.iter().enumerate() {
        if labels[i] {
            hits += 1;
            sum += hits as f64 / (k + 1) as f64;
        }
    }
    Some(sum / positives as f64)
}

/// Area under the ROC curve: the probability that a random positive scores
/// above a random negative, ties counting one half (Mann-Whitney U).
pub fn roc_auc(scores: &[f32], labels: &[bool]) -> Option<f64> {
    let positives = labels.iter().filter(|&&l| l).count();
    let negatives = labels.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let mut order = ranking(scores);
    order.reverse(); // ascending
    let mut rank_sum = 0.0;
    let mut start = 0;
    while start < order.len() {
        let mut end = start;
        while end + 1 < order.len() && scores[order[end + 1]] == scores[order[start]] {
            end += 1;
        }
        // Ranks start..=end (1-based: +1) share their mean.
        let mean_rank = (start + end) as f64 / 2.0 + 1.0;
        rank_sum += mean_rank * order[start..=end].iter().filter(|&&i| labels[i]).count() as f64;
        start = end + 1;
    }
    let u = rank_sum - (positives * (positives + 1)) as f64 / 2.0;
    Some(u / (positives as f64 * negatives as f64))
}

/// Indices by descending score; NaN scores rank last.
fn ranking(scores: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_and_inverted_rankings() {
        let labels = [true, true, false, false];
        assert_eq!(average_precision(&[0.9, 0.8, 0.2, 0.1], &labels), Some(1.0));
        assert_eq!(roc_auc(&[0.9, 0.8, 0.2, 0.1], &labels), Some(1.0));
        assert_eq!(roc_auc(&[0.1, 0.2, 0.8, 0.9], &labels), Some(0.0));
        // Positives at ranks 3 and 4: (1/3 + 2/4) / 2.
        let ap = average_precision(&[0.1, 0.2, 0.8, 0.9], &labels).unwrap();
        assert!((ap - (1.0 / 3.0 + 0.5) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn ties_count_half_and_empty_slices_have_no_metric() {
        assert_eq!(roc_auc(&[0.5, 0.5], &[true, false]), Some(0.5));
        assert_eq!(average_precision(&[0.5, 0.1], &[false, false]), None);
        assert_eq!(roc_auc(&[0.5, 0.1], &[true, true]), None);
    }
}
