//! The Discord adapter: turns interactions (HTTP endpoint or gateway) into `bot_core` requests and
//! core replies into Discord messages. Holds no business rule: the same service, ledger and jobs
//! serve Telegram and Discord.

#![forbid(unsafe_code)]

mod adapter;
pub mod endpoint;
pub mod gateway;
pub mod messenger;
pub mod model;
pub mod register;
pub mod render;
pub mod rest;
pub mod translate;

use std::sync::Arc;

pub use adapter::Handler;
pub use messenger::DiscordMessenger;

use bot_core::service::{Messenger, Service};
use reqwest::Method;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::rest::{Body, Rest, RestError};

/// The `[discord]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiscordConfig {
    /// `DISCORD_BOT_TOKEN`: registers commands, runs the gateway, posts after a token expires.
    pub bot_token: Option<SecretString>,
    /// `DISCORD_APPLICATION_ID`: the application's snowflake.
    pub application_id: Option<String>,
    /// `DISCORD_PUBLIC_KEY`: hex Ed25519 key; HTTP interactions mode when set.
    pub public_key: Option<String>,
    /// `DISCORD_API_URL`: replaces `https://discord.com`; requests go to `…/api/v10/…`.
    pub api_url: String,
    /// `DISCORD_GUILD_IDS`: register the commands in these servers (instant, for testing)
    /// instead of globally.
    #[serde(deserialize_with = "bot_core::listing::list_or_comma_separated")]
    pub guild_ids: Vec<String>,
}

impl Default for DiscordConfig {
    fn default() -> Self {
        DiscordConfig {
            bot_token: None,
            application_id: None,
            public_key: None,
            api_url: "https://discord.com".into(),
            guild_ids: Vec::new(),
        }
    }
}

impl DiscordConfig {
    /// Whether the adapter runs: an application id and a way in (public key or bot token).
    pub fn enabled(&self) -> bool {
        self.application_id.is_some() && (self.public_key.is_some() || self.bot_token.is_some())
    }
}

/// Why the adapter could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Discord configuration: {0}")]
    Config(String),
    #[error("registering the Discord commands: {0}")]
    Register(#[source] RestError),
    #[error("the Discord gateway: {0}")]
    Gateway(String),
}

/// How interactions reach the bot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `POST /discord/interactions` (a public key is configured).
    Http,
    /// serenity's websocket (bot token, no public key).
    Gateway,
}

/// A connected Discord adapter.
#[derive(Debug)]
pub struct Discord {
    config: DiscordConfig,
    messenger: Arc<DiscordMessenger>,
    verifier: Option<endpoint::Verifier>,
}

impl Discord {
    /// Checks the configuration and registers every command (one bulk overwrite, globally or
    /// in `guild_ids`) when a bot token is configured. With `public_base_url`, results too
    /// large to upload are offered as signed links under it.
    ///
    /// # Errors
    ///
    /// A malformed key or a refused registration.
    pub async fn connect(
        config: &DiscordConfig,
        commands: &bot_core::command::CommandLimits,
        links: Option<Arc<bot_core::media::links::FileLinks>>,
    ) -> Result<Discord, Error> {
        let application = config
            .application_id
            .clone()
            .ok_or_else(|| Error::Config("DISCORD_APPLICATION_ID is not set".into()))?;
        let verifier = config
            .public_key
            .as_deref()
            .map(endpoint::Verifier::new)
            .transpose()
            .map_err(Error::Config)?;
        let token = config
            .bot_token
            .clone()
            .filter(|t| !t.expose_secret().is_empty());
        let rest = Arc::new(
            Rest::new(&config.api_url, token.clone()).map_err(|e| Error::Config(e.to_string()))?,
        );
        if token.is_some() {
            let all = register::commands(&bot_core::command::specs(commands));
            let count = all.len();
            let body = Body::Json(serde_json::Value::Array(all));
            let paths: Vec<String> = if config.guild_ids.is_empty() {
                vec![format!("/applications/{application}/commands")]
            } else {
                config
                    .guild_ids
                    .iter()
                    .map(|guild| format!("/applications/{application}/guilds/{guild}/commands"))
                    .collect()
            };
            for path in paths {
                rest.call(Method::PUT, &path, "commands", true, &body)
                    .await
                    .map_err(Error::Register)?;
            }
            tracing::info!(
                part = "discord",
                commands = count,
                scope = if config.guild_ids.is_empty() {
                    "global"
                } else {
                    "guilds"
                },
                "commands registered"
            );
        } else {
            tracing::warn!(
                part = "discord",
                "no DISCORD_BOT_TOKEN: commands are not registered and results cannot be posted after an interaction expires"
            );
        }
        Ok(Discord {
            config: config.clone(),
            messenger: Arc::new(DiscordMessenger::new(rest, &application, links)),
            verifier,
        })
    }

    /// How interactions arrive.
    pub fn mode(&self) -> Mode {
        if self.verifier.is_some() {
            Mode::Http
        } else {
            Mode::Gateway
        }
    }

    /// The messenger the core answers through.
    pub fn messenger(&self) -> Arc<dyn Messenger> {
        self.messenger.clone()
    }

    /// The handler for `service`.
    pub fn handler(&self, service: Arc<Service>) -> Handler {
        self.messenger.attach(service.store().clone());
        Handler::new(service, self.messenger.clone())
    }

    /// `POST /discord/interactions` in HTTP mode, and `GET /files/…` for large results.
    pub fn router(&self, handler: &Handler) -> axum::Router {
        let mut router = axum::Router::new();
        if let Some(verifier) = self.verifier.clone() {
            router = router.merge(endpoint::router(handler.clone(), verifier));
        }
        router
    }

    /// Runs the gateway (gateway mode) until `shutdown`, then waits for the interactions in hand.
    pub async fn run(self, handler: Handler, shutdown: CancellationToken) {
        if self.mode() == Mode::Gateway
            && let Some(token) = &self.config.bot_token
        {
            tracing::info!(part = "discord", "on: gateway");
            if let Err(error) = gateway::run(
                handler.clone(),
                token.expose_secret(),
                &self.config.api_url,
                shutdown.clone(),
            )
            .await
            {
                tracing::error!(error = %Error::Gateway(error.to_string()), "Discord gateway stopped");
            }
        } else {
            tracing::info!(
                part = "discord",
                "on: HTTP interactions at /discord/interactions"
            );
        }
        shutdown.cancelled().await;
        handler.drain().await;
    }
}
