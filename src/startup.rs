//! Builds the application from its configuration and runs it until told to stop. Takes its
//! listener from the configured address, which may be port 0, so tests run exactly this.

use std::net::SocketAddr;

use anyhow::Context as _;
use bot_core::{Store, store::Migrations};
use secrecy::ExposeSecret as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    config::Config,
    http::{self, AppState},
};
use bot_core::{
    Credits,
    policy::ContentPolicy,
    providers::Routes,
    service::{Service, Settings, worker::Worker},
};
use std::sync::Arc;

/// A built application: database open and migrated, listener bound, chat platforms connected.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    store: Store,
    service: Arc<Service>,
    routes: Routes,
    telegram: Option<telegram::Telegram>,
    discord: Option<discord::Discord>,
    config: Config,
}

impl Application {
    /// Opens the database (applying migrations) and binds the HTTP listener.
    ///
    /// # Errors
    ///
    /// When the database cannot be opened or migrated, or the address cannot be bound.
    pub async fn build(config: &Config) -> anyhow::Result<Application> {
        let store = Store::connect(&config.database, Migrations::Apply)
            .await
            .context("opening the database")?;
        tracing::info!(backend = store.backend().name(), "database ready");
        for key in &config.deprecated {
            tracing::warn!(%key, "a deprecated configuration key is in use; it goes in the next release");
        }
        let listener = TcpListener::bind(&config.http.addr)
            .await
            .with_context(|| format!("binding HTTP_ADDR {}", config.http.addr))?;
        // Results too large to upload go out as links under PUBLIC_BASE_URL, when there is one.
        let links = config
            .http
            .public_base_url
            .as_deref()
            .map(|base| Arc::new(bot_core::media::links::FileLinks::new(base, store.clone())));
        let telegram = match &config.telegram.bot_token {
            Some(token) if !token.expose_secret().is_empty() => Some(
                telegram::Telegram::connect(
                    &config.telegram,
                    &config.commands,
                    &config.admin_identities(),
                    links.clone(),
                )
                .await
                .context("connecting to Telegram")?,
            ),
            _ => {
                tracing::info!(part = "telegram", "off: TELEGRAM_BOT_TOKEN is not set");
                None
            }
        };
        let discord = if config.discord.enabled() {
            Some(
                discord::Discord::connect(&config.discord, &config.commands, links.clone())
                    .await
                    .context("connecting to Discord")?,
            )
        } else {
            tracing::info!(
                part = "discord",
                "off: DISCORD_APPLICATION_ID with DISCORD_PUBLIC_KEY or DISCORD_BOT_TOKEN is not set"
            );
            None
        };
        let messengers = telegram
            .iter()
            .map(telegram::Telegram::messenger)
            .chain(discord.iter().map(discord::Discord::messenger))
            .collect();
        // The provider clients, built once for the settings and for the workers.
        let routes = config.providers.build(config.media);
        tracing::info!(part = "providers", routes = %routes.describe(), "providers ready");
        crate::providers::warn_below_cost(config, &routes);
        let service = with_rails(
            Service::new(
                store.clone(),
                service_settings(config, &routes)?,
                messengers,
            ),
            config,
            telegram.as_ref(),
        )?;
        let service = Arc::new(service);
        Ok(Application {
            listener,
            store,
            service,
            routes,
            telegram,
            discord,
            config: config.clone(),
        })
    }

    /// The address the server listens on (the real port when configured with port 0).
    ///
    /// # Errors
    ///
    /// When the socket cannot report its address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The store the application uses.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Serves until `shutdown` is cancelled, then closes the database.
    ///
    /// # Errors
    ///
    /// When the server fails.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let addr = self.local_addr()?;
        tracing::info!(%addr, "HTTP server listening");
        let workers = Arc::new(());
        let mut router = http::router(AppState {
            store: self.store.clone(),
            workers: workers.clone(),
        })
        .merge(payments::router(
            self.service.clone(),
            self.config.stripe.webhook_secret.clone(),
        ));
        let mut tasks = spawn_workers(
            &self.config,
            &self.routes,
            self.service.clone(),
            "serve",
            &shutdown,
            &workers,
        );
        tracing::info!(
            part = "workers",
            count = self.config.workers.count.max(1),
            "job workers running"
        );
        tasks.push(tokio::spawn(
            self.service.clone().run_limits(shutdown.clone()),
        ));
        tasks.push(tokio::spawn(self.service.clone().run_payments(
            std::time::Duration::from_millis(self.config.workers.poll_ms.max(50)),
            shutdown.clone(),
        )));
        if let Some(telegram) = self.telegram {
            if let Some(webhook) = telegram.webhook_router() {
                router = router.merge(webhook);
            }
            tasks.push(tokio::spawn(
                telegram.run(self.service.clone(), shutdown.clone()),
            ));
        }
        if let Some(discord) = self.discord {
            let handler = discord.handler(self.service.clone());
            router = router.merge(discord.router(&handler));
            tasks.push(tokio::spawn(discord.run(handler, shutdown.clone())));
        }
        axum::serve(self.listener, router)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .await
            .context("serving HTTP")?;
        // Workers finish the job in hand; adapters finish the updates in hand.
        shutdown.cancel();
        for task in tasks {
            let _ = task.await;
        }
        self.store.close().await;
        tracing::info!("stopped");
        Ok(())
    }

    /// The service the application runs.
    pub fn service(&self) -> &Arc<Service> {
        &self.service
    }
}

/// The service's settings, from the configuration.
///
/// # Errors
///
/// When the content policy does not compile (checked at load, so only after an edit).
pub fn service_settings(config: &Config, routes: &Routes) -> anyhow::Result<Settings> {
    Ok(Settings {
        pricing: config.pricing.clone(),
        commands: config.commands.clone(),
        policy: ContentPolicy::new(&config.policy).map_err(anyhow::Error::msg)?,
        jobs: config.jobs,
        media: config.media,
        welcome_credits: Credits::new(config.welcome_credits),
        terms_version: config.terms.version.clone(),
        payments: config.payment_settings(),
        local_preview: routes.serves_preview(),
        admins: config.admin_identities(),
        limits: config.limits,
    })
}

/// Adds the payment rails that are configured: Stripe when `STRIPE_SECRET_KEY` is set, Telegram
/// Stars when the Telegram adapter runs.
///
/// # Errors
///
/// When the Stripe client cannot be built.
pub fn with_rails(
    mut service: Service,
    config: &Config,
    telegram: Option<&telegram::Telegram>,
) -> anyhow::Result<Service> {
    if config.stripe.secret_key.is_some() {
        let base = config.http.public_base_url.as_deref().unwrap_or_default();
        let stripe = payments::Stripe::new(&config.stripe, base, &config.pricing)
            .context("setting up Stripe")?;
        service = service.with_rail(Arc::new(stripe));
        tracing::info!(
            part = "stripe",
            webhook = config.stripe.webhook_secret.is_some(),
            "on: card payments through Stripe Checkout"
        );
    } else {
        tracing::info!(part = "stripe", "off: STRIPE_SECRET_KEY is not set");
    }
    if let Some(telegram) = telegram {
        service = service.with_rail(telegram.stars());
    }
    Ok(service)
}

/// Starts `config.workers.count` workers, each holding a clone of `alive` while it runs; they
/// stop when `shutdown` is cancelled.
pub fn spawn_workers(
    config: &Config,
    routes: &Routes,
    service: Arc<Service>,
    instance: &str,
    shutdown: &CancellationToken,
    alive: &Arc<()>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..config.workers.count.max(1))
        .map(|n| {
            let worker = Worker::new(
                service.clone(),
                routes.clone(),
                config.workers,
                format!("{instance}-{}-{n}", std::process::id()),
            );
            // Held while the worker runs: readiness counts them.
            let alive = alive.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                worker.run(shutdown).await;
                drop(alive);
            })
        })
        .collect()
}
