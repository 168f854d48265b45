//! `generate` and `validate`: synthetic worlds and the data contract.

use std::path::PathBuf;

use crate::Error;
use crate::contract::validate::validate_world;
use crate::job::config::JobConfig;
use crate::job::validate::validate_config;
use crate::world::CampaignDraw;
use crate::world::write::generate;
use crate::world::{GENERATOR_VERSION, WorldConfig};
use chrono::NaiveDate;
use clap::{Args, Subcommand};

use super::location;

#[derive(Subcommand)]
pub enum Command {
    /// Write a deterministic synthetic world (tables + ground truth) to a URL.
    Generate {
        /// Where to write: a local directory or an object store URL.
        #[arg(long)]
        out: String,
        #[command(flatten)]
        world: WorldArgs,
        /// Replace a world already written there.
        #[arg(long)]
        overwrite: bool,
    },
    /// Check a world's tables against the data contract; lists every problem.
    /// With --config, checks the job config, its inputs and its model instead.
    Validate {
        /// Root of the world (one prefix per table, as `generate` writes it).
        #[arg(long, conflicts_with = "config", required_unless_present = "config")]
        data: Option<String>,
        /// A job config: validates it, its input tables and its model artifact.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

impl Command {
    pub async fn run(self) -> Result<(), Error> {
        match self {
            Command::Generate { out, world, overwrite } => {
                let out = super::output("--out", &out)?;
                let manifest = generate(&out, world.into(), overwrite).await?;
                tracing::info!(rows = ?manifest.rows, "world written");
                println!("{out}");
            }
            Command::Validate { data: None, config: Some(path) } => {
                let config = JobConfig::load(&path)?;
                let check = validate_config(&config).await?;
                println!("config {}\tok", path.display());
                for (table, rows) in &check.inputs.rows {
                    println!("{table}\t{rows} rows\tok");
                }
                println!("model\t{}\tok", check.model_version);
            }
            Command::Validate { data, config: _ } => {
                let root = location(&data.expect("clap requires --data or --config"))?;
                let report = validate_world(&root).await?.into_result()?;
                for (table, rows) in &report.rows {
                    println!("{table}\t{rows} rows\tok");
                }
            }
        }
        Ok(())
    }
}

/// The size and shape of a generated world.
#[derive(Args)]
pub struct WorldArgs {
    /// Users in the world.
    #[arg(long, default_value_t = WorldConfig::default().users)]
    users: u64,
    /// Podcasts in the catalogue.
    #[arg(long, default_value_t = WorldConfig::default().podcasts)]
    podcasts: u64,
    /// Campaigns, ads and promotions together.
    #[arg(long, default_value_t = WorldConfig::default().campaigns)]
    campaigns: u64,
    /// Impression log rows in total.
    #[arg(long, default_value_t = WorldConfig::default().impressions)]
    impressions: u64,
    /// Days of impression logs, ending the day before --date.
    #[arg(long, default_value_t = WorldConfig::default().days)]
    days: u32,
    /// The run date the campaigns are flighted around (YYYY-MM-DD).
    #[arg(long, default_value_t = WorldConfig::default().run_date)]
    date: NaiveDate,
    /// Seed of every random draw: one seed, one world.
    #[arg(long, default_value_t = WorldConfig::default().seed)]
    seed: u64,
    /// Active campaigns' total demand over supply (users × cap), per channel.
    #[arg(long, default_value_t = WorldConfig::default().sell_through)]
    sell_through: f64,
    /// The generator version to follow: 3 (the paper's regime), or 2 (the
    /// world before it, byte for byte; it takes none of the four flags below).
    #[arg(long, default_value_t = GENERATOR_VERSION)]
    generator_version: u32,
    /// Share of the logged impressions that are ads [default: 0.75].
    #[arg(long)]
    ad_share: Option<f64>,
    /// Share of the ad receptivity's variance that features the model sees
    /// explain (platform, age bucket, activity) [default: 0.5].
    #[arg(long)]
    ad_receptivity_observed: Option<f64>,
    /// How ad campaigns choose their podcast: uniform (3/4 uniformly), streams
    /// (3/4 by √streams) or half [default: uniform].
    #[arg(long)]
    ad_campaigns: Option<CampaignDraw>,
    /// How promotions choose their podcast: uniform, streams or half [default: streams].
    #[arg(long)]
    promotion_campaigns: Option<CampaignDraw>,
}

impl From<WorldArgs> for WorldConfig {
    /// The version's defaults with the flags given over them; settings a
    /// version does not have are refused when the world is generated.
    fn from(a: WorldArgs) -> Self {
        let sizes = WorldConfig {
            seed: a.seed,
            users: a.users,
            podcasts: a.podcasts,
            campaigns: a.campaigns,
            impressions: a.impressions,
            days: a.days,
            run_date: a.date,
            sell_through: a.sell_through,
            ..WorldConfig::default()
        };
        let base = match a.generator_version {
            2 => sizes.version_2(),
            version => WorldConfig { generator_version: version, ..sizes },
        };
        WorldConfig {
            ad_share: a.ad_share.or(base.ad_share),
            ad_receptivity_observed: a.ad_receptivity_observed.unwrap_or(base.ad_receptivity_observed),
            ad_campaigns: a.ad_campaigns.unwrap_or(base.ad_campaigns),
            promotion_campaigns: a.promotion_campaigns.unwrap_or(base.promotion_campaigns),
            ..base
        }
    }
}
