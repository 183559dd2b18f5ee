//! Interactions a platform lets us answer for a short while (Discord's interaction tokens),
//! kept so that any instance can answer the one another acknowledged.

use secrecy::{ExposeSecret as _, SecretString};

use crate::{
    Result, Store,
    store::{Atomic, now_millis},
};

/// One acknowledged interaction and its token.
#[derive(Clone)]
pub struct KeptInteraction {
    pub id: String,
    pub platform: String,
    /// The token that answers it; never logged.
    pub token: SecretString,
    /// How it was acknowledged, in the adapter's words.
    pub kind: String,
    pub upload_limit: u64,
    pub person: String,
    pub channel: String,
    /// Unix milliseconds after which the token no longer works.
    pub expires_at: i64,
}

impl std::fmt::Debug for KeptInteraction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeptInteraction")
            .field("id", &self.id)
            .field("platform", &self.platform)
            .field("kind", &self.kind)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// id, platform, token, kind, upload_limit, person, channel, expires_at.
type Row = (String, String, String, String, i64, String, String, i64);

impl Store {
    /// Keeps `interaction` until its token expires (and forgets expired ones now and then).
    ///
    /// # Errors
    ///
    /// [`crate::Error::Internal`] when the database fails.
    pub async fn keep_interaction(&self, interaction: &KeptInteraction) -> Result<()> {
        let kept = interaction.clone();
        let purge = rand::random::<u8>() == 0;
        self.write(Atomic::Transaction, move |conn| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO interactions \
                       (id, platform, token, kind, upload_limit, person, channel, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
                )
                .bind(kept.id)
                .bind(kept.platform)
                .bind(kept.token.expose_secret().to_string())
                .bind(kept.kind)
                .bind(i64::try_from(kept.upload_limit).unwrap_or(i64::MAX))
                .bind(kept.person)
                .bind(kept.channel)
                .bind(kept.expires_at)
                .execute(&mut *conn)
                .await?;
                if purge {
                    sqlx::query("DELETE FROM interactions WHERE expires_at < $1")
                        .bind(now_millis())
                        .execute(&mut *conn)
                        .await?;
                }
                Ok(())
            })
        })
        .await
    }

    /// The interaction `id`, while its token still works.
    ///
    /// # Errors
    ///
    /// [`crate::Error::Internal`] when the database fails.
    pub async fn kept_interaction(&self, id: &str) -> Result<Option<KeptInteraction>> {
        let row: Option<Row> = sqlx::query_as(
            "SELECT id, platform, token, kind, upload_limit, person, channel, expires_at \
                 FROM interactions WHERE id = $1 AND expires_at > $2",
        )
        .bind(id.to_string())
        .bind(now_millis())
        .fetch_optional(&mut *self.reader().await?)
        .await?;
        Ok(row.map(
            |(id, platform, token, kind, upload_limit, person, channel, expires_at)| {
                KeptInteraction {
                    id,
                    platform,
                    token: SecretString::from(token),
                    kind,
                    upload_limit: u64::try_from(upload_limit).unwrap_or(0),
                    person,
                    channel,
                    expires_at,
                }
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use secrecy::{ExposeSecret as _, SecretString};

    use super::KeptInteraction;
    use crate::{Backend, store::now_millis, store::testing::TestDb};

    #[tokio::test]
    async fn a_kept_interaction_is_found_until_it_expires_and_never_shows_its_token() {
        let db = TestDb::new(Backend::Sqlite, "kept_interactions")
            .await
            .expect("SQLite is always available");
        let store = db.store();
        let kept = |id: &str, expires_at| KeptInteraction {
            id: id.into(),
            platform: "discord".into(),
            token: SecretString::from("aW50ZXJhY3Rpb24tdG9rZW4".to_string()),
            kind: "message".into(),
            upload_limit: 10_485_760,
            person: "42".into(),
            channel: "7".into(),
            expires_at,
        };
        store
            .keep_interaction(&kept("live", now_millis() + 60_000))
            .await
            .expect("keep");
        store
            .keep_interaction(&kept("gone", now_millis() - 1))
            .await
            .expect("keep");
        let found = store
            .kept_interaction("live")
            .await
            .expect("read")
            .expect("found");
        assert_eq!(found.token.expose_secret(), "aW50ZXJhY3Rpb24tdG9rZW4");
        assert_eq!(
            (found.upload_limit, found.person.as_str()),
            (10_485_760, "42")
        );
        assert!(!format!("{found:?}").contains("aW50"), "{found:?}");
        assert!(
            store
                .kept_interaction("gone")
                .await
                .expect("read")
                .is_none()
        );
        assert!(
            store
                .kept_interaction("never")
                .await
                .expect("read")
                .is_none()
        );
    }
}
