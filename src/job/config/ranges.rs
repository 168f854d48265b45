//! The accepted range of every numeric config key, checked when a config is
//! loaded (so by `validate --config` too). Each section declares its keys'
//! ranges next to their defaults (`RANGES` on the section's type); a value
//! outside is refused with the key's name, before anything is read or
//! allocated. The ends are wide enough for any real deployment and narrow
//! enough that no value inside can exhaust the machine or overflow.

/// One numeric key of a config section `S`: its name, its accepted range
/// (inclusive; a float must also be finite), how to read it, and why the
/// ends are there.
pub struct Range<S> {
    pub key: &'static str,
    pub min: f64,
    pub max: f64,
    pub value: fn(&S) -> f64,
    pub why: &'static str,
}

impl<S> Range<S> {
    /// The range as the docs and messages write it, e.g. `1–262144`.
    pub fn describe(&self) -> String {
        format!("{}–{}", self.min, self.max)
    }
}

/// Adds a problem to `problems` for each key of `section` outside its range.
pub fn check<S>(section: &S, ranges: &[Range<S>], problems: &mut Vec<String>) {
    for range in ranges {
        let value = (range.value)(section);
        if !(value >= range.min && value <= range.max) {
            // A huge value as a person reads it (1e12, 1e300), not in 13 or 301 digits.
            let shown = if value.abs() >= 1e9 { format!("{value:e}") } else { value.to_string() };
            problems.push(format!("{} = {shown}: must be {} ({})", range.key, range.describe(), range.why));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::job::config::JobConfig;

    const MINIMAL: &str = "[inputs]\nroot = \"w\"\n[model]\nuri = \"m\"\n[output]\nroot = \"o\"\n";

    fn problems(extra: &str) -> String {
        JobConfig::parse(&format!("{MINIMAL}{extra}"), "job.toml", |_| None)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn every_numeric_key_is_checked_against_its_range_by_name() {
        let keys: Vec<&str> = super::super::numeric_keys().iter().map(|(key, _, _)| *key).collect();
        for key in [
            "output.abandoned_after_minutes",
            "allocation.privacy_floor",
            "scoring.batch_rows",
            "scoring.pool_slack",
            "engine.timeout_seconds",
        ] {
            assert!(keys.contains(&key), "{key} has no range");
        }
        let err = problems("[scoring]\nbatch_rows = 1000000000000\n");
        assert!(err.contains("scoring.batch_rows = 1e12: must be 1–262144"), "{err}");
        let err = problems(
            "[allocation]\nprivacy_floor = 0\nmax_ads_per_user = 100000\n[engine]\ntimeout_seconds = 0\npartitions = 1000000\n",
        );
        for key in [
            "allocation.privacy_floor = 0",
            "allocation.max_ads_per_user = 100000",
            "engine.timeout_seconds = 0",
            "engine.partitions = 1000000",
        ] {
            assert!(err.contains(key), "missing {key:?} in {err}");
        }
        let err = problems("[scoring]\npool_slack = 1e300\n");
        assert!(err.contains("scoring.pool_slack = 1e300: must be 1–100"), "{err}");
        assert_eq!(problems(""), "", "the defaults are inside their ranges");
    }
}
