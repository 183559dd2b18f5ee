//! Purchases, refunds, Stripe events and notices in the store. Every change that moves credits
//! runs in one transaction with the purchase row it follows from and the notice that reports
//! it; on PostgreSQL the wallet row is locked first, so a lot's unused credits cannot change
//! between reading and taking them.

use crate::UserError;
use sqlx::{AnyConnection, Row as _, any::AnyRow};

use super::{
    Approval, NewPurchase, PaymentEvent, Purchase, PurchaseState, Rail, Refund, RefundState,
    Refundable, format_price, refund_amount,
};
use crate::{
    AccountId, Backend, Credits, Error, PurchaseId, RefundId, Result, Store, TransferId, UserId,
    ledger::{SystemAccount, TransferState},
    service::ChatRef,
    store::{Atomic, now_millis},
};

const PURCHASE_COLUMNS: &str = "p.id, p.user_id, p.payer, p.pack, p.credits, p.rail, p.amount, \
     p.currency, p.chat, p.state, p.fee, p.fee_estimated, p.refunded, p.stripe_session_id, \
     p.stripe_payment_intent, p.stripe_charge_id, p.stripe_balance_txn, p.telegram_charge_id, \
     p.created_at, p.paid_at, p.transfer_id, p.provider_refunded, p.disputed_at, a.id";

/// Purchases with their buyer's wallet.
const PURCHASES: &str = "purchases p JOIN accounts a ON a.user_id = p.user_id";

/// What is kept about a purchase beyond what callers see.
struct Row {
    purchase: Purchase,
    wallet: AccountId,
    transfer: Option<TransferId>,
    provider_refunded: u64,
    disputed: bool,
}

fn unsigned(value: i64) -> Result<u64> {
    u64::try_from(value).map_err(|_| Error::Internal(anyhow::anyhow!("negative amount {value}")))
}

fn purchase_from_row(row: &AnyRow) -> Result<Row> {
    let chat: String = row.try_get(8)?;
    let chat: ChatRef = serde_json::from_str(&chat).map_err(anyhow::Error::from)?;
    let transfer: Option<i64> = row.try_get(20)?;
    let disputed_at: Option<i64> = row.try_get(22)?;
    Ok(Row {
        purchase: Purchase {
            id: PurchaseId::from_db(row.try_get(0)?),
            user: UserId::from_db(row.try_get(1)?),
            payer: row.try_get(2)?,
            pack: row.try_get(3)?,
            credits: Credits::from_db(row.try_get(4)?)?,
            rail: Rail::from_db(&row.try_get::<String, _>(5)?)?,
            amount: unsigned(row.try_get(6)?)?,
            currency: row.try_get(7)?,
            chat,
            state: PurchaseState::from_db(&row.try_get::<String, _>(9)?)?,
            fee: unsigned(row.try_get(10)?)?,
            fee_estimated: row.try_get::<i64, _>(11)? == 1,
            refunded: unsigned(row.try_get(12)?)?,
            stripe_session_id: row.try_get(13)?,
            stripe_payment_intent: row.try_get(14)?,
            stripe_charge_id: row.try_get(15)?,
            stripe_balance_transaction: row.try_get(16)?,
            telegram_charge_id: row.try_get(17)?,
            created_at: row.try_get(18)?,
            paid_at: row.try_get(19)?,
        },
        wallet: AccountId::from_db(row.try_get(23)?),
        transfer: transfer.map(TransferId::from_db),
        provider_refunded: unsigned(row.try_get(21)?)?,
        disputed: disputed_at.is_some(),
    })
}

async fn load(conn: &mut AnyConnection, id: PurchaseId) -> Result<Option<Row>> {
    let sql = format!("SELECT {PURCHASE_COLUMNS} FROM {PURCHASES} WHERE p.id = $1");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id.get())
        .fetch_optional(conn)
        .await?
        .as_ref()
        .map(purchase_from_row)
        .transpose()
}

/// Finds the purchase a Stripe charge belongs to: by our id when the charge carries it in its
/// metadata, otherwise by the ids Stripe events already told us.
async fn find(
    conn: &mut AnyConnection,
    id: Option<PurchaseId>,
    payment_intent: Option<&str>,
    charge: &str,
) -> Result<Option<Row>> {
    if let Some(id) = id {
        return load(conn, id).await;
    }
    let sql = format!(
        "SELECT {PURCHASE_COLUMNS} FROM {PURCHASES} \
         WHERE p.stripe_charge_id = $1 OR p.stripe_payment_intent = $2"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(charge)
        .bind(payment_intent)
        .fetch_optional(conn)
        .await?
        .as_ref()
        .map(purchase_from_row)
        .transpose()
}

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
    pub text: String,
    pub attempts: u32,
}

/// The accounts and backend a payment transaction needs, copied into its closure.
#[derive(Clone, Copy)]
struct Books {
    backend: Backend,
    card_sales: AccountId,
    stars_sales: AccountId,
    refunds: AccountId,
}

impl Store {
    fn books(&self) -> Books {
        Books {
            backend: self.backend(),
            card_sales: self.account(SystemAccount::CardSales),
            stars_sales: self.account(SystemAccount::StarsSales),
            refunds: self.account(SystemAccount::Refunds),
        }
    }

    /// Opens a purchase (an order not yet paid).
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails.
    pub async fn create_purchase(&self, new: &NewPurchase) -> Result<Purchase> {
        let chat = serde_json::to_string(&new.chat).map_err(anyhow::Error::from)?;
        let new = new.clone();
        let id = self
            .write(Atomic::Statement, move |conn| {
                Box::pin(async move {
                    let id: i64 = sqlx::query_scalar(
                        "INSERT INTO purchases (user_id, payer, pack, credits, rail, amount, \
                         currency, chat, state, fee, fee_estimated, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'open', $9, 1, $10) RETURNING id",
                    )
                    .bind(new.user.get())
                    .bind(&new.payer)
                    .bind(&new.pack)
                    .bind(new.credits.to_db())
                    .bind(new.rail.as_str())
                    .bind(i64::try_from(new.amount).map_err(anyhow::Error::from)?)
                    .bind(&new.currency)
                    .bind(chat)
                    .bind(i64::try_from(new.fee_estimate).map_err(anyhow::Error::from)?)
                    .bind(now_millis())
                    .fetch_one(conn)
                    .await?;
                    Ok(PurchaseId::from_db(id))
                })
            })
            .await?;
        self.purchase(id)
            .await?
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("purchase {id} vanished")))
    }

    /// A purchase by id.
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails.
    pub async fn purchase(&self, id: PurchaseId) -> Result<Option<Purchase>> {
        Ok(load(&mut *self.reader().await?, id)
            .await?
            .map(|row| row.purchase))
    }

    /// A person's purchases, newest first.
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails.
    pub async fn purchases(&self, user: UserId) -> Result<Vec<Purchase>> {
        let sql = format!(
            "SELECT {PURCHASE_COLUMNS} FROM {PURCHASES} WHERE p.user_id = $1 ORDER BY p.id DESC"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(user.get())
            .fetch_all(&mut *self.reader().await?)
            .await?;
        rows.iter()
            .map(|row| purchase_from_row(row).map(|row| row.purchase))
            .collect()
    }

    /// Remembers the Checkout Session made for a purchase.
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails.
    pub async fn set_checkout_session(&self, id: PurchaseId, session: &str) -> Result<()> {
        let session = session.to_string();
        self.write(Atomic::Statement, move |conn| {
            Box::pin(async move {
                sqlx::query(
                    "UPDATE purchases SET stripe_session_id = $2 \
                     WHERE id = $1 AND stripe_session_id IS NULL",
                )
                .bind(id.get())
                .bind(session)
                .execute(conn)
                .await?;
                Ok(())
            })
        })
        .await
    }

    /// Paid card purchases whose fee is still the estimate although Stripe named the charge's
    /// balance transaction, oldest first.
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails.
    pub async fn purchases_awaiting_fee(&self, limit: u32) -> Result<Vec<Purchase>> {
        let sql = format!(
            "SELECT {PURCHASE_COLUMNS} FROM {PURCHASES} \
             WHERE p.state = 'paid' AND p.fee_estimated = 1 AND p.stripe_balance_txn IS NOT NULL \
             ORDER BY p.id LIMIT $1"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(i64::from(limit))
            .fetch_all(&mut *self.reader().await?)
            .await?;
        rows.iter()
            .map(|row| purchase_from_row(row).map(|row| row.purchase))
            .collect()
    }

    /// Records the real processing fee the payment service reported.
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails.
    pub async fn set_fee(&self, id: PurchaseId, fee: u64) -> Result<()> {
        let fee = i64::try_from(fee).map_err(anyhow::Error::from)?;
        self.write(Atomic::Statement, move |conn| {
            Box::pin(async move {
                sqlx::query("UPDATE purchases SET fee = $2, fee_estimated = 0 WHERE id = $1")
                    .bind(id.get())
                    .bind(fee)
                    .execute(conn)
                    .await?;
                Ok(())
            })
        })
        .await
    }

    /// Applies one verified Stripe event, once per event id, in one transaction: the event id
    /// is recorded, the purchase updated, credits moved and the person's notice queued.
    /// `event` is `None` for types we do not act on (they are recorded all the same).
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails (nothing was written; Stripe will retry).
    pub async fn apply_stripe_event(
        &self,
        event_id: &str,
        kind: &str,
        event: Option<PaymentEvent>,
    ) -> Result<EventOutcome> {
        let books = self.books();
        if books.backend == Backend::Sqlite
            && let Some(PaymentEvent::Paid {
                purchase,
                session,
                payment_intent,
            }) = &event
            && let Some(known) = self.purchase(*purchase).await?
        {
            let paid = OneTrip {
                event_id: event_id.to_string(),
                kind: kind.to_string(),
                session: session.clone(),
                payment_intent: payment_intent.clone(),
                chat: serde_json::to_string(&known.chat).map_err(anyhow::Error::from)?,
                notice: credited_text(&known),
                purchase: known,
            };
            return self
                .retrying(|| {
                    let paid = paid.clone();
                    self.write(Atomic::Transaction, move |conn| {
                        Box::pin(credit_in_one_trip(conn, books, paid))
                    })
                })
                .await;
        }
        let (event_id, kind) = (event_id.to_string(), kind.to_string());
        self.retrying(|| {
            let (event_id, kind, event) = (event_id.clone(), kind.clone(), event.clone());
            self.write(Atomic::Transaction, move |conn| {
                Box::pin(async move {
                    let recorded: Option<String> = sqlx::query_scalar(
                        "INSERT INTO stripe_events (id, type, received_at) VALUES ($1, $2, $3) \
                         ON CONFLICT (id) DO NOTHING RETURNING id",
                    )
                    .bind(&event_id)
                    .bind(&kind)
                    .bind(now_millis())
                    .fetch_optional(&mut *conn)
                    .await?;
                    if recorded.is_none() {
                        return Ok(EventOutcome::Duplicate);
                    }
                    match event {
                        None => Ok(EventOutcome::Ignored("an event type we do not act on")),
                        Some(event) => apply(conn, books, event).await,
                    }
                })
            })
        })
        .await
    }

    /// Credits a Telegram Stars payment, once per `telegram_payment_charge_id`.
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails.
    pub async fn credit_stars(
        &self,
        id: PurchaseId,
        charge: &str,
        amount: u64,
    ) -> Result<EventOutcome> {
        let books = self.books();
        let charge = charge.to_string();
        self.retrying(|| {
            let charge = charge.clone();
            self.write(Atomic::Transaction, move |conn| {
                Box::pin(async move {
                    let seen: Option<i64> = sqlx::query_scalar(
                        "SELECT id FROM purchases WHERE telegram_charge_id = $1",
                    )
                    .bind(&charge)
                    .fetch_optional(&mut *conn)
                    .await?;
                    if seen.is_some() {
                        return Ok(EventOutcome::Duplicate);
                    }
                    let Some(row) = load(conn, id).await? else {
                        return Ok(EventOutcome::Ignored("no such purchase"));
                    };
                    if row.purchase.rail != Rail::Stars || row.purchase.amount != amount {
                        return Ok(EventOutcome::Ignored(
                            "the payment does not match the order",
                        ));
                    }
                    if row.purchase.telegram_charge_id.is_some() {
                        return Ok(EventOutcome::Ignored("the order was already paid"));
                    }
                    sqlx::query("UPDATE purchases SET telegram_charge_id = $2 WHERE id = $1")
                        .bind(id.get())
                        .bind(&charge)
                        .execute(&mut *conn)
                        .await?;
                    credit(conn, books, &row, &StripeIds::default()).await?;
                    Ok(EventOutcome::Applied)
                })
            })
        })
        .await
    }

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
            let unused = Credits::from_db(row.try_get(24)?)?;
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

    /// Takes up to `limit` notices for `platforms` that are due, leasing each for a while (longer after each
    /// failed attempt) so that no other sender takes it meanwhile.
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails.
    pub async fn due_notices(
        &self,
        platforms: &[crate::Platform],
        limit: u32,
    ) -> Result<Vec<NoticeToSend>> {
        if platforms.is_empty() {
            return Ok(Vec::new());
        }
        let backend = self.backend();
        // Platform names are our own constants, never input.
        let platforms = platforms
            .iter()
            .map(|p| format!("'{}'", p.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        let rows: Vec<(i64, String, String, i64, Option<String>)> = self
            .write(Atomic::Statement, move |conn| {
                Box::pin(async move {
                    let now = now_millis();
                    let lock = match backend {
                        Backend::Postgres => " FOR UPDATE SKIP LOCKED",
                        Backend::Sqlite => "",
                    };
                    // The lease doubles with each attempt, from 5 seconds up to 10 minutes.
                    let sql = format!(
                        "UPDATE notices SET attempts = attempts + 1, \
                           next_attempt_at = $1 + 5000 * (CASE WHEN attempts < 7 THEN \
                             (1 << CAST(attempts AS INTEGER)) ELSE 120 END) \
                         WHERE id IN (SELECT id FROM notices \
                                      WHERE sent_at IS NULL AND platform IN ({platforms}) \
                                        AND next_attempt_at <= $1 \
                                      ORDER BY next_attempt_at, id LIMIT $2{lock}) \
                         RETURNING id, chat, text, attempts, recipient"
                    );
                    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
                        .bind(now)
                        .bind(i64::from(limit))
                        .fetch_all(conn)
                        .await?)
                })
            })
            .await?;
        rows.into_iter()
            .map(|(id, chat, text, attempts, recipient)| {
                Ok(NoticeToSend {
                    id,
                    chat: serde_json::from_str(&chat).map_err(anyhow::Error::from)?,
                    recipient: recipient.and_then(|r| r.parse().ok()),
                    text,
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                })
            })
            .collect()
    }

    /// Marks a notice delivered (or given up on); it is never sent again.
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails.
    pub async fn notice_done(&self, id: i64) -> Result<()> {
        self.write(Atomic::Statement, move |conn| {
            Box::pin(async move {
                sqlx::query("UPDATE notices SET sent_at = $2 WHERE id = $1 AND sent_at IS NULL")
                    .bind(id)
                    .bind(now_millis())
                    .execute(conn)
                    .await?;
                Ok(())
            })
        })
        .await
    }

    /// Notices not yet delivered, for tests and operators.
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails.
    pub async fn pending_notices(&self) -> Result<u64> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM notices WHERE sent_at IS NULL")
            .fetch_one(&mut *self.reader().await?)
            .await?;
        unsigned(count)
    }
}

async fn apply(
    conn: &mut AnyConnection,
    books: Books,
    event: PaymentEvent,
) -> Result<EventOutcome> {
    match event {
        PaymentEvent::Paid {
            purchase,
            session,
            payment_intent,
        } => {
            let Some(row) = load(conn, purchase).await? else {
                return Ok(EventOutcome::Ignored("no such purchase"));
            };
            if row.purchase.rail != Rail::Stripe
                || row
                    .purchase
                    .stripe_session_id
                    .as_deref()
                    .is_some_and(|known| known != session)
            {
                return Ok(EventOutcome::Ignored("the session is not this purchase's"));
            }
            let ids = StripeIds {
                session: Some(session),
                payment_intent,
            };
            credit(conn, books, &row, &ids).await?;
            if row.provider_refunded > 0 || row.disputed {
                settle(conn, books, purchase).await?;
            }
            Ok(EventOutcome::Applied)
        }
        PaymentEvent::Failed { purchase, session } => {
            let Some(row) = load(conn, purchase).await? else {
                return Ok(EventOutcome::Ignored("no such purchase"));
            };
            let failed = sqlx::query(
                "UPDATE purchases SET state = 'failed', \
                 stripe_session_id = COALESCE(stripe_session_id, $2) \
                 WHERE id = $1 AND state = 'open'",
            )
            .bind(purchase.get())
            .bind(&session)
            .execute(&mut *conn)
            .await?;
            if failed.rows_affected() == 1 {
                let p = &row.purchase;
                notice(
                    conn,
                    &format!("payment-failed:{}", p.id),
                    &p.chat,
                    &p.payer,
                    &format!(
                        "Your payment of {} for {} (order #{}) did not go through, so no credits \
                         were added. Send /buy to try again.",
                        format_price(p.amount, &p.currency),
                        p.credits,
                        p.id
                    ),
                )
                .await?;
            }
            Ok(EventOutcome::Applied)
        }
        PaymentEvent::Charge {
            purchase,
            payment_intent,
            charge,
            balance_transaction,
            amount_refunded,
        } => {
            let Some(row) = find(conn, purchase, payment_intent.as_deref(), &charge).await? else {
                return Ok(EventOutcome::Ignored("no purchase for this charge"));
            };
            if row.purchase.rail != Rail::Stripe {
                return Ok(EventOutcome::Ignored("not a card purchase"));
            }
            sqlx::query(
                "UPDATE purchases SET stripe_charge_id = COALESCE(stripe_charge_id, $2), \
                 stripe_payment_intent = COALESCE(stripe_payment_intent, $3), \
                 stripe_balance_txn = COALESCE($4, stripe_balance_txn), \
                 provider_refunded = CASE WHEN provider_refunded > $5 THEN provider_refunded \
                                          ELSE $5 END \
                 WHERE id = $1",
            )
            .bind(row.purchase.id.get())
            .bind(&charge)
            .bind(payment_intent.as_deref())
            .bind(balance_transaction.as_deref())
            .bind(i64::try_from(amount_refunded).map_err(anyhow::Error::from)?)
            .execute(&mut *conn)
            .await?;
            settle(conn, books, row.purchase.id).await?;
            Ok(EventOutcome::Applied)
        }
        PaymentEvent::Disputed {
            purchase,
            payment_intent,
            charge,
        } => {
            let Some(row) = find(conn, purchase, payment_intent.as_deref(), &charge).await? else {
                return Ok(EventOutcome::Ignored("no purchase for this charge"));
            };
            sqlx::query(
                "UPDATE purchases SET disputed_at = COALESCE(disputed_at, $2), \
                 stripe_charge_id = COALESCE(stripe_charge_id, $3) WHERE id = $1",
            )
            .bind(row.purchase.id.get())
            .bind(now_millis())
            .bind(&charge)
            .execute(&mut *conn)
            .await?;
            settle(conn, books, row.purchase.id).await?;
            Ok(EventOutcome::Applied)
        }
    }
}

/// The Stripe ids a payment event told, recorded with the payment.
#[derive(Default)]
struct StripeIds {
    session: Option<String>,
    payment_intent: Option<String>,
}

/// A card payment to credit on SQLite in one round trip (see [`credit_in_one_trip`]).
#[derive(Clone)]
struct OneTrip {
    event_id: String,
    kind: String,
    session: String,
    payment_intent: Option<String>,
    /// The purchase as read before the write: only what never changes after it is opened.
    purchase: Purchase,
    chat: String,
    notice: String,
}

/// The "credits added" text, with `{balance}` for the balance read when it is written.
fn credited_text(purchase: &Purchase) -> String {
    format!(
        "{} added (order #{}, {}). Your balance: {{balance}}.",
        purchase.credits,
        purchase.id,
        format_price(purchase.amount, &purchase.currency)
    )
}

/// The same as the general path for a `Paid` event (record the event id, credit the purchase
/// once, mark it paid, queue the notice), written so that SQLite runs it as one multi-statement
/// round trip: each step is gated on the one before with `changes()`. Every statement is a round
/// trip to sqlx-sqlite's worker thread, and with one writer those trips are what limits how
/// many payments per second the webhook takes. The ledger's own rules (the transfer key, the
/// triggers) hold as on every other path; the payment stories run on both paths.
async fn credit_in_one_trip(
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
         INSERT INTO notices (idempotency_key, platform, chat, text, created_at, next_attempt_at, \
                              recipient) \
           SELECT $10, $11, $12, REPLACE($13, '{balance}', \
             CASE WHEN b = 1 THEN '1 credit' ELSE CAST(b AS TEXT) || ' credits' END), $3, $3, payer \
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
async fn credit(conn: &mut AnyConnection, books: Books, row: &Row, ids: &StripeIds) -> Result<()> {
    let (purchase, wallet) = (&row.purchase, row.wallet);
    let source = match purchase.rail {
        Rail::Stripe => books.card_sales,
        Rail::Stars => books.stars_sales,
    };
    let now = now_millis();
    // The transfer is made first so that the purchase can point at it.
    let inserted = crate::ledger::insert_transfer(
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
    if matches!(inserted, crate::ledger::Inserted::Existing(_)) {
        return Ok(());
    }
    let transfer = match inserted {
        crate::ledger::Inserted::Created(transfer) => transfer.id,
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
        &credited_text(purchase).replace("{balance}", &balance.to_string()),
    )
    .await
}

/// Brings a paid purchase in line with what the payment service reported: money refunded
/// outside the bot takes back that share of the purchase's credits (no more than are unused),
/// and a dispute freezes the wallet and takes back all its unused credits. Each happens once.
async fn settle(conn: &mut AnyConnection, books: Books, id: PurchaseId) -> Result<()> {
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
            &format!(
                "{} of order #{} was refunded to your card; {} were removed. Your balance: {balance}.",
                format_price(delta, &purchase.currency),
                purchase.id,
                Credits::new(take)
            ),
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
                &format!(
                    "The payment for order #{} was disputed with your bank, so your wallet is \
                     frozen and its {} unused from that order were removed. Contact support to \
                     settle it.",
                    purchase.id,
                    Credits::new(remaining)
                ),
            )
            .await?;
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn begin_refund(
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
async fn end_refund(
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
        crate::ledger::update_transfer_state(conn, TransferId::from_db(hold), state).await?;
    }
    if to != RefundState::Succeeded {
        sqlx::query("UPDATE purchases SET refunded = refunded - $2 WHERE id = $1")
            .bind(purchase_id)
            .bind(i64::try_from(refund.amount).map_err(anyhow::Error::from)?)
            .execute(&mut *conn)
            .await?;
    }
    let balance = available(conn, wallet).await?;
    let money = format_price(refund.amount, &purchase.currency);
    let text = match to {
        RefundState::Succeeded => format!(
            "Refund #{id} done: {money} for order #{} is on its way back ({} removed). Your \
             balance: {balance}.",
            purchase.id, refund.credits
        ),
        RefundState::Rejected => format!(
            "Refund #{id} for order #{} was declined: {}. Your {} are back; balance: {balance}.",
            purchase.id,
            failure.as_deref().unwrap_or("no reason given"),
            refund.credits
        ),
        _ => format!(
            "Refund #{id} for order #{} could not be made: {}. Your {} are back; balance: \
             {balance}.",
            purchase.id,
            failure.as_deref().unwrap_or("the payment service refused"),
            refund.credits
        ),
    };
    notice(
        conn,
        &format!("refund-end:{id}"),
        &purchase.chat,
        &purchase.payer,
        &text,
    )
    .await?;
    Ok(true)
}

async fn insert_refund(
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

async fn load_refund(
    conn: &mut AnyConnection,
    id: RefundId,
) -> Result<Option<(Refund, PurchaseId)>> {
    let row: Option<(i64, i64, i64, String, Option<String>)> = sqlx::query_as(
        "SELECT purchase_id, credits, amount, state, failure FROM refunds WHERE id = $1",
    )
    .bind(id.get())
    .fetch_optional(conn)
    .await?;
    row.map(|(purchase, credits, amount, state, failure)| {
        let purchase = PurchaseId::from_db(purchase);
        Ok((
            Refund {
                id,
                purchase,
                credits: Credits::from_db(credits)?,
                amount: unsigned(amount)?,
                state: RefundState::from_db(&state)?,
                failure,
            },
            purchase,
        ))
    })
    .transpose()
}

/// Moves `amount` out of `wallet` into the refunds account, drawn from `lot` only: posted at
/// once (`posted`) or held. `None` when there was nothing to take.
async fn take_from_lot(
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
    let inserted = crate::ledger::insert_transfer_from_lot(
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
        crate::ledger::Inserted::Created(transfer)
        | crate::ledger::Inserted::Existing(transfer) => Ok(Some(transfer.id)),
        crate::ledger::Inserted::MissingAccount => Err(Error::Internal(anyhow::anyhow!(
            "the refund transfer {key} names a missing account"
        ))),
    }
}

/// On PostgreSQL, makes this transaction the only one changing the wallet's lots until it ends
/// (SQLite has one writer already).
async fn lock_wallet(conn: &mut AnyConnection, backend: Backend, wallet: AccountId) -> Result<()> {
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

async fn lot_of(conn: &mut AnyConnection, transfer: TransferId) -> Result<(i64, u64)> {
    let (lot, remaining): (i64, i64) =
        sqlx::query_as("SELECT id, remaining FROM lots WHERE transfer_id = $1")
            .bind(transfer.get())
            .fetch_one(conn)
            .await?;
    Ok((lot, unsigned(remaining)?))
}

async fn available(conn: &mut AnyConnection, wallet: AccountId) -> Result<Credits> {
    let available: i64 = sqlx::query_scalar(
        "SELECT credits_posted - debits_posted - debits_pending FROM accounts WHERE id = $1",
    )
    .bind(wallet.get())
    .fetch_one(conn)
    .await?;
    Credits::from_db(available)
}

/// Queues a message for the person, once per `key`.
async fn notice(
    conn: &mut AnyConnection,
    key: &str,
    chat_ref: &ChatRef,
    recipient: &str,
    text: &str,
) -> Result<()> {
    let chat = serde_json::to_string(chat_ref).map_err(anyhow::Error::from)?;
    let now = now_millis();
    sqlx::query(
        "INSERT INTO notices (idempotency_key, platform, chat, text, created_at, \
         next_attempt_at, recipient) VALUES ($1, $2, $3, $4, $5, $5, $6) \
         ON CONFLICT (idempotency_key) DO NOTHING",
    )
    .bind(key)
    .bind(chat_ref.platform.as_str())
    .bind(chat)
    .bind(text)
    .bind(now)
    .bind(recipient)
    .execute(conn)
    .await?;
    Ok(())
}
