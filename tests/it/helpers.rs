//! Shared test helpers: small generated worlds and table surgery to break them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::compute::concat_batches;
use arrow::datatypes::{Field, Schema};
use audience::contract::Table;
use audience::contract::validate::{Report, validate_world};
use audience::storage::Location;
use audience::world::WorldConfig;
use audience::world::generate::generate;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// A small world: quick to generate, big enough to hold every kind of row.
pub fn small_config(seed: u64) -> WorldConfig {
    WorldConfig { seed, users: 600, podcasts: 150, campaigns: 30, impressions: 3_000, days: 3, ..WorldConfig::default() }
}

/// Generates a small world into a new temporary directory.
pub async fn small_world() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("world");
    generate(&location(&root), small_config(7), false).await.unwrap();
    (dir, root)
}

pub fn location(path: &Path) -> Location {
    Location::parse(path.to_str().unwrap()).unwrap()
}

pub async fn validate(root: &Path) -> Report {
    validate_world(&location(root)).await.unwrap()
}

/// Every data file of a table, sorted.
pub fn table_files(root: &Path, table: Table) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join(table.name()))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

/// The whole table as one batch.
pub fn read_table(root: &Path, table: Table) -> RecordBatch {
    let mut batches = Vec::new();
    let mut schema = None;
    for file in table_files(root, table) {
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(file).unwrap()).unwrap();
        schema.get_or_insert(reader.schema().clone());
        batches.extend(reader.build().unwrap().map(|b| b.unwrap()));
    }
    concat_batches(&schema.unwrap(), &batches).unwrap()
}

/// Replaces the table's files with one file holding `batch`.
pub fn write_table(root: &Path, table: Table, batch: &RecordBatch) {
    for file in table_files(root, table) {
        std::fs::remove_file(file).unwrap();
    }
    let file = std::fs::File::create(root.join(table.name()).join("part-00000.parquet")).unwrap();
    let mut writer = ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    writer.write(batch).unwrap();
    writer.close().unwrap();
}

/// `batch` with column `name` replaced by `array` (whose type may differ).
pub fn with_column(batch: &RecordBatch, name: &str, array: ArrayRef) -> RecordBatch {
    let index = batch.schema().index_of(name).unwrap();
    let mut fields: Vec<Field> = batch.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    fields[index] = Field::new(name, array.data_type().clone(), true);
    let mut columns = batch.columns().to_vec();
    columns[index] = array;
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
}

/// `batch` without column `name`.
pub fn without_column(batch: &RecordBatch, name: &str) -> RecordBatch {
    let index = batch.schema().index_of(name).unwrap();
    let mut batch = batch.clone();
    batch.remove_column(index);
    batch
}

/// Rewrites one column of a table through `edit`.
pub fn edit_column(root: &Path, table: Table, name: &str, edit: impl FnOnce(&ArrayRef) -> ArrayRef) {
    let batch = read_table(root, table);
    let column = batch.column_by_name(name).unwrap().clone();
    write_table(root, table, &with_column(&batch, name, edit(&column)));
}

/// The single problem reported for `table.column`, with a readable failure.
pub fn only_problem(report: &Report, table: Table, column: &str) -> String {
    let found = report.problems_for(table, column);
    assert_eq!(found.len(), 1, "expected one problem for {table}.{column}, got {:#?}", report.problems);
    found[0].to_string()
}
