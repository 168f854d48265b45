//! The users table laid out in the shapes real tables come in, for `bench
//! score --layout`: the generator's default (files of 2²⁰ rows in row groups
//! of 128k), one file of one row group, or a thousand small files. The rows
//! and their order stay the same; only files and row groups change.

use std::str::FromStr;

use futures::StreamExt;
use object_store::ObjectStoreExt;

use crate::contract::Table;
use crate::storage::{Location, StorageError};

/// Files in the many-small-files layout.
pub const MANY_FILES: u64 = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// As `audience generate` writes it.
    Default,
    /// One file holding one row group.
    OneRowGroup,
    /// [`MANY_FILES`] files of equal size.
    ManyFiles,
}

impl Layout {
    pub fn as_str(self) -> &'static str {
        match self {
            Layout::Default => "default",
            Layout::OneRowGroup => "one-row-group",
            Layout::ManyFiles => "many-files",
        }
    }
}

impl FromStr for Layout {
    type Err = String;

    fn from_str(s: &str) -> Result<Layout, String> {
        match s {
            "default" => Ok(Layout::Default),
            "one-row-group" => Ok(Layout::OneRowGroup),
            "many-files" => Ok(Layout::ManyFiles),
            other => Err(format!("layout \"{other}\": expected default, one-row-group or many-files")),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("rewriting the users table: {0}")]
    Query(#[from] datafusion::error::DataFusionError),
}

/// Rewrites the users table of the world at `root` (of `users` rows) in
/// `layout`: the new files are written beside the old ones, which are
/// removed after.
pub async fn rewrite_users(root: &Location, users: u64, layout: Layout) -> Result<(), LayoutError> {
    if layout == Layout::Default {
        return Ok(());
    }
    let table = root.join(Table::Users.name());
    let old = table.list().await?;
    // One partition: the files are read in order, so the rows keep theirs.
    let config = datafusion::prelude::SessionConfig::new().with_target_partitions(1);
    let ctx = crate::tables::session(root, &[Table::Users], config).await?;
    let mut stream = ctx.sql("SELECT * FROM users").await?.execute_stream().await?;
    let schema = Table::Users.spec().schema();
    let per_file = match layout {
        Layout::ManyFiles => users.div_ceil(MANY_FILES).max(1),
        _ => users.max(1),
    };
    let (mut file, mut in_file) = (0u64, 0u64);
    let mut writer = None;
    while let Some(batch) = stream.next().await {
        let mut batch = batch?;
        while batch.num_rows() > 0 {
            if writer.is_none() {
                let name = table.join(&format!("layout-{}-{file:05}.parquet", layout.as_str()));
                writer = Some(name.parquet_writer_with_row_groups(schema.clone(), per_file as usize)?);
                (file, in_file) = (file + 1, 0);
            }
            let take = ((per_file - in_file) as usize).min(batch.num_rows());
            writer.as_mut().expect("open writer").write(&batch.slice(0, take)).await?;
            in_file += take as u64;
            batch = batch.slice(take, batch.num_rows() - take);
            if in_file == per_file {
                writer.take().expect("open writer").finish().await?;
            }
        }
    }
    if let Some(writer) = writer {
        writer.finish().await?;
    }
    for object in old {
        table
            .store()
            .delete(&object.location)
            .await
            .map_err(|e| StorageError::from_store(table.url_of(&object.location), e))?;
    }
    Ok(())
}
