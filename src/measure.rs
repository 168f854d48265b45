//! Resource figures for benchmarks: the CPU they ran on, and the resident
//! memory of this process (current and peak).

/// Peak resident set size of this process in bytes (Linux `VmHWM`), if known.
pub fn peak_rss_bytes() -> Option<u64> {
    status_kib("VmHWM:").map(|kib| kib * 1024)
}

/// Resident set size of this process now, in bytes (Linux `VmRSS`), if known.
pub fn current_rss_bytes() -> Option<u64> {
    status_kib("VmRSS:").map(|kib| kib * 1024)
}

/// Resets the peak to the current resident size (Linux `clear_refs`), so the
/// next [`peak_rss_bytes`] measures from here; returns whether it could.
/// Memory the allocator holds free is handed back first, so that what an
/// earlier step freed does not count as resident.
pub fn reset_peak_rss() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `peak RSS: N MiB`, or a note that it is unknown on this platform.
pub fn peak_rss_line() -> String {
    match peak_rss_bytes() {
        Some(bytes) => format!("peak RSS: {} MiB", bytes / (1 << 20)),
        None => "peak RSS: unknown on this platform".to_string(),
    }
}

/// The CPU's model name and its vector extensions that matter here, e.g.
/// `Intel(R) Xeon(R) Processor (avx2 avx512f avx512_bf16)`.
pub fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        info.lines().find(|l| l.starts_with(name)).and_then(|l| l.split_once(':')).map(|(_, v)| v.trim().to_string())
    };
    let model = field("model name").unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let flags = field("flags").unwrap_or_default();
    let present: Vec<&str> =
        ["avx2", "avx512f", "avx512_bf16"].into_iter().filter(|f| flags.split(' ').any(|x| x == *f)).collect();
    format!("{model} ({})", if present.is_empty() { "no avx2".to_string() } else { present.join(" ") })
}
