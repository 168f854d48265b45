//! The audience files: one Parquet file per campaign with an audience, its
//! chosen users in rank order with their probabilities.

use std::sync::Arc;

use arrow::array::{Float32Array, Float64Array, Int64Array, RecordBatch, StringArray};

use super::error::{JobError, failpoint};
use super::layout::audience_file;
use crate::contract::{TASKS, audience_schema};
use crate::scoring::Scored;
use crate::storage::Location;

/// Writes one Parquet file per campaign with an audience (`members` from
/// [`crate::choose::members`], in rank order, with their five probabilities from
/// [`crate::scoring::members`]); returns rows written.
pub async fn write_audiences(
    run_dir: &Location,
    scored: &Scored,
    members: &[Vec<usize>],
    probabilities: &[Vec<[f32; 5]>],
) -> Result<u64, JobError> {
    let mut written = 0;
    for (c, (members, probabilities)) in members.iter().zip(probabilities).enumerate() {
        if members.is_empty() {
            continue;
        }
        let campaign = &scored.campaigns[c];
        let pool = &scored.pools[c];
        let n = members.len();
        let per_user = campaign.impressions_per_user as f32;
        let mut columns: Vec<Arc<dyn arrow::array::Array>> = vec![
            Arc::new(StringArray::from(vec![campaign.campaign_id.as_str(); n])),
            Arc::new(Int64Array::from_iter_values(members.iter().map(|&m| pool[m].user_id))),
            Arc::new(Int64Array::from_iter_values(1..=n as i64)),
            Arc::new(Float32Array::from_iter_values(members.iter().map(|&m| pool[m].p_objective))),
            Arc::new(Float32Array::from_iter_values(members.iter().map(|&m| pool[m].p_objective * per_user))),
            Arc::new(Float64Array::from(vec![campaign.cost_per_user(); n])),
        ];
        for task in 0..TASKS.len() {
            columns.push(Arc::new(Float32Array::from_iter_values(probabilities.iter().map(|p| p[task]))));
        }
        let batch = RecordBatch::try_new(audience_schema(), columns).expect("columns match the schema");
        let file = run_dir.join(&audience_file(&campaign.campaign_id));
        let mut writer = file.parquet_writer(audience_schema())?;
        writer.write(&batch).await?;
        writer.finish().await?;
        if written == 0 {
            failpoint("mid-write")?;
        }
        written += n as u64;
    }
    Ok(written)
}
