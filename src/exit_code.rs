//! The process exit codes an orchestrator acts on: invalid input or config is
//! never worth a retry, a transient failure is, and a conflict needs a person
//! (or `--overwrite`). Each layer's error says which it is (`exit_code()`);
//! docs/operations.md lists them.

/// Process exit codes, documented in docs/operations.md.
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

/// What a failed DataFusion query means for the run: a plan or schema error is
/// bad input, an internal error a bug, anything else (I/O) transient.
pub fn of_query(error: &datafusion::error::DataFusionError) -> ExitCode {
    use datafusion::error::DataFusionError as D;
    match error.find_root() {
        D::Plan(_) | D::SchemaError(..) | D::ArrowError(..) => ExitCode::Invalid,
        D::Internal(_) => ExitCode::Internal,
        _ => ExitCode::Transient,
    }
}
