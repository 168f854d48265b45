//! Training examples: impression logs joined with users, campaigns and podcasts
//! (a DataFusion plan over any object_store URL), encoded into tensors, with the
//! temporal train / validation / test split by day.

use datafusion::error::DataFusionError;
use futures::StreamExt;
use tch::Tensor;

use super::features::{FeatureSpec, Rows, encode_campaigns, encode_users, pair_features};
use super::network::Inputs;
use crate::contract::files::fingerprint;
use crate::contract::{Table, stream_tier};
use crate::exit_code::ExitCode;
use crate::storage::Location;

/// Label columns, in this order: `streamed`, `clicked`, `liked`, `followed`.
pub const LABELS: [&str; 4] = ["streamed", "clicked", "liked", "followed"];

/// Every impression with the features of its user and campaign.
pub struct Dataset {
    pub inputs: Inputs,
    /// `[n, 4]` Float labels, in [`LABELS`] order.
    pub labels: Tensor,
    /// The same labels, row-major.
    label_values: Vec<f32>,
    pub is_ad: Vec<bool>,
    /// Days since 1970-01-01 of each impression.
    pub day: Vec<i32>,
    /// Stream tier (0..8) of the impression's podcast.
    pub tier: Vec<u8>,
    /// Raw encoded dense values (user, campaign, pair), for fitting normalisation.
    pub raw: [Vec<f32>; 3],
    /// SHA-256 over the input files (path, size, version) of the tables read.
    pub fingerprint: String,
}

/// Rows of the split, as indices into the dataset.
#[derive(Debug, Clone, Default)]
pub struct Split {
    pub train: Vec<i64>,
    pub validation: Vec<i64>,
    pub test: Vec<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error(transparent)]
    Feature(#[from] super::features::FeatureError),
    #[error("reading training data from {url}: {source}")]
    Query { url: String, source: DataFusionError },
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    #[error("{0}")]
    Empty(String),
}

impl DatasetError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            DatasetError::Feature(_) | DatasetError::Empty(_) => ExitCode::Invalid,
            DatasetError::Query { source, .. } => crate::exit_code::of_query(source),
            DatasetError::Storage(e) => e.exit_code(),
        }
    }
}

const QUERY: &str = "
SELECT CAST(i.ts AS DATE) AS day, i.hour, i.source,
       i.streamed, i.clicked, i.liked, i.followed,
       u.user_id, u.country, u.age_bucket, u.platform, u.language,
       u.listening_hours_30d, u.follows_count, u.searches_30d, u.genre_affinity,
       c.campaign_id, c.kind, c.format, c.surface,
       p.podcast_id, p.genre, p.language AS podcast_language, p.topics, p.streams_30d, p.is_original
FROM impressions i
JOIN users u ON i.user_id = u.user_id
JOIN campaigns c ON i.campaign_id = c.campaign_id
JOIN podcasts p ON c.podcast_id = p.podcast_id
ORDER BY i.ts, i.user_id, i.campaign_id, i.hour, i.streamed, i.clicked, i.liked, i.followed";

const TABLES: [Table; 4] = [Table::Impressions, Table::Users, Table::Campaigns, Table::Podcasts];

impl Dataset {
    /// Reads and encodes every impression of the world at `root` whose user,
    /// campaign and podcast exist.
    pub async fn load(root: &Location, spec: &FeatureSpec) -> Result<Dataset, DatasetError> {
        let query_error = |source| DatasetError::Query { url: root.url().to_string(), source };
        let ctx = crate::tables::session(root, &TABLES, Default::default()).await.map_err(query_error)?;
        let mut stream = ctx.sql(QUERY).await.map_err(query_error)?.execute_stream().await.map_err(query_error)?;
        let table = "impressions joined with users, campaigns, podcasts";
        let (mut user, mut campaign, mut pair) = (Rows::default(), Rows::default(), Vec::new());
        let (mut labels, mut is_ad, mut day, mut tier) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(query_error)?;
            let users = encode_users(spec, table, &batch)?;
            let campaigns = encode_campaigns(spec, table, &batch)?;
            let column = |name: &str| batch.column_by_name(name).expect("selected by the query");
            let hours = arrow::compute::cast(column("hour"), &arrow::datatypes::DataType::Int64)
                .map_err(|e| query_error(e.into()))?;
            let hours = arrow::array::AsArray::as_primitive::<arrow::datatypes::Int64Type>(&hours);
            let sources = arrow::compute::cast(column("source"), &arrow::datatypes::DataType::Utf8)
                .map_err(|e| query_error(e.into()))?;
            let sources = arrow::array::AsArray::as_string::<i32>(&sources);
            let days = arrow::array::AsArray::as_primitive::<arrow::datatypes::Date32Type>(column("day"));
            let streams = arrow::compute::cast(column("streams_30d"), &arrow::datatypes::DataType::Int64)
                .map_err(|e| query_error(e.into()))?;
            let streams = arrow::array::AsArray::as_primitive::<arrow::datatypes::Int64Type>(&streams);
            let flags: Vec<_> = LABELS.iter().map(|l| arrow::array::AsArray::as_boolean(column(l)).clone()).collect();
            for row in 0..batch.num_rows() {
                let genre = campaigns.genre[row];
                let same_language = users.language[row] == campaigns.language[row];
                pair.extend(pair_features(users.affinity(row, genre), same_language, hours.value(row) as u8));
                labels.extend(flags.iter().map(|f| f.value(row) as u8 as f32));
                is_ad.push(sources.value(row) == "ad");
                day.push(days.value(row));
                tier.push(stream_tier(streams.value(row)) as u8);
            }
            user.extend(users.rows);
            campaign.extend(campaigns.rows);
        }
        let n = day.len() as i64;
        if n == 0 {
            return Err(DatasetError::Empty(format!(
                "{}: no impression joins a known user, campaign and podcast; nothing to train on",
                root.url()
            )));
        }
        let matrix = |values: &[f32], width: usize| Tensor::from_slice(values).view([n, width as i64]);
        let cats = |values: &[i64], width: usize| Tensor::from_slice(values).view([n, width as i64]);
        let inputs = Inputs {
            user_cat: cats(&user.cat, spec.user.cat_width()),
            user_dense: matrix(&user.dense, spec.user.dense.len()),
            campaign_cat: cats(&campaign.cat, spec.campaign.cat_width()),
            campaign_dense: matrix(&campaign.dense, spec.campaign.dense.len()),
            pair: matrix(&pair, spec.pair.dense.len()),
        };
        Ok(Dataset {
            inputs,
            labels: matrix(&labels, LABELS.len()),
            label_values: labels,
            is_ad,
            day,
            tier,
            raw: [user.dense, campaign.dense, pair],
            fingerprint: fingerprint(root, &TABLES).await?,
        })
    }

    pub fn len(&self) -> usize {
        self.day.len()
    }

    pub fn is_empty(&self) -> bool {
        self.day.is_empty()
    }

    /// Label `label` (index into [`LABELS`]) of every row.
    pub fn label_column(&self, label: usize) -> Vec<bool> {
        self.label_values.iter().skip(label).step_by(LABELS.len()).map(|&v| v > 0.5).collect()
    }

    /// The temporal split: the last `test_days` days are the test set, the
    /// `validation_days` before them validation, everything older training.
    pub fn split(&self, validation_days: u32, test_days: u32) -> Result<Split, DatasetError> {
        let mut days: Vec<i32> = self.day.clone();
        days.sort_unstable();
        days.dedup();
        let needed = (validation_days + test_days) as usize + 1;
        if days.len() < needed {
            return Err(DatasetError::Empty(format!(
                "the impression logs cover {} days; a split with {validation_days} validation and {test_days} test days needs at least {needed}",
                days.len()
            )));
        }
        let test_from = days[days.len() - test_days as usize];
        let validation_from = days[days.len() - (validation_days + test_days) as usize];
        let mut split = Split::default();
        for (i, &d) in self.day.iter().enumerate() {
            let part = if d >= test_from {
                &mut split.test
            } else if d >= validation_from {
                &mut split.validation
            } else {
                &mut split.train
            };
            part.push(i as i64);
        }
        Ok(split)
    }
}
