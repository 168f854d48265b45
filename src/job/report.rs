//! `report.html`, beside every committed run's manifest, for the people who run
//! the job: the run in brief, where the money went per campaign, who was
//! withheld and why, totals by channel × objective and by stream tier, and the
//! model's offline metrics. Drawn from the run manifest and the model's
//! artifact manifest only, so `audience report` can draw it again later.

use super::layout::REPORT_FILE;
use super::manifest::{CampaignReport, Group, MANIFEST_VERSION, RunManifest};
use crate::exit_code::ExitCode;
use crate::model::artifact;
use crate::model::report::{METRIC_HEADERS, metric_row};
use crate::report::charts::{bars, scatter_log};
use crate::report::{Cell, ChartError, Page, Series};
use crate::storage::Location;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("manifest {url}: {reason}")]
    Manifest { url: String, reason: String },
    /// Where the page would overwrite a run's own files.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Chart(#[from] ChartError),
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
}

impl ReportError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            ReportError::Manifest { .. } | ReportError::Refused(_) => ExitCode::Invalid,
            // A committed run must always have its report: a figure that cannot be drawn is a bug.
            ReportError::Chart(_) => ExitCode::Internal,
            ReportError::Storage(e) => e.exit_code(),
            ReportError::Model(e) => e.exit_code(),
        }
    }
}

/// A run manifest from its JSON, refusing another version or a missing field
/// by name.
pub fn parse_manifest(url: &str, json: &[u8]) -> Result<RunManifest, ReportError> {
    let bad = |reason: String| ReportError::Manifest { url: url.to_string(), reason };
    let value: serde_json::Value = serde_json::from_slice(json).map_err(|e| bad(format!("not JSON: {e}")))?;
    let version = value.get("manifest_version").and_then(serde_json::Value::as_u64);
    if version != Some(MANIFEST_VERSION as u64) {
        let found = version.map_or("missing".to_string(), |v| v.to_string());
        return Err(bad(format!("manifest_version is {found}; this build reads manifest_version {MANIFEST_VERSION}")));
    }
    serde_json::from_value(value).map_err(|e| bad(format!("not a run manifest: {e}")))
}

/// Renders the report of the run at `manifest_url` again, reading the model's
/// metrics from `model_uri` (default: the manifest's `model_uri`), and writes
/// it to `out` (default: `report.html` beside the manifest). Nothing is
/// written unless both manifests read, nor anywhere inside a run's directory
/// but the run's own `report.html`. Returns where it was written.
pub async fn render_again(
    manifest_url: &str,
    model_uri: Option<&str>,
    out: Option<&str>,
) -> Result<String, ReportError> {
    let location = Location::parse(manifest_url)?;
    let beside = Location::parse(manifest_url.rsplit_once('/').map_or(".", |(dir, _)| dir))?.join(REPORT_FILE);
    let out = match out {
        Some(out) => Location::parse(out)?,
        None => beside.clone(),
    };
    // In place (beside its own manifest) a run's report may be drawn again;
    // no other file of a run, and no other run's report, may be written.
    super::layout::check_outside_runs("--out", &out, out.url() == beside.url()).map_err(ReportError::Refused)?;
    let manifest = parse_manifest(location.url(), &location.read().await?)?;
    let model = artifact::read_manifest(&Location::parse(model_uri.unwrap_or(&manifest.model_uri))?).await?;
    let html = render(&manifest, &model)?;
    out.write(html).await?;
    Ok(out.url().to_string())
}

fn money(v: f64) -> String {
    let cents = (v.abs() * 100.0).round() as u128;
    let whole = (cents / 100).to_string();
    let mut grouped = String::new();
    for (i, digit) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    format!("{}{grouped}.{:02}", if v < 0.0 && cents > 0 { "-" } else { "" }, cents % 100)
}

fn percent(part: f64, whole: f64) -> String {
    if whole > 0.0 { format!("{:.1}%", 100.0 * part / whole) } else { "–".to_string() }
}

fn optional(v: Option<f64>, show: impl Fn(f64) -> String) -> String {
    v.map_or("–".to_string(), show)
}

/// The page for `manifest`'s run, with `model`'s offline metrics.
pub fn render(manifest: &RunManifest, model: &artifact::Manifest) -> Result<String, ReportError> {
    let mut page = Page::new(
        &format!("Audience run {} for {}", manifest.run_id, manifest.date),
        &format!(
            "inputs {} · model {} · manifest_version {}",
            manifest.inputs_root, manifest.model_version, manifest.manifest_version
        ),
    );
    summary(&mut page, manifest)?;
    campaigns(&mut page, manifest)?;
    withheld(&mut page, &manifest.campaigns);
    groups(&mut page, manifest)?;
    model_section(&mut page, model)?;
    Ok(page.finish())
}

fn summary(page: &mut Page, m: &RunManifest) -> Result<(), ReportError> {
    page.section("summary", "Summary");
    let served = m.campaigns.iter().filter(|c| c.audience > 0).count();
    let spend: f64 = m.campaigns.iter().map(|c| c.spend).sum();
    let budget: f64 = m.campaigns.iter().map(|c| c.budget).sum();
    let audience: u64 = m.campaigns.iter().map(|c| c.audience).sum();
    let violations = &m.violations;
    page.facts(&[
        ("run", m.run_id.clone()),
        ("date", m.date.clone()),
        ("model version", m.model_version.clone()),
        (
            "campaigns",
            format!("{} active, {served} served, {} withheld", m.campaigns.len(), m.campaigns.len() - served),
        ),
        ("spend / budget", format!("{} / {} ({})", money(spend), money(budget), percent(spend, budget))),
        ("users targeted", audience.to_string()),
        ("users scored", m.users_scored.to_string()),
        ("eligible pairs", m.eligible_pairs.to_string()),
        ("solver", m.solver.clone()),
        ("solver value", format!("{:.2}", m.solver_value)),
        ("dual bound", optional(m.dual_bound, |b| format!("{b:.2}"))),
        ("gap", optional(m.gap, |g| format!("{:.3}%", 100.0 * g))),
        ("price iterations", m.solver_iterations.to_string()),
        ("warm-started campaigns", m.warm_started_campaigns.to_string()),
        ("previous run", m.previous_run.as_ref().map_or("none".to_string(), |p| format!("{} ({})", p.run_id, p.date))),
        ("churn vs previous run", optional(m.churn, |c| format!("{:.1}%", 100.0 * c))),
        (
            "constraint violations",
            format!("budgets {}, caps {}, floors {}", violations.budgets, violations.caps, violations.floors),
        ),
        ("total stage time", format!("{:.1} s", m.timings.values().sum::<f64>())),
    ]);
    // In the job's order; a stage this build does not know goes last.
    let order = ["fingerprint", "validate", "model", "score", "allocate", "write", "commit"];
    let mut timings: Vec<(&String, &f64)> = m.timings.iter().collect();
    timings.sort_by_key(|(stage, _)| order.iter().position(|o| o == stage).unwrap_or(order.len()));
    let (stages, seconds): (Vec<String>, Vec<f64>) = timings.into_iter().map(|(k, v)| (k.clone(), *v)).unzip();
    let timings = bars("Seconds per stage", "seconds", &stages, ("seconds", &seconds), None)?;
    page.figures(vec![(timings, "Where the run's time went, per stage of the job.".to_string())]);
    Ok(())
}

fn campaigns(page: &mut Page, m: &RunManifest) -> Result<(), ReportError> {
    page.section("campaigns", "Campaigns");
    let by = |key: fn(&CampaignReport) -> &str, point: fn(&CampaignReport) -> (f64, f64)| -> Vec<Series> {
        let mut names: Vec<&str> = m.campaigns.iter().map(key).collect();
        names.sort_unstable();
        names.dedup();
        names
            .into_iter()
            .map(|name| Series {
                name: name.to_string(),
                points: m.campaigns.iter().filter(|c| key(c) == name).map(point).collect(),
            })
            .collect()
    };
    let spend = scatter_log(
        "Spend vs budget per campaign",
        "budget today",
        "spend",
        &by(|c| c.kind.as_str(), |c| (c.budget, c.spend)),
        Some("spend = budget"),
    )?;
    let reach = scatter_log(
        "Audience vs eligible users per campaign",
        "eligible users",
        "audience",
        &by(|c| c.objective.as_str(), |c| (c.eligible_users as f64, c.audience as f64)),
        Some("everyone eligible"),
    )?;
    page.figures(vec![
        (spend, "Each served campaign's spend against its budget for the day (log scales); points on the line spent it all. Withheld campaigns spend nothing and are listed below.".into()),
        (reach, "Each served campaign's audience against the users eligible for it (log scales), by objective.".into()),
    ]);
    let rows = m
        .campaigns
        .iter()
        .map(|c| {
            let tier = crate::contract::stream_tier(c.podcast_streams);
            let mut row = campaign_cells(c);
            row.extend([
                Cell::number(tier as f64, (tier + 1).to_string()),
                Cell::count(c.eligible_users),
                Cell::count(c.audience),
                Cell::number(c.spend, money(c.spend)),
                Cell::number(c.budget, money(c.budget)),
                Cell::number(if c.budget > 0.0 { c.spend / c.budget } else { 0.0 }, percent(c.spend, c.budget)),
                Cell::maybe(Some(c.expected_events), 1),
                Cell::maybe(c.expected_ecps, 3),
                Cell::maybe(c.price, 3),
                Cell::maybe(c.churn.map(|c| 100.0 * c), 1),
            ]);
            row
        })
        .collect();
    page.note("Click a column's header to sort by it. Expected events are of the campaign's objective; price is the budget's shadow price from the solver; churn is the share of this and the previous run's audience in only one of them (%).");
    page.table(
        "campaign-table",
        &[
            "campaign",
            "kind",
            "objective",
            "tier",
            "eligible",
            "audience",
            "spend",
            "budget",
            "spent",
            "expected events",
            "spend / event",
            "price",
            "churn %",
        ],
        rows,
        true,
    );
    Ok(())
}

/// A campaign's first cells in both campaign tables: id, kind, objective.
fn campaign_cells(c: &CampaignReport) -> Vec<Cell> {
    vec![Cell::text(&c.campaign_id), Cell::text(&c.kind), Cell::text(&c.objective)]
}

fn withheld(page: &mut Page, campaigns: &[CampaignReport]) {
    page.section("withheld", "Withheld campaigns");
    let withheld: Vec<&CampaignReport> = campaigns.iter().filter(|c| c.withheld.is_some()).collect();
    if withheld.is_empty() {
        page.note("No campaign was withheld: every active campaign got an audience.");
        return;
    }
    page.note(&format!("{} of {} active campaigns got no audience today, and why.", withheld.len(), campaigns.len()));
    let rows = withheld
        .iter()
        .map(|c| {
            let mut row = campaign_cells(c);
            row.extend([
                Cell::count(c.eligible_users),
                Cell::number(c.budget, money(c.budget)),
                Cell::text(c.withheld.clone().unwrap_or_default()),
            ]);
            row
        })
        .collect();
    page.table("withheld-table", &["campaign", "kind", "objective", "eligible", "budget", "reason"], rows, true);
}

fn group_rows(groups: &[Group]) -> Vec<Vec<Cell>> {
    groups
        .iter()
        .map(|g| {
            vec![
                Cell::text(&g.name),
                Cell::count(g.campaigns as u64),
                Cell::count(g.served as u64),
                Cell::count(g.audience),
                Cell::number(g.spend, money(g.spend)),
                Cell::number(g.budget, money(g.budget)),
                Cell::number(if g.budget > 0.0 { g.spend / g.budget } else { 0.0 }, percent(g.spend, g.budget)),
                Cell::maybe(Some(g.expected_events), 1),
                Cell::maybe(g.expected_cost_per_event(), 3),
            ]
        })
        .collect()
}

const GROUP_HEADERS: [&str; 9] =
    ["group", "campaigns", "served", "audience", "spend", "budget", "spent", "expected events", "spend / event"];

fn groups(page: &mut Page, m: &RunManifest) -> Result<(), ReportError> {
    page.section("market", "By channel and objective");
    let market = m.by_market();
    page.table("market-table", &GROUP_HEADERS, group_rows(&market), false);
    let parts = &market[..market.len() - 1];
    let names: Vec<String> = parts.iter().map(|g| g.name.clone()).collect();
    let spend: Vec<f64> = parts.iter().map(|g| g.spend).collect();
    let budget: Vec<f64> = parts.iter().map(|g| g.budget).collect();
    let figure = bars(
        "Spend and budget by channel / objective",
        "spend and budget",
        &names,
        ("spend", &spend),
        Some(("budget", &budget)),
    )?;
    page.figures(vec![(figure, "Each channel and objective's spend (filled) inside its budget (outline).".into())]);

    page.section("tiers", "Stream campaigns by stream tier");
    page.note("Campaigns whose objective is streams, by their podcast's 30-day streams (eight tiers, as in the paper): expected events are streams, so spend per event is the expected effective cost per stream (eCPS).");
    let tiers = m.stream_campaigns_by_tier();
    page.table("tier-table", &GROUP_HEADERS, group_rows(&tiers), false);
    let parts = &tiers[..tiers.len() - 1];
    let names: Vec<String> = parts.iter().map(|g| g.name.split(" (").next().unwrap_or_default().to_string()).collect();
    let ecps: Vec<f64> = parts.iter().map(|g| g.expected_cost_per_event().unwrap_or(0.0)).collect();
    let figure =
        bars("Expected eCPS by stream tier", "spend per expected stream", &names, ("expected eCPS", &ecps), None)?;
    page.figures(vec![(
        figure,
        "Expected cost per stream of the stream campaigns of each tier (0: no spend in that tier).".into(),
    )]);
    Ok(())
}

fn model_section(page: &mut Page, model: &artifact::Manifest) -> Result<(), ReportError> {
    page.section("model", "The model");
    let report = &model.training.report;
    page.facts(&[
        ("model version", model.model_version.clone()),
        ("trained on", model.training.data.clone()),
        ("base model", model.training.base_model.clone().unwrap_or_else(|| "none (trained from scratch)".into())),
        (
            "train / validation / test rows",
            format!(
                "{} / {} / {}",
                model.training.split_rows[0], model.training.split_rows[1], model.training.split_rows[2]
            ),
        ),
        ("best epoch", format!("{} of {}", report.best_epoch, report.epochs.len())),
        ("validation stream AP", format!("{:.4}", report.validation_stream_ap)),
        ("training time", format!("{:.1} s", report.seconds)),
        ("promotion-only towers", model.promotion_tasks.join(", ")),
    ]);
    let overall: Vec<_> = model.validation.metrics.iter().filter(|m| m.slice == "all").collect();
    let names: Vec<String> = overall.iter().map(|m| format!("{} / {}", m.task, m.channel)).collect();
    let ap: Vec<f64> = overall.iter().map(|m| m.ap.unwrap_or(0.0)).collect();
    let figure =
        bars("Average precision per task and channel", "AP on the validation days", &names, ("AP", &ap), None)?;
    page.figures(vec![(
        figure,
        "The model's average precision per task head and channel on its validation days (from the artifact).".into(),
    )]);
    let rows = model.validation.metrics.iter().map(metric_row).collect();
    page.note("AP and ROC-AUC on the validation days, per task, channel and stream tier of the impression's podcast.");
    page.table("model-table", &METRIC_HEADERS, rows, true);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_groups_thousands_and_keeps_cents() {
        assert_eq!(money(0.0), "0.00");
        assert_eq!(money(1234567.891), "1,234,567.89");
        assert_eq!(money(-999.5), "-999.50");
        assert_eq!(money(100.0), "100.00");
        assert_eq!(money(999.999), "1,000.00");
    }

    #[test]
    fn a_manifest_of_another_version_or_missing_a_field_is_refused_by_name() {
        let bad = |json: &str| parse_manifest("m.json", json.as_bytes()).unwrap_err().to_string();
        assert!(bad(r#"{"manifest_version": 7}"#).contains("manifest_version is 7"));
        assert!(bad(r#"{"run_id": "x"}"#).contains("manifest_version is missing"));
        assert!(bad(r#"{"manifest_version": 1, "run_id": "x"}"#).contains("missing field"));
        assert!(bad("not json").contains("not JSON"));
    }
}
