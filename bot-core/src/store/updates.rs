//! Updates a platform delivers at least once: which were taken for handling (so that each is
//! handled at most once across restarts and instances), and where a polled stream stands.

use std::collections::HashSet;

use crate::{
    Backend, Result, Store,
    store::{Atomic, now_millis},
};

/// How long a taken update is remembered: Telegram keeps an update for at most 24 hours.
const REMEMBERED_MS: i64 = 24 * 60 * 60 * 1000;

impl Store {
    /// Takes the updates named by `keys` for handling here, and moves `stream` on to
    /// `position` when one is given, in one transaction. Returns the keys nobody took before,
    /// in the order given; the others were taken already (by this instance before a restart,
    /// or by another) and must not be handled again.
    ///
    /// # Errors
    ///
    /// [`crate::Error::Internal`] when the database fails; then nothing was taken.
    pub async fn take_updates(
        &self,
        keys: Vec<String>,
        stream: Option<(&str, i64)>,
    ) -> Result<Vec<String>> {
        let stream = stream.map(|(name, position)| (name.to_string(), position));
        let now = now_millis();
        // Now and then, not on every batch: the purge is cheap but need not be constant.
        let purge = rand::random::<u8>() == 0;
        let backend = self.backend();
        self.retrying(|| {
            let (keys, stream) = (keys.clone(), stream.clone());
            self.write(Atomic::Transaction, move |conn| {
                Box::pin(async move {
                    let fresh = if keys.is_empty() {
                        Vec::new()
                    } else {
                        take_keys(conn, backend, keys, now).await?
                    };
                    if let Some((name, position)) = stream {
                        sqlx::query(
                            "INSERT INTO cursors (stream, position, updated_at) VALUES ($1, $2, $3) \
                             ON CONFLICT (stream) DO UPDATE SET \
                               position = CASE WHEN cursors.position > excluded.position \
                                 THEN cursors.position ELSE excluded.position END, \
                               updated_at = excluded.updated_at",
                        )
                        .bind(name)
                        .bind(position)
                        .bind(now)
                        .execute(&mut *conn)
                        .await?;
                    }
                    if purge {
                        sqlx::query("DELETE FROM taken_updates WHERE taken_at < $1")
                            .bind(now - REMEMBERED_MS)
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(fresh)
                })
            })
        })
        .await
    }

    /// Where `stream` stands, if it was ever moved on.
    ///
    /// # Errors
    ///
    /// [`crate::Error::Internal`] when the database fails.
    pub async fn cursor(&self, stream: &str) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT position FROM cursors WHERE stream = $1")
                .bind(stream.to_string())
                .fetch_optional(&mut *self.reader().await?)
                .await?,
        )
    }
}

/// Takes `keys` (inside the caller's transaction): returns those nobody took before, in the
/// order given.
///
/// PostgreSQL reads the keys it inserted back (`RETURNING`): two instances may take one batch
/// at once, and the unique key decides between them. SQLite has one writer at a time (the
/// transaction holds the write lock from its start), so there the keys already taken are read
/// first and the rest inserted: one query that gives back a row only for an update delivered
/// again, rather than a row for every key (each a hand-off to the tokio side through sqlx's
/// row channel; `/balance` in the Telegram benchmark spent 11.7 µs a key on the `RETURNING`
/// form against SQLite's own 2 µs).
async fn take_keys(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    keys: Vec<String>,
    now: i64,
) -> Result<Vec<String>> {
    // The keys' own parameters come first on SQLite (its read), then a (key, time) pair each.
    let (read_first, first_pair) = match backend {
        Backend::Postgres => (false, 1),
        Backend::Sqlite => (true, keys.len() + 1),
    };
    let pairs = (0..keys.len())
        .map(|i| format!("(${}, ${})", first_pair + 2 * i, first_pair + 2 * i + 1))
        .collect::<Vec<_>>()
        .join(", ");
    let insert = format!(
        "INSERT INTO taken_updates (key, taken_at) VALUES {pairs} ON CONFLICT (key) DO NOTHING"
    );
    let sql = if read_first {
        let named: Vec<String> = (1..=keys.len()).map(|i| format!("${i}")).collect();
        format!(
            "SELECT key FROM taken_updates WHERE key IN ({}); {insert}",
            named.join(", ")
        )
    } else {
        format!("{insert} RETURNING key")
    };
    let mut query = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql));
    if read_first {
        for key in &keys {
            query = query.bind(key.clone());
        }
    }
    for key in &keys {
        query = query.bind(key.clone()).bind(now);
    }
    let answered: HashSet<String> = query.fetch_all(&mut *conn).await?.into_iter().collect();
    // SQLite answers the keys taken before; PostgreSQL the keys this take inserted.
    Ok(keys
        .into_iter()
        .filter(|key| answered.contains(key) != read_first)
        .collect())
}

#[cfg(test)]
mod tests {
    use crate::{Store, on_every_backend};

    on_every_backend!(
        each_update_is_taken_once_and_the_cursor_only_moves_on,
        overlapping_takes_share_out_each_key_once,
    );

    async fn each_update_is_taken_once_and_the_cursor_only_moves_on(store: Store) {
        let keys = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert_eq!(store.cursor("telegram").await.expect("read"), None);
        let first = store
            .take_updates(keys(&["u1", "u2"]), Some(("telegram", 3)))
            .await
            .expect("take");
        assert_eq!(first, keys(&["u1", "u2"]));
        // Delivered again with one new update, as after a restart.
        let again = store
            .take_updates(keys(&["u1", "u2", "u3"]), Some(("telegram", 2)))
            .await
            .expect("take");
        assert_eq!(again, keys(&["u3"]));
        assert_eq!(
            store.cursor("telegram").await.expect("read"),
            Some(3),
            "never back"
        );
        store
            .take_updates(Vec::new(), Some(("telegram", 9)))
            .await
            .expect("move on");
        assert_eq!(store.cursor("telegram").await.expect("read"), Some(9));
    }

    /// Two takes at once, say two instances handed overlapping batches, or a batch delivered
    /// again while the first is being taken: every key goes to exactly one of them.
    async fn overlapping_takes_share_out_each_key_once(store: Store) {
        let batch = |from: usize| {
            (from..from + 60)
                .map(|i| format!("u{i}"))
                .collect::<Vec<_>>()
        };
        let takes: Vec<_> = (0..4)
            .map(|i| {
                let (store, keys) = (store.clone(), batch(i * 20));
                tokio::spawn(async move { store.take_updates(keys, None).await })
            })
            .collect();
        let mut taken = Vec::new();
        for take in takes {
            taken.extend(take.await.expect("task").expect("take"));
        }
        taken.sort_by_key(|k| k[1..].parse::<usize>().expect("number"));
        let all: Vec<String> = (0..120).map(|i| format!("u{i}")).collect();
        assert_eq!(taken, all, "each key taken once, none lost");
    }
}
