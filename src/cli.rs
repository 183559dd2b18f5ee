//! The command line: `imagegpt [serve|chat|migrate|audit|admin]`. Each subcommand is a thin call into the
//! library; exit codes: 0 success, 1 failure (or an audit that found problems), 2 bad
//! configuration.

use std::{path::PathBuf, process::ExitCode};

use bot_core::{
    RefundId, Store, admin::AdminCommand as Admin, service::Service, store::Migrations,
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

/// `imagegpt admin …`: the operator's actions, on the same rules as `/admin` in a chat; each
/// one is written to the audit table with the actor `cli`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum AdminCommand {
    /// Give a person credits (a ledger grant).
    Grant {
        /// platform:id, e.g. telegram:123.
        identity: String,
        credits: u64,
        #[arg(long)]
        reason: String,
    },
    /// Take credits from a person (never below zero).
    Take {
        identity: String,
        credits: u64,
        #[arg(long)]
        reason: String,
    },
    /// Ban a person: a short notice for anything they send; their open jobs are cancelled.
    Ban {
        identity: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Lift a ban.
    Unban { identity: String },
    /// Freeze a wallet: no spending, buying or refunds.
    Freeze {
        identity: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Unfreeze a wallet.
    Unfreeze { identity: String },
    /// Identities, balance, purchases and recent jobs of a person.
    Lookup { identity: String },
    /// People, jobs by operation and outcome, credits sold, spent and refunded.
    Stats {
        #[arg(long, default_value_t = 30)]
        days: u32,
    },
    /// The audit table, newest first.
    Log {
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
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
        Command::Admin { command } => admin(config, command).await,
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

async fn admin(config: Config, command: AdminCommand) -> anyhow::Result<ExitCode> {
    let store = Store::connect(&config.database, Migrations::RequireCurrent).await?;
    if let AdminCommand::Log { limit } = command {
        for action in store.admin_actions(limit).await? {
            println!(
                "#{} {} {} {} {}{}",
                action.id,
                action.created_at,
                action.actor,
                action.action,
                action.target.as_deref().unwrap_or("-"),
                if action.detail.is_empty() {
                    String::new()
                } else {
                    format!(": {}", action.detail)
                }
            );
        }
        store.close().await;
        return Ok(ExitCode::SUCCESS);
    }
    let identity = |text: &str| -> anyhow::Result<bot_core::Identity> {
        text.parse()
            .map_err(|_| anyhow::anyhow!("{text} is not an identity like telegram:123"))
    };
    let command = match command {
        AdminCommand::Grant {
            identity: who,
            credits,
            reason,
        } => Admin::Grant {
            who: identity(&who)?,
            credits,
            reason,
        },
        AdminCommand::Take {
            identity: who,
            credits,
            reason,
        } => Admin::Take {
            who: identity(&who)?,
            credits,
            reason,
        },
        AdminCommand::Ban {
            identity: who,
            reason,
        } => Admin::Ban {
            who: identity(&who)?,
            reason,
        },
        AdminCommand::Unban { identity: who } => Admin::Unban {
            who: identity(&who)?,
        },
        AdminCommand::Freeze {
            identity: who,
            reason,
        } => Admin::Freeze {
            who: identity(&who)?,
            reason,
        },
        AdminCommand::Unfreeze { identity: who } => Admin::Unfreeze {
            who: identity(&who)?,
        },
        AdminCommand::Lookup { identity: who } => Admin::Lookup {
            who: identity(&who)?,
        },
        AdminCommand::Stats { days } => Admin::Stats { days },
        AdminCommand::Refunds { command } => match command.unwrap_or(RefundsCommand::List) {
            RefundsCommand::List => Admin::Refunds,
            RefundsCommand::Approve { id } => Admin::Approve {
                refund: RefundId::from_raw(id),
            },
            RefundsCommand::Reject { id, reason } => Admin::Reject {
                refund: RefundId::from_raw(id),
                reason,
            },
        },
        AdminCommand::Log { .. } => unreachable!("handled above"),
    };
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
    let failed = matches!(command, Admin::Approve { .. } | Admin::Reject { .. });
    // One key per invocation: a retried transaction moves credits once.
    let key = format!(
        "cli:{}:{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    let answer = service.admin("cli", command, &key).await?;
    store.close().await;
    Ok(if failed && answer.contains("is not waiting") {
        eprintln!("imagegpt: {answer}");
        ExitCode::FAILURE
    } else {
        println!("{answer}");
        ExitCode::SUCCESS
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
