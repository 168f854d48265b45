//! Scoring: eligibility rules, exactness of the factorised path, and the
//! candidate pools checked against the generator's own rules.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, Date32Array, Float64Array, StringArray};
use audience::contract::Table;
use audience::model::Model;
use audience::model::dataset::Dataset;
use audience::model::features::FeatureSpec;
use audience::model::features::{encode_users, pair_features};
use audience::model::fused::{Kernel, Precision, bf16_supported};
use audience::model::network::{Architecture, Inputs};
use audience::model::train::{TrainOptions, train};
use audience::scoring::eligibility::active_campaigns;
use audience::scoring::members::member_probabilities;
use audience::scoring::{ScoreOptions, Scored, score};
use audience::world::World;
use chrono::NaiveDate;
use datafusion::prelude::SessionConfig;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::Tensor;

use crate::float::{assert_close, assert_tensors_close, fan_ins};
use crate::helpers::learnable_world;
use crate::helpers::*;
use crate::model::quick_options;

fn random_model(seed: i64) -> Model {
    let _alone = libtorch_alone();
    tch::manual_seed(seed);
    Model::new(FeatureSpec::default(), Architecture::default())
}

fn run_date() -> NaiveDate {
    small_config(7).run_date
}

#[tokio::test]
async fn the_factorised_path_equals_the_plain_forward_pass() {
    let (_dir, root) = learnable_world().await;
    let data = Dataset::load(&location(&root), &FeatureSpec::default()).await.unwrap();
    let split = data.split(2, 2).unwrap();
    // One epoch, so batch norm holds real statistics and normalisation is fitted.
    let options = TrainOptions { max_epochs: 1, ..quick_options(3) };
    let (model, _) = {
        let _alone = libtorch_alone();
        train(&data, &split, &options, None).unwrap()
    };

    // Users, campaigns and pair features from unrelated impressions.
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let n = 2_000;
    let pick = |rng: &mut ChaCha8Rng| {
        Tensor::from_slice(&(0..n).map(|_| rng.random_range(0..data.len() as i64)).collect::<Vec<_>>())
    };
    let (users, campaigns, pairs) = (pick(&mut rng), pick(&mut rng), pick(&mut rng));
    let inputs = Inputs {
        user_cat: data.inputs.user_cat.index_select(0, &users),
        user_dense: data.inputs.user_dense.index_select(0, &users),
        campaign_cat: data.inputs.campaign_cat.index_select(0, &campaigns),
        campaign_dense: data.inputs.campaign_dense.index_select(0, &campaigns),
        pair: data.inputs.pair.index_select(0, &pairs),
    };
    let plain = model.network.predict(&inputs);

    // The scoring kernel's arithmetic on the first layer's activations.
    let factorised = model.network.factorised();
    let first = factorised.first_layer(&inputs).contiguous();
    let mut kernel = Kernel::new(&factorised.layers(), Precision::Fp32).unwrap();
    let fused = kernel.all_heads(&Vec::<f32>::try_from(first.view([-1])).unwrap());
    let fused = Tensor::from_slice(&fused).view([n as i64, 5]);
    assert_tensors_close(
        &fused,
        &plain,
        &fan_ins(&model.spec, &model.architecture),
        "scoring kernel vs libtorch's forward pass",
    );
}

/// The generator's own view of who may see which active campaign.
fn oracle(date: NaiveDate) -> (Vec<String>, HashMap<String, HashSet<i64>>) {
    let config = small_config(7);
    let world = World::new(config.clone());
    let today = date;
    let active: Vec<_> = world
        .campaigns
        .iter()
        .filter(|c| c.status == "active" && c.start_date <= today && c.end_date >= today)
        .filter(|c| {
            let budget = c.budget.unwrap_or_else(|| {
                let days_left = (c.end_date - today).num_days() as f64 + 1.0;
                (c.total_budget.unwrap() - c.spent_to_date.unwrap_or(0.0)) / days_left
            });
            budget > 0.0
        })
        .collect();
    let mut eligible: HashMap<String, HashSet<i64>> = HashMap::new();
    for index in 0..config.users {
        let user = world.user(index);
        let follows = world.follows(index, &user);
        for campaign in &active {
            if campaign.targets(&user) && !follows.contains(&campaign.podcast) {
                eligible.entry(campaign.campaign_id.clone()).or_default().insert(user.user_id);
            }
        }
    }
    let mut ids: Vec<String> = active.iter().map(|c| c.campaign_id.clone()).collect();
    ids.sort();
    (ids, eligible)
}

fn pools_by_campaign(scored: &Scored) -> Vec<(String, Vec<(i64, f64)>)> {
    scored
        .campaigns
        .iter()
        .zip(&scored.pools)
        .map(|(c, pool)| (c.campaign_id.clone(), pool.iter().map(|p| (p.user_id, p.p_objective as f64)).collect()))
        .collect()
}

#[tokio::test]
async fn eligibility_and_pools_follow_the_worlds_own_rules() {
    let (_dir, root) = small_world().await;
    let model = random_model(1);
    let options = ScoreOptions { partitions: 2, batch_rows: 128, ..ScoreOptions::new(run_date()) };
    let scored = score(&location(&root), &model, &options).await.unwrap();
    let (ids, eligible) = oracle(run_date());
    let scored_ids: Vec<String> = scored.campaigns.iter().map(|c| c.campaign_id.clone()).collect();
    assert_eq!(scored_ids, ids, "active campaigns");
    assert_eq!(scored.users, 600);
    for ((campaign, pool), count) in scored.campaigns.iter().zip(&scored.pools).zip(&scored.eligible) {
        let allowed = eligible.get(&campaign.campaign_id).cloned().unwrap_or_default();
        assert_eq!(*count as usize, allowed.len(), "eligible users of {}", campaign.campaign_id);
        let capacity = (campaign.affordable_users() as f64 * 2.0).ceil() as usize;
        assert_eq!(pool.len(), capacity.min(allowed.len()), "pool of {}", campaign.campaign_id);
        assert!(pool.iter().all(|c| allowed.contains(&c.user_id)), "{} holds an ineligible user", campaign.campaign_id);
        assert!(pool.windows(2).all(|w| w[0].p_objective >= w[1].p_objective), "best first");
        assert!(pool.iter().all(|c| (0.0..=1.0).contains(&c.p_objective)));
    }
    let table = scored.candidates();
    assert_eq!(table.num_rows(), scored.pools.iter().map(Vec::len).sum::<usize>());
    assert_eq!(table.num_columns(), 5);
}

#[tokio::test]
async fn partitions_and_batch_sizes_do_not_change_the_pools() {
    let (_dir, root) = small_world().await;
    let model = random_model(2);
    // Slack 2 leaves most pools unfilled; 0.05 fills them early, so thresholds
    // (per partition and shared between partitions) prune most pairs.
    for slack in [2.0, 0.05] {
        let one = ScoreOptions { slack, partitions: 1, batch_rows: 4096, ..ScoreOptions::new(run_date()) };
        let many = ScoreOptions { slack, partitions: 3, batch_rows: 50, ..ScoreOptions::new(run_date()) };
        let a = pools_by_campaign(&score(&location(&root), &model, &one).await.unwrap());
        let b = pools_by_campaign(&score(&location(&root), &model, &many).await.unwrap());
        assert_eq!(a.len(), b.len());
        assert!(slack > 1.0 || a.iter().any(|(_, pool)| !pool.is_empty()));
        for ((id, x), (_, y)) in a.iter().zip(&b) {
            let users = |p: &Vec<(i64, f64)>| p.iter().map(|(u, _)| *u).collect::<Vec<_>>();
            assert_eq!(users(x), users(y), "pool of {id}, slack {slack}");
            // The same kernel on tiles of fixed shape: bitwise equal.
            for ((_, vx), (_, vy)) in x.iter().zip(y) {
                assert_eq!(vx.to_bits(), vy.to_bits(), "{id}: {vx} vs {vy}");
            }
        }
    }
}

#[tokio::test]
async fn campaign_rules_flight_dates_status_and_budget() {
    let (_dir, root) = small_world().await;
    let date = run_date();
    let day = (date - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()).num_days() as i32;
    let campaigns = read_table(&root, Table::Campaigns);
    let n = campaigns.num_rows();
    let ids: Vec<String> = campaigns
        .column_by_name("campaign_id")
        .unwrap()
        .as_string::<i32>()
        .iter()
        .map(|v| v.unwrap().to_string())
        .collect();
    // Every campaign active all around the run date with a budget, then one
    // exception per rule: paused, ended, not started, no budget, paced budget.
    let mut status = vec!["active"; n];
    status[0] = "paused";
    edit_column(&root, Table::Campaigns, "status", |_| Arc::new(StringArray::from(status.clone())) as ArrayRef);
    let dates = |f: &dyn Fn(usize) -> i32| Arc::new(Date32Array::from((0..n).map(f).collect::<Vec<_>>())) as ArrayRef;
    edit_column(&root, Table::Campaigns, "start_date", |_| dates(&|row| if row == 1 { day + 1 } else { day - 3 }));
    edit_column(&root, Table::Campaigns, "end_date", |_| {
        dates(&|row| {
            if row == 2 {
                day - 1
            } else if row == 4 {
                day + 3
            } else {
                day + 9
            }
        })
    });
    let budgets: Vec<Option<f64>> = (0..n)
        .map(|row| match row {
            3 => Some(0.0),
            4 => None,
            _ => Some(100.0),
        })
        .collect();
    edit_column(&root, Table::Campaigns, "budget", |_| Arc::new(Float64Array::from(budgets.clone())) as ArrayRef);
    let totals: Vec<Option<f64>> = (0..n).map(|row| (row == 4).then_some(1_000.0)).collect();
    let spent: Vec<Option<f64>> = (0..n).map(|row| (row == 4).then_some(200.0)).collect();
    edit_column(&root, Table::Campaigns, "total_budget", |_| Arc::new(Float64Array::from(totals.clone())) as ArrayRef);
    edit_column(&root, Table::Campaigns, "spent_to_date", |_| Arc::new(Float64Array::from(spent.clone())) as ArrayRef);

    let ctx = audience::tables::session(&location(&root), &[Table::Campaigns, Table::Podcasts], SessionConfig::new())
        .await
        .unwrap();
    let (active, _) = active_campaigns(&ctx, date).await.unwrap();
    let active_ids: HashSet<&str> = active.iter().map(|c| c.campaign_id.as_str()).collect();
    assert!(!active_ids.contains(ids[0].as_str()), "paused campaign");
    assert!(!active_ids.contains(ids[1].as_str()), "not started yet");
    assert!(!active_ids.contains(ids[2].as_str()), "ended yesterday");
    assert!(!active_ids.contains(ids[3].as_str()), "no budget today");
    assert_eq!(active.len(), n - 4);
    let paced = active.iter().find(|c| c.campaign_id == ids[4]).expect("paced campaign is active");
    // 800 left over today and the 3 days after it.
    assert!((paced.budget - 200.0).abs() < 1e-9, "paced budget {}", paced.budget);
}

/// Scores the learnable world with every eligible pair kept (pools larger
/// than any campaign's eligible users).
async fn score_everything(
    root: &std::path::Path,
    model: &Model,
    precision: Precision,
) -> Result<Scored, audience::scoring::ScoreError> {
    let options = ScoreOptions {
        slack: 1e9,
        partitions: 2,
        batch_rows: 700,
        precision,
        ..ScoreOptions::new(learnable_config().run_date)
    };
    score(&location(root), model, &options).await
}

fn trained(data: &Dataset) -> Model {
    let split = data.split(2, 2).unwrap();
    let options = TrainOptions { max_epochs: 1, ..quick_options(3) };
    let _alone = libtorch_alone();
    train(data, &split, &options, None).unwrap().0
}

/// Every pool entry as (campaign, user) → probability.
fn entries(scored: &Scored) -> HashMap<(usize, i64), f32> {
    scored
        .pools
        .iter()
        .enumerate()
        .flat_map(|(c, pool)| pool.iter().map(move |e| ((c, e.user_id), e.p_objective)))
        .collect()
}

// Long: fp32 and bf16 share the world, the model and the reference pass.
#[tokio::test]
async fn scored_probabilities_equal_the_plain_forward_pass_and_bf16_stays_within_its_bound() {
    let (_dir, root) = learnable_world().await;
    let data = Dataset::load(&location(&root), &FeatureSpec::default()).await.unwrap();
    let model = trained(&data);
    let fp32 = score_everything(&root, &model, Precision::Fp32).await.unwrap();
    assert!(fp32.pairs() > 10_000, "{} pairs", fp32.pairs());

    // Every pool entry is a "member": the post-allocation pass gives all five
    // heads by the plain forward pass; the objective's must equal the fused fp32 score.
    let everyone: Vec<Vec<usize>> = fp32.pools.iter().map(|p| (0..p.len()).collect()).collect();
    let hour = ScoreOptions::new(learnable_config().run_date).hour;
    let members = member_probabilities(&location(&root), &model, &fp32, &everyone, hour).await.unwrap();
    let (mut fused, mut forward) = (Vec::new(), Vec::new());
    for (c, (pool, probabilities)) in fp32.pools.iter().zip(&members).enumerate() {
        let head = fp32.campaigns[c].objective.head(fp32.campaigns[c].channel);
        for (entry, p) in pool.iter().zip(probabilities) {
            fused.push(entry.p_objective);
            forward.push(p[head]);
        }
    }
    let fan_ins = fan_ins(&model.spec, &model.architecture);
    assert_close(&fused, &forward, &fan_ins, "fused fp32 vs the plain forward pass");

    // The members' probabilities are those of one plain forward pass over
    // inputs built here from the tables (not through the members pass).
    let ctx = audience::tables::session(&location(&root), &[Table::Users], SessionConfig::new()).await.unwrap();
    let batches = ctx
        .table("users")
        .await
        .unwrap()
        .select(audience::scoring::USER_COLUMNS.map(datafusion::prelude::col).to_vec())
        .unwrap()
        .collect()
        .await
        .unwrap();
    let users = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
    let users = encode_users(&model.spec, "users", &users).unwrap();
    let row_of: HashMap<i64, usize> = users.user_id.iter().enumerate().map(|(r, &id)| (id, r)).collect();
    let rows = &fp32.campaign_rows;
    let (mut user_index, mut campaign_index, mut pair) = (Vec::new(), Vec::new(), Vec::new());
    for (c, pool) in fp32.pools.iter().enumerate() {
        for entry in pool {
            let row = row_of[&entry.user_id];
            user_index.push(row as i64);
            campaign_index.push(c as i64);
            pair.extend(pair_features(
                users.affinity(row, rows.genre[c]),
                users.language[row] == rows.language[c],
                hour,
            ));
        }
    }
    let (n, m) = (users.rows.n as i64, rows.rows.n as i64);
    let (u, k) = (Tensor::from_slice(&user_index), Tensor::from_slice(&campaign_index));
    let inputs = Inputs {
        user_cat: Tensor::from_slice(&users.rows.cat).view([n, -1]).index_select(0, &u),
        user_dense: Tensor::from_slice(&users.rows.dense).view([n, -1]).index_select(0, &u),
        campaign_cat: Tensor::from_slice(&rows.rows.cat).view([m, -1]).index_select(0, &k),
        campaign_dense: Tensor::from_slice(&rows.rows.dense).view([m, -1]).index_select(0, &k),
        pair: Tensor::from_slice(&pair).view([user_index.len() as i64, 4]),
    };
    let plain = Vec::<f32>::try_from(model.network.predict(&inputs).contiguous().view([-1])).unwrap();
    let passed: Vec<f32> = members.iter().flatten().flatten().copied().collect();
    assert_eq!(passed.len(), plain.len());
    // Chunks of 4,096 against one batch: libtorch may pick other kernels per shape.
    assert_close(&passed, &plain, &fan_ins, "members' pass vs one forward pass");

    // bf16: the same pairs, each within a bound of fp32, and close on average.
    if !bf16_supported() {
        let err = score_everything(&root, &model, Precision::Bf16).await.err().expect("bf16 refused on this CPU");
        assert!(err.to_string().contains("scoring.precision = \"bf16\""), "{err}");
        return;
    }
    let bf16 = score_everything(&root, &model, Precision::Bf16).await.unwrap();
    let (a, b) = (entries(&fp32), entries(&bf16));
    assert_eq!(a.len(), b.len(), "the same pairs are scored");
    let differences: Vec<f32> = a.iter().map(|(key, p)| (p - b[key]).abs()).collect();
    let worst = differences.iter().cloned().fold(0f32, f32::max);
    let mean = differences.iter().sum::<f32>() / differences.len() as f32;
    eprintln!("bf16 vs fp32 over {} pairs: mean difference {mean:.2e}, largest {worst:.2e}", differences.len());
    assert!(worst < 0.02, "bf16 vs fp32: largest difference {worst}");
    assert!(mean < 2e-3, "bf16 vs fp32: mean difference {mean}");
}

/// The follows table rewritten in a fixed shuffled order, in files of 100 rows
/// and row groups of 25: every row group spans most users.
async fn shuffle_follows(root: &std::path::Path) {
    let location = location(root);
    let ctx = audience::tables::session(&location, &[Table::Follows], SessionConfig::new()).await.unwrap();
    let batches = ctx.sql("SELECT user_id, podcast_id FROM follows").await.unwrap().collect().await.unwrap();
    let mut rows: Vec<(i64, i64)> = Vec::new();
    for batch in &batches {
        let users = batch.column(0).as_primitive::<arrow::datatypes::Int64Type>();
        let podcasts = batch.column(1).as_primitive::<arrow::datatypes::Int64Type>();
        rows.extend(users.values().iter().copied().zip(podcasts.values().iter().copied()));
    }
    assert!(rows.len() > 500, "{} follows", rows.len());
    rows.sort_by_key(|&(user, podcast)| (user.wrapping_mul(7_919) + podcast) % 1_009);
    let table = location.join("follows");
    table.delete_all().await.unwrap();
    let schema = Table::Follows.spec().schema();
    for (f, chunk) in rows.chunks(100).enumerate() {
        let file = table.join(&format!("shuffled-{f:03}.parquet"));
        let mut writer = file.parquet_writer_with_row_groups(Arc::clone(&schema), 25).unwrap();
        let users = arrow::array::Int64Array::from_iter_values(chunk.iter().map(|r| r.0));
        let podcasts = arrow::array::Int64Array::from_iter_values(chunk.iter().map(|r| r.1));
        let batch =
            arrow::array::RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(users), Arc::new(podcasts)]).unwrap();
        writer.write(&batch).await.unwrap();
        writer.finish().await.unwrap();
    }
}

#[tokio::test]
async fn any_layout_of_users_and_follows_gives_the_same_pools() {
    use audience::bench::layout::{Layout, rewrite_users};
    let model = random_model(3);
    let options = ScoreOptions { slack: 0.05, partitions: 2, batch_rows: 50, ..ScoreOptions::new(run_date()) };
    let (_dir, root) = small_world().await;
    let reference = score(&location(&root), &model, &options).await.unwrap();
    let users = small_config(7).users;
    for layout in [Layout::OneRowGroup, Layout::ManyFiles] {
        let (_dir, root) = small_world().await;
        rewrite_users(&location(&root), users, layout).await.unwrap();
        if layout == Layout::ManyFiles {
            shuffle_follows(&root).await;
        }
        let scored = score(&location(&root), &model, &options).await.unwrap();
        assert_eq!(scored.users, users, "{layout:?}");
        assert_eq!(scored.eligible, reference.eligible, "{layout:?}");
        assert_eq!(scored.p_sum, reference.p_sum, "{layout:?}");
        assert_eq!(pools_by_campaign(&scored), pools_by_campaign(&reference), "{layout:?}");
        // Both partitions scored: a split by rows, whatever the files.
        let busy = &scored.utilisation.as_ref().unwrap().scoring;
        assert!(busy.len() == 2 && busy.iter().all(|&s| s > 0.0), "{layout:?}: {busy:?}");
    }
}

/// The user ids a plan reads, per output partition.
async fn ids_per_partition(
    plan: Arc<dyn datafusion::physical_plan::ExecutionPlan>,
    ctx: &datafusion::prelude::SessionContext,
) -> Vec<Vec<i64>> {
    use futures::TryStreamExt;
    let mut out = Vec::new();
    for stream in datafusion::physical_plan::execute_stream_partitioned(plan, ctx.task_ctx()).unwrap() {
        let batches: Vec<_> = stream.try_collect().await.unwrap();
        let ids = batches.iter().flat_map(|b| {
            let column = b.column_by_name("user_id").unwrap();
            column.as_primitive::<arrow::datatypes::Int64Type>().values().to_vec()
        });
        out.push(ids.collect());
    }
    out
}

#[tokio::test]
async fn the_split_reads_equal_row_ranges_and_a_task_copy_reads_only_its_own() {
    use datafusion::datasource::physical_plan::{FileScanConfig, FileScanConfigBuilder};
    use datafusion::datasource::source::DataSourceExec;
    use datafusion::physical_plan::union::UnionExec;
    let (_dir, root) = small_world().await;
    let ctx =
        audience::tables::session(&location(&root), &[Table::Users], SessionConfig::new().with_target_partitions(2))
            .await
            .unwrap();
    let split = audience::scoring::split_users(&ctx, 2).await.unwrap();
    let scan = ctx.table("users").await.unwrap().create_physical_plan().await.unwrap();
    let plan = split.apply(scan).unwrap();
    let (first, second): (Vec<i64>, Vec<i64>) = ((1..=300).collect(), (301..=600).collect());
    assert_eq!(ids_per_partition(Arc::clone(&plan), &ctx).await, [first.clone(), second.clone()]);
    // Applying again changes nothing.
    assert_eq!(ids_per_partition(split.apply(Arc::clone(&plan)).unwrap(), &ctx).await, [first, second.clone()]);

    // As Ballista's scheduler hands a task partition 1: the other scan has no file group.
    let union = plan.downcast_ref::<UnionExec>().expect("a union of one scan per row range");
    let mut inputs = union.inputs().clone();
    let config = inputs[0].downcast_ref::<DataSourceExec>().unwrap().data_source().downcast_ref::<FileScanConfig>();
    let empty = FileScanConfigBuilder::from(config.unwrap().clone()).with_file_groups(vec![]).build();
    inputs[0] = DataSourceExec::from_data_source(empty);
    let task = split.apply(UnionExec::try_new(inputs).unwrap()).unwrap();
    assert_eq!(ids_per_partition(task, &ctx).await, [second]);
}
