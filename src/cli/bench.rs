//! `bench allocate` and `bench score`: benchmarks that print their figures.

use crate::Error;
use crate::allocate::{Solver, Valuation};
use crate::bench::allocate::BenchOptions;
use crate::bench::layout::Layout;
use crate::bench::score::BenchOptions as ScoreBenchOptions;
use crate::model::fused::{Precision, bf16_supported};
use clap::Subcommand;

use super::distinct;

#[derive(Subcommand)]
pub enum Command {
    /// Allocation on a random instance: candidates/s, iterations, gap, peak RSS.
    Allocate {
        /// Candidate (user, campaign) pairs in the random instance.
        #[arg(long, default_value_t = 1_000_000)]
        candidates: usize,
        /// Campaigns in the random instance.
        #[arg(long, default_value_t = 200)]
        campaigns: usize,
        /// Solvers to run, comma separated.
        #[arg(long, value_delimiter = ',', default_value = "lagrangian,greedy")]
        solver: Vec<Solver>,
        /// What a pair is worth: quality_spend (the job's default) or events.
        #[arg(long, default_value = "quality_spend")]
        objective: Valuation,
        /// Seed of the random instance.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Also solve a next day (budgets moved by up to 3%), cold and warm-started.
        #[arg(long)]
        warm_start: bool,
    },
    /// Scoring: naive per-pair forward vs the factorised fused operator, GEMM share.
    Score {
        /// Users of the generated world (ignored with --data).
        #[arg(long, default_value_t = 1_000_000)]
        users: u64,
        /// Campaigns of the generated world (ignored with --data).
        #[arg(long, default_value_t = 200)]
        campaigns: u64,
        /// Users in the naive path's sample (0: skip the naive path).
        #[arg(long, default_value_t = 5_000)]
        naive_users: usize,
        /// Score this world instead of generating one.
        #[arg(long)]
        data: Option<String>,
        /// Score with this trained model instead of a random one.
        #[arg(long)]
        model: Option<String>,
        /// Precisions to run, comma separated (default: fp32, and bf16 where the CPU has AVX-512 BF16).
        #[arg(long, value_delimiter = ',')]
        precision: Vec<Precision>,
        /// Also run on one partition (one core).
        #[arg(long)]
        one_partition: bool,
        /// The generated users table's layout: default (as `generate` writes it), one-row-group (one file, one row group) or many-files (1,000 files).
        #[arg(long, default_value = "default")]
        layout: Layout,
        /// Pool size over the users a campaign's budget can buy (the job's default 2); 0 keeps no candidate, so the memory figures are the operator's alone.
        #[arg(long, default_value_t = 2.0)]
        slack: f64,
    },
}

impl Command {
    pub async fn run(self) -> Result<(), Error> {
        match self {
            Command::Allocate { candidates, campaigns, solver, objective, seed, warm_start } => {
                if campaigns == 0 || candidates == 0 {
                    return Err(Error::Usage("--candidates and --campaigns must be at least 1".into()));
                }
                distinct("--solver", &solver)?;
                crate::bench::allocate::run(&BenchOptions {
                    candidates,
                    campaigns,
                    solvers: solver,
                    objective,
                    seed,
                    warm_start,
                });
            }
            Command::Score { users, campaigns, naive_users, data, model, precision, one_partition, layout, slack } => {
                if users == 0 || campaigns == 0 {
                    return Err(Error::Usage("--users and --campaigns must be at least 1".into()));
                }
                if !(slack.is_finite() && slack >= 0.0) {
                    return Err(Error::Usage(format!("--slack is {slack}; it must be a finite number ≥ 0")));
                }
                if data.is_some() && layout != Layout::Default {
                    return Err(Error::Usage(
                        "--layout rewrites the generated world's users table; --data is scored as it is".into(),
                    ));
                }
                let precisions = if precision.is_empty() {
                    let mut all = vec![Precision::Fp32];
                    if bf16_supported() {
                        all.push(Precision::Bf16);
                    }
                    all
                } else {
                    precision
                };
                distinct("--precision", &precisions)?;
                for p in &precisions {
                    p.check().map_err(|e| Error::Usage(e.to_string()))?;
                }
                let options = ScoreBenchOptions {
                    users,
                    campaigns,
                    naive_users,
                    data,
                    model,
                    precisions,
                    one_partition,
                    layout,
                    slack,
                };
                crate::bench::score::run(&options).await?;
            }
        }
        println!("{}", crate::measure::peak_rss_line());
        Ok(())
    }
}
