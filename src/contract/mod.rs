//! The data contract (docs/design.md §3): the tables the job reads and writes,
//! their Arrow schemas, closed vocabularies, and the rules every reader enforces.
//!
//! Each table is a Parquet dataset under its own prefix of a world root
//! (`<root>/users/`, `<root>/podcasts/`, ...). Required columns must be present with
//! a compatible type; extra columns are allowed and ignored. The validator in
//! [`validate`] checks a whole world against this module's [`TableSpec`]s.

pub mod files;
pub mod report;
pub mod validate;
mod vocabulary;

pub use vocabulary::*;

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// The tables of a world, in the order they are validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    Users,
    Podcasts,
    Campaigns,
    Follows,
    Impressions,
}

impl Table {
    pub const ALL: [Table; 5] = [Table::Users, Table::Podcasts, Table::Campaigns, Table::Follows, Table::Impressions];

    /// The table's name, which is also its prefix under a world root.
    pub fn name(self) -> &'static str {
        match self {
            Table::Users => "users",
            Table::Podcasts => "podcasts",
            Table::Campaigns => "campaigns",
            Table::Follows => "follows",
            Table::Impressions => "impressions",
        }
    }

    /// Whether an empty table is an error. Follows and impressions may be empty
    /// (a new market has none); users, podcasts and campaigns may not.
    pub fn must_be_nonempty(self) -> bool {
        matches!(self, Table::Users | Table::Podcasts | Table::Campaigns)
    }

    pub fn spec(self) -> TableSpec {
        match self {
            Table::Users => users_spec(),
            Table::Podcasts => podcasts_spec(),
            Table::Campaigns => campaigns_spec(),
            Table::Follows => follows_spec(),
            Table::Impressions => impressions_spec(),
        }
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The logical type of a contract column. Readers accept every physical Arrow
/// type listed by [`ColumnType::accepts`]: string columns may be Utf8, LargeUtf8 or
/// Utf8View, lists may be List, LargeList or FixedSizeList, so that files written by
/// Spark, pandas or DataFusion are all readable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Int8,
    Int32,
    Int64,
    Float32,
    Float64,
    Bool,
    Utf8,
    Date32,
    Timestamp,
    Utf8List,
    /// A vector of Float32 of exactly this length.
    Float32Vector(usize),
}

impl ColumnType {
    /// The Arrow type this project writes for the column.
    pub fn canonical(self) -> DataType {
        match self {
            ColumnType::Int8 => DataType::Int8,
            ColumnType::Int32 => DataType::Int32,
            ColumnType::Int64 => DataType::Int64,
            ColumnType::Float32 => DataType::Float32,
            ColumnType::Float64 => DataType::Float64,
            ColumnType::Bool => DataType::Boolean,
            ColumnType::Utf8 => DataType::Utf8,
            ColumnType::Date32 => DataType::Date32,
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            ColumnType::Utf8List => DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
            ColumnType::Float32Vector(n) => {
                DataType::FixedSizeList(Arc::new(Field::new_list_field(DataType::Float32, true)), n as i32)
            }
        }
    }

    /// Whether a column of physical type `actual` satisfies this logical type.
    /// A vector column of another fixed length is accepted here and rejected by the
    /// row checks, which can name the offending key.
    pub fn accepts(self, actual: &DataType) -> bool {
        fn is_string(t: &DataType) -> bool {
            matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
        }
        fn list_item(t: &DataType) -> Option<&DataType> {
            match t {
                DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => Some(f.data_type()),
                _ => None,
            }
        }
        match self {
            ColumnType::Utf8 => is_string(actual),
            ColumnType::Timestamp => matches!(actual, DataType::Timestamp(_, _)),
            ColumnType::Utf8List => list_item(actual).is_some_and(is_string),
            ColumnType::Float32Vector(_) => list_item(actual) == Some(&DataType::Float32),
            other => &other.canonical() == actual,
        }
    }

    /// How the type is named in error messages and docs/data.md.
    pub fn describe(self) -> String {
        match self {
            ColumnType::Utf8 => "Utf8".into(),
            ColumnType::Timestamp => "Timestamp".into(),
            ColumnType::Utf8List => "List<Utf8>".into(),
            ColumnType::Float32Vector(n) => format!("FixedSizeList<Float32, {n}>"),
            other => other.canonical().to_string(),
        }
    }
}

/// Extra rules on a column's values, checked row by row.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// Nulls are rejected unless this is set.
    pub nullable: bool,
    /// Floats must be finite (also applies to vector elements).
    pub finite: bool,
    /// Numbers must be >= 0.
    pub non_negative: bool,
    /// Numbers must be >= 1.
    pub positive: bool,
    /// Numbers must be at most this: a limit no real market reaches, so that
    /// sums and products of valid inputs stay finite (budgets × priorities,
    /// cpm × impressions, a campaign's spend summed over its users).
    pub at_most: Option<f64>,
    /// Strings must be one of these.
    pub allowed: Option<&'static [&'static str]>,
    /// Strings must match this regex.
    pub pattern: Option<&'static str>,
}

#[derive(Debug, Clone)]
pub struct ColumnSpec {
    pub name: &'static str,
    pub ty: ColumnType,
    /// An optional column may be absent; it then takes its documented default.
    pub required: bool,
    pub rules: Rules,
}

/// One table's contract: its columns and its key (the columns that identify a row,
/// never null, unique where `unique_key`).
#[derive(Debug, Clone)]
pub struct TableSpec {
    pub table: Table,
    pub columns: Vec<ColumnSpec>,
    pub key: &'static [&'static str],
    pub unique_key: bool,
}

impl TableSpec {
    pub fn column(&self, name: &str) -> Option<&ColumnSpec> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The schema this project writes for the table (all columns, canonical types).
    pub fn schema(&self) -> SchemaRef {
        let fields: Vec<Field> = self
            .columns
            .iter()
            .map(|c| {
                let nullable = c.rules.nullable || !c.required;
                Field::new(c.name, c.ty.canonical(), nullable)
            })
            .collect();
        Arc::new(Schema::new(fields))
    }
}

fn col(name: &'static str, ty: ColumnType) -> ColumnSpec {
    ColumnSpec { name, ty, required: true, rules: Rules::default() }
}

impl ColumnSpec {
    fn optional(mut self) -> Self {
        self.required = false;
        self.rules.nullable = true;
        self
    }
    fn nullable(mut self) -> Self {
        self.rules.nullable = true;
        self
    }
    fn finite(mut self) -> Self {
        self.rules.finite = true;
        self
    }
    fn non_negative(mut self) -> Self {
        self.rules.non_negative = true;
        self
    }
    fn positive(mut self) -> Self {
        self.rules.positive = true;
        self
    }
    fn at_most(mut self, limit: f64) -> Self {
        self.rules.at_most = Some(limit);
        self
    }
    fn one_of(mut self, values: &'static [&'static str]) -> Self {
        self.rules.allowed = Some(values);
        self
    }
    fn pattern(mut self, regex: &'static str) -> Self {
        self.rules.pattern = Some(regex);
        self
    }
}

/// Schema of the audiences the job writes (one row per chosen user and
/// campaign; docs/design.md §3).
pub fn audience_schema() -> SchemaRef {
    let mut fields = vec![
        Field::new("campaign_id", DataType::Utf8, false),
        Field::new("user_id", DataType::Int64, false),
        Field::new("rank", DataType::Int64, false),
        Field::new("p_objective", DataType::Float32, false),
        Field::new("expected_events", DataType::Float32, false),
        Field::new("cost", DataType::Float64, false),
    ];
    fields.extend(TASKS.iter().map(|t| Field::new(format!("p_{t}"), DataType::Float32, false)));
    Arc::new(Schema::new(fields))
}

use ColumnType as T;

/// The contract's upper limits (docs/data.md lists them). Far
/// beyond any real market, and low enough that every sum and product the job
/// forms of valid inputs is finite in f64 and f32: a user's cost is at most
/// MAX_CPM × MAX_IMPRESSIONS_PER_USER / 1000 = 1e7, its value at most
/// MAX_PRIORITY × that = 1e13, and a billion users' sum stays below 1e22.
pub const HOURS_IN_30_DAYS: f64 = 720.0;
/// Budgets and spend, in the campaign's currency: a trillion.
pub const MAX_MONEY: f64 = 1e12;
/// Price per thousand impressions.
pub const MAX_CPM: f64 = 1e6;
pub const MAX_IMPRESSIONS_PER_USER: f64 = 1e4;
/// A campaign's weight in the objective.
pub const MAX_PRIORITY: f64 = 1e6;
/// An audience size: a billion users.
pub const MAX_AUDIENCE: f64 = 1e9;

fn users_spec() -> TableSpec {
    TableSpec {
        table: Table::Users,
        columns: vec![
            col("user_id", T::Int64),
            col("country", T::Utf8),
            col("age_bucket", T::Utf8),
            col("platform", T::Utf8),
            col("language", T::Utf8),
            col("is_premium", T::Bool),
            col("ads_opt_out", T::Bool),
            col("listening_hours_30d", T::Float32).finite().non_negative().at_most(HOURS_IN_30_DAYS),
            col("follows_count", T::Int32).non_negative(),
            col("searches_30d", T::Int32).non_negative(),
            // A share of the user's listening per genre.
            col("genre_affinity", T::Float32Vector(GENRE_COUNT)).finite().non_negative().at_most(1.0),
        ],
        key: &["user_id"],
        unique_key: true,
    }
}

fn podcasts_spec() -> TableSpec {
    TableSpec {
        table: Table::Podcasts,
        columns: vec![
            col("podcast_id", T::Int64),
            col("genre", T::Utf8).one_of(&GENRES),
            col("language", T::Utf8),
            col("topics", T::Utf8List),
            col("streams_30d", T::Int64).non_negative(),
            col("is_original", T::Bool),
        ],
        key: &["podcast_id"],
        unique_key: true,
    }
}

fn campaigns_spec() -> TableSpec {
    TableSpec {
        table: Table::Campaigns,
        columns: vec![
            col("campaign_id", T::Utf8).pattern(CAMPAIGN_ID_PATTERN),
            col("kind", T::Utf8).one_of(&CAMPAIGN_KINDS),
            col("podcast_id", T::Int64),
            col("objective", T::Utf8).one_of(&OBJECTIVES),
            col("format", T::Utf8).one_of(&FORMATS),
            col("surface", T::Utf8),
            col("status", T::Utf8).one_of(&STATUSES),
            col("start_date", T::Date32),
            col("end_date", T::Date32),
            // Today's budget; or, where it is null, `total_budget` and
            // `spent_to_date` paced evenly over the remaining days.
            col("budget", T::Float64).nullable().finite().non_negative().at_most(MAX_MONEY),
            col("total_budget", T::Float64).optional().finite().non_negative().at_most(MAX_MONEY),
            col("spent_to_date", T::Float64).optional().finite().non_negative().at_most(MAX_MONEY),
            col("cpm", T::Float64).finite().non_negative().at_most(MAX_CPM),
            col("impressions_per_user", T::Int32).positive().at_most(MAX_IMPRESSIONS_PER_USER),
            col("priority", T::Float64).optional().finite().non_negative().at_most(MAX_PRIORITY),
            col("target_countries", T::Utf8List).optional(),
            col("target_age_buckets", T::Utf8List).optional(),
            col("target_platforms", T::Utf8List).optional(),
            col("target_languages", T::Utf8List).optional(),
            col("min_audience", T::Int64).optional().non_negative().at_most(MAX_AUDIENCE),
        ],
        key: &["campaign_id"],
        unique_key: true,
    }
}

fn follows_spec() -> TableSpec {
    TableSpec {
        table: Table::Follows,
        columns: vec![col("user_id", T::Int64), col("podcast_id", T::Int64)],
        key: &["user_id", "podcast_id"],
        unique_key: false,
    }
}

fn impressions_spec() -> TableSpec {
    TableSpec {
        table: Table::Impressions,
        columns: vec![
            col("ts", T::Timestamp),
            col("user_id", T::Int64),
            col("campaign_id", T::Utf8),
            col("podcast_id", T::Int64),
            col("source", T::Utf8).one_of(&SOURCES),
            col("format", T::Utf8).one_of(&FORMATS),
            col("surface", T::Utf8),
            col("hour", T::Int8).non_negative().at_most(23.0),
            col("streamed", T::Bool),
            col("clicked", T::Bool),
            col("liked", T::Bool),
            col("followed", T::Bool),
        ],
        key: &["user_id", "campaign_id", "ts"],
        unique_key: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_accept_other_string_and_list_encodings() {
        assert!(ColumnType::Utf8.accepts(&DataType::LargeUtf8));
        assert!(ColumnType::Utf8.accepts(&DataType::Utf8View));
        assert!(!ColumnType::Utf8.accepts(&DataType::Int64));
        let list = DataType::List(Arc::new(Field::new_list_field(DataType::Float32, true)));
        assert!(ColumnType::Float32Vector(16).accepts(&list));
        assert!(!ColumnType::Int32.accepts(&DataType::Int64));
    }

    #[test]
    fn every_table_schema_has_its_key_columns() {
        for table in Table::ALL {
            let spec = table.spec();
            let schema = spec.schema();
            for key in spec.key {
                let field = schema.field_with_name(key).unwrap();
                assert!(!field.is_nullable(), "{table}.{key} must not be nullable");
            }
        }
    }
}
