//! `audience generate`: writes a [`World`] as Parquet tables under one root, one
//! prefix per table (`users/`, `podcasts/`, `campaigns/`, `follows/`,
//! `impressions/`, `truth/`), then `world.json` last. A root without `world.json`
//! holds an incomplete world.
//!
//! Users, follows and their truth are produced in chunks and streamed to files
//! of at most [`ROWS_PER_FILE`] rows, so memory does not grow with the number of
//! users. Output is byte-identical for identical configs.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Date32Array, FixedSizeListArray, Float32Array, Float64Array, Int8Array, Int32Array,
    Int64Array, ListBuilder, RecordBatch, StringArray, StringBuilder, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde::Serialize;

use super::truth::{LATENT_DIM, TruthParams};
use super::{Campaign, Impression, Podcast, User, World, WorldConfig};
use crate::contract::{GENRE_COUNT, GENRES, TIER_BOUNDS, Table};
use crate::exit_code::ExitCode;
use crate::progress::Progress;
use crate::storage::{Location, ParquetWriter, StorageError};

/// Rows per Parquet file of the large tables.
pub const ROWS_PER_FILE: u64 = 1 << 20;
/// Users generated (and held) at a time.
const USER_CHUNK: u64 = 1 << 16;
/// Everything `generate` writes under a root, cleared by `--overwrite`.
const OUTPUTS: [&str; 7] = ["users", "podcasts", "campaigns", "follows", "impressions", "truth", "world.json"];

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("invalid world settings: {0}")]
    InvalidConfig(String),
    #[error("{url} already holds a world (or part of one); pass --overwrite to replace it")]
    NotEmpty { url: String },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl GenerateError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            GenerateError::InvalidConfig(_) => ExitCode::Invalid,
            GenerateError::NotEmpty { .. } => ExitCode::Conflict,
            GenerateError::Storage(e) => e.exit_code(),
        }
    }
}

/// What was written: the config and the rows of each table. Saved as `world.json`.
#[derive(Debug, Clone, Serialize)]
pub struct WorldManifest {
    pub generator_version: u32,
    pub config: WorldConfig,
    pub first_log_day: chrono::NaiveDate,
    pub genres: Vec<&'static str>,
    pub tier_bounds: Vec<i64>,
    pub rows: std::collections::BTreeMap<String, u64>,
}

/// Generates the world described by `config` under `out`.
pub async fn generate(out: &Location, config: WorldConfig, overwrite: bool) -> Result<WorldManifest, GenerateError> {
    check_config(&config)?;
    prepare_root(out, overwrite).await?;
    let world = World::new(config);
    let mut rows = std::collections::BTreeMap::new();

    let podcasts = write_single(out, Table::Podcasts.name(), podcasts_batch(&world.podcasts)).await?;
    rows.insert("podcasts".to_string(), podcasts);
    let campaigns = write_single(out, Table::Campaigns.name(), campaigns_batch(&world)).await?;
    rows.insert("campaigns".to_string(), campaigns);
    write_single(out, "truth/podcasts", podcast_truth_batch(&world.podcasts)).await?;
    write_single(out, "truth/campaigns", campaign_truth_batch(&world.campaigns)).await?;
    let params = TruthFile {
        generator_version: world.config.generator_version,
        seed: world.config.seed,
        latent_dim: LATENT_DIM,
        genre_embeddings: world.genre_embeddings.to_vec(),
        params: world.params.clone(),
    };
    out.join("truth/params.json").write(to_json(&params)).await?;

    let (users, follows) = write_users(out, &world).await?;
    rows.insert("users".to_string(), users);
    rows.insert("follows".to_string(), follows);
    rows.insert("impressions".to_string(), write_impressions(out, &world).await?);

    let manifest = WorldManifest {
        generator_version: world.config.generator_version,
        first_log_day: world.first_log_day(),
        config: world.config,
        genres: GENRES.to_vec(),
        tier_bounds: TIER_BOUNDS.to_vec(),
        rows,
    };
    out.join("world.json").write(to_json(&manifest)).await?;
    Ok(manifest)
}

fn check_config(config: &WorldConfig) -> Result<(), GenerateError> {
    let mut problems = Vec::new();
    for (name, value) in [("users", config.users), ("podcasts", config.podcasts), ("campaigns", config.campaigns)] {
        if value == 0 {
            problems.push(format!("{name} must be at least 1"));
        }
    }
    if config.days == 0 {
        problems.push("days must be at least 1".to_string());
    }
    problems.extend(config.regime_problems());
    if !(config.sell_through > 0.0 && config.sell_through <= 2.0) {
        problems.push(format!("sell-through {} must be above 0 and at most 2", config.sell_through));
    }
    // Upper ends a generator on one machine can reach (it holds the world's
    // users, podcasts and campaigns in memory): past them it would abort on
    // an allocation instead of saying which size is too large.
    for (name, value, most) in [
        ("users", config.users, 100_000_000),
        ("podcasts", config.podcasts, 10_000_000),
        ("campaigns", config.campaigns, 1_000_000),
        ("impressions", config.impressions, 1_000_000_000),
        ("days", config.days as u64, 3_650),
    ] {
        if value > most {
            problems.push(format!("{name} = {value}: at most {most}"));
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(GenerateError::InvalidConfig(problems.join("; "))) }
}

/// Refuses to mix two worlds under one root; with `overwrite`, clears what a
/// previous `generate` wrote (and nothing else).
async fn prepare_root(out: &Location, overwrite: bool) -> Result<(), GenerateError> {
    for name in OUTPUTS {
        let location = out.join(name);
        if location.list().await?.is_empty() {
            continue;
        }
        if !overwrite {
            return Err(GenerateError::NotEmpty { url: out.url().to_string() });
        }
        let removed = location.delete_all().await?;
        tracing::info!(location = %location, removed, "cleared previous output");
    }
    Ok(())
}

/// Writes one small table as a single file.
async fn write_single(out: &Location, table: &str, batch: RecordBatch) -> Result<u64, StorageError> {
    let mut sink = TableSink::new(out.join(table), batch.schema());
    sink.write(&batch).await?;
    let rows = sink.finish().await?;
    tracing::info!(table, rows, "wrote table");
    Ok(rows)
}

/// Users, their follows and their truth, in chunks.
async fn write_users(out: &Location, world: &World) -> Result<(u64, u64), StorageError> {
    let mut users = TableSink::new(out.join("users"), Table::Users.spec().schema());
    let mut follows = TableSink::new(out.join("follows"), Table::Follows.spec().schema());
    let mut truth = TableSink::new(out.join("truth/users"), user_truth_schema());
    let mut progress = Progress::new("users", world.config.users);
    let mut start = 0;
    while start < world.config.users {
        let end = (start + USER_CHUNK).min(world.config.users);
        let chunk: Vec<User> = (start..end).map(|i| world.user(i)).collect();
        let mut follow_rows = Vec::new();
        for (user, index) in chunk.iter().zip(start..end) {
            for podcast in world.follows(index, user) {
                follow_rows.push((user.user_id, world.podcasts[podcast].podcast_id));
            }
        }
        users.write(&users_batch(&chunk)).await?;
        follows.write(&follows_batch(&follow_rows)).await?;
        truth.write(&user_truth_batch(&chunk)).await?;
        progress.inc(end - start);
        start = end;
    }
    progress.finish();
    truth.finish().await?;
    let rows = (users.finish().await?, follows.finish().await?);
    tracing::info!(users = rows.0, follows = rows.1, "wrote users and follows");
    Ok(rows)
}

async fn write_impressions(out: &Location, world: &World) -> Result<u64, StorageError> {
    let mut sink = TableSink::new(out.join("impressions"), Table::Impressions.spec().schema());
    let mut progress = Progress::new("impressions", world.config.impressions);
    for day in 0..world.config.days {
        let impressions = world.impressions_on(day);
        for chunk in impressions.chunks(USER_CHUNK as usize) {
            sink.write(&impressions_batch(world, chunk)).await?;
        }
        progress.inc(impressions.len() as u64);
    }
    progress.finish();
    let rows = sink.finish().await?;
    tracing::info!(impressions = rows, days = world.config.days, "wrote impressions");
    Ok(rows)
}

/// Writes a table as numbered files (`part-00000.parquet`, ...) of at most
/// [`ROWS_PER_FILE`] rows. A table with no rows still gets one (empty) file, so
/// readers see its schema.
struct TableSink {
    location: Location,
    schema: SchemaRef,
    writer: Option<ParquetWriter>,
    files: usize,
    rows_in_file: u64,
    rows: u64,
}

impl TableSink {
    fn new(location: Location, schema: SchemaRef) -> Self {
        TableSink { location, schema, writer: None, files: 0, rows_in_file: 0, rows: 0 }
    }

    async fn write(&mut self, batch: &RecordBatch) -> Result<(), StorageError> {
        if batch.num_rows() == 0 && self.files > 0 {
            return Ok(());
        }
        let writer = match &mut self.writer {
            Some(writer) => writer,
            None => {
                let file = self.location.join(&format!("part-{:05}.parquet", self.files));
                self.files += 1;
                self.rows_in_file = 0;
                self.writer.insert(file.parquet_writer(self.schema.clone())?)
            }
        };
        writer.write(batch).await?;
        self.rows_in_file += batch.num_rows() as u64;
        self.rows += batch.num_rows() as u64;
        if self.rows_in_file >= ROWS_PER_FILE {
            self.writer.take().expect("open writer").finish().await?;
        }
        Ok(())
    }

    async fn finish(mut self) -> Result<u64, StorageError> {
        if self.files == 0 {
            self.write(&RecordBatch::new_empty(self.schema.clone())).await?;
        }
        if let Some(writer) = self.writer.take() {
            writer.finish().await?;
        }
        Ok(self.rows)
    }
}

#[derive(Serialize)]
struct TruthFile {
    generator_version: u32,
    seed: u64,
    latent_dim: usize,
    genre_embeddings: Vec<[f32; LATENT_DIM]>,
    params: TruthParams,
}

fn to_json(value: &impl Serialize) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(value).expect("serialisable");
    bytes.push(b'\n');
    bytes
}

fn batch(schema: SchemaRef, columns: Vec<ArrayRef>) -> RecordBatch {
    RecordBatch::try_new(schema, columns).expect("columns match the schema")
}

fn strings<'a>(values: impl Iterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(values))
}

fn vectors<const N: usize>(rows: impl Iterator<Item = [f32; N]>) -> ArrayRef {
    let values: Vec<f32> = rows.flatten().collect();
    let field = Arc::new(Field::new_list_field(DataType::Float32, true));
    Arc::new(FixedSizeListArray::new(field, N as i32, Arc::new(Float32Array::from(values)), None))
}

fn string_lists<'a>(rows: impl Iterator<Item = &'a [&'a str]>) -> ArrayRef {
    let mut builder = ListBuilder::new(StringBuilder::new());
    for row in rows {
        for value in row {
            builder.values().append_value(value);
        }
        builder.append(true);
    }
    Arc::new(builder.finish())
}

fn days_since_epoch(date: chrono::NaiveDate) -> i32 {
    (date - chrono::NaiveDate::default()).num_days() as i32
}

fn users_batch(users: &[User]) -> RecordBatch {
    batch(
        Table::Users.spec().schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(users.iter().map(|u| u.user_id))),
            strings(users.iter().map(|u| u.country)),
            strings(users.iter().map(|u| u.age_bucket)),
            strings(users.iter().map(|u| u.platform)),
            strings(users.iter().map(|u| u.language)),
            Arc::new(BooleanArray::from_iter(users.iter().map(|u| Some(u.is_premium)))),
            Arc::new(BooleanArray::from_iter(users.iter().map(|u| Some(u.ads_opt_out)))),
            Arc::new(Float32Array::from_iter_values(users.iter().map(|u| u.listening_hours_30d))),
            Arc::new(Int32Array::from_iter_values(users.iter().map(|u| u.follows_count))),
            Arc::new(Int32Array::from_iter_values(users.iter().map(|u| u.searches_30d))),
            vectors::<GENRE_COUNT>(users.iter().map(|u| u.genre_affinity)),
        ],
    )
}

fn follows_batch(rows: &[(i64, i64)]) -> RecordBatch {
    batch(
        Table::Follows.spec().schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
        ],
    )
}

fn podcasts_batch(podcasts: &[Podcast]) -> RecordBatch {
    batch(
        Table::Podcasts.spec().schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(podcasts.iter().map(|p| p.podcast_id))),
            strings(podcasts.iter().map(|p| GENRES[p.genre])),
            strings(podcasts.iter().map(|p| p.language)),
            string_lists(podcasts.iter().map(|p| p.topics.as_slice())),
            Arc::new(Int64Array::from_iter_values(podcasts.iter().map(|p| p.streams_30d))),
            Arc::new(BooleanArray::from_iter(podcasts.iter().map(|p| Some(p.is_original)))),
        ],
    )
}

fn campaigns_batch(world: &World) -> RecordBatch {
    let c = &world.campaigns;
    let floats = |f: fn(&Campaign) -> Option<f64>| -> ArrayRef { Arc::new(Float64Array::from_iter(c.iter().map(f))) };
    let lists = |f: fn(&Campaign) -> &[&'static str]| string_lists(c.iter().map(f));
    batch(
        Table::Campaigns.spec().schema(),
        vec![
            strings(c.iter().map(|c| c.campaign_id.as_str())),
            strings(c.iter().map(|c| c.channel.as_str())),
            Arc::new(Int64Array::from_iter_values(c.iter().map(|c| world.podcasts[c.podcast].podcast_id))),
            strings(c.iter().map(|c| c.objective)),
            strings(c.iter().map(|c| c.format.as_str())),
            strings(c.iter().map(|c| c.surface)),
            strings(c.iter().map(|c| c.status)),
            Arc::new(Date32Array::from_iter_values(c.iter().map(|c| days_since_epoch(c.start_date)))),
            Arc::new(Date32Array::from_iter_values(c.iter().map(|c| days_since_epoch(c.end_date)))),
            floats(|c| c.budget),
            floats(|c| c.total_budget),
            floats(|c| c.spent_to_date),
            floats(|c| Some(c.cpm)),
            Arc::new(Int32Array::from_iter_values(c.iter().map(|c| c.impressions_per_user))),
            floats(|c| Some(c.priority)),
            lists(|c| &c.target_countries),
            lists(|c| &c.target_age_buckets),
            lists(|c| &c.target_platforms),
            lists(|c| &c.target_languages),
            Arc::new(Int64Array::from_iter_values(c.iter().map(|c| c.min_audience))),
        ],
    )
}

fn impressions_batch(world: &World, rows: &[Impression]) -> RecordBatch {
    let campaign = |i: &Impression| &world.campaigns[i.campaign];
    let bools =
        |f: fn(&Impression) -> bool| -> ArrayRef { Arc::new(BooleanArray::from_iter(rows.iter().map(|i| Some(f(i))))) };
    batch(
        Table::Impressions.spec().schema(),
        vec![
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(rows.iter().map(|i| i.ts_micros)).with_timezone("UTC"),
            ),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|i| i.user_id))),
            strings(rows.iter().map(|i| campaign(i).campaign_id.as_str())),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|i| world.podcasts[campaign(i).podcast].podcast_id))),
            strings(rows.iter().map(|i| campaign(i).channel.as_str())),
            strings(rows.iter().map(|i| campaign(i).format.as_str())),
            strings(rows.iter().map(|i| campaign(i).surface)),
            Arc::new(Int8Array::from_iter_values(rows.iter().map(|i| i.hour as i8))),
            bools(|i| i.streamed),
            bools(|i| i.clicked),
            bools(|i| i.liked),
            bools(|i| i.followed),
        ],
    )
}

fn latent_field(name: &str) -> Field {
    let item = Arc::new(Field::new_list_field(DataType::Float32, true));
    Field::new(name, DataType::FixedSizeList(item, LATENT_DIM as i32), false)
}

/// `truth/users`: the latent variables of each user.
pub fn user_truth_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Int64, false),
        latent_field("taste"),
        Field::new("activity", DataType::Float32, false),
        Field::new("ad_receptivity", DataType::Float32, false),
    ]))
}

fn user_truth_batch(users: &[User]) -> RecordBatch {
    batch(
        user_truth_schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(users.iter().map(|u| u.user_id))),
            vectors::<LATENT_DIM>(users.iter().map(|u| u.truth.taste)),
            Arc::new(Float32Array::from_iter_values(users.iter().map(|u| u.truth.activity))),
            Arc::new(Float32Array::from_iter_values(users.iter().map(|u| u.truth.ad_receptivity))),
        ],
    )
}

fn podcast_truth_batch(podcasts: &[Podcast]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("podcast_id", DataType::Int64, false),
        latent_field("embedding"),
        Field::new("quality", DataType::Float32, false),
    ]));
    batch(
        schema,
        vec![
            Arc::new(Int64Array::from_iter_values(podcasts.iter().map(|p| p.podcast_id))),
            vectors::<LATENT_DIM>(podcasts.iter().map(|p| p.truth.embedding)),
            Arc::new(Float32Array::from_iter_values(podcasts.iter().map(|p| p.truth.quality))),
        ],
    )
}

fn campaign_truth_batch(campaigns: &[Campaign]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("campaign_id", DataType::Utf8, false),
        Field::new("creative", DataType::Float32, false),
    ]));
    batch(
        schema,
        vec![
            strings(campaigns.iter().map(|c| c.campaign_id.as_str())),
            Arc::new(Float32Array::from_iter_values(campaigns.iter().map(|c| c.creative))),
        ],
    )
}
