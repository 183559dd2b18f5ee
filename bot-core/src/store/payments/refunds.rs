//! Refunds in the store: what is refundable, a refund begun with its hold on the lot, approved,
//! ended once (posted, or voided back into the same lot).

use super::*;

impl Store {
    /// The person's purchases since `since` (unix ms) that still have unused credits and no
    /// refund under way, oldest first, with what a refund would give back.
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails.
    pub async fn refundable(&self, user: UserId, since: i64) -> Result<Vec<Refundable>> {
        let sql = format!(
            "SELECT {PURCHASE_COLUMNS}, l.remaining FROM {PURCHASES} \
             JOIN lots l ON l.transfer_id = p.transfer_id \
             WHERE p.user_id = $1 AND p.state = 'paid' AND p.paid_at >= $2 \
               AND p.disputed_at IS NULL AND l.remaining > 0 \
               AND NOT EXISTS (SELECT 1 FROM refunds r WHERE r.purchase_id = p.id \
                               AND r.state IN ('awaiting_approval', 'processing')) \
             ORDER BY p.id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(user.get())
            .bind(since)
            .fetch_all(&mut *self.reader().await?)
            .await?;
        let mut out = Vec::new();
        for row in &rows {
            let purchase = purchase_from_row(row)?.purchase;
            let unused = Credits::from_db(sqlx::Row::try_get(row, "remaining")?)?;
            // Stars payments can only be refunded whole (refundStarPayment).
            if purchase.rail == Rail::Stars && unused != purchase.credits {
                continue;
            }
            let amount = refund_amount(&purchase, unused);
            out.push(Refundable {
                purchase,
                unused,
                amount,
            });
        }
        Ok(out)
    }

    /// Starts the refund of a purchase's unused credits: they go on hold (out of the wallet)
    /// at once, and the refund waits for an admin or goes to the payment service.
    ///
    /// # Errors
    ///
    /// [`UserError::NotRefundable`] with the reason; [`UserError::Frozen`]; [`Error::Internal`].
    pub async fn begin_refund(
        &self,
        user: UserId,
        wallet: AccountId,
        id: PurchaseId,
        since: i64,
        approval: Approval,
    ) -> Result<(Refund, Purchase)> {
        let books = self.books();
        self.retrying(|| {
            self.write(Atomic::Transaction, move |conn| {
                Box::pin(begin_refund(conn, books, user, wallet, id, since, approval))
            })
        })
        .await
    }

    /// A refund by id, with its purchase.
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails.
    pub async fn refund(&self, id: RefundId) -> Result<Option<(Refund, Purchase)>> {
        let mut conn = self.reader().await?;
        let Some((refund, purchase)) = load_refund(&mut conn, id).await? else {
            return Ok(None);
        };
        let purchase = load(&mut conn, purchase)
            .await?
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("refund {id} has no purchase")))?;
        Ok(Some((refund, purchase.purchase)))
    }

    /// Refunds in `state` with their purchases, oldest first; with `before`, only those created before it.
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails.
    pub async fn refunds_in(
        &self,
        state: RefundState,
        before: Option<i64>,
    ) -> Result<Vec<(Refund, Purchase)>> {
        let rows: Vec<(i64,)> = sqlx::query_as(
            "SELECT id FROM refunds WHERE state = $1 AND created_at < $2 ORDER BY id LIMIT 100",
        )
        .bind(state.as_str())
        .bind(before.unwrap_or(i64::MAX))
        .fetch_all(&mut *self.reader().await?)
        .await?;
        let mut out = Vec::new();
        for (id,) in rows {
            out.extend(self.refund(RefundId::from_db(id)).await?);
        }
        Ok(out)
    }

    /// An admin's yes: a refund waiting for approval goes to the payment service. `None` when it
    /// was not waiting.
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails.
    pub async fn approve_refund(&self, id: RefundId) -> Result<Option<(Refund, Purchase)>> {
        let moved = self
            .write(Atomic::Statement, move |conn| {
                Box::pin(async move {
                    let moved = sqlx::query(
                        "UPDATE refunds SET state = 'processing' \
                         WHERE id = $1 AND state = 'awaiting_approval'",
                    )
                    .bind(id.get())
                    .execute(conn)
                    .await?;
                    Ok(moved.rows_affected() == 1)
                })
            })
            .await?;
        if moved {
            self.refund(id).await
        } else {
            Ok(None)
        }
    }

    /// The payment service gave the money back: the held credits are taken for good.
    /// `false` when the refund was no longer under way.
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails.
    pub async fn finish_refund(&self, id: RefundId, provider_refund: &str) -> Result<bool> {
        let provider_refund = provider_refund.to_string();
        self.retrying(|| {
            let provider_refund = provider_refund.clone();
            self.write(Atomic::Transaction, move |conn| {
                Box::pin(end_refund(
                    conn,
                    id,
                    RefundState::Succeeded,
                    Some(provider_refund),
                    None,
                ))
            })
        })
        .await
    }

    /// The refund did not happen: the payment service refused one that was sent (`Failed`), or
    /// an admin rejected one waiting for approval (`Rejected`). The held credits come back and
    /// the person is told `reason`. `false` when it was not in that state.
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails.
    pub async fn fail_refund(&self, id: RefundId, to: RefundState, reason: &str) -> Result<bool> {
        let reason = reason.to_string();
        self.retrying(|| {
            let reason = reason.clone();
            self.write(Atomic::Transaction, move |conn| {
                Box::pin(end_refund(conn, id, to, None, Some(reason)))
            })
        })
        .await
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn begin_refund(
    conn: &mut AnyConnection,
    books: Books,
    user: UserId,
    wallet: AccountId,
    id: PurchaseId,
    since: i64,
    approval: Approval,
) -> Result<(Refund, Purchase)> {
    let refuse = |why: &str| Err(Error::User(UserError::NotRefundable(why.to_string())));
    let frozen: Option<i64> = sqlx::query_scalar("SELECT frozen_at FROM users WHERE id = $1")
        .bind(user.get())
        .fetch_one(&mut *conn)
        .await?;
    if frozen.is_some() {
        return Err(Error::User(UserError::Frozen));
    }
    lock_wallet(conn, books.backend, wallet).await?;
    let Some(row) = load(conn, id)
        .await?
        .filter(|row| row.purchase.user == user)
    else {
        return refuse("there is no such purchase of yours");
    };
    let purchase = row.purchase;
    let Some(transfer) = row
        .transfer
        .filter(|_| purchase.state == PurchaseState::Paid)
    else {
        return refuse("that order was never paid");
    };
    if purchase.paid_at.unwrap_or(0) < since {
        return refuse("purchases can be refunded only for a while after paying (terms §4.4)");
    }
    if row.disputed {
        return refuse("that payment is disputed");
    }
    let open: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM refunds WHERE purchase_id = $1 \
         AND state IN ('awaiting_approval', 'processing')",
    )
    .bind(id.get())
    .fetch_optional(&mut *conn)
    .await?;
    if open.is_some() {
        return refuse("a refund of that purchase is already under way");
    }
    let (lot, remaining) = lot_of(conn, transfer).await?;
    if remaining == 0 {
        return refuse(
            "all its credits were used, and used credits are not refundable (terms §4.5)",
        );
    }
    let unused = Credits::new(remaining);
    if purchase.rail == Rail::Stars && unused != purchase.credits {
        return refuse("a Stars payment can only be refunded while none of its credits are used");
    }
    let amount = refund_amount(&purchase, unused);
    let state = match approval {
        Approval::Auto => RefundState::Processing,
        Approval::Admin => RefundState::AwaitingApproval,
    };
    let refund = insert_refund(conn, id, "request", remaining, amount, state, None).await?;
    let key = format!("refund:{refund}");
    let hold = take_from_lot(conn, books, &key, wallet, lot, remaining, false).await?;
    sqlx::query("UPDATE refunds SET transfer_id = $2 WHERE id = $1")
        .bind(refund.get())
        .bind(hold.map(TransferId::get))
        .execute(&mut *conn)
        .await?;
    sqlx::query("UPDATE purchases SET refunded = refunded + $2 WHERE id = $1")
        .bind(id.get())
        .bind(i64::try_from(amount).map_err(anyhow::Error::from)?)
        .execute(&mut *conn)
        .await?;
    Ok((
        Refund {
            id: refund,
            purchase: id,
            credits: unused,
            amount,
            state,
            failure: None,
        },
        purchase,
    ))
}

/// Ends a refund that is under way: succeeded posts its hold; failed or rejected voids it (the
/// credits return to the same lot) and gives the money share back to the purchase.
pub(super) async fn end_refund(
    conn: &mut AnyConnection,
    id: RefundId,
    to: RefundState,
    provider_refund: Option<String>,
    failure: Option<String>,
) -> Result<bool> {
    // An admin rejects a refund that waits for approval; the payment service answers one that
    // was sent. Anything else is not under way in that sense, and changes nothing.
    let from = match to {
        RefundState::Rejected => RefundState::AwaitingApproval,
        _ => RefundState::Processing,
    };
    let ended: Option<(i64, Option<i64>)> = sqlx::query_as(
        "UPDATE refunds SET state = $2, provider_refund_id = $3, failure = $4, resolved_at = $5 \
         WHERE id = $1 AND state = $6 RETURNING purchase_id, transfer_id",
    )
    .bind(id.get())
    .bind(to.as_str())
    .bind(provider_refund.as_deref())
    .bind(failure.as_deref())
    .bind(now_millis())
    .bind(from.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    let Some((purchase_id, hold)) = ended else {
        return Ok(false);
    };
    let Some((refund, _)) = load_refund(conn, id).await? else {
        return Ok(false);
    };
    let Some(row) = load(conn, PurchaseId::from_db(purchase_id)).await? else {
        return Ok(false);
    };
    let (purchase, wallet) = (row.purchase, row.wallet);
    let state = if to == RefundState::Succeeded {
        TransferState::Posted
    } else {
        TransferState::Voided
    };
    if let Some(hold) = hold {
        crate::store::ledger::update_transfer_state(conn, TransferId::from_db(hold), state).await?;
    }
    if to != RefundState::Succeeded {
        sqlx::query("UPDATE purchases SET refunded = refunded - $2 WHERE id = $1")
            .bind(purchase_id)
            .bind(i64::try_from(refund.amount).map_err(anyhow::Error::from)?)
            .execute(&mut *conn)
            .await?;
    }
    let balance = available(conn, wallet).await?;
    let outcome = match to {
        RefundState::Succeeded => RefundOutcome::Made,
        RefundState::Rejected => RefundOutcome::Declined,
        _ => RefundOutcome::Failed,
    };
    let record = Notice::RefundEnded {
        refund: id,
        order: purchase.id,
        outcome,
        reason: failure,
        amount: refund.amount,
        currency: purchase.currency.clone(),
        credits: refund.credits,
        balance,
    };
    notice(
        conn,
        &format!("refund-end:{id}"),
        &purchase.chat,
        &purchase.payer,
        &record,
    )
    .await?;
    Ok(true)
}

pub(super) async fn insert_refund(
    conn: &mut AnyConnection,
    purchase: PurchaseId,
    origin: &str,
    credits: u64,
    amount: u64,
    state: RefundState,
    transfer: Option<TransferId>,
) -> Result<RefundId> {
    let now = now_millis();
    let resolved = (!matches!(
        state,
        RefundState::AwaitingApproval | RefundState::Processing
    ))
    .then_some(now);
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO refunds (purchase_id, origin, credits, amount, state, transfer_id, \
         created_at, resolved_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
    )
    .bind(purchase.get())
    .bind(origin)
    .bind(i64::try_from(credits).map_err(anyhow::Error::from)?)
    .bind(i64::try_from(amount).map_err(anyhow::Error::from)?)
    .bind(state.as_str())
    .bind(transfer.map(TransferId::get))
    .bind(now)
    .bind(resolved)
    .fetch_one(conn)
    .await?;
    Ok(RefundId::from_db(id))
}

pub(super) async fn load_refund(
    conn: &mut AnyConnection,
    id: RefundId,
) -> Result<Option<(Refund, PurchaseId)>> {
    named_row! {
        struct RefundRow {
            purchase_id: i64,
            credits: i64,
            amount: i64,
            state: String,
            failure: Option<String>,
        }
    }
    let row: Option<RefundRow> = sqlx::query_as(
        "SELECT purchase_id, credits, amount, state, failure FROM refunds WHERE id = $1",
    )
    .bind(id.get())
    .fetch_optional(conn)
    .await?;
    row.map(|row| {
        let purchase = PurchaseId::from_db(row.purchase_id);
        Ok((
            Refund {
                id,
                purchase,
                credits: Credits::from_db(row.credits)?,
                amount: unsigned(row.amount)?,
                state: RefundState::from_db(&row.state)?,
                failure: row.failure,
            },
            purchase,
        ))
    })
    .transpose()
}

/// Moves `amount` out of `wallet` into the refunds account, drawn from `lot` only: posted at
/// once (`posted`) or held. `None` when there was nothing to take.
pub(super) async fn take_from_lot(
    conn: &mut AnyConnection,
    books: Books,
    key: &str,
    wallet: AccountId,
    lot: i64,
    amount: u64,
    posted: bool,
) -> Result<Option<TransferId>> {
    if amount == 0 {
        return Ok(None);
    }
    let inserted = crate::store::ledger::insert_transfer_from_lot(
        conn,
        crate::ledger::TransferRequest {
            key: key.to_string(),
            debit: wallet,
            credit: books.refunds,
            amount: Credits::new(amount),
            kind: crate::ledger::TransferKind::Refund,
            memo: Some("unused credits of a refunded purchase".into()),
        },
        if posted {
            crate::ledger::Phase::Posted
        } else {
            crate::ledger::Phase::Pending
        },
        Some(crate::LotId::from_db(lot)),
    )
    .await?;
    match inserted {
        crate::store::ledger::Inserted::Created(transfer)
        | crate::store::ledger::Inserted::Existing(transfer) => Ok(Some(transfer.id)),
        crate::store::ledger::Inserted::MissingAccount => Err(Error::Internal(anyhow::anyhow!(
            "the refund transfer {key} names a missing account"
        ))),
    }
}

/// On PostgreSQL, makes this transaction the only one changing the wallet's lots until it ends
/// (SQLite has one writer already).
pub(super) async fn lock_wallet(
    conn: &mut AnyConnection,
    backend: Backend,
    wallet: AccountId,
) -> Result<()> {
    if backend == Backend::Postgres {
        // NO KEY UPDATE: a plain FOR UPDATE would also wait for the key-share locks other
        // transactions' transfer inserts hold on the wallet row (their foreign-key checks), and
        // those then wait for us: a deadlock under concurrent payments.
        sqlx::query("SELECT id FROM accounts WHERE id = $1 FOR NO KEY UPDATE")
            .bind(wallet.get())
            .fetch_optional(conn)
            .await?;
    }
    Ok(())
}

pub(super) async fn lot_of(conn: &mut AnyConnection, transfer: TransferId) -> Result<(i64, u64)> {
    let (lot, remaining): (i64, i64) =
        sqlx::query_as("SELECT id, remaining FROM lots WHERE transfer_id = $1")
            .bind(transfer.get())
            .fetch_one(conn)
            .await?;
    Ok((lot, unsigned(remaining)?))
}

pub(super) async fn available(conn: &mut AnyConnection, wallet: AccountId) -> Result<Credits> {
    let available: i64 = sqlx::query_scalar(
        "SELECT credits_posted - debits_posted - debits_pending FROM accounts WHERE id = $1",
    )
    .bind(wallet.get())
    .fetch_one(conn)
    .await?;
    Credits::from_db(available)
}
