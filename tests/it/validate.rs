//! The data contract's validator: a generated world passes, and each kind of bad
//! input is rejected with a problem that names the table, the column and an
//! example key or file.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Float32Array, Float32Builder, Float64Array, Int64Array, ListBuilder, StringArray,
};
use arrow::datatypes::{Date32Type, Float32Type, Float64Type, Int64Type};
use audience::contract::Table;

use crate::helpers::*;

#[tokio::test]
async fn a_generated_world_passes_with_every_table_counted() {
    let (_dir, root) = small_world().await;
    let report = validate(&root).await;
    assert!(report.is_ok(), "{:#?}", report.problems);
    assert_eq!(report.rows[&Table::Users], 600);
    assert_eq!(report.rows[&Table::Podcasts], 150);
    assert_eq!(report.rows[&Table::Campaigns], 30);
    assert_eq!(report.rows[&Table::Impressions], 3_000);
    assert!(report.rows[&Table::Follows] > 0);
}

#[tokio::test]
async fn missing_required_column_is_named() {
    let (_dir, root) = small_world().await;
    let users = read_table(&root, Table::Users);
    write_table(&root, Table::Users, &without_column(&users, "country"));
    let problem = only_problem(&validate(&root).await, Table::Users, "country");
    assert!(problem.starts_with("users.country: missing required column"), "{problem}");
    assert!(problem.contains("part-00000.parquet"), "{problem}");
}

#[tokio::test]
async fn mistyped_column_names_both_types() {
    let (_dir, root) = small_world().await;
    edit_column(&root, Table::Users, "follows_count", |a| {
        arrow::compute::cast(a, &arrow::datatypes::DataType::Int64).unwrap()
    });
    let problem = only_problem(&validate(&root).await, Table::Users, "follows_count");
    assert!(problem.contains("has type Int64, expected Int32"), "{problem}");
}

#[tokio::test]
async fn null_key_is_rejected_with_its_row() {
    let (_dir, root) = small_world().await;
    edit_column(&root, Table::Users, "user_id", |a| {
        let ids = a.as_primitive::<Int64Type>();
        Arc::new(Int64Array::from_iter(ids.iter().enumerate().map(|(i, v)| if i == 5 { None } else { v })))
    });
    let problem = only_problem(&validate(&root).await, Table::Users, "user_id");
    assert!(problem.starts_with("users.user_id: null in key column"), "{problem}");
    assert!(problem.contains("row 5 of"), "{problem}");
}

#[tokio::test]
async fn duplicate_key_names_the_key() {
    let (_dir, root) = small_world().await;
    let podcasts = read_table(&root, Table::Podcasts);
    let ids = podcasts.column_by_name("podcast_id").unwrap().as_primitive::<Int64Type>().clone();
    let duplicated = ids.value(3);
    edit_column(&root, Table::Podcasts, "podcast_id", |_| {
        Arc::new(Int64Array::from_iter_values(
            ids.values().iter().enumerate().map(|(i, &v)| if i == 9 { duplicated } else { v }),
        ))
    });
    let problem = only_problem(&validate(&root).await, Table::Podcasts, "podcast_id");
    assert_eq!(problem, format!("podcasts.podcast_id: duplicate key, e.g. podcast_id={duplicated}"));
}

#[tokio::test]
async fn nan_and_infinite_features_are_rejected() {
    let (_dir, root) = small_world().await;
    let users = read_table(&root, Table::Users);
    let user = users.column_by_name("user_id").unwrap().as_primitive::<Int64Type>().value(2);
    edit_column(&root, Table::Users, "listening_hours_30d", |a| {
        let hours = a.as_primitive::<Float32Type>();
        let bad = [f32::NAN, f32::INFINITY];
        Arc::new(Float32Array::from_iter_values(
            hours.values().iter().enumerate().map(|(i, &v)| if (2..4).contains(&i) { bad[i - 2] } else { v }),
        ))
    });
    let problem = only_problem(&validate(&root).await, Table::Users, "listening_hours_30d");
    assert!(problem.starts_with("users.listening_hours_30d: NaN or infinite value (2 rows)"), "{problem}");
    assert!(problem.contains(&format!("user_id={user} (value NaN)")), "{problem}");
}

#[tokio::test]
async fn unknown_enum_value_is_quoted() {
    let (_dir, root) = small_world().await;
    edit_column(&root, Table::Campaigns, "kind", |a| {
        let kinds = a.as_string::<i32>();
        Arc::new(StringArray::from_iter_values(
            kinds.iter().enumerate().map(|(i, v)| if i == 0 { "banner" } else { v.unwrap() }),
        ))
    });
    let problem = only_problem(&validate(&root).await, Table::Campaigns, "kind");
    assert!(problem.contains("unknown value (expected one of ad, promotion)"), "{problem}");
    assert!(problem.contains("(value \"banner\")"), "{problem}");
}

/// Sets row `row` of a Float64 campaign column to `value`; returns that row's id.
fn set_campaign_float(root: &std::path::Path, column: &str, row: usize, value: f64) -> String {
    let campaigns = read_table(root, Table::Campaigns);
    let id = campaigns.column_by_name("campaign_id").unwrap().as_string::<i32>().value(row).to_string();
    edit_column(root, Table::Campaigns, column, |a| {
        let values = a.as_primitive::<Float64Type>();
        Arc::new(Float64Array::from_iter(
            values.iter().enumerate().map(|(i, v)| if i == row { Some(value) } else { v }),
        ))
    });
    id
}

#[tokio::test]
async fn negative_budget_is_rejected() {
    let (_dir, root) = small_world().await;
    let id = set_campaign_float(&root, "budget", 4, -50.0);
    let problem = only_problem(&validate(&root).await, Table::Campaigns, "budget");
    assert_eq!(problem, format!("campaigns.budget: negative value, e.g. campaign_id={id} (value -50)"));
}

#[tokio::test]
async fn negative_cpm_is_rejected() {
    let (_dir, root) = small_world().await;
    let id = set_campaign_float(&root, "cpm", 7, -1.5);
    let problem = only_problem(&validate(&root).await, Table::Campaigns, "cpm");
    assert_eq!(problem, format!("campaigns.cpm: negative value, e.g. campaign_id={id} (value -1.5)"));
}

#[tokio::test]
async fn start_after_end_is_rejected() {
    let (_dir, root) = small_world().await;
    let campaigns = read_table(&root, Table::Campaigns);
    let id = campaigns.column_by_name("campaign_id").unwrap().as_string::<i32>().value(1).to_string();
    let end = campaigns.column_by_name("end_date").unwrap().as_primitive::<Date32Type>().value(1);
    edit_column(&root, Table::Campaigns, "start_date", |a| {
        let starts = a.as_primitive::<Date32Type>();
        let edited: Vec<i32> =
            starts.values().iter().enumerate().map(|(i, &d)| if i == 1 { end + 3 } else { d }).collect();
        Arc::new(arrow::array::Date32Array::from(edited))
    });
    let problem = only_problem(&validate(&root).await, Table::Campaigns, "start_date");
    assert!(
        problem.starts_with(&format!("campaigns.start_date: start_date after end_date, e.g. campaign_id={id}")),
        "{problem}"
    );
}

#[tokio::test]
async fn path_unsafe_campaign_id_is_rejected() {
    let (_dir, root) = small_world().await;
    for bad in ["../x", "a/b", "", &"x".repeat(65)] {
        edit_column(&root, Table::Campaigns, "campaign_id", |a| {
            let ids = a.as_string::<i32>();
            Arc::new(StringArray::from_iter_values(
                ids.iter().enumerate().map(|(i, v)| if i == 2 { bad } else { v.unwrap() }),
            ))
        });
        let report = validate(&root).await;
        let problem = only_problem(&report, Table::Campaigns, "campaign_id");
        assert!(problem.contains("does not match ^[A-Za-z0-9_-]{1,64}$"), "{problem}");
        assert!(problem.contains(&format!("(value {bad:?})")), "{problem}");
        // Put a valid id back for the next case.
        edit_column(&root, Table::Campaigns, "campaign_id", |a| {
            let ids = a.as_string::<i32>();
            Arc::new(StringArray::from_iter_values(
                ids.iter().enumerate().map(|(i, v)| if i == 2 { "fixed-id" } else { v.unwrap() }),
            ))
        });
    }
}

#[tokio::test]
async fn genre_affinity_of_the_wrong_length_names_the_user() {
    let (_dir, root) = small_world().await;
    let users = read_table(&root, Table::Users);
    let user = users.column_by_name("user_id").unwrap().as_primitive::<Int64Type>().value(10);
    edit_column(&root, Table::Users, "genre_affinity", |a| {
        let vectors = a.as_fixed_size_list();
        let mut builder = ListBuilder::new(Float32Builder::new());
        for row in 0..vectors.len() {
            let values = vectors.value(row);
            let values = values.as_primitive::<Float32Type>();
            let keep = if row == 10 { values.len() - 1 } else { values.len() };
            builder.values().append_slice(&values.values()[..keep]);
            builder.append(true);
        }
        Arc::new(builder.finish()) as ArrayRef
    });
    let problem = only_problem(&validate(&root).await, Table::Users, "genre_affinity");
    assert_eq!(
        problem,
        format!(
            "users.genre_affinity: wrong length (expected 16, one value per genre), e.g. user_id={user} (length 15)"
        )
    );
}

#[tokio::test]
async fn empty_required_table_is_rejected() {
    let (_dir, root) = small_world().await;
    let campaigns = read_table(&root, Table::Campaigns);
    write_table(&root, Table::Campaigns, &campaigns.slice(0, 0));
    let report = validate(&root).await;
    assert_eq!(only_problem(&report, Table::Campaigns, ""), "campaigns: table is empty (0 rows)");
}

#[tokio::test]
async fn missing_table_names_where_it_looked() {
    let (_dir, root) = small_world().await;
    std::fs::remove_dir_all(root.join("podcasts")).unwrap();
    let problem = only_problem(&validate(&root).await, Table::Podcasts, "");
    assert!(problem.starts_with("podcasts: no data files under file://"), "{problem}");
}

#[tokio::test]
async fn corrupt_parquet_file_is_named() {
    let (_dir, root) = small_world().await;
    let file = table_files(&root, Table::Users).remove(0);
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes.truncate(middle);
    std::fs::write(&file, bytes).unwrap();
    let problem = only_problem(&validate(&root).await, Table::Users, "");
    assert!(problem.contains("not a readable Parquet file"), "{problem}");
    assert!(problem.contains(&file.display().to_string()), "{problem}");
}

#[tokio::test]
async fn non_parquet_file_is_named_but_markers_are_ignored() {
    let (_dir, root) = small_world().await;
    let stray = root.join("follows").join("export.csv");
    std::fs::write(&stray, "user_id,podcast_id\n1,2\n").unwrap();
    std::fs::write(root.join("follows").join("_SUCCESS"), "").unwrap();
    std::fs::write(root.join("follows").join(".part-00000.parquet.crc"), "x").unwrap();
    let report = validate(&root).await;
    let problem = only_problem(&report, Table::Follows, "");
    assert!(problem.contains("not a readable Parquet file"), "{problem}");
    assert!(problem.contains("export.csv"), "{problem}");
}

#[tokio::test]
async fn campaign_naming_an_unknown_podcast_is_rejected() {
    let (_dir, root) = small_world().await;
    let campaigns = read_table(&root, Table::Campaigns);
    let id = campaigns.column_by_name("campaign_id").unwrap().as_string::<i32>().value(0).to_string();
    edit_column(&root, Table::Campaigns, "podcast_id", |a| {
        let ids = a.as_primitive::<Int64Type>();
        Arc::new(Int64Array::from_iter_values(
            ids.values().iter().enumerate().map(|(i, &v)| if i == 0 { 999_999 } else { v }),
        ))
    });
    let problem = only_problem(&validate(&root).await, Table::Campaigns, "podcast_id");
    assert_eq!(
        problem,
        format!(
            "campaigns.podcast_id: unknown podcast (not in the podcasts table), e.g. campaign_id={id} (podcast_id 999999)"
        )
    );
}

#[tokio::test]
async fn every_problem_is_listed_at_once() {
    let (_dir, root) = small_world().await;
    set_campaign_float(&root, "cpm", 0, f64::NAN);
    let users = read_table(&root, Table::Users);
    write_table(&root, Table::Users, &without_column(&users, "platform"));
    let report = validate(&root).await;
    let described: Vec<String> = report.problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(report.problems.len(), 2, "{described:#?}");
    assert!(described[0].starts_with("users.platform: missing required column"), "{described:#?}");
    assert!(described[1].starts_with("campaigns.cpm: NaN or infinite value"), "{described:#?}");
}

#[tokio::test]
async fn extra_columns_and_other_string_encodings_are_accepted() {
    let (_dir, root) = small_world().await;
    let users = read_table(&root, Table::Users);
    let country =
        arrow::compute::cast(users.column_by_name("country").unwrap(), &arrow::datatypes::DataType::LargeUtf8).unwrap();
    let extra = Arc::new(Int64Array::from_iter_values(0..users.num_rows() as i64)) as ArrayRef;
    let mut batch = with_column(&users, "country", country);
    let mut fields: Vec<_> = batch.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(arrow::datatypes::Field::new("favourite_number", arrow::datatypes::DataType::Int64, false));
    let mut columns = batch.columns().to_vec();
    columns.push(extra);
    batch = arrow::array::RecordBatch::try_new(Arc::new(arrow::datatypes::Schema::new(fields)), columns).unwrap();
    write_table(&root, Table::Users, &batch);
    let report = validate(&root).await;
    assert!(report.is_ok(), "{:#?}", report.problems);
}
