//! The Telegram adapter: turns Bot API updates into `bot_core` requests and core replies into
//! Telegram messages, with teloxide. Holds no business rule.

#![forbid(unsafe_code)]

mod adapter;
mod messenger;
pub mod text;
pub mod updates;

pub use adapter::{Error, Telegram};
pub use messenger::TelegramMessenger;

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
        }
    }
}

/// The ways people can pay inside Telegram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentRail {
    /// Telegram Stars (XTR), required for digital goods sold inside Telegram.
    Stars,
    /// A Stripe Checkout link.
    Stripe,
}

impl PaymentRail {
    /// Parses `TELEGRAM_PAYMENT_RAILS`; `None` names the first unknown rail.
    ///
    /// # Errors
    ///
    /// The unknown or empty entry, for the configuration error message.
    pub fn parse_list(text: &str) -> Result<Vec<PaymentRail>, String> {
        let mut rails = Vec::new();
        for part in text.split(',').map(str::trim) {
            let rail = match part {
                "stars" => PaymentRail::Stars,
                "stripe" => PaymentRail::Stripe,
                other => return Err(other.to_string()),
            };
            if !rails.contains(&rail) {
                rails.push(rail);
            }
        }
        Ok(rails)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payment_rails_parse_in_the_order_given() {
        assert_eq!(
            PaymentRail::parse_list("stars"),
            Ok(vec![PaymentRail::Stars])
        );
        assert_eq!(
            PaymentRail::parse_list("stripe, stars,stripe"),
            Ok(vec![PaymentRail::Stripe, PaymentRail::Stars])
        );
        assert_eq!(
            PaymentRail::parse_list("stars,paypal"),
            Err("paypal".into())
        );
        assert_eq!(PaymentRail::parse_list(""), Err(String::new()));
    }
}
