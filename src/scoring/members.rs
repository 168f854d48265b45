//! The five task probabilities of the audiences' members, computed after
//! allocation (docs/design.md §5). Scoring keeps only the objective's
//! probability per pool entry; the audiences carry all five, so this pass
//! scans the users table once, keeps the members' rows, and runs the plain
//! forward pass of the network (fp32, whatever the scoring precision) over
//! every (campaign, member) pair: campaigns in the run's order, members in
//! rank order, in chunks of [`CHUNK`] pairs on one libtorch thread. The same
//! members give the same chunks and so the same bits on either engine.
//!
//! On a Ballista cluster the pass runs in the job's own process, not on the
//! executors: it touches the members only (bounded by the budgets, not by the
//! users), it needs the allocation's result, which only the job holds, and
//! one more distributed stage would cost a plan round trip and a second
//! shipping of the model for seconds of work.

use std::collections::{HashMap, HashSet};

use arrow::array::{AsArray, BooleanArray, RecordBatch};
use arrow::datatypes::Int64Type;
use datafusion::prelude::{SessionConfig, col};
use futures::StreamExt;
use tch::Tensor;

use super::scorer::SCORING_THREADS;
use super::{ScoreError, Scored, USER_COLUMNS};
use crate::contract::{TASKS, Table};
use crate::model::Model;
use crate::model::features::{encode_users, pair_features};
use crate::model::network::Inputs;
use crate::storage::Location;

/// Pairs per forward pass.
pub const CHUNK: usize = 4096;

/// Per campaign, the five probabilities of each of its `members` (indices
/// into its pool, in rank order), in [`TASKS`] order.
pub async fn member_probabilities(
    root: &Location,
    model: &Model,
    scored: &Scored,
    members: &[Vec<usize>],
    hour: u8,
) -> Result<Vec<Vec<[f32; 5]>>, ScoreError> {
    let wanted: HashSet<i64> =
        members.iter().zip(&scored.pools).flat_map(|(m, pool)| m.iter().map(|&i| pool[i].user_id)).collect();
    if wanted.is_empty() {
        return Ok(members.iter().map(|_| Vec::new()).collect());
    }
    let query = |source| ScoreError::Query { url: root.url().to_string(), source };
    let ctx = crate::tables::session(root, &[Table::Users], SessionConfig::new()).await.map_err(query)?;
    let users = ctx.table("users").await.map_err(query)?.select(USER_COLUMNS.map(col).to_vec()).map_err(query)?;
    let mut stream = users.execute_stream().await.map_err(query)?;
    let mut kept: Vec<RecordBatch> = Vec::new();
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(query)?;
        let ids = batch.column(0).as_primitive::<Int64Type>();
        let mask: BooleanArray = ids.iter().map(|id| Some(id.is_some_and(|id| wanted.contains(&id)))).collect();
        let batch = arrow::compute::filter_record_batch(&batch, &mask).map_err(|e| query(e.into()))?;
        if batch.num_rows() > 0 {
            kept.push(batch);
        }
    }
    let Some(schema) = kept.first().map(RecordBatch::schema) else {
        let user_id = *wanted.iter().min().expect("members");
        return Err(ScoreError::MissingMember { campaign: "(any)".into(), user_id });
    };
    let rows = arrow::compute::concat_batches(&schema, &kept).map_err(|e| query(e.into()))?;
    let users = encode_users(&model.spec, "users", &rows)?;
    let row_of: HashMap<i64, usize> = users.user_id.iter().enumerate().map(|(row, &id)| (id, row)).collect();

    // Every (campaign, member) pair in the fixed order.
    let mut pairs: Vec<(usize, usize)> = Vec::new();
    for (c, (members, pool)) in members.iter().zip(&scored.pools).enumerate() {
        for &m in members {
            let user_id = pool[m].user_id;
            let row = *row_of.get(&user_id).ok_or_else(|| ScoreError::MissingMember {
                campaign: scored.campaigns[c].campaign_id.clone(),
                user_id,
            })?;
            pairs.push((c, row));
        }
    }
    let n = users.rows.n as i64;
    let user_cat = Tensor::from_slice(&users.rows.cat).view([n, -1]);
    let user_dense = Tensor::from_slice(&users.rows.dense).view([n, -1]);
    let campaign_rows = &scored.campaign_rows;
    let side = &model.spec.campaign;
    let m = campaign_rows.rows.n as i64;
    let campaign_cat = Tensor::from_slice(&campaign_rows.rows.cat).view([m, side.cat_width() as i64]);
    let campaign_dense = Tensor::from_slice(&campaign_rows.rows.dense).view([m, side.dense.len() as i64]);
    tch::set_num_threads(SCORING_THREADS);
    let mut probabilities: Vec<[f32; 5]> = Vec::with_capacity(pairs.len());
    for chunk in pairs.chunks(CHUNK) {
        let user_index = Tensor::from_slice(&chunk.iter().map(|&(_, row)| row as i64).collect::<Vec<_>>());
        let campaign_index = Tensor::from_slice(&chunk.iter().map(|&(c, _)| c as i64).collect::<Vec<_>>());
        let pair: Vec<f32> = chunk
            .iter()
            .flat_map(|&(c, row)| {
                let same_language = users.language[row] == campaign_rows.language[c];
                pair_features(users.affinity(row, campaign_rows.genre[c]), same_language, hour)
            })
            .collect();
        let inputs = Inputs {
            user_cat: user_cat.index_select(0, &user_index),
            user_dense: user_dense.index_select(0, &user_index),
            campaign_cat: campaign_cat.index_select(0, &campaign_index),
            campaign_dense: campaign_dense.index_select(0, &campaign_index),
            pair: Tensor::from_slice(&pair).view([chunk.len() as i64, -1]),
        };
        let out =
            Vec::<f32>::try_from(model.network.predict(&inputs).contiguous().view([-1])).map_err(ScoreError::Torch)?;
        probabilities.extend(out.chunks_exact(TASKS.len()).map(|p| <[f32; 5]>::try_from(p).expect("five heads")));
    }
    let mut rest = probabilities.into_iter();
    Ok(members.iter().map(|m| rest.by_ref().take(m.len()).collect()).collect())
}
