//! The run and model reports in a real browser: headless Chromium (Debian's,
//! which scripts/test.sh installs) dumps each page's DOM after its script ran,
//! takes a screenshot, and logs its network requests; the tests check the
//! sections and figures, and that the page asked nothing of any network.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::helpers::{audience, manifest_of, run_job, setup, stderr};

/// Debian's Chromium, or `AUDIENCE_CHROMIUM`. Missing is a failure, not a skip.
fn chromium() -> PathBuf {
    let binary =
        std::env::var_os("AUDIENCE_CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(
        binary.exists(),
        "{} not found: the browser tests need Chromium (scripts/test.sh installs Debian's chromium)",
        binary.display()
    );
    binary
}

pub(crate) struct Rendered {
    dom: String,
    screenshot: Vec<u8>,
    /// URLs the page itself requested (the browser's own background requests excluded).
    requests: Vec<String>,
}

/// Chromium headless, with the flags that keep the browser itself off the
/// network, a fresh profile, and `extra`.
fn browse(scratch: &Path, extra: &[String], page: &Path) -> std::process::Output {
    let profile = tempfile::tempdir_in(scratch).unwrap();
    let output = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(output.status.success(), "chromium failed on {}: {}", page.display(), stderr(&output));
    output
}

pub(crate) fn render(page: &Path, scratch: &Path) -> Rendered {
    let log = scratch.join("net-log.json");
    let dumped = browse(scratch, &["--dump-dom".into(), format!("--log-net-log={}", log.display())], page);
    let shot = scratch.join("screenshot.png");
    browse(scratch, &[format!("--screenshot={}", shot.display()), "--window-size=1280,1600".into()], page);
    Rendered {
        dom: String::from_utf8(dumped.stdout).unwrap(),
        screenshot: std::fs::read(&shot).unwrap(),
        requests: page_requests(&log),
    }
}

/// From Chromium's net log, the URL requests made for a `file://` page (the
/// browser's own update and account checks run with no page behind them).
fn page_requests(log: &Path) -> Vec<String> {
    let log: serde_json::Value = serde_json::from_slice(&std::fs::read(log).unwrap()).unwrap();
    let start_job = &log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"];
    log["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| &e["type"] == start_job)
        .filter(|e| {
            e["params"]["network_isolation_key"].as_str().is_some_and(|k| k.contains("file://"))
                || e["params"]["initiator"] == "null"
        })
        .map(|e| e["params"]["url"].as_str().unwrap_or_default().to_string())
        .collect()
}

pub(crate) fn assert_sections(rendered: &Rendered, sections: &[&str], at_least_figures: usize) {
    for id in sections {
        assert!(rendered.dom.contains(&format!("<section id=\"{id}\">")), "section {id} missing");
    }
    let figures = rendered.dom.matches("<figure").count();
    assert!(figures >= at_least_figures, "{figures} figures, expected at least {at_least_figures}");
    let svgs =
        rendered.dom.split("<figure").skip(1).filter(|f| f.contains("<svg") && f.contains("<figcaption>")).count();
    assert_eq!(svgs, figures, "every figure holds an SVG and a caption");
    // The sort script ran in the browser: it marks the headers it made sortable.
    assert!(rendered.dom.contains("<th class=\"sortable\""), "the inline script did not run");
    assert!(
        rendered.screenshot.starts_with(b"\x89PNG") && rendered.screenshot.len() > 20_000,
        "screenshot of {} bytes",
        rendered.screenshot.len()
    );
    assert_eq!(rendered.requests, Vec::<String>::new(), "the page made network requests");
}

#[test]
fn the_request_check_sees_a_page_that_fetches() {
    let scratch = tempfile::tempdir().unwrap();
    let page = scratch.path().join("fetches.html");
    std::fs::write(&page, "<!DOCTYPE html><html><body><img src=\"http://127.0.0.1:9/pixel.png\"></body></html>")
        .unwrap();
    let log = scratch.path().join("net-log.json");
    browse(scratch.path(), &["--dump-dom".into(), format!("--log-net-log={}", log.display())], &page);
    assert_eq!(page_requests(&log), vec!["http://127.0.0.1:9/pixel.png".to_string()]);
}

#[tokio::test]
async fn a_committed_run_has_a_report_a_browser_renders_and_bad_manifests_are_refused() {
    let setup = setup().await;
    let manifest = manifest_of(&run_job(&setup.config("job.toml", ""), &[], &[]));
    let run_dir = setup.date_dir().join(format!("run={}", manifest["run_id"].as_str().unwrap()));
    let report = run_dir.join("report.html");
    let html = std::fs::read_to_string(&report).expect("report.html beside the committed manifest");

    let scratch = tempfile::tempdir().unwrap();
    let rendered = render(&report, scratch.path());
    assert_sections(&rendered, &["summary", "campaigns", "withheld", "market", "tiers", "model"], 4);
    let campaigns = manifest["campaigns"].as_array().unwrap().len();
    let table = rendered.dom.split("id=\"campaign-table\"").nth(1).unwrap().split("</table>").next().unwrap();
    assert_eq!(table.matches("<tr>").count(), campaigns + 1, "a header row and one row per campaign");
    assert!(rendered.dom.contains(manifest["model_version"].as_str().unwrap()));

    // `audience report` renders the same page again from the manifest.
    let manifest_path = run_dir.join("manifest.json");
    let again = scratch.path().join("again.html");
    let output =
        audience(&["report", "--manifest", manifest_path.to_str().unwrap(), "--out", again.to_str().unwrap()], &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(std::fs::read_to_string(&again).unwrap(), html);

    // Another version, or a missing field: exit 2 naming it, nothing written.
    let original: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    let mut other_version = original.clone();
    other_version["manifest_version"] = 99.into();
    let mut missing_field = original.clone();
    missing_field.as_object_mut().unwrap().remove("campaigns");
    for (name, bad, expected) in
        [("version", other_version, "manifest_version is 99"), ("field", missing_field, "campaigns")]
    {
        let dir = scratch.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        let path = dir.join("manifest.json");
        std::fs::write(&path, serde_json::to_vec(&bad).unwrap()).unwrap();
        let output = audience(&["report", "--manifest", path.to_str().unwrap()], &[]);
        assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
        assert!(stderr(&output).contains(expected), "{name}: {}", stderr(&output));
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "{name}: something was written");
    }
}

#[tokio::test]
async fn the_model_report_draws_curves_calibration_and_tiers_in_a_browser() {
    let setup = setup().await;
    let scratch = tempfile::tempdir().unwrap();
    let page = scratch.path().join("model.html");
    let output = audience(
        &[
            "evaluate",
            "--data",
            setup.world.to_str().unwrap(),
            "--model",
            setup.model.to_str().unwrap(),
            "--report",
            page.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let rendered = render(&page, scratch.path());
    // Five precision-recall figures, five calibration figures, one by tier.
    assert_sections(&rendered, &["summary", "precision-recall", "calibration", "tiers", "metrics"], 11);
    for task in audience::contract::TASKS {
        assert!(
            rendered.dom.contains(&format!("{task}: precision-recall"))
                && rendered.dom.contains(&format!("{task}: calibration")),
            "{task}"
        );
    }
}
