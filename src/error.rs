//! The crate's top-level error and the exit codes an orchestrator acts on:
//! invalid input or config is never worth a retry, a transient failure is, and a
//! conflict needs a person (or `--overwrite`).

use crate::contract::validate::InvalidInput;
use crate::job::run::JobError;
use crate::model::ModelError;
use crate::scoring::ScoreError;
use crate::model::dataset::DatasetError;
use crate::storage::StorageError;
use crate::world::generate::GenerateError;

/// Process exit codes, documented in the README.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitCode {
    /// Done (or nothing to do).
    Success = 0,
    /// A bug or an unexpected state: report it.
    Internal = 1,
    /// Bad input data, config or arguments: fix them; retrying cannot help.
    Invalid = 2,
    /// Storage or network failure: retry the run.
    Transient = 3,
    /// The output already exists and differs: rerun with `--overwrite` if intended.
    Conflict = 4,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    InvalidInput(#[from] InvalidInput),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Generate(#[from] GenerateError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Job(#[from] JobError),
    /// Bad arguments or configuration detected by the caller.
    #[error("{0}")]
    Usage(String),
}

impl Error {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::InvalidInput(_) | Error::Usage(_) => ExitCode::Invalid,
            Error::Storage(e) => storage_exit_code(e),
            Error::Generate(GenerateError::InvalidConfig(_)) => ExitCode::Invalid,
            Error::Generate(GenerateError::NotEmpty { .. }) => ExitCode::Conflict,
            Error::Generate(GenerateError::Storage(e)) => storage_exit_code(e),
            Error::Model(e) => model_exit_code(e),
            Error::Job(e) => job_exit_code(e),
        }
    }
}

fn job_exit_code(error: &JobError) -> ExitCode {
    match error {
        JobError::Config(_) | JobError::InvalidInput(_) | JobError::UnsafeCampaignId(_) => ExitCode::Invalid,
        JobError::Storage(e) => storage_exit_code(e),
        JobError::Model(e) => model_exit_code(e),
        JobError::Score(e) => score_exit_code(e),
        JobError::Allocate(_) => ExitCode::Internal,
        JobError::Conflict { .. } => ExitCode::Conflict,
        JobError::Failpoint(_) => ExitCode::Transient,
    }
}

fn score_exit_code(error: &ScoreError) -> ExitCode {
    match error {
        ScoreError::Feature(_) => ExitCode::Invalid,
        ScoreError::Model(e) => model_exit_code(e),
        ScoreError::Batch(crate::scoring::scorer::ScoreBatchError::Feature(_)) => ExitCode::Invalid,
        ScoreError::Batch(_) | ScoreError::Task(_) => ExitCode::Internal,
        ScoreError::Query { source, .. } => datafusion_exit_code(source),
    }
}

fn datafusion_exit_code(error: &datafusion::error::DataFusionError) -> ExitCode {
    use datafusion::error::DataFusionError as D;
    match error.find_root() {
        D::Plan(_) | D::SchemaError(..) | D::ArrowError(..) => ExitCode::Invalid,
        D::Internal(_) => ExitCode::Internal,
        _ => ExitCode::Transient,
    }
}

fn model_exit_code(error: &ModelError) -> ExitCode {
    match error {
        ModelError::Feature(_) | ModelError::Invalid(_) => ExitCode::Invalid,
        ModelError::Storage(e) | ModelError::Dataset(DatasetError::Storage(e)) => storage_exit_code(e),
        ModelError::Dataset(DatasetError::Feature(_) | DatasetError::Empty(_)) => ExitCode::Invalid,
        ModelError::Dataset(DatasetError::Query { source, .. }) => datafusion_exit_code(source),
        ModelError::Torch(_) | ModelError::Io(_) => ExitCode::Internal,
    }
}

fn storage_exit_code(error: &StorageError) -> ExitCode {
    match error {
        StorageError::BadUrl { .. } | StorageError::NotFound { .. } => ExitCode::Invalid,
        StorageError::AlreadyExists { .. } => ExitCode::Conflict,
        // Wrong credentials or permissions are configuration, not bad luck.
        StorageError::Io {
            source: object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. },
            ..
        } => ExitCode::Invalid,
        // Our own marker or manifest unreadable: an unexpected state for a person.
        StorageError::Corrupt { .. } => ExitCode::Internal,
        StorageError::Io { .. } | StorageError::Parquet { .. } => ExitCode::Transient,
    }
}
