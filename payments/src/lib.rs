//! Payments: Stripe Checkout, the Stripe webhook and card refunds, with async-stripe. The ledger
//! and every rule about credits stay in `bot_core`; this crate only talks to Stripe and turns
//! its events into [`bot_core::payments::PaymentEvent`]s.
//!
//! - [`checkout`]: [`Stripe`], the card [`PaymentRail`](bot_core::payments::PaymentRail):
//!   Checkout Sessions, refunds, fees from balance transactions.
//! - [`webhook`]: `POST /stripe/webhook` (signature-verified) and the small `/checkout/*` pages.

#![forbid(unsafe_code)]

pub mod checkout;
pub mod webhook;

use secrecy::SecretString;
use serde::Deserialize;

pub use checkout::Stripe;
pub use webhook::router;

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
    /// The card fee assumed until Stripe's balance transaction tells the real one, in basis
    /// points of the price (290 = 2.9 %)…
    pub fee_basis_points: u64,
    /// …plus this many of the currency's smallest unit.
    pub fee_fixed: u64,
    /// How long Stripe may take to answer one request, in seconds.
    pub timeout_seconds: u64,
}

impl Default for StripeConfig {
    fn default() -> Self {
        StripeConfig {
            secret_key: None,
            webhook_secret: None,
            api_url: "https://api.stripe.com".into(),
            fee_basis_points: 290,
            fee_fixed: 30,
            timeout_seconds: 20,
        }
    }
}

/// What can go wrong setting Stripe up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The client could not be built from the configuration.
    #[error("stripe: {0}")]
    Config(String),
}
