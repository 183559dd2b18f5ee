//! Who is behind an identity, kept in memory: every update starts by reading it, and it
//! changes rarely (terms, privacy, a freeze or ban, a link, /forget).
//!
//! Every write of ours that changes a person forgets them here at once. Other processes write
//! too (other instances on PostgreSQL, the operator's `imagegpt admin …` on either database),
//! and triggers (migration 0014) announce each change with the person's id:
//! - PostgreSQL: `NOTIFY imagegpt_people` in the changing transaction, which PostgreSQL delivers
//!   when it commits; each instance forgets that person on receipt. While notifications are not
//!   being received (before the listener has connected, after its connection dropped) nothing
//!   is served from memory.
//! - SQLite: a row in `people_changes`, which the serving process reads every
//!   [`POLL`] and forgets those people.
//!
//! What moves money does not rest on this: the enqueue checks a freeze or ban in the database.

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicU64, Ordering},
};

use dashmap::DashMap;

use crate::{Identity, UserId, people::User};

/// At most this many people are remembered; past it, the memory starts again empty.
const CAPACITY: usize = 100_000;

/// How often SQLite's change log is read.
pub(crate) const POLL: std::time::Duration = std::time::Duration::from_millis(50);
/// Rows of SQLite's change log kept; older ones are deleted now and then.
const LOG_KEPT: i64 = 10_000;

/// The PostgreSQL channel the triggers notify.
pub(crate) const CHANNEL: &str = "imagegpt_people";

#[derive(Debug)]
pub(crate) struct PeopleCache {
    by_identity: DashMap<Identity, User>,
    /// The identities remembered for each person, so that a change to one person forgets
    /// theirs without a walk over everyone remembered.
    by_user: DashMap<UserId, Vec<Identity>>,
    /// Moves on at every change: a read that started before a change must not be remembered
    /// after it.
    generation: AtomicU64,
    /// Whether entries may be served (always on SQLite; on PostgreSQL while listening).
    live: AtomicBool,
}

impl PeopleCache {
    pub(crate) fn new(live: bool) -> Arc<PeopleCache> {
        Arc::new(PeopleCache {
            by_identity: DashMap::new(),
            by_user: DashMap::new(),
            generation: AtomicU64::new(0),
            live: AtomicBool::new(live),
        })
    }

    /// The person remembered for `identity`.
    pub(crate) fn get(&self, identity: &Identity) -> Option<User> {
        if !self.live.load(Ordering::Acquire) {
            return None;
        }
        self.by_identity.get(identity).map(|user| user.clone())
    }

    /// Where the generation stands before a read from the database.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Remembers what a read that started at `generation` found, unless something changed since.
    pub(crate) fn remember(&self, identity: &Identity, user: &User, generation: u64) {
        if !self.live.load(Ordering::Acquire) {
            return;
        }
        if self.by_identity.len() >= CAPACITY {
            self.by_identity.clear();
            self.by_user.clear();
        }
        self.by_identity.insert(identity.clone(), user.clone());
        let mut theirs = self.by_user.entry(user.id).or_default();
        if !theirs.contains(identity) {
            theirs.push(identity.clone());
        }
        drop(theirs);
        // A change that came in between may have missed the entry just made.
        if self.generation.load(Ordering::Acquire) != generation {
            self.by_identity.remove(identity);
        }
    }

    /// Forgets a person (every identity of theirs).
    pub(crate) fn changed(&self, user: UserId) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Some((_, identities)) = self.by_user.remove(&user) {
            for identity in identities {
                self.by_identity
                    .remove_if(&identity, |_, remembered| remembered.id == user);
            }
        }
    }

    /// Forgets everyone (after a change whose person is not at hand, such as a dispute).
    pub(crate) fn forget_everyone(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.by_identity.clear();
        self.by_user.clear();
    }

    /// Forgets everyone, and serves nothing until `live` again.
    pub(crate) fn set_live(&self, live: bool) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.by_identity.clear();
        self.by_user.clear();
        self.live.store(live, Ordering::Release);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_identity.len()
    }
}

/// Forgets a person (or, with `None`, everyone) when dropped: held by a write that changes
/// people, so that whichever way it ends, the memory is cleared after the database has it.
pub(crate) struct Changing<'a> {
    pub(crate) cache: &'a PeopleCache,
    pub(crate) user: Option<UserId>,
}

impl Drop for Changing<'_> {
    fn drop(&mut self) {
        match self.user {
            Some(user) => self.cache.changed(user),
            None => self.cache.forget_everyone(),
        }
    }
}

/// Listens for other instances' changes on PostgreSQL until the cache is dropped.
pub(crate) async fn listen(url: String, cache: std::sync::Weak<PeopleCache>) {
    use sqlx::postgres::PgListener;
    loop {
        let listener = async {
            let mut listener = PgListener::connect(&url).await?;
            listener.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        }
        .await;
        let mut listener = match listener {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, "listening for people's changes failed; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                if cache.strong_count() == 0 {
                    return;
                }
                continue;
            }
        };
        match cache.upgrade() {
            Some(cache) => cache.set_live(true),
            None => return,
        }
        loop {
            let received = listener.try_recv().await;
            let Some(cache) = cache.upgrade() else {
                return;
            };
            match received {
                Ok(Some(notification)) => match notification.payload().parse::<i64>() {
                    Ok(id) => cache.changed(UserId::from_db(id)),
                    Err(_) => cache.forget_everyone(),
                },
                // The connection dropped: what was sent meanwhile is lost.
                Ok(None) | Err(_) => {
                    cache.set_live(false);
                    break;
                }
            }
        }
    }
}

/// Reads SQLite's change logs until the store is dropped, forgetting whoever changed, and the
/// wallets changed (`wallets`: see [`balance_cache`](super::balance_cache)).
pub(crate) async fn follow_log(
    store: std::sync::Weak<super::Inner>,
    wallets: super::balance_cache::WalletLog,
) {
    let mut seen: Option<i64> = None;
    let mut polls = 0u64;
    loop {
        tokio::time::sleep(POLL).await;
        let Some(inner) = store.upgrade() else {
            return;
        };
        let store = super::Store { inner };
        // One reader for both logs.
        let people = match store.reader().await {
            Ok(mut reader) => {
                let people = read_log(&store.inner.people, &mut reader, seen).await;
                wallets.read(&mut reader).await;
                people
            }
            Err(error) => {
                store.inner.balances.forget_everyone();
                Err(error)
            }
        };
        match people {
            Ok(last) => seen = last.or(seen),
            Err(error) => {
                tracing::debug!(
                    error = format!("{error:#}"),
                    "reading people's changes failed"
                );
                store.inner.people.forget_everyone();
            }
        }
        polls += 1;
        // Now and then, the log is cut back (any process may; the others notice the gap).
        if polls.is_multiple_of(1_200) {
            let _ = prune_log(&store).await;
        }
    }
}

/// Cuts SQLite's change logs back to their last [`LOG_KEPT`] rows (and the wallet log to its
/// own).
async fn prune_log(store: &super::Store) -> crate::Result<()> {
    store
        .write(super::Atomic::Transaction, |conn| {
            Box::pin(async move {
                sqlx::query(
                    "DELETE FROM people_changes \
                     WHERE seq <= (SELECT MAX(seq) FROM people_changes) - $1",
                )
                .bind(LOG_KEPT)
                .execute(&mut *conn)
                .await?;
                sqlx::query(
                    "DELETE FROM wallet_changes \
                     WHERE seq <= (SELECT MAX(seq) FROM wallet_changes) - $1",
                )
                .bind(super::balance_cache::LOG_KEPT)
                .execute(&mut *conn)
                .await?;
                Ok(())
            })
        })
        .await
}

/// Forgets the people changed since `seen`; the last change read.
async fn read_log(
    cache: &PeopleCache,
    reader: &mut sqlx::AnyConnection,
    seen: Option<i64>,
) -> crate::Result<Option<i64>> {
    let Some(seen) = seen else {
        // Starting: whatever is in the log happened before anything was remembered.
        let last: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM people_changes")
            .fetch_one(&mut *reader)
            .await?;
        return Ok(Some(last.unwrap_or(0)));
    };
    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT seq, user_id FROM people_changes WHERE seq > $1 ORDER BY seq LIMIT 1000",
    )
    .bind(seen)
    .fetch_all(&mut *reader)
    .await?;
    match rows.first() {
        None => return Ok(None),
        // Rows were cut from the log before this process read them.
        Some((first, _)) if *first > seen + 1 && gap(reader, seen).await? => {
            cache.forget_everyone();
        }
        Some(_) => {}
    }
    for (_, user) in &rows {
        cache.changed(UserId::from_db(*user));
    }
    Ok(rows.last().map(|(seq, _)| *seq))
}

/// Whether the change after `seen` is gone from the log (rather than never written).
async fn gap(reader: &mut sqlx::AnyConnection, seen: i64) -> crate::Result<bool> {
    let oldest: Option<i64> = sqlx::query_scalar("SELECT MIN(seq) FROM people_changes")
        .fetch_one(reader)
        .await?;
    Ok(oldest.is_some_and(|oldest| oldest > seen + 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AccountId, people::User};

    fn user(id: i64) -> User {
        User {
            id: UserId::from_db(id),
            wallet: AccountId::from_db(id),
            created_at: 0,
            terms: None,
            privacy_opt_out: None,
            frozen_at: None,
            banned_at: None,
        }
    }

    #[test]
    fn a_change_forgets_every_identity_of_that_person_only() {
        let cache = PeopleCache::new(true);
        let (telegram, discord, other): (Identity, Identity, Identity) = (
            "telegram:1".parse().expect("identity"),
            "discord:1".parse().expect("identity"),
            "telegram:2".parse().expect("identity"),
        );
        let at = cache.generation();
        cache.remember(&telegram, &user(7), at);
        cache.remember(&discord, &user(7), at);
        cache.remember(&other, &user(8), at);
        cache.changed(UserId::from_db(7));
        assert!(cache.get(&telegram).is_none());
        assert!(cache.get(&discord).is_none());
        assert_eq!(cache.get(&other).map(|u| u.id), Some(UserId::from_db(8)));
    }

    #[test]
    fn a_read_that_started_before_a_change_is_not_remembered() {
        let cache = PeopleCache::new(true);
        let identity: Identity = "telegram:1".parse().expect("identity");
        let before = cache.generation();
        // The change lands while the read is on its way.
        cache.changed(UserId::from_db(7));
        cache.remember(&identity, &user(7), before);
        assert!(cache.get(&identity).is_none());
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn nothing_is_served_while_changes_are_not_heard() {
        let cache = PeopleCache::new(true);
        let identity: Identity = "telegram:1".parse().expect("identity");
        cache.remember(&identity, &user(7), cache.generation());
        cache.set_live(false);
        assert!(cache.get(&identity).is_none());
        cache.remember(&identity, &user(7), cache.generation());
        assert!(cache.get(&identity).is_none());
        cache.set_live(true);
        cache.remember(&identity, &user(7), cache.generation());
        assert!(cache.get(&identity).is_some());
    }

    /// What an identity's person is, as the store answers (from memory when it can).
    async fn remembered(store: &crate::Store, identity: &Identity) -> bool {
        store.inner.people.get(identity).is_some()
    }

    /// SQLite's change log is cut back to its last rows; a process that had not read the rows
    /// cut sees the gap and forgets everyone, rather than serving someone changed meanwhile.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_log_cut_past_what_a_process_read_makes_it_forget_everyone() {
        let db = crate::store::testing::TestDb::new(crate::Backend::Sqlite, "people_log_prune")
            .await
            .expect("SQLite is always available");
        let store = db.store().clone();
        // The log is read here, step by step: the store's own follower would read it too, and
        // forget everyone at a moment of its own choosing.
        store.inner.stop_following();
        let identity: Identity = "telegram:1".parse().expect("identity");
        let person = store.contact(&identity).await.expect("contact").user;
        let seen: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM people_changes")
            .fetch_one(&mut *store.reader().await.expect("reader"))
            .await
            .expect("read");
        // Another process changes people, more than the log keeps, while this one is not
        // reading (each change is logged by the users_changed trigger).
        let rows = usize::try_from(LOG_KEPT).expect("small") + 50;
        store
            .write(crate::store::Atomic::Transaction, move |conn| {
                Box::pin(async move {
                    for _ in 0..rows {
                        sqlx::query("INSERT INTO people_changes (user_id) VALUES (999999)")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .await
            .expect("changes logged");
        prune_log(&store).await.expect("pruned");
        let (kept, oldest): (i64, i64) =
            sqlx::query_as("SELECT COUNT(*), MIN(seq) FROM people_changes")
                .fetch_one(&mut *store.reader().await.expect("reader"))
                .await
                .expect("read");
        assert_eq!(kept, LOG_KEPT);
        assert!(
            oldest > seen + 1,
            "the rows after {seen} are gone ({oldest})"
        );
        // This process remembers the person, then reads the log from where it stood.
        assert!(store.find_user(&identity).await.expect("find").is_some());
        assert!(remembered(&store, &identity).await);
        let last = read_people_log(&store, Some(seen)).await.expect("read log");
        assert!(
            !remembered(&store, &identity).await,
            "a gap forgets everyone, even {} whom no row names",
            person.id
        );
        assert!(last.is_some_and(|last| last > seen));
        // Read to the end (a read takes 1,000 rows at most).
        let mut seen = last;
        while let Some(last) = read_people_log(&store, seen).await.expect("read log") {
            seen = Some(last);
        }
        // Without a gap, only those named are forgotten.
        assert!(store.find_user(&identity).await.expect("find").is_some());
        crate::store::testing::execute(
            &store,
            "INSERT INTO people_changes (user_id) VALUES (999999)",
            &[],
        )
        .await;
        assert!(
            read_people_log(&store, seen)
                .await
                .expect("read log")
                .is_some()
        );
        assert!(remembered(&store, &identity).await, "someone else's change");
        store.close().await;
    }

    /// The follower's read of the people log, on a reader of its own.
    async fn read_people_log(
        store: &crate::Store,
        seen: Option<i64>,
    ) -> crate::Result<Option<i64>> {
        read_log(&store.inner.people, &mut *store.reader().await?, seen).await
    }

    /// The PostgreSQL backend holding the people listener's LISTEN, if it is connected.
    async fn listener_pid(admin: &mut sqlx::postgres::PgConnection) -> Option<i32> {
        sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity \
             WHERE datname = current_database() AND query LIKE 'LISTEN%'",
        )
        .fetch_optional(admin)
        .await
        .expect("pg_stat_activity")
    }

    /// On PostgreSQL, a dropped LISTEN connection (a failover, an idle cut) stops the memory
    /// being served until the listener is back; once back, another instance's change is heard.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_listener_reconnects_and_hears_changes_again() {
        use sqlx::Connection as _;
        let Some(db) =
            crate::store::testing::TestDb::new(crate::Backend::Postgres, "people_listener").await
        else {
            eprintln!("skipped: PostgreSQL is not available (set TEST_POSTGRES_URL)");
            return;
        };
        let store = db.store().clone();
        let identity: Identity = "telegram:77".parse().expect("identity");
        let person = store.contact(&identity).await.expect("contact").user;
        let mut admin = sqlx::postgres::PgConnection::connect(db.url())
            .await
            .expect("a second connection");
        // Listening: the person is served from memory once read.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        let first = loop {
            store.find_user(&identity).await.expect("find");
            if let Some(pid) = listener_pid(&mut admin).await
                && remembered(&store, &identity).await
            {
                break pid;
            }
            assert!(tokio::time::Instant::now() < deadline, "never listening");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        // The listener's connection is cut.
        let cut: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
            .bind(first)
            .fetch_one(&mut admin)
            .await
            .expect("terminate");
        assert!(cut);
        // It comes back on a new connection, and memory is served again.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            store.find_user(&identity).await.expect("find");
            if listener_pid(&mut admin)
                .await
                .is_some_and(|pid| pid != first)
                && remembered(&store, &identity).await
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the listener never came back"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        // Another instance bans the person: the notification reaches the new listener.
        sqlx::query("UPDATE users SET banned_at = 1 WHERE id = $1")
            .bind(person.id.get())
            .execute(&mut admin)
            .await
            .expect("ban");
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while remembered(&store, &identity).await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the change was never heard"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let user = store
            .find_user(&identity)
            .await
            .expect("find")
            .expect("there");
        assert!(user.banned_at.is_some(), "the ban is seen at once");
        store.close().await;
    }
}
