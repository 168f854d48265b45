//! The model report (`audience evaluate --report FILE.html`): for the model's
//! data scientists, its test-day metrics as figures: precision-recall curves
//! per task and channel, calibration by decile of the prediction, and average
//! precision by stream tier, with the full metric table.

use super::artifact::Manifest;
use super::diagnostics::Diagnostics;
use super::evaluate::Evaluation;
use crate::report::charts::{Legend, lines};
use crate::report::{Cell, ChartError, Page, Series};

/// The page for `model` evaluated on the test days of `data`.
pub fn render(
    model: &Manifest,
    data: &str,
    evaluation: &Evaluation,
    diagnostics: &Diagnostics,
) -> Result<String, ChartError> {
    let mut page =
        Page::new(&format!("Model {}", model.model_version), &format!("evaluated on the test days of {data}"));
    page.section("summary", "Summary");
    let report = &model.training.report;
    page.facts(&[
        ("model version", model.model_version.clone()),
        ("trained on", model.training.data.clone()),
        ("evaluated on", data.to_string()),
        ("test impressions", evaluation.test_examples.to_string()),
        ("best epoch", format!("{} of {}", report.best_epoch, report.epochs.len())),
        ("validation stream AP", format!("{:.4}", report.validation_stream_ap)),
    ]);

    let mut tasks: Vec<&str> = diagnostics.curves.iter().map(|c| c.task.as_str()).collect();
    tasks.dedup();
    precision_recall(&mut page, &tasks, diagnostics)?;
    calibration(&mut page, &tasks, diagnostics)?;
    by_tier(&mut page, evaluation)?;
    page.section("metrics", "All metrics");
    page.table("metric-table", &METRIC_HEADERS, evaluation.metrics.iter().map(metric_row).collect(), true);
    Ok(page.finish())
}

/// Per task head, precision against recall, one line per channel.
fn precision_recall(page: &mut Page, tasks: &[&str], diagnostics: &Diagnostics) -> Result<(), ChartError> {
    page.section("precision-recall", "Precision and recall");
    page.note(
        "Per task head, precision against recall as the threshold falls, one line per channel the head is scored on.",
    );
    let mut figures = Vec::new();
    for task in tasks {
        let series: Vec<Series> = diagnostics
            .curves
            .iter()
            .filter(|c| c.task == *task)
            .map(|c| Series { name: c.channel.clone(), points: c.points.clone() })
            .collect();
        let svg = lines(
            &format!("{task}: precision-recall"),
            ("recall", 0.0..1.0),
            ("precision", 0.0..1.0),
            &series,
            (None, false, Legend::UpperRight),
        )?;
        figures.push((svg, format!("Precision-recall of the {task} head on the test days.")));
    }
    page.figures(figures);

    Ok(())
}

/// Per task head, the mean prediction against the observed rate by decile.
fn calibration(page: &mut Page, tasks: &[&str], diagnostics: &Diagnostics) -> Result<(), ChartError> {
    page.section("calibration", "Calibration");
    page.note("Mean predicted probability against the observed rate in ten equal bins by prediction; points on the diagonal are calibrated.");
    let mut figures = Vec::new();
    for task in tasks {
        let of_task: Vec<_> = diagnostics.calibration.iter().filter(|c| c.task == *task).collect();
        let top =
            of_task.iter().flat_map(|c| &c.bins).map(|b| b.mean_predicted.max(b.observed_rate)).fold(0.0f64, f64::max);
        let top = if top > 0.0 { top * 1.1 } else { 1.0 };
        let series: Vec<Series> = of_task
            .iter()
            .map(|c| Series {
                name: c.channel.clone(),
                points: c.bins.iter().map(|b| (b.mean_predicted, b.observed_rate)).collect(),
            })
            .collect();
        let svg = lines(
            &format!("{task}: calibration"),
            ("mean predicted", 0.0..top),
            ("observed rate", 0.0..top),
            &series,
            (Some("calibrated"), true, Legend::UpperLeft),
        )?;
        figures.push((svg, format!("Calibration of the {task} head by decile of its prediction.")));
    }
    page.figures(figures);
    let rows = diagnostics
        .calibration
        .iter()
        .flat_map(|c| {
            c.bins.iter().enumerate().map(move |(d, b)| {
                vec![
                    Cell::text(&c.task),
                    Cell::text(&c.channel),
                    Cell::count(d as u64 + 1),
                    Cell::count(b.examples as u64),
                    Cell::maybe(Some(b.mean_predicted), 4),
                    Cell::maybe(Some(b.observed_rate), 4),
                ]
            })
        })
        .collect();
    page.table(
        "calibration-table",
        &["task", "channel", "decile", "examples", "mean predicted", "observed rate"],
        rows,
        true,
    );

    Ok(())
}

/// Stream AP by the stream tier of the impression's podcast.
fn by_tier(page: &mut Page, evaluation: &Evaluation) -> Result<(), ChartError> {
    page.section("tiers", "By stream tier");
    page.note("Average precision of each channel's stream head by the stream tier of the impression's podcast (the paper's eight tiers; tier 1 is the least streamed).");
    let tiered: Vec<_> = evaluation.metrics.iter().filter(|m| m.slice.starts_with("tier ")).collect();
    let mut channels: Vec<&str> = tiered.iter().map(|m| m.channel.as_str()).collect();
    channels.dedup();
    let series: Vec<Series> = channels
        .iter()
        .map(|channel| Series {
            name: channel.to_string(),
            points: tiered
                .iter()
                .filter(|m| m.channel == *channel)
                .filter_map(|m| Some((tier_number(&m.slice)?, m.ap?)))
                .collect(),
        })
        .collect();
    let top = series.iter().flat_map(|s| &s.points).map(|p| p.1).fold(0.0f64, f64::max);
    let svg = lines(
        "Stream AP by tier",
        ("stream tier", 1.0..8.0),
        ("AP", 0.0..(top * 1.15).max(0.05)),
        &series,
        (None, true, Legend::UpperRight),
    )?;
    page.figures(vec![(svg, "Average precision of the stream heads by stream tier (test days).".into())]);
    let tier_rows = evaluation.metrics.iter().filter(|m| m.slice != "all").map(metric_row).collect();
    page.table("tier-table", &METRIC_HEADERS, tier_rows, false);

    Ok(())
}

pub const METRIC_HEADERS: [&str; 7] = ["task", "channel", "slice", "examples", "positives", "AP", "AUC"];

/// A metric as a table row under [`METRIC_HEADERS`].
pub fn metric_row(m: &super::evaluate::Metric) -> Vec<Cell> {
    vec![
        Cell::text(&m.task),
        Cell::text(&m.channel),
        Cell::text(&m.slice),
        Cell::count(m.examples as u64),
        Cell::count(m.positives as u64),
        Cell::maybe(m.ap, 4),
        Cell::maybe(m.roc_auc, 4),
    ]
}

/// 3.0 for "tier 3 (5000-20000)".
fn tier_number(slice: &str) -> Option<f64> {
    slice.strip_prefix("tier ")?.split(' ').next()?.parse().ok()
}
