//! What can go wrong with object storage, and what each failure means for
//! the run: bad input (exit 2), a transient failure worth a retry (3), a
//! conflict (4), or our own file corrupt (1).

use crate::exit_code::ExitCode;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The URL cannot name a store (bad scheme, missing bucket, bad path).
    #[error("bad storage URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    /// A create-only put found the object already there.
    #[error("{url} already exists")]
    AlreadyExists { url: String },
    #[error("{url} not found")]
    NotFound { url: String },
    /// Any other failure of the store: network, throttling, permissions. Retryable
    /// as a whole run, since every write of the job is idempotent or create-only.
    #[error("storage error at {url}: {source}")]
    Io {
        url: String,
        #[source]
        source: object_store::Error,
    },
    /// An object the job wrote itself (a marker, a manifest) cannot be parsed.
    #[error("{url} is corrupt: {reason}")]
    Corrupt { url: String, reason: String },
    #[error("writing Parquet to {url}: {source}")]
    Parquet {
        url: String,
        #[source]
        source: parquet::errors::ParquetError,
    },
}

impl StorageError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            StorageError::BadUrl { .. } | StorageError::NotFound { .. } => ExitCode::Invalid,
            StorageError::AlreadyExists { .. } => ExitCode::Conflict,
            StorageError::Io { source, .. } if is_permanent(source) => ExitCode::Invalid,
            StorageError::Parquet { source, .. } if is_permanent(source) => ExitCode::Invalid,
            // Our own marker or manifest unreadable: an unexpected state for a person.
            StorageError::Corrupt { .. } => ExitCode::Internal,
            StorageError::Io { .. } | StorageError::Parquet { .. } => ExitCode::Transient,
        }
    }
}

/// Whether a store's error is one a retry cannot fix: wrong credentials or
/// permissions, a path the store cannot take, a request it does not support,
/// or (on a local disk) a folder where a file should be, a file where a
/// folder should be, a read-only file system, a name the file system refuses.
/// Everything else (network, throttling, a full disk) may pass: exit 3.
fn is_permanent(error: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind as K;
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(error) = error.downcast_ref::<object_store::Error>() {
            use object_store::Error as E;
            if matches!(
                error,
                E::PermissionDenied { .. }
                    | E::Unauthenticated { .. }
                    | E::InvalidPath { .. }
                    | E::NotSupported { .. }
                    | E::NotImplemented { .. }
                    | E::UnknownConfigurationKey { .. }
            ) {
                return true;
            }
        }
        if let Some(error) = error.downcast_ref::<std::io::Error>()
            && matches!(
                error.kind(),
                K::IsADirectory
                    | K::NotADirectory
                    | K::PermissionDenied
                    | K::ReadOnlyFilesystem
                    | K::InvalidFilename
                    | K::InvalidInput
                    | K::DirectoryNotEmpty
            )
        {
            return true;
        }
        next = error.source();
    }
    false
}

impl StorageError {
    pub(crate) fn from_store(url: String, source: object_store::Error) -> Self {
        match source {
            object_store::Error::NotFound { .. } => StorageError::NotFound { url },
            object_store::Error::AlreadyExists { .. } => StorageError::AlreadyExists { url },
            source => StorageError::Io { url, source },
        }
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;
