//! Large results kept for a link (`large_files`): written once with their expiry, read by the
//! whole link (id, token, name, expiry) on any instance, deleted once expired.

use sqlx::Row as _;

use crate::{Result, Store, store::Atomic, store::now_millis};

/// A kept file, as served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptFile {
    pub name: String,
    pub mime: String,
    pub bytes: Vec<u8>,
    pub expires_at: i64,
}

impl Store {
    /// Keeps `bytes` under `id` until `expires_at` (unix milliseconds), deleting expired files
    /// first.
    ///
    /// # Errors
    ///
    /// [`crate::Error::Internal`] when the database fails.
    pub async fn keep_file(
        &self,
        id: &str,
        token: &str,
        name: &str,
        mime: &str,
        bytes: Vec<u8>,
        expires_at: i64,
    ) -> Result<()> {
        let (id, token, name, mime) = (
            id.to_string(),
            token.to_string(),
            name.to_string(),
            mime.to_string(),
        );
        self.write(Atomic::Transaction, move |conn| {
            Box::pin(async move {
                sqlx::query("DELETE FROM large_files WHERE expires_at < $1")
                    .bind(now_millis())
                    .execute(&mut *conn)
                    .await?;
                sqlx::query(
                    "INSERT INTO large_files (id, token, name, mime, bytes, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&id)
                .bind(&token)
                .bind(&name)
                .bind(&mime)
                .bind(bytes)
                .bind(expires_at)
                .execute(&mut *conn)
                .await?;
                Ok(())
            })
        })
        .await
    }

    /// The file a link names, when every part of the link matches what was kept and it has not
    /// expired. The bytes are read only for such a link, never for a forged one.
    ///
    /// # Errors
    ///
    /// [`crate::Error::Internal`] when the database fails.
    pub async fn kept_file(
        &self,
        id: &str,
        token: &str,
        name: &str,
        expires_at: i64,
    ) -> Result<Option<KeptFile>> {
        let row = sqlx::query(
            "SELECT name, mime, bytes, expires_at FROM large_files \
             WHERE id = $1 AND token = $2 AND name = $3 AND expires_at = $4 AND expires_at > $5",
        )
        .bind(id)
        .bind(token)
        .bind(name)
        .bind(expires_at)
        .bind(now_millis())
        .fetch_optional(&mut *self.reader().await?)
        .await?;
        row.map(|row| {
            Ok(KeptFile {
                name: row.try_get("name")?,
                mime: row.try_get("mime")?,
                bytes: row.try_get("bytes")?,
                expires_at: row.try_get("expires_at")?,
            })
        })
        .transpose()
    }
}
