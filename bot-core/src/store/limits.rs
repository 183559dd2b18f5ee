//! The request limit's shared counts: what each instance let through of each person's requests,
//! as running totals one row per (person, instance), so that instances on one PostgreSQL
//! database hold a person to one limit between them (see `service::throttle`).

use super::{Atomic, Result, Store};

/// A running total another instance reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LetThrough {
    pub identity: String,
    pub instance: String,
    pub total: i64,
}

/// A total nobody added to for this long starts again from nothing, so that whoever reads it
/// next for the first time takes only recent requests for it, not a person's whole history.
const QUIET_MS: i64 = 60_000;

/// Rows per insert statement; well under PostgreSQL's 65,535 bound parameters.
const ROWS_PER_STATEMENT: usize = 500;

impl Store {
    /// Adds what `instance` let through since it last reported (`mine`: identity and count) to
    /// its running totals, and reads every other instance's totals changed at or after
    /// `since_ms`.
    ///
    /// # Errors
    ///
    /// When the database cannot be reached.
    pub async fn exchange_let_through(
        &self,
        instance: &str,
        mine: Vec<(String, u32)>,
        since_ms: i64,
    ) -> Result<Vec<LetThrough>> {
        let now = super::now_millis();
        for chunk in mine.chunks(ROWS_PER_STATEMENT) {
            let rows: Vec<String> = (0..chunk.len())
                .map(|n| format!("(${}, $1, ${}, $2)", 3 + 2 * n, 4 + 2 * n))
                .collect();
            let sql = format!(
                "INSERT INTO let_through (identity, instance, total, updated_at) VALUES {} \
                 ON CONFLICT (identity, instance) DO UPDATE \
                 SET total = CASE WHEN let_through.updated_at < $2 - {QUIET_MS} \
                     THEN excluded.total ELSE let_through.total + excluded.total END, \
                     updated_at = excluded.updated_at",
                rows.join(", ")
            );
            let chunk = chunk.to_vec();
            let instance = instance.to_string();
            self.write(Atomic::Statement, move |conn| {
                Box::pin(async move {
                    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(instance)
                        .bind(now);
                    for (identity, count) in chunk {
                        query = query.bind(identity).bind(i64::from(count));
                    }
                    query.execute(conn).await?;
                    Ok(())
                })
            })
            .await?;
        }
        let others: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT identity, instance, total FROM let_through \
             WHERE updated_at >= $1 AND instance <> $2",
        )
        .bind(since_ms)
        .bind(instance)
        .fetch_all(&mut *self.reader().await?)
        .await?;
        Ok(others
            .into_iter()
            .map(|(identity, instance, total)| LetThrough {
                identity,
                instance,
                total,
            })
            .collect())
    }

    /// Forgets the totals nobody has added to since `before_ms`.
    ///
    /// # Errors
    ///
    /// When the database cannot be reached.
    pub async fn forget_let_through(&self, before_ms: i64) -> Result<u64> {
        self.write(Atomic::Statement, move |conn| {
            Box::pin(async move {
                let done = sqlx::query("DELETE FROM let_through WHERE updated_at < $1")
                    .bind(before_ms)
                    .execute(conn)
                    .await?;
                Ok(done.rows_affected())
            })
        })
        .await
    }
}
