//! Self-contained HTML reports: the page (`html`) and its figures (`charts`).
//! What goes in a report is decided by its subject: the run report in
//! `job::report`, the model report in `model::report`.

pub mod charts;
pub mod html;

pub use charts::{ChartError, Series};
pub use html::{Cell, Page};
