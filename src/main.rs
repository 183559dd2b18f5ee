//! The `imagegpt` binary: parses the command line, loads the configuration, and hands over to the
//! library. Everything else lives in `imagegpt::cli` and `imagegpt::startup`.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser as _;
use imagegpt::{cli::Cli, config::Config, telemetry};

/// mimalloc, not the system's malloc, for Rust's allocations: sqlx's rows and every update's
/// JSON allocate and free many small blocks on several threads, and glibc's malloc spent a fifth
/// of the store writer's time there (`perf`, `cargo bench --bench telegram`), with page faults
/// and `malloc_consolidate` on the runtime's threads. SQLite's own allocations, made in C, still
/// go to the C library's malloc (about 12% of sqlx's SQLite thread under `/imagine`). Sending
/// them to mimalloc too (the crate's `override` feature) made no difference we could measure:
/// `/imagine` at 5,545 / 6,124 / 4,794 updates/s against 5,601 / 5,946 / 4,902 without it.
///
/// Built without transparent huge pages (the `no_thp` feature): mimalloc otherwise asks the
/// kernel for them on the memory it maps, so the first touch of each region zeroes 2 MiB at
/// once, and a bot that meets new people keeps touching fresh regions. In `perf` over 16,000
/// `/balance` updates of `cargo bench --bench telegram`, the kernel's `clear_page_erms` took
/// 329–440 samples on the bot's threads with them and 7 with this feature.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("imagegpt: {error}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(&config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("imagegpt: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(imagegpt::cli::run(cli.command.unwrap_or_default(), config))
}
