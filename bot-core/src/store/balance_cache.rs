//! Wallets' balances kept in memory on SQLite: `/balance`, `/start`, `/buy` and every quote
//! read one, and a wallet changes only when it is held, posted, voided or credited.
//!
//! The database logs every change to a wallet's running totals, and a wallet's removal, with
//! the account's id, whoever makes it (migration 0020's triggers on `accounts`). Two readers of
//! that log forget the wallets it names:
//! - the writer, after each batch of writes and before it answers them ([`WalletLog`]): whoever
//!   queued a job, paid or was refunded reads the new balance at once;
//! - every [`POLL`](super::people_cache::POLL), the log follower: what other processes write to
//!   the file (the operator's `imagegpt admin …`).
//!
//! A read that started before a change to its wallet is not remembered after it: each wallet
//! counts its changes in one of [`STRIPES`] counters, so that under a stream of holds, a read of
//! one wallet is not thrown away for a change to another (as a single generation would). What
//! moves money never rests on this: holds and debits are checked by the
//! database. On PostgreSQL nothing is kept: several instances write there, and announcing every
//! transfer to all of them would cost each commit more than the read it saves.

use std::sync::{
    Arc,
    atomic::{AtomicI64, AtomicU64, Ordering},
};

use dashmap::DashMap;
use sqlx::{AnyConnection, Row as _, any::AnyRow};

use super::plan::{Arg, Plan, fetch_split};
use crate::{AccountId, Result, ledger::AccountBalance};

/// At most this many wallets are remembered; past it, the memory starts again empty.
const CAPACITY: usize = 100_000;
/// Change counters, each shared by the wallets whose ids fall on it: more stripes, fewer reads
/// thrown away for a change to a wallet that shares one.
const STRIPES: usize = 4_096;
/// Rows of the log read at once: the number written in [`read!`] (the store writes its
/// `LIMIT`s in, never binds them).
const PAGE: usize = 1_000;
/// The log after a place (`$1`), a page at a time (a macro, to be joined with the commit's
/// statements at compile time).
macro_rules! read {
    () => {
        "SELECT seq, account_id FROM wallet_changes WHERE seq > $1 ORDER BY seq LIMIT 1000"
    };
}
const READ: &str = read!();
/// Rows of the log kept; older ones are deleted now and then.
pub(crate) const LOG_KEPT: i64 = 10_000;

#[derive(Debug)]
pub(crate) struct BalanceCache {
    balances: DashMap<AccountId, AccountBalance>,
    /// Changes so far to the wallets of each stripe, plus everyone's (`forget_everyone` moves
    /// every stripe): a read that started before a change to its wallet must not be remembered
    /// after it.
    changes: Box<[AtomicU64]>,
    /// Whether anything is kept (SQLite only).
    live: bool,
}

impl BalanceCache {
    pub(crate) fn new(live: bool) -> Arc<BalanceCache> {
        Arc::new(BalanceCache {
            balances: DashMap::new(),
            changes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            live,
        })
    }

    /// The balance remembered for a wallet.
    pub(crate) fn get(&self, wallet: AccountId) -> Option<AccountBalance> {
        if !self.live {
            return None;
        }
        self.balances.get(&wallet).map(|balance| *balance)
    }

    /// The change counter of `wallet`'s stripe.
    fn stripe(&self, wallet: AccountId) -> &AtomicU64 {
        let at = usize::try_from(wallet.get().unsigned_abs()).unwrap_or(0) % STRIPES;
        &self.changes[at]
    }

    /// Where `wallet`'s changes stand before a read of it from the database.
    pub(crate) fn generation(&self, wallet: AccountId) -> u64 {
        self.stripe(wallet).load(Ordering::Acquire)
    }

    /// Remembers what a read of a wallet that started at `generation` found, unless the wallet
    /// changed since.
    pub(crate) fn remember(&self, wallet: AccountId, balance: AccountBalance, generation: u64) {
        if !self.live || self.generation(wallet) != generation {
            return;
        }
        if self.balances.len() >= CAPACITY {
            self.balances.clear();
        }
        self.balances.insert(wallet, balance);
        // A change that came in between may have missed the entry just made.
        if self.generation(wallet) != generation {
            self.balances.remove(&wallet);
        }
    }

    /// Forgets a wallet.
    pub(crate) fn changed(&self, wallet: AccountId) {
        self.stripe(wallet).fetch_add(1, Ordering::AcqRel);
        self.balances.remove(&wallet);
    }

    /// Forgets every wallet (when the log could not be read, or lost rows before they were).
    pub(crate) fn forget_everyone(&self) {
        for stripe in &self.changes {
            stripe.fetch_add(1, Ordering::AcqRel);
        }
        self.balances.clear();
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.balances.len()
    }
}

/// A reader of SQLite's wallet log (`wallet_changes`). The writer's and the follower's share
/// their place in it: a change one has forgotten, the other does not forget again later (the
/// follower, up to 50 ms behind, would throw away every balance read since the writer's
/// answer).
#[derive(Debug, Clone)]
pub(crate) struct WalletLog {
    cache: Arc<BalanceCache>,
    /// The last change forgotten.
    seen: Arc<AtomicI64>,
}

impl WalletLog {
    /// Starts at the log's end: made before anything is remembered, so nothing earlier matters.
    pub(crate) async fn start(cache: Arc<BalanceCache>, conn: &mut AnyConnection) -> Result<Self> {
        let seen: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM wallet_changes")
            .fetch_one(conn)
            .await?;
        Ok(WalletLog {
            cache,
            seen: Arc::new(AtomicI64::new(seen.unwrap_or(0))),
        })
    }

    /// Forgets the wallets changed since the last read; everyone when the log cannot be read.
    pub(crate) async fn read(&self, conn: &mut AnyConnection) {
        if let Err(error) = self.try_read(conn).await {
            tracing::debug!(
                error = format!("{error:#}"),
                "reading wallets' changes failed"
            );
            self.cache.forget_everyone();
        }
    }

    async fn try_read(&self, conn: &mut AnyConnection) -> Result<()> {
        loop {
            let from = self.seen.load(Ordering::Acquire);
            let rows: Vec<(i64, i64)> = sqlx::query_as(READ)
                .bind(from)
                .fetch_all(&mut *conn)
                .await?;
            if !self.forget(from, &rows) {
                return Ok(());
            }
        }
    }

    /// Commits the writer's transaction (`commit`: its closing statements) with the log read in
    /// the same round trip, just before the commit, inside the transaction: what it and every
    /// transaction before it logged. Those wallets are forgotten once committed. On an error
    /// nothing is forgotten, and the transaction is the caller's to roll back.
    pub(crate) async fn commit(&self, conn: &mut AnyConnection, commit: Commit) -> Result<()> {
        let from = self.seen.load(Ordering::Acquire);
        let sql = match commit {
            Commit::Plain => concat!(read!(), "; COMMIT"),
            Commit::ReleasingSavepoint => concat!(read!(), "; RELEASE operation; COMMIT"),
        };
        let (_, rows, failure) = fetch_split(conn, sqlx::query(sql).bind(from), 0).await;
        if let Some((_, error)) = failure {
            return Err(error);
        }
        // Committed by now: rows that cannot be read are read again (or everyone forgotten).
        if !matches!(self.forget_rows(from, &rows), Ok(false)) {
            self.read(conn).await;
        }
        Ok(())
    }

    /// Runs a plan that has no batch to join, with the log read after it in the same round
    /// trip (a separate read costs a second one: a third of a lone hold's time); a plan of
    /// several statements in a transaction of its own, opened and committed in that round trip
    /// too (see [`Plan::run_alone_then`]). Its wallets are forgotten before the plan's answer
    /// is given.
    pub(crate) async fn run_alone<T: Send + 'static>(
        &self,
        conn: &mut AnyConnection,
        plan: Plan<T>,
    ) -> Result<T> {
        let from = self.seen.load(Ordering::Acquire);
        let (answer, read) = plan.run_alone_then(conn, READ, vec![Arg::Int(from)]).await;
        // A refused plan wrote nothing, and every write before it read the log after itself.
        if let Some(read) = read {
            let more = read.and_then(|rows| self.forget_rows(from, &rows));
            if !matches!(more, Ok(false)) {
                self.read(conn).await;
            }
        }
        answer
    }

    /// [`forget`](Self::forget) for the log's rows as the database gave them.
    fn forget_rows(&self, from: i64, rows: &[AnyRow]) -> Result<bool> {
        let rows = rows
            .iter()
            .map(|row| Ok((row.try_get::<i64, _>(0)?, row.try_get::<i64, _>(1)?)))
            .collect::<Result<Vec<(i64, i64)>>>()?;
        Ok(self.forget(from, &rows))
    }

    /// Forgets the wallets in `rows`, the log read after `from`; true when they fill a page
    /// (there may be more).
    fn forget(&self, from: i64, rows: &[(i64, i64)]) -> bool {
        // One writer at a time numbers the log's rows in order of commit, one after the other:
        // a gap is rows cut from the log before they were read here.
        if rows.first().is_some_and(|(first, _)| *first > from + 1) {
            self.cache.forget_everyone();
        }
        for (seq, wallet) in rows {
            // Forgotten already by the other reader, which moves the place on only after.
            if *seq > self.seen.load(Ordering::Acquire) {
                self.cache.changed(AccountId::from_db(*wallet));
            }
        }
        if let Some((last, _)) = rows.last() {
            self.seen.fetch_max(*last, Ordering::AcqRel);
        }
        rows.len() >= PAGE
    }
}

/// How the writer's transaction ends (see [`WalletLog::commit`]).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Commit {
    Plain,
    /// With the last operation's savepoint released first.
    ReleasingSavepoint,
}

impl Commit {
    /// The statements that end the transaction.
    pub(crate) fn sql(self) -> &'static str {
        match self {
            Commit::Plain => "COMMIT",
            Commit::ReleasingSavepoint => "RELEASE operation; COMMIT",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn balance(credits: u64) -> AccountBalance {
        AccountBalance {
            credits_posted: crate::Credits::new(credits),
            ..AccountBalance::default()
        }
    }

    #[test]
    fn a_change_forgets_that_wallet_only() {
        let cache = BalanceCache::new(true);
        let (one, two) = (AccountId::from_db(1), AccountId::from_db(2));
        cache.remember(one, balance(5), cache.generation(one));
        cache.remember(two, balance(7), cache.generation(two));
        cache.changed(one);
        assert_eq!(cache.get(one), None);
        assert_eq!(cache.get(two), Some(balance(7)));
    }

    #[test]
    fn a_read_that_started_before_a_change_to_its_wallet_is_not_remembered() {
        let cache = BalanceCache::new(true);
        let (wallet, other) = (AccountId::from_db(1), AccountId::from_db(2));
        let (before, other_before) = (cache.generation(wallet), cache.generation(other));
        // The change lands while the read is on its way: what it found may be the old balance.
        cache.changed(wallet);
        cache.remember(wallet, balance(5), before);
        assert_eq!(cache.get(wallet), None);
        assert_eq!(cache.len(), 0);
        // A read of another wallet stands.
        cache.remember(other, balance(7), other_before);
        assert_eq!(cache.get(other), Some(balance(7)));
        // Forgetting everyone throws away every read on its way.
        let before = cache.generation(wallet);
        cache.forget_everyone();
        cache.remember(wallet, balance(5), before);
        assert_eq!(cache.get(wallet), None);
    }

    #[test]
    fn the_log_is_read_a_page_at_a_time() {
        assert!(READ.ends_with(&format!("LIMIT {PAGE}")), "{READ}");
    }

    #[test]
    fn nothing_is_kept_when_not_live() {
        let cache = BalanceCache::new(false);
        let wallet = AccountId::from_db(1);
        cache.remember(wallet, balance(5), cache.generation(wallet));
        assert_eq!(cache.get(wallet), None);
        assert_eq!(cache.len(), 0);
    }
}
