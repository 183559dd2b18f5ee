//! The `imagegpt` binary: parses the command line, loads the configuration, and hands over to the
//! library. Everything else lives in `imagegpt::cli` and `imagegpt::startup`.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser as _;
use imagegpt::{cli::Cli, config::Config, telemetry};

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
