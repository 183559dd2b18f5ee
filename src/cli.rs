//! The command line: `imagegpt [serve|chat|migrate|audit]`. Each subcommand is a thin call into the
//! library; exit codes: 0 success, 1 failure (or an audit that found problems), 2 bad
//! configuration.

use std::{path::PathBuf, process::ExitCode};

use bot_core::{Store, store::Migrations};
use tokio_util::sync::CancellationToken;

use crate::{config::Config, startup::Application};

/// `imagegpt`: the chat front end of a paid AI media service.
#[derive(Debug, clap::Parser)]
#[command(name = "imagegpt", version, about)]
pub struct Cli {
    /// A TOML configuration file (default: ./imagegpt.toml when it exists). Environment
    /// variables win over it.
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What to do.
#[derive(Debug, Clone, Default, clap::Subcommand)]
pub enum Command {
    /// Run the HTTP server, the configured adapters and the job workers (the default).
    #[default]
    Serve,
    /// Talk to the service in the terminal as console:NAME (media goes to ./data/out/).
    Chat {
        /// Who you are: console:NAME.
        #[arg(long, default_value = "me")]
        name: String,
        /// Grant these starting credits (once per name and amount), through a real grant.
        #[arg(long)]
        credits: Option<u64>,
    },
    /// Apply the database migrations to DATABASE_URL.
    Migrate,
    /// Check the ledger of a live database; exits 1 with a report when it is wrong.
    Audit,
}

/// Runs one subcommand to its end.
pub async fn run(command: Command, config: Config) -> ExitCode {
    let result = match command {
        Command::Serve => serve(config).await,
        Command::Chat { name, credits } => crate::chat::run(config, &name, credits)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Migrate => migrate(config).await,
        Command::Audit => audit(config).await,
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("imagegpt: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<ExitCode> {
    let app = Application::build(&config).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    app.run_until_stopped(shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

async fn migrate(config: Config) -> anyhow::Result<ExitCode> {
    let store = Store::connect(&config.database, Migrations::Apply).await?;
    println!("migrations applied ({})", store.backend().name());
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

async fn audit(config: Config) -> anyhow::Result<ExitCode> {
    let store = Store::connect(&config.database, Migrations::RequireCurrent).await?;
    let report = store.audit().await?;
    store.close().await;
    println!("{report}");
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Cancels `shutdown` on SIGINT or SIGTERM.
async fn stop_on_signal(shutdown: CancellationToken) {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
    shutdown.cancel();
}
