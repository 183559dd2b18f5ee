//! The double-entry credit ledger, after TigerBeetle's two-phase transfers.
//!
//! Every change of a balance is a [`Transfer`] of a positive amount from one account to another,
//! keyed by a unique idempotency key, so the sum of all balances is always zero. A hold is a
//! pending transfer that lowers the wallet's available credits at once and is later posted or
//! voided, exactly once. Credits posted into a wallet form lots; wallet debits consume the oldest
//! lot first, so a refund can tell how much of a purchase is unused.

use std::fmt;

use crate::{AccountId, Credits, Error, LotId, Result, TransferId};

/// The accounts that are not people's wallets: where credits come from and go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SystemAccount {
    /// Credits sold for card payments through Stripe.
    CardSales,
    /// Credits sold for Telegram Stars.
    StarsSales,
    /// Credits given away: welcome credits and admin grants.
    Grants,
    /// Credits spent on generations.
    GenerationRevenue,
    /// Unused credits taken back when a purchase is refunded.
    Refunds,
}

impl SystemAccount {
    /// Every system account, in the order of their slots in the store.
    pub const ALL: [SystemAccount; 5] = [
        SystemAccount::CardSales,
        SystemAccount::StarsSales,
        SystemAccount::Grants,
        SystemAccount::GenerationRevenue,
        SystemAccount::Refunds,
    ];

    /// The account's `code` in the database.
    pub const fn code(self) -> &'static str {
        match self {
            SystemAccount::CardSales => "card_sales",
            SystemAccount::StarsSales => "stars_sales",
            SystemAccount::Grants => "grants",
            SystemAccount::GenerationRevenue => "generation_revenue",
            SystemAccount::Refunds => "refunds",
        }
    }
}

/// Why credits moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransferKind {
    /// Credits bought with money.
    Purchase,
    /// Credits given: welcome credits, admin grants.
    Grant,
    /// Credits spent (or held) for a generation.
    Generation,
    /// Unused credits of a purchase taken back for a refund.
    Refund,
    /// An operator's correction, with a reason in the memo.
    Adjustment,
    /// A balance moved to the wallet of the person an identity was linked to (§3.4).
    Link,
}

impl TransferKind {
    const ALL: [TransferKind; 6] = [
        TransferKind::Purchase,
        TransferKind::Grant,
        TransferKind::Generation,
        TransferKind::Refund,
        TransferKind::Adjustment,
        TransferKind::Link,
    ];

    /// The name stored in the database.
    pub const fn as_str(self) -> &'static str {
        match self {
            TransferKind::Purchase => "purchase",
            TransferKind::Grant => "grant",
            TransferKind::Generation => "generation",
            TransferKind::Refund => "refund",
            TransferKind::Adjustment => "adjustment",
            TransferKind::Link => "link",
        }
    }

    pub(crate) fn from_db(value: &str) -> Result<TransferKind> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == value)
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("unknown transfer kind {value:?}")))
    }
}

/// Where a transfer is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransferState {
    /// A hold: counted against the debit account's available credits, not yet final.
    Pending,
    /// Final.
    Posted,
    /// A hold that was released; it moved nothing.
    Voided,
}

impl TransferState {
    /// The name stored in the database.
    pub const fn as_str(self) -> &'static str {
        match self {
            TransferState::Pending => "pending",
            TransferState::Posted => "posted",
            TransferState::Voided => "voided",
        }
    }

    pub(crate) fn from_db(value: &str) -> Result<TransferState> {
        match value {
            "pending" => Ok(TransferState::Pending),
            "posted" => Ok(TransferState::Posted),
            "voided" => Ok(TransferState::Voided),
            other => Err(Error::Internal(anyhow::anyhow!(
                "unknown transfer state {other:?}"
            ))),
        }
    }
}

impl fmt::Display for TransferState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A transfer to make: from `debit` to `credit`, once per `key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferRequest {
    /// Unique per transfer: a job id, a Stripe event or session id, a refund id.
    pub key: String,
    pub debit: AccountId,
    pub credit: AccountId,
    pub amount: Credits,
    pub kind: TransferKind,
    /// A note for people reading the books (an admin's reason, a pack name).
    pub memo: Option<String>,
}

/// A transfer as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    pub id: TransferId,
    pub key: String,
    pub debit: AccountId,
    pub credit: AccountId,
    pub amount: Credits,
    pub kind: TransferKind,
    pub state: TransferState,
    /// Made as a hold (pending first) rather than posted at once.
    pub two_phase: bool,
    pub memo: Option<String>,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// The four running totals an account keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AccountBalance {
    pub debits_posted: Credits,
    pub credits_posted: Credits,
    pub debits_pending: Credits,
    pub credits_pending: Credits,
}

impl AccountBalance {
    /// Posted credits in minus posted credits out; negative for accounts credits come from.
    pub fn net_posted(&self) -> i128 {
        i128::from(self.credits_posted.get()) - i128::from(self.debits_posted.get())
    }

    /// What a wallet can spend now: posted credits less those on hold.
    pub fn available(&self) -> Credits {
        let posted = self
            .credits_posted
            .checked_sub(self.debits_posted)
            .unwrap_or(Credits::ZERO);
        posted
            .checked_sub(self.debits_pending)
            .unwrap_or(Credits::ZERO)
    }
}

/// The credits one incoming transfer put into a wallet, and how many are still unused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lot {
    pub id: LotId,
    pub transfer: TransferId,
    pub credits: Credits,
    pub remaining: Credits,
    /// Unix milliseconds.
    pub created_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Pending,
    Posted,
}

#[cfg(test)]
mod tests;
