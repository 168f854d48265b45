//! The A/B's figures: per arm the mean over runs of each slice's totals, B's
//! change against A with a 95% interval over runs (Student's t), printed in
//! the form of the paper's Table 2 and its tier table, and as JSON.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::outcomes::{Slices, Totals};
use super::{ARMS, AbResult};
use crate::contract::{Channel, tier_label};

/// A metric of Table 2: its name, and how it is read off a slice's totals.
type Metric = (&'static str, fn(&Totals) -> f64);

/// The metrics of Table 2.
const METRICS: [Metric; 4] =
    [("i2s", Totals::i2s), ("eCPS", Totals::ecps), ("CTR", Totals::ctr), ("streams", |t| t.true_streams)];

/// The channels reported: ads first (the paper's online test compares the
/// arms on ad campaigns, section 4.4), then promotions, then all.
const CHANNELS: [(Option<Channel>, &str); 3] =
    [(Some(Channel::Ad), "ads"), (Some(Channel::Promotion), "promotions"), (None, "all campaigns")];

/// Two-sided 95% quantile of Student's t with `df` degrees of freedom.
fn t95(df: usize) -> f64 {
    const T: [f64; 10] = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228];
    T.get(df.wrapping_sub(1)).copied().unwrap_or(1.96)
}

/// Mean and 95% half-width of `values` (no interval from one value).
pub fn interval(values: &[f64]) -> (f64, Option<f64>) {
    let n = values.len();
    let mean = values.iter().fold(0.0, |a, b| a + b) / n.max(1) as f64;
    if n < 2 {
        return (mean, None);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    (mean, Some(t95(n - 1) * (var / n as f64).sqrt()))
}

fn mean_totals(all: &[&Totals]) -> Totals {
    let n = all.len().max(1) as f64;
    let sum = |f: fn(&Totals) -> f64| all.iter().map(|t| f(t)).sum::<f64>() / n;
    Totals {
        campaigns: (all.iter().map(|t| t.campaigns).sum::<u64>() as f64 / n).round() as u64,
        users: (all.iter().map(|t| t.users).sum::<u64>() as f64 / n).round() as u64,
        impressions: sum(|t| t.impressions),
        spend: sum(|t| t.spend),
        true_streams: sum(|t| t.true_streams),
        true_clicks: sum(|t| t.true_clicks),
        true_follows: sum(|t| t.true_follows),
    }
}

impl AbResult {
    /// Per run, a slice of an arm.
    fn slices<'a>(
        &'a self,
        arm: &str,
        channel: Option<Channel>,
        pick: impl Fn(&'a Slices) -> &'a Totals,
    ) -> Vec<&'a Totals> {
        self.runs.iter().map(|run| pick(run.arms[arm].channel(channel))).collect()
    }

    /// B's relative change against A in `metric` on a slice, per run.
    fn changes<'a>(
        &'a self,
        channel: Option<Channel>,
        metric: fn(&Totals) -> f64,
        pick: impl Fn(&'a Slices) -> &'a Totals + Copy,
    ) -> Vec<f64> {
        let (a, b) = (self.slices("A", channel, pick), self.slices("B", channel, pick));
        a.iter().zip(&b).map(|(a, b)| metric(b) / metric(a) - 1.0).filter(|c| c.is_finite()).collect()
    }

    /// The printed tables.
    pub fn table(&self) -> String {
        let seeds: Vec<String> = self.runs.iter().map(|r| format!("{}/{}", r.world_seed, r.seed)).collect();
        let mut out = format!(
            "Budget-split A/B on {}: {} run(s) (world seed/training seed {}); A = promotions-only baseline, B = five-task model;\n\
             true expected outcomes of each arm's audiences; B vs A: mean change over runs [95% interval]; oracle and random per half.\n\n",
            self.data,
            self.runs.len(),
            seeds.join(", ")
        );
        out += &format!(
            "{:<14} {:<13} {:<8} {:>11} {:>11} {:>24} {:>11} {:>11}\n",
            "channel", "slice", "metric", "A", "B", "B vs A", "oracle", "random"
        );
        for (channel, channel_name) in CHANNELS {
            for (slice_name, pick) in [
                ("overall", (|s: &Slices| &s.overall) as fn(&Slices) -> &Totals),
                ("less-streamed", |s: &Slices| &s.less_streamed),
            ] {
                for (metric_name, metric) in METRICS {
                    let value = |arm: &str| metric(&mean_totals(&self.slices(arm, channel, pick)));
                    let changes = self.changes(channel, metric, pick);
                    let (change, half) = interval(&changes);
                    let change = match half {
                        _ if changes.is_empty() => "-".to_string(),
                        Some(h) => format!(
                            "{:+.1}% [{:+.1}, {:+.1}]",
                            100.0 * change,
                            100.0 * (change - h),
                            100.0 * (change + h)
                        ),
                        None => format!("{:+.1}%", 100.0 * change),
                    };
                    out += &format!(
                        "{:<14} {:<13} {:<8} {:>11} {:>11} {:>24} {:>11} {:>11}\n",
                        channel_name,
                        slice_name,
                        metric_name,
                        number(value("A")),
                        number(value("B")),
                        change,
                        number(value("oracle")),
                        number(value("random"))
                    );
                }
            }
        }
        out += "\nPer stream tier (promotions): true expected streams and B's change vs A in i2s and eCPS\n";
        out += &format!(
            "{:<26} {:>11} {:>11} {:>11} {:>11} {:>16} {:>16}\n",
            "tier", "A streams", "B streams", "oracle", "random", "i2s B vs A", "eCPS B vs A"
        );
        let tiers = self.runs.first().map_or(0, |r| r.arms["A"].promotion.tiers.len());
        for tier in 0..tiers {
            let channel = Some(Channel::Promotion);
            let pick = tier_slice(tier);
            let streams = |arm: &str| mean_totals(&self.slices(arm, channel, pick)).true_streams;
            let change = |metric: fn(&Totals) -> f64| {
                let changes = self.changes(channel, metric, pick);
                if changes.is_empty() { "-".to_string() } else { format!("{:+.1}%", 100.0 * interval(&changes).0) }
            };
            out += &format!(
                "{:<26} {:>11} {:>11} {:>11} {:>11} {:>16} {:>16}\n",
                tier_label(tier),
                number(streams("A")),
                number(streams("B")),
                number(streams("oracle")),
                number(streams("random")),
                change(Totals::i2s),
                change(Totals::ecps)
            );
        }
        out
    }

    /// Every figure as JSON: per arm the mean slices (`arms.<name>.overall.true_streams`
    /// is over all campaigns), B vs A per channel, slice and metric, and every run.
    pub fn json(&self) -> Value {
        let totals = |t: &Totals| {
            let mut value = serde_json::to_value(t).expect("totals serialise");
            value["i2s"] = json!(finite(t.i2s()));
            value["ctr"] = json!(finite(t.ctr()));
            value["ecps"] = json!(finite(t.ecps()));
            value
        };
        let mut arms = BTreeMap::new();
        for arm in ARMS {
            let mut by_channel = serde_json::Map::new();
            for (channel, name) in CHANNELS {
                let tiers = self.runs.first().map_or(0, |r| r.arms[arm].all.tiers.len());
                let slice = |pick: &dyn Fn(&Slices) -> &Totals| {
                    totals(&mean_totals(
                        &self.runs.iter().map(|r| pick(r.arms[arm].channel(channel))).collect::<Vec<_>>(),
                    ))
                };
                let value = json!({
                    "overall": slice(&|s| &s.overall),
                    "less_streamed": slice(&|s| &s.less_streamed),
                    "tiers": (0..tiers).map(|t| slice(&|s| &s.tiers[t])).collect::<Vec<_>>(),
                });
                by_channel.insert(name.replace(' ', "_"), value);
            }
            let mut value = by_channel["all_campaigns"].clone();
            value["promotions"] = by_channel["promotions"].clone();
            value["ads"] = by_channel["ads"].clone();
            arms.insert(arm.to_string(), value);
        }
        let mut changes = serde_json::Map::new();
        for (channel, channel_name) in CHANNELS {
            for (slice_name, pick) in [
                ("overall", (|s: &Slices| &s.overall) as fn(&Slices) -> &Totals),
                ("less_streamed", |s: &Slices| &s.less_streamed),
            ] {
                for (metric_name, metric) in METRICS {
                    let per_run = self.changes(channel, metric, pick);
                    let (mean, half) = interval(&per_run);
                    changes.insert(
                        format!("{}.{slice_name}.{}", channel_name.replace(' ', "_"), metric_name.to_lowercase()),
                        json!({"mean": finite(mean), "low": half.map(|h| mean - h), "high": half.map(|h| mean + h), "per_run": per_run}),
                    );
                }
            }
            let tiers = self.runs.first().map_or(0, |r| r.arms["A"].all.tiers.len());
            for tier in 0..tiers {
                for (metric_name, metric) in METRICS {
                    let per_run = self.changes(channel, metric, tier_slice(tier));
                    let (mean, half) = interval(&per_run);
                    changes.insert(
                        format!("{}.tier{}.{}", channel_name.replace(' ', "_"), tier + 1, metric_name.to_lowercase()),
                        json!({"mean": finite(mean), "low": half.map(|h| mean - h), "high": half.map(|h| mean + h), "per_run": per_run}),
                    );
                }
            }
        }
        json!({ "data": self.data, "arms": arms, "b_vs_a": changes, "runs": self.runs })
    }
}

/// A tier's totals of a channel's slices.
fn tier_slice(tier: usize) -> impl Fn(&Slices) -> &Totals + Copy {
    move |s: &Slices| &s.tiers[tier]
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

fn number(v: f64) -> String {
    if !v.is_finite() {
        "-".to_string()
    } else if v == 0.0 {
        "0".to_string()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.4}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_95_percent_interval_from_students_t() {
        let (mean, half) = interval(&[1.0, 2.0, 3.0]);
        assert_eq!(mean, 2.0);
        // sd 1, n 3: 4.303 / sqrt(3).
        assert!((half.unwrap() - 4.303 / 3f64.sqrt()).abs() < 1e-9);
        assert_eq!(interval(&[5.0]), (5.0, None));
    }
}
