//! The house's rules, checked on the source (docs/design.md §2): every path
//! into the crate (`use crate::…`, `use super::…`, inline `crate::a::b` and
//! `super::x` paths) goes from a module to one on a lower layer or its own,
//! and no set of files imports itself round in a circle. The layer order is
//! written once, here; the picture in docs/design.md is drawn from it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The crate's top-level modules, lowest layer first. A module may import
/// only from its own layer's modules or lower ones.
const LAYERS: &[&[&str]] = &[
    // Utilities with no crate imports: exit codes, hashing, timers, progress bars, failpoints.
    &["exit_code", "hashing", "measure", "progress", "failpoint"],
    &["storage"],
    &["contract"],
    // DataFusion sessions over a root; HTML pages and figures.
    &["tables", "report"],
    // The synthetic world; the allocation solvers (pure).
    &["world", "allocate"],
    // The model may read its input tables through DataFusion (via `tables`) and
    // knows nothing of scoring, engines, the job or the run layout.
    &["model"],
    &["scoring"],
    // Audiences from scored pools, as the job, the A/B and the benchmarks choose them.
    &["choose"],
    &["cluster"],
    &["job"],
    &["ab"],
    &["bench"],
    // The top-level error over every layer; this file's own test.
    &["error", "layers"],
    // The command line: flags, logging, the async runtime, exit codes.
    &["cli"],
];

/// External crates a module must not use, with the reason.
const FORBIDDEN_CRATES: &[(&str, &[&str], &str)] = &[
    ("allocate", &["datafusion", "object_store", "tch", "ballista", "parquet"], "the solvers are pure"),
    ("model", &["ballista", "ballista_core"], "the model knows nothing of the engines"),
    ("contract", &["tch", "ballista"], "the contract is the floor"),
    ("report", &["datafusion", "tch", "object_store"], "pages are drawn from values"),
];

/// One source file: its module path (`["job", "run"]`) and its text with
/// comments and literals blanked out.
struct File {
    module: Vec<String>,
    is_mod_root: bool,
    code: String,
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// Blanks comments, string and char literals, so that a path written in a
/// doc comment or a message is not taken for an import.
fn strip(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && !chars.get(i.wrapping_sub(1)).is_some_and(|p| p.is_alphanumeric() || *p == '_')
        {
            // A raw string r"…" or r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= chars.len() {
                    break;
                }
                if chars[j] == '"' && (0..hashes).all(|k| chars.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' && (chars.get(i + 2) == Some(&'\'') || next == Some('\\')) {
            // A char literal ('x' or '\n', '\u{..}'); a lifetime has no closing quote.
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("' '");
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Expands a use tree (`crate::a::{b, c::{d, e}}`) into its paths.
fn expand(tree: &str) -> Vec<String> {
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    let Some(open) = tree.find('{') else {
        return vec![tree.split(" as ").next().unwrap_or(&tree).to_string()];
    };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.len().saturating_sub(1)];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts.into_iter().filter(|p| !p.is_empty()).flat_map(|p| expand(&format!("{prefix}{p}"))).collect()
}

/// Every path a file names into the crate, resolved to absolute segments
/// (`["job", "run", "JobError"]`), and the external crates it names in `use`.
fn paths(file: &File) -> (Vec<Vec<String>>, BTreeSet<String>) {
    let mut found = Vec::new();
    let mut external = BTreeSet::new();
    let parent = if file.is_mod_root {
        file.module.clone()
    } else {
        file.module[..file.module.len().saturating_sub(1)].to_vec()
    };
    let resolve = |path: &str| -> Option<Vec<String>> {
        let segments: Vec<String> = path.split("::").map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
        let (mut base, rest) = match segments.first().map(String::as_str) {
            Some("crate") => (Vec::new(), &segments[1..]),
            Some("self") => (file.module.clone(), &segments[1..]),
            Some("super") => {
                let mut base = parent.clone();
                let mut rest = &segments[1..];
                while rest.first().map(String::as_str) == Some("super") {
                    base.pop();
                    rest = &rest[1..];
                }
                // `super` in a `mod tests` inside a file names the file itself.
                (base, rest)
            }
            _ => return None,
        };
        base.extend(rest.iter().cloned());
        Some(base)
    };
    // `use` statements, braces expanded.
    let mut rest = file.code.as_str();
    let mut outside_uses = String::new();
    while let Some(at) = find_word(rest, "use") {
        outside_uses.push_str(&rest[..at]);
        let after = &rest[at + 3..];
        let end = after.find(';').unwrap_or(after.len());
        for path in expand(&after[..end]) {
            match resolve(&path) {
                Some(resolved) => found.push(resolved),
                None => {
                    if let Some(first) = path.split("::").next() {
                        external.insert(first.trim_start_matches("::").to_string());
                    }
                }
            }
        }
        rest = &after[(end + 1).min(after.len())..];
    }
    outside_uses.push_str(rest);
    // Inline paths: `crate::a::b`, `super::x`.
    let bytes = outside_uses.as_bytes();
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(at) = outside_uses[from..].find(start).map(|i| i + from) {
            from = at + start.len();
            if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_' || bytes[at - 1] == b':') {
                continue;
            }
            let end = outside_uses[at..]
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .map_or(outside_uses.len(), |e| e + at);
            if let Some(resolved) = resolve(outside_uses[at..end].trim_end_matches(':')) {
                found.push(resolved);
            }
        }
    }
    (found, external)
}

/// The byte offset of `word` as a whole word at the start of a statement.
fn find_word(text: &str, word: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(at) = text[from..].find(word).map(|i| i + from) {
        let before = at.checked_sub(1).map(|i| bytes[i]);
        let after = bytes.get(at + word.len()).copied();
        let word_start = before.is_none_or(|b| !(b.is_ascii_alphanumeric() || b == b'_' || b == b':'));
        if word_start && after.is_some_and(|b| b.is_ascii_whitespace()) {
            return Some(at);
        }
        from = at + word.len();
    }
    None
}

fn read_files(dir: &Path, module: &[String], files: &mut Vec<File>) {
    let mut entries: Vec<_> =
        std::fs::read_dir(dir).expect("src/ readable").map(|e| e.expect("entry").path()).collect();
    entries.sort();
    for path in entries {
        let name = path.file_stem().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        if path.is_dir() {
            let mut child = module.to_vec();
            child.push(name);
            read_files(&path, &child, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let is_mod_root = name == "mod" || name == "lib" || name == "main";
            let mut file_module = module.to_vec();
            if !is_mod_root {
                file_module.push(name);
            }
            let code = strip(&std::fs::read_to_string(&path).expect("source readable"));
            files.push(File { module: file_module, is_mod_root, code });
        }
    }
}

/// The library's files (the binary's `cli` is above everything and not checked).
fn library() -> Vec<File> {
    let mut files = Vec::new();
    read_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &[], &mut files);
    files.retain(|f| {
        f.module.first().is_some_and(|m| m != "cli") && !(f.module.is_empty() && f.code.contains("fn main("))
    });
    files
}

/// Resolves a path to the file that defines what it names: the longest
/// prefix that is a module, followed through the module root's `pub use`
/// re-exports of its children.
fn target(
    path: &[String],
    modules: &BTreeSet<Vec<String>>,
    reexports: &BTreeMap<Vec<String>, BTreeMap<String, Vec<String>>>,
) -> Vec<String> {
    let mut len = path.len();
    while len > 0 && !modules.contains(&path[..len].to_vec()) {
        len -= 1;
    }
    let module = path[..len].to_vec();
    if let (Some(name), Some(names)) = (path.get(len), reexports.get(&module))
        && let Some(child) = names.get(name)
    {
        return child.clone();
    }
    module
}

fn layer_violations(files: &[File]) -> Vec<String> {
    let mut problems = BTreeSet::new();
    for file in files {
        let Some(own) = file.module.first() else { continue };
        let own_layer =
            layer_of(own).unwrap_or_else(|| panic!("module `{own}` is in no layer: add it to LAYERS in src/layers.rs"));
        let (found, external) = paths(file);
        for path in found {
            let Some(to) = path.first() else { continue };
            if let Some(to_layer) = layer_of(to)
                && to_layer > own_layer
            {
                problems.insert(format!(
                    "{} imports {} (layer {to_layer} above its own {own_layer})",
                    file.module.join("::"),
                    path.join("::")
                ));
            }
        }
        for (module, crates, why) in FORBIDDEN_CRATES {
            for krate in crates.iter().filter(|k| own == module && external.contains(**k)) {
                problems.insert(format!("{} uses the `{krate}` crate ({why})", file.module.join("::")));
            }
        }
    }
    problems.into_iter().collect()
}

/// Circles of files importing each other, one line per circle. A module
/// root's `pub use` of its own children is its face, not a dependency.
fn cycles(files: &[File]) -> Vec<String> {
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| f.module.clone()).collect();
    let mut reexports: BTreeMap<Vec<String>, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for file in files.iter().filter(|f| f.is_mod_root) {
        let mut rest = file.code.as_str();
        while let Some(at) = rest.find("pub use ") {
            let after = &rest[at + 8..];
            let end = after.find(';').unwrap_or(after.len());
            for path in expand(&after[..end]) {
                let segments: Vec<String> = path.split("::").map(str::to_string).collect();
                let segments =
                    if segments.first().is_some_and(|s| s == "self") { segments[1..].to_vec() } else { segments };
                if let (Some(child), Some(name)) = (segments.first(), segments.last()) {
                    let mut child_module = file.module.clone();
                    child_module.push(child.clone());
                    if segments.len() > 1 && modules.contains(&child_module) {
                        let name = name.split(" as ").last().unwrap_or(name).to_string();
                        reexports.entry(file.module.clone()).or_default().insert(name, child_module);
                    }
                }
            }
            rest = &after[end.min(after.len())..];
        }
    }
    let mut graph: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for file in files {
        let (found, _) = paths(file);
        let edges = graph.entry(file.module.clone()).or_default();
        for path in found {
            let to = target(&path, &modules, &reexports);
            let own_child = file.is_mod_root && to.len() > file.module.len() && to.starts_with(&file.module);
            if to != file.module && !own_child && !to.is_empty() {
                edges.insert(to);
            }
        }
    }
    circles(&graph)
}

/// The strongly connected components of two or more files (Tarjan), each
/// a circle of imports.
fn circles(graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<String> {
    struct Tarjan<'a> {
        graph: &'a BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        index: BTreeMap<&'a Vec<String>, usize>,
        low: BTreeMap<&'a Vec<String>, usize>,
        stack: Vec<&'a Vec<String>>,
        on_stack: BTreeSet<&'a Vec<String>>,
        components: Vec<Vec<String>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, node: &'a Vec<String>) {
            let n = self.index.len();
            self.index.insert(node, n);
            self.low.insert(node, n);
            self.stack.push(node);
            self.on_stack.insert(node);
            for next in self.graph.get(node).into_iter().flatten() {
                if !self.graph.contains_key(next) {
                    continue;
                }
                if !self.index.contains_key(next) {
                    self.visit(next);
                    let low = self.low[node].min(self.low[next]);
                    self.low.insert(node, low);
                } else if self.on_stack.contains(next) {
                    let low = self.low[node].min(self.index[next]);
                    self.low.insert(node, low);
                }
            }
            if self.low[node] == self.index[node] {
                let mut component = Vec::new();
                while let Some(top) = self.stack.pop() {
                    self.on_stack.remove(top);
                    component.push(top.join("::"));
                    if top == node {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.components.push(component);
                }
            }
        }
    }
    let mut tarjan = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        components: Vec::new(),
    };
    for node in graph.keys() {
        if !tarjan.index.contains_key(node) {
            tarjan.visit(node);
        }
    }
    tarjan.components.into_iter().map(|c| c.join(" ↔ ")).collect()
}

#[test]
fn no_module_imports_from_a_higher_layer() {
    let problems = layer_violations(&library());
    assert!(problems.is_empty(), "imports running up the layers (src/layers.rs):\n{}", problems.join("\n"));
}

#[test]
fn no_files_import_each_other_in_a_circle() {
    let circles = cycles(&library());
    assert!(circles.is_empty(), "import circles:\n{}", circles.join("\n"));
}

#[test]
fn the_parser_finds_every_kind_of_path() {
    let file = File {
        module: vec!["scoring".into(), "bench".into()],
        is_mod_root: false,
        code: strip(
            "use super::{pool::Candidate, score};\nuse crate::job::{self, config::JobConfig};\n// crate::ab::not_this\nfn f() { let s = \"crate::ab::nor_this\"; crate::ab::run(); super::super::world::x(); }\nuse tch::Tensor;",
        ),
    };
    let (found, external) = paths(&file);
    let found: Vec<String> = found.iter().map(|p| p.join("::")).collect();
    for expected in
        ["scoring::pool::Candidate", "scoring::score", "job::self", "job::config::JobConfig", "ab::run", "world::x"]
    {
        assert!(found.contains(&expected.to_string()), "{expected} not in {found:?}");
    }
    assert!(!found.iter().any(|p| p.contains("not_this") || p.contains("nor_this")), "{found:?}");
    assert!(external.contains("tch"));
    let problems = layer_violations(&[file]);
    assert!(problems.iter().any(|p| p.contains("imports ab::run")), "{problems:?}");
}
