//! The ledger's SQL: transfers by idempotency key, holds posted or voided once, balances and
//! purchase lots (the triggers of the schema move balances and lots with each transfer).

use crate::ledger::*;
use crate::{
    AccountId, Credits, Error, LotId, Result, Store, TransferId, UserId,
    store::{is_check_violation, is_foreign_key_violation, now_millis},
};
use crate::{Fault, UserError};
use sqlx::{AnyConnection, Row as _, any::AnyRow};
use std::sync::{Arc, LazyLock};

use super::plan::{Arg, Plan, Script, bind_all};

use super::rows::{AccountRow, named_row};

const TRANSFER_COLUMNS: &str = "id, idempotency_key, debit_account_id, credit_account_id, amount, \
                                kind, state, two_phase, memo, created_at";

named_row! {
    /// A transfer as [`TRANSFER_COLUMNS`] reads it.
    struct TransferRow {
        id: i64,
        idempotency_key: String,
        debit_account_id: i64,
        credit_account_id: i64,
        amount: i64,
        kind: String,
        state: String,
        two_phase: i64,
        memo: Option<String>,
        created_at: i64,
    }
}

fn transfer_from_row(row: TransferRow) -> Result<Transfer> {
    Ok(Transfer {
        id: TransferId::from_db(row.id),
        key: row.idempotency_key,
        debit: AccountId::from_db(row.debit_account_id),
        credit: AccountId::from_db(row.credit_account_id),
        amount: Credits::from_db(row.amount)?,
        kind: TransferKind::from_db(&row.kind)?,
        state: TransferState::from_db(&row.state)?,
        two_phase: row.two_phase == 1,
        memo: row.memo,
        created_at: row.created_at,
    })
}

named_row! {
    /// An account's running totals, as stored (or summed, for a system account).
    struct TotalsRow {
        debits_posted: i64,
        credits_posted: i64,
        debits_pending: i64,
        credits_pending: i64,
    }
}

named_row! {
    /// A lot of a wallet.
    struct LotRow {
        id: i64,
        transfer_id: i64,
        credits: i64,
        remaining: i64,
        created_at: i64,
    }
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
    /// [`Fault::ZeroAmount`], [`Fault::SameAccount`], [`Fault::UnknownAccount`];
    /// [`UserError::InsufficientCredits`] when a wallet debit exceeds what it has available;
    /// [`Fault::IdempotencyConflict`] when the key was used for a different transfer. The same
    /// request again returns the first transfer and changes nothing.
    pub async fn transfer(&self, request: &TransferRequest) -> Result<Transfer> {
        self.create_transfer(request, Phase::Posted).await
    }

    /// Holds credits: a pending transfer that lowers the debit wallet's available credits now
    /// and is later [posted](Store::post) or [voided](Store::void).
    ///
    /// # Errors
    ///
    /// As [`Store::transfer`].
    pub async fn hold(&self, request: &TransferRequest) -> Result<Transfer> {
        self.create_transfer(request, Phase::Pending).await
    }

    /// Makes a pending transfer final.
    ///
    /// # Errors
    ///
    /// [`Fault::UnknownTransfer`]; [`Fault::TransferAlreadyResolved`] when it was already posted
    /// or voided (or never pending).
    pub async fn post(&self, id: TransferId) -> Result<Transfer> {
        self.resolve(id, TransferState::Posted).await
    }

    /// Releases a pending transfer: the credits come back to the debit account.
    ///
    /// # Errors
    ///
    /// As [`Store::post`].
    pub async fn void(&self, id: TransferId) -> Result<Transfer> {
        self.resolve(id, TransferState::Voided).await
    }

    /// The transfer recorded under an idempotency key.
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails.
    pub async fn transfer_by_key(&self, key: &str) -> Result<Option<Transfer>> {
        transfer_with_key(&mut *self.reader().await?, key).await
    }

    /// The running totals of an account.
    ///
    /// # Errors
    ///
    /// [`Fault::UnknownAccount`]; [`Error::Internal`] when the database fails.
    pub async fn account_balance(&self, account: AccountId) -> Result<AccountBalance> {
        let remembered = &self.inner.balances;
        if let Some(balance) = remembered.get(account) {
            return Ok(balance);
        }
        let generation = remembered.generation(account);
        let row: Option<AccountRow> = sqlx::query_as(
            "SELECT id, kind, debits_posted, credits_posted, debits_pending, credits_pending \
             FROM accounts WHERE id = $1",
        )
        .bind(account.get())
        .fetch_optional(&mut *self.reader().await?)
        .await?;
        let row = row.ok_or_else(|| Error::from(Fault::UnknownAccount(account)))?;
        let totals: TotalsRow = if row.kind == "system" {
            // System accounts keep no running totals (see `create_transfer`); sum their transfers.
            sqlx::query_as(
                "SELECT \
                   COALESCE(CAST(SUM(CASE WHEN debit_account_id = $1 AND state = 'posted' THEN amount ELSE 0 END) AS BIGINT), 0) AS debits_posted, \
                   COALESCE(CAST(SUM(CASE WHEN credit_account_id = $1 AND state = 'posted' THEN amount ELSE 0 END) AS BIGINT), 0) AS credits_posted, \
                   COALESCE(CAST(SUM(CASE WHEN debit_account_id = $1 AND state = 'pending' THEN amount ELSE 0 END) AS BIGINT), 0) AS debits_pending, \
                   COALESCE(CAST(SUM(CASE WHEN credit_account_id = $1 AND state = 'pending' THEN amount ELSE 0 END) AS BIGINT), 0) AS credits_pending \
                 FROM transfers WHERE debit_account_id = $1 OR credit_account_id = $1",
            )
            .bind(account.get())
            .fetch_one(&mut *self.reader().await?)
            .await?
        } else {
            TotalsRow {
                debits_posted: row.debits_posted,
                credits_posted: row.credits_posted,
                debits_pending: row.debits_pending,
                credits_pending: row.credits_pending,
            }
        };
        let balance = balance_from_db(totals)?;
        if row.kind == "wallet" {
            remembered.remember(account, balance, generation);
        }
        Ok(balance)
    }

    /// The running totals of a person's wallet, read in one step.
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when there is no such person or the database fails.
    pub async fn wallet_balance(&self, user: UserId) -> Result<AccountBalance> {
        let row: Option<TotalsRow> = sqlx::query_as(
            "SELECT debits_posted, credits_posted, debits_pending, credits_pending \
             FROM accounts WHERE user_id = $1 AND kind = 'wallet'",
        )
        .bind(user.get())
        .fetch_optional(&mut *self.reader().await?)
        .await?;
        balance_from_db(
            row.ok_or_else(|| Error::Internal(anyhow::anyhow!("person {user} has no wallet")))?,
        )
    }

    /// A wallet's lots, oldest first, including spent ones.
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails.
    pub async fn lots(&self, wallet: AccountId) -> Result<Vec<Lot>> {
        let rows: Vec<LotRow> = sqlx::query_as(
            "SELECT id, transfer_id, credits, remaining, created_at FROM lots \
             WHERE account_id = $1 ORDER BY id",
        )
        .bind(wallet.get())
        .fetch_all(&mut *self.reader().await?)
        .await?;
        rows.into_iter()
            .map(|lot| {
                Ok(Lot {
                    id: LotId::from_db(lot.id),
                    transfer: TransferId::from_db(lot.transfer_id),
                    credits: Credits::from_db(lot.credits)?,
                    remaining: Credits::from_db(lot.remaining)?,
                    created_at: lot.created_at,
                })
            })
            .collect()
    }

    /// Records a transfer. The database's triggers do the rest in the same statement: they move
    /// the wallets' running totals (an overdraft trips the CHECK and undoes everything), draw a
    /// wallet debit from its oldest lots, and open a lot for credits posted into a wallet.
    async fn create_transfer(&self, request: &TransferRequest, phase: Phase) -> Result<Transfer> {
        if request.amount.is_zero() {
            return Err(Error::from(Fault::ZeroAmount));
        }
        if request.debit == request.credit {
            return Err(Error::from(Fault::SameAccount));
        }
        let created = self
            .retrying(|| self.write_plan(record_plan(request.clone(), phase)))
            .await;
        let created = match created {
            Ok(created) => created,
            Err(error) => return self.with_available_credits(error, request.debit).await,
        };
        let existing = match created {
            Some(Inserted::Created(transfer)) => return Ok(transfer),
            Some(Inserted::Existing(existing)) => existing,
            // The key was used before: that transfer, read once the write is answered.
            None => self.transfer_by_key(&request.key).await?.ok_or_else(|| {
                Error::Internal(anyhow::anyhow!("transfer {:?} vanished", request.key))
            })?,
            Some(Inserted::MissingAccount) => {
                for account in [request.debit, request.credit] {
                    self.account_balance(account).await?;
                }
                return Err(Error::Internal(anyhow::anyhow!(
                    "transfer {:?} was refused by a foreign key",
                    request.key
                )));
            }
        };
        same_request(existing, request, phase)
    }

    /// Fills in what the wallet has available in an [`UserError::InsufficientCredits`] that was
    /// raised inside a write (where it could not be read); other errors pass through.
    pub(crate) async fn with_available_credits<T>(
        &self,
        error: Error,
        wallet: AccountId,
    ) -> Result<T> {
        match error {
            Error::User(UserError::InsufficientCredits { needed, .. }) => {
                Err(Error::User(UserError::InsufficientCredits {
                    needed,
                    available: self.account_balance(wallet).await?.available(),
                }))
            }
            other => Err(other),
        }
    }

    /// Posts or voids a pending transfer; the database's trigger settles balances and lots.
    async fn resolve(&self, id: TransferId, to: TransferState) -> Result<Transfer> {
        let args = vec![
            Arg::from(id.get()),
            Arg::from(to.as_str()),
            Arg::from(now_millis()),
        ];
        let resolved = self
            .retrying(|| {
                self.write_plan(Plan::new(&RESOLVE, args.clone(), |rows| {
                    rows.first().map(transfer_in).transpose()
                }))
            })
            .await?;
        match resolved {
            Some(transfer) => Ok(transfer),
            // Nothing pending has that id: it never existed or it is settled, and once settled
            // it stays so, so a read after the write tells which.
            None => Err(unresolved(&mut *self.reader().await?, id).await),
        }
    }
}

fn balance_from_db(totals: TotalsRow) -> Result<AccountBalance> {
    Ok(AccountBalance {
        debits_posted: Credits::from_db(totals.debits_posted)?,
        credits_posted: Credits::from_db(totals.credits_posted)?,
        debits_pending: Credits::from_db(totals.debits_pending)?,
        credits_pending: Credits::from_db(totals.credits_pending)?,
    })
}

/// What inserting a transfer found.
pub(crate) enum Inserted {
    Created(Transfer),
    /// The key was used before; this is that transfer, as it is now.
    Existing(Transfer),
    MissingAccount,
}

async fn transfer_with_key(conn: &mut AnyConnection, key: &str) -> Result<Option<Transfer>> {
    let sql = format!("SELECT {TRANSFER_COLUMNS} FROM transfers WHERE idempotency_key = $1");
    sqlx::query_as::<_, TransferRow>(sqlx::AssertSqlSafe(sql))
        .bind(key)
        .fetch_optional(conn)
        .await?
        .map(transfer_from_row)
        .transpose()
}

pub(crate) async fn insert_transfer(
    conn: &mut AnyConnection,
    request: TransferRequest,
    phase: Phase,
) -> Result<Inserted> {
    insert_transfer_from_lot(conn, request, phase, None).await
}

/// As [`insert_transfer`]; with `lot`, a wallet debit draws from that lot only (a refund takes
/// one purchase's unused credits, a link moves one lot) instead of the oldest lots first.
pub(crate) async fn insert_transfer_from_lot(
    conn: &mut AnyConnection,
    request: TransferRequest,
    phase: Phase,
    lot: Option<LotId>,
) -> Result<Inserted> {
    let now = now_millis();
    let query = bind_all(
        sqlx::query(INSERT_TRANSFER),
        record_args(&request, phase, lot, now),
    );
    match query.fetch_optional(&mut *conn).await.map_err(Error::from) {
        Ok(Some(row)) => Ok(Inserted::Created(recorded(
            request,
            phase,
            now,
            row.try_get(0)?,
        ))),
        Ok(None) => transfer_with_key(conn, &request.key)
            .await?
            .map(Inserted::Existing)
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("transfer {:?} vanished", request.key))),
        Err(error) => refused_transfer(error, &request),
    }
}

/// A transfer recorded (`$1` key, `$2` debit, `$3` credit, `$4` amount, `$5` kind, `$6` state,
/// `$7` two-phase, `$8` memo, `$9` when, `$10` resolved when, `$11` the one lot a wallet debit
/// draws from, or NULL for the oldest first): its id back, or no row when the key was used.
const INSERT_TRANSFER: &str = "INSERT INTO transfers (idempotency_key, debit_account_id, \
     credit_account_id, amount, kind, state, two_phase, memo, created_at, resolved_at, draw_lot) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
     ON CONFLICT (idempotency_key) DO NOTHING RETURNING id";

static RECORD: LazyLock<Arc<Script>> = LazyLock::new(|| Script::new(INSERT_TRANSFER));

/// A pending transfer posted or voided (`$1` id, `$2` state, `$3` when): the transfer back, or
/// no row when nothing pending has that id.
static RESOLVE: LazyLock<Arc<Script>> = LazyLock::new(|| Script::new(resolve_sql()));

fn resolve_sql() -> String {
    format!(
        "UPDATE transfers SET state = $2, resolved_at = $3 \
         WHERE id = $1 AND state = 'pending' RETURNING {TRANSFER_COLUMNS}"
    )
}

/// A transfer's state and when it settled, as recorded at `now`.
fn phase_columns(phase: Phase, now: i64) -> (TransferState, bool, Option<i64>) {
    match phase {
        Phase::Pending => (TransferState::Pending, true, None),
        Phase::Posted => (TransferState::Posted, false, Some(now)),
    }
}

/// [`INSERT_TRANSFER`]'s arguments.
fn record_args(request: &TransferRequest, phase: Phase, lot: Option<LotId>, now: i64) -> Vec<Arg> {
    let (state, two_phase, resolved_at) = phase_columns(phase, now);
    vec![
        Arg::from(request.key.as_str()),
        Arg::from(request.debit.get()),
        Arg::from(request.credit.get()),
        Arg::from(request.amount.to_db()),
        Arg::from(request.kind.as_str()),
        Arg::from(state.as_str()),
        Arg::from(i64::from(two_phase)),
        Arg::from(request.memo.as_deref()),
        Arg::from(now),
        Arg::from(resolved_at),
        Arg::from(lot.map(LotId::get)),
    ]
}

/// The transfer `request` became, recorded at `now` under `id`.
fn recorded(request: TransferRequest, phase: Phase, now: i64, id: i64) -> Transfer {
    let (state, two_phase, _) = phase_columns(phase, now);
    Transfer {
        id: TransferId::from_db(id),
        key: request.key,
        debit: request.debit,
        credit: request.credit,
        amount: request.amount,
        kind: request.kind,
        state,
        two_phase,
        memo: request.memo,
        created_at: now,
    }
}

/// What the database's refusal of a transfer means.
fn refused_transfer(error: Error, request: &TransferRequest) -> Result<Inserted> {
    if is_check_violation(&error) {
        // The balance is read by the caller after this write is undone: inside a PostgreSQL
        // transaction nothing more can be read once a statement failed.
        Err(Error::User(UserError::InsufficientCredits {
            needed: request.amount,
            available: Credits::ZERO,
        }))
    } else if is_foreign_key_violation(&error) {
        Ok(Inserted::MissingAccount)
    } else {
        Err(error)
    }
}

/// A transfer recorded by the writer as a [`Plan`]: what [`insert_transfer`] finds, but `None`
/// where the key was used before (a plan cannot read on; the caller reads that transfer).
fn record_plan(request: TransferRequest, phase: Phase) -> Plan<Option<Inserted>> {
    let now = now_millis();
    Plan {
        script: RECORD.clone(),
        args: record_args(&request, phase, None, now),
        finish: Box::new(move |rows| match rows {
            Ok(rows) => match rows.first() {
                Some(row) => Ok(Some(Inserted::Created(recorded(
                    request,
                    phase,
                    now,
                    row.try_get(0)?,
                )))),
                None => Ok(None),
            },
            Err(error) => refused_transfer(error, &request).map(Some),
        }),
    }
}

/// Whether a transfer found again under its key is the one `request` asks for.
fn same_request(existing: Transfer, request: &TransferRequest, phase: Phase) -> Result<Transfer> {
    let same = existing.debit == request.debit
        && existing.credit == request.credit
        && existing.amount == request.amount
        && existing.kind == request.kind
        && existing.two_phase == (phase == Phase::Pending);
    if same {
        Ok(existing)
    } else {
        Err(Error::from(Fault::IdempotencyConflict {
            key: request.key.clone(),
        }))
    }
}

fn transfer_in(row: &AnyRow) -> Result<Transfer> {
    transfer_from_row(<TransferRow as sqlx::FromRow<_>>::from_row(row)?)
}

/// Why a transfer could not be posted or voided: it does not exist, or it is settled.
async fn unresolved(conn: &mut AnyConnection, id: TransferId) -> Error {
    let state: std::result::Result<Option<String>, sqlx::Error> =
        sqlx::query_scalar("SELECT state FROM transfers WHERE id = $1")
            .bind(id.get())
            .fetch_optional(conn)
            .await;
    match state {
        Err(error) => Error::from(error),
        Ok(None) => Error::from(Fault::UnknownTransfer(id)),
        Ok(Some(state)) => match TransferState::from_db(&state) {
            Ok(state) => Error::from(Fault::TransferAlreadyResolved { id, state }),
            Err(error) => error,
        },
    }
}

pub(crate) async fn update_transfer_state(
    conn: &mut AnyConnection,
    id: TransferId,
    to: TransferState,
) -> Result<Transfer> {
    let row = sqlx::query_as::<_, TransferRow>(sqlx::AssertSqlSafe(resolve_sql()))
        .bind(id.get())
        .bind(to.as_str())
        .bind(now_millis())
        .fetch_optional(&mut *conn)
        .await?;
    match row {
        Some(row) => transfer_from_row(row),
        None => Err(unresolved(conn, id).await),
    }
}
