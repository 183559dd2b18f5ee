//! The Telegram adapter: turns Bot API updates into `bot_core` requests and core replies into
//! Telegram messages, with teloxide. Holds no business rule.

#![forbid(unsafe_code)]

mod adapter;
mod messenger;
mod pace;
mod stars;
pub mod text;
pub mod updates;

pub use adapter::{Error, Telegram};
pub use messenger::TelegramMessenger;
pub use stars::Stars;

use secrecy::SecretString;
use serde::Deserialize;

/// The `[telegram]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelegramConfig {
    /// `TELEGRAM_BOT_TOKEN`; the adapter is off without it.
    pub bot_token: Option<SecretString>,
    /// `TELEGRAM_API_URL`: replaces `https://api.telegram.org` (teloxide's `TELOXIDE_API_URL`).
    pub api_url: String,
    /// `TELEGRAM_WEBHOOK_URL`: webhook mode instead of long polling when set.
    pub webhook_url: Option<String>,
    /// `TELEGRAM_WEBHOOK_SECRET`: checked against `X-Telegram-Bot-Api-Secret-Token`.
    pub webhook_secret: Option<SecretString>,
    /// `TELEGRAM_PAYMENT_RAILS`: `stars`, `stripe` or `stars,stripe`.
    pub payment_rails: Option<String>,
    /// How long to wait for the rest of an album (photos sent together), in milliseconds.
    pub album_window_ms: u64,
    /// Messages sent per second across all chats (Telegram allows about 30).
    pub messages_per_second: u32,
    /// The largest result uploaded to Telegram, in bytes (the Bot API takes 50 MB; a local Bot
    /// API server more). Larger images are re-encoded to fit; anything else larger is sent as a
    /// link under `PUBLIC_BASE_URL`.
    pub upload_limit_bytes: usize,
}

impl Default for TelegramConfig {
    fn default() -> Self {
        TelegramConfig {
            bot_token: None,
            api_url: "https://api.telegram.org".into(),
            webhook_url: None,
            webhook_secret: None,
            payment_rails: None,
            album_window_ms: 800,
            messages_per_second: 30,
            upload_limit_bytes: 50 * 1024 * 1024,
        }
    }
}
