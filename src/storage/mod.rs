//! Object storage: turns a URL or local path into an `object_store` client plus a
//! prefix, and offers the few operations the project needs (list, read, write
//! Parquet, create-only put, delete a prefix).
//!
//! Supported: local paths and `file://` URLs, `s3://bucket/prefix`,
//! `gs://bucket/prefix`, `az://container/prefix` and `abfs[s]://container@account...`.
//! Cloud clients take their configuration and credentials from the environment
//! (`AWS_*`, `GOOGLE_*`, `AZURE_*`, including `AWS_ENDPOINT` and `AWS_ALLOW_HTTP`
//! for S3-compatible servers) or from workload identity; [`StorageOptions`] (the job
//! config's `[storage.s3|gcs|azure]` tables) add or override settings but may not
//! hold credentials. Nothing here logs option values or credentials.
//!
//! S3 create-only puts send `If-None-Match: *` (object_store's default
//! `conditional_put = "etag"`); a server that ignores it would break the commit
//! protocol, so `aws_conditional_put = "disabled"` is refused.
//!
//! Storage contract relied on by callers: a completed `put` is visible in full to
//! later reads and listings; `write_if_absent` fails with [`StorageError::AlreadyExists`]
//! when the object exists (create-only put).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use futures::FutureExt;
use futures::future::BoxFuture;
use object_store::buffered::BufWriter;
use parquet::arrow::AsyncArrowWriter;
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use url::Url;

mod error;
mod local;

pub use error::{Result, StorageError};

/// Settings for the cloud clients, by scheme, as `object_store` config keys
/// (`endpoint`, `region`, `allow_http`, `virtual_hosted_style_request`,
/// `use_emulator` ...). Applied over the environment's settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageOptions {
    /// For `s3://` (`AmazonS3ConfigKey`).
    pub s3: BTreeMap<String, String>,
    /// For `gs://` (`GoogleConfigKey`).
    pub gcs: BTreeMap<String, String>,
    /// For `az://`, `abfs[s]://` (`AzureConfigKey`).
    pub azure: BTreeMap<String, String>,
}

/// Keys that carry secrets: they belong in the environment or workload identity,
/// never in a config file that is copied into ConfigMaps and logs.
const CREDENTIAL_KEYS: &[&str] = &[
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "aws_sse_customer_key_base64",
    "google_service_account_key",
    "azure_storage_account_key",
    "azure_storage_client_secret",
    "azure_storage_sas_key",
    "azure_storage_token",
    "azure_fabric_session_token",
];

impl StorageOptions {
    /// Checks every key against its client's known keys; refuses credentials and
    /// a disabled S3 conditional put. The message names the table and key only.
    pub fn check(&self) -> Result<(), String> {
        fn each<K: FromStr + AsRef<str>>(table: &str, options: &BTreeMap<String, String>) -> Result<(), String> {
            for key in options.keys() {
                let parsed = K::from_str(key).map_err(|_| format!("storage.{table}: unknown key {key:?}"))?;
                if CREDENTIAL_KEYS.contains(&parsed.as_ref()) {
                    return Err(format!(
                        "storage.{table}.{key} is a credential: set it in the environment or use workload identity"
                    ));
                }
            }
            Ok(())
        }
        each::<object_store::aws::AmazonS3ConfigKey>("s3", &self.s3)?;
        each::<object_store::gcp::GoogleConfigKey>("gcs", &self.gcs)?;
        each::<object_store::azure::AzureConfigKey>("azure", &self.azure)?;
        for (key, value) in &self.s3 {
            let is_conditional = object_store::aws::AmazonS3ConfigKey::from_str(key)
                .is_ok_and(|k| matches!(k, object_store::aws::AmazonS3ConfigKey::ConditionalPut));
            if is_conditional && value.eq_ignore_ascii_case("disabled") {
                return Err(format!("storage.s3.{key} = \"disabled\": the commit needs create-only puts"));
            }
        }
        Ok(())
    }
}

/// Applies `options` (one client's `object_store` config keys) to its builder.
fn configure<B, K: FromStr>(
    builder: B,
    options: &BTreeMap<String, String>,
    with_config: impl Fn(B, K, &str) -> B,
) -> Result<B, String> {
    options.iter().try_fold(builder, |builder, (key, value)| {
        let key = K::from_str(key).map_err(|_| format!("unknown storage option {key:?}"))?;
        Ok(with_config(builder, key, value))
    })
}

/// A store plus a prefix in it: a world root, a table, an output directory.
#[derive(Clone)]
pub struct Location {
    store: Arc<dyn ObjectStore>,
    /// Prefix inside the store; empty for the store's root.
    prefix: Path,
    /// The URL of `prefix`, for messages (never contains credentials).
    url: String,
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

impl Location {
    /// Opens `url_or_path`: a local path (relative or absolute), or a URL with one
    /// of the supported schemes, configured from the environment. Local
    /// directories need not exist yet.
    pub fn parse(url_or_path: &str) -> Result<Location> {
        Self::parse_with(url_or_path, &StorageOptions::default())
    }

    /// [`Location::parse`] with `options` applied over the environment's settings.
    pub fn parse_with(url_or_path: &str, options: &StorageOptions) -> Result<Location> {
        let bad = |reason: &str| StorageError::BadUrl { url: url_or_path.to_string(), reason: reason.to_string() };
        if url_or_path.is_empty() {
            return Err(bad("empty location"));
        }
        let url = match Url::parse(url_or_path) {
            Ok(url) if url.scheme().len() > 1 => url,
            // Not a URL (or a Windows drive letter): a local path.
            _ => return Self::local(std::path::Path::new(url_or_path)),
        };
        let store: Arc<dyn ObjectStore> = match url.scheme() {
            "file" => {
                let path = url.to_file_path().map_err(|_| bad("not a local file URL"))?;
                return Self::local(&path);
            }
            "s3" | "s3a" => {
                let bucket = url.host_str().ok_or_else(|| bad("missing bucket"))?;
                let builder = configure(object_store::aws::AmazonS3Builder::from_env(), &options.s3, |b, k, v| {
                    b.with_config(k, v)
                })
                .map_err(|e| bad(&e))?;
                Arc::new(builder.with_bucket_name(bucket).build().map_err(|e| bad(&e.to_string()))?)
            }
            "gs" => {
                let bucket = url.host_str().ok_or_else(|| bad("missing bucket"))?;
                let builder =
                    configure(object_store::gcp::GoogleCloudStorageBuilder::from_env(), &options.gcs, |b, k, v| {
                        b.with_config(k, v)
                    })
                    .map_err(|e| bad(&e))?;
                Arc::new(builder.with_bucket_name(bucket).build().map_err(|e| bad(&e.to_string()))?)
            }
            "az" | "azure" | "abfs" | "abfss" => {
                let builder =
                    configure(object_store::azure::MicrosoftAzureBuilder::from_env(), &options.azure, |b, k, v| {
                        b.with_config(k, v)
                    })
                    .map_err(|e| bad(&e))?;
                Arc::new(builder.with_url(url.as_str()).build().map_err(|e| bad(&e.to_string()))?)
            }
            other => return Err(bad(&format!("unsupported scheme {other:?}"))),
        };
        let prefix = Path::from_url_path(url.path()).map_err(|e| bad(&e.to_string()))?;
        let mut root = url.clone();
        root.set_path("");
        root.set_query(None);
        root.set_fragment(None);
        let _ = root.set_password(None);
        let _ = root.set_username("");
        let url = format!("{}/{}", root.as_str().trim_end_matches('/'), prefix);
        Ok(Location { store, prefix, url: url.trim_end_matches('/').to_string() })
    }

    fn local(path: &std::path::Path) -> Result<Location> {
        let absolute = local::resolve(path)
            .map_err(|e| StorageError::BadUrl { url: path.display().to_string(), reason: e.to_string() })?;
        let prefix = Path::from_absolute_path(&absolute)
            .map_err(|e| StorageError::BadUrl { url: path.display().to_string(), reason: e.to_string() })?;
        let store = object_store::local::LocalFileSystem::new().with_automatic_cleanup(true);
        Ok(Location {
            store: Arc::new(store),
            prefix,
            url: format!("file://{}", absolute.display()).trim_end_matches('/').to_string(),
        })
    }

    /// The location `child` below this one (`child` may contain `/`).
    pub fn join(&self, child: &str) -> Location {
        let mut prefix = self.prefix.clone();
        for part in child.split('/').filter(|p| !p.is_empty()) {
            prefix = prefix.clone().join(part);
        }
        Location { store: self.store.clone(), prefix, url: format!("{}/{}", self.url, child.trim_matches('/')) }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL of the store itself (scheme and bucket), as DataFusion registers it.
    pub fn store_url(&self) -> Url {
        let mut url = Url::parse(&self.url).expect("a Location's URL is valid");
        url.set_path("");
        url
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    pub fn path(&self) -> &Path {
        &self.prefix
    }

    /// The URL of an object path in this location's store.
    pub fn url_of(&self, path: &Path) -> String {
        let relative = path.as_ref().strip_prefix(self.prefix.as_ref()).unwrap_or(path.as_ref());
        format!("{}/{}", self.url, relative.trim_start_matches('/'))
    }

    /// Checks that objects can be written below this location: it must not
    /// be a file (locally, neither may the nearest existing folder above it).
    /// A configuration error, not a transient one.
    pub async fn check_writable_below(&self) -> Result<()> {
        let not_a_folder = |what: String| StorageError::BadUrl {
            url: self.url.clone(),
            reason: format!("{what} is a file, not a folder"),
        };
        if let Some(path) = self.url.strip_prefix("file://") {
            let existing = std::path::Path::new(path).ancestors().find(|p| p.exists());
            return match existing {
                Some(p) if !p.is_dir() => Err(not_a_folder(p.display().to_string())),
                _ => Ok(()),
            };
        }
        match self.store.head(&self.prefix).await {
            Ok(_) => Err(not_a_folder("the object at this key".into())),
            Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(StorageError::from_store(self.url.clone(), e)),
        }
    }

    /// Every object under this prefix, sorted by path (listing order differs by store).
    pub async fn list(&self) -> Result<Vec<ObjectMeta>> {
        let mut objects: Vec<ObjectMeta> = self
            .store
            .list(Some(&self.prefix))
            .try_collect()
            .await
            .map_err(|e| StorageError::from_store(self.url.clone(), e))?;
        objects.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(objects)
    }

    /// Reads the whole object at this location.
    pub async fn read(&self) -> Result<Bytes> {
        let result = self.store.get(&self.prefix).await.map_err(|e| StorageError::from_store(self.url.clone(), e))?;
        result.bytes().await.map_err(|e| StorageError::from_store(self.url.clone(), e))
    }

    /// Writes the object at this location, replacing any previous one.
    pub async fn write(&self, bytes: impl Into<Bytes>) -> Result<()> {
        self.store
            .put(&self.prefix, PutPayload::from_bytes(bytes.into()))
            .await
            .map(|_| ())
            .map_err(|e| StorageError::from_store(self.url.clone(), e))
    }

    /// Writes the object only if none exists (create-only put).
    pub async fn write_if_absent(&self, bytes: impl Into<Bytes>) -> Result<()> {
        let options = PutOptions { mode: PutMode::Create, ..Default::default() };
        self.store
            .put_opts(&self.prefix, PutPayload::from_bytes(bytes.into()), options)
            .await
            .map(|_| ())
            .map_err(|e| StorageError::from_store(self.url.clone(), e))
    }

    /// Deletes the object at this location.
    pub async fn delete(&self) -> Result<()> {
        self.store.delete(&self.prefix).await.map_err(|e| StorageError::from_store(self.url.clone(), e))
    }

    /// Deletes every object under this prefix; returns how many.
    pub async fn delete_all(&self) -> Result<usize> {
        let objects = self.list().await?;
        for object in &objects {
            // Gone already: another remover of the same directory got there first.
            match self.store.delete(&object.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(StorageError::from_store(self.url_of(&object.location), e)),
            }
        }
        Ok(objects.len())
    }

    /// Removes the empty folders below this location on local disk (objects
    /// stores have none); a folder holding a file is never removed.
    pub fn remove_empty_folders(&self) {
        fn sweep(dir: &std::path::Path) {
            let Ok(entries) = std::fs::read_dir(dir) else { return };
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    sweep(&entry.path());
                    // Fails, as it should, unless the folder is empty.
                    let _ = std::fs::remove_dir(entry.path());
                }
            }
        }
        if let Some(path) = self.url.strip_prefix("file://") {
            sweep(std::path::Path::new(path));
        }
    }

    /// A streaming Parquet writer for the object at this location. Row groups are
    /// bounded so memory stays flat however many rows are written.
    pub fn parquet_writer(&self, schema: SchemaRef) -> Result<ParquetWriter> {
        self.parquet_writer_with_row_groups(schema, ROW_GROUP_ROWS)
    }

    /// A streaming Parquet writer whose row groups hold up to `rows` rows
    /// (benchmarks of other table layouts; memory grows with `rows`).
    pub fn parquet_writer_with_row_groups(&self, schema: SchemaRef, rows: usize) -> Result<ParquetWriter> {
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_max_row_group_row_count(Some(rows))
            .build();
        let sink = BufWriter::new(self.store.clone(), self.prefix.clone());
        let writer = AsyncArrowWriter::try_new(sink, schema, Some(props))
            .map_err(|source| StorageError::Parquet { url: self.url.clone(), source })?;
        Ok(ParquetWriter { writer, url: self.url.clone() })
    }

    /// A reader for the Parquet object `object` (as listed under this location).
    pub fn parquet_reader(&self, object: &ObjectMeta) -> ParquetObject {
        ParquetObject { store: self.store.clone(), path: object.location.clone(), size: object.size }
    }
}

/// A Parquet file in an object store, read by byte ranges (footer first).
pub struct ParquetObject {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
}

fn external(error: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(error))
}

impl AsyncFileReader for ParquetObject {
    fn get_bytes(&mut self, range: std::ops::Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move { self.store.get_range(&self.path, range).await.map_err(external) }.boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<std::ops::Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move { self.store.get_ranges(&self.path, &ranges).await.map_err(external) }.boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            let metadata =
                ParquetMetaDataReader::new().with_arrow_reader_options(options).load_and_finish(self, size).await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}

/// Rows per Parquet row group written by this project.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

/// An open Parquet object; nothing is visible until [`ParquetWriter::finish`].
pub struct ParquetWriter {
    writer: AsyncArrowWriter<BufWriter>,
    url: String,
}

impl ParquetWriter {
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.writer.write(batch).await.map_err(|source| StorageError::Parquet { url: self.url.clone(), source })
    }

    /// Completes the object and returns the number of rows written.
    pub async fn finish(self) -> Result<i64> {
        let url = self.url;
        let metadata = self.writer.close().await.map_err(|source| StorageError::Parquet { url, source })?;
        Ok(metadata.file_metadata().num_rows())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_and_file_urls_name_the_same_place() {
        let dir = tempfile::tempdir().unwrap();
        let by_path = Location::parse(dir.path().to_str().unwrap()).unwrap();
        let by_url = Location::parse(&format!("file://{}", dir.path().display())).unwrap();
        assert_eq!(by_path.path(), by_url.path());
        assert_eq!(by_path.join("users").url(), format!("file://{}/users", dir.path().display()));
    }

    #[test]
    fn cloud_urls_are_parsed_without_contacting_the_store() {
        let s3 = Location::parse("s3://bucket/world/v1").unwrap();
        assert_eq!(s3.path().as_ref(), "world/v1");
        assert_eq!(s3.url(), "s3://bucket/world/v1");
        let gs = Location::parse("gs://bucket/world").unwrap();
        assert_eq!(gs.join("users").url(), "gs://bucket/world/users");
    }

    #[test]
    fn unknown_schemes_are_rejected_by_name() {
        let err = Location::parse("ftp://host/x").unwrap_err().to_string();
        assert!(err.contains("unsupported scheme \"ftp\""), "{err}");
        let err = Location::parse("s3:///no-bucket").unwrap_err().to_string();
        assert!(err.contains("missing bucket"), "{err}");
    }

    #[tokio::test]
    async fn create_only_put_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let marker = Location::parse(dir.path().to_str().unwrap()).unwrap().join("_SUCCESS");
        marker.write_if_absent("first").await.unwrap();
        let err = marker.write_if_absent("second").await.unwrap_err();
        assert!(matches!(err, StorageError::AlreadyExists { .. }), "{err}");
        assert_eq!(marker.read().await.unwrap(), Bytes::from("first"));
    }
}
