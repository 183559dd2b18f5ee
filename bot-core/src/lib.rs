//! The domain of imagegpt: people, credits and the ledger, and the store they live in.
//! Knows nothing of Telegram, Discord, Stripe or HTTP servers; adapters depend on it, never the
//! other way round.
//!
//! # Layout
//!
//! - [`admin`]: operator actions (credits, bans, freezes, lookups, stats, refund decisions), each
//!   written to the audit table.
//! - [`chat`]: requests and replies between adapters and the core, and who may see a reply.
//! - [`command`]: the one command grammar: text (or slash options) to [`command::Command`];
//!   a [`command::Grammar`] holds the specs built once from the configuration.
//! - [`operation`]: every operation in one table: name, label, photos, price rule, timeout.
//! - [`pricing`]: what every operation costs and which packs are sold.
//! - [`policy`]: the content policy checked before any credit is held.
//! - [`money`]: [`Credits`], the only type that counts credits.
//! - [`ids`]: newtypes for database ids and platform identities (`telegram:42`).
//! - [`people`]: a person, their wallet and their linked platform identities.
//! - [`ledger`]: double-entry, two-phase credit transfers with idempotency keys and purchase lots;
//!   [`store::audit`] proves the books balance on a live database.
//! - [`links`]: one wallet across platforms: one-time codes that join two identities.
//! - [`jobs`]: the durable job queue: enqueue with the hold, fair claims with leases, one end.
//! - [`payments`]: credit packs bought on Stripe or with Telegram Stars, credited once per
//!   order; refunds of unused credits; the notices outbox (records, worded as they are sent);
//!   the [`payments::PaymentRail`] port.
//! - [`quotes`]: priced operations waiting for Confirm.
//! - [`service`]: the façade adapters call (`handle(Request) -> Reply`), the [`service::Messenger`]
//!   port they implement, and the job worker.
//! - [`store`]: the sqlx store over SQLite (embedded default) or PostgreSQL, with migrations;
//!   every SQL statement lives under `store/`, read into named rows (`store/rows.rs`).
//! - [`metrics`]: the process's Prometheus metrics.
//! - [`media`]: upload checks (magic bytes, size, header pixel count) and result media.
//! - [`providers`]: the provider trait; the offline `local` provider; provider configuration.
//! - [`error`]: the crate's one error enum.
//! - [`listing`]: lists in configuration (a TOML list or comma-separated text).

#![forbid(unsafe_code)]

pub mod admin;
pub mod chat;
pub mod command;
pub mod error;
pub mod ids;
pub mod jobs;
pub mod ledger;
pub mod links;
pub mod listing;
pub mod media;
pub mod metrics;
pub mod money;
pub mod operation;
pub mod payments;
pub mod people;
pub mod policy;
pub mod pricing;
pub mod providers;
pub mod quotes;
pub mod service;
pub mod store;

pub use error::{Error, Fault, Faulted, Result, UserError};
pub use ids::{
    AccountId, Identity, JobId, LotId, Platform, PurchaseId, RefundId, TransferId, UserId,
};
pub use money::{Credits, Usd};
pub use store::{Backend, DatabaseConfig, Store};
