//! The job's error, with the exit code of each kind, and the failpoint hook
//! every stage of a run calls (`AUDIENCE_FAILPOINT`, for the fault tests).

use crate::choose::Violations;
use crate::contract::CAMPAIGN_ID_PATTERN;
use crate::exit_code::ExitCode;

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Config(#[from] super::config::ConfigError),
    #[error(transparent)]
    InvalidInput(#[from] crate::contract::validate::InvalidInput),
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error(transparent)]
    Score(#[from] crate::scoring::ScoreError),
    #[error("allocation: {0}")]
    Allocate(#[from] crate::allocate::AllocateError),
    #[error("campaign id {0:?} cannot name an output path (must match {CAMPAIGN_ID_PATTERN})")]
    UnsafeCampaignId(String),
    #[error(
        "{date} was already committed by run {run} with different inputs or config ({what}); rerun with --overwrite to replace it"
    )]
    Conflict { date: String, run: String, what: String },
    #[error("run {run} is incomplete, so it was not committed: {} missing", missing.join(", "))]
    Incomplete { run: String, missing: Vec<String> },
    #[error("failpoint {0} reached (AUDIENCE_FAILPOINT)")]
    Failpoint(String),
    #[error("the allocation breaks its constraints ({0:?}); nothing was committed (a bug: please report it)")]
    Infeasible(Violations),
    #[error(transparent)]
    Report(#[from] super::report::ReportError),
}

impl JobError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            JobError::Config(_) | JobError::InvalidInput(_) | JobError::UnsafeCampaignId(_) => ExitCode::Invalid,
            JobError::Storage(e) => e.exit_code(),
            JobError::Model(e) => e.exit_code(),
            JobError::Score(e) => e.exit_code(),
            JobError::Allocate(_) | JobError::Infeasible(_) => ExitCode::Internal,
            JobError::Report(e) => e.exit_code(),
            JobError::Conflict { .. } => ExitCode::Conflict,
            JobError::Failpoint(_) | JobError::Incomplete { .. } => ExitCode::Transient,
        }
    }
}

/// Fails at the failpoint `name` if it is armed (and dies there if
/// `kill@name` is).
pub fn failpoint(name: &str) -> Result<(), JobError> {
    if crate::failpoint::reached(name) { Err(JobError::Failpoint(name.to_string())) } else { Ok(()) }
}
