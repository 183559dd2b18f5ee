//! The command line: `imagegpt [serve|chat|migrate|audit|admin|providers]`. Each subcommand is a thin call into the
//! library; exit codes: 0 success, 1 failure (an audit that found problems, a refused admin
//! action), 2 bad configuration or admin words the core's grammar does not take.

use std::{path::PathBuf, process::ExitCode};

use bot_core::{Store, admin::AdminCommand as Admin, service::Service, store::Migrations};
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
    /// Operator commands.
    /// Operator actions, in the same words as `/admin` in a chat (the core's admin grammar):
    /// grant|take IDENTITY CREDITS [--reason] TEXT · ban|freeze IDENTITY [[--reason] TEXT] ·
    /// unban|unfreeze|lookup IDENTITY · stats [--days N] · refunds [list|approve ID|reject ID
    /// [--reason] TEXT] · log [--limit N]. Exit code 1 when the action was refused, 2 for words
    /// the grammar does not take.
    Admin {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        words: Vec<String>,
    },
    /// The generation providers, before going live.
    Providers {
        #[command(subcommand)]
        action: ProvidersAction,
    },
}

/// `imagegpt providers …`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ProvidersAction {
    /// Render every configured template for every choice people have and check it against the
    /// model's published schema; show each operation's provider cost against its price. Exit
    /// code 1 when a template would be refused.
    Check {
        /// Also ask Replicate and OpenAI (with the configured keys) whether each model exists.
        #[arg(long)]
        live: bool,
    },
}

/// `imagegpt admin …`: the operator's actions, on the same rules as `/admin` in a chat; each
/// one is written to the audit table with the actor `cli`.
pub async fn run(command: Command, config: Config) -> ExitCode {
    let result = match command {
        Command::Serve => serve(config).await,
        Command::Chat { name, credits } => crate::chat::run(config, &name, credits)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Migrate => migrate(config).await,
        Command::Audit => audit(config).await,
        Command::Admin { words } => admin(config, &words.join(" ")).await,
        Command::Providers {
            action: ProvidersAction::Check { live },
        } => providers_check(config, live).await,
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
    let grace = std::time::Duration::from_secs(config.http.shutdown_grace_seconds);
    let mut running = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    tokio::select! {
        stopped = &mut running => {
            stopped??;
            Ok(ExitCode::SUCCESS)
        }
        () = async {
            shutdown.cancelled().await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(
                grace_seconds = grace.as_secs(),
                "the grace period ended before everything stopped; exiting now"
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn providers_check(config: Config, live: bool) -> anyhow::Result<ExitCode> {
    let mut lines = crate::providers::check(&config);
    if live {
        crate::providers::confirm_live(&config, &mut lines).await;
    }
    println!("{}", crate::providers::report(&lines));
    Ok(if lines.iter().any(crate::providers::Line::failed) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
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

async fn admin(config: Config, words: &str) -> anyhow::Result<ExitCode> {
    let command = match Admin::parse(words) {
        Ok(command) => command,
        Err(usage) => {
            eprintln!("imagegpt admin: {usage}");
            return Ok(ExitCode::from(2));
        }
    };
    let store = Store::connect(&config.database, Migrations::RequireCurrent).await?;
    let routes = config.providers.build(config.media);
    // Stripe refunds go out from here; Stars refunds need the running bot, whose payments loop
    // sends approved refunds it finds waiting.
    let service = crate::startup::with_rails(
        Service::new(
            store.clone(),
            crate::startup::service_settings(&config, &routes)?,
            Vec::new(),
        ),
        &config,
        None,
    )?;
    // One key per invocation: a retried transaction moves credits once.
    let key = format!(
        "cli:{}:{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    let outcome = service.admin("cli", command, &key).await?;
    store.close().await;
    Ok(if outcome.done {
        println!("{}", outcome.text);
        ExitCode::SUCCESS
    } else {
        eprintln!("imagegpt: {}", outcome.text);
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
