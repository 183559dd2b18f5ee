//! Crediting a paid purchase once, on the general path and in one SQLite round trip, and
//! settling what the payment service reported later (refunds outside the bot, disputes).

use super::*;
use sqlx::Row as _;

/// The Stripe ids a payment event told, recorded with the payment.
#[derive(Default)]
pub(super) struct StripeIds {
    pub(super) session: Option<String>,
    pub(super) payment_intent: Option<String>,
}

/// A card payment to credit on SQLite in one round trip (see [`credit_in_one_trip`]).
#[derive(Clone)]
pub(super) struct OneTrip {
    pub(super) event_id: String,
    pub(super) kind: String,
    pub(super) session: String,
    pub(super) payment_intent: Option<String>,
    /// The purchase as read before the write: only what never changes after it is opened.
    pub(super) purchase: Purchase,
    pub(super) chat: String,
    /// The serialised [`Notice::Credited`], whose balance the script fills in.
    pub(super) notice: String,
}

/// The "credits added" record, with the balance read after the credit.
pub(super) fn credited(purchase: &Purchase, balance: Credits) -> Notice {
    Notice::Credited {
        order: purchase.id,
        credits: purchase.credits,
        amount: purchase.amount,
        currency: purchase.currency.clone(),
        balance,
    }
}

/// The same as the general path for a `Paid` event (record the event id, credit the purchase
/// once, mark it paid, queue the notice), written so that SQLite runs it as one multi-statement
/// round trip: each step is gated on the one before with `changes()`. Every statement is a round
/// trip to sqlx-sqlite's worker thread, and with one writer those trips are what limits how
/// many payments per second the webhook takes. The ledger's own rules (the transfer key, the
/// triggers) hold as on every other path; the payment stories run on both paths.
pub(super) async fn credit_in_one_trip(
    conn: &mut AnyConnection,
    books: Books,
    paid: OneTrip,
) -> Result<EventOutcome> {
    let id = paid.purchase.id;
    let rows = sqlx::query(
        "INSERT INTO stripe_events (id, type, received_at) VALUES ($1, $2, $3) \
           ON CONFLICT (id) DO NOTHING; \
         SELECT changes(); \
         INSERT INTO transfers (idempotency_key, debit_account_id, credit_account_id, amount, \
           kind, state, two_phase, memo, created_at, resolved_at) \
           SELECT $4, $5, a.id, p.credits, 'purchase', 'posted', 0, $6, $3, $3 \
           FROM purchases p JOIN accounts a ON a.user_id = p.user_id \
           WHERE changes() = 1 AND p.id = $7 AND p.state <> 'paid' AND p.rail = 'stripe' \
             AND (p.stripe_session_id IS NULL OR p.stripe_session_id = $8) \
           ON CONFLICT (idempotency_key) DO NOTHING; \
         UPDATE purchases SET state = 'paid', paid_at = $3, transfer_id = last_insert_rowid(), \
           stripe_session_id = COALESCE(stripe_session_id, $8), \
           stripe_payment_intent = COALESCE(stripe_payment_intent, $9) \
           WHERE id = $7 AND changes() = 1; \
         INSERT INTO notices (idempotency_key, platform, chat, record, created_at, \
                              next_attempt_at, recipient) \
           SELECT $10, $11, $12, json_set($13, '$.balance', b), $3, $3, payer \
           FROM (SELECT a.credits_posted - a.debits_posted - a.debits_pending AS b, p.payer AS payer \
                 FROM purchases p JOIN accounts a ON a.user_id = p.user_id \
                 WHERE changes() = 1 AND p.id = $7) \
           WHERE true ON CONFLICT (idempotency_key) DO NOTHING; \
         SELECT p.rail, p.stripe_session_id, p.provider_refunded, p.disputed_at \
           FROM purchases p WHERE p.id = $7;",
    )
    .bind(&paid.event_id)
    .bind(&paid.kind)
    .bind(now_millis())
    .bind(format!("purchase:{id}"))
    .bind(books.card_sales.get())
    .bind(format!("{} pack, order #{id}", paid.purchase.pack))
    .bind(id.get())
    .bind(&paid.session)
    .bind(paid.payment_intent.as_deref())
    .bind(format!("credited:{id}"))
    .bind(paid.purchase.chat.platform.as_str())
    .bind(&paid.chat)
    .bind(&paid.notice)
    .fetch_all(&mut *conn)
    .await?;
    let recorded: i64 = rows
        .first()
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("no answer from the credit batch")))?
        .try_get(0)?;
    if recorded != 1 {
        return Ok(EventOutcome::Duplicate);
    }
    let Some(now) = rows.get(1) else {
        return Ok(EventOutcome::Ignored("no such purchase"));
    };
    let (rail, session, refunded, disputed): (String, Option<String>, i64, Option<i64>) = (
        now.try_get(0)?,
        now.try_get(1)?,
        now.try_get(2)?,
        now.try_get(3)?,
    );
    if rail != Rail::Stripe.as_str() || session.is_some_and(|known| known != paid.session) {
        return Ok(EventOutcome::Ignored("the session is not this purchase's"));
    }
    if refunded > 0 || disputed.is_some() {
        settle(conn, books, id).await?;
    }
    Ok(EventOutcome::Applied)
}

/// Marks a purchase paid and credits its pack, once: the transfer's key is the purchase id,
/// and only an unpaid purchase is marked. Queues the "credits added" notice.
pub(super) async fn credit(
    conn: &mut AnyConnection,
    books: Books,
    row: &Row,
    ids: &StripeIds,
) -> Result<()> {
    let (purchase, wallet) = (&row.purchase, row.wallet);
    let source = match purchase.rail {
        Rail::Stripe => books.card_sales,
        Rail::Stars => books.stars_sales,
    };
    let now = now_millis();
    // The transfer is made first so that the purchase can point at it.
    let inserted = crate::store::ledger::insert_transfer(
        conn,
        crate::ledger::TransferRequest {
            key: format!("purchase:{}", purchase.id),
            debit: source,
            credit: wallet,
            amount: purchase.credits,
            kind: crate::ledger::TransferKind::Purchase,
            memo: Some(format!("{} pack, order #{}", purchase.pack, purchase.id)),
        },
        crate::ledger::Phase::Posted,
    )
    .await?;
    if matches!(inserted, crate::store::ledger::Inserted::Existing(_)) {
        return Ok(());
    }
    let transfer = match inserted {
        crate::store::ledger::Inserted::Created(transfer) => transfer.id,
        _ => {
            return Err(Error::Internal(anyhow::anyhow!(
                "the credit of purchase {} was refused",
                purchase.id
            )));
        }
    };
    let marked = sqlx::query(
        "UPDATE purchases SET state = 'paid', paid_at = $2, transfer_id = $3, \
         stripe_session_id = COALESCE(stripe_session_id, $4), \
         stripe_payment_intent = COALESCE(stripe_payment_intent, $5) \
         WHERE id = $1 AND state <> 'paid'",
    )
    .bind(purchase.id.get())
    .bind(now)
    .bind(transfer.get())
    .bind(ids.session.as_deref())
    .bind(ids.payment_intent.as_deref())
    .execute(&mut *conn)
    .await?;
    if marked.rows_affected() != 1 {
        return Err(Error::Internal(anyhow::anyhow!(
            "purchase {} was credited without being marked paid",
            purchase.id
        )));
    }
    let balance = available(conn, wallet).await?;
    notice(
        conn,
        &format!("credited:{}", purchase.id),
        &purchase.chat,
        &purchase.payer,
        &credited(purchase, balance),
    )
    .await
}

/// Brings a paid purchase in line with what the payment service reported: money refunded
/// outside the bot takes back that share of the purchase's credits (no more than are unused),
/// and a dispute freezes the wallet and takes back all its unused credits. Each happens once.
pub(super) async fn settle(conn: &mut AnyConnection, books: Books, id: PurchaseId) -> Result<()> {
    let Some(row) = load(conn, id).await? else {
        return Ok(());
    };
    let (purchase, Some(transfer)) = (&row.purchase, row.transfer) else {
        return Ok(());
    };
    let wallet = row.wallet;
    lock_wallet(conn, books.backend, wallet).await?;
    let reported = row.provider_refunded.min(purchase.amount);
    if reported > purchase.refunded {
        let delta = reported - purchase.refunded;
        let (lot, remaining) = lot_of(conn, transfer).await?;
        let share = (u128::from(purchase.credits.get()) * u128::from(delta))
            .div_ceil(u128::from(purchase.amount.max(1)));
        let take = u64::try_from(share).unwrap_or(u64::MAX).min(remaining);
        let key = format!("refund:stripe:{}:{reported}", purchase.id);
        let taken = take_from_lot(conn, books, &key, wallet, lot, take, true).await?;
        insert_refund(
            conn,
            purchase.id,
            "stripe",
            take,
            delta,
            RefundState::Succeeded,
            taken,
        )
        .await?;
        sqlx::query("UPDATE purchases SET refunded = $2 WHERE id = $1")
            .bind(purchase.id.get())
            .bind(i64::try_from(reported).map_err(anyhow::Error::from)?)
            .execute(&mut *conn)
            .await?;
        let balance = available(conn, wallet).await?;
        notice(
            conn,
            &key,
            &purchase.chat,
            &purchase.payer,
            &Notice::RefundedOutside {
                order: purchase.id,
                amount: delta,
                currency: purchase.currency.clone(),
                removed: Credits::new(take),
                balance,
            },
        )
        .await?;
    }
    if row.disputed {
        let key = format!("refund:dispute:{}", purchase.id);
        let done: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM refunds WHERE purchase_id = $1 AND origin = 'dispute'",
        )
        .bind(purchase.id.get())
        .fetch_optional(&mut *conn)
        .await?;
        if done.is_none() {
            sqlx::query("UPDATE users SET frozen_at = COALESCE(frozen_at, $2) WHERE id = $1")
                .bind(purchase.user.get())
                .bind(now_millis())
                .execute(&mut *conn)
                .await?;
            let (lot, remaining) = lot_of(conn, transfer).await?;
            let taken = take_from_lot(conn, books, &key, wallet, lot, remaining, true).await?;
            insert_refund(
                conn,
                purchase.id,
                "dispute",
                remaining,
                0,
                RefundState::Succeeded,
                taken,
            )
            .await?;
            notice(
                conn,
                &key,
                &purchase.chat,
                &purchase.payer,
                &Notice::Disputed {
                    order: purchase.id,
                    removed: Credits::new(remaining),
                },
            )
            .await?;
        }
    }
    Ok(())
}
