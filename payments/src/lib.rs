//! Payments: Stripe Checkout, the Stripe webhook and refunds. The ledger stays in `bot_core`;
//! this crate only talks to Stripe. For now it owns its configuration section; checkout and the
//! webhook arrive with the payments issue.

#![forbid(unsafe_code)]

use secrecy::SecretString;
use serde::Deserialize;

/// The `[stripe]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StripeConfig {
    /// `STRIPE_SECRET_KEY`; card payments are off without it.
    pub secret_key: Option<SecretString>,
    /// `STRIPE_WEBHOOK_SECRET`: verifies `Stripe-Signature` on `POST /stripe/webhook`.
    pub webhook_secret: Option<SecretString>,
    /// `STRIPE_API_URL`: replaces `https://api.stripe.com`; requests go to `…/v1/…`.
    pub api_url: String,
}

impl Default for StripeConfig {
    fn default() -> Self {
        StripeConfig {
            secret_key: None,
            webhook_secret: None,
            api_url: "https://api.stripe.com".into(),
        }
    }
}
