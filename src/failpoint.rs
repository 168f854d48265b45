//! Failpoints for tests and drills: the environment variable `AUDIENCE_FAILPOINT`
//! names one point where a process fails or stalls on purpose.
//!
//! - `<point>`: the job fails there with a transient error (exit 3);
//! - `kill@<point>`: the process kills itself there with SIGKILL (a crash:
//!   nothing after it runs, not even destructors);
//! - `stall-scoring`: an executor's scoring tasks never finish;
//! - `panic-scoring`: an executor's scoring tasks panic;
//! - `fail-scoring`: an executor's scoring tasks fail with a retryable (I/O) error.
//!
//! `AUDIENCE_FAILPOINT_BUDGET=<folder>:<n>` limits an armed failpoint to `n`
//! firings across every process that shares `<folder>` (a cluster's
//! executors): each firing claims a file there.
//!
//! The job's points, in order: `after-validate`, `after-score`,
//! `after-allocate`, `mid-write` (one audience file written), `before-commit`
//! (data and manifest written), `after-commit` (`_SUCCESS` written, stale runs
//! not yet removed).

pub const ENV: &str = "AUDIENCE_FAILPOINT";

/// The job's failpoints, in the order a run reaches them.
pub const JOB_POINTS: [&str; 6] =
    ["after-validate", "after-score", "after-allocate", "mid-write", "before-commit", "after-commit"];

/// Limits firings across processes: `<folder>:<n>`.
pub const BUDGET_ENV: &str = "AUDIENCE_FAILPOINT_BUDGET";

/// Whether the failpoint `name` is armed (to fail, not to kill) in this
/// process and, under a budget, one of its firings is left.
pub fn armed(name: &str) -> bool {
    std::env::var(ENV).as_deref() == Ok(name) && claim()
}

/// Claims one firing of the budget (always granted without one).
fn claim() -> bool {
    let Ok(budget) = std::env::var(BUDGET_ENV) else { return true };
    let Some((folder, n)) = budget.rsplit_once(':') else { return true };
    let n: usize = n.parse().unwrap_or(0);
    let _ = std::fs::create_dir_all(folder);
    // Creating a file is atomic: of processes racing for a firing, one wins it.
    (0..n).any(|k| std::fs::File::create_new(std::path::Path::new(folder).join(format!("firing-{k}"))).is_ok())
}

/// Reaches the point `name`: kills the process if `kill@<name>` is armed;
/// returns true if `<name>` is armed (the caller then fails).
pub fn reached(name: &str) -> bool {
    if std::env::var(ENV).ok().and_then(|v| v.strip_prefix("kill@").map(|p| p == name)) == Some(true) {
        tracing::warn!(failpoint = name, "failpoint: killing this process");
        // SAFETY: kill(2) on our own pid has no memory effects.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
    armed(name)
}
