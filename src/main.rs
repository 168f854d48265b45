//! The `audience` binary: the process's allocator settings, then the command
//! line (`audience::cli::main`: flags, logging, the async runtime, exit codes).
//! Nothing generic is instantiated here, so the binary compiles in seconds.

/// Counts the Rust heap, so `bench score` can attribute its working set.
#[global_allocator]
static ALLOCATOR: audience::measure::CountingAllocator = audience::measure::CountingAllocator;

fn main() -> std::process::ExitCode {
    return_freed_memory();
    audience::cli::main()
}

/// Makes the C allocator give back what is freed: allocations of 64 KiB or
/// more are mapped on their own and unmapped when freed, and the heap's free
/// top is trimmed. With glibc's defaults the batch-sized buffers that the
/// scoring threads allocate and free stayed resident, and the scoring working
/// set grew with the number of users (docs/scoring.md, "Memory").
fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; no other thread runs yet.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 0);
    }
}
