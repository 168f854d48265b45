//! The config file's sections as written: each key's meaning, default and
//! accepted range (`RANGES`, checked by [`super::ranges`]).

use serde::{Deserialize, Serialize};

use super::ranges::Range;
use crate::allocate::{Limits, Solver, Valuation};
use crate::model::fused::Precision;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inputs {
    /// Root of the input tables: one prefix per table (`users/`, `campaigns/` ...).
    pub root: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSource {
    /// The model artifact directory (`audience train --out`).
    pub uri: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Output {
    /// Where `dt=<date>/` directories are written.
    pub root: String,
    /// An uncommitted run directory whose newest file is older than this is
    /// taken for abandoned (a crashed run) and removed; a younger one may
    /// still be written, and is left alone.
    #[serde(default = "default_abandoned_after_minutes")]
    pub abandoned_after_minutes: u64,
}

pub(super) fn default_abandoned_after_minutes() -> u64 {
    360
}

impl Output {
    pub const RANGES: &[Range<Output>] = &[Range {
        key: "output.abandoned_after_minutes",
        min: 0.0,
        max: 43_200.0,
        why: "0 takes every uncommitted run for abandoned (one writer only); at most 30 days",
        value: |o| o.abandoned_after_minutes as f64,
    }];
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Allocation {
    /// Ad campaigns one user may be in per run.
    pub max_ads_per_user: u32,
    /// Promotion campaigns one user may be in per run.
    pub max_promotions_per_user: u32,
    /// Smallest audience any campaign may have (raised per campaign by its `min_audience`).
    pub privacy_floor: u64,
    /// What a (user, campaign) pair is worth: `quality_spend` (currency, the
    /// default) or `events` (raw expected objective events).
    pub objective: Valuation,
    /// The allocation algorithm.
    pub solver: Solver,
    /// Seed of the tie-breaking hash.
    pub seed: u64,
    /// Start the price search from the previous committed run's prices (of
    /// the same campaigns): fewer iterations, and audiences that change less
    /// from day to day.
    pub warm_start: bool,
}

impl Allocation {
    pub const RANGES: &[Range<Allocation>] = &[
        Range {
            key: "allocation.max_ads_per_user",
            min: 0.0,
            max: 1_000.0,
            why: "ads a user may be targeted with per run; 0 serves no ads",
            value: |a| a.max_ads_per_user as f64,
        },
        Range {
            key: "allocation.max_promotions_per_user",
            min: 0.0,
            max: 1_000.0,
            why: "promotions a user may be targeted with per run; 0 serves none",
            value: |a| a.max_promotions_per_user as f64,
        },
        Range {
            key: "allocation.privacy_floor",
            min: 1.0,
            max: 1e9,
            why: "the smallest audience a campaign may have: at least 1 user, at most a billion",
            value: |a| a.privacy_floor as f64,
        },
    ];
}

impl Default for Allocation {
    fn default() -> Self {
        let limits = Limits::default();
        Allocation {
            max_ads_per_user: limits.max_ads_per_user,
            max_promotions_per_user: limits.max_promotions_per_user,
            privacy_floor: limits.privacy_floor,
            objective: Valuation::default(),
            solver: Solver::Lagrangian,
            seed: 0,
            warm_start: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Scoring {
    /// Candidate pool = slack × the most users a campaign's budget can buy.
    pub pool_slack: f64,
    /// Users per batch.
    pub batch_rows: usize,
    /// Hour of day assumed for the pair features.
    pub hour: u8,
    /// Number format of the per-pair layers: "fp32", or "bf16" on CPUs with
    /// AVX-512 BF16 (about twice as fast; audiences overlap fp32's ≥ 99%).
    pub precision: Precision,
}

impl Scoring {
    pub const RANGES: &[Range<Scoring>] = &[
        Range {
            key: "scoring.pool_slack",
            min: 1.0,
            max: 100.0,
            why: "a pool holds slack × the users a budget buys; past 100 pools only cost memory",
            value: |s| s.pool_slack,
        },
        Range {
            key: "scoring.batch_rows",
            min: 1.0,
            max: 262_144.0,
            why: "users scored at once; a batch costs about 1 KiB a user per partition",
            value: |s| s.batch_rows as f64,
        },
        Range { key: "scoring.hour", min: 0.0, max: 23.0, why: "an hour of the day", value: |s| s.hour as f64 },
    ];
}

impl Default for Scoring {
    fn default() -> Self {
        Scoring { pool_slack: 2.0, batch_rows: 16_384, hour: 20, precision: Precision::Fp32 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum EngineKind {
    /// DataFusion in this process.
    #[default]
    Local,
    /// A Ballista cluster (`scheduler` names it).
    Ballista,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineSection {
    /// Where scoring runs.
    pub kind: EngineKind,
    /// Partitions (0: one per core).
    pub partitions: usize,
    /// Ballista scheduler URL, e.g. `df://scheduler:50050`.
    pub scheduler: Option<String>,
    /// The most a cluster's scoring may take before the job gives up with
    /// exit 3 (a cluster with no live executor never finishes).
    pub timeout_seconds: u64,
}

impl EngineSection {
    pub const RANGES: &[Range<EngineSection>] = &[
        Range {
            key: "engine.partitions",
            min: 0.0,
            max: 4_096.0,
            why: "0: one per core; each partition holds a batch and its pools",
            value: |e| e.partitions as f64,
        },
        Range {
            key: "engine.timeout_seconds",
            min: 10.0,
            max: 604_800.0,
            why: "how long a cluster's scoring may take: 10 s to 7 days",
            value: |e| e.timeout_seconds as f64,
        },
    ];
}

impl Default for EngineSection {
    fn default() -> Self {
        EngineSection { kind: EngineKind::Local, partitions: 0, scheduler: None, timeout_seconds: 4 * 3600 }
    }
}
