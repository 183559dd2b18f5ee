//! Updates a platform delivers at least once: which were taken for handling (so that each is
//! handled at most once across restarts and instances), and where a polled stream stands.

use std::{
    collections::HashSet,
    sync::{Arc, LazyLock},
};

use dashmap::DashMap;

use crate::{
    Backend, Result, Store,
    store::{
        Atomic, now_millis,
        plan::{Arg, Plan, Script},
    },
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
        if keys.is_empty() && stream.is_none() {
            return Ok(Vec::new());
        }
        let stream = stream.map(|(name, position)| (name.to_string(), position));
        let now = now_millis();
        let fresh = match self.backend() {
            Backend::Sqlite => {
                self.retrying(|| self.write_plan(take_plan(keys.clone(), stream.clone(), now)))
                    .await?
            }
            Backend::Postgres => {
                self.retrying(|| {
                    let (keys, stream) = (keys.clone(), stream.clone());
                    self.write(Atomic::Transaction, move |conn| {
                        Box::pin(async move {
                            let fresh = if keys.is_empty() {
                                Vec::new()
                            } else {
                                take_keys(conn, keys, now).await?
                            };
                            if let Some((name, position)) = stream {
                                sqlx::query(sqlx::AssertSqlSafe(cursor_moves_on(1, 2, 3)))
                                    .bind(name)
                                    .bind(position)
                                    .bind(now)
                                    .execute(&mut *conn)
                                    .await?;
                            }
                            Ok(fresh)
                        })
                    })
                })
                .await?
            }
        };
        // Now and then, not on every take: the purge is cheap but need not be constant. Apart
        // from the take, which has committed: its updates are this instance's to handle
        // whatever the purge does.
        if rand::random::<u8>() == 0
            && let Err(error) = self
                .write(Atomic::Statement, move |conn| {
                    Box::pin(async move {
                        sqlx::query("DELETE FROM taken_updates WHERE taken_at < $1")
                            .bind(now - REMEMBERED_MS)
                            .execute(&mut *conn)
                            .await?;
                        Ok(())
                    })
                })
                .await
        {
            tracing::warn!(
                error = format!("{error:#}"),
                "purging old taken updates failed"
            );
        }
        Ok(fresh)
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

/// The SQLite take of `n` keys as one script (`$1…$n` the keys, `$n+1` now; with `cursor`,
/// `$n+2` the stream and `$n+3` its position): the keys taken before are read, then every key
/// is inserted, and the stream moved on.
///
/// SQLite has one writer at a time, so nobody takes a key between the read and the insert,
/// and the read gives back a row only for an update delivered again, rather than a row for
/// every key as `RETURNING` would (each row a hand-off through sqlx's row channel: `/balance`
/// in the Telegram benchmark spent 11.7 µs a key on the `RETURNING` form against SQLite's own
/// 2 µs). It is one plan, so the writer sends it in one round trip, where the take as a
/// transaction cost five (its opening, a savepoint, the keys, the cursor and the commit), each
/// waiting for the writer to be woken (then a task on a busy runtime). A take is on the path of
/// every update: none is handled, and no later one fetched, until it commits.
fn take_script(n: usize, cursor: bool) -> Arc<Script> {
    static BY_SHAPE: LazyLock<DashMap<(usize, bool), Arc<Script>>> = LazyLock::new(DashMap::new);
    BY_SHAPE
        .entry((n, cursor))
        .or_insert_with(|| {
            let now = n + 1;
            let mut statements = Vec::new();
            if n > 0 {
                let named: Vec<String> = (1..=n).map(|i| format!("${i}")).collect();
                statements.push(format!(
                    "SELECT key FROM taken_updates WHERE key IN ({})",
                    named.join(", ")
                ));
                statements.push(insert_keys(n));
            }
            if cursor {
                statements.push(cursor_moves_on(n + 2, n + 3, now));
            }
            Script::new(statements.join("; "))
        })
        .clone()
}

/// The statement that takes `n` keys (`$1…$n`) at the time `$n+1`, leaving those taken before.
fn insert_keys(n: usize) -> String {
    let pairs: Vec<String> = (1..=n).map(|i| format!("(${i}, ${})", n + 1)).collect();
    format!(
        "INSERT INTO taken_updates (key, taken_at) VALUES {} ON CONFLICT (key) DO NOTHING",
        pairs.join(", ")
    )
}

/// The statement that moves a stream on, never back, its stream, position and time the
/// parameters numbered `stream`, `position` and `now`.
fn cursor_moves_on(stream: usize, position: usize, now: usize) -> String {
    format!(
        "INSERT INTO cursors (stream, position, updated_at) VALUES (${stream}, ${position}, ${now}) \
         ON CONFLICT (stream) DO UPDATE SET \
           position = CASE WHEN cursors.position > excluded.position \
             THEN cursors.position ELSE excluded.position END, \
           updated_at = excluded.updated_at"
    )
}

/// The take on SQLite (see [`take_script`]): the keys nobody took before, in the order given.
fn take_plan(keys: Vec<String>, stream: Option<(String, i64)>, now: i64) -> Plan<Vec<String>> {
    let mut args: Vec<Arg> = keys.iter().map(|key| Arg::from(key.as_str())).collect();
    args.push(Arg::from(now));
    if let Some((name, position)) = &stream {
        args.push(Arg::from(name.as_str()));
        args.push(Arg::from(*position));
    }
    let script = take_script(keys.len(), stream.is_some());
    Plan::new(&script, args, move |rows| {
        use sqlx::Row as _;
        let before = rows
            .iter()
            .map(|row| row.try_get::<String, _>(0))
            .collect::<std::result::Result<HashSet<String>, _>>()?;
        Ok(keys
            .into_iter()
            .filter(|key| !before.contains(key))
            .collect())
    })
}

/// Takes `keys` on PostgreSQL (inside the caller's transaction): returns those nobody took
/// before, in the order given. The keys it inserted are read back (`RETURNING`): two instances
/// may take one batch at once, and the unique key decides between them.
async fn take_keys(
    conn: &mut sqlx::AnyConnection,
    keys: Vec<String>,
    now: i64,
) -> Result<Vec<String>> {
    let sql = format!("{} RETURNING key", insert_keys(keys.len()));
    let mut query = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql));
    for key in &keys {
        query = query.bind(key.clone());
    }
    let inserted: HashSet<String> = query
        .bind(now)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .collect();
    Ok(keys
        .into_iter()
        .filter(|key| inserted.contains(key))
        .collect())
}

#[cfg(test)]
mod tests {
    use crate::{Backend, Store, on_every_backend, store::testing::execute};

    on_every_backend!(
        each_update_is_taken_once_and_the_cursor_only_moves_on,
        overlapping_takes_share_out_each_key_once,
        a_take_that_fails_takes_nothing,
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

    /// A take is whole or nothing: when moving the stream on fails, none of its keys is taken,
    /// so the updates are handled when Telegram sends them again.
    async fn a_take_that_fails_takes_nothing(store: Store) {
        let keys = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        // The database refuses one position, as a failing disk or a lost connection might.
        match store.backend() {
            Backend::Sqlite => {
                execute(
                    &store,
                    "CREATE TRIGGER refuse_13 BEFORE INSERT ON cursors WHEN NEW.position = 13 \
                     BEGIN SELECT RAISE(ABORT, 'refused'); END",
                    &[],
                )
                .await;
            }
            Backend::Postgres => {
                execute(
                    &store,
                    "CREATE FUNCTION refuse_13() RETURNS trigger AS $$ BEGIN \
                       IF NEW.position = 13 THEN RAISE EXCEPTION 'refused'; END IF; \
                       RETURN NEW; END $$ LANGUAGE plpgsql",
                    &[],
                )
                .await;
                execute(
                    &store,
                    "CREATE TRIGGER refuse_13 BEFORE INSERT ON cursors \
                     FOR EACH ROW EXECUTE FUNCTION refuse_13()",
                    &[],
                )
                .await;
            }
        }
        let refused = store
            .take_updates(keys(&["u1", "u2"]), Some(("telegram", 13)))
            .await;
        assert!(refused.is_err(), "the take was refused: {refused:?}");
        assert_eq!(store.cursor("telegram").await.expect("read"), None);
        let again = store
            .take_updates(keys(&["u1", "u2", "u3"]), Some(("telegram", 14)))
            .await
            .expect("take");
        assert_eq!(again, keys(&["u1", "u2", "u3"]), "none was taken before");
        assert_eq!(store.cursor("telegram").await.expect("read"), Some(14));
    }
}
