//! The Discord adapter: turns interactions (gateway or HTTP endpoint) into `bot_core` requests and
//! core replies into Discord messages. Holds no business rule. For now it owns its configuration
//! section; the adapter itself arrives with the Discord issue.

#![forbid(unsafe_code)]

use secrecy::SecretString;
use serde::Deserialize;

/// The `[discord]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiscordConfig {
    /// `DISCORD_BOT_TOKEN`; the adapter is off without it.
    pub bot_token: Option<SecretString>,
    /// `DISCORD_APPLICATION_ID`: the application's snowflake.
    pub application_id: Option<String>,
    /// `DISCORD_PUBLIC_KEY`: hex Ed25519 key; HTTP interactions mode when set.
    pub public_key: Option<String>,
    /// `DISCORD_API_URL`: replaces `https://discord.com`; requests go to `…/api/v10/…`.
    pub api_url: String,
}

impl Default for DiscordConfig {
    fn default() -> Self {
        DiscordConfig {
            bot_token: None,
            application_id: None,
            public_key: None,
            api_url: "https://discord.com".into(),
        }
    }
}
