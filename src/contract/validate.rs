//! Validation of a world's tables against the contract, before anything is
//! written. Every problem is collected (not just the first): each distinct problem
//! is reported once with how many rows have it and one example key, so a bad
//! 10-million-row table gives a short, actionable report.
//!
//! Checks: missing or mistyped required columns; unreadable or non-Parquet files;
//! empty required tables; nulls in keys and required columns; duplicate keys; NaN
//! or infinite numbers; negative amounts; unknown enum values; campaign ids outside
//! the path-safe pattern; start after end; genre vectors of the wrong length;
//! campaigns without a budget; campaigns naming an unknown podcast.

use std::collections::{BTreeMap, HashSet};

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Date32Type, Field, Float32Type, Float64Type, Int64Type};
use arrow::util::display::array_value_to_string;
use futures::TryStreamExt;
use parquet::arrow::ProjectionMask;
use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
use regex::Regex;

use super::files::data_files;
pub use super::report::{InvalidInput, Problem, Report};
use super::{ColumnSpec, ColumnType, Table, TableSpec};
use crate::storage::{Location, StorageError};

/// Validates every table of the world at `root` (laid out as `generate` writes
/// it: one prefix per table). Storage failures are errors; contract violations
/// are collected in the report.
pub async fn validate_world(root: &Location) -> Result<Report, StorageError> {
    let mut report = Report::default();
    let mut podcast_ids = HashSet::new();
    for table in Table::ALL {
        let (rows, problems, keys) = {
            let mut validator = TableValidator::new(table, &podcast_ids);
            let rows = validator.run(&root.join(table.name())).await?;
            (rows, validator.findings.into_problems(table), validator.int_keys)
        };
        if table == Table::Podcasts {
            podcast_ids = keys;
        }
        report.rows.insert(table, rows);
        report.problems.extend(problems);
    }
    Ok(report)
}

/// Problems grouped by (column, rule): a count and the first example.
#[derive(Default)]
struct Findings(BTreeMap<(String, String), (u64, String)>);

impl Findings {
    fn add(&mut self, column: &str, rule: impl Into<String>, count: u64, example: impl FnOnce() -> String) {
        if count == 0 {
            return;
        }
        let entry = self.0.entry((column.to_string(), rule.into())).or_insert_with(|| (0, example()));
        entry.0 += count;
    }

    fn into_problems(self, table: Table) -> Vec<Problem> {
        self.0
            .into_iter()
            .map(|((column, rule), (count, example))| Problem { table, column, rule, count, example })
            .collect()
    }
}

struct TableValidator<'a> {
    spec: TableSpec,
    findings: Findings,
    int_keys: HashSet<i64>,
    string_keys: HashSet<String>,
    known_podcasts: &'a HashSet<i64>,
    /// Compiled `Rules::pattern`s of the table's columns.
    patterns: std::collections::HashMap<&'static str, Regex>,
}

impl<'a> TableValidator<'a> {
    fn new(table: Table, known_podcasts: &'a HashSet<i64>) -> Self {
        let spec = table.spec();
        let patterns = spec
            .columns
            .iter()
            .filter_map(|c| c.rules.pattern)
            .map(|p| (p, Regex::new(p).expect("contract patterns are valid")))
            .collect();
        TableValidator {
            spec,
            findings: Findings::default(),
            int_keys: HashSet::new(),
            string_keys: HashSet::new(),
            known_podcasts,
            patterns,
        }
    }

    /// Reads every file of the table and checks it; returns the rows read.
    async fn run(&mut self, location: &Location) -> Result<u64, StorageError> {
        let table = self.spec.table;
        let files = data_files(location).await?;
        if files.is_empty() {
            self.findings.add("", format!("no data files under {location}"), 1, String::new);
            return Ok(0);
        }
        let mut rows = 0u64;
        let mut unreadable = 0;
        for file in files {
            let file_url = location.url_of(&file.location);
            let reader = location.parquet_reader(&file);
            let builder = match ParquetRecordBatchStreamBuilder::new(reader).await {
                Ok(builder) => builder,
                Err(err) => {
                    let rule = format!("file is not a readable Parquet file: {file_url} ({err})");
                    self.findings.add("", rule, 1, String::new);
                    unreadable += 1;
                    continue;
                }
            };
            let Some(projection) = self.check_schema(builder.schema().fields(), &file_url) else {
                continue;
            };
            let mask = ProjectionMask::roots(builder.parquet_schema(), projection);
            let mut stream = match builder.with_projection(mask).build() {
                Ok(stream) => stream,
                Err(err) => {
                    let rule = format!("file is not a readable Parquet file: {file_url} ({err})");
                    self.findings.add("", rule, 1, String::new);
                    continue;
                }
            };
            let mut file_row = 0u64;
            loop {
                match stream.try_next().await {
                    Ok(Some(batch)) => {
                        self.check_batch(&batch, &file_url, file_row);
                        file_row += batch.num_rows() as u64;
                    }
                    Ok(None) => break,
                    Err(err) => {
                        let rule = format!("file is corrupt: {file_url} ({err})");
                        self.findings.add("", rule, 1, String::new);
                        break;
                    }
                }
            }
            rows += file_row;
        }
        // A table whose files could not be read is not known to be empty.
        if rows == 0 && unreadable == 0 && table.must_be_nonempty() {
            self.findings.add("", "table is empty (0 rows)", 1, String::new);
        }
        Ok(rows)
    }

    /// Reports missing and mistyped columns; returns the indices of the contract
    /// columns present with a usable type, or None when the file cannot be checked
    /// row by row at all.
    fn check_schema(&mut self, fields: &arrow::datatypes::Fields, file_url: &str) -> Option<Vec<usize>> {
        let mut projection = Vec::new();
        for column in &self.spec.columns {
            match fields.iter().position(|f| f.name() == column.name) {
                None if column.required => {
                    let rule = "missing required column".to_string();
                    self.findings.add(column.name, rule, 1, || format!("in {file_url}"));
                }
                None => {}
                Some(index) if !column.ty.accepts(fields[index].data_type()) => {
                    let rule = format!("has type {}, expected {}", fields[index].data_type(), column.ty.describe());
                    self.findings.add(column.name, rule, 1, || format!("in {file_url}"));
                }
                Some(index) => projection.push(index),
            }
        }
        (!projection.is_empty()).then_some(projection)
    }

    fn check_batch(&mut self, batch: &RecordBatch, file_url: &str, first_row: u64) {
        let keys = RowNames::new(&self.spec, batch, file_url, first_row);
        let columns = std::mem::take(&mut self.spec.columns);
        for column in &columns {
            if let Some(array) = batch.column_by_name(column.name) {
                self.check_column(column, array, &keys);
            }
        }
        self.spec.columns = columns;
        self.check_keys(batch, &keys);
        if self.spec.table == Table::Campaigns {
            self.check_campaign_rows(batch, &keys);
        }
    }

    fn check_column(&mut self, column: &ColumnSpec, array: &ArrayRef, keys: &RowNames) {
        let name = column.name;
        let rules = &column.rules;
        if !rules.nullable && array.null_count() > 0 {
            let first = (0..array.len()).find(|&i| array.is_null(i)).unwrap_or(0);
            let is_key = self.spec.key.contains(&name);
            let rule = if is_key { "null in key column" } else { "null in required column" };
            self.findings.add(name, rule, array.null_count() as u64, || keys.name(first));
        }
        match column.ty {
            ColumnType::Int8 | ColumnType::Int32 | ColumnType::Int64 => {
                let values = cast_to(array, &DataType::Int64);
                let values = values.as_primitive::<Int64Type>();
                let minimum = if rules.positive {
                    1
                } else if rules.non_negative {
                    0
                } else {
                    i64::MIN
                };
                let rule = if rules.positive { "value below 1" } else { "negative value" };
                self.flag_rows(name, rule, keys, values.iter().map(|v| v.is_some_and(|v| v < minimum)), |i| {
                    format!("value {}", values.value(i))
                });
                if let Some(limit) = rules.at_most {
                    let bad = values.iter().map(|v| v.is_some_and(|v| v as f64 > limit));
                    self.flag_rows(name, above(limit), keys, bad, |i| format!("value {}", values.value(i)));
                }
            }
            ColumnType::Float32 | ColumnType::Float64 => {
                let values = cast_to(array, &DataType::Float64);
                let values = values.as_primitive::<Float64Type>();
                self.check_floats(name, rules, values.iter(), keys, |i| values.value(i));
            }
            ColumnType::Utf8 => {
                let values = cast_to(array, &DataType::Utf8);
                let values = values.as_string::<i32>();
                if let Some(allowed) = rules.allowed {
                    let rule = format!("unknown value (expected one of {})", allowed.join(", "));
                    let bad = values.iter().map(|v| v.is_some_and(|v| !allowed.contains(&v)));
                    self.flag_rows(name, rule, keys, bad, |i| format!("value {:?}", values.value(i)));
                }
                if let Some(pattern) = rules.pattern {
                    let rule = format!("does not match {pattern}");
                    let regex = &self.patterns[pattern];
                    let bad: Vec<bool> = values.iter().map(|v| v.is_some_and(|v| !regex.is_match(v))).collect();
                    self.flag_rows(name, rule, keys, bad.into_iter(), |i| format!("value {:?}", values.value(i)));
                }
            }
            ColumnType::Float32Vector(length) => self.check_vector(name, length, array, keys, rules),
            ColumnType::Bool | ColumnType::Date32 | ColumnType::Timestamp | ColumnType::Utf8List => {}
        }
    }

    fn check_floats(
        &mut self,
        name: &str,
        rules: &super::Rules,
        values: impl Iterator<Item = Option<f64>> + Clone,
        keys: &RowNames,
        value: impl Fn(usize) -> f64,
    ) {
        if rules.finite {
            let bad = values.clone().map(|v| v.is_some_and(|v| !v.is_finite()));
            self.flag_rows(name, "NaN or infinite value", keys, bad, |i| format!("value {}", value(i)));
        }
        if rules.non_negative {
            let bad = values.clone().map(|v| v.is_some_and(|v| v < 0.0));
            self.flag_rows(name, "negative value", keys, bad, |i| format!("value {}", value(i)));
        }
        if let Some(limit) = rules.at_most {
            let bad = values.map(|v| v.is_some_and(|v| v.is_finite() && v > limit));
            self.flag_rows(name, above(limit), keys, bad, |i| format!("value {}", number(value(i))));
        }
    }

    fn check_vector(&mut self, name: &str, length: usize, array: &ArrayRef, keys: &RowNames, rules: &super::Rules) {
        let list_type = DataType::LargeList(std::sync::Arc::new(Field::new_list_field(DataType::Float32, true)));
        let list = cast_to(array, &list_type);
        let list = list.as_list::<i64>();
        let offsets = list.value_offsets();
        let lengths: Vec<usize> = offsets.windows(2).map(|w| (w[1] - w[0]) as usize).collect();
        let bad = (0..list.len()).map(|i| list.is_valid(i) && lengths[i] != length);
        let rule = format!("wrong length (expected {length}, one value per genre)");
        self.flag_rows(name, rule, keys, bad, |i| format!("length {}", lengths[i]));

        let values = list.values().as_primitive::<Float32Type>();
        // Row of each element, for naming the key of a bad element.
        let row_of = |element: usize| offsets.partition_point(|&o| o as usize <= element) - 1;
        let flags = |test: &dyn Fn(Option<f32>) -> bool| -> (u64, Option<usize>) {
            let mut count = 0;
            let mut first = None;
            let mut last_row = usize::MAX;
            for (element, value) in values.iter().enumerate() {
                if test(value) {
                    let row = row_of(element);
                    if row != last_row {
                        count += 1;
                        last_row = row;
                        first.get_or_insert(row);
                    }
                }
            }
            (count, first)
        };
        // A vector has a value for every genre: no null inside it, nullable or not.
        let (count, first) = flags(&|v| v.is_none());
        self.findings.add(name, "null element", count, || keys.name(first.unwrap_or(0)));
        if rules.finite {
            let (count, first) = flags(&|v| v.is_some_and(|v| !v.is_finite()));
            self.findings.add(name, "NaN or infinite value", count, || keys.name(first.unwrap_or(0)));
        }
        if rules.non_negative {
            let (count, first) = flags(&|v| v.is_some_and(|v| v < 0.0));
            self.findings.add(name, "negative value", count, || keys.name(first.unwrap_or(0)));
        }
        if let Some(limit) = rules.at_most {
            let (count, first) = flags(&|v| v.is_some_and(|v| v.is_finite() && v as f64 > limit));
            self.findings.add(name, above(limit), count, || keys.name(first.unwrap_or(0)));
        }
    }

    /// Counts the rows where `bad` is true and records the first as example.
    fn flag_rows(
        &mut self,
        column: &str,
        rule: impl Into<String>,
        keys: &RowNames,
        bad: impl Iterator<Item = bool>,
        detail: impl Fn(usize) -> String,
    ) {
        let mut count = 0u64;
        let mut first = None;
        for (row, is_bad) in bad.enumerate() {
            if is_bad {
                count += 1;
                first.get_or_insert(row);
            }
        }
        if let Some(row) = first {
            self.findings.add(column, rule, count, || format!("{} ({})", keys.name(row), detail(row)));
        }
    }

    /// Duplicate keys for tables with a unique key, and the podcast ids campaigns
    /// may refer to.
    fn check_keys(&mut self, batch: &RecordBatch, keys: &RowNames) {
        if !self.spec.unique_key {
            return;
        }
        let key = self.spec.key[0];
        let Some(array) = batch.column_by_name(key) else { return };
        let mut duplicates = 0u64;
        let mut first = None;
        match self.spec.column(key).map(|c| c.ty) {
            Some(ColumnType::Int64) => {
                for (row, value) in array.as_primitive::<Int64Type>().iter().enumerate() {
                    if value.is_some_and(|v| !self.int_keys.insert(v)) {
                        duplicates += 1;
                        first.get_or_insert(row);
                    }
                }
            }
            _ => {
                let values = cast_to(array, &DataType::Utf8);
                for (row, value) in values.as_string::<i32>().iter().enumerate() {
                    if value.is_some_and(|v| !self.string_keys.insert(v.to_string())) {
                        duplicates += 1;
                        first.get_or_insert(row);
                    }
                }
            }
        }
        if let Some(row) = first {
            self.findings.add(key, "duplicate key", duplicates, || keys.name(row));
        }
    }

    /// Rules that span columns of a campaign row.
    fn check_campaign_rows(&mut self, batch: &RecordBatch, keys: &RowNames) {
        let date = |name: &str| batch.column_by_name(name).map(|a| a.as_primitive::<Date32Type>().clone());
        if let (Some(start), Some(end)) = (date("start_date"), date("end_date")) {
            let bad = start.iter().zip(end.iter()).map(|(s, e)| matches!((s, e), (Some(s), Some(e)) if s > e));
            let detail = |i: usize| {
                let day = |d: i32| chrono::NaiveDate::from_num_days_from_ce_opt(d + 719_163).map(|d| d.to_string());
                format!("{} > {}", day(start.value(i)).unwrap_or_default(), day(end.value(i)).unwrap_or_default())
            };
            self.flag_rows("start_date", "start_date after end_date", keys, bad, detail);
        }

        let float = |name: &str| batch.column_by_name(name).map(|a| cast_to(a, &DataType::Float64));
        if let Some(budget) = float("budget") {
            let total = float("total_budget");
            let spent = float("spent_to_date");
            let present = |a: &Option<ArrayRef>, i: usize| a.as_ref().is_some_and(|a| a.is_valid(i));
            let bad = (0..budget.len()).map(|i| budget.is_null(i) && !(present(&total, i) && present(&spent, i)));
            let rule = "no budget (budget is null and total_budget/spent_to_date are not both given)";
            self.flag_rows("budget", rule, keys, bad, |_| "budget null".into());
        }

        if !self.known_podcasts.is_empty()
            && let Some(podcast) = batch.column_by_name("podcast_id")
        {
            let podcast = podcast.as_primitive::<Int64Type>();
            let bad = podcast.iter().map(|p| p.is_some_and(|p| !self.known_podcasts.contains(&p)));
            let bad: Vec<bool> = bad.collect();
            let rule = "unknown podcast (not in the podcasts table)";
            self.flag_rows("podcast_id", rule, keys, bad.into_iter(), |i| format!("podcast_id {}", podcast.value(i)));
        }
    }
}

/// Casts a column to the type the checks read; the contract's accepted types all
/// cast losslessly, so a failure here is a bug.
/// The rule a value above the contract's limit breaks.
fn above(limit: f64) -> String {
    format!("value above the contract's limit of {}", number(limit))
}

/// A number as a person reads it: 720, 1e12, 1e300 (not in 301 digits).
fn number(x: f64) -> String {
    if x.abs() >= 1e6 { format!("{x:e}") } else { x.to_string() }
}

fn cast_to(array: &ArrayRef, to: &DataType) -> ArrayRef {
    if array.data_type() == to {
        return array.clone();
    }
    cast(array, to).unwrap_or_else(|e| panic!("cast {} to {to}: {e}", array.data_type()))
}

/// Names a row in messages: by its key where the table has one, else by file and
/// row number. Keys are only formatted when a message needs one.
struct RowNames {
    key_columns: Vec<(String, ArrayRef)>,
    file_url: String,
    first_row: u64,
}

impl RowNames {
    fn new(spec: &TableSpec, batch: &RecordBatch, file_url: &str, first_row: u64) -> Self {
        let key_columns = if spec.unique_key || spec.table == Table::Follows {
            spec.key.iter().filter_map(|&k| Some((k.to_string(), batch.column_by_name(k)?.clone()))).collect()
        } else {
            Vec::new()
        };
        RowNames { key_columns, file_url: file_url.to_string(), first_row }
    }

    fn name(&self, row: usize) -> String {
        let parts: Vec<String> = self
            .key_columns
            .iter()
            .filter(|(_, values)| values.is_valid(row))
            .filter_map(|(name, values)| Some(format!("{name}={}", array_value_to_string(values, row).ok()?)))
            .collect();
        if parts.len() == self.key_columns.len() && !parts.is_empty() {
            parts.join(",")
        } else {
            format!("row {} of {}", self.first_row + row as u64, self.file_url)
        }
    }
}
