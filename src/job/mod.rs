//! The nightly job (DESIGN.md sections 1 and 7): configuration, one run with its
//! commit protocol, dry runs and backfills.

pub mod commit;
pub mod config;
pub mod demo;
pub mod dry_run;
pub mod run;
