//! Quotes' SQL: a priced operation kept until it is confirmed or dismissed, once.

use crate::quotes::*;
use crate::{
    Credits, Result, Store, UserId,
    store::{Atomic, now_millis},
};

impl Store {
    /// Records a quote for `payload` (the job it would enqueue, as JSON).
    ///
    /// # Errors
    ///
    /// [`crate::Error::Internal`] when the database fails.
    pub async fn create_quote(
        &self,
        user: UserId,
        payload: String,
        cost: Credits,
    ) -> Result<QuoteId> {
        let now = now_millis();
        self.write(Atomic::Statement, move |conn| {
            Box::pin(async move {
                Ok(sqlx::query_scalar(
                    "INSERT INTO quotes (user_id, payload, cost, created_at) \
                     VALUES ($1, $2, $3, $4) RETURNING id",
                )
                .bind(user.get())
                .bind(payload)
                .bind(cost.to_db())
                .bind(now)
                .fetch_one(conn)
                .await?)
            })
        })
        .await
    }

    /// Resolves the person's open quote and returns its payload; `None` when it is not theirs or
    /// was already confirmed or dismissed.
    ///
    /// # Errors
    ///
    /// [`crate::Error::Internal`] when the database fails.
    pub async fn take_quote(&self, user: UserId, quote: QuoteId) -> Result<Option<String>> {
        let now = now_millis();
        self.write(Atomic::Statement, move |conn| {
            Box::pin(async move {
                Ok(sqlx::query_scalar(
                    "UPDATE quotes SET resolved_at = $3 WHERE id = $1 AND user_id = $2 \
                     AND resolved_at IS NULL RETURNING payload",
                )
                .bind(quote)
                .bind(user.get())
                .bind(now)
                .fetch_optional(conn)
                .await?)
            })
        })
        .await
    }
}
