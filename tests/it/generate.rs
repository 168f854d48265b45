//! `generate`: deterministic for a seed, different across seeds, safe to rerun.

use std::collections::BTreeMap;
use std::path::Path;

use audience::world::WorldConfig;
use audience::world::write::{GenerateError, generate};

use crate::helpers::*;

/// Every file under `root` with its bytes, keyed by relative path.
fn snapshot(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let name = path.strip_prefix(root).unwrap().display().to_string();
                files.insert(name, std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

fn config(seed: u64) -> WorldConfig {
    WorldConfig { seed, users: 20_000, impressions: 50_000, ..small_config(seed) }
}

#[tokio::test]
async fn same_seed_gives_byte_identical_tables_and_another_seed_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let [a, b, c] = ["a", "b", "c"].map(|n| dir.path().join(n));
    generate(&location(&a), config(7), false).await.unwrap();
    generate(&location(&b), config(7), false).await.unwrap();
    generate(&location(&c), config(8), false).await.unwrap();
    let (a, b, c) = (snapshot(&a), snapshot(&b), snapshot(&c));
    assert!(a.contains_key("users/part-00000.parquet") && a.contains_key("world.json"), "{:?}", a.keys());
    assert!(a.keys().any(|k| k.starts_with("truth/users/")), "{:?}", a.keys());
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (name, bytes) in &a {
        assert!(bytes == &b[name], "{name} differs between two runs with one seed");
    }
    for table in ["users/part-00000.parquet", "campaigns/part-00000.parquet", "impressions/part-00000.parquet"] {
        assert!(a[table] != c[table], "{table} is the same for seeds 7 and 8");
    }
}

#[tokio::test]
async fn generate_refuses_to_mix_worlds_unless_told_to_overwrite() {
    let (_dir, root) = small_world().await;
    let err = generate(&location(&root), small_config(8), false).await.unwrap_err();
    assert!(matches!(err, GenerateError::NotEmpty { .. }), "{err}");
    assert!(err.to_string().contains("pass --overwrite"), "{err}");

    // Overwrite with a smaller world: no file of the old one may survive.
    let smaller = WorldConfig { users: 100, ..small_config(8) };
    generate(&location(&root), smaller, true).await.unwrap();
    let report = validate(&root).await;
    assert!(report.is_ok(), "{:#?}", report.problems);
    assert_eq!(report.rows[&audience::contract::Table::Users], 100);
}

#[tokio::test]
async fn large_tables_are_split_into_bounded_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("w");
    let rows = audience::world::write::ROWS_PER_FILE + 10;
    let config = WorldConfig { users: 50, impressions: rows, days: 1, ..small_config(3) };
    generate(&location(&root), config, false).await.unwrap();
    let files = table_files(&root, audience::contract::Table::Impressions);
    assert_eq!(files.len(), 2, "{files:?}");
    assert_eq!(validate(&root).await.rows[&audience::contract::Table::Impressions], rows);
}

#[tokio::test]
async fn invalid_sizes_are_all_reported() {
    let dir = tempfile::tempdir().unwrap();
    let config = WorldConfig { users: 0, campaigns: 0, days: 0, ..small_config(1) };
    let err = generate(&location(dir.path()), config, false).await.unwrap_err().to_string();
    assert_eq!(
        err,
        "invalid world settings: users must be at least 1; campaigns must be at least 1; days must be at least 1"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing may be written");
}
