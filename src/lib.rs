//! audience: batch audience targeting for podcast ads and promotions.
//!
//! The library holds all the logic; the `audience` binary is a thin CLI over it.
//! Dependencies point one way: `contract` (the data contract) and `storage`
//! (object stores) are the floor; `world` (the synthetic world generator) builds
//! on both; `allocate` (budgets, caps, floors) is pure and imports neither
//! DataFusion nor object_store; `cluster` (the Ballista engine) builds on
//! `scoring` and is used by `job` only; `report` (HTML pages and their figures)
//! is a floor too, filled in by `job` (the run report) and `model` (the model
//! report); `ab` (the simulated budget-split A/B) sits on top of `job`,
//! `model`, `scoring` and `world`; each layer's error knows its exit code
//! (`exit_code`), and `error` gathers them for the binary. The design:
//! docs/design.md.

pub mod ab;
pub mod allocate;
pub mod cluster;
pub mod contract;
pub mod error;
pub mod exit_code;
pub mod failpoint;
pub mod hashing;
pub mod job;
pub mod measure;
pub mod model;
pub mod progress;
pub mod report;
pub mod scoring;
pub mod storage;
pub mod tables;
pub mod world;

pub use error::{Error, ExitCode};
