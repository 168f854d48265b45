//! The `audience` command line: parses flags (`cli`), sets up logging, runs the
//! command on an async runtime, and turns its result into a documented exit
//! code. Logs go to stderr; stdout carries only results an orchestrator may read.

mod cli;

use std::process::ExitCode as ProcessExit;

use audience::ExitCode;
use clap::Parser;

/// Counts the Rust heap, so `bench score` can attribute its working set.
#[global_allocator]
static ALLOCATOR: audience::measure::CountingAllocator = audience::measure::CountingAllocator;

fn main() -> ProcessExit {
    return_freed_memory();
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            return report(&anyhow::Error::new(error).context("starting the async runtime"), ExitCode::Internal);
        }
    };
    match runtime.block_on(cli::run(cli.command)) {
        Ok(()) => ProcessExit::SUCCESS,
        Err(error) => {
            let code = error.exit_code();
            report(&anyhow::Error::new(error), code)
        }
    }
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

/// Prints the error with its whole chain of causes and returns `code`.
fn report(error: &anyhow::Error, code: ExitCode) -> ProcessExit {
    eprintln!("error: {error:#}");
    ProcessExit::from(code as u8)
}
