//! The users scan split into partitions by rows, not by row groups or files:
//! partition `p` of `P` reads rows `[p·N/P, (p+1)·N/P)` of the table (its
//! files in path order, rows in file order), whatever the table's layout. One
//! file of one row group, a few huge row groups and thousands of tiny files
//! all give every partition the same number of users, so every core scores.
//!
//! A [`RowSplit`] is plain data: the job computes it once from the files'
//! footers ([`RowSplit::plan`]), and the local engine, the scheduler and each
//! executor apply it to their own plan of the scan ([`RowSplit::apply`]) as a
//! per-file Parquet row selection, which DataFusion's Parquet reader turns
//! into the row groups and rows to decode. Scoring does not depend on how
//! users fall into partitions (pools order candidates totally, tiles have
//! fixed shapes), so the split changes the speed, never the audiences.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::ParquetSource;
use datafusion::datasource::physical_plan::parquet::ParquetRowSelection;
use datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfig, FileScanConfigBuilder};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::union::UnionExec;
use parquet::arrow::arrow_reader::{RowSelection, RowSelector};
use serde::{Deserialize, Serialize};

/// Which rows of which file each partition reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowSplit {
    /// The table's files (paths as the scan names them) and their rows, in path order.
    pub files: Vec<FileRows>,
    /// Per partition, its slices, in table order.
    pub partitions: Vec<Vec<Slice>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRows {
    pub path: String,
    pub rows: u64,
}

/// Rows `[start, end)` of file `file` (an index into [`RowSplit::files`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slice {
    pub file: usize,
    pub start: u64,
    pub end: u64,
}

impl RowSplit {
    /// `files` (path, rows) split into `partitions` runs of consecutive rows
    /// whose sizes differ by at most one.
    pub fn new(mut files: Vec<FileRows>, partitions: usize) -> RowSplit {
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let partitions = partitions.max(1);
        let total: u64 = files.iter().map(|f| f.rows).sum();
        let bound = |p: usize| (total as u128 * p as u128 / partitions as u128) as u64;
        let mut out = vec![Vec::new(); partitions];
        let mut file_start = 0;
        for (file, f) in files.iter().enumerate() {
            let file_end = file_start + f.rows;
            for (p, slices) in out.iter_mut().enumerate() {
                let (start, end) = (bound(p).max(file_start), bound(p + 1).min(file_end));
                if start < end {
                    slices.push(Slice { file, start: start - file_start, end: end - file_start });
                }
            }
            file_start = file_end;
        }
        RowSplit { files, partitions: out }
    }

    /// The split of the Parquet scan in `plan` into `partitions`, from its
    /// files' footers (row counts only; nothing else is read). A plan with no
    /// file scan (a table with no files) gets a split of no files, which
    /// [`RowSplit::apply`] leaves as it is.
    pub async fn plan(plan: &Arc<dyn ExecutionPlan>, partitions: usize, task: &TaskContext) -> Result<RowSplit> {
        let Some(config) = file_scan(plan) else {
            return Ok(RowSplit::new(Vec::new(), partitions));
        };
        let store = task.runtime_env().object_store(&config.object_store_url)?;
        let mut metas = BTreeMap::new();
        for file in config.file_groups.iter().flat_map(|g| g.iter()) {
            metas.entry(file.object_meta.location.to_string()).or_insert_with(|| file.object_meta.clone());
        }
        let mut files = Vec::with_capacity(metas.len());
        for (path, meta) in metas {
            let footer = DFParquetMetadata::new(store.as_ref(), &meta).fetch_metadata().await?;
            let rows = u64::try_from(footer.file_metadata().num_rows())
                .map_err(|_| DataFusionError::Execution(format!("{path}: negative row count in its footer")))?;
            files.push(FileRows { path, rows });
        }
        Ok(RowSplit::new(files, partitions))
    }

    /// `plan` with its Parquet scan reading this split: a union of one scan
    /// per entry of [`RowSplit::partitions`], the `k`-th reading partition
    /// `k`'s rows. The union's position is the partition's identity, so the
    /// split survives what a cluster does to the plan: Ballista's scheduler
    /// gives each task a copy whose other scans have no file groups, and
    /// the row selections, which do not travel in its protobuf, are attached
    /// again by position on each executor. Applying it again (to the plan or
    /// to such a copy) gives the same plan. Fails, naming a file, when the
    /// scan's files are not the split's (the table changed after the split
    /// was planned).
    pub fn apply(&self, plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
        let rewritten = plan.transform_down(|node| {
            if let Some(union) = node.downcast_ref::<UnionExec>()
                && union.inputs().len() == self.partitions.len()
                && union.inputs().iter().all(|input| scan_config(input).is_some())
            {
                let scans = union.inputs().iter().enumerate().map(|(k, scan)| self.scan(k, scan));
                let union = UnionExec::try_new(scans.collect::<Result<_>>()?)?;
                return Ok(Transformed::new(union, true, TreeNodeRecursion::Jump));
            }
            if scan_config(&node).is_some() {
                let scans = (0..self.partitions.len()).map(|k| self.scan(k, &node));
                let union = UnionExec::try_new(scans.collect::<Result<_>>()?)?;
                return Ok(Transformed::new(union, true, TreeNodeRecursion::Jump));
            }
            Ok(Transformed::no(node))
        })?;
        Ok(rewritten.data)
    }

    /// The scan `template` reading partition `k`'s rows in one file group; a
    /// template with no file group (another task's partition) stays empty.
    fn scan(&self, k: usize, template: &Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
        let config = scan_config(template).expect("a Parquet scan");
        if config.file_groups.is_empty() {
            return Ok(Arc::clone(template));
        }
        let by_path: BTreeMap<String, &PartitionedFile> =
            config.file_groups.iter().flat_map(|g| g.iter()).map(|f| (f.object_meta.location.to_string(), f)).collect();
        for path in by_path.keys() {
            if !self.files.iter().any(|f| &f.path == path) {
                return Err(changed(path, "is not in the split planned for this run"));
            }
        }
        let mut group = Vec::with_capacity(self.partitions[k].len());
        for slice in &self.partitions[k] {
            let rows = &self.files[slice.file];
            let Some(file) = by_path.get(&rows.path) else {
                return Err(changed(&rows.path, "is gone"));
            };
            group.push(slice_of(file, rows.rows, slice));
        }
        let config = FileScanConfigBuilder::from(config.clone()).with_file_groups(vec![FileGroup::new(group)]).build();
        Ok(DataSourceExec::from_data_source(config))
    }
}

fn changed(path: &str, what: &str) -> DataFusionError {
    DataFusionError::Execution(format!(
        "users file {path} {what}: the users table changed during the run; run the job again"
    ))
}

/// `file` narrowed to one slice of its `rows` rows.
fn slice_of(file: &PartitionedFile, rows: u64, slice: &Slice) -> PartitionedFile {
    let mut selectors = Vec::with_capacity(3);
    if slice.start > 0 {
        selectors.push(RowSelector::skip(slice.start as usize));
    }
    selectors.push(RowSelector::select((slice.end - slice.start) as usize));
    if slice.end < rows {
        selectors.push(RowSelector::skip((rows - slice.end) as usize));
    }
    let mut out = file.clone();
    out.range = None;
    out.statistics = None;
    out.with_extension(ParquetRowSelection::new(RowSelection::from(selectors)))
}

fn scan_config(node: &Arc<dyn ExecutionPlan>) -> Option<&FileScanConfig> {
    node.downcast_ref::<DataSourceExec>()?.downcast_to_file_source::<ParquetSource>().map(|(config, _)| config)
}

/// The file scan in `plan`, a chain of single-input nodes over it.
fn file_scan(plan: &Arc<dyn ExecutionPlan>) -> Option<&FileScanConfig> {
    if let Some(config) = scan_config(plan) {
        return Some(config);
    }
    match plan.children().as_slice() {
        [child] => file_scan(child),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(rows: &[u64]) -> Vec<FileRows> {
        rows.iter().enumerate().map(|(i, &rows)| FileRows { path: format!("part-{i:03}.parquet"), rows }).collect()
    }

    fn sizes(split: &RowSplit) -> Vec<u64> {
        split.partitions.iter().map(|p| p.iter().map(|s| s.end - s.start).sum()).collect()
    }

    #[test]
    fn one_file_of_one_row_group_splits_evenly() {
        let split = RowSplit::new(files(&[100_001]), 2);
        assert_eq!(sizes(&split), [50_000, 50_001]);
        assert_eq!(split.partitions[1], [Slice { file: 0, start: 50_000, end: 100_001 }]);
    }

    #[test]
    fn many_small_files_split_evenly_and_cover_every_row_once() {
        let rows: Vec<u64> = (0..1_000).map(|i| 90 + i % 21).collect();
        let split = RowSplit::new(files(&rows), 3);
        let total: u64 = rows.iter().sum();
        let sizes = sizes(&split);
        assert_eq!(sizes.iter().sum::<u64>(), total);
        assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1, "{sizes:?}");
        // Every row of every file is read exactly once, in table order.
        let mut next = vec![0u64; rows.len()];
        let mut last_file = 0;
        for slice in split.partitions.iter().flatten() {
            assert!(slice.file >= last_file);
            assert_eq!(slice.start, next[slice.file]);
            next[slice.file] = slice.end;
            last_file = slice.file;
        }
        assert_eq!(next, rows);
    }

    #[test]
    fn files_are_taken_in_path_order_and_empty_ones_skipped() {
        let mut input = files(&[10, 0, 30]);
        input.reverse();
        let split = RowSplit::new(input, 2);
        assert_eq!(split.files[0].path, "part-000.parquet");
        assert_eq!(split.partitions[0], [Slice { file: 0, start: 0, end: 10 }, Slice { file: 2, start: 0, end: 10 }]);
        assert_eq!(split.partitions[1], [Slice { file: 2, start: 10, end: 30 }]);
    }

    #[test]
    fn more_partitions_than_rows_leaves_some_empty() {
        let split = RowSplit::new(files(&[2]), 4);
        assert_eq!(sizes(&split), [0, 1, 0, 1]);
    }
}
