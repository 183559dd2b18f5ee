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
        }
        self.by_identity.insert(identity.clone(), user.clone());
        // A change that came in between may have missed the entry just made.
        if self.generation.load(Ordering::Acquire) != generation {
            self.by_identity.remove(identity);
        }
    }

    /// Forgets a person (every identity of theirs).
    pub(crate) fn changed(&self, user: UserId) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.by_identity
            .retain(|_, remembered| remembered.id != user);
    }

    /// Forgets everyone (after a change whose person is not at hand, such as a dispute).
    pub(crate) fn forget_everyone(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.by_identity.clear();
    }

    /// Forgets everyone, and serves nothing until `live` again.
    pub(crate) fn set_live(&self, live: bool) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.by_identity.clear();
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

/// Reads SQLite's change log until the store is dropped, forgetting whoever changed.
pub(crate) async fn follow_log(store: std::sync::Weak<super::Inner>) {
    let mut seen: Option<i64> = None;
    let mut polls = 0u64;
    loop {
        tokio::time::sleep(POLL).await;
        let Some(inner) = store.upgrade() else {
            return;
        };
        let store = super::Store { inner };
        match read_log(&store, seen).await {
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
            let _ = store
                .write(super::Atomic::Statement, |conn| {
                    Box::pin(async move {
                        sqlx::query(
                            "DELETE FROM people_changes \
                             WHERE seq <= (SELECT MAX(seq) FROM people_changes) - $1",
                        )
                        .bind(LOG_KEPT)
                        .execute(conn)
                        .await?;
                        Ok(())
                    })
                })
                .await;
        }
    }
}

/// Forgets the people changed since `seen`; the last change read.
async fn read_log(store: &super::Store, seen: Option<i64>) -> crate::Result<Option<i64>> {
    let mut reader = store.reader().await?;
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
    let cache = &store.inner.people;
    match rows.first() {
        None => return Ok(None),
        // Rows were cut from the log before this process read them.
        Some((first, _)) if *first > seen + 1 && gap(&mut reader, seen).await? => {
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
}
