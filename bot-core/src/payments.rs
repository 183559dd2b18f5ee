//! Buying credits and giving unused ones back (terms §4.1, §4.4–§4.6).
//!
//! A purchase is one order of a pack on one rail (a Stripe Checkout Session or a Telegram Stars
//! invoice). However many payment events arrive, in whatever order, a purchase is credited once:
//! the credit is a ledger transfer keyed by the purchase id, made in the transaction that marks it
//! paid. What the payment services report later (refunds made in Stripe's dashboard, disputes) is
//! kept as running facts on the purchase and settled against its lot, so the order of events
//! never matters. Messages that report money moving go through the [`notices`](Store::due_notices)
//! outbox, written in the same transaction, so they survive a restart.
//!
//! The payment services themselves sit behind the [`PaymentRail`] port; `payments` (Stripe) and
//! `telegram` (Stars) implement it.

#[cfg(test)]
mod tests;

use std::{fmt, future::Future, pin::Pin};

use crate::{Credits, Error, PurchaseId, RefundId, Result, UserId, chat::ChatRef};

/// What became of a payment event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOutcome {
    /// It changed something (or confirmed what was already true, for the first time).
    Applied,
    /// The same event id was applied before; nothing changed.
    Duplicate,
    /// Recorded, but nothing of ours to change (another system's payment, an unknown type).
    Ignored(&'static str),
}

/// A notice due for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeToSend {
    pub id: i64,
    pub chat: ChatRef,
    /// Whom it is for (the identity that paid), when known.
    pub recipient: Option<crate::Identity>,
    pub notice: Notice,
    pub attempts: u32,
}

/// What a notice tells, as a record: written in the transaction that moved the money, and put
/// into words only when it is sent (`service/words.rs`), so no wording is kept in the store.
/// Amounts are in the currency's smallest unit.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Notice {
    /// A purchase's credits arrived.
    Credited {
        order: PurchaseId,
        credits: Credits,
        amount: u64,
        currency: String,
        balance: Credits,
    },
    /// A card payment did not go through; nothing was added.
    PaymentFailed {
        order: PurchaseId,
        credits: Credits,
        amount: u64,
        currency: String,
    },
    /// Money refunded outside the bot (Stripe's dashboard) took back that share of the credits.
    RefundedOutside {
        order: PurchaseId,
        amount: u64,
        currency: String,
        removed: Credits,
        balance: Credits,
    },
    /// A dispute froze the wallet and took back the order's unused credits.
    Disputed { order: PurchaseId, removed: Credits },
    /// A refund asked for with /refund ended.
    RefundEnded {
        refund: RefundId,
        order: PurchaseId,
        outcome: RefundOutcome,
        /// Why it was declined or failed, as the payment service said.
        reason: Option<String>,
        amount: u64,
        currency: String,
        credits: Credits,
        balance: Credits,
    },
    /// Queued before notices were records (migration 0017): the words as they were written then.
    Worded { text: String },
}

/// How a refund ended, for its notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundOutcome {
    /// The money is on its way back; the credits are gone.
    Made,
    /// The payment service declined it; the credits are back.
    Declined,
    /// It could not be made; the credits are back.
    Failed,
}

/// How a purchase is paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rail {
    /// A card payment through Stripe Checkout.
    Stripe,
    /// Telegram Stars (XTR), required for digital goods sold inside Telegram.
    Stars,
}

impl Rail {
    /// The name used in configuration and in the database.
    pub const fn as_str(self) -> &'static str {
        match self {
            Rail::Stripe => "stripe",
            Rail::Stars => "stars",
        }
    }

    pub(crate) fn from_db(value: &str) -> Result<Rail> {
        match value {
            "stripe" => Ok(Rail::Stripe),
            "stars" => Ok(Rail::Stars),
            other => Err(Error::Internal(anyhow::anyhow!("unknown rail {other:?}"))),
        }
    }

    /// Parses a list such as `TELEGRAM_PAYMENT_RAILS` (`stars`, `stripe`, `stars,stripe`), in
    /// the order given, each once.
    ///
    /// # Errors
    ///
    /// The first unknown or empty entry.
    pub fn parse_list(text: &str) -> std::result::Result<Vec<Rail>, String> {
        let mut rails = Vec::new();
        for part in text.split(',').map(str::trim) {
            let rail = match part {
                "stars" => Rail::Stars,
                "stripe" => Rail::Stripe,
                other => return Err(other.to_string()),
            };
            if !rails.contains(&rail) {
                rails.push(rail);
            }
        }
        Ok(rails)
    }
}

impl fmt::Display for Rail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a purchase is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurchaseState {
    /// Ordered, not paid.
    Open,
    /// Paid and credited (once).
    Paid,
    /// The payment failed; nothing was credited.
    Failed,
}

impl PurchaseState {
    pub(crate) fn from_db(value: &str) -> Result<PurchaseState> {
        match value {
            "open" => Ok(PurchaseState::Open),
            "paid" => Ok(PurchaseState::Paid),
            "failed" => Ok(PurchaseState::Failed),
            other => Err(Error::Internal(anyhow::anyhow!(
                "unknown purchase state {other:?}"
            ))),
        }
    }
}

/// One order of a pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purchase {
    pub id: PurchaseId,
    pub user: UserId,
    /// The identity that ordered (`telegram:42`): the only one who may pay a Stars invoice.
    pub payer: String,
    pub pack: String,
    pub credits: Credits,
    pub rail: Rail,
    /// In the currency's smallest unit (cents; whole Stars for XTR).
    pub amount: u64,
    /// Lowercase ISO 4217 (`usd`), or `xtr` for Stars.
    pub currency: String,
    /// Where they bought: the "credits added" notice goes there.
    pub chat: ChatRef,
    pub state: PurchaseState,
    /// The processing fee, in the smallest unit.
    pub fee: u64,
    /// True until the payment service told the real fee.
    pub fee_estimated: bool,
    /// Money refunded or being refunded, as accounted for with credits.
    pub refunded: u64,
    pub stripe_session_id: Option<String>,
    pub stripe_payment_intent: Option<String>,
    pub stripe_charge_id: Option<String>,
    pub stripe_balance_transaction: Option<String>,
    pub telegram_charge_id: Option<String>,
    /// Unix milliseconds.
    pub created_at: i64,
    pub paid_at: Option<i64>,
}

/// What [`Store::create_purchase`] needs.
#[derive(Debug, Clone)]
pub struct NewPurchase {
    pub user: UserId,
    pub payer: String,
    pub pack: String,
    pub credits: Credits,
    pub rail: Rail,
    pub amount: u64,
    pub currency: String,
    pub chat: ChatRef,
    /// The fee assumed until the real one is known.
    pub fee_estimate: u64,
}

/// Where a refund is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundState {
    /// Waiting for an admin (`refunds.approval = admin`); the credits are on hold.
    AwaitingApproval,
    /// Being sent to the payment service; the credits are on hold.
    Processing,
    Succeeded,
    /// The payment service refused; the credits came back.
    Failed,
    /// An admin said no; the credits came back.
    Rejected,
}

impl RefundState {
    /// The name stored in the database.
    pub const fn as_str(self) -> &'static str {
        match self {
            RefundState::AwaitingApproval => "awaiting_approval",
            RefundState::Processing => "processing",
            RefundState::Succeeded => "succeeded",
            RefundState::Failed => "failed",
            RefundState::Rejected => "rejected",
        }
    }

    pub(crate) fn from_db(value: &str) -> Result<RefundState> {
        [
            RefundState::AwaitingApproval,
            RefundState::Processing,
            RefundState::Succeeded,
            RefundState::Failed,
            RefundState::Rejected,
        ]
        .into_iter()
        .find(|state| state.as_str() == value)
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("unknown refund state {value:?}")))
    }
}

/// A refund of a purchase's unused credits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refund {
    pub id: RefundId,
    pub purchase: PurchaseId,
    pub credits: Credits,
    /// Money to give back, in the purchase's currency's smallest unit.
    pub amount: u64,
    pub state: RefundState,
    pub failure: Option<String>,
}

/// Who decides a refund a person asked for (`refunds.approval`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Approval {
    /// Sent to the payment service at once.
    #[default]
    Auto,
    /// Waits for an admin (`imagegpt admin refunds approve ID`).
    Admin,
}

/// A purchase that can be refunded now, and for how much.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refundable {
    pub purchase: Purchase,
    pub unused: Credits,
    /// (paid − fee) × unused ÷ credits, rounded down; the whole payment for Stars.
    pub amount: u64,
}

/// What a payment service said about a payment, platform-neutral. The Stripe webhook turns
/// events into these; a purchase is found by its id (from the session's
/// `client_reference_id` or the payment's metadata) or by the Stripe ids already known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentEvent {
    /// The money arrived (`checkout.session.completed` with `payment_status` paid, or
    /// `checkout.session.async_payment_succeeded`).
    Paid {
        purchase: PurchaseId,
        session: String,
        payment_intent: Option<String>,
    },
    /// A delayed payment failed (`checkout.session.async_payment_failed`).
    Failed {
        purchase: PurchaseId,
        session: String,
    },
    /// What a charge says now (`charge.succeeded`, `charge.refunded`, …): its ids, and how much
    /// of it was refunded in total.
    Charge {
        purchase: Option<PurchaseId>,
        payment_intent: Option<String>,
        charge: String,
        balance_transaction: Option<String>,
        amount_refunded: u64,
    },
    /// The payer disputed the charge (`charge.dispute.created`).
    Disputed {
        purchase: Option<PurchaseId>,
        payment_intent: Option<String>,
        charge: String,
    },
}

/// What a payment service said when asked to act.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    /// A definite no, in words a person can read (a refund Stripe refuses).
    #[error("{0}")]
    Refused(String),
    /// Could not reach it or it failed; the outcome is unknown, so try again with the same key.
    #[error("the payment service is unavailable: {0}")]
    Unavailable(String),
}

/// How the person pays once a purchase is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checkout {
    /// Pay on this page (a Stripe Checkout Session); the id is the session's.
    Link { url: String, session: String },
    /// An invoice was sent into the chat (Telegram Stars).
    Sent,
}

/// A boxed future for calling a rail through `dyn PaymentRail`.
pub type PaymentFuture<'a, T> =
    Pin<Box<dyn Future<Output = std::result::Result<T, PaymentError>> + Send + 'a>>;

/// One way of taking money: the port the Stripe and Telegram Stars adapters implement.
pub trait PaymentRail: Send + Sync + fmt::Debug {
    /// Which rail this is.
    fn rail(&self) -> Rail;

    /// Starts paying for `purchase` (its pack's name in `title`).
    ///
    /// # Errors
    ///
    /// [`PaymentError`]; nothing was charged.
    fn checkout<'a>(
        &'a self,
        purchase: &'a Purchase,
        title: &'a str,
    ) -> PaymentFuture<'a, Checkout>;

    /// Gives `amount` of `purchase` back, once per `key` (a retry with the same key changes
    /// nothing more). Returns the service's refund id.
    ///
    /// # Errors
    ///
    /// [`PaymentError::Refused`] when the service says no; [`PaymentError::Unavailable`] when
    /// the outcome is unknown.
    fn refund<'a>(
        &'a self,
        purchase: &'a Purchase,
        amount: u64,
        key: &'a str,
    ) -> PaymentFuture<'a, String>;

    /// The real processing fee of a paid purchase, when the service can tell it.
    fn fee<'a>(&'a self, _purchase: &'a Purchase) -> PaymentFuture<'a, Option<u64>> {
        Box::pin(async { Ok(None) })
    }
}

/// A price as people write it: `$5`, `$10.50`, `12.00 EUR`, `250 Stars`.
pub fn format_price(amount: u64, currency: &str) -> String {
    let (whole, rest) = (amount / 100, amount % 100);
    match (currency, rest) {
        ("xtr" | "XTR", _) => format!("{amount} Stars"),
        ("usd", 0) => format!("${whole}"),
        ("usd", _) => format!("${whole}.{rest:02}"),
        (other, _) => format!("{whole}.{rest:02} {}", other.to_uppercase()),
    }
}

/// The money to give back for `unused` of a purchase's credits: its share of what was paid,
/// less that share of the fee (§4.4, §4.6); a Stars payment is refunded whole or not at all.
pub fn refund_amount(purchase: &Purchase, unused: Credits) -> u64 {
    match purchase.rail {
        Rail::Stars => purchase.amount,
        Rail::Stripe => {
            let net = u128::from(purchase.amount.saturating_sub(purchase.fee));
            let share = net * u128::from(unused.get()) / u128::from(purchase.credits.get().max(1));
            u64::try_from(share).unwrap_or(u64::MAX)
        }
    }
}
