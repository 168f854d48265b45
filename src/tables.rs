//! A DataFusion session over a world's tables: registers the store behind a
//! [`Location`] with the session and each contract table under its own name, so
//! plans can read `users`, `podcasts`, `campaigns`, `follows` and `impressions`
//! from any object_store URL.

use std::sync::Arc;

use datafusion::execution::context::SessionContext;
use datafusion::prelude::{ParquetReadOptions, SessionConfig};

use crate::contract::Table;
use crate::storage::Location;

/// A session configured by `config` with `tables` of the world at `root` registered.
pub async fn session(root: &Location, tables: &[Table], config: SessionConfig) -> datafusion::error::Result<SessionContext> {
    let ctx = SessionContext::new_with_config(config);
    register(&ctx, root, tables).await?;
    Ok(ctx)
}

/// Registers the store behind `root` and `tables` of its world with `ctx`
/// (a local session, or one whose plans run on a Ballista cluster).
pub async fn register(ctx: &SessionContext, root: &Location, tables: &[Table]) -> datafusion::error::Result<()> {
    ctx.register_object_store(&root.store_url(), Arc::clone(root.store()));
    for &table in tables {
        let url = format!("{}/", root.join(table.name()).url());
        // Data files end in `.parquet`; marker files such as `_SUCCESS` do not.
        ctx.register_parquet(table.name(), &url, ParquetReadOptions::default()).await?;
    }
    Ok(())
}
