//! The crate's top-level error and the exit codes an orchestrator acts on:
//! invalid input or config is never worth a retry, a transient failure is, and a
//! conflict needs a person (or `--overwrite`).

use crate::contract::validate::InvalidInput;
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
        }
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
        StorageError::Io { .. } | StorageError::Parquet { .. } => ExitCode::Transient,
    }
}
