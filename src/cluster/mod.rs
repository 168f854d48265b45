//! The cluster engine (docs/design.md §8): the same scoring plan as the local
//! engine, run by Ballista. The job's client plans a [`plan::ScoreNode`] over
//! the users scan and sends it to our scheduler, which turns it into a
//! [`plan::ScoreExec`] per users partition; executors run those with the
//! scoring operator of [`crate::scoring`] and return each partition's pools,
//! which the client merges exactly as the local engine does.
//!
//! Dependencies within: `spec` → `partial` → `cache` → `plan` → `codec` →
//! `stores` → `session` → `client` / `process`. Nothing here is used by the
//! local engine.

pub mod cache;
pub mod client;
pub mod codec;
pub mod partial;
pub mod plan;
pub mod process;
pub mod session;
pub mod spec;
pub mod stores;

/// Our errors, as DataFusion carries them through plans and tasks.
fn external(error: impl std::error::Error + Send + Sync + 'static) -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::External(Box::new(error))
}
