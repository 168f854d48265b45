//! The job's storage scenarios on real object-store servers: an S3-compatible
//! server (moto) and Azurite, both started on 127.0.0.1 by `scripts/test.sh`
//! (`scripts/test-servers.sh`), which exports their endpoints. Each test creates
//! its own bucket or container. Without the servers the tests say "skipped",
//! unless `AUDIENCE_REQUIRE_TEST_SERVERS=1` (set by `scripts/test.sh`) makes
//! that a failure.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::process::{Command, Output, Stdio};

use audience::model::train::TrainOptions;
use audience::storage::{Location, StorageError, StorageOptions};
use audience::world::write::generate;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::helpers::{committed_audiences, learnable_config};

/// A secret the S3 runs carry in their environment; it must not reach any output.
const S3_SECRET: &str = "audience-test-secret-0f3c9e";
/// Azurite's well-known development account.
const AZURITE_ACCOUNT: &str = "devstoreaccount1";
const AZURITE_KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

#[derive(Clone, Copy, Debug)]
pub(crate) enum Backend {
    S3,
    Azure,
}

/// A fresh bucket (container) on one of the test servers.
pub(crate) struct Bucket {
    backend: Backend,
    name: String,
    /// `[storage.*]` settings for the job config (no credentials).
    config_options: StorageOptions,
    /// The same plus credentials, for this process's own reads and writes.
    client_options: StorageOptions,
    /// Credentials for the job's process, passed in its environment.
    pub(crate) env: Vec<(&'static str, String)>,
}

impl Bucket {
    /// Creates a bucket named after `scenario`, or returns `None` (skipped) when
    /// the servers are not running.
    pub(crate) fn create(backend: Backend, scenario: &str) -> Option<Bucket> {
        let variable = match backend {
            Backend::S3 => "AUDIENCE_TEST_S3_ENDPOINT",
            Backend::Azure => "AZURITE_BLOB_STORAGE_URL",
        };
        let Ok(endpoint) = std::env::var(variable) else {
            assert!(
                std::env::var("AUDIENCE_REQUIRE_TEST_SERVERS").is_err(),
                "{variable} is not set: scripts/test-servers.sh did not start the {backend:?} server"
            );
            eprintln!("skipped: {variable} is not set (run scripts/test.sh to start the storage servers)");
            return None;
        };
        let unique =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() % 1_000_000_000;
        let name = format!("{scenario}-{}-{unique}", std::process::id());
        let endpoint = endpoint.trim_end_matches('/').to_string();
        let mut config_options = StorageOptions::default();
        let mut client_options = StorageOptions::default();
        let mut env = Vec::new();
        match backend {
            Backend::S3 => {
                http_put(&format!("{endpoint}/{name}"), &[]);
                for (k, v) in [
                    ("endpoint", endpoint.as_str()),
                    ("region", "us-east-1"),
                    ("allow_http", "true"),
                    ("virtual_hosted_style_request", "false"),
                ] {
                    config_options.s3.insert(k.into(), v.into());
                }
                client_options.s3 = config_options.s3.clone();
                client_options.s3.insert("access_key_id".into(), "audience-test".into());
                client_options.s3.insert("secret_access_key".into(), S3_SECRET.into());
                env.push(("AWS_ACCESS_KEY_ID", "audience-test".to_string()));
                env.push(("AWS_SECRET_ACCESS_KEY", S3_SECRET.to_string()));
            }
            Backend::Azure => {
                create_azurite_container(&endpoint, &name);
                config_options.azure.insert("use_emulator".into(), "true".into());
                client_options.azure = config_options.azure.clone();
            }
        }
        Some(Bucket { backend, name, config_options, client_options, env })
    }

    pub(crate) fn url(&self, child: &str) -> String {
        let scheme = match self.backend {
            Backend::S3 => "s3",
            Backend::Azure => "az",
        };
        format!("{scheme}://{}/{child}", self.name)
    }

    pub(crate) fn location(&self, child: &str) -> Location {
        Location::parse_with(&self.url(child), &self.client_options).unwrap()
    }

    /// The job config's `[storage.*]` table for this bucket.
    fn storage_toml(&self) -> String {
        let (table, options) = match self.backend {
            Backend::S3 => ("s3", &self.config_options.s3),
            Backend::Azure => ("azure", &self.config_options.azure),
        };
        let mut text = format!("[storage.{table}]\n");
        for (k, v) in options {
            text.push_str(&format!("{k} = \"{v}\"\n"));
        }
        text
    }
}

/// A plain HTTP PUT with an empty body to a server on 127.0.0.1; panics unless 2xx.
fn http_put(url: &str, headers: &[(&str, String)]) {
    let url = url::Url::parse(url).unwrap();
    let host = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap());
    let target = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    let mut request = format!("PUT {target} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    let mut stream = std::net::TcpStream::connect(&host).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split_whitespace().nth(1).unwrap_or("");
    assert!(status.starts_with('2'), "PUT {url} answered: {response}");
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new().chain_update(pad(0x36)).chain_update(message).finalize();
    Sha256::new().chain_update(pad(0x5c)).chain_update(inner).finalize().to_vec()
}

/// Creates a container with a SharedKey-signed request (object_store cannot).
fn create_azurite_container(endpoint: &str, name: &str) {
    let date = chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    let version = "2021-08-06";
    let string_to_sign = format!(
        "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{AZURITE_ACCOUNT}/{AZURITE_ACCOUNT}/{name}\nrestype:container"
    );
    let key = base64::engine::general_purpose::STANDARD.decode(AZURITE_KEY).unwrap();
    let signature = base64::engine::general_purpose::STANDARD.encode(hmac_sha256(&key, string_to_sign.as_bytes()));
    http_put(
        &format!("{endpoint}/{AZURITE_ACCOUNT}/{name}?restype=container"),
        &[
            ("x-ms-date", date),
            ("x-ms-version", version.to_string()),
            ("Authorization", format!("SharedKey {AZURITE_ACCOUNT}:{signature}")),
        ],
    );
}

/// Generates the learnable world and trains a one-epoch model straight into the
/// bucket (DataFusion reads the training data from the server).
pub(crate) async fn seed(bucket: &Bucket) {
    generate(&bucket.location("world"), learnable_config(), false).await.unwrap();
    let options = TrainOptions { max_epochs: 1, validation_days: 2, test_days: 2, ..TrainOptions::default() };
    crate::helpers::train(&bucket.location("world"), &bucket.location("model"), &options).await;
}

fn write_config(dir: &std::path::Path, bucket: &Bucket, output: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{}.toml", output.replace(['/', ':'], "_")));
    let text = format!(
        "[inputs]\nroot = \"{}\"\n[model]\nuri = \"{}\"\n[output]\nroot = \"{output}\"\n{}",
        bucket.url("world"),
        bucket.url("model"),
        bucket.storage_toml()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn run_command(bucket: &Bucket, config: &std::path::Path) -> Command {
    let date = learnable_config().run_date.to_string();
    let mut command = Command::new(env!("CARGO_BIN_EXE_audience"));
    command
        .args(["run", "--config", config.to_str().unwrap(), "--date", &date])
        .env("RUST_LOG", "debug")
        .env_remove("AWS_ENDPOINT")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in &bucket.env {
        command.env(k, v);
    }
    command
}

fn run(bucket: &Bucket, config: &std::path::Path) -> Output {
    run_command(bucket, config).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The committed run of the date under `output`: its id and every audience
/// row (costs as bits, so rows compare exactly).
async fn committed(output: &Location) -> (String, BTreeSet<(String, i64, u64)>) {
    let (run_id, rows) = committed_audiences(output, learnable_config().run_date).await;
    (run_id, rows.into_iter().map(|(campaign, user, cost)| (campaign, user, cost.to_bits())).collect())
}

/// The `run=` directories of the date under `output`.
async fn run_dirs(output: &Location) -> BTreeSet<String> {
    let date_dir = output.join(&format!("dt={}", learnable_config().run_date));
    date_dir
        .list()
        .await
        .unwrap()
        .iter()
        .filter_map(|o| o.location.parts().map(|p| p.as_ref().to_string()).find(|p| p.starts_with("run=")))
        .collect()
}

/// Full run, idempotent rerun, identical to a run with local output, no secret
/// in any output, and the store's create-only put really refuses an overwrite.
async fn full_run_and_rerun(backend: Backend) {
    let Some(bucket) = Bucket::create(backend, "run") else { return };
    seed(&bucket).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &bucket, &bucket.url("audiences"));

    let first = run(&bucket, &config);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    let manifest_url = text(&first.stdout).trim().to_string();
    assert!(manifest_url.starts_with(&bucket.url("audiences/dt=")), "{manifest_url}");
    let output = bucket.location("audiences");
    let (run_id, rows) = committed(&output).await;
    assert!(!rows.is_empty());
    let manifest =
        bucket.location(manifest_url.split_once(&format!("{}/", bucket.name)).unwrap().1).read().await.unwrap();
    for out in [text(&first.stdout), text(&first.stderr), text(&manifest)] {
        assert!(!out.contains(S3_SECRET), "a credential leaked into the output");
    }

    let again = run(&bucket, &config);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    assert_eq!(text(&again.stdout).trim(), manifest_url, "the rerun finds the committed run");
    assert_eq!(run_dirs(&output).await, BTreeSet::from([format!("run={run_id}")]));

    let local_output = dir.path().join("local-audiences");
    let local_config = write_config(dir.path(), &bucket, local_output.to_str().unwrap());
    let local = run(&bucket, &local_config);
    assert_eq!(local.status.code(), Some(0), "{}", text(&local.stderr));
    let (_, local_rows) = committed(&Location::parse(local_output.to_str().unwrap()).unwrap()).await;
    assert_eq!(rows, local_rows, "the same audiences whichever store holds them");

    let marker = output.join(&format!("dt={}/_SUCCESS", learnable_config().run_date));
    let before = marker.read().await.unwrap();
    assert!(matches!(marker.write_if_absent("overwritten").await, Err(StorageError::AlreadyExists { .. })));
    assert_eq!(marker.read().await.unwrap(), before, "the create-only put left the marker alone");
}

/// `validate --config` opens the inputs and the model with the config's
/// `[storage.*]` settings, as `run` does (it once used the environment only:
/// with the endpoint in the config alone, it looked for the real cloud).
async fn validate_config_uses_the_storage_settings(backend: Backend) {
    let Some(bucket) = Bucket::create(backend, "validate") else { return };
    seed(&bucket).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &bucket, &bucket.url("audiences"));
    let mut command = Command::new(env!("CARGO_BIN_EXE_audience"));
    command.args(["validate", "--config", config.to_str().unwrap()]).env("RUST_LOG", "warn").env_remove("AWS_ENDPOINT");
    for (k, v) in &bucket.env {
        command.env(k, v);
    }
    let out = command.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("users\t3000 rows\tok") && stdout.contains("model\t"), "{stdout}");
}

/// Two runs of one date at once: both succeed and name the one committed run.
async fn concurrent_commit(backend: Backend) {
    let Some(bucket) = Bucket::create(backend, "race") else { return };
    seed(&bucket).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &bucket, &bucket.url("audiences"));
    let (a, b) = (run_command(&bucket, &config).spawn().unwrap(), run_command(&bucket, &config).spawn().unwrap());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert_eq!(a.status.code(), Some(0), "{}", text(&a.stderr));
    assert_eq!(b.status.code(), Some(0), "{}", text(&b.stderr));
    assert_eq!(a.stdout, b.stdout, "both name the one committed manifest");
    let output = bucket.location("audiences");
    let (run_id, _) = committed(&output).await;
    assert_eq!(run_dirs(&output).await, BTreeSet::from([format!("run={run_id}")]));
}

#[tokio::test]
async fn s3_full_run_and_idempotent_rerun() {
    full_run_and_rerun(Backend::S3).await;
}

#[tokio::test]
async fn s3_concurrent_commit() {
    concurrent_commit(Backend::S3).await;
}

#[tokio::test]
async fn s3_validate_config_uses_the_storage_settings() {
    validate_config_uses_the_storage_settings(Backend::S3).await;
}

#[tokio::test]
async fn azurite_validate_config_uses_the_storage_settings() {
    validate_config_uses_the_storage_settings(Backend::Azure).await;
}

#[tokio::test]
async fn azurite_full_run_and_idempotent_rerun() {
    full_run_and_rerun(Backend::Azure).await;
}

#[tokio::test]
async fn azurite_concurrent_commit() {
    concurrent_commit(Backend::Azure).await;
}

/// The cluster engine on S3: scheduler and two executors open the bucket with
/// the job config's `[storage.s3]` (`--storage-config`) and the credentials in
/// their environment; the audiences equal a local-engine run's.
#[tokio::test]
async fn s3_cluster_run_matches_the_local_engine() {
    let Some(bucket) = Bucket::create(Backend::S3, "cluster") else { return };
    seed(&bucket).await;
    let dir = tempfile::tempdir().unwrap();
    let local_config = write_config(dir.path(), &bucket, &bucket.url("local"));
    let local = run(&bucket, &local_config);
    assert_eq!(local.status.code(), Some(0), "{}", text(&local.stderr));

    let storage_config = format!("--storage-config={}", local_config.display());
    let mut cluster = crate::cluster::Cluster::start_with(&[storage_config], &bucket.env);
    cluster.add_executor(&[]);
    cluster.add_executor(&[]);
    let config = write_config(dir.path(), &bucket, &bucket.url("cluster"));
    let engine = format!("[engine]\nkind = \"ballista\"\nscheduler = \"{}\"\npartitions = 2\n", cluster.url());
    std::fs::write(&config, std::fs::read_to_string(&config).unwrap() + &engine).unwrap();
    let on_cluster = run(&bucket, &config);
    assert_eq!(on_cluster.status.code(), Some(0), "{}\n{}", text(&on_cluster.stderr), cluster.logs());
    let (_, rows) = committed(&bucket.location("cluster")).await;
    let (_, local_rows) = committed(&bucket.location("local")).await;
    assert!(!rows.is_empty());
    assert_eq!(rows, local_rows, "cluster and local audiences differ");
    assert!(!cluster.logs().contains(S3_SECRET), "a credential leaked into the cluster's logs");
}
