//! Resource figures for benchmarks: peak resident memory of this process.

/// Peak resident set size of this process in bytes (Linux `VmHWM`), if known.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// `peak RSS: N MiB`, or a note that it is unknown on this platform.
pub fn peak_rss_line() -> String {
    match peak_rss_bytes() {
        Some(bytes) => format!("peak RSS: {} MiB", bytes / (1 << 20)),
        None => "peak RSS: unknown on this platform".to_string(),
    }
}
