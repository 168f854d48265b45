//! The nightly job (docs/design.md §1 and §7): configuration, one run with its
//! commit protocol, its report, dry runs and backfills, config validation, the demo.

pub mod audiences;
pub mod commit;
pub mod config;
pub mod demo;
pub mod dry_run;
pub mod error;
pub mod layout;
pub mod manifest;
pub mod previous;
pub mod report;
pub mod run;
pub mod validate;
