//! One partition's scoring result as Arrow rows, so executors can return it
//! through Ballista: its pools' candidates plus its counts (eligible pairs and
//! the fixed-point probability sum per campaign, users scored). Decoding rebuilds
//! the same pools, so the client merges them exactly as the local engine does.

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, Float32Array, Int64Array, RecordBatch, UInt8Array, UInt32Array, UInt64Array};
use arrow::datatypes::{DataType, Field, Float32Type, Int64Type, Schema, SchemaRef, UInt8Type, UInt32Type, UInt64Type};

use crate::hashing::hash_bytes;
use crate::scoring::pool::Candidate;
use crate::scoring::scorer::{PartitionResult, Prepared};

/// What a row holds.
const CANDIDATE: u8 = 0;
/// `count` = eligible pairs of `campaign`.
const ELIGIBLE: u8 = 1;
/// `count` = users scored by the partition.
const USERS: u8 = 2;
/// `count` = fixed-point sum of `campaign`'s objective probability.
const P_SUM: u8 = 4;

pub fn schema() -> SchemaRef {
    let mut fields = vec![
        Field::new("kind", DataType::UInt8, false),
        Field::new("campaign", DataType::UInt32, false),
        Field::new("user_id", DataType::Int64, false),
    ];
    fields.push(Field::new("p_objective", DataType::Float32, false));
    fields.push(Field::new("count", DataType::UInt64, false));
    Arc::new(Schema::new(fields))
}

#[derive(Default)]
struct Rows {
    kind: Vec<u8>,
    campaign: Vec<u32>,
    user_id: Vec<i64>,
    p_objective: Vec<f32>,
    count: Vec<u64>,
}

impl Rows {
    fn push(&mut self, kind: u8, campaign: usize, candidate: Option<&Candidate>, count: u64) {
        self.kind.push(kind);
        self.campaign.push(campaign as u32);
        self.user_id.push(candidate.map_or(0, |c| c.user_id));
        self.p_objective.push(candidate.map_or(0.0, |c| c.p_objective));
        self.count.push(count);
    }
}

/// The rows of one partition's result.
pub fn encode(result: PartitionResult) -> RecordBatch {
    let mut rows = Rows::default();
    rows.push(USERS, 0, None, result.users);
    for (c, ((pool, eligible), p_sum)) in result.pools.into_iter().zip(result.eligible).zip(result.p_sum).enumerate() {
        rows.push(ELIGIBLE, c, None, eligible);
        rows.push(P_SUM, c, None, p_sum);
        for candidate in pool.into_sorted() {
            rows.push(CANDIDATE, c, Some(&candidate), 0);
        }
    }
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(UInt8Array::from(rows.kind)),
        Arc::new(UInt32Array::from(rows.campaign)),
        Arc::new(Int64Array::from(rows.user_id)),
    ];
    columns.push(Arc::new(Float32Array::from(rows.p_objective)));
    columns.push(Arc::new(UInt64Array::from(rows.count)));
    RecordBatch::try_new(schema(), columns).expect("columns match the schema")
}

#[derive(Debug, thiserror::Error)]
#[error("a scoring partition's result is malformed: {0}")]
pub struct Malformed(String);

/// Adds the rows of `batch` to `result` (one result may gather any number of
/// partitions' rows: pools keep the best, counts add up).
pub fn decode_into(batch: &RecordBatch, prepared: &Prepared, result: &mut PartitionResult) -> Result<(), Malformed> {
    if batch.schema().fields() != schema().fields() {
        return Err(Malformed(format!("schema {:?}", batch.schema())));
    }
    let column = |i: usize| batch.column(i);
    let kind = column(0).as_primitive::<UInt8Type>();
    let campaign = column(1).as_primitive::<UInt32Type>();
    let user_id = column(2).as_primitive::<Int64Type>();
    let p_objective = column(3).as_primitive::<Float32Type>();
    let count = column(4).as_primitive::<UInt64Type>();
    let campaigns = prepared.campaigns.len();
    for row in 0..batch.num_rows() {
        let c = campaign.value(row) as usize;
        if c >= campaigns {
            return Err(Malformed(format!("campaign index {c} of {campaigns}")));
        }
        match kind.value(row) {
            USERS => result.users += count.value(row),
            ELIGIBLE => result.eligible[c] += count.value(row),
            P_SUM => result.p_sum[c] += count.value(row),
            CANDIDATE => {
                let seed = hash_bytes(prepared.campaigns[c].campaign_id.as_bytes());
                result.pools[c].offer(Candidate::new(user_id.value(row), seed, p_objective.value(row)));
            }
            other => return Err(Malformed(format!("row kind {other}"))),
        }
    }
    Ok(())
}
