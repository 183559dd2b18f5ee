//! The command line: `imagegpt [serve|chat|migrate|audit|admin]`. Each subcommand is a thin call into the
//! library; exit codes: 0 success, 1 failure (or an audit that found problems), 2 bad
//! configuration.

use std::{path::PathBuf, process::ExitCode};

use bot_core::{
    RefundId, Store,
    payments::{RefundState, format_price},
    service::Service,
    store::Migrations,
};
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
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

/// `imagegpt admin …`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum AdminCommand {
    /// Refunds waiting for approval (`refunds.approval = "admin"`).
    Refunds {
        #[command(subcommand)]
        command: Option<RefundsCommand>,
    },
}

/// `imagegpt admin refunds …`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum RefundsCommand {
    /// List the refunds waiting for approval (the default).
    List,
    /// Send a waiting refund to the payment service.
    Approve { id: i64 },
    /// Refuse a waiting refund: its credits go back to the person, who is told the reason.
    Reject {
        id: i64,
        #[arg(long, default_value = "declined by an admin")]
        reason: String,
    },
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
        Command::Admin {
            command: AdminCommand::Refunds { command },
        } => refunds(config, command.unwrap_or(RefundsCommand::List)).await,
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

async fn refunds(config: Config, command: RefundsCommand) -> anyhow::Result<ExitCode> {
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
    let code = match command {
        RefundsCommand::List => {
            let waiting = store
                .refunds_in(RefundState::AwaitingApproval, None)
                .await?;
            if waiting.is_empty() {
                println!("no refunds waiting for approval");
            }
            for (refund, purchase) in waiting {
                println!(
                    "refund #{} order #{} ({} pack, {}) by {}: {} → {}",
                    refund.id,
                    purchase.id,
                    purchase.pack,
                    purchase.rail,
                    purchase.payer,
                    refund.credits,
                    format_price(refund.amount, &purchase.currency)
                );
            }
            ExitCode::SUCCESS
        }
        RefundsCommand::Approve { id } | RefundsCommand::Reject { id, .. } => {
            let approve = matches!(command, RefundsCommand::Approve { .. });
            let reason = match &command {
                RefundsCommand::Reject { reason, .. } => reason.as_str(),
                _ => "",
            };
            let id = RefundId::from_raw(id);
            if service.decide_refund(id, approve, reason).await? {
                let now = store.refund(id).await?.map(|(refund, _)| refund.state);
                println!(
                    "refund #{id} {}: now {}",
                    if approve { "approved" } else { "rejected" },
                    now.map_or("unknown", RefundState::as_str)
                );
                ExitCode::SUCCESS
            } else {
                eprintln!("imagegpt: refund #{id} is not waiting for approval");
                ExitCode::FAILURE
            }
        }
    };
    store.close().await;
    Ok(code)
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
