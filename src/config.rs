//! The one configuration tree: an optional `imagegpt.toml`, then environment variables, which win.
//! Each crate owns its section; this module composes them, checks the combinations, and is the
//! only place that reads the environment.

use std::{net::SocketAddr, path::Path};

use bot_core::payments::Approval;
use bot_core::payments::Rail;
use bot_core::service::PaymentSettings;
use bot_core::{
    DatabaseConfig, Identity,
    command::CommandLimits,
    jobs::JobLimits,
    media::MediaLimits,
    operation::{self, OperationsConfig},
    policy::{ContentPolicy, PolicyConfig},
    pricing::PricingConfig,
    providers::ProvidersConfig,
    service::worker::WorkerConfig,
    store::Backend,
};
use discord::DiscordConfig;
use figment::{
    Figment, Metadata, Profile, Provider,
    providers::{Format as _, Toml},
    value::{Dict, Map, Value},
};
use payments::StripeConfig;
use secrecy::ExposeSecret as _;
use serde::Deserialize;
use telegram::TelegramConfig;

/// The file read when no `--config` is given, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "imagegpt.toml";

/// Everything the binary can be told.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub database: DatabaseConfig,
    pub http: HttpConfig,
    pub telegram: TelegramConfig,
    pub discord: DiscordConfig,
    pub stripe: StripeConfig,
    pub providers: ProvidersConfig,
    /// `[operations.<name>]`: price, timeout and routes of each operation.
    pub operations: OperationsConfig,
    pub pricing: PricingConfig,
    pub commands: CommandLimits,
    pub policy: PolicyConfig,
    pub jobs: JobLimits,
    pub media: MediaLimits,
    pub workers: WorkerConfig,
    pub admin: AdminConfig,
    pub terms: TermsConfig,
    pub refunds: RefundsConfig,
    pub log: LogConfig,
    /// `[limits]`: how fast one person may send requests.
    pub limits: bot_core::service::throttle::RateLimits,
    /// `WELCOME_CREDITS`: a one-time grant to each new person.
    pub welcome_credits: u64,
    /// Deprecated keys this configuration used, each with the key that replaces it; start-up
    /// warns about each.
    #[serde(skip)]
    pub deprecated: Vec<String>,
}

/// The `[http]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// `HTTP_ADDR`: where the one HTTP server listens.
    pub addr: String,
    /// `PUBLIC_BASE_URL`: how the outside world reaches that server (Checkout return pages,
    /// download links, webhooks).
    pub public_base_url: Option<String>,
    /// `SHUTDOWN_GRACE_SECONDS`: after SIGTERM or SIGINT, how long the process may take to
    /// finish or hand back its work before it exits anyway.
    pub shutdown_grace_seconds: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            addr: "127.0.0.1:8080".into(),
            public_base_url: None,
            shutdown_grace_seconds: 30,
        }
    }
}

/// The `[admin]` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// `ADMIN_IDS`: platform identities allowed to run admin commands, comma-separated in the
    /// environment (`telegram:123,discord:456`) or a list in the file.
    #[serde(deserialize_with = "bot_core::listing::list_or_comma_separated")]
    pub ids: Vec<String>,
}

/// The `[terms]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TermsConfig {
    /// The version of `terms-of-service.txt` in force; people accept it on first use (§2.4) and
    /// are told once when it changes (§9.1).
    pub version: String,
}

impl Default for TermsConfig {
    fn default() -> Self {
        TermsConfig {
            version: bot_core::policy::TERMS_VERSION.into(),
        }
    }
}

/// The `[refunds]` section (terms §4.4).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RefundsConfig {
    /// `REFUNDS_APPROVAL`: `auto` (sent to the payment service at once) or `admin` (waits for
    /// `imagegpt admin refunds approve ID`).
    pub approval: Approval,
    /// How many days after paying a purchase may be refunded.
    pub window_days: u32,
}

impl Default for RefundsConfig {
    fn default() -> Self {
        RefundsConfig {
            approval: Approval::Auto,
            window_days: 14,
        }
    }
}

/// The `[log]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `RUST_LOG`: a tracing filter such as `info` or `imagegpt=debug,sqlx=warn`.
    pub filter: String,
    /// `LOG_FORMAT`: `text` or `json`.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            filter: "info,sqlx=warn".into(),
            format: LogFormat::Text,
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// How an environment variable's text becomes a configuration value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    /// Kept as text: tokens, secrets, ids and URLs that may look like numbers.
    Text,
    /// Parsed like TOML (numbers, booleans).
    Value,
}

/// Every environment variable the binary reads, with the key it sets.
const ENVIRONMENT: &[(&str, &str, Read)] = &[
    ("DATABASE_URL", "database.url", Read::Text),
    (
        "DATABASE_MAX_CONNECTIONS",
        "database.max_connections",
        Read::Value,
    ),
    ("HTTP_ADDR", "http.addr", Read::Text),
    ("PUBLIC_BASE_URL", "http.public_base_url", Read::Text),
    (
        "SHUTDOWN_GRACE_SECONDS",
        "http.shutdown_grace_seconds",
        Read::Value,
    ),
    ("TELEGRAM_BOT_TOKEN", "telegram.bot_token", Read::Text),
    ("TELEGRAM_API_URL", "telegram.api_url", Read::Text),
    ("TELEGRAM_WEBHOOK_URL", "telegram.webhook_url", Read::Text),
    (
        "TELEGRAM_WEBHOOK_SECRET",
        "telegram.webhook_secret",
        Read::Text,
    ),
    (
        "TELEGRAM_PAYMENT_RAILS",
        "telegram.payment_rails",
        Read::Text,
    ),
    ("DISCORD_BOT_TOKEN", "discord.bot_token", Read::Text),
    (
        "DISCORD_APPLICATION_ID",
        "discord.application_id",
        Read::Text,
    ),
    ("DISCORD_PUBLIC_KEY", "discord.public_key", Read::Text),
    ("DISCORD_API_URL", "discord.api_url", Read::Text),
    ("DISCORD_GUILD_IDS", "discord.guild_ids", Read::Text),
    ("STRIPE_SECRET_KEY", "stripe.secret_key", Read::Text),
    ("STRIPE_WEBHOOK_SECRET", "stripe.webhook_secret", Read::Text),
    ("STRIPE_API_URL", "stripe.api_url", Read::Text),
    (
        "REPLICATE_API_TOKEN",
        "providers.replicate.api_token",
        Read::Text,
    ),
    (
        "REPLICATE_API_URL",
        "providers.replicate.api_url",
        Read::Text,
    ),
    ("OPENAI_API_KEY", "providers.openai.api_key", Read::Text),
    ("OPENAI_BASE_URL", "providers.openai.base_url", Read::Text),
    ("OPENAI_IMAGE_MODEL", "providers.openai.model", Read::Text),
    ("ADMIN_IDS", "admin.ids", Read::Text),
    ("REFUNDS_APPROVAL", "refunds.approval", Read::Text),
    ("WELCOME_CREDITS", "welcome_credits", Read::Value),
    ("TERMS_VERSION", "terms.version", Read::Text),
    ("RUST_LOG", "log.filter", Read::Text),
    ("LOG_FORMAT", "log.format", Read::Text),
];

/// A configuration that cannot be used; one line naming the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration: {variable}: {message}")]
pub struct ConfigError {
    /// The environment variable (and file key) at fault.
    pub variable: String,
    pub message: String,
}

impl ConfigError {
    fn new(key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            variable: describe_key(key),
            message: message.into(),
        }
    }
}

/// `STRIPE_SECRET_KEY (stripe.secret_key)` for a key we map from the environment.
fn describe_key(key: &str) -> String {
    match env_name(key) {
        variable if variable != key => format!("{variable} ({key})"),
        _ => key.to_string(),
    }
}

/// The environment variable that sets `key`, or the key itself when none does.
fn env_name(key: &str) -> &str {
    ENVIRONMENT
        .iter()
        .find(|(_, k, _)| *k == key)
        .map_or(key, |(variable, _, _)| variable)
}

impl Config {
    /// How payments behave: the Telegram rails (`TELEGRAM_PAYMENT_RAILS`, by default Stars, plus
    /// Stripe when a Stripe key is set), refund approval and window, the card fee estimate.
    pub fn payment_settings(&self) -> PaymentSettings {
        let telegram_rails = match &self.telegram.payment_rails {
            Some(rails) => Rail::parse_list(rails).unwrap_or_default(),
            None if self.stripe.secret_key.is_some() => {
                vec![Rail::Stars, Rail::Stripe]
            }
            None => vec![Rail::Stars],
        };
        PaymentSettings {
            telegram_rails,
            approval: self.refunds.approval,
            refund_window_days: self.refunds.window_days,
            fee_basis_points: self.stripe.fee_basis_points,
            fee_fixed: self.stripe.fee_fixed,
        }
    }

    /// Loads the file (the given one, which must exist, or `imagegpt.toml` if present), then
    /// the process environment, and checks the result.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the variable or key that is wrong.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Config::load_from(file, std::env::vars())
    }

    /// As [`Config::load`], with the environment given explicitly (for tests).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the variable or key that is wrong.
    pub fn load_from(
        file: Option<&Path>,
        environment: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut figment = Figment::new();
        match file {
            Some(path) if !path.is_file() => {
                return Err(ConfigError {
                    variable: "--config".into(),
                    message: format!("{} does not exist", path.display()),
                });
            }
            Some(path) => figment = figment.merge(Toml::file_exact(path)),
            None if Path::new(DEFAULT_CONFIG_FILE).is_file() => {
                figment = figment.merge(Toml::file_exact(DEFAULT_CONFIG_FILE));
            }
            None => {}
        }
        let config: Config = figment
            .merge(Environment::from_pairs(environment))
            .extract()
            .map_err(|error| {
                let key = error.path.join(".");
                let message = error.kind.to_string();
                if key.is_empty() {
                    ConfigError {
                        variable: "imagegpt.toml".into(),
                        message,
                    }
                } else {
                    ConfigError::new(&key, message)
                }
            })?;
        let mut config = config;
        // Settled first, so that routes named under [operations] are checked with the others.
        config.resolve_operations();
        config.validate()?;
        Ok(config)
    }

    /// Settles each operation's price, timeout and routes: `[operations.<name>]` first, then the
    /// deprecated keys, then the operation table.
    fn resolve_operations(&mut self) {
        for key in self.pricing.apply_deprecated_keys() {
            self.deprecated
                .push(format!("{key} (use [operations.<name>] price)"));
        }
        if self.workers.timeouts.apply_deprecated_keys() {
            self.deprecated
                .push("[workers.timeouts] (use [operations.<name>] timeout_seconds)".into());
        }
        if !self.providers.routes.is_empty() {
            self.deprecated
                .push("[providers.routes] (use [operations.<name>] routes)".into());
        }
        for (name, settings) in &self.operations {
            let Some(at) = operation::Operation::NAMES.iter().position(|n| n == name) else {
                continue;
            };
            if let Some(price) = settings.price {
                self.pricing.prices[at] = price;
            }
            if let Some(seconds) = settings.timeout_seconds {
                self.workers.timeouts.seconds[at] = seconds;
            }
            if let Some(routes) = &settings.routes {
                self.providers.routes.insert(name.clone(), routes.clone());
            }
        }
    }

    /// The identities in `ADMIN_IDS`, parsed.
    pub fn admin_identities(&self) -> Vec<Identity> {
        self.admin
            .ids
            .iter()
            .filter_map(|id| id.parse().ok())
            .collect()
    }

    /// Checks values and combinations that types cannot.
    fn validate(&self) -> Result<(), ConfigError> {
        Backend::from_url(&self.database.url).map_err(|error| {
            let message = error.to_string();
            let message = message.strip_prefix("DATABASE_URL: ").unwrap_or(&message);
            ConfigError::new("database.url", format!("malformed: {message}"))
        })?;
        if self.database.max_connections == 0 {
            return Err(ConfigError::new(
                "database.max_connections",
                "must be at least 1",
            ));
        }
        self.http.addr.parse::<SocketAddr>().map_err(|_| {
            ConfigError::new(
                "http.addr",
                format!("{:?} is not an address like 127.0.0.1:8080", self.http.addr),
            )
        })?;
        if let Some(base) = &self.http.public_base_url {
            check_url("http.public_base_url", base)?;
        }
        for (key, url) in [
            ("telegram.api_url", &self.telegram.api_url),
            ("discord.api_url", &self.discord.api_url),
            ("stripe.api_url", &self.stripe.api_url),
            (
                "providers.replicate.api_url",
                &self.providers.replicate.api_url,
            ),
            ("providers.openai.base_url", &self.providers.openai.base_url),
        ] {
            check_url(key, url)?;
        }

        let telegram = &self.telegram;
        if let Some(webhook) = &telegram.webhook_url {
            check_url("telegram.webhook_url", webhook)?;
            requires(
                "telegram.webhook_url",
                telegram.bot_token.is_some(),
                "telegram.bot_token",
            )?;
            requires(
                "telegram.webhook_url",
                telegram.webhook_secret.is_some(),
                "telegram.webhook_secret",
            )?;
        }
        if let Some(secret) = &telegram.webhook_secret {
            let secret = secret.expose_secret();
            let allowed = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
            if secret.is_empty() || secret.len() > 256 || !secret.chars().all(allowed) {
                return Err(ConfigError::new(
                    "telegram.webhook_secret",
                    "must be 1-256 characters of A-Z, a-z, 0-9, _ and - (Telegram's rule)",
                ));
            }
            requires(
                "telegram.webhook_secret",
                telegram.webhook_url.is_some(),
                "telegram.webhook_url",
            )?;
        }
        if let Some(rails) = &telegram.payment_rails {
            let rails = Rail::parse_list(rails).map_err(|bad| {
                ConfigError::new(
                    "telegram.payment_rails",
                    format!("unknown rail {bad:?}: use stars, stripe or stars,stripe"),
                )
            })?;
            if rails.contains(&Rail::Stripe) {
                requires(
                    "telegram.payment_rails",
                    self.stripe.secret_key.is_some(),
                    "stripe.secret_key",
                )?;
            }
        }

        let discord = &self.discord;
        if let Some(id) = &discord.application_id
            && (id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()))
        {
            return Err(ConfigError::new(
                "discord.application_id",
                "must be a numeric snowflake",
            ));
        }
        if let Some(key) = &discord.public_key {
            if key.len() != 64 || !key.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(ConfigError::new(
                    "discord.public_key",
                    "must be the 64 hex characters shown in the Developer Portal",
                ));
            }
            requires(
                "discord.public_key",
                discord.application_id.is_some(),
                "discord.application_id",
            )?;
        }
        if discord.bot_token.is_some() {
            requires(
                "discord.bot_token",
                discord.application_id.is_some(),
                "discord.application_id",
            )?;
        }
        if discord
            .guild_ids
            .iter()
            .any(|id| id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()))
        {
            return Err(ConfigError::new(
                "discord.guild_ids",
                "must be numeric server ids, comma-separated",
            ));
        }

        let stripe = &self.stripe;
        if stripe.webhook_secret.is_some() {
            requires(
                "stripe.webhook_secret",
                stripe.secret_key.is_some(),
                "stripe.secret_key",
            )?;
        }
        if stripe.secret_key.is_some() {
            requires(
                "stripe.secret_key",
                self.http.public_base_url.is_some(),
                "http.public_base_url",
            )?;
        }

        self.pricing
            .validate()
            .map_err(|message| ConfigError::new("pricing", message))?;
        operation::validate(&self.operations)
            .map_err(|(key, message)| ConfigError::new(&key, message))?;
        self.providers
            .validate()
            .map_err(|(key, message)| ConfigError::new(&key, message))?;
        ContentPolicy::new(&self.policy).map_err(|message| ConfigError::new("policy", message))?;
        let commands = &self.commands;
        if commands.prompt_max_chars == 0 || commands.prompt_min_chars > commands.prompt_max_chars {
            return Err(ConfigError::new(
                "commands.prompt_max_chars",
                "must be at least 1 and at least commands.prompt_min_chars",
            ));
        }
        if commands.video_seconds.is_empty() || commands.portrait_styles.is_empty() {
            return Err(ConfigError::new(
                "commands",
                "video_seconds and portrait_styles need at least one entry",
            ));
        }
        for id in &self.admin.ids {
            id.parse::<Identity>()
                .map_err(|error| ConfigError::new("admin.ids", error.to_string()))?;
        }
        Ok(())
    }
}

fn requires(key: &str, present: bool, needed: &str) -> Result<(), ConfigError> {
    if present {
        Ok(())
    } else {
        Err(ConfigError::new(
            key,
            format!("is set, but {} is not", env_name(needed)),
        ))
    }
}

fn check_url(key: &str, value: &str) -> Result<(), ConfigError> {
    match url::Url::parse(value) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Ok(()),
        _ => Err(ConfigError::new(
            key,
            format!("{value:?} is not an http(s) URL"),
        )),
    }
}

/// The environment as a figment provider: only the variables in [`ENVIRONMENT`], each set at
/// its key; empty values count as unset.
struct Environment {
    pairs: Vec<(&'static str, Value)>,
}

impl Environment {
    fn from_pairs(environment: impl IntoIterator<Item = (String, String)>) -> Environment {
        let pairs = environment
            .into_iter()
            .filter(|(_, value)| !value.trim().is_empty())
            .filter_map(|(name, value)| {
                let (_, key, read) = ENVIRONMENT.iter().find(|(known, _, _)| *known == name)?;
                let value = match read {
                    Read::Text => Value::from(value),
                    Read::Value => value.parse().unwrap_or_else(|never| match never {}),
                };
                Some((*key, value))
            })
            .collect();
        Environment { pairs }
    }
}

impl Provider for Environment {
    fn metadata(&self) -> Metadata {
        Metadata::named("environment variable")
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut dict = Dict::new();
        for (key, value) in &self.pairs {
            let nested = figment::util::nest(key, value.clone())
                .into_dict()
                .unwrap_or_default();
            dict = merge(dict, nested);
        }
        Ok(Profile::Default.collect(dict))
    }
}

/// Deep merge of two dictionaries, `right` winning.
fn merge(mut left: Dict, right: Dict) -> Dict {
    for (key, value) in right {
        let merged = match (left.remove(&key), value) {
            (Some(Value::Dict(_, l)), Value::Dict(tag, r)) => Value::Dict(tag, merge(l, r)),
            (_, value) => value,
        };
        left.insert(key, merged);
    }
    left
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::load_from(None, env(pairs))
    }

    #[test]
    fn with_nothing_set_the_embedded_defaults_apply() {
        let config = load(&[]).expect("defaults are valid");
        assert_eq!(config.database.url, "sqlite://data/imagegpt.db");
        assert_eq!(config.http.addr, "127.0.0.1:8080");
        assert_eq!(config.telegram.api_url, "https://api.telegram.org");
        assert_eq!(config.discord.api_url, "https://discord.com");
        assert_eq!(config.stripe.api_url, "https://api.stripe.com");
        assert_eq!(
            config.providers.replicate.api_url,
            "https://api.replicate.com"
        );
        assert_eq!(
            config.providers.openai.base_url,
            "https://api.openai.com/v1"
        );
        assert_eq!(config.welcome_credits, 0);
        assert!(config.telegram.bot_token.is_none());
    }

    #[test]
    fn environment_variables_win_over_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("imagegpt.toml");
        std::fs::write(
            &file,
            "welcome_credits = 3\n[http]\naddr = \"0.0.0.0:9000\"\n[admin]\nids = [\"console:root\"]\n",
        )
        .expect("write");
        let config =
            Config::load_from(Some(&file), env(&[("WELCOME_CREDITS", "10")])).expect("valid");
        assert_eq!(config.welcome_credits, 10);
        assert_eq!(
            config.http.addr, "0.0.0.0:9000",
            "the file still sets what env does not"
        );
        assert_eq!(config.admin.ids, vec!["console:root".to_string()]);
    }

    #[test]
    fn tokens_that_look_like_numbers_stay_text() {
        let config = load(&[
            ("DISCORD_APPLICATION_ID", "80351110224678912"),
            ("DISCORD_BOT_TOKEN", "12345"),
        ])
        .expect("valid");
        assert_eq!(
            config.discord.application_id.as_deref(),
            Some("80351110224678912")
        );
        assert_eq!(
            config
                .discord
                .bot_token
                .as_ref()
                .map(|t| t.expose_secret().to_string()),
            Some("12345".to_string())
        );
    }

    #[test]
    fn discord_guild_ids_are_a_comma_separated_list_of_snowflakes() {
        let config = load(&[
            ("DISCORD_APPLICATION_ID", "1"),
            ("DISCORD_BOT_TOKEN", "t"),
            ("DISCORD_GUILD_IDS", "290926798626357999, 41771983423143937"),
        ])
        .expect("valid");
        assert_eq!(
            config.discord.guild_ids,
            ["290926798626357999", "41771983423143937"]
        );
        assert!(config.discord.enabled());
        let error = load(&[("DISCORD_GUILD_IDS", "my-server")]).expect_err("not a snowflake");
        assert!(error.to_string().contains("DISCORD_GUILD_IDS"), "{error}");
        assert!(!load(&[]).expect("defaults").discord.enabled());
    }

    #[test]
    fn admin_ids_are_comma_separated_identities() {
        let config = load(&[("ADMIN_IDS", "telegram:123, discord:456")]).expect("valid");
        assert_eq!(config.admin_identities().len(), 2);
        let error = load(&[("ADMIN_IDS", "telegram:123,bob")]).expect_err("bad id");
        assert!(
            error
                .to_string()
                .starts_with("configuration: ADMIN_IDS (admin.ids): "),
            "{error}"
        );
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let secrets = [
            ("TELEGRAM_BOT_TOKEN", "123:tg-secret-token"),
            (
                "TELEGRAM_WEBHOOK_URL",
                "https://bot.example/telegram/webhook",
            ),
            ("TELEGRAM_WEBHOOK_SECRET", "tg_webhook_secret"),
            ("DISCORD_BOT_TOKEN", "discord-secret-token"),
            ("DISCORD_APPLICATION_ID", "1"),
            ("STRIPE_SECRET_KEY", "sk_test_stripe_secret"),
            ("STRIPE_WEBHOOK_SECRET", "whsec_stripe_secret"),
            ("PUBLIC_BASE_URL", "https://bot.example"),
            ("REPLICATE_API_TOKEN", "r8_replicate_secret"),
            ("OPENAI_API_KEY", "sk-openai-secret"),
        ];
        let config = load(&secrets).expect("valid");
        let shown = format!("{config:?}");
        for (name, value) in secrets {
            if name.contains("TOKEN") || name.contains("SECRET") || name.contains("KEY") {
                assert!(!shown.contains(value), "{name} leaked into Debug output");
            }
        }
        assert!(shown.contains("REDACTED"));
    }

    #[test]
    fn wrong_combinations_stop_with_one_line_naming_the_variable() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("STRIPE_WEBHOOK_SECRET", "whsec_x")],
                "STRIPE_WEBHOOK_SECRET (stripe.webhook_secret): is set, but STRIPE_SECRET_KEY is not",
            ),
            (
                &[("STRIPE_SECRET_KEY", "sk_test_x")],
                "STRIPE_SECRET_KEY (stripe.secret_key): is set, but PUBLIC_BASE_URL is not",
            ),
            (
                &[("DATABASE_URL", "mysql://localhost/db")],
                "DATABASE_URL (database.url): malformed",
            ),
            (
                &[("DATABASE_URL", "postgres://")],
                "DATABASE_URL (database.url): malformed",
            ),
            (&[("HTTP_ADDR", "localhost")], "HTTP_ADDR (http.addr)"),
            (
                &[("TELEGRAM_WEBHOOK_URL", "https://x.example/telegram/webhook")],
                "TELEGRAM_WEBHOOK_URL (telegram.webhook_url): is set, but TELEGRAM_BOT_TOKEN is not",
            ),
            (
                &[
                    ("TELEGRAM_BOT_TOKEN", "1:a"),
                    ("TELEGRAM_WEBHOOK_URL", "https://x.example/telegram/webhook"),
                ],
                "is set, but TELEGRAM_WEBHOOK_SECRET is not",
            ),
            (
                &[("TELEGRAM_API_URL", "not a url")],
                "TELEGRAM_API_URL (telegram.api_url)",
            ),
            (
                &[("TELEGRAM_PAYMENT_RAILS", "stars,paypal")],
                "TELEGRAM_PAYMENT_RAILS (telegram.payment_rails): unknown rail \"paypal\"",
            ),
            (
                &[("TELEGRAM_PAYMENT_RAILS", "stripe")],
                "is set, but STRIPE_SECRET_KEY is not",
            ),
            (
                &[("DISCORD_PUBLIC_KEY", "abc")],
                "DISCORD_PUBLIC_KEY (discord.public_key)",
            ),
            (
                &[("WELCOME_CREDITS", "-5")],
                "WELCOME_CREDITS (welcome_credits)",
            ),
            (
                &[("WELCOME_CREDITS", "lots")],
                "WELCOME_CREDITS (welcome_credits)",
            ),
            (&[("LOG_FORMAT", "xml")], "LOG_FORMAT (log.format)"),
        ];
        for (pairs, expected) in cases {
            let error = load(pairs).expect_err(expected).to_string();
            assert!(
                error.contains(expected),
                "expected {expected:?} in {error:?}"
            );
            assert_eq!(error.lines().count(), 1, "{error}");
        }
    }

    #[test]
    fn prices_limits_and_policy_are_checked_at_start_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("imagegpt.toml");
        for (toml, expected) in [
            (
                "[pricing]\nimage_hd = 0\n",
                "pricing.image_hd must be at least 1 credit",
            ),
            (
                "[policy]\nblocked_patterns = [\"(\"]\n",
                "policy.blocked_patterns",
            ),
            (
                "[commands]\nprompt_max_chars = 0\n",
                "commands.prompt_max_chars",
            ),
        ] {
            std::fs::write(&file, toml).expect("write");
            let error = Config::load_from(Some(&file), env(&[]))
                .expect_err(toml)
                .to_string();
            assert!(error.contains(expected), "{toml}: {error}");
        }
    }

    #[test]
    fn operations_take_their_price_timeout_and_routes_from_one_section() {
        use bot_core::{command::Quality, pricing::Operation};
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("imagegpt.toml");
        std::fs::write(
            &file,
            "[operations.image]\nprice = { standard = 2, hd = 3, 4k = 6 }\ntimeout_seconds = 30\n\
             routes = [\"local\"]\n[operations.music]\nprice = { credits = 4, per_seconds = 20 }\n",
        )
        .expect("write");
        let config = Config::load_from(Some(&file), env(&[])).expect("valid");
        assert_eq!(
            config.pricing.cost(Operation::Image(Quality::FourK)).get(),
            6
        );
        assert_eq!(
            config.pricing.cost(Operation::Music { seconds: 30 }).get(),
            8
        );
        assert_eq!(
            config.pricing.cost(Operation::Enhance).get(),
            1,
            "the table's"
        );
        assert_eq!(
            config
                .workers
                .timeouts
                .of(Operation::Image(Quality::Standard)),
            std::time::Duration::from_secs(30)
        );
        assert_eq!(config.providers.routes["image"], ["local"]);
        assert!(config.deprecated.is_empty(), "{:?}", config.deprecated);
        for (toml, expected) in [
            (
                "[operations.enhance]\nprice = { standard = 1, hd = 2, 4k = 3 }\n",
                "operations.enhance.price",
            ),
            ("[operations.teleport]\nprice = 1\n", "operations.teleport"),
            ("[operations.video]\nroutes = [\"nobody\"]\n", "video"),
        ] {
            std::fs::write(&file, toml).expect("write");
            let error = Config::load_from(Some(&file), env(&[]))
                .expect_err(toml)
                .to_string();
            assert!(error.contains(expected), "{toml}: {error}");
        }
    }

    #[test]
    fn the_old_scattered_keys_still_work_and_are_reported_as_deprecated() {
        use bot_core::{command::Quality, pricing::Operation};
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("imagegpt.toml");
        std::fs::write(
            &file,
            "[pricing]\nimage_hd = 3\nremove_background = 2\n[workers.timeouts]\nvideo = 60\n\
             [providers.routes]\nimage = [\"local\"]\n[operations.removebg]\nprice = 5\n",
        )
        .expect("write");
        let config = Config::load_from(Some(&file), env(&[])).expect("valid");
        assert_eq!(config.pricing.cost(Operation::Image(Quality::Hd)).get(), 3);
        assert_eq!(
            config.pricing.cost(Operation::RemoveBackground).get(),
            5,
            "[operations] wins over the alias"
        );
        assert_eq!(
            config.workers.timeouts.of(Operation::Video { seconds: 5 }),
            std::time::Duration::from_secs(60)
        );
        assert_eq!(config.providers.routes["image"], ["local"]);
        let deprecated = config.deprecated.join("\n");
        for key in [
            "pricing.image_*",
            "pricing.remove_background",
            "[workers.timeouts]",
            "[providers.routes]",
        ] {
            assert!(deprecated.contains(key), "{key} in {deprecated}");
        }
    }

    #[test]
    fn a_missing_config_file_is_an_error_but_an_absent_default_is_not() {
        let error = Config::load_from(Some(Path::new("/nonexistent/imagegpt.toml")), env(&[]))
            .expect_err("missing file");
        assert!(error.to_string().contains("--config"), "{error}");
    }

    #[test]
    fn unknown_keys_in_the_file_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("imagegpt.toml");
        std::fs::write(&file, "[stripe]\nsecret = \"typo\"\n").expect("write");
        let error = Config::load_from(Some(&file), env(&[])).expect_err("typo");
        assert!(error.to_string().contains("secret"), "{error}");
    }

    #[test]
    fn the_deploy_env_template_names_every_variable() {
        let template = include_str!("../deploy/imagegpt.env.example");
        for (variable, _, _) in ENVIRONMENT {
            assert!(
                template.contains(&format!("{variable}=")),
                "deploy/imagegpt.env.example does not document {variable}"
            );
        }
    }

    #[test]
    fn the_example_file_documents_every_variable_and_loads() {
        let example = include_str!("../imagegpt.example.toml");
        for (variable, _, _) in ENVIRONMENT {
            assert!(
                example.contains(variable),
                "imagegpt.example.toml does not mention {variable}"
            );
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("imagegpt.toml");
        std::fs::write(&file, example).expect("write");
        let config = Config::load_from(Some(&file), env(&[])).expect("the example loads");
        assert_eq!(config.database.url, DatabaseConfig::default().url);
    }
}
