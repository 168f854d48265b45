//! What validation found: one [`Problem`] per distinct problem (with how many
//! rows have it and an example), the [`Report`] of a world, and the
//! [`InvalidInput`] error that lists every problem.

use std::collections::BTreeMap;
use std::fmt;

use super::Table;

/// One distinct problem in the input.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub table: Table,
    /// The column at fault; empty for problems of the whole table or file.
    pub column: String,
    /// What is wrong, e.g. "negative value" or "missing required column".
    pub rule: String,
    /// Rows (or files) with this problem.
    pub count: u64,
    /// The first offending key or row, e.g. `campaign_id=c-17 (value -5)`.
    pub example: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.column.is_empty() {
            write!(f, "{}: {}", self.table, self.rule)?;
        } else {
            write!(f, "{}.{}: {}", self.table, self.column, self.rule)?;
        }
        if self.count > 1 {
            write!(f, " ({} rows)", self.count)?;
        }
        if !self.example.is_empty() {
            write!(f, ", e.g. {}", self.example)?;
        }
        Ok(())
    }
}

/// The outcome of validating a world: rows per table and every problem found.
#[derive(Debug, Default)]
pub struct Report {
    pub rows: BTreeMap<Table, u64>,
    pub problems: Vec<Problem>,
}

impl Report {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// The problems of one table and column, for tests and callers.
    pub fn problems_for(&self, table: Table, column: &str) -> Vec<&Problem> {
        self.problems.iter().filter(|p| p.table == table && p.column == column).collect()
    }

    pub fn into_result(self) -> Result<Report, InvalidInput> {
        if self.is_ok() { Ok(self) } else { Err(InvalidInput(self.problems)) }
    }
}

/// The input breaks the contract; lists every problem. Not retryable.
#[derive(Debug, thiserror::Error)]
pub struct InvalidInput(pub Vec<Problem>);

impl fmt::Display for InvalidInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid input: {} problem(s)", self.0.len())?;
        for problem in &self.0 {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}
