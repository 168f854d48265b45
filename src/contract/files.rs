//! Which files make up a table, and the fingerprint of a set of tables: the
//! one listing every reader of the contract agrees on.

use sha2::{Digest, Sha256};

use super::Table;
use crate::storage::{Location, StorageError};

/// Data files of a table: every object under its prefix except hidden and
/// marker files (`.crc`, `_SUCCESS`, `_common_metadata` ...).
pub async fn data_files(location: &Location) -> Result<Vec<object_store::ObjectMeta>, StorageError> {
    Ok(location
        .list()
        .await?
        .into_iter()
        .filter(|object| {
            object.location.filename().is_some_and(|name| !name.starts_with('.') && !name.starts_with('_'))
        })
        .collect())
}

/// A stable fingerprint of the data files of `tables` under `root`: SHA-256 of
/// each file's URL, size and version (e-tag or
/// modification time). Changes whenever an input file changes.
pub async fn fingerprint(root: &Location, tables: &[Table]) -> Result<String, StorageError> {
    let mut hasher = Sha256::new();
    for &table in tables {
        for object in data_files(&root.join(table.name())).await? {
            let version = object.e_tag.clone().unwrap_or_else(|| object.last_modified.to_rfc3339());
            hasher.update(format!("{}\t{}\t{}\n", root.url_of(&object.location), object.size, version));
        }
    }
    Ok(hex::encode(hasher.finalize()))
}
