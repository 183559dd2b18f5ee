//! Admin actions' SQL: each action and its audit row (admin_actions) in one transaction; flags,
//! lookups and the figures for stats.

use crate::admin::*;
use crate::{
    Error, Identity, Result, Store, Usd, UserId,
    ledger::{self, Phase, TransferKind, TransferRequest},
    store::{Atomic, now_millis},
};
use sqlx::AnyConnection;

use super::rows::named_row;

named_row! {
    /// A row of the audit table.
    struct ActionRow {
        id: i64,
        actor: String,
        action: String,
        target: Option<String>,
        detail: String,
        created_at: i64,
    }
}

named_row! {
    /// Paid purchases in one currency.
    struct SalesRow {
        currency: String,
        orders: i64,
        credits: i64,
        amount: i64,
        fees: i64,
        refunded: i64,
    }
}

named_row! {
    /// Succeeded jobs of one operation.
    struct EarningsRow {
        operation: String,
        jobs: i64,
        credits: i64,
        cost: i64,
        uncosted: i64,
    }
}

impl Store {
    /// Records an admin action that changes nothing else (a read, or a decision recorded by its
    /// own code).
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails.
    pub async fn record_admin_action(
        &self,
        actor: &str,
        action: &str,
        target: Option<&str>,
        detail: &str,
    ) -> Result<()> {
        let (actor, action, target, detail) = (
            actor.to_string(),
            action.to_string(),
            target.map(str::to_string),
            detail.to_string(),
        );
        self.write(Atomic::Statement, move |conn| {
            Box::pin(async move { record(conn, &actor, &action, target.as_deref(), &detail).await })
        })
        .await
    }

    /// Moves credits between a wallet and the grants account, with the audit row, at once.
    /// `key` makes a repeated request do nothing twice.
    ///
    /// # Errors
    ///
    /// [`UserError::InsufficientCredits`] when taking more than the wallet holds.
    pub async fn admin_transfer(
        &self,
        actor: &str,
        target: &Identity,
        request: TransferRequest,
        action: &str,
    ) -> Result<ledger::Transfer> {
        let (actor, target, action) = (actor.to_string(), target.to_string(), action.to_string());
        self.retrying(|| {
            let (actor, target, action, request) = (
                actor.clone(),
                target.clone(),
                action.clone(),
                request.clone(),
            );
            self.write(Atomic::Transaction, move |conn| {
                Box::pin(async move {
                    let detail = format!(
                        "{} {}: {}",
                        action,
                        request.amount,
                        request.memo.clone().unwrap_or_default()
                    );
                    let transfer =
                        match crate::store::ledger::insert_transfer(conn, request, Phase::Posted)
                            .await?
                        {
                            crate::store::ledger::Inserted::Created(transfer) => {
                                record(conn, &actor, &action, Some(&target), &detail).await?;
                                transfer
                            }
                            crate::store::ledger::Inserted::Existing(transfer) => transfer,
                            crate::store::ledger::Inserted::MissingAccount => {
                                return Err(Error::Internal(anyhow::anyhow!(
                                    "an account of the transfer is missing"
                                )));
                            }
                        };
                    Ok(transfer)
                })
            })
        })
        .await
    }

    /// Sets or clears a person's ban or freeze, with the audit row; a ban also cancels the
    /// person's open jobs, in the same transaction. Returns whether anything changed and how
    /// many jobs were cancelled.
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails.
    pub async fn set_flag(
        &self,
        actor: &str,
        target: &Identity,
        user: UserId,
        flag: Flag,
        on: bool,
        reason: &str,
    ) -> Result<(bool, u64)> {
        let _changing = self.changing_people(Some(user));
        let (actor, target, reason) = (actor.to_string(), target.to_string(), reason.to_string());
        self.write(Atomic::Transaction, move |conn| {
            Box::pin(async move {
                let column = match flag {
                    Flag::Banned => "banned_at",
                    Flag::Frozen => "frozen_at",
                };
                let (value, condition) = if on {
                    (Some(now_millis()), "IS NULL")
                } else {
                    (None, "IS NOT NULL")
                };
                // The column is one of two constants above, never input.
                let sql = format!(
                    "UPDATE users SET {column} = $2 WHERE id = $1 AND {column} {condition}"
                );
                let changed = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(user.get())
                    .bind(value)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected()
                    == 1;
                let action = match (flag, on) {
                    (Flag::Banned, true) => "ban",
                    (Flag::Banned, false) => "unban",
                    (Flag::Frozen, true) => "freeze",
                    (Flag::Frozen, false) => "unfreeze",
                };
                let cancelled = if changed && flag == Flag::Banned && on {
                    crate::store::jobs::cancel_open_jobs(&mut *conn, user).await?
                } else {
                    0
                };
                let detail = match (changed, reason.is_empty()) {
                    (true, _) => reason,
                    (false, true) => "no change".to_string(),
                    (false, false) => format!("no change; {reason}"),
                };
                record(conn, &actor, action, Some(&target), &detail).await?;
                Ok((changed, cancelled))
            })
        })
        .await
    }

    /// The audit table, newest first.
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails.
    pub async fn admin_actions(&self, limit: u32) -> Result<Vec<AdminAction>> {
        let rows: Vec<ActionRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT id, actor, action, target, detail, created_at FROM admin_actions \
             ORDER BY id DESC LIMIT {limit}"
        )))
        .fetch_all(&mut *self.reader().await?)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| AdminAction {
                id: row.id,
                actor: row.actor,
                action: row.action,
                target: row.target,
                detail: row.detail,
                created_at: row.created_at,
            })
            .collect())
    }

    /// Figures since `since` (unix milliseconds).
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails.
    pub async fn stats(&self, since: i64) -> Result<Stats> {
        let mut reader = self.reader().await?;
        let (people, new_people): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), \
               CAST(COALESCE(SUM(CASE WHEN created_at >= $1 THEN 1 ELSE 0 END), 0) AS BIGINT) \
             FROM users WHERE merged_into IS NULL",
        )
        .bind(since)
        .fetch_one(&mut *reader)
        .await?;
        let jobs: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT operation, state, COUNT(*) FROM jobs WHERE created_at >= $1 \
             GROUP BY operation, state ORDER BY operation, state",
        )
        .bind(since)
        .fetch_all(&mut *reader)
        .await?;
        let kinds: Vec<(String, i64)> = sqlx::query_as(
            // PostgreSQL sums BIGINTs as NUMERIC.
            "SELECT kind, CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM transfers \
             WHERE state = 'posted' AND created_at >= $1 GROUP BY kind",
        )
        .bind(since)
        .fetch_all(&mut *reader)
        .await?;
        let sum = |kind: TransferKind| {
            kinds
                .iter()
                .filter(|(k, _)| k == kind.as_str())
                .map(|(_, amount)| *amount)
                .sum::<i64>()
        };
        let sales: Vec<SalesRow> = sqlx::query_as(
            "SELECT currency, COUNT(*) AS orders, CAST(SUM(credits) AS BIGINT) AS credits, \
               CAST(SUM(amount) AS BIGINT) AS amount, CAST(SUM(fee) AS BIGINT) AS fees, \
               CAST(SUM(refunded) AS BIGINT) AS refunded \
             FROM purchases WHERE state = 'paid' AND paid_at >= $1 \
             GROUP BY currency ORDER BY currency",
        )
        .bind(since)
        .fetch_all(&mut *reader)
        .await?;
        let earnings: Vec<EarningsRow> = sqlx::query_as(
            // The hold's amount is what the job was charged; it is posted as the job succeeds.
            "SELECT j.operation, COUNT(*) AS jobs, \
               CAST(COALESCE(SUM(t.amount), 0) AS BIGINT) AS credits, \
               CAST(COALESCE(SUM(j.provider_cost_micros), 0) AS BIGINT) AS cost, \
               CAST(COALESCE(SUM(CASE WHEN j.provider_cost_micros IS NULL THEN 1 ELSE 0 END), 0) \
                 AS BIGINT) AS uncosted \
             FROM jobs j JOIN transfers t ON t.id = j.hold_id \
             WHERE j.state = 'succeeded' AND j.created_at >= $1 \
             GROUP BY j.operation ORDER BY j.operation",
        )
        .bind(since)
        .fetch_all(&mut *reader)
        .await?;
        Ok(Stats {
            people,
            new_people,
            jobs,
            sales: sales
                .into_iter()
                .map(|row| Sales {
                    currency: row.currency,
                    orders: row.orders,
                    credits: row.credits,
                    amount: row.amount,
                    fees: row.fees,
                    refunded: row.refunded,
                })
                .collect(),
            earnings: earnings
                .into_iter()
                .map(|row| Earnings {
                    operation: row.operation,
                    jobs: row.jobs,
                    credits: row.credits,
                    cost: Usd::from_db(row.cost),
                    uncosted: row.uncosted,
                })
                .collect(),
            credits_sold: sum(TransferKind::Purchase),
            credits_spent: sum(TransferKind::Generation),
            credits_refunded: sum(TransferKind::Refund),
            credits_granted: sum(TransferKind::Grant),
        })
    }
}

pub(crate) async fn record(
    conn: &mut AnyConnection,
    actor: &str,
    action: &str,
    target: Option<&str>,
    detail: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO admin_actions (actor, action, target, detail, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(actor)
    .bind(action)
    .bind(target)
    .bind(detail)
    .bind(now_millis())
    .execute(conn)
    .await?;
    Ok(())
}
