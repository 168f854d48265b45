//! The simulated A/B on a small world: the split gives each arm its own users
//! and half of every budget, no arm spends more than its half, the oracle
//! beats both models and both beat random in true expected streams, and the
//! expected outcomes agree with a Monte Carlo draw of them.

use audience::ab::arms::{Ranker, Reference, choose};
use audience::ab::outcomes::outcome;
use audience::ab::split::{half_of, split_world};
use audience::ab::{AbOptions, world_config};
use audience::contract::{Table, stream_task};
use audience::model::Model;
use audience::model::features::FeatureSpec;
use audience::model::network::Architecture;
use audience::world::{World, WorldConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::helpers::*;
use crate::model::quick_options;

fn user_ids(root: &std::path::Path) -> Vec<i64> {
    let users = read_table(root, Table::Users);
    let ids =
        arrow::compute::cast(users.column_by_name("user_id").unwrap(), &arrow::datatypes::DataType::Int64).unwrap();
    ids.as_any().downcast_ref::<arrow::array::Int64Array>().unwrap().values().to_vec()
}

// Long: one A/B run, then each property of it checked in turn. The libtorch
// guard is held across the run's awaits on purpose (see `libtorch_alone`).
#[allow(clippy::await_holding_lock)]
#[tokio::test]
async fn each_arm_gets_its_own_users_and_half_of_every_budget_and_the_truth_orders_the_arms() {
    // Budgets follow the users, and floors do not: with 20,000 users a half
    // still buys most campaigns more users than their floors.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("world");
    let data = location(&root);
    audience::world::write::generate(&data, WorldConfig { users: 20_000, ..learnable_config() }, false).await.unwrap();

    // The split: disjoint halves covering every user, every budget halved.
    let halves = split_world(&data, &location(&dir.path().join("split")), 5).await.unwrap();
    let all = user_ids(&root);
    let half_ids: Vec<Vec<i64>> = (0..2).map(|h| user_ids(&dir.path().join(format!("split/half-{h}")))).collect();
    assert_eq!(half_ids[0].len() + half_ids[1].len(), all.len());
    assert!(half_ids[0].iter().all(|&u| half_of(u, 5) == 0) && half_ids[1].iter().all(|&u| half_of(u, 5) == 1));
    let budgets = |root: &std::path::Path| -> Vec<Option<f64>> {
        let campaigns = read_table(root, Table::Campaigns);
        let budget =
            arrow::compute::cast(campaigns.column_by_name("budget").unwrap(), &arrow::datatypes::DataType::Float64)
                .unwrap();
        budget.as_any().downcast_ref::<arrow::array::Float64Array>().unwrap().iter().collect()
    };
    let halved: Vec<Option<f64>> = budgets(&root).iter().map(|b| b.map(|b| b / 2.0)).collect();
    assert_eq!(budgets(&dir.path().join("split/half-1")), halved);

    // The oracle's audiences on half 0: its users only, within half budgets,
    // and expected streams that a Monte Carlo draw of the outcomes agrees with.
    let world = World::new(world_config(&data).await.unwrap());
    let features = {
        let _alone = libtorch_alone();
        Model::new(FeatureSpec::default(), Architecture::default())
    };
    let config = audience::ab::arm_config(&halves[0]);
    let date = world.config.run_date;
    let chosen =
        choose(&halves[0], &Ranker::Reference(Reference::Oracle(&world)), &features, &config, date).await.unwrap();
    assert!(chosen.members.iter().flatten().all(|&u| half_of(u, 5) == 0), "a member from the other half");
    for (campaign, members) in chosen.scored.campaigns.iter().zip(&chosen.members) {
        assert!(
            members.len() as f64 * campaign.cost_per_user() <= campaign.budget * (1.0 + 1e-9),
            "{} over its half budget",
            campaign.campaign_id
        );
    }
    let hour = config.score_options(date).hour;
    let expected = outcome(&world, &chosen, hour).unwrap().all.overall.true_streams;
    let (mut drawn, mut variance) = (0.0, 0.0);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for (campaign, members) in chosen.scored.campaigns.iter().zip(&chosen.members) {
        let c = world.campaigns.iter().position(|w| w.campaign_id == campaign.campaign_id).unwrap();
        for &user_id in members {
            let p = world.params.probabilities(&world.exposure(&world.user(user_id as u64 - 1), c, hour))
                [stream_task(campaign.channel)] as f64;
            for _ in 0..campaign.impressions_per_user {
                drawn += rng.random_bool(p) as u64 as f64;
                variance += p * (1.0 - p);
            }
        }
    }
    assert!(expected > 100.0, "{expected} expected streams: too few to test");
    let z = (drawn - expected) / variance.sqrt();
    assert!(z.abs() < 4.0, "drawn {drawn} vs expected {expected:.1} streams: {z:.2} standard deviations");

    // The whole test, one seed: oracle ≥ each model ≥ random; spend within each half.
    let options = AbOptions { seeds: vec![1], world_seeds: Vec::new(), training: quick_options(1) };
    let result = {
        let _alone = libtorch_alone();
        audience::ab::run(&data, &options).await.unwrap()
    };
    let run = &result.runs[0];
    let streams = |arm: &str| run.arms[arm].all.overall.true_streams;
    for model in ["A", "B"] {
        assert!(streams("oracle") >= streams(model), "oracle {} < {model} {}", streams("oracle"), streams(model));
        assert!(streams(model) >= streams("random"), "{model} {} < random {}", streams(model), streams("random"));
        assert!(
            run.arms[model].all.overall.spend <= run.budgets[model] * (1.0 + 1e-9),
            "{model} spent more than its half"
        );
    }
    let json = result.json();
    for arm in audience::ab::ARMS {
        assert!(json["arms"][arm]["overall"]["true_streams"].as_f64().unwrap() > 0.0, "{arm}");
    }
    println!("{}", result.table());
}
