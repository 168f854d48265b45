//! Failpoints for tests and drills: the environment variable `AUDIENCE_FAILPOINT`
//! names one point where a process fails or stalls on purpose
//! (`before-commit`: the job fails after writing its data and manifest;
//! `stall-scoring`: an executor's scoring tasks never finish).

pub const ENV: &str = "AUDIENCE_FAILPOINT";

/// Whether the failpoint `name` is armed in this process.
pub fn armed(name: &str) -> bool {
    std::env::var(ENV).as_deref() == Ok(name)
}
