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

/// The Rust heap of this process, counted by [`CountingAllocator`] when the
/// binary installs it as its global allocator (`audience` does): bytes held
/// now and at the peak since [`reset_heap_peak`]. Allocations made by libtorch
/// and other C++ code do not go through it; the difference between the
/// resident size and these counts is theirs, plus what the allocator holds free.
pub struct CountingAllocator;

static HEAP_NOW: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static HEAP_PEAK: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl CountingAllocator {
    fn grew(by: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        let now = HEAP_NOW.fetch_add(by, Relaxed) + by;
        HEAP_PEAK.fetch_max(now, Relaxed);
    }

    fn shrank(by: usize) {
        HEAP_NOW.fetch_sub(by, std::sync::atomic::Ordering::Relaxed);
    }
}

// SAFETY: every call goes to the system allocator unchanged; only counters are added.
unsafe impl std::alloc::GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on unchanged.
        let pointer = unsafe { std::alloc::System.alloc(layout) };
        if !pointer.is_null() {
            Self::grew(layout.size());
        }
        pointer
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let pointer = unsafe { std::alloc::System.alloc_zeroed(layout) };
        if !pointer.is_null() {
            Self::grew(layout.size());
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: as for `alloc`.
        unsafe { std::alloc::System.dealloc(pointer, layout) };
        Self::shrank(layout.size());
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let moved = unsafe { std::alloc::System.realloc(pointer, layout, new_size) };
        if !moved.is_null() {
            Self::grew(new_size);
            Self::shrank(layout.size());
        }
        moved
    }
}

/// Bytes of Rust heap held now; `None` when [`CountingAllocator`] is not installed.
pub fn heap_bytes() -> Option<u64> {
    let now = HEAP_NOW.load(std::sync::atomic::Ordering::Relaxed);
    (now > 0).then_some(now as u64)
}

/// The most Rust heap held since the last [`reset_heap_peak`].
pub fn heap_peak_bytes() -> Option<u64> {
    heap_bytes().map(|_| HEAP_PEAK.load(std::sync::atomic::Ordering::Relaxed) as u64)
}

/// Starts a new peak from the heap held now.
pub fn reset_heap_peak() {
    HEAP_PEAK.store(HEAP_NOW.load(std::sync::atomic::Ordering::Relaxed), std::sync::atomic::Ordering::Relaxed);
}

/// A future that adds up the time its polls take: the time its task spends
/// on a thread, as opposed to waiting ([`timed`]).
pub struct Timed<F> {
    inner: std::pin::Pin<Box<F>>,
    busy: std::time::Duration,
}

/// Runs `future`, returning its output and the time spent polling it.
pub fn timed<F: std::future::Future>(future: F) -> Timed<F> {
    Timed { inner: Box::pin(future), busy: std::time::Duration::ZERO }
}

impl<F: std::future::Future> std::future::Future for Timed<F> {
    type Output = (F::Output, std::time::Duration);

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        let this = &mut *self;
        let started = std::time::Instant::now();
        let polled = this.inner.as_mut().poll(cx);
        this.busy += started.elapsed();
        polled.map(|output| (output, this.busy))
    }
}
