//! The model's features: which columns feed it and how each is encoded, split
//! into the three parts the first layer is factorised over (docs/design.md §5):
//!
//! - **user**: hashed `country`, `age_bucket`, `platform`, `language`; dense
//!   ln(1+`listening_hours_30d`), ln(1+`follows_count`), ln(1+`searches_30d`) and
//!   the `genre_affinity` vector;
//! - **campaign** (campaign joined with its podcast): hashed `podcast_id`,
//!   `campaign_id`, `kind`, `format`, `surface`, `genre`, `podcast_language` and up
//!   to three `topics`; dense log10(1+`streams_30d`) and `is_original`;
//! - **pair**: the user's affinity for the podcast's genre, language match, and
//!   the hour of day (sin, cos).
//!
//! Encoders turn Arrow batches into raw rows (hash buckets, untransformed dense
//! values); the network normalises dense values with the statistics stored in
//! the [`FeatureSpec`], so one spec in `model.json` fully describes the input.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Float32Type, Float64Type, Int64Type};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use crate::contract::{GENRE_COUNT, GENRES};
use crate::hashing::{hash_bytes, hash_field};

/// Bumped whenever the same spec would encode a row differently.
pub const FEATURE_VERSION: u32 = 1;

/// Most topics of a podcast the model reads (the rest are ignored).
pub const TOPIC_SLOTS: usize = 3;

/// A hashed categorical feature: `slots` values (usually 1) each hashed into
/// `buckets` and embedded in `dim` dimensions; slots are summed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Categorical {
    pub name: String,
    pub buckets: i64,
    pub dim: i64,
    pub slots: usize,
}

/// A dense feature and its normalisation, `(x - mean) / std`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dense {
    pub name: String,
    pub mean: f32,
    pub std: f32,
}

/// The features of one part of the input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Side {
    pub categorical: Vec<Categorical>,
    pub dense: Vec<Dense>,
}

impl Side {
    /// Width of the encoded categorical row (one column per slot).
    pub fn cat_width(&self) -> usize {
        self.categorical.iter().map(|c| c.slots).sum()
    }

    /// Width of the input this side feeds the first layer.
    pub fn input_width(&self) -> i64 {
        self.categorical.iter().map(|c| c.dim).sum::<i64>() + self.dense.len() as i64
    }

    fn names(&self) -> Vec<&str> {
        self.categorical.iter().map(|c| c.name.as_str()).chain(self.dense.iter().map(|d| d.name.as_str())).collect()
    }
}

/// Everything needed to encode input rows the way a model was trained on them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSpec {
    pub version: u32,
    pub genres: Vec<String>,
    pub user: Side,
    pub campaign: Side,
    pub pair: Side,
}

fn cat(name: &str, buckets: i64, dim: i64) -> Categorical {
    Categorical { name: name.to_string(), buckets, dim, slots: 1 }
}

fn dense(name: impl Into<String>) -> Dense {
    Dense { name: name.into(), mean: 0.0, std: 1.0 }
}

impl Default for FeatureSpec {
    /// The spec of this version, with identity normalisation.
    fn default() -> Self {
        let mut user_dense: Vec<Dense> =
            ["log_listening_hours_30d", "log_follows_count", "log_searches_30d"].into_iter().map(dense).collect();
        user_dense.extend(GENRES.iter().map(|g| dense(format!("genre_affinity.{g}"))));
        FeatureSpec {
            version: FEATURE_VERSION,
            genres: GENRES.iter().map(|g| g.to_string()).collect(),
            user: Side {
                categorical: vec![
                    cat("country", 64, 8),
                    cat("age_bucket", 16, 4),
                    cat("platform", 16, 4),
                    cat("language", 64, 8),
                ],
                dense: user_dense,
            },
            campaign: Side {
                categorical: vec![
                    cat("podcast_id", 8192, 16),
                    cat("campaign_id", 2048, 8),
                    cat("kind", 4, 4),
                    cat("format", 8, 4),
                    cat("surface", 32, 4),
                    cat("genre", 64, 8),
                    cat("podcast_language", 64, 8),
                    Categorical { name: "topics".into(), buckets: 256, dim: 8, slots: TOPIC_SLOTS },
                ],
                dense: vec![dense("log_streams_30d"), dense("is_original")],
            },
            pair: Side {
                categorical: vec![],
                dense: ["affinity_for_podcast_genre", "language_match", "hour_sin", "hour_cos"]
                    .into_iter()
                    .map(dense)
                    .collect(),
            },
        }
    }
}

/// Why a spec or an input cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FeatureError {
    #[error("{table}: missing column {column:?} that the model reads")]
    MissingColumn { table: String, column: String },
    #[error("{table}: column {column:?} has type {actual}, the model reads {expected}")]
    WrongType { table: String, column: String, actual: String, expected: String },
    #[error("{table}: column {column:?} has a null at row {row}")]
    Null { table: String, column: String, row: usize },
    #[error("{table}: genre_affinity has {actual} values at row {row}; the model was trained with {expected} genres")]
    GenreCount { table: String, row: usize, actual: usize, expected: usize },
    #[error("model feature spec is incompatible with this build: {0}")]
    Incompatible(String),
}

impl FeatureSpec {
    /// Checks that a spec read from an artifact encodes rows the way this code
    /// does: same version, genre vocabulary and feature names in the same order.
    pub fn check_compatible(&self) -> Result<(), FeatureError> {
        let ours = FeatureSpec::default();
        if self.version != ours.version {
            return Err(FeatureError::Incompatible(format!(
                "feature version {} (this build encodes version {})",
                self.version, ours.version
            )));
        }
        if self.genres != ours.genres {
            return Err(FeatureError::Incompatible(format!(
                "the model has {} genres {:?}, this build has {} genres",
                self.genres.len(),
                self.genres,
                ours.genres.len()
            )));
        }
        for (part, theirs, ours) in [
            ("user", &self.user, &ours.user),
            ("campaign", &self.campaign, &ours.campaign),
            ("pair", &self.pair, &ours.pair),
        ] {
            if theirs.names() != ours.names() {
                return Err(FeatureError::Incompatible(format!(
                    "{part} features {:?}, this build reads {:?}",
                    theirs.names(),
                    ours.names()
                )));
            }
            if let Some(bad) = theirs.categorical.iter().find(|c| c.buckets < 1 || c.dim < 1 || c.slots < 1) {
                return Err(FeatureError::Incompatible(format!(
                    "categorical feature {:?} has an empty size",
                    bad.name
                )));
            }
            if let Some(bad) = theirs.dense.iter().find(|d| !d.mean.is_finite() || d.std.is_nan() || d.std <= 0.0) {
                return Err(FeatureError::Incompatible(format!(
                    "dense feature {:?} has invalid normalisation",
                    bad.name
                )));
            }
        }
        Ok(())
    }

    /// Sets each dense feature's mean and std from encoded rows (`values` is
    /// row-major with `side.dense.len()` columns). Constant columns get std 1.
    pub fn fit_normalisation(side: &mut Side, values: &[f32]) {
        let width = side.dense.len();
        let rows = (values.len() / width.max(1)).max(1) as f64;
        for (j, feature) in side.dense.iter_mut().enumerate() {
            let column = values.iter().skip(j).step_by(width).map(|&v| v as f64);
            let (sum, sum_sq) = column.fold((0.0, 0.0), |(s, q), v| (s + v, q + v * v));
            let mean = sum / rows;
            let var = (sum_sq / rows - mean * mean).max(0.0);
            feature.mean = mean as f32;
            feature.std = if var.sqrt() > 1e-6 { var.sqrt() as f32 } else { 1.0 };
        }
    }
}

/// Encoded rows of one side: `cat` is row-major `n × cat_width` bucket indices
/// (a missing slot holds `buckets`, the padding row), `dense` row-major raw values.
#[derive(Debug, Clone, Default)]
pub struct Rows {
    pub n: usize,
    pub cat: Vec<i64>,
    pub dense: Vec<f32>,
}

impl Rows {
    pub fn extend(&mut self, other: Rows) {
        self.n += other.n;
        self.cat.extend(other.cat);
        self.dense.extend(other.dense);
    }
}

/// Users encoded, plus what pair features need: the raw genre affinity and a
/// hash of the language.
#[derive(Debug, Clone, Default)]
pub struct UserRows {
    pub rows: Rows,
    pub user_id: Vec<i64>,
    pub language: Vec<u64>,
}

impl UserRows {
    /// The user's raw share of listening in genre `genre`.
    pub fn affinity(&self, row: usize, genre: usize) -> f32 {
        self.rows.dense[row * (USER_NUMERIC + GENRE_COUNT) + USER_NUMERIC + genre]
    }
}

/// Campaigns (joined with their podcasts) encoded, plus the podcast's genre
/// index and language hash for pair features.
#[derive(Debug, Clone, Default)]
pub struct CampaignRows {
    pub rows: Rows,
    pub genre: Vec<usize>,
    pub language: Vec<u64>,
}

const USER_NUMERIC: usize = 3;

/// The pair features of one (user, campaign) at an hour of day.
pub fn pair_features(affinity_for_genre: f32, language_match: bool, hour: u8) -> [f32; 4] {
    let angle = (hour as f32 - 20.0) / 24.0 * std::f32::consts::TAU;
    [affinity_for_genre, language_match as u8 as f32, angle.sin(), angle.cos()]
}

/// Reads named columns of a batch, cast to the type the encoder wants, with
/// errors that name the table and column.
pub(crate) struct Columns<'a> {
    table: &'a str,
    batch: &'a RecordBatch,
}

impl<'a> Columns<'a> {
    pub(crate) fn new(table: &'a str, batch: &'a RecordBatch) -> Columns<'a> {
        Columns { table, batch }
    }

    /// Column `name` cast to `to`; missing, uncastable or null values are errors.
    pub(crate) fn get(&self, name: &str, to: &DataType) -> Result<Arc<dyn Array>, FeatureError> {
        let column = self
            .batch
            .column_by_name(name)
            .ok_or_else(|| FeatureError::MissingColumn { table: self.table.to_string(), column: name.to_string() })?;
        let column = cast(column, to).map_err(|_| FeatureError::WrongType {
            table: self.table.to_string(),
            column: name.to_string(),
            actual: column.data_type().to_string(),
            expected: to.to_string(),
        })?;
        if let Some(row) = (0..column.len()).find(|&i| column.is_null(i)) {
            return Err(FeatureError::Null { table: self.table.to_string(), column: name.to_string(), row });
        }
        Ok(column)
    }

    /// String values hashed with the feature name, as bucket indices.
    fn buckets(&self, column: &str, feature: &Categorical) -> Result<Vec<i64>, FeatureError> {
        let array = self.get(column, &DataType::Utf8)?;
        Ok(array.as_string::<i32>().iter().map(|v| bucket(feature, v.unwrap_or_default().as_bytes())).collect())
    }

    fn strings(&self, column: &str) -> Result<Vec<String>, FeatureError> {
        let array = self.get(column, &DataType::Utf8)?;
        Ok(array.as_string::<i32>().iter().map(|v| v.unwrap_or_default().to_string()).collect())
    }

    fn f64s(&self, column: &str) -> Result<Vec<f64>, FeatureError> {
        let array = self.get(column, &DataType::Float64)?;
        Ok(array.as_primitive::<Float64Type>().values().to_vec())
    }

    fn i64s(&self, column: &str) -> Result<Vec<i64>, FeatureError> {
        let array = self.get(column, &DataType::Int64)?;
        Ok(array.as_primitive::<Int64Type>().values().to_vec())
    }
}

fn bucket(feature: &Categorical, value: &[u8]) -> i64 {
    (hash_field(&feature.name, value) % feature.buckets as u64) as i64
}

fn find<'a>(side: &'a Side, name: &str) -> &'a Categorical {
    side.categorical.iter().find(|c| c.name == name).expect("feature of this spec version")
}

/// Encodes users: columns `user_id`, `country`, `age_bucket`, `platform`,
/// `language`, `listening_hours_30d`, `follows_count`, `searches_30d`,
/// `genre_affinity` (other columns are ignored). `table` names the input in errors.
pub fn encode_users(spec: &FeatureSpec, table: &str, batch: &RecordBatch) -> Result<UserRows, FeatureError> {
    let columns = Columns { table, batch };
    let n = batch.num_rows();
    let side = &spec.user;
    let cats: Vec<Vec<i64>> = ["country", "age_bucket", "platform", "language"]
        .iter()
        .map(|name| columns.buckets(name, find(side, name)))
        .collect::<Result<_, _>>()?;
    let hours = columns.f64s("listening_hours_30d")?;
    let follows = columns.f64s("follows_count")?;
    let searches = columns.f64s("searches_30d")?;
    let genres = spec.genres.len();
    let affinity_type = DataType::List(Arc::new(Field::new("item", DataType::Float32, true)));
    let affinity = columns.get("genre_affinity", &affinity_type)?;
    let affinity = affinity.as_list::<i32>();
    let values = affinity.values().as_primitive::<Float32Type>();
    let mut out = UserRows { rows: Rows { n, ..Rows::default() }, ..UserRows::default() };
    out.rows.cat.reserve(n * 4);
    out.rows.dense.reserve(n * (USER_NUMERIC + genres));
    for row in 0..n {
        out.rows.cat.extend(cats.iter().map(|c| c[row]));
        out.rows.dense.extend([
            (hours[row] as f32).ln_1p(),
            (follows[row] as f32).ln_1p(),
            (searches[row] as f32).ln_1p(),
        ]);
        let offsets = affinity.value_offsets();
        let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
        if end - start != genres {
            return Err(FeatureError::GenreCount {
                table: table.to_string(),
                row,
                actual: end - start,
                expected: genres,
            });
        }
        out.rows.dense.extend_from_slice(&values.values()[start..end]);
    }
    out.user_id = columns.i64s("user_id")?;
    out.language = columns.strings("language")?.iter().map(|l| hash_bytes(l.as_bytes())).collect();
    Ok(out)
}

/// Encodes campaigns joined with their podcasts: columns `campaign_id`, `kind`,
/// `format`, `surface`, `podcast_id`, `genre`, `podcast_language`, `topics`,
/// `streams_30d`, `is_original`.
pub fn encode_campaigns(spec: &FeatureSpec, table: &str, batch: &RecordBatch) -> Result<CampaignRows, FeatureError> {
    let columns = Columns { table, batch };
    let n = batch.num_rows();
    let side = &spec.campaign;
    let podcast = find(side, "podcast_id");
    let podcast_ids: Vec<i64> =
        columns.i64s("podcast_id")?.iter().map(|id| bucket(podcast, &id.to_le_bytes())).collect();
    let named: Vec<Vec<i64>> = [
        ("campaign_id", "campaign_id"),
        ("kind", "kind"),
        ("format", "format"),
        ("surface", "surface"),
        ("genre", "genre"),
        ("podcast_language", "podcast_language"),
    ]
    .iter()
    .map(|(column, feature)| columns.buckets(column, find(side, feature)))
    .collect::<Result<_, _>>()?;
    let topics_feature = find(side, "topics");
    let topics_type = DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)));
    let topics = columns.get("topics", &topics_type)?;
    let topics = topics.as_list::<i32>();
    let topic_values = topics.values().as_string::<i32>();
    let streams = columns.f64s("streams_30d")?;
    let original = columns.get("is_original", &DataType::Boolean)?;
    let original = original.as_boolean();
    let genre_names = columns.strings("genre")?;
    let languages = columns.strings("podcast_language")?;

    let mut out = CampaignRows { rows: Rows { n, ..Rows::default() }, ..CampaignRows::default() };
    for row in 0..n {
        out.rows.cat.push(podcast_ids[row]);
        out.rows.cat.extend(named.iter().map(|c| c[row]));
        let offsets = topics.value_offsets();
        let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
        for slot in 0..topics_feature.slots {
            let index = start + slot;
            out.rows.cat.push(if index < end && topic_values.is_valid(index) {
                bucket(topics_feature, topic_values.value(index).as_bytes())
            } else {
                topics_feature.buckets
            });
        }
        out.rows
            .dense
            .extend([(streams[row] as f32).ln_1p() / std::f32::consts::LN_10, original.value(row) as u8 as f32]);
        let genre = spec.genres.iter().position(|g| *g == genre_names[row]).ok_or_else(|| FeatureError::WrongType {
            table: table.to_string(),
            column: "genre".to_string(),
            actual: format!("unknown genre {:?}", genre_names[row]),
            expected: "one of the model's genres".to_string(),
        })?;
        out.genre.push(genre);
        out.language.push(hash_bytes(languages[row].as_bytes()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_spec_is_compatible_and_a_changed_one_is_not() {
        let spec = FeatureSpec::default();
        spec.check_compatible().unwrap();
        let mut fewer = spec.clone();
        fewer.genres.pop();
        let err = fewer.check_compatible().unwrap_err().to_string();
        assert!(err.contains("15 genres"), "{err}");
        let mut renamed = spec.clone();
        renamed.user.categorical.remove(1);
        let err = renamed.check_compatible().unwrap_err().to_string();
        assert!(err.contains("user features"), "{err}");
        let mut newer = spec;
        newer.version += 1;
        assert!(newer.check_compatible().unwrap_err().to_string().contains("feature version"));
    }

    #[test]
    fn normalisation_is_fitted_per_column() {
        let mut side = Side { categorical: vec![], dense: vec![dense("a"), dense("b")] };
        FeatureSpec::fit_normalisation(&mut side, &[1.0, 5.0, 3.0, 5.0]);
        assert_eq!(side.dense[0].mean, 2.0);
        assert_eq!(side.dense[0].std, 1.0);
        assert_eq!(side.dense[1].mean, 5.0);
        assert_eq!(side.dense[1].std, 1.0, "a constant column keeps std 1");
    }
}
