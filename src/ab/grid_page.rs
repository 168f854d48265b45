//! `grid.html`: the regime grid ([`super::grid`]) as a page: B against A on
//! ads and on promotions against the promotion labels, with their 95%
//! intervals; the tier profile on ads; how much of the oracle's lead over A
//! B closes; every point in a table, and the ablation (Table 1).

use super::grid::{GridResult, PointResult};
use crate::model::experiment::mean_and_spread;
use crate::report::charts::{Estimate, Legend, intervals};
use crate::report::{Cell, ChartError, Page};

/// B's change against A (in %) of `metric` on `slice` (e.g. `ads.overall.i2s`).
fn change(point: &PointResult, key: &str) -> Option<(f64, Option<(f64, f64)>)> {
    let value = &point.ab["b_vs_a"][key];
    let mean = value["mean"].as_f64()? * 100.0;
    let bounds = value["low"].as_f64().zip(value["high"].as_f64()).map(|(l, h)| (l * 100.0, h * 100.0));
    Some((mean, bounds))
}

/// The mean number of promotion rows arm B trained on, over the point's runs.
fn promotion_rows(point: &PointResult) -> f64 {
    let runs = point.ab["runs"].as_array().map_or(&[][..], Vec::as_slice);
    let rows: Vec<f64> = runs.iter().filter_map(|r| r["training"]["B"]["train_promotions"].as_f64()).collect();
    if rows.is_empty() { point.point.promotion_labels.unwrap_or(0) as f64 } else { mean_and_spread(&rows).0 }
}

/// Share of the oracle's lead over A in true streams that B closes, on ads.
fn oracle_gap_closed(point: &PointResult) -> Option<f64> {
    let streams = |arm: &str| point.ab["arms"][arm]["ads"]["overall"]["true_streams"].as_f64();
    let (a, b, oracle) = (streams("A")?, streams("B")?, streams("oracle")?);
    (oracle > a).then(|| (b - a) / (oracle - a))
}

fn runs(point: &PointResult) -> usize {
    point.ab["runs"].as_array().map_or(0, Vec::len)
}

/// The figure range of a set of estimates, with a margin, always including 0.
fn span(estimates: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (low, high) = estimates.fold((0.0f64, 0.0f64), |(l, h), v| (l.min(v), h.max(v)));
    let margin = ((high - low) * 0.1).max(1.0);
    (low - margin)..(high + margin)
}

/// Draws `<out>/grid.html` from the grid's result.
pub async fn write(out: &crate::storage::Location, grid: &GridResult) -> Result<(), super::AbError> {
    out.join("grid.html").write(render(grid)?).await?;
    Ok(())
}

/// The page.
pub fn render(grid: &GridResult) -> Result<String, ChartError> {
    let mut page = Page::new("The paper's regime", "B (five tasks) against A (promotions only) on the world's truth");
    page.section("summary", "What ran");
    let world = &grid.options.world;
    page.facts(&[
        ("world", format!("{} users, {} campaigns, {} impressions", world.users, world.campaigns, world.impressions)),
        ("world seeds", format!("{} and {:?}", world.seed, grid.options.world_seeds)),
        ("training seeds", format!("{:?}", grid.options.seeds)),
        (
            "optimiser steps",
            format!(
                "{} epochs × {} steps, patience {}",
                grid.options.training.max_epochs,
                grid.options.training.steps_per_epoch.map_or("one pass".to_string(), |s| s.to_string()),
                grid.options.training.patience
            ),
        ),
        ("points", format!("{} of 6, ablation {}", grid.points.len(), grid.ablation.is_some())),
    ]);
    let curve: Vec<&PointResult> = grid.points.iter().filter(|p| p.point.name.starts_with("paper regime")).collect();
    curves(&mut page, &curve)?;
    tiers(&mut page, &curve)?;
    points_table(&mut page, grid);
    ablation_table(&mut page, grid);
    Ok(page.finish())
}

/// B vs A against the promotion labels: i2s and eCPS, ads and promotions.
fn curves(page: &mut Page, curve: &[&PointResult]) -> Result<(), ChartError> {
    page.section("labels", "Against promotion labels");
    page.note(
        "B's change against A over the runs (world seeds × training seeds), with 95% intervals, at 10,000, 50,000 \
         and all promotion labels (x: the promotion rows B trained on). Ads are the paper's online test.",
    );
    let x_end = curve.iter().map(|p| promotion_rows(p)).fold(1.0f64, f64::max) * 1.05;
    let mut figures = Vec::new();
    for (metric, title) in [("i2s", "impression-to-stream rate"), ("ecps", "eCPS (spend per stream)")] {
        let series: Vec<(String, Vec<Estimate>)> = ["ads", "promotions"]
            .iter()
            .map(|channel| {
                let estimates = curve
                    .iter()
                    .filter_map(|p| {
                        change(p, &format!("{channel}.overall.{metric}")).map(|(m, b)| (promotion_rows(p), m, b))
                    })
                    .collect();
                (channel.to_string(), estimates)
            })
            .collect();
        let y = span(
            series
                .iter()
                .flat_map(|(_, e)| e.iter().flat_map(|&(_, m, b)| [Some(m), b.map(|b| b.0), b.map(|b| b.1)]))
                .flatten(),
        );
        let svg = intervals(
            &format!("B vs A: {title}"),
            ("promotion labels", 0.0..x_end),
            ("change, %", y),
            &series,
            Legend::UpperRight,
        )?;
        figures.push((svg, format!("B's change in {title} against A, in %, with its 95% interval.")));
    }
    page.figures(figures);
    Ok(())
}

/// The tier profile on ads at all promotion labels.
fn tiers(page: &mut Page, curve: &[&PointResult]) -> Result<(), ChartError> {
    let Some(all) = curve.iter().find(|p| p.point.promotion_labels.is_none()) else { return Ok(()) };
    page.section("tiers", "By stream tier, on ads");
    page.note("B's change in i2s against A per stream tier of the campaign's podcast (tier 1: least streamed), all promotion labels.");
    let estimates: Vec<Estimate> =
        (1..=8).filter_map(|t| change(all, &format!("ads.tier{t}.i2s")).map(|(m, b)| (t as f64, m, b))).collect();
    let y = span(estimates.iter().flat_map(|&(_, m, b)| [Some(m), b.map(|b| b.0), b.map(|b| b.1)]).flatten());
    let series = vec![("ads, i2s".to_string(), estimates)];
    let svg = intervals(
        "B vs A on ads by stream tier",
        ("stream tier", 0.5..8.5),
        ("change, %", y),
        &series,
        Legend::UpperRight,
    )?;
    page.figures(vec![(svg, "B's change in ads i2s by stream tier, with 95% intervals.".into())]);
    Ok(())
}

/// Every point: its runs, B vs A on ads and promotions, the oracle gap closed.
fn points_table(page: &mut Page, grid: &GridResult) {
    page.section("points", "Every point");
    let cell = |p: &PointResult, key: &str| match change(p, key) {
        Some((mean, Some((low, high)))) => Cell::number(mean, format!("{mean:+.1}% [{low:+.1}, {high:+.1}]")),
        Some((mean, None)) => Cell::number(mean, format!("{mean:+.1}%")),
        None => Cell::text("-"),
    };
    let rows = grid
        .points
        .iter()
        .map(|p| {
            vec![
                Cell::text(&p.point.name),
                Cell::count(runs(p) as u64),
                cell(p, "ads.overall.i2s"),
                cell(p, "ads.overall.ecps"),
                cell(p, "ads.less_streamed.i2s"),
                cell(p, "promotions.overall.i2s"),
                cell(p, "promotions.overall.ecps"),
                Cell::maybe(oracle_gap_closed(p), 3),
                Cell::number(p.seconds, format!("{:.0}", p.seconds)),
            ]
        })
        .collect();
    let headers = [
        "point",
        "runs",
        "ads i2s",
        "ads eCPS",
        "ads i2s, less-streamed",
        "promotions i2s",
        "promotions eCPS",
        "oracle gap closed (ads)",
        "seconds",
    ];
    page.table("points", &headers, rows, true);
}

/// Table 1 on the default world: AP per setup, relative to A.
fn ablation_table(page: &mut Page, grid: &GridResult) {
    let Some(ablation) = &grid.ablation else { return };
    page.section("ablation", "Ablation (Table 1)");
    page.note("Test AP per setup on the default world, and its change against the promotions-only baseline A of the same seed (mean ± sd over seeds).");
    let baseline = &ablation.aps[0];
    let rows = ablation
        .recipes
        .iter()
        .zip(&ablation.aps)
        .map(|(name, runs)| {
            let mut row = vec![Cell::text(name)];
            for channel in 0..2 {
                let relative: Vec<f64> =
                    runs.iter().zip(baseline).map(|(r, b)| 100.0 * (r[channel] / b[channel] - 1.0)).collect();
                let (mean, sd) = mean_and_spread(&relative);
                row.push(Cell::number(mean, format!("{mean:+.1}% ± {sd:.1}")));
            }
            for channel in 0..2 {
                let (mean, sd) = mean_and_spread(&runs.iter().map(|r| r[channel]).collect::<Vec<_>>());
                row.push(Cell::number(mean, format!("{mean:.4} ± {sd:.4}")));
            }
            row
        })
        .collect();
    page.table(
        "ablation-table",
        &["setup", "promotions AP vs A", "ads AP vs A", "promotions AP", "ads AP"],
        rows,
        false,
    );
}
