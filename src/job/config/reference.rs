//! The config reference (docs/config.md), generated from the config types:
//! each section's struct and its fields' doc comments (read from their
//! source), the defaults as the config serialises them, the sections'
//! `RANGES`, and the values of each enum setting with their doc comments. A
//! test fails when the checked-in page differs from the code;
//! `AUDIENCE_UPDATE_DOCS=1 cargo test --lib reference` rewrites it.

use std::path::Path;

use super::{ConfigFile, numeric_keys};

/// The source files that declare the config's types.
const SOURCES: [&str; 5] = [
    "src/job/config/mod.rs",
    "src/job/config/sections.rs",
    "src/storage/mod.rs",
    "src/allocate/mod.rs",
    "src/model/fused/mod.rs",
];

/// One field of a struct as declared: its doc comment, name and type.
struct Field {
    doc: String,
    name: String,
    kind: String,
}

/// The config reference as Markdown.
pub fn reference() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let source: String =
        SOURCES.iter().map(|file| std::fs::read_to_string(root.join(file)).expect("config source readable")).collect();
    let defaults = toml::Value::try_from(ConfigFile::with_defaults(String::new(), String::new(), String::new()))
        .expect("the default config serialises");
    let ranges = numeric_keys();
    let mut out = String::from(
        "# Config reference\n\n\
         Generated from the config types by `AUDIENCE_UPDATE_DOCS=1 cargo test --lib reference`; a test\n\
         fails when this page differs from the code. How to write a config (the examples, `${VAR}`\n\
         expansion) is in [configs/README.md](../configs/README.md).\n\n\
         Unknown sections and keys are errors. A numeric key outside its accepted range is refused\n\
         when the config is loaded (`audience validate --config`, `run`, `backfill`: exit 2), with\n\
         the key's name and range.\n",
    );
    for section in fields(&source, "ConfigFile") {
        let required = !declared_with_default(&source, "ConfigFile", &section.name);
        out += &format!(
            "\n## `[{}]` ({})\n\n{}\n\n",
            section.name,
            if required { "required" } else { "optional" },
            section.doc
        );
        out += "| key | accepted | default | meaning |\n|---|---|---|---|\n";
        for field in fields(&source, &section.kind) {
            let key = format!("{}.{}", section.name, field.name);
            let range = ranges.iter().find(|(k, _, _)| *k == key);
            let values = variants(&source, &field.kind);
            let accepted = match (range, values.is_empty()) {
                (Some((_, range, _)), _) => range.clone(),
                (None, false) => values.iter().map(|(v, _)| format!("`{v}`")).collect::<Vec<_>>().join(", "),
                (None, true) => kind_name(&field.kind).to_string(),
            };
            let default = match defaults.get(&section.name).and_then(|s| s.get(&field.name)) {
                Some(value) if !(required && value.as_str() == Some("")) => format!("`{value}`"),
                Some(_) => "required".to_string(),
                None => "none".to_string(),
            };
            let mut meaning = field.doc.clone();
            if let Some((_, _, why)) = range {
                meaning = format!("{meaning} Range: {why}.");
            }
            for (value, doc) in &values {
                meaning += &format!(" `{value}`: {doc}");
            }
            out += &format!("| `{}` | {accepted} | {default} | {} |\n", field.name, meaning.trim().replace('|', "\\|"));
        }
    }
    out
}

/// The body of `pub struct name { … }` or `pub enum name { … }` in `source`.
fn body<'a>(source: &'a str, item: &str, name: &str) -> &'a str {
    let start = source
        .find(&format!("pub {item} {name} {{"))
        .unwrap_or_else(|| panic!("no `pub {item} {name}` in the config's sources"));
    let open = start + source[start..].find('{').expect("a brace");
    let close = open + source[open..].find("\n}").expect("the item's end");
    &source[open + 1..close]
}

/// The lines just above `pub struct name` or `pub enum name`: its attributes.
fn attributes<'a>(source: &'a str, item: &str, name: &str) -> Vec<&'a str> {
    let start = source.find(&format!("pub {item} {name} {{")).unwrap_or(0);
    source[..start].lines().rev().take_while(|l| l.starts_with("#[") || l.starts_with("///")).collect()
}

/// The fields of struct `name`, each with its doc comment on one line.
fn fields(source: &str, name: &str) -> Vec<Field> {
    let mut found = Vec::new();
    let mut doc = Vec::new();
    for line in body(source, "struct", name).lines().map(str::trim) {
        if let Some(text) = line.strip_prefix("///") {
            doc.push(text.trim());
        } else if let Some(field) = line.strip_prefix("pub ") {
            let (name, kind) = field.split_once(':').expect("a field `name: Type`");
            found.push(Field {
                doc: doc.join(" "),
                name: name.trim().to_string(),
                kind: kind.trim().trim_end_matches(',').to_string(),
            });
            doc.clear();
        }
    }
    found
}

/// Whether field `field` of struct `name` has a serde default (`#[serde(default)]`
/// on it or on the struct).
fn declared_with_default(source: &str, name: &str, field: &str) -> bool {
    let body = body(source, "struct", name);
    let at = body.find(&format!("pub {field}:")).expect("the field");
    let above: Vec<&str> =
        body[..at].lines().rev().skip(1).map(str::trim).take_while(|l| !l.starts_with("pub ")).collect();
    above.iter().any(|l| l.starts_with("#[serde(default"))
        || attributes(source, "struct", name).iter().any(|l| l.contains("serde(") && l.contains("default"))
}

/// The values of enum `kind` as a config writes them, with their doc
/// comments; empty when `kind` is not an enum of the config's sources.
fn variants(source: &str, kind: &str) -> Vec<(String, String)> {
    if !source.contains(&format!("pub enum {kind} {{")) {
        return Vec::new();
    }
    let rename =
        attributes(source, "enum", kind).iter().find_map(|l| l.split("rename_all = \"").nth(1)?.split('"').next());
    let mut found = Vec::new();
    let mut doc = Vec::new();
    for line in body(source, "enum", kind).lines().map(str::trim) {
        if let Some(text) = line.strip_prefix("///") {
            doc.push(text.trim());
        } else if line.starts_with("#[") || line.is_empty() {
            continue;
        } else {
            let variant = line.trim_end_matches(',');
            let value = match rename {
                Some("lowercase") => variant.to_lowercase(),
                Some("snake_case") => snake_case(variant),
                _ => variant.to_string(),
            };
            found.push((value, doc.join(" ")));
            doc.clear();
        }
    }
    found
}

fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.extend(c.to_lowercase());
    }
    out
}

/// A Rust field type as a config writes it.
fn kind_name(kind: &str) -> &'static str {
    match kind {
        "bool" => "`true`, `false`",
        "String" | "Option<String>" => "string",
        "f64" | "f32" => "number",
        k if k.starts_with("BTreeMap") => "table of strings",
        k if k.starts_with('u') || k.starts_with('i') => "integer",
        _ => "see the meaning",
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_config_reference_is_generated_from_the_types() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/config.md");
        let generated = super::reference();
        if std::env::var_os("AUDIENCE_UPDATE_DOCS").is_some() {
            std::fs::write(path, &generated).unwrap();
        }
        let checked_in = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            checked_in == generated,
            "docs/config.md differs from the config types; regenerate it with AUDIENCE_UPDATE_DOCS=1 cargo test --lib reference"
        );
        for key in [
            "## `[allocation]` (optional)",
            "| `privacy_floor` | 1–1000000000 | `100` |",
            "`bf16`: ",
            "| `timeout_seconds` | 10–604800 |",
        ] {
            assert!(generated.contains(key), "{key} missing from the reference:\n{generated}");
        }
    }
}
