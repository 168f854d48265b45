//! Integration tests, one binary: shared helpers in `helpers`, one module per area.

mod ab;
mod allocate;
mod cli;
mod cloud;
mod cluster;
mod cluster_faults;
mod defects;
mod edges;
mod fault_proxy;
mod faults;
mod float;
mod generate;
mod helpers;
mod job;
mod libtorch;
mod market;
mod model;
mod regime;
mod report;
mod scoring;
mod torchscript;
mod validate;
