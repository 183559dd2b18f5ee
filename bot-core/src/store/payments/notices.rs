//! The notices outbox: messages about money, written in the transaction that moved it, leased
//! to one sender at a time and marked sent once.

use super::*;

named_row! {
    /// A notice as it is leased for sending.
    struct NoticeRow {
        id: i64,
        chat: String,
        record: String,
        attempts: i64,
        recipient: Option<String>,
    }
}

impl Store {
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
        let rows: Vec<NoticeRow> = self
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
                                      ORDER BY next_attempt_at, id LIMIT {limit}{lock}) \
                         RETURNING id, chat, record, attempts, recipient"
                    );
                    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
                        .bind(now)
                        .fetch_all(conn)
                        .await?)
                })
            })
            .await?;
        rows.into_iter()
            .map(|row| {
                Ok(NoticeToSend {
                    id: row.id,
                    chat: serde_json::from_str(&row.chat).map_err(anyhow::Error::from)?,
                    recipient: row.recipient.and_then(|r| r.parse().ok()),
                    notice: serde_json::from_str(&row.record).map_err(anyhow::Error::from)?,
                    attempts: u32::try_from(row.attempts).unwrap_or(u32::MAX),
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

/// Queues a message for the person, once per `key`.
pub(super) async fn notice(
    conn: &mut AnyConnection,
    key: &str,
    chat_ref: &ChatRef,
    recipient: &str,
    record: &Notice,
) -> Result<()> {
    let chat = serde_json::to_string(chat_ref).map_err(anyhow::Error::from)?;
    let record = serde_json::to_string(record).map_err(anyhow::Error::from)?;
    let now = now_millis();
    sqlx::query(
        "INSERT INTO notices (idempotency_key, platform, chat, record, created_at, \
         next_attempt_at, recipient) VALUES ($1, $2, $3, $4, $5, $5, $6) \
         ON CONFLICT (idempotency_key) DO NOTHING",
    )
    .bind(key)
    .bind(chat_ref.platform.as_str())
    .bind(chat)
    .bind(record)
    .bind(now)
    .bind(recipient)
    .execute(conn)
    .await?;
    Ok(())
}
