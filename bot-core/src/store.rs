//! The sqlx store: one interface over SQLite (the embedded default) and PostgreSQL.
//!
//! Both backends run the same SQL through sqlx's `Any` driver; the few places where dialects
//! differ branch on [`Backend`]. SQLite gets a single writer connection (so writers queue in
//! process instead of failing with `SQLITE_BUSY`) and a pool of readers over WAL.
//!
//! A `LIMIT` is written into the SQL as an integer, never bound: SQLite plans a bound `LIMIT`
//! with the value it holds, so every new binding expires the prepared statement and the next
//! run parses and plans it again (measured with `perf` on the enqueue script, re-planned on
//! every enqueue, triggers and all). The values are our own integers, so writing them is
//! safe; `no_bound_limits` keeps it so.

use crate::Fault;
pub(crate) mod admin;
pub mod audit;
mod balance_cache;
mod files;
mod interactions;
pub(crate) mod jobs;
pub(crate) mod ledger;
pub(crate) mod limits;
pub(crate) mod links;
mod migrate;
mod own_thread;
pub(crate) mod payments;
pub(crate) mod people;
pub(crate) mod people_cache;
mod plan;
pub(crate) mod quotes;
mod rows;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
mod updates;
mod writer;

pub use files::KeptFile;
pub use interactions::KeptInteraction;
use migrate::*;
pub(crate) use plan::{Arg, Plan, Script};
pub(crate) use writer::*;

use std::{future::Future, path::PathBuf, str::FromStr, sync::Arc, time::Duration};

use anyhow::Context as _;
use serde::Deserialize;
use sqlx::{
    AnyConnection, AnyPool, Connection as _, Executor as _,
    any::AnyPoolOptions,
    error::ErrorKind,
    migrate::{Migration, MigrationType, Migrator},
};
use tokio::sync::{mpsc, oneshot};

use crate::{AccountId, Error, Result, UserId, ledger::SystemAccount};

/// The `[database]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `DATABASE_URL`: `sqlite://PATH` (created on first run) or `postgres://…`.
    pub url: String,
    /// Readers: PostgreSQL's pool, and as many connections again for writes, each opened when
    /// first needed; SQLite's readers (there is one writer).
    pub max_connections: u32,
    /// How long a SQLite connection waits for a lock held by another process.
    pub busy_timeout_ms: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: "sqlite://data/imagegpt.db".into(),
            max_connections: 16,
            busy_timeout_ms: 5_000,
        }
    }
}

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend a `DATABASE_URL` names.
    ///
    /// # Errors
    ///
    /// [`Fault::InvalidDatabaseUrl`] for any other scheme or a URL that does not parse.
    pub fn from_url(url: &str) -> Result<Backend> {
        if let Some(rest) = url.strip_prefix("sqlite:") {
            if rest.trim_start_matches('/').is_empty() {
                return Err(Error::from(Fault::InvalidDatabaseUrl(
                    "sqlite URL names no file (expected sqlite://PATH)".into(),
                )));
            }
            return Ok(Backend::Sqlite);
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let parsed = url::Url::parse(url).map_err(|e| {
                Error::from(Fault::InvalidDatabaseUrl(format!("not a valid URL: {e}")))
            })?;
            if parsed.host_str().is_none_or(str::is_empty) {
                return Err(Error::from(Fault::InvalidDatabaseUrl(
                    "postgres URL names no host".into(),
                )));
            }
            return Ok(Backend::Postgres);
        }
        Err(Error::from(Fault::InvalidDatabaseUrl(
            "expected sqlite://PATH or postgres://USER@HOST/DB".into(),
        )))
    }

    /// A short name for logs.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// What [`Store::connect`] does about the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migrations {
    /// Apply pending migrations (start-up, `imagegpt migrate`).
    Apply,
    /// Refuse to work on a schema that is behind (`imagegpt audit` must not write).
    RequireCurrent,
}

/// A handle to the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) backend: Backend,
    /// Where write transactions run.
    pub(crate) writer: Writer,
    /// Reads outside transactions; on PostgreSQL the writers' pool.
    pub(crate) readers: Readers,
    pub(crate) system: [AccountId; SystemAccount::ALL.len()],
    /// Who is behind an identity, in memory (see [`people_cache`]).
    pub(crate) people: Arc<people_cache::PeopleCache>,
    /// Wallets' balances, in memory on SQLite (see [`balance_cache`]).
    pub(crate) balances: Arc<balance_cache::BalanceCache>,
    /// The task hearing other processes' changes to people (see [`people_cache`]).
    following: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Whether SQLite credits a card payment with its one-round-trip script (see
    /// [`Store::use_credit_script`]).
    pub(crate) credit_script: std::sync::atomic::AtomicBool,
}

impl Inner {
    fn stop_following(&self) {
        let following = self
            .following
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(following) = following {
            following.abort();
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop_following();
    }
}

/// How many times a transaction is retried after a lock conflict the database reported.
const MAX_TRANSIENT_RETRIES: u32 = 20;

impl Store {
    /// Connects to `config.url` and applies or checks the migrations.
    ///
    /// # Errors
    ///
    /// [`Fault::InvalidDatabaseUrl`] for a bad URL; [`Error::Internal`] when the database cannot
    /// be reached or opened, a migration fails, or the schema is behind under
    /// [`Migrations::RequireCurrent`].
    pub async fn connect(config: &DatabaseConfig, migrations: Migrations) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(&config.url)?;
        let balances = balance_cache::BalanceCache::new(backend == Backend::Sqlite);
        let mut wallets_followed = None;
        let (writer, readers) = match backend {
            Backend::Sqlite => {
                let url = sqlite_url(&config.url)?;
                let pragmas = format!(
                    "PRAGMA busy_timeout = {}; PRAGMA journal_mode = WAL; \
                     PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
                     PRAGMA temp_store = MEMORY; PRAGMA cache_size = -16000; \
                     PRAGMA mmap_size = 268435456;",
                    config.busy_timeout_ms
                );
                let mut writer = open_sqlite(&url, &pragmas).await?;
                prepare_schema(backend, migrations, &mut writer).await?;
                // Checkpoints run beside the writer (see `WriterHandle::start`); the writer
                // checkpoints itself only if the log outgrows them.
                writer
                    .execute(sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                        "PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}"
                    ))))
                    .await?;
                let checkpointer = open_sqlite(&url, &pragmas).await?;
                let mut readers = Vec::new();
                for _ in 0..config.max_connections.max(1) {
                    readers.push(open_sqlite(&url, &pragmas).await?);
                }
                // The wallet log's readers (the writer, the follower) start at its end, before
                // anything is remembered.
                let written =
                    balance_cache::WalletLog::start(balances.clone(), &mut writer).await?;
                wallets_followed = Some(written.clone());
                (
                    Writer::Sqlite(WriterHandle::start(writer, checkpointer, written)?),
                    Readers::Sqlite(IdleConnections::new(readers)),
                )
            }
            Backend::Postgres => {
                let connections = config.max_connections.max(2);
                let pool = AnyPoolOptions::new()
                    .max_connections(connections)
                    .acquire_timeout(CONNECT_TIMEOUT)
                    // sqlx pings a connection each time it is taken from the pool unless told
                    // not to: a round trip before every operation. A connection that died is
                    // found by the operation's own statement instead (an internal error, and a
                    // retry for whoever asked).
                    .test_before_acquire(false)
                    .connect(&config.url)
                    .await
                    .with_context(|| {
                        format!("connecting to PostgreSQL at {}", redact(&config.url))
                    })?;
                prepare_schema(backend, migrations, &mut *pool.acquire().await?).await?;
                let held = IdleConnections::opened_as_needed(
                    pool.connect_options(),
                    connections,
                    CONNECT_TIMEOUT,
                );
                (
                    Writer::Postgres {
                        pool: pool.clone(),
                        held,
                    },
                    Readers::Postgres(pool),
                )
            }
        };
        let system = load_system_accounts(&mut *readers.acquire().await?).await?;
        // On PostgreSQL nothing is served from memory until the listener hears changes.
        let people = people_cache::PeopleCache::new(backend == Backend::Sqlite);
        let listening = (backend == Backend::Postgres).then(|| {
            tokio::spawn(people_cache::listen(
                config.url.clone(),
                Arc::downgrade(&people),
            ))
        });
        let inner = Arc::new(Inner {
            backend,
            writer,
            readers,
            system,
            people,
            balances,
            following: std::sync::Mutex::new(listening),
            credit_script: std::sync::atomic::AtomicBool::new(true),
        });
        if let Some(wallets) = wallets_followed {
            let following = tokio::spawn(people_cache::follow_log(Arc::downgrade(&inner), wallets));
            *inner
                .following
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(following);
        }
        Ok(Store { inner })
    }

    /// Which database this store talks to.
    pub fn backend(&self) -> Backend {
        self.inner.backend
    }

    /// True when the database answers and every migration this binary knows is applied.
    pub async fn is_ready(&self) -> bool {
        let migrator = migrator(self.inner.backend);
        let Ok(mut conn) = self.reader().await else {
            return false;
        };
        matches!(pending_migrations(&migrator, &mut conn).await, Ok(0))
    }

    /// Closes every connection; waits for those in use to be returned.
    pub async fn close(&self) {
        self.inner.stop_following();
        self.inner.people.set_live(false);
        self.inner.writer.close().await;
        self.inner.readers.close().await;
    }

    /// Held by a write that changes `user` (or, with `None`, people it does not name).
    pub(crate) fn changing_people(&self, user: Option<UserId>) -> people_cache::Changing<'_> {
        people_cache::Changing {
            cache: &self.inner.people,
            user,
        }
    }

    pub(crate) fn system_account(&self, account: SystemAccount) -> AccountId {
        self.inner.system[account as usize]
    }

    /// A connection for reads outside any write.
    pub(crate) async fn reader(&self) -> Result<LentConnection<'_>> {
        self.inner.readers.acquire().await
    }

    /// Runs `op` on a connection that may write: on SQLite the one writer (see [`Writer`]), on
    /// PostgreSQL one from the pool. With [`Atomic::Statement`] `op` makes at most one change
    /// (which the database applies whole or not at all); with [`Atomic::Transaction`] its
    /// changes are committed together or not at all.
    pub(crate) async fn write<T, F>(&self, atomic: Atomic, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        self.inner.writer.run(atomic, op).await
    }

    /// Runs a write told as data (see [`plan`]): on SQLite together with the other plans of its
    /// script waiting for the writer, in one round trip.
    pub(crate) async fn write_plan<T: Send + 'static>(&self, plan: Plan<T>) -> Result<T> {
        self.inner.writer.run_plan(plan).await
    }

    /// Runs `op` (which opens and commits its own transaction) again after a lock conflict the
    /// database reported (SQLite busy, PostgreSQL deadlock or serialization failure), so callers
    /// never see one.
    pub(crate) async fn retrying<T, F, Fut>(&self, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut attempt = 0;
        loop {
            match op().await {
                Err(error) if is_transient(&error) && attempt < MAX_TRANSIENT_RETRIES => {
                    attempt += 1;
                    tracing::debug!(attempt, %error, "retrying a transaction after a lock conflict");
                    tokio::time::sleep(Duration::from_millis(u64::from(attempt) * 2)).await;
                }
                other => return other,
            }
        }
    }
}

/// Runs one statement behind the ledger's back, as a careless operator might: tests use it to
/// prove that the database and the audit catch what code cannot.
#[cfg(test)]
pub(crate) async fn execute_unchecked(store: &Store, sql: &'static str, bind: i64) -> Result<()> {
    store
        .write(Atomic::Statement, move |conn| {
            Box::pin(async move {
                sqlx::query(sql).bind(bind).execute(conn).await?;
                Ok(())
            })
        })
        .await
}

/// How long PostgreSQL is given to hand over a connection, by the pool or to the store's own
/// write connections: a server that cannot be reached fails the operation in this time rather
/// than in the system's TCP timeout (about two minutes on Linux).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Where reads run: on SQLite, readers held open by the store rather than pooled (see
/// [`IdleConnections`] for why); on PostgreSQL, sqlx's pool.
#[derive(Debug)]
pub(crate) enum Readers {
    Sqlite(IdleConnections),
    Postgres(AnyPool),
}

/// Connections held by the store and lent one at a time: SQLite's readers, and PostgreSQL's
/// writers. Whoever asks gets the first one free, in the order they asked: a waiter is never
/// tied to one busy connection while another stands idle (each waiter once picked a connection
/// in turn and waited for that one alone).
///
/// Unlike sqlx's pool, nothing is sent when a connection comes back: the pool pings each one
/// as it is returned, in a task of its own, which on SQLite is a round trip to the connection's
/// thread as costly as the read itself, and on PostgreSQL a round trip to the server after
/// every write (5-12% of one task's hold+post rate, `cargo bench --bench ledger`). What the
/// ping was for, finding a connection that broke, is done by its lender instead: a connection
/// is kept only when its last operation ended with an answer from the database (see
/// [`LentConnection::keep_if_intact`]); one in doubt is dropped, and another is opened in its
/// place when next needed.
#[derive(Debug)]
pub(crate) struct IdleConnections {
    idle: std::sync::Mutex<Vec<AnyConnection>>,
    /// One permit per connection that is idle or may yet be opened; closed with the store.
    free: tokio::sync::Semaphore,
    count: u32,
    /// How to open a connection when none is idle, and how long opening one may take:
    /// PostgreSQL's are opened as they are first needed (and again after one is dropped);
    /// `None` when all were opened up front and are always kept (SQLite's readers).
    opener: Option<(Arc<sqlx::any::AnyConnectOptions>, Duration)>,
}

impl IdleConnections {
    fn new(connections: Vec<AnyConnection>) -> IdleConnections {
        IdleConnections {
            free: tokio::sync::Semaphore::new(connections.len()),
            count: u32::try_from(connections.len()).unwrap_or(u32::MAX),
            idle: std::sync::Mutex::new(connections),
            opener: None,
        }
    }

    /// Up to `count` connections opened with `options` as they are needed, each given
    /// `timeout` to open.
    pub(crate) fn opened_as_needed(
        options: Arc<sqlx::any::AnyConnectOptions>,
        count: u32,
        timeout: Duration,
    ) -> IdleConnections {
        IdleConnections {
            free: tokio::sync::Semaphore::new(count as usize),
            count,
            idle: std::sync::Mutex::new(Vec::new()),
            opener: Some((options, timeout)),
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<AnyConnection>> {
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The first connection free (or a new one, where they are opened as needed), waiting in
    /// line for one when all are lent.
    pub(crate) async fn lend(&self) -> Result<LentConnection<'_>> {
        let permit = self.free.acquire().await.map_err(|_| closed())?;
        let held = self.idle().pop();
        let connection = match (held, &self.opener) {
            (Some(connection), _) => connection,
            // The permit goes back by itself if this fails or is abandoned.
            (None, Some((options, timeout))) => {
                use sqlx::ConnectOptions as _;
                tokio::time::timeout(*timeout, options.connect())
                    .await
                    .map_err(|_| {
                        Error::Internal(anyhow::anyhow!(
                            "no connection to the database within {timeout:?}"
                        ))
                    })??
            }
            (None, None) => {
                return Err(Error::Internal(anyhow::anyhow!(
                    "a connection's permit had no connection behind it"
                )));
            }
        };
        permit.forget();
        Ok(LentConnection::Held {
            connection: Some(connection),
            home: self,
            keep: self.opener.is_none(),
        })
    }

    /// Puts a connection back (or, with `None`, the room for a new one) and lets the next
    /// waiter in.
    fn give_back(&self, connection: Option<AnyConnection>) {
        if let Some(connection) = connection {
            self.idle().push(connection);
        }
        self.free.add_permits(1);
    }

    /// Waits for the connections lent to come back, then closes them all.
    pub(crate) async fn close(&self) {
        if let Ok(all) = self.free.acquire_many(self.count).await {
            all.forget();
        }
        self.free.close();
        let connections = std::mem::take(&mut *self.idle());
        for connection in connections {
            let _ = connection.close().await;
        }
    }
}

/// What a read or write gets once the store is closed.
fn closed() -> Error {
    Error::Internal(anyhow::anyhow!("the store is closed"))
}

impl Readers {
    async fn acquire(&self) -> Result<LentConnection<'_>> {
        match self {
            Readers::Sqlite(readers) => readers.lend().await,
            Readers::Postgres(pool) => Ok(LentConnection::Pooled(pool.acquire().await?)),
        }
    }

    async fn close(&self) {
        match self {
            Readers::Sqlite(readers) => readers.close().await,
            Readers::Postgres(pool) => pool.close().await,
        }
    }
}

/// A connection lent by the store; dereferences to [`AnyConnection`].
pub(crate) enum LentConnection<'a> {
    Held {
        /// Always `Some` until dropped.
        connection: Option<AnyConnection>,
        home: &'a IdleConnections,
        /// Whether it goes back to `home` when dropped, rather than being closed: always for
        /// connections that are never reopened; for the others, only once an operation on it
        /// has ended with the database's answer (one abandoned midway is in doubt).
        keep: bool,
    },
    Pooled(sqlx::pool::PoolConnection<sqlx::Any>),
}

impl LentConnection<'_> {
    /// Marks the connection to be kept when `result`, what an operation on it ended with, shows
    /// the connection sound (see [`connection_intact`]), and to be dropped otherwise.
    pub(crate) fn keep_if_intact<T>(&mut self, result: &Result<T>) {
        if let LentConnection::Held { keep, home, .. } = self {
            // Connections that are never reopened are always kept.
            *keep = home.opener.is_none() || connection_intact(result);
        }
    }
}

/// Whether a connection can be lent again after an operation on it ended with `result`: yes
/// when the database answered (rows, or a refusal of its own: a constraint, a raised rule, a
/// conflict) or a rule of ours refused; no when the connection failed (I/O, TLS, the protocol)
/// or the error is one that cannot be placed, since a connection in doubt is replaced rather
/// than lent again.
pub(crate) fn connection_intact<T>(result: &Result<T>) -> bool {
    let Err(Error::Internal(inner)) = result else {
        return true;
    };
    match inner.downcast_ref::<sqlx::Error>() {
        Some(sqlx::Error::Database(db)) => !session_ended(db.as_ref()),
        Some(
            sqlx::Error::RowNotFound
            | sqlx::Error::ColumnNotFound(_)
            | sqlx::Error::ColumnIndexOutOfBounds { .. }
            | sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::Decode(_)
            | sqlx::Error::TypeNotFound { .. },
        ) => true,
        Some(_) => false,
        None => inner.downcast_ref::<Fault>().is_some(),
    }
}

/// Whether the database's error ends the session it came on: PostgreSQL's connection
/// exceptions (class 08) and an operator's or a crash's shutdown (57P01-57P03), sent just
/// before the server closes the connection.
fn session_ended(error: &dyn sqlx::error::DatabaseError) -> bool {
    error
        .code()
        .is_some_and(|code| code.starts_with("08") || code.starts_with("57P"))
}

impl Drop for LentConnection<'_> {
    fn drop(&mut self) {
        if let LentConnection::Held {
            connection,
            home,
            keep,
        } = self
        {
            // A connection not kept is dropped here, which closes its socket: the server ends
            // whatever it had open on it, a transaction included.
            home.give_back(connection.take().filter(|_| *keep));
        }
    }
}

impl std::ops::Deref for LentConnection<'_> {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        match self {
            LentConnection::Held { connection, .. } => {
                connection.as_ref().unwrap_or_else(|| unreachable!())
            }
            LentConnection::Pooled(connection) => connection,
        }
    }
}

impl std::ops::DerefMut for LentConnection<'_> {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match self {
            LentConnection::Held { connection, .. } => {
                connection.as_mut().unwrap_or_else(|| unreachable!())
            }
            LentConnection::Pooled(connection) => connection,
        }
    }
}

/// A boxed future borrowing a connection; what write operations return.
pub(crate) type BoxFuture<'a, T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How much of a write operation must stand or fall together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Atomic {
    /// One changing statement (plus reads); the database applies it whole or not at all.
    Statement,
    /// Several changes that commit together.
    Transaction,
}

/// Leadership of one named task (Telegram long polling) among the instances sharing a database:
/// a PostgreSQL advisory lock held by a connection of its own, so it is released the moment the
/// leader's process or connection dies. On SQLite, one process owns the file, so it always leads.
#[derive(Debug)]
pub struct Leader {
    conn: Option<AnyConnection>,
}

impl Leader {
    /// Resolves when leadership is lost (its connection failed); never on SQLite.
    pub async fn lost(&mut self) {
        let Some(conn) = &mut self.conn else {
            return std::future::pending().await;
        };
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let alive = tokio::time::timeout(
                Duration::from_secs(5),
                sqlx::query("SELECT 1").execute(&mut *conn),
            )
            .await;
            if !matches!(alive, Ok(Ok(_))) {
                return;
            }
        }
    }
}

/// The advisory lock key for a task name (stable across builds: FNV-1a).
fn lock_key(name: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

impl Store {
    /// Waits to lead `name`; `None` when `shutdown` comes first. Whoever holds the lead keeps
    /// it until the returned [`Leader`] is dropped or its connection dies.
    pub async fn lead(
        &self,
        name: &str,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> Option<Leader> {
        let Writer::Postgres { pool, .. } = &self.inner.writer else {
            return Some(Leader { conn: None });
        };
        let key = lock_key(name);
        loop {
            if let Ok(conn) = pool.acquire().await {
                // Its own connection, out of the pool: closing it is what releases the lock.
                let mut conn = conn.detach();
                let taken: std::result::Result<bool, sqlx::Error> =
                    sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                        .bind(key)
                        .fetch_one(&mut conn)
                        .await;
                if matches!(taken, Ok(true)) {
                    return Some(Leader { conn: Some(conn) });
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return None,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}

/// The current time in unix milliseconds, as stored in every `*_at` column.
pub(crate) fn now_millis() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

/// The database error behind an error of ours, if there is one.
pub(crate) fn database_error(error: &Error) -> Option<&(dyn sqlx::error::DatabaseError + 'static)> {
    match error {
        Error::Internal(inner) => match inner.downcast_ref::<sqlx::Error>()? {
            sqlx::Error::Database(db) => Some(db.as_ref()),
            _ => None,
        },
        _ => None,
    }
}

/// True when a CHECK constraint refused a write.
pub(crate) fn is_check_violation(error: &Error) -> bool {
    database_error(error).is_some_and(|db| matches!(db.kind(), ErrorKind::CheckViolation))
}

/// True when a foreign key refused a write.
pub(crate) fn is_foreign_key_violation(error: &Error) -> bool {
    database_error(error).is_some_and(|db| matches!(db.kind(), ErrorKind::ForeignKeyViolation))
}

fn is_transient(error: &Error) -> bool {
    let Some(db) = database_error(error) else {
        return false;
    };
    // SQLite: BUSY (5), LOCKED (6) and their extended codes; PostgreSQL: serialization failure
    // and deadlock detected.
    matches!(
        db.code().as_deref(),
        Some("5" | "6" | "261" | "262" | "517" | "40001" | "40P01")
    )
}

async fn load_system_accounts(
    conn: &mut AnyConnection,
) -> Result<[AccountId; SystemAccount::ALL.len()]> {
    let rows: Vec<(i64, String)> =
        sqlx::query_as("SELECT id, code FROM accounts WHERE kind = 'system'")
            .fetch_all(conn)
            .await?;
    let mut ids = [AccountId::from_db(0); SystemAccount::ALL.len()];
    for account in SystemAccount::ALL {
        let (id, _) = rows
            .iter()
            .find(|(_, code)| code == account.code())
            .with_context(|| format!("system account {} is missing", account.code()))?;
        ids[account as usize] = AccountId::from_db(*id);
    }
    Ok(ids)
}

/// A connection to the SQLite database at `url`, with the store's `pragmas` applied.
async fn open_sqlite(url: &str, pragmas: &str) -> Result<AnyConnection> {
    let mut conn = AnyConnection::connect(url)
        .await
        .with_context(|| format!("opening the SQLite database {}", redact(url)))?;
    conn.execute(sqlx::raw_sql(sqlx::AssertSqlSafe(pragmas.to_string())))
        .await?;
    Ok(conn)
}

/// The SQLite URL with `mode=rwc`, after creating the file's folder.
fn sqlite_url(url: &str) -> Result<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let folder = PathBuf::from_str(path)
        .ok()
        .and_then(|p| p.parent().map(PathBuf::from))
        .filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = folder.filter(|_| path != ":memory:") {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating the database folder {}", dir.display()))?;
    }
    Ok(if query.is_empty() {
        format!("sqlite://{path}?mode=rwc")
    } else {
        format!("sqlite://{path}?{query}")
    })
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("REDACTED"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Faulted as _;

    /// A read waiting for a connection gets the first one given back, whichever it is: with
    /// two readers, one held for long and one for a moment, a third read goes on as soon as
    /// the short one ends (it once waited for a connection picked in turn, the long one here).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiting_read_gets_the_first_reader_given_back() -> Result<()> {
        let db = testing::TestDb::with_connections(Backend::Sqlite, "readers", 2)
            .await
            .ok_or_else(|| anyhow::anyhow!("SQLite is always there"))?;
        let store = db.store();
        let long = store.reader().await?;
        let short = store.reader().await?;
        // Asked once, so that it waits in line while both are taken.
        let mut third = std::pin::pin!(store.reader());
        let waits =
            std::future::poll_fn(|cx| std::task::Poll::Ready(third.as_mut().poll(cx).is_pending()))
                .await;
        assert!(waits, "both readers are taken");
        drop(short);
        let mut reader = tokio::time::timeout(Duration::from_secs(10), third)
            .await
            .map_err(|_| anyhow::anyhow!("the third read waited for the long one"))??;
        let one: i64 = sqlx::query_scalar("SELECT 1")
            .fetch_one(&mut *reader)
            .await?;
        drop(reader);
        assert_eq!(one, 1);
        drop(long);
        store.close().await;
        assert!(
            store.reader().await.is_err(),
            "a closed store lends no reader"
        );
        Ok(())
    }

    /// A held connection is lent again after an answer (rows, a refusal, a rule of ours) and
    /// replaced after a failure of the connection itself or one that cannot be placed.
    #[test]
    fn a_connection_is_kept_only_after_an_answer() {
        let kept = |error: Error| connection_intact::<()>(&Err(error));
        assert!(connection_intact(&Ok(())));
        assert!(kept(Error::User(crate::UserError::Frozen)));
        assert!(kept(Error::from(Fault::ZeroAmount)));
        assert!(kept(Error::from(sqlx::Error::RowNotFound)));
        let broken = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed");
        assert!(!kept(Error::from(sqlx::Error::Io(broken))));
        assert!(!kept(Error::from(sqlx::Error::Protocol(
            "out of step".into()
        ))));
        assert!(!kept(Error::Internal(anyhow::anyhow!("who knows"))));
    }

    /// A write connection is given a bounded time to open: a server that takes the connection
    /// and never answers fails the write in that time (as the pool's acquire timeout would),
    /// and the place it took is free again for the next one.
    #[tokio::test]
    async fn opening_a_held_connection_gives_up_in_time() -> Result<()> {
        sqlx::any::install_default_drivers();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(anyhow::Error::from)?;
        let port = listener.local_addr().map_err(anyhow::Error::from)?.port();
        let silent = tokio::spawn(async move {
            let mut taken = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                taken.push(socket);
            }
        });
        let options = sqlx::any::AnyConnectOptions::from_str(&format!(
            "postgres://nobody@127.0.0.1:{port}/none"
        ))?;
        let held =
            IdleConnections::opened_as_needed(Arc::new(options), 1, Duration::from_millis(200));
        // One place only: the second try would wait for ever if the first kept it.
        for attempt in 0..2 {
            let lent = tokio::time::timeout(Duration::from_secs(10), held.lend())
                .await
                .map_err(|_| anyhow::anyhow!("attempt {attempt} still waiting after 10 s"))?;
            match lent {
                Ok(_) => panic!("a server that never answers lent a connection"),
                Err(error) => assert!(
                    format!("{error:#}").contains("no connection to the database within"),
                    "{error:#}"
                ),
            }
        }
        silent.abort();
        Ok(())
    }

    /// A hold on `wallet` under `key`, to the generation revenue account.
    fn hold_of(store: &Store, wallet: AccountId, key: &str) -> crate::ledger::TransferRequest {
        crate::ledger::TransferRequest {
            key: key.to_string(),
            debit: wallet,
            credit: store.account(SystemAccount::GenerationRevenue),
            amount: crate::Credits::new(1),
            kind: crate::ledger::TransferKind::Generation,
            memo: None,
        }
    }

    /// PostgreSQL's write connections are held by the store, not pinged as they come back, so
    /// one whose server process is gone must not be lent again: the write that finds it dead
    /// fails, and the next ones run on a new connection. (Kept regardless, every write after
    /// the first would fail too.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_connection_that_died_is_replaced() -> Result<()> {
        let Some(db) = testing::TestDb::new(Backend::Postgres, "write connection died").await
        else {
            return Ok(());
        };
        let store = db.store();
        let user = testing::person(store, "ada", 10).await;
        store.hold(&hold_of(store, user.wallet, "before")).await?;
        let mut admin = AnyConnection::connect(db.url()).await?;
        let ended: Vec<bool> = sqlx::query_scalar(
            // The write connections: the last statement each ran was the hold.
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() \
               AND query LIKE 'INSERT INTO transfers%'",
        )
        .fetch_all(&mut admin)
        .await?;
        assert!(
            !ended.is_empty() && ended.iter().all(|ended| *ended),
            "the store's write connection was ended: {ended:?}"
        );
        let mut failed = 0;
        for n in 0..3 {
            if store
                .hold(&hold_of(store, user.wallet, &format!("after {n}")))
                .await
                .is_err()
            {
                failed += 1;
            }
        }
        assert!(
            failed <= 1,
            "{failed} of 3 writes failed after the connection died"
        );
        store.hold(&hold_of(store, user.wallet, "last")).await?;
        let audit = store.audit().await?;
        assert!(audit.is_clean(), "{audit}");
        admin.close().await?;
        store.close().await;
        Ok(())
    }

    /// A transaction that fails lets go of what it locked before its error is returned, not
    /// when its connection is next used: a held connection may stand idle for long.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_transaction_lets_go_of_its_locks_at_once() -> Result<()> {
        let Some(db) = testing::TestDb::new(Backend::Postgres, "failed transaction").await else {
            return Ok(());
        };
        let store = db.store();
        let user = testing::person(store, "ada", 0).await;
        let id = user.id.get();
        let refused: Result<()> = store
            .write(Atomic::Transaction, move |conn| {
                Box::pin(async move {
                    sqlx::query("UPDATE users SET privacy_opt_out = 1 WHERE id = $1")
                        .bind(id)
                        .execute(&mut *conn)
                        .await?;
                    Err(Error::User(crate::UserError::Frozen))
                })
            })
            .await;
        assert_eq!(
            refused.err().and_then(|e| e.user().cloned()),
            Some(crate::UserError::Frozen)
        );
        let mut other = AnyConnection::connect(db.url()).await?;
        sqlx::query("SET lock_timeout = '2s'")
            .execute(&mut other)
            .await?;
        sqlx::query("UPDATE users SET privacy_opt_out = 0 WHERE id = $1")
            .bind(id)
            .execute(&mut other)
            .await?;
        let kept: Option<i64> =
            sqlx::query_scalar("SELECT privacy_opt_out FROM users WHERE id = $1")
                .bind(id)
                .fetch_one(&mut other)
                .await?;
        assert_eq!(
            kept,
            Some(0),
            "the failed transaction's change was rolled back"
        );
        other.close().await?;
        store.close().await;
        Ok(())
    }

    #[test]
    fn database_urls_pick_their_backend() {
        assert_eq!(
            Backend::from_url("sqlite://data/x.db").ok(),
            Some(Backend::Sqlite)
        );
        assert_eq!(Backend::from_url("sqlite:x.db").ok(), Some(Backend::Sqlite));
        assert_eq!(
            Backend::from_url("postgres://postgres@127.0.0.1:5432/test").ok(),
            Some(Backend::Postgres)
        );
        assert_eq!(
            Backend::from_url("postgresql://u:p@db/app").ok(),
            Some(Backend::Postgres)
        );
    }

    #[test]
    fn malformed_database_urls_are_refused() {
        for url in [
            "",
            "mysql://x/y",
            "sqlite://",
            "postgres://",
            "data/imagegpt.db",
        ] {
            assert!(
                matches!(
                    Backend::from_url(url).faulted(),
                    Err(Some(Fault::InvalidDatabaseUrl(_)))
                ),
                "{url}"
            );
        }
    }

    #[test]
    fn passwords_are_redacted_from_database_urls() {
        let shown = redact("postgres://app:hunter2@db:5432/imagegpt");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("REDACTED"));
    }

    #[test]
    fn sqlite_urls_create_their_folder_and_open_read_write_create() -> Result<()> {
        let dir = tempfile::tempdir().map_err(anyhow::Error::from)?;
        let path = dir.path().join("nested/deeper/imagegpt.db");
        let url = sqlite_url(&format!("sqlite://{}", path.display()))?;
        assert!(url.ends_with("?mode=rwc"), "{url}");
        assert!(dir.path().join("nested/deeper").is_dir());
        Ok(())
    }

    /// Every `LIMIT` in the store's SQL is a number written in, not a bound parameter (see
    /// the module's note): the sources are read as text, since the SQL is built in many places.
    #[test]
    fn no_bound_limits() -> Result<()> {
        let mut folders = vec![PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/store"
        ))];
        let mut read = 0;
        while let Some(folder) = folders.pop() {
            for entry in std::fs::read_dir(&folder).map_err(anyhow::Error::from)? {
                let path = entry.map_err(anyhow::Error::from)?.path();
                if path.is_dir() {
                    folders.push(path);
                    continue;
                }
                let text = std::fs::read_to_string(&path).map_err(anyhow::Error::from)?;
                read += 1;
                let squeezed = text.split_whitespace().collect::<Vec<_>>().join(" ");
                // Put together here, so that this test's own source does not match.
                for clause in ["LIMIT", "OFFSET"] {
                    for parameter in ["$", "?"] {
                        let bound = format!("{clause} {parameter}");
                        assert!(
                            !squeezed.contains(&bound),
                            "{} binds a {clause}: write the number in",
                            path.display()
                        );
                    }
                }
            }
        }
        assert!(
            read > 10,
            "the store's sources were not found ({read} read)"
        );
        Ok(())
    }
}
