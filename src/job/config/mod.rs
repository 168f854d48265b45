//! The job configuration: a TOML file (examples under `configs/`) whose
//! string values may hold `${VAR}`, `${VAR:-default}` and `${VAR:?message}`,
//! expanded from the environment after parsing, inside each string: a
//! variable's value is text, never TOML, so it cannot add or change a key
//! (a privacy floor, say). Unknown keys are errors, so a typo cannot
//! silently fall back to a default. The file's shape ([`ConfigFile`]) is turned
//! once into a validated [`JobConfig`] (locations opened with the `[storage.*]`
//! settings, the engine resolved), and every problem is reported at once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::allocate::Limits;
use crate::model::fused::Precision;
use crate::scoring::ScoreOptions;
use crate::storage::{Location, StorageError, StorageOptions};

mod expand;
pub mod ranges;
#[cfg(test)]
mod reference;
mod sections;

pub use expand::expand;
use expand::expand_strings;
use sections::default_abandoned_after_minutes;
pub use sections::{Allocation, EngineKind, EngineSection, Inputs, ModelSource, Output, Scoring};

/// The config file as written (after environment expansion).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Where the input tables are read from.
    pub inputs: Inputs,
    /// The trained model the run scores with.
    pub model: ModelSource,
    /// Where runs are written and committed.
    pub output: Output,
    /// Budgets, caps and floors: how audiences are chosen from the scores.
    #[serde(default)]
    pub allocation: Allocation,
    /// How every eligible pair is scored.
    #[serde(default)]
    pub scoring: Scoring,
    /// Where scoring runs: in this process, or on a Ballista cluster.
    #[serde(default)]
    pub engine: EngineSection,
    /// Object-store client settings by scheme (no credentials).
    #[serde(default)]
    pub storage: StorageOptions,
}

impl ConfigFile {
    /// This config as it may be logged or recorded (in a manifest): the user
    /// info of every URL in it (`http://user:password@host`) redacted.
    pub fn redacted(&self) -> ConfigFile {
        let mut file = self.clone();
        for url in [&mut file.inputs.root, &mut file.model.uri, &mut file.output.root] {
            *url = redact_url(url);
        }
        file.engine.scheduler = file.engine.scheduler.as_deref().map(redact_url);
        for options in [&mut file.storage.s3, &mut file.storage.gcs, &mut file.storage.azure] {
            options.values_mut().for_each(|value| *value = redact_url(value));
        }
        file
    }
}

/// `text` with the user info of a URL replaced by `redacted`; any other text
/// unchanged.
fn redact_url(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut url) if !url.username().is_empty() || url.password().is_some() => {
            let _ = url.set_password(None);
            let _ = url.set_username("redacted");
            url.to_string()
        }
        _ => text.to_string(),
    }
}

/// A validated job config: what `run`, `backfill` and `validate --config` use.
#[derive(Debug, Clone)]
pub struct JobConfig {
    /// The file it came from, as recorded in each run's manifest.
    pub file: ConfigFile,
    /// Root of the input tables, opened with the storage settings.
    pub inputs: Location,
    /// The model artifact directory.
    pub model: Location,
    /// Where `dt=<date>/` directories are written.
    pub output: Location,
    pub engine: Engine,
    pub allocation: Allocation,
    pub scoring: Scoring,
    pub storage: StorageOptions,
}

/// Where scoring runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Engine {
    /// DataFusion in this process.
    Local { partitions: usize },
    /// A Ballista cluster behind `scheduler` (e.g. `df://scheduler:50050`).
    Ballista { scheduler: String, partitions: usize },
}

impl Engine {
    /// Partitions of the users scan (0: one per core).
    pub fn partitions(&self) -> usize {
        match self {
            Engine::Local { partitions } | Engine::Ballista { partitions, .. } => *partitions,
        }
    }
}

impl ConfigFile {
    /// A config reading `inputs` and `model` and writing under `output`, every
    /// other setting at its default.
    pub fn with_defaults(inputs: String, model: String, output: String) -> ConfigFile {
        ConfigFile {
            inputs: Inputs { root: inputs },
            model: ModelSource { uri: model },
            output: Output { root: output, abandoned_after_minutes: default_abandoned_after_minutes() },
            allocation: Default::default(),
            scoring: Default::default(),
            engine: Default::default(),
            storage: Default::default(),
        }
    }
}

/// Every numeric key with its range and reason, for the docs: (key, range, why).
pub fn numeric_keys() -> Vec<(&'static str, String, &'static str)> {
    fn rows<S>(ranges: &[ranges::Range<S>]) -> impl Iterator<Item = (&'static str, String, &'static str)> + '_ {
        ranges.iter().map(|r| (r.key, r.describe(), r.why))
    }
    rows(Output::RANGES)
        .chain(rows(Allocation::RANGES))
        .chain(rows(Scoring::RANGES))
        .chain(rows(EngineSection::RANGES))
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Every problem found in the file, one message each.
    #[error("config {file}: {}", problems.join("; "))]
    Invalid { file: String, problems: Vec<String> },
}

pub(super) fn invalid(file: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { file: file.to_string(), problems: vec![message.into()] }
}

impl JobConfig {
    /// Reads, expands (from the process environment) and checks a config file.
    pub fn load(path: &std::path::Path) -> Result<JobConfig, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| invalid(&file, format!("cannot read: {e}")))?;
        JobConfig::parse(&text, &file, |name| std::env::var(name).ok())
    }

    pub fn parse(text: &str, file: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<JobConfig, ConfigError> {
        let mut document: toml::Value = toml::from_str(text).map_err(|e| invalid(file, e.to_string()))?;
        expand_strings(&mut document, file, &lookup)?;
        let parsed: ConfigFile = serde_path_to_error::deserialize(document).map_err(|e| {
            let key = e.path().to_string();
            invalid(file, if key == "." { e.inner().to_string() } else { format!("{key}: {}", e.inner()) })
        })?;
        JobConfig::try_from(parsed).map_err(|problems| ConfigError::Invalid { file: file.to_string(), problems })
    }

    /// Opens another location (not one of the config's own) with its storage settings.
    pub fn location(&self, url: &str) -> Result<Location, StorageError> {
        Location::parse_with(url, &self.storage)
    }

    /// Scoring settings for a run of `date`.
    pub fn score_options(&self, date: chrono::NaiveDate) -> ScoreOptions {
        ScoreOptions {
            slack: self.scoring.pool_slack,
            partitions: self.engine.partitions(),
            batch_rows: self.scoring.batch_rows,
            hour: self.scoring.hour,
            precision: self.scoring.precision,
            ..ScoreOptions::new(date)
        }
    }

    /// How old an uncommitted run directory's newest file must be for the
    /// directory to count as abandoned.
    pub fn abandoned_after(&self) -> chrono::Duration {
        chrono::Duration::minutes(self.file.output.abandoned_after_minutes.min(i32::MAX as u64) as i64)
    }

    /// The allocator's options as this config sets them; `warm_start` holds
    /// a starting price per campaign (empty: start cold).
    pub fn allocate_options(&self, warm_start: Vec<Option<f64>>) -> crate::allocate::Options {
        crate::allocate::Options {
            limits: self.limits(),
            solver: self.allocation.solver,
            seed: self.allocation.seed,
            warm_start,
            ..Default::default()
        }
    }

    pub fn limits(&self) -> Limits {
        Limits {
            max_ads_per_user: self.allocation.max_ads_per_user,
            max_promotions_per_user: self.allocation.max_promotions_per_user,
            privacy_floor: self.allocation.privacy_floor,
        }
    }

    /// SHA-256 of the settings that decide the audiences (allocation and
    /// scoring, not where things live or which engine runs them).
    pub fn hash(&self) -> String {
        let mut decisive = BTreeMap::new();
        decisive.insert("allocation", serde_json::to_value(&self.allocation).expect("serialises"));
        decisive.insert("scoring.pool_slack", self.scoring.pool_slack.into());
        decisive.insert("scoring.hour", self.scoring.hour.into());
        // Absent means fp32, so runs committed before the setting existed
        // keep their fingerprint.
        if self.scoring.precision != Precision::Fp32 {
            decisive.insert("scoring.precision", self.scoring.precision.as_str().into());
        }
        hex::encode(Sha256::digest(serde_json::to_vec(&decisive).expect("serialises")))
    }
}

impl TryFrom<ConfigFile> for JobConfig {
    /// Every problem, one message each.
    type Error = Vec<String>;

    fn try_from(file: ConfigFile) -> Result<JobConfig, Vec<String>> {
        let mut problems = Vec::new();
        if let Err(message) = file.storage.check() {
            problems.push(message);
        }
        let mut open = |key: &str, url: &str| {
            if url.trim().is_empty() {
                problems.push(format!("{key} is empty"));
                return None;
            }
            Location::parse_with(url, &file.storage).map_err(|e| problems.push(format!("{key}: {e}"))).ok()
        };
        let inputs = open("inputs.root", &file.inputs.root);
        let model = open("model.uri", &file.model.uri);
        let output = open("output.root", &file.output.root);
        let scoring = &file.scoring;
        ranges::check(&file.output, Output::RANGES, &mut problems);
        ranges::check(&file.allocation, Allocation::RANGES, &mut problems);
        ranges::check(scoring, Scoring::RANGES, &mut problems);
        ranges::check(&file.engine, EngineSection::RANGES, &mut problems);
        // The local engine scores here; a cluster's executors check their own CPUs.
        if file.engine.kind == EngineKind::Local
            && let Err(e) = scoring.precision.check()
        {
            problems.push(e.to_string());
        }
        let partitions = file.engine.partitions;
        let engine = match (file.engine.kind, &file.engine.scheduler) {
            (EngineKind::Local, _) => Some(Engine::Local { partitions }),
            (EngineKind::Ballista, Some(scheduler)) => {
                Some(Engine::Ballista { scheduler: scheduler.clone(), partitions })
            }
            (EngineKind::Ballista, None) => {
                problems.push(
                    "engine.kind = \"ballista\" needs engine.scheduler (e.g. \"df://localhost:50050\")".to_string(),
                );
                None
            }
        };
        match (inputs, model, output, engine) {
            (Some(inputs), Some(model), Some(output), Some(engine)) if problems.is_empty() => Ok(JobConfig {
                inputs,
                model,
                output,
                engine,
                allocation: file.allocation.clone(),
                scoring: file.scoring.clone(),
                storage: file.storage.clone(),
                file,
            }),
            _ => Err(problems),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A test environment: BUCKET is set, EMPTY is empty, nothing else is.
    pub(super) fn env(name: &str) -> Option<String> {
        match name {
            "BUCKET" => Some("prod".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    const MINIMAL: &str = "[inputs]\nroot = \"w\"\n[model]\nuri = \"m\"\n[output]\nroot = \"o\"\n";

    #[test]
    fn defaults_fill_in_and_unknown_keys_are_rejected() {
        let config = JobConfig::parse(MINIMAL, "f", env).unwrap();
        assert_eq!(config.allocation.privacy_floor, 100);
        assert_eq!(config.scoring.pool_slack, 2.0);
        let err =
            JobConfig::parse(&format!("{MINIMAL}[scoring]\npool_slak = 3\n"), "job.toml", env).unwrap_err().to_string();
        assert!(err.contains("job.toml") && err.contains("pool_slak"), "{err}");
    }

    #[test]
    fn storage_options_are_checked_and_credentials_refused() {
        let ok = format!("{MINIMAL}[storage.s3]\nendpoint = \"http://127.0.0.1:9000\"\nallow_http = \"true\"\n");
        let config = JobConfig::parse(&ok, "f", env).unwrap();
        assert_eq!(config.storage.s3["endpoint"], "http://127.0.0.1:9000");
        let secret = format!("{MINIMAL}[storage.s3]\nsecret_access_key = \"abc\"\n");
        let err = JobConfig::parse(&secret, "job.toml", env).unwrap_err().to_string();
        assert!(err.contains("storage.s3.secret_access_key is a credential") && !err.contains("abc"), "{err}");
        let typo = format!("{MINIMAL}[storage.azure]\nuse_emulatr = \"true\"\n");
        let err = JobConfig::parse(&typo, "job.toml", env).unwrap_err().to_string();
        assert!(err.contains("storage.azure: unknown key \"use_emulatr\""), "{err}");
        let unsafe_put = format!("{MINIMAL}[storage.s3]\nconditional_put = \"disabled\"\n");
        assert!(JobConfig::parse(&unsafe_put, "f", env).unwrap_err().to_string().contains("create-only"));
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = "[inputs]\nroot = \"\"\n[model]\nuri = \"ftp://x/m\"\n[output]\nroot = \"o\"\n\
                    [scoring]\npool_slack = 0.5\nhour = 30\n[engine]\nkind = \"ballista\"\n";
        let err = JobConfig::parse(text, "job.toml", env).unwrap_err().to_string();
        for expected in [
            "inputs.root is empty",
            "model.uri: bad storage URL",
            "scoring.pool_slack = 0.5",
            "scoring.hour = 30",
            "needs engine.scheduler",
        ] {
            assert!(err.contains(expected), "missing {expected:?} in {err}");
        }
    }

    #[test]
    fn bf16_is_checked_against_this_cpu_and_changes_the_fingerprint() {
        let text = format!("{MINIMAL}[scoring]\nprecision = \"bf16\"\n");
        match JobConfig::parse(&text, "job.toml", env) {
            Ok(config) => {
                assert!(crate::model::fused::bf16_supported(), "bf16 accepted on a CPU without it");
                assert_ne!(config.hash(), JobConfig::parse(MINIMAL, "f", env).unwrap().hash());
            }
            Err(err) => {
                assert!(!crate::model::fused::bf16_supported(), "bf16 refused on a CPU with it: {err}");
                assert!(err.to_string().contains("scoring.precision = \"bf16\""), "{err}");
            }
        }
        let fp32 = format!("{MINIMAL}[scoring]\nprecision = \"fp32\"\n");
        assert_eq!(
            JobConfig::parse(&fp32, "f", env).unwrap().hash(),
            JobConfig::parse(MINIMAL, "f", env).unwrap().hash()
        );
        let typo = format!("{MINIMAL}[scoring]\nprecision = \"fp16\"\n");
        assert!(JobConfig::parse(&typo, "f", env).unwrap_err().to_string().contains("fp16"));
    }

    #[test]
    fn the_hash_follows_decisive_settings_only() {
        let a = JobConfig::parse(MINIMAL, "f", env).unwrap();
        let mut b = a.clone();
        b.engine = Engine::Local { partitions: 7 };
        b.output = Location::parse("elsewhere").unwrap();
        assert_eq!(a.hash(), b.hash());
        b.allocation.privacy_floor = 50;
        assert_ne!(a.hash(), b.hash());
    }

    #[test]
    fn every_checked_in_config_and_every_config_snippet_in_the_docs_parses() {
        let root = env!("CARGO_MANIFEST_DIR");
        let lookup = |name: &str| {
            name.starts_with("AUDIENCE_")
                .then(|| "s3://bucket/x".to_string())
                .filter(|_| !["AUDIENCE_ENGINE", "AUDIENCE_SCHEDULER", "AUDIENCE_DEMO_DIR"].contains(&name))
        };
        let mut configs: Vec<_> = std::fs::read_dir(format!("{root}/configs"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        configs.sort();
        assert!(configs.len() >= 4, "{configs:?}");
        for path in &configs {
            let text = std::fs::read_to_string(path).unwrap();
            JobConfig::parse(&text, &path.display().to_string(), lookup).unwrap_or_else(|e| panic!("{e}"));
        }
        // A snippet in the docs may show a few sections; the required ones are added where absent.
        let mut docs: Vec<_> = std::fs::read_dir(format!("{root}/docs")).unwrap().map(|e| e.unwrap().path()).collect();
        docs.push(format!("{root}/README.md").into());
        let mut snippets = 0;
        for doc in docs.iter().filter(|p| p.extension().is_some_and(|e| e == "md")) {
            let text = std::fs::read_to_string(doc).unwrap();
            for snippet in text.split("```toml\n").skip(1).map(|s| s.split("```").next().unwrap_or_default()) {
                let mut full = snippet.to_string();
                for (section, line) in
                    [("[inputs]", "root = \"w\""), ("[model]", "uri = \"m\""), ("[output]", "root = \"o\"")]
                {
                    if !snippet.contains(section) {
                        full = format!("{section}\n{line}\n{full}");
                    }
                }
                // A snippet's own sections follow the added ones: TOML has no way back to the root table.
                JobConfig::parse(&full, &doc.display().to_string(), lookup)
                    .unwrap_or_else(|e| panic!("a config snippet in {} does not parse: {e}\n{snippet}", doc.display()));
                snippets += 1;
            }
        }
        assert!(snippets > 0, "no ```toml snippet found in the docs");
        let nightly = std::fs::read_to_string(format!("{root}/configs/nightly.toml")).unwrap();
        let err = JobConfig::parse(&nightly, "nightly.toml", |_| None).unwrap_err().to_string();
        assert!(err.contains("set AUDIENCE_INPUTS"), "{err}");
    }
}
