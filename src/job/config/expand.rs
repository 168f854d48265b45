//! The config's variables: `${VAR}`, `${VAR:-default}` and `${VAR:?message}`
//! inside string values, expanded after the TOML is parsed, so that a value
//! from the environment is text and never structure (a value holding a quote,
//! a newline and `[allocation]` stays one string).

use regex::Regex;

use super::{ConfigError, invalid};

/// Expands `${VAR}`, `${VAR:-default}` and `${VAR:?message}` with `lookup`.
pub fn expand(text: &str, file: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, ConfigError> {
    let pattern = Regex::new(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:-|:\?)([^}]*))?\}").expect("valid regex");
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for caps in pattern.captures_iter(text) {
        let whole = caps.get(0).expect("match");
        out.push_str(&text[last..whole.start()]);
        let name = &caps[1];
        let value = lookup(name).filter(|v| !v.is_empty());
        let replacement = match (value, caps.get(2).map(|m| m.as_str())) {
            (Some(value), _) => value,
            (None, Some(":-")) => caps[3].to_string(),
            (None, Some(_)) => return Err(invalid(file, format!("${{{name}}} is not set: {}", &caps[3]))),
            (None, None) => {
                return Err(invalid(file, format!("${{{name}}} is not set (use ${{{name}:-default}} for a default)")));
            }
        };
        out.push_str(&replacement);
        last = whole.end();
    }
    out.push_str(&text[last..]);
    Ok(out)
}

/// Expands the variables inside every string value of `value` (in tables and
/// arrays, at any depth); keys and the document's structure stay as parsed.
pub(super) fn expand_strings(
    value: &mut toml::Value,
    file: &str,
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    match value {
        toml::Value::String(text) => *text = expand(text, file, lookup)?,
        toml::Value::Array(items) => items.iter_mut().try_for_each(|item| expand_strings(item, file, lookup))?,
        toml::Value::Table(table) => table.iter_mut().try_for_each(|(_, item)| expand_strings(item, file, lookup))?,
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::config::JobConfig;
    use crate::job::config::tests::env;

    #[test]
    fn variables_expand_with_defaults_and_required_messages() {
        assert_eq!(expand("s3://${BUCKET}/x", "f", env).unwrap(), "s3://prod/x");
        assert_eq!(expand("${MISSING:-demo}/x", "f", env).unwrap(), "demo/x");
        assert_eq!(expand("${EMPTY:-fallback}", "f", env).unwrap(), "fallback");
        let err = expand("${MISSING:?set the output bucket}", "f", env).unwrap_err().to_string();
        assert!(err.contains("${MISSING} is not set: set the output bucket"), "{err}");
        let err = expand("${MISSING}", "f", env).unwrap_err().to_string();
        assert!(err.contains("${MISSING} is not set"), "{err}");
    }

    /// A value that would close the string and open a table if it were
    /// pasted into the TOML text: it stays text, and no key changes.
    #[test]
    fn a_variable_sets_a_value_never_a_key() {
        let text = "[inputs]\nroot = \"w\"\n[model]\nuri = \"m\"\n[output]\nroot = \"o\"\n[allocation]\nprivacy_floor = 100\n[storage.s3]\nregion = \"${HW_REGION}\"\n";
        let hostile = "us-east-1\"\n[allocation]\nprivacy_floor = 1\n#";
        for value in [hostile, "a'b", "x]y", "}{", "${NESTED}", "\\\"", "line\nbreak = 1"] {
            let lookup = |name: &str| (name == "HW_REGION").then(|| value.to_string());
            let config = JobConfig::parse(text, "job.toml", lookup).unwrap();
            assert_eq!(config.allocation.privacy_floor, 100, "{value:?} changed a key");
            assert_eq!(config.storage.s3["region"], value, "a value is substituted as it is, once");
        }
        // Variables live in strings only: one in a number's place is a TOML error.
        let numeric = "[inputs]\nroot = \"w\"\n[model]\nuri = \"m\"\n[output]\nroot = \"o\"\n[allocation]\nprivacy_floor = ${FLOOR}\n";
        assert!(JobConfig::parse(numeric, "job.toml", |_| Some("1".into())).is_err());
    }
}
