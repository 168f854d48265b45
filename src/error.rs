//! The crate's top-level error: any layer's error, or a usage error the caller
//! found, each knowing its exit code (see [`crate::exit_code`]).

pub use crate::exit_code::ExitCode;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    InvalidInput(#[from] crate::contract::validate::InvalidInput),
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    #[error(transparent)]
    Generate(#[from] crate::world::write::GenerateError),
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error(transparent)]
    Job(#[from] crate::job::error::JobError),
    #[error(transparent)]
    Demo(#[from] crate::job::demo::DemoError),
    #[error(transparent)]
    Cluster(#[from] crate::cluster::process::ProcessError),
    #[error(transparent)]
    Bench(#[from] crate::bench::score::BenchError),
    #[error(transparent)]
    Report(#[from] crate::job::report::ReportError),
    #[error(transparent)]
    Ab(#[from] crate::ab::AbError),
    /// Bad arguments or configuration detected by the caller.
    #[error("{0}")]
    Usage(String),
    /// A local file the caller asked for could not be written.
    #[error("writing {path}: {source}")]
    Write { path: String, source: std::io::Error },
}

impl From<crate::job::config::ConfigError> for Error {
    fn from(error: crate::job::config::ConfigError) -> Error {
        Error::Job(error.into())
    }
}

impl Error {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::InvalidInput(_) | Error::Usage(_) | Error::Write { .. } => ExitCode::Invalid,
            Error::Storage(e) => e.exit_code(),
            Error::Generate(e) => e.exit_code(),
            Error::Model(e) => e.exit_code(),
            Error::Job(e) => e.exit_code(),
            Error::Demo(e) => e.exit_code(),
            Error::Cluster(e) => e.exit_code(),
            Error::Bench(e) => e.exit_code(),
            Error::Report(e) => e.exit_code(),
            Error::Ab(e) => e.exit_code(),
        }
    }
}
