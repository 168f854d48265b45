//! The budget split: a world's users divided in two by a stable hash of the
//! user id (salted per seed), and each half written as a world of its own with
//! every campaign's budget halved, so that each arm runs the job's own scoring
//! and allocation on its users and its half of the money, and no two arms can
//! compete for a user.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch};
use arrow::compute::{cast, filter_record_batch};
use arrow::datatypes::DataType;
use datafusion::prelude::SessionConfig;

use super::AbError;
use crate::contract::Table;
use crate::hashing::splitmix64;
use crate::storage::Location;

/// The two halves of a split.
pub const HALVES: usize = 2;

/// The half (0 or 1) user `user_id` falls in under `salt`.
pub fn half_of(user_id: i64, salt: u64) -> usize {
    (splitmix64(user_id as u64 ^ splitmix64(salt)) & 1) as usize
}

/// The campaign columns holding money: halved in each half's world.
const MONEY: [&str; 3] = ["budget", "total_budget", "spent_to_date"];

/// Writes the two half worlds of `world` under `scratch` (users split by
/// [`half_of`], campaign money halved, podcasts and follows as they are).
pub async fn split_world(world: &Location, scratch: &Location, salt: u64) -> Result<[Location; HALVES], AbError> {
    let tables = [Table::Users, Table::Podcasts, Table::Campaigns, Table::Follows];
    let ctx = crate::tables::session(world, &tables, SessionConfig::new()).await?;
    let halves = [0, 1].map(|h| scratch.join(&format!("half-{h}")));
    for table in tables {
        let batches = ctx.table(table.name()).await?.collect().await?;
        for (h, half) in halves.iter().enumerate() {
            let kept: Vec<RecordBatch> = batches
                .iter()
                .map(|batch| match table {
                    Table::Users => users_of_half(batch, h, salt),
                    Table::Campaigns => halve_money(batch),
                    _ => Ok(batch.clone()),
                })
                .collect::<Result<_, _>>()?;
            let Some(first) = kept.first() else { continue };
            let mut writer =
                half.join(&format!("{}/part-00000.parquet", table.name())).parquet_writer(first.schema())?;
            for batch in &kept {
                writer.write(batch).await?;
            }
            writer.finish().await?;
        }
    }
    Ok(halves)
}

fn users_of_half(batch: &RecordBatch, half: usize, salt: u64) -> Result<RecordBatch, AbError> {
    let ids = cast(batch.column_by_name("user_id").expect("users have user_id"), &DataType::Int64)?;
    let ids = ids.as_any().downcast_ref::<Int64Array>().expect("cast to Int64");
    let keep: BooleanArray = ids.iter().map(|id| id.map(|id| half_of(id, salt) == half)).collect();
    Ok(filter_record_batch(batch, &keep)?)
}

fn halve_money(batch: &RecordBatch) -> Result<RecordBatch, AbError> {
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    for name in MONEY {
        let Ok(index) = batch.schema().index_of(name) else { continue };
        let money = cast(&columns[index], &DataType::Float64)?;
        let money = money.as_any().downcast_ref::<Float64Array>().expect("cast to Float64");
        let halved: Float64Array = money.iter().map(|v| v.map(|v| v / 2.0)).collect();
        columns[index] = cast(&(Arc::new(halved) as ArrayRef), batch.column(index).data_type())?;
    }
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_halves_are_even_and_change_with_the_salt() {
        let in_first = |salt| (1..=10_000).filter(|&u| half_of(u, salt) == 0).count();
        for salt in [1, 2, 3] {
            let n = in_first(salt);
            assert!((4_800..=5_200).contains(&n), "salt {salt}: {n} of 10000 in the first half");
        }
        let moved = (1..=10_000).filter(|&u| half_of(u, 1) != half_of(u, 2)).count();
        assert!((4_500..=5_500).contains(&moved), "{moved} users change half with the salt");
    }
}
