//! The double-entry credit ledger, after TigerBeetle's two-phase transfers.
//!
//! Every change of a balance is a [`Transfer`] of a positive amount from one account to another,
//! keyed by a unique idempotency key, so the sum of all balances is always zero. A hold is a
//! pending transfer that lowers the wallet's available credits at once and is later posted or
//! voided, exactly once. Credits posted into a wallet form lots; wallet debits consume the oldest
//! lot first, so a refund can tell how much of a purchase is unused.

pub mod audit;

use std::fmt;

use sqlx::{Any, Transaction};

use crate::{
    AccountId, Credits, Error, LotId, Result, Store, TransferId,
    store::{is_check_violation, now_millis},
};

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
}

impl TransferKind {
    const ALL: [TransferKind; 5] = [
        TransferKind::Purchase,
        TransferKind::Grant,
        TransferKind::Generation,
        TransferKind::Refund,
        TransferKind::Adjustment,
    ];

    /// The name stored in the database.
    pub const fn as_str(self) -> &'static str {
        match self {
            TransferKind::Purchase => "purchase",
            TransferKind::Grant => "grant",
            TransferKind::Generation => "generation",
            TransferKind::Refund => "refund",
            TransferKind::Adjustment => "adjustment",
        }
    }

    fn from_db(value: &str) -> Result<TransferKind> {
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

    fn from_db(value: &str) -> Result<TransferState> {
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
        posted.checked_sub(self.debits_pending).unwrap_or(Credits::ZERO)
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
enum Phase {
    Pending,
    Posted,
}

const TRANSFER_COLUMNS: &str = "id, idempotency_key, debit_account_id, credit_account_id, amount, \
                                kind, state, two_phase, memo, created_at";

type TransferRow = (
    i64,
    String,
    i64,
    i64,
    i64,
    String,
    String,
    i64,
    Option<String>,
    i64,
);

fn transfer_from_row(row: TransferRow) -> Result<Transfer> {
    let (id, key, debit, credit, amount, kind, state, two_phase, memo, created_at) = row;
    Ok(Transfer {
        id: TransferId::from_db(id),
        key,
        debit: AccountId::from_db(debit),
        credit: AccountId::from_db(credit),
        amount: Credits::from_db(amount)?,
        kind: TransferKind::from_db(&kind)?,
        state: TransferState::from_db(&state)?,
        two_phase: two_phase == 1,
        memo,
        created_at,
    })
}

impl Store {
    /// The id of a system account.
    pub fn account(&self, account: SystemAccount) -> AccountId {
        self.system_account(account)
    }

    /// Moves credits at once (a purchase, a grant, an adjustment).
    ///
    /// # Errors
    ///
    /// [`Error::ZeroAmount`], [`Error::SameAccount`], [`Error::UnknownAccount`];
    /// [`Error::InsufficientCredits`] when a wallet debit exceeds what it has available;
    /// [`Error::IdempotencyConflict`] when the key was used for a different transfer. The same
    /// request again returns the first transfer and changes nothing.
    pub async fn transfer(&self, request: &TransferRequest) -> Result<Transfer> {
        self.retrying(|| self.create_transfer(request, Phase::Posted))
            .await
    }

    /// Holds credits: a pending transfer that lowers the debit wallet's available credits now
    /// and is later [posted](Store::post) or [voided](Store::void).
    ///
    /// # Errors
    ///
    /// As [`Store::transfer`].
    pub async fn hold(&self, request: &TransferRequest) -> Result<Transfer> {
        self.retrying(|| self.create_transfer(request, Phase::Pending))
            .await
    }

    /// Makes a pending transfer final.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownTransfer`]; [`Error::TransferAlreadyResolved`] when it was already posted
    /// or voided (or never pending).
    pub async fn post(&self, id: TransferId) -> Result<Transfer> {
        self.retrying(|| self.resolve(id, TransferState::Posted))
            .await
    }

    /// Releases a pending transfer: the credits come back to the debit account.
    ///
    /// # Errors
    ///
    /// As [`Store::post`].
    pub async fn void(&self, id: TransferId) -> Result<Transfer> {
        self.retrying(|| self.resolve(id, TransferState::Voided))
            .await
    }

    /// The transfer recorded under an idempotency key.
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails.
    pub async fn transfer_by_key(&self, key: &str) -> Result<Option<Transfer>> {
        let sql = format!("SELECT {TRANSFER_COLUMNS} FROM transfers WHERE idempotency_key = $1");
        sqlx::query_as::<_, TransferRow>(sqlx::AssertSqlSafe(sql))
            .bind(key)
            .fetch_optional(&self.inner.read)
            .await?
            .map(transfer_from_row)
            .transpose()
    }

    /// The running totals of an account.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownAccount`]; [`Error::Internal`] when the database fails.
    pub async fn account_balance(&self, account: AccountId) -> Result<AccountBalance> {
        let row: Option<(i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT debits_posted, credits_posted, debits_pending, credits_pending \
             FROM accounts WHERE id = $1",
        )
        .bind(account.get())
        .fetch_optional(&self.inner.read)
        .await?;
        let (dp, cp, dq, cq) = row.ok_or(Error::UnknownAccount(account))?;
        Ok(AccountBalance {
            debits_posted: Credits::from_db(dp)?,
            credits_posted: Credits::from_db(cp)?,
            debits_pending: Credits::from_db(dq)?,
            credits_pending: Credits::from_db(cq)?,
        })
    }

    /// A wallet's lots, oldest first, including spent ones.
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails.
    pub async fn lots(&self, wallet: AccountId) -> Result<Vec<Lot>> {
        let rows: Vec<(i64, i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT id, transfer_id, credits, remaining, created_at FROM lots \
             WHERE account_id = $1 ORDER BY id",
        )
        .bind(wallet.get())
        .fetch_all(&self.inner.read)
        .await?;
        rows.into_iter()
            .map(|(id, transfer, credits, remaining, created_at)| {
                Ok(Lot {
                    id: LotId::from_db(id),
                    transfer: TransferId::from_db(transfer),
                    credits: Credits::from_db(credits)?,
                    remaining: Credits::from_db(remaining)?,
                    created_at,
                })
            })
            .collect()
    }

    async fn create_transfer(&self, request: &TransferRequest, phase: Phase) -> Result<Transfer> {
        if request.amount.is_zero() {
            return Err(Error::ZeroAmount);
        }
        if request.debit == request.credit {
            return Err(Error::SameAccount);
        }
        let now = now_millis();
        let (state, two_phase, resolved_at) = match phase {
            Phase::Pending => (TransferState::Pending, true, None),
            Phase::Posted => (TransferState::Posted, false, Some(now)),
        };
        let mut tx = self.begin().await?;
        let inserted: Option<i64> = match sqlx::query_scalar(
            "INSERT INTO transfers (idempotency_key, debit_account_id, credit_account_id, amount, \
             kind, state, two_phase, memo, created_at, resolved_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
        )
        .bind(&request.key)
        .bind(request.debit.get())
        .bind(request.credit.get())
        .bind(request.amount.to_db())
        .bind(request.kind.as_str())
        .bind(state.as_str())
        .bind(i64::from(two_phase))
        .bind(request.memo.as_deref())
        .bind(now)
        .bind(resolved_at)
        .fetch_optional(&mut *tx)
        .await
        {
            Ok(inserted) => inserted,
            Err(sqlx::Error::Database(db))
                if matches!(db.kind(), sqlx::error::ErrorKind::ForeignKeyViolation) =>
            {
                drop(tx);
                return Err(self.missing_account(request).await);
            }
            Err(other) => return Err(other.into()),
        };
        let Some(id) = inserted else {
            let existing = transfer_by_key_in(&mut tx, &request.key)
                .await?
                .ok_or_else(|| anyhow::anyhow!("transfer {:?} vanished", request.key))?;
            tx.commit().await?;
            let same = existing.debit == request.debit
                && existing.credit == request.credit
                && existing.amount == request.amount
                && existing.kind == request.kind
                && existing.two_phase == two_phase;
            return if same {
                Ok(existing)
            } else {
                Err(Error::IdempotencyConflict {
                    key: request.key.clone(),
                })
            };
        };
        let id = TransferId::from_db(id);
        let sql = match phase {
            Phase::Pending => {
                "UPDATE accounts SET \
                 debits_pending = debits_pending + CASE WHEN id = $1 THEN $3 ELSE 0 END, \
                 credits_pending = credits_pending + CASE WHEN id = $2 THEN $3 ELSE 0 END \
                 WHERE id IN ($1, $2) RETURNING id, kind"
            }
            Phase::Posted => {
                "UPDATE accounts SET \
                 debits_posted = debits_posted + CASE WHEN id = $1 THEN $3 ELSE 0 END, \
                 credits_posted = credits_posted + CASE WHEN id = $2 THEN $3 ELSE 0 END \
                 WHERE id IN ($1, $2) RETURNING id, kind"
            }
        };
        let touched = sqlx::query_as::<_, (i64, String)>(sql)
            .bind(request.debit.get())
            .bind(request.credit.get())
            .bind(request.amount.to_db())
            .fetch_all(&mut *tx)
            .await
            .map_err(Error::from);
        let touched = match touched {
            Ok(touched) => touched,
            Err(error) if is_check_violation(&error) => {
                drop(tx);
                let available = self.account_balance(request.debit).await?.available();
                return Err(Error::InsufficientCredits {
                    needed: request.amount,
                    available,
                });
            }
            Err(error) => return Err(error),
        };
        let is_wallet = |account: AccountId| {
            touched
                .iter()
                .any(|(id, kind)| *id == account.get() && kind == "wallet")
        };
        if is_wallet(request.debit) {
            consume_oldest_lots(&mut tx, request.debit, id, request.amount).await?;
        }
        if phase == Phase::Posted && is_wallet(request.credit) {
            open_lot(&mut tx, request.credit, id, request.amount, now).await?;
        }
        tx.commit().await?;
        Ok(Transfer {
            id,
            key: request.key.clone(),
            debit: request.debit,
            credit: request.credit,
            amount: request.amount,
            kind: request.kind,
            state,
            two_phase,
            memo: request.memo.clone(),
            created_at: now,
        })
    }

    /// Explains a foreign-key refusal of a transfer: which account does not exist.
    async fn missing_account(&self, request: &TransferRequest) -> Error {
        for account in [request.debit, request.credit] {
            if let Err(error) = self.account_balance(account).await {
                return error;
            }
        }
        Error::Internal(anyhow::anyhow!(
            "transfer {:?} was refused by a foreign key",
            request.key
        ))
    }

    async fn resolve(&self, id: TransferId, to: TransferState) -> Result<Transfer> {
        let now = now_millis();
        let mut tx = self.begin().await?;
        let sql = format!(
            "UPDATE transfers SET state = $2, resolved_at = $3 \
             WHERE id = $1 AND state = 'pending' RETURNING {TRANSFER_COLUMNS}"
        );
        let row = sqlx::query_as::<_, TransferRow>(sqlx::AssertSqlSafe(sql))
            .bind(id.get())
            .bind(to.as_str())
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            let state: Option<String> =
                sqlx::query_scalar("SELECT state FROM transfers WHERE id = $1")
                    .bind(id.get())
                    .fetch_optional(&mut *tx)
                    .await?;
            return Err(match state {
                None => Error::UnknownTransfer(id),
                Some(state) => Error::TransferAlreadyResolved {
                    id,
                    state: TransferState::from_db(&state)?,
                },
            });
        };
        let transfer = transfer_from_row(row)?;
        let sql = match to {
            TransferState::Posted => {
                "UPDATE accounts SET \
                 debits_pending = debits_pending - CASE WHEN id = $1 THEN $3 ELSE 0 END, \
                 debits_posted = debits_posted + CASE WHEN id = $1 THEN $3 ELSE 0 END, \
                 credits_pending = credits_pending - CASE WHEN id = $2 THEN $3 ELSE 0 END, \
                 credits_posted = credits_posted + CASE WHEN id = $2 THEN $3 ELSE 0 END \
                 WHERE id IN ($1, $2) RETURNING id, kind"
            }
            TransferState::Voided | TransferState::Pending => {
                "UPDATE accounts SET \
                 debits_pending = debits_pending - CASE WHEN id = $1 THEN $3 ELSE 0 END, \
                 credits_pending = credits_pending - CASE WHEN id = $2 THEN $3 ELSE 0 END \
                 WHERE id IN ($1, $2) RETURNING id, kind"
            }
        };
        let touched = sqlx::query_as::<_, (i64, String)>(sql)
            .bind(transfer.debit.get())
            .bind(transfer.credit.get())
            .bind(transfer.amount.to_db())
            .fetch_all(&mut *tx)
            .await?;
        let is_wallet = |account: AccountId| {
            touched
                .iter()
                .any(|(id, kind)| *id == account.get() && kind == "wallet")
        };
        match to {
            TransferState::Posted if is_wallet(transfer.credit) => {
                open_lot(&mut tx, transfer.credit, id, transfer.amount, now).await?;
            }
            TransferState::Voided if is_wallet(transfer.debit) => {
                restore_lots(&mut tx, id).await?;
            }
            _ => {}
        }
        tx.commit().await?;
        Ok(Transfer {
            state: to,
            ..transfer
        })
    }
}

async fn transfer_by_key_in(
    tx: &mut Transaction<'static, Any>,
    key: &str,
) -> Result<Option<Transfer>> {
    let sql = format!("SELECT {TRANSFER_COLUMNS} FROM transfers WHERE idempotency_key = $1");
    sqlx::query_as::<_, TransferRow>(sqlx::AssertSqlSafe(sql))
        .bind(key)
        .fetch_optional(&mut **tx)
        .await?
        .map(transfer_from_row)
        .transpose()
}

/// Opens a lot for credits posted into a wallet.
async fn open_lot(
    tx: &mut Transaction<'static, Any>,
    wallet: AccountId,
    transfer: TransferId,
    amount: Credits,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO lots (account_id, transfer_id, credits, remaining, created_at) \
         VALUES ($1, $2, $3, $3, $4)",
    )
    .bind(wallet.get())
    .bind(transfer.get())
    .bind(amount.to_db())
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Draws `amount` from a wallet's open lots, oldest first. The wallet row is already locked by
/// this transaction's balance update, so no other transaction changes its lots meanwhile.
async fn consume_oldest_lots(
    tx: &mut Transaction<'static, Any>,
    wallet: AccountId,
    transfer: TransferId,
    amount: Credits,
) -> Result<()> {
    let open: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT id, remaining FROM lots WHERE account_id = $1 AND remaining > 0 ORDER BY id",
    )
    .bind(wallet.get())
    .fetch_all(&mut **tx)
    .await?;
    let mut left = amount;
    for (lot, remaining) in open {
        if left.is_zero() {
            break;
        }
        let take = left.min(Credits::from_db(remaining)?);
        sqlx::query("UPDATE lots SET remaining = remaining - $1 WHERE id = $2")
            .bind(take.to_db())
            .bind(lot)
            .execute(&mut **tx)
            .await?;
        sqlx::query("INSERT INTO lot_consumptions (transfer_id, lot_id, amount) VALUES ($1, $2, $3)")
            .bind(transfer.get())
            .bind(lot)
            .bind(take.to_db())
            .execute(&mut **tx)
            .await?;
        left = left.checked_sub(take).unwrap_or(Credits::ZERO);
    }
    if !left.is_zero() {
        return Err(Error::Internal(anyhow::anyhow!(
            "wallet {wallet} has fewer credits in lots than in its balance; run `imagegpt audit`"
        )));
    }
    Ok(())
}

/// Gives a voided hold's credits back to the lots it drew from.
async fn restore_lots(tx: &mut Transaction<'static, Any>, transfer: TransferId) -> Result<()> {
    sqlx::query(
        "UPDATE lots SET remaining = remaining + \
           (SELECT c.amount FROM lot_consumptions c WHERE c.lot_id = lots.id AND c.transfer_id = $1) \
         WHERE id IN (SELECT lot_id FROM lot_consumptions WHERE transfer_id = $1)",
    )
    .bind(transfer.get())
    .execute(&mut **tx)
    .await?;
    sqlx::query("DELETE FROM lot_consumptions WHERE transfer_id = $1")
        .bind(transfer.get())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests;
