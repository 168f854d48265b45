//! audience: batch audience targeting for podcast ads and promotions.
//!
//! The library holds all the logic, the command line (`cli`) included; the
//! `audience` binary only sets up its allocator and calls `cli::main`.
//! Modules form layers, and each imports only from its own layer or lower ones:
//! from the floor up, the utilities (`exit_code`, `hashing`, `measure`,
//! `progress`, `failpoint`), `storage`, `contract`, `tables` and `report`,
//! `world` and `allocate`, `model`, `scoring`, `choose`, `cluster`, `job`, `ab`,
//! `bench`, `error`, which gathers every layer's error, and `cli` on top. The
//! order is written once, in `layers.rs`, whose test checks every import
//! against it. The design: docs/design.md.

pub mod ab;
pub mod allocate;
pub mod bench;
pub mod choose;
pub mod cli;
pub mod cluster;
pub mod contract;
pub mod error;
pub mod exit_code;
pub mod failpoint;
pub mod hashing;
pub mod job;
#[cfg(test)]
mod layers;
pub mod measure;
pub mod model;
pub mod progress;
pub mod report;
pub mod scoring;
pub mod storage;
pub mod tables;
pub mod world;

pub use error::{Error, ExitCode};
