//! `run`, `backfill`, `report` and `demo`: the nightly job.

use std::path::PathBuf;

use crate::Error;
use crate::job::config::JobConfig;
use crate::job::run::RunFlags;
use crate::job::{demo, dry_run, report, run};
use crate::model::train::TrainOptions;
use chrono::NaiveDate;
use clap::Subcommand;

use super::data::WorldArgs;

#[derive(Subcommand)]
pub enum Command {
    /// The nightly job: validate, score, allocate, write audiences, commit.
    Run {
        /// The job config (TOML; see docs/config.md).
        #[arg(long)]
        config: PathBuf,
        /// The run date (YYYY-MM-DD); default today (UTC).
        #[arg(long)]
        date: Option<NaiveDate>,
        /// Replace a committed run of this date that differs.
        #[arg(long)]
        overwrite: bool,
        /// Validate, count eligible pairs, estimate scoring time; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// One committed run per date in a range; skips dates already committed.
    Backfill {
        /// The job config (TOML; see docs/config.md).
        #[arg(long)]
        config: PathBuf,
        /// First date to run (YYYY-MM-DD).
        #[arg(long)]
        from: NaiveDate,
        /// Last date to run, inclusive (YYYY-MM-DD).
        #[arg(long)]
        to: NaiveDate,
        /// Replace committed dates that differ instead of skipping every committed date.
        #[arg(long)]
        overwrite: bool,
    },
    /// Render a committed run's report.html again from its manifest.
    Report {
        /// The run's manifest.json (path or URL).
        #[arg(long)]
        manifest: String,
        /// The model artifact whose metrics the report shows; default the manifest's model_uri.
        #[arg(long)]
        model: Option<String>,
        /// Where to write the page; default report.html beside the manifest.
        #[arg(long)]
        out: Option<String>,
    },
    /// The end-to-end demo on local storage: generate a world, train a model,
    /// run the job for the world's run date, print the audiences' summary.
    Demo {
        /// Local directory for the demo (world, model, audiences; replaced if present).
        #[arg(long, default_value = "demo")]
        out: String,
        #[command(flatten)]
        world: WorldArgs,
        /// Most training epochs of the demo's model.
        #[arg(long, default_value_t = 3)]
        epochs: usize,
    },
}

impl Command {
    pub async fn run(self) -> Result<(), Error> {
        match self {
            Command::Run { config, date, overwrite, dry_run } => {
                let config = JobConfig::load(&config)?;
                let date = date.unwrap_or_else(|| chrono::Utc::now().date_naive());
                if dry_run {
                    print!("{}", dry_run::dry_run(&config, date).await?.report());
                } else {
                    println!("{}", run::run(&config, &RunFlags { date, overwrite }).await?.manifest_url());
                }
            }
            Command::Backfill { config, from, to, overwrite } => {
                if from > to {
                    return Err(Error::Usage(format!("--from {from} is after --to {to}")));
                }
                let config = JobConfig::load(&config)?;
                for (date, outcome) in run::backfill(&config, from, to, overwrite).await? {
                    match outcome {
                        Some(outcome) => println!("{date}\t{}", outcome.manifest_url()),
                        None => println!("{date}\talready committed"),
                    }
                }
            }
            Command::Report { manifest, model, out } => {
                println!("{}", report::render_again(&manifest, model.as_deref(), out.as_deref()).await?);
            }
            Command::Demo { out, world, epochs } => {
                if epochs == 0 {
                    return Err(Error::Usage("--epochs must be at least 1".into()));
                }
                super::output("--out", &out)?;
                let options = TrainOptions { max_epochs: epochs, ..TrainOptions::default() };
                let demo = demo::demo(std::path::Path::new(&out), world.into(), &options).await?;
                print!("{}", demo.summary());
                println!("{}", demo.manifest_url);
            }
        }
        Ok(())
    }
}
