//! A DataFusion session over a world's tables: registers the store behind a
//! [`Location`] with the session and each contract table under its own name, so
//! plans can read `users`, `podcasts`, `campaigns`, `follows` and `impressions`
//! from any object_store URL.
//!
//! A table is exactly the files [`data_files`] lists (the files the validator
//! checked and the fingerprint covers), read as the contract's schema: each
//! file's own encodings (LargeUtf8, a list child named `element`, a List where
//! the contract has a FixedSizeList) are cast to the contract's types, columns
//! outside the contract are not seen, and optional columns a file lacks read
//! as null.

use std::sync::Arc;

use datafusion::catalog::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::execution::context::SessionContext;
use datafusion::prelude::SessionConfig;

use crate::contract::Table;
use crate::contract::files::data_files;
use crate::storage::Location;

/// A session configured by `config` with `tables` of the world at `root` registered.
pub async fn session(
    root: &Location,
    tables: &[Table],
    config: SessionConfig,
) -> datafusion::error::Result<SessionContext> {
    let ctx = SessionContext::new_with_config(config);
    register(&ctx, root, tables).await?;
    Ok(ctx)
}

/// Registers the store behind `root` and `tables` of its world with `ctx`
/// (a local session, or one whose plans run on a Ballista cluster).
pub async fn register(ctx: &SessionContext, root: &Location, tables: &[Table]) -> datafusion::error::Result<()> {
    ctx.register_object_store(&root.store_url(), Arc::clone(root.store()));
    for &table in tables {
        let schema = read_schema(table);
        let files = data_files(&root.join(table.name()))
            .await
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        if files.is_empty() {
            ctx.register_table(table.name(), Arc::new(MemTable::try_new(schema, vec![vec![]])?))?;
            continue;
        }
        let urls = files
            .iter()
            .map(|file| ListingTableUrl::parse(root.url_of(&file.location)))
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        // Every listed file is data, whatever its name ends with.
        let options = ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension("");
        let config = ListingTableConfig::new_with_multi_paths(urls).with_listing_options(options).with_schema(schema);
        ctx.register_table(table.name(), Arc::new(ListingTable::try_new(config)?))?;
    }
    Ok(())
}

/// The contract's schema of `table`, every column nullable: nulls are the
/// validator's to reject, by name; the reader only needs the types.
fn read_schema(table: Table) -> arrow::datatypes::SchemaRef {
    let fields =
        table.spec().schema().fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect::<Vec<_>>();
    Arc::new(arrow::datatypes::Schema::new(fields))
}
