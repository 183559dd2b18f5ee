//! Purchases, refunds, Stripe events and notices in the store. Every change that moves credits
//! runs in one transaction with the purchase row it follows from and the notice that reports
//! it; on PostgreSQL the wallet row is locked first, so a lot's unused credits cannot change
//! between reading and taking them.

use crate::UserError;
use sqlx::{AnyConnection, any::AnyRow};

use super::rows::named_row;

use crate::payments::{
    Approval, NewPurchase, PaymentEvent, Purchase, PurchaseState, Rail, Refund, RefundState,
    Refundable, refund_amount,
};
use crate::{
    AccountId, Backend, Credits, Error, PurchaseId, RefundId, Result, Store, TransferId, UserId,
    chat::ChatRef,
    ledger::{SystemAccount, TransferState},
    payments::{EventOutcome, Notice, NoticeToSend, RefundOutcome},
    store::{Atomic, now_millis},
};

mod credit;
mod notices;
mod refunds;

use self::{credit::*, notices::*, refunds::*};

const PURCHASE_COLUMNS: &str = "p.id, p.user_id, p.payer, p.pack, p.credits, p.rail, p.amount, \
     p.currency, p.chat, p.state, p.fee, p.fee_estimated, p.refunded, p.stripe_session_id, \
     p.stripe_payment_intent, p.stripe_charge_id, p.stripe_balance_txn, p.telegram_charge_id, \
     p.created_at, p.paid_at, p.transfer_id, p.provider_refunded, p.disputed_at, \
     a.id AS wallet_id";

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

named_row! {
    /// A purchase as [`PURCHASE_COLUMNS`] reads it.
    struct PurchaseRow {
        id: i64,
        user_id: i64,
        payer: String,
        pack: String,
        credits: i64,
        rail: String,
        amount: i64,
        currency: String,
        chat: String,
        state: String,
        fee: i64,
        fee_estimated: i64,
        refunded: i64,
        stripe_session_id: Option<String>,
        stripe_payment_intent: Option<String>,
        stripe_charge_id: Option<String>,
        stripe_balance_txn: Option<String>,
        telegram_charge_id: Option<String>,
        created_at: i64,
        paid_at: Option<i64>,
        transfer_id: Option<i64>,
        provider_refunded: i64,
        disputed_at: Option<i64>,
        wallet_id: i64,
    }
}

fn purchase_from_row(row: &AnyRow) -> Result<Row> {
    let row = <PurchaseRow as sqlx::FromRow<_>>::from_row(row)?;
    let chat: ChatRef = serde_json::from_str(&row.chat).map_err(anyhow::Error::from)?;
    Ok(Row {
        purchase: Purchase {
            id: PurchaseId::from_db(row.id),
            user: UserId::from_db(row.user_id),
            payer: row.payer,
            pack: row.pack,
            credits: Credits::from_db(row.credits)?,
            rail: Rail::from_db(&row.rail)?,
            amount: unsigned(row.amount)?,
            currency: row.currency,
            chat,
            state: PurchaseState::from_db(&row.state)?,
            fee: unsigned(row.fee)?,
            fee_estimated: row.fee_estimated == 1,
            refunded: unsigned(row.refunded)?,
            stripe_session_id: row.stripe_session_id,
            stripe_payment_intent: row.stripe_payment_intent,
            stripe_charge_id: row.stripe_charge_id,
            stripe_balance_transaction: row.stripe_balance_txn,
            telegram_charge_id: row.telegram_charge_id,
            created_at: row.created_at,
            paid_at: row.paid_at,
        },
        wallet: AccountId::from_db(row.wallet_id),
        transfer: row.transfer_id.map(TransferId::from_db),
        provider_refunded: unsigned(row.provider_refunded)?,
        disputed: row.disputed_at.is_some(),
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
             ORDER BY p.id LIMIT {limit}"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
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

    /// Chooses how SQLite credits a card payment: with the one-round-trip script
    /// ([`credit_in_one_trip`], the default) or with the general path PostgreSQL takes. Both
    /// keep the same rules and leave the same books (a story runs them on the same events); the
    /// script is kept because the webhook benchmark shows it pays (see its note). PostgreSQL
    /// always takes the general path.
    pub fn use_credit_script(&self, on: bool) {
        self.inner
            .credit_script
            .store(on, std::sync::atomic::Ordering::Relaxed);
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
        // A refund or dispute may freeze the payer.
        let _changing = self.changing_people(None);
        let books = self.books();
        if books.backend == Backend::Sqlite
            && self
                .inner
                .credit_script
                .load(std::sync::atomic::Ordering::Relaxed)
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
                notice: serde_json::to_string(&credited(&known, Credits::ZERO))
                    .map_err(anyhow::Error::from)?,
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
        let _changing = self.changing_people(None);
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
                    &Notice::PaymentFailed {
                        order: p.id,
                        credits: p.credits,
                        amount: p.amount,
                        currency: p.currency.clone(),
                    },
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
