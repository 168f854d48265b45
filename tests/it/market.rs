//! Issue 15: on a generated world the default objective (quality-weighted
//! spend) serves every channel × objective group and spends the budgets that
//! eligible supply allows; read back from the committed manifest and files.

use std::collections::BTreeMap;

use audience::model::train::TrainOptions;
use audience::model::workflow::train_and_save;
use audience::world::WorldConfig;
use audience::world::write::generate;

use crate::helpers::*;

/// A mid-sized world: enough users that floors rarely bind, enough campaigns
/// that every channel × objective group has several.
fn market_config() -> WorldConfig {
    WorldConfig { seed: 21, users: 20_000, podcasts: 300, campaigns: 90, impressions: 40_000, days: 6, ..WorldConfig::default() }
}

#[tokio::test]
async fn issue_15_every_channel_and_objective_is_served_and_budgets_are_spent() {
    let dir = tempfile::tempdir().unwrap();
    let (world, model, output) = (dir.path().join("world"), dir.path().join("model"), dir.path().join("out"));
    generate(&location(&world), market_config(), false).await.unwrap();
    let options = TrainOptions { max_epochs: 1, validation_days: 1, test_days: 1, ..TrainOptions::default() };
    train_and_save(&location(&world), &location(&model), &options, None).await.unwrap();

    let mut by_objective = BTreeMap::new();
    for objective in ["quality_spend", "events"] {
        let config = dir.path().join(format!("{objective}.toml"));
        let out = output.join(objective);
        std::fs::write(
            &config,
            format!(
                "[inputs]\nroot = \"{}\"\n[model]\nuri = \"{}\"\n[output]\nroot = \"{}\"\n[allocation]\nobjective = \"{objective}\"\n",
                world.display(),
                model.display(),
                out.display()
            ),
        )
        .unwrap();
        let date = market_config().run_date.to_string();
        let run = std::process::Command::new(env!("CARGO_BIN_EXE_audience"))
            .args(["run", "--config", config.to_str().unwrap(), "--date", &date])
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        assert_eq!(run.status.code(), Some(0), "{}", String::from_utf8_lossy(&run.stderr));
        let manifest_url = String::from_utf8(run.stdout).unwrap().trim().to_string();
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(manifest_url.trim_start_matches("file://")).unwrap()).unwrap();
        by_objective.insert(objective, manifest);
    }

    // Per channel × objective: (active campaigns, served, budget, spend).
    let groups = |manifest: &serde_json::Value| {
        let mut groups: BTreeMap<(String, String), (u32, u32, f64, f64)> = BTreeMap::new();
        for c in manifest["campaigns"].as_array().unwrap() {
            let key = (c["kind"].as_str().unwrap().to_string(), c["objective"].as_str().unwrap().to_string());
            let group = groups.entry(key).or_default();
            group.0 += 1;
            group.1 += (c["audience"].as_u64().unwrap() > 0) as u32;
            group.2 += c["budget"].as_f64().unwrap();
            group.3 += c["spend"].as_f64().unwrap();
        }
        groups
    };
    let currency = groups(&by_objective["quality_spend"]);
    let events = groups(&by_objective["events"]);
    assert_eq!(currency.len(), 6, "every channel × objective has active campaigns: {currency:?}");
    for (key, &(campaigns, served, budget, spend)) in &currency {
        assert!(served as f64 >= 0.75 * campaigns as f64, "{key:?}: {served} of {campaigns} served ({currency:?})");
        assert!(spend >= 0.75 * budget, "{key:?}: spent {spend:.2} of {budget:.2}");
    }
    let total = |groups: &BTreeMap<(String, String), (u32, u32, f64, f64)>| {
        groups.values().fold((0.0, 0.0), |(b, s), g| (b + g.2, s + g.3))
    };
    let (budget, spend) = total(&currency);
    assert!(spend >= 0.85 * budget, "spent {spend:.2} of {budget:.2}");
    // The old objective starves the rare objectives wherever caps bind.
    let rare = |groups: &BTreeMap<(String, String), (u32, u32, f64, f64)>| {
        groups.iter().filter(|((_, objective), _)| objective != "stream").map(|(_, g)| g.3).sum::<f64>()
    };
    assert!(rare(&currency) > rare(&events), "click and follow spend: {} vs {} on events", rare(&currency), rare(&events));

    // Withheld campaigns say why in terms an operator accepts.
    for c in by_objective["quality_spend"]["campaigns"].as_array().unwrap() {
        if let Some(reason) = c["withheld"].as_str() {
            assert!(reason.starts_with("only ") || reason.starts_with("its budget buys"), "{}: {reason}", c["campaign_id"]);
        }
    }
}
