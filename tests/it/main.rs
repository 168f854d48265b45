//! Integration tests, one binary: shared helpers in `helpers`, one module per area.

mod allocate;
mod cli;
mod generate;
mod helpers;
mod libtorch;
mod validate;
