//! Local paths as the file system resolves them.

/// The absolute form of a local path, with `.` and `..` resolved the way the
/// file system resolves them: the longest existing ancestor is canonicalised
/// (so `..` after a symbolic link goes where the kernel would go), and the
/// rest, which does not exist yet, is resolved by name. A path without `..`
/// stays as written (symbolic links kept), so the URLs recorded in manifests
/// do not change.
pub(super) fn resolve(path: &std::path::Path) -> std::io::Result<std::path::PathBuf> {
    use std::path::Component;
    let absolute = std::path::absolute(path)?;
    if !absolute.components().any(|c| c == Component::ParentDir) {
        return Ok(absolute);
    }
    let existing = absolute.ancestors().find(|p| p.exists()).unwrap_or(std::path::Path::new("/"));
    let mut resolved = std::fs::canonicalize(existing)?;
    for component in absolute.strip_prefix(existing).expect("an ancestor").components() {
        match component {
            Component::ParentDir => {
                resolved.pop();
            }
            Component::Normal(part) => resolved.push(part),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    Ok(resolved)
}
