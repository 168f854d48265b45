//! The follow exclusions (no campaign for a user who follows its podcast),
//! read per user batch instead of held whole. Preparing reads only the
//! follows files' footers: per row group, its `user_id` range from the
//! Parquet statistics ([`FollowsIndex`]). Each scorer keeps a
//! [`FollowCache`]: before a batch of users is scored, the row groups whose
//! range meets the batch's are read (two columns, the active campaigns'
//! podcasts kept), and the ones wholly below the batch are dropped.
//!
//! Correct for any order of either table. Memory stays flat when both are
//! clustered by `user_id` (the generator writes them so, and so does a
//! warehouse table sorted or bucketed by user): a batch then meets one or two
//! row groups. When they are not, batches meet many row groups and the cache
//! holds up to the whole table, as a map held whole would. A row group with
//! no statistics is read for every batch that no loaded copy covers.

use std::collections::{BTreeMap, HashMap};

use arrow::array::AsArray;
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type};
use futures::TryStreamExt;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
use parquet::file::statistics::Statistics;

use super::eligibility::ActiveCampaign;
use crate::contract::Table;
use crate::storage::{Location, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum FollowsError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("follows file {url}: {reason}")]
    File { url: String, reason: String },
}

impl FollowsError {
    fn file(url: &str, reason: impl ToString) -> FollowsError {
        FollowsError::File { url: url.to_string(), reason: reason.to_string() }
    }

    pub fn exit_code(&self) -> crate::exit_code::ExitCode {
        match self {
            FollowsError::Storage(e) => e.exit_code(),
            FollowsError::File { .. } => crate::exit_code::ExitCode::Invalid,
        }
    }
}

/// One row group of the follows table and the `user_id`s it holds.
struct Group {
    file: usize,
    row_group: usize,
    /// Smallest and largest `user_id` (the whole `i64` range when unknown).
    min: i64,
    max: i64,
}

struct FollowsFile {
    location: Location,
    object: object_store::ObjectMeta,
    metadata: ArrowReaderMetadata,
    /// Leaf columns of `user_id` and `podcast_id`.
    columns: [usize; 2],
}

/// The follows table's row groups and, per podcast, the active campaigns
/// promoting it.
pub struct FollowsIndex {
    files: Vec<FollowsFile>,
    groups: Vec<Group>,
    campaigns_of: HashMap<i64, Vec<u32>>,
}

impl FollowsIndex {
    /// Reads the footers of the follows files under `root`.
    pub async fn new(root: &Location, campaigns: &[ActiveCampaign]) -> Result<FollowsIndex, FollowsError> {
        let mut campaigns_of: HashMap<i64, Vec<u32>> = HashMap::new();
        for (c, campaign) in campaigns.iter().enumerate() {
            campaigns_of.entry(campaign.podcast_id).or_default().push(c as u32);
        }
        let table = root.join(Table::Follows.name());
        let (mut files, mut groups) = (Vec::new(), Vec::new());
        if campaigns.is_empty() {
            return Ok(FollowsIndex { files, groups, campaigns_of });
        }
        for object in crate::contract::files::data_files(&table).await? {
            let url = table.url_of(&object.location);
            let mut reader = table.parquet_reader(&object);
            let metadata = ArrowReaderMetadata::load_async(&mut reader, ArrowReaderOptions::new())
                .await
                .map_err(|e| FollowsError::file(&url, e))?;
            let schema = metadata.parquet_schema();
            let leaf = |name: &str| {
                (0..schema.num_columns())
                    .find(|&i| schema.column(i).path().parts() == [name])
                    .ok_or_else(|| FollowsError::file(&url, format!("has no column {name}")))
            };
            let columns = [leaf("user_id")?, leaf("podcast_id")?];
            for (row_group, meta) in metadata.metadata().row_groups().iter().enumerate() {
                if meta.num_rows() == 0 {
                    continue;
                }
                let (min, max) = user_range(meta.column(columns[0]).statistics()).unwrap_or((i64::MIN, i64::MAX));
                groups.push(Group { file: files.len(), row_group, min, max });
            }
            files.push(FollowsFile { location: table.clone(), object, metadata, columns });
        }
        Ok(FollowsIndex { files, groups, campaigns_of })
    }

    pub fn row_groups(&self) -> usize {
        self.groups.len()
    }

    /// The (user, campaign) exclusions of row group `group`, for the active campaigns.
    async fn read(&self, group: &Group) -> Result<HashMap<i64, Vec<u32>>, FollowsError> {
        let file = &self.files[group.file];
        let url = file.location.url_of(&file.object.location);
        let reader = file.location.parquet_reader(&file.object);
        let mask = ProjectionMask::leaves(file.metadata.parquet_schema(), file.columns);
        let stream = ParquetRecordBatchStreamBuilder::new_with_metadata(reader, file.metadata.clone())
            .with_row_groups(vec![group.row_group])
            .with_projection(mask)
            .build()
            .map_err(|e| FollowsError::file(&url, e))?;
        let batches: Vec<_> = stream.try_collect().await.map_err(|e| FollowsError::file(&url, e))?;
        let mut out: HashMap<i64, Vec<u32>> = HashMap::new();
        for batch in batches {
            let column = |name: &str| {
                let column =
                    batch.column_by_name(name).ok_or_else(|| FollowsError::file(&url, format!("no {name}")))?;
                cast(column, &DataType::Int64).map_err(|e| FollowsError::file(&url, format!("{name}: {e}")))
            };
            let (users, podcasts) = (column("user_id")?, column("podcast_id")?);
            let (users, podcasts) = (users.as_primitive::<Int64Type>(), podcasts.as_primitive::<Int64Type>());
            for (user, podcast) in users.iter().zip(podcasts.iter()) {
                if let (Some(user), Some(campaigns)) = (user, podcast.and_then(|p| self.campaigns_of.get(&p))) {
                    out.entry(user).or_default().extend(campaigns);
                }
            }
        }
        Ok(out)
    }
}

/// The smallest and largest `user_id` of a row group, from its statistics.
fn user_range(statistics: Option<&Statistics>) -> Option<(i64, i64)> {
    match statistics? {
        Statistics::Int64(s) => Some((*s.min_opt()?, *s.max_opt()?)),
        Statistics::Int32(s) => Some((*s.min_opt()? as i64, *s.max_opt()? as i64)),
        _ => None,
    }
}

/// One scorer's loaded row groups of the follows table.
#[derive(Default)]
pub struct FollowCache {
    /// Per loaded group (an index into the index's groups), its exclusions.
    loaded: BTreeMap<usize, HashMap<i64, Vec<u32>>>,
    /// Row groups read so far (a group read again after it was dropped counts again).
    pub reads: u64,
    /// The most exclusions held at once.
    pub peak: u64,
}

impl FollowCache {
    /// Makes the exclusions of users `min..=max` available: reads the row
    /// groups that meet the range and drops those wholly below it.
    pub async fn cover(&mut self, index: &FollowsIndex, min: i64, max: i64) -> Result<(), FollowsError> {
        self.loaded.retain(|&g, _| index.groups[g].max >= min);
        for (g, group) in index.groups.iter().enumerate() {
            if group.min <= max && group.max >= min && !self.loaded.contains_key(&g) {
                let exclusions = index.read(group).await?;
                self.loaded.insert(g, exclusions);
                self.reads += 1;
            }
        }
        self.peak = self.peak.max(self.held());
        Ok(())
    }

    /// Calls `exclude(campaign)` for every active campaign whose podcast
    /// `user` follows (a campaign may come more than once).
    pub fn for_each(&self, index: &FollowsIndex, user: i64, mut exclude: impl FnMut(usize)) {
        for (&g, exclusions) in &self.loaded {
            let group = &index.groups[g];
            if group.min <= user
                && user <= group.max
                && let Some(campaigns) = exclusions.get(&user)
            {
                campaigns.iter().for_each(|&c| exclude(c as usize));
            }
        }
    }

    /// Exclusions held now.
    pub fn held(&self) -> u64 {
        self.loaded.values().flat_map(|m| m.values()).map(|c| c.len() as u64).sum()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashSet};
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch};

    use super::*;
    use crate::contract::Channel;
    use crate::scoring::eligibility::Targeting;

    fn campaign(id: &str, podcast_id: i64) -> ActiveCampaign {
        crate::scoring::eligibility::tests::campaign(id, Channel::Promotion, podcast_id, Targeting::default())
    }

    /// A follows table of `rows` in files of `per_file` rows and row groups of `per_group`.
    async fn write_follows(root: &Location, rows: &[(i64, i64)], per_file: usize, per_group: usize) {
        for (f, chunk) in rows.chunks(per_file).enumerate() {
            let file = root.join(&format!("follows/part-{f:05}.parquet"));
            let mut writer = file.parquet_writer_with_row_groups(Table::Follows.spec().schema(), per_group).unwrap();
            let users = Int64Array::from_iter_values(chunk.iter().map(|r| r.0));
            let podcasts = Int64Array::from_iter_values(chunk.iter().map(|r| r.1));
            let batch = RecordBatch::try_new(Table::Follows.spec().schema(), vec![Arc::new(users), Arc::new(podcasts)])
                .unwrap();
            writer.write(&batch).await.unwrap();
            writer.finish().await.unwrap();
        }
    }

    /// Per user in `min..=max`, the campaigns excluded, as the cache says.
    fn excluded(cache: &FollowCache, index: &FollowsIndex, min: i64, max: i64) -> BTreeSet<(i64, usize)> {
        let mut out = BTreeSet::new();
        for user in min..=max {
            cache.for_each(index, user, |c| {
                out.insert((user, c));
            });
        }
        out
    }

    /// 1,000 users following podcasts 1..=5 (user u follows u % 5 + 1 and,
    /// when u % 3 == 0, podcast 9); campaigns on podcasts 1, 1 and 9.
    fn follows() -> (Vec<(i64, i64)>, Vec<ActiveCampaign>) {
        let mut rows = Vec::new();
        for user in 1..=1_000i64 {
            rows.push((user, user % 5 + 1));
            if user % 3 == 0 {
                rows.push((user, 9));
            }
        }
        (rows, vec![campaign("a", 1), campaign("b", 1), campaign("c", 9)])
    }

    fn truth(rows: &[(i64, i64)], campaigns: &[ActiveCampaign], min: i64, max: i64) -> BTreeSet<(i64, usize)> {
        let mut out = BTreeSet::new();
        for &(user, podcast) in rows.iter().filter(|r| (min..=max).contains(&r.0)) {
            for (c, campaign) in campaigns.iter().enumerate() {
                if campaign.podcast_id == podcast {
                    out.insert((user, c));
                }
            }
        }
        out
    }

    #[tokio::test]
    async fn sorted_follows_are_read_a_few_row_groups_at_a_time_and_dropped_behind() {
        let dir = tempfile::tempdir().unwrap();
        let root = Location::parse(dir.path().to_str().unwrap()).unwrap();
        let (rows, campaigns) = follows();
        write_follows(&root, &rows, 600, 100).await;
        let index = FollowsIndex::new(&root, &campaigns).await.unwrap();
        assert_eq!(index.row_groups(), 14, "files of 600, 600 and 133 rows in row groups of 100");
        let mut cache = FollowCache::default();
        for (min, max) in [(1, 100), (101, 200), (480, 520), (901, 1_000)] {
            cache.cover(&index, min, max).await.unwrap();
            assert_eq!(excluded(&cache, &index, min, max), truth(&rows, &campaigns, min, max), "users {min}..={max}");
            // Users 100 apart hold 133 rows: a batch meets two or three row groups.
            assert!(cache.loaded.len() <= 3, "{} row groups held for users {min}..={max}", cache.loaded.len());
        }
        assert!(cache.reads < 14, "{} reads", cache.reads);
    }

    #[tokio::test]
    async fn follows_in_any_order_give_the_same_exclusions() {
        let dir = tempfile::tempdir().unwrap();
        let root = Location::parse(dir.path().to_str().unwrap()).unwrap();
        let (mut rows, campaigns) = follows();
        // A fixed shuffle: every row group then spans nearly all users.
        rows.sort_by_key(|&(user, podcast)| (user * 7_919 + podcast) % 1_009);
        write_follows(&root, &rows, 500, 128).await;
        let index = FollowsIndex::new(&root, &campaigns).await.unwrap();
        let mut cache = FollowCache::default();
        let mut seen = HashSet::new();
        for (min, max) in [(700, 800), (1, 50), (51, 1_000)] {
            cache.cover(&index, min, max).await.unwrap();
            let got = excluded(&cache, &index, min, max);
            assert_eq!(got, truth(&rows, &campaigns, min, max), "users {min}..={max}");
            seen.extend(got);
        }
        assert_eq!(seen.len(), truth(&rows, &campaigns, 1, 1_000).len());
    }

    #[tokio::test]
    async fn no_follows_table_and_no_campaigns_exclude_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let root = Location::parse(dir.path().to_str().unwrap()).unwrap();
        let (rows, campaigns) = follows();
        let index = FollowsIndex::new(&root, &campaigns).await.unwrap();
        let mut cache = FollowCache::default();
        cache.cover(&index, 1, 1_000).await.unwrap();
        assert!(excluded(&cache, &index, 1, 1_000).is_empty());
        write_follows(&root, &rows, 2_000, 100).await;
        let index = FollowsIndex::new(&root, &[]).await.unwrap();
        assert_eq!(index.row_groups(), 0, "no campaign: nothing to read");
    }
}
