//! The sqlx store: one interface over SQLite (the embedded default) and PostgreSQL.
//!
//! Both backends run the same SQL through sqlx's `Any` driver; the few places where dialects
//! differ branch on [`Backend`]. SQLite gets a single writer connection (so writers queue in
//! process instead of failing with `SQLITE_BUSY`) and a pool of readers over WAL.

#[cfg(any(test, feature = "test-support"))]
pub mod testing;

use std::{future::Future, path::PathBuf, str::FromStr, sync::Arc, time::Duration};

use anyhow::Context as _;
use serde::Deserialize;
use sqlx::{
    Any, AnyPool, Executor as _, Transaction,
    any::AnyPoolOptions,
    error::ErrorKind,
    migrate::{Migration, MigrationType, Migrator},
};

use crate::{AccountId, Error, Result, ledger::SystemAccount};

/// The `[database]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `DATABASE_URL`: `sqlite://PATH` (created on first run) or `postgres://…`.
    pub url: String,
    /// Connections in the pool (PostgreSQL) or readers (SQLite; there is one writer).
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
    /// [`Error::InvalidDatabaseUrl`] for any other scheme or a URL that does not parse.
    pub fn from_url(url: &str) -> Result<Backend> {
        if let Some(rest) = url.strip_prefix("sqlite:") {
            if rest.trim_start_matches('/').is_empty() {
                return Err(Error::InvalidDatabaseUrl(
                    "sqlite URL names no file (expected sqlite://PATH)".into(),
                ));
            }
            return Ok(Backend::Sqlite);
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let parsed = url::Url::parse(url)
                .map_err(|e| Error::InvalidDatabaseUrl(format!("not a valid URL: {e}")))?;
            if parsed.host_str().is_none_or(str::is_empty) {
                return Err(Error::InvalidDatabaseUrl(
                    "postgres URL names no host".into(),
                ));
            }
            return Ok(Backend::Postgres);
        }
        Err(Error::InvalidDatabaseUrl(
            "expected sqlite://PATH or postgres://USER@HOST/DB".into(),
        ))
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
    /// Every write transaction. One connection on SQLite.
    pub(crate) write: AnyPool,
    /// Reads outside transactions. The same pool as `write` on PostgreSQL.
    pub(crate) read: AnyPool,
    pub(crate) system: [AccountId; SystemAccount::ALL.len()],
}

const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "people and ledger",
    include_str!("../../migrations/sqlite/0001_people_and_ledger.sql"),
)];
const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "people and ledger",
    include_str!("../../migrations/postgres/0001_people_and_ledger.sql"),
)];

/// How many times a transaction is retried after a lock conflict the database reported.
const MAX_TRANSIENT_RETRIES: u32 = 20;

impl Store {
    /// Connects to `config.url` and applies or checks the migrations.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidDatabaseUrl`] for a bad URL; [`Error::Internal`] when the database cannot
    /// be reached or opened, a migration fails, or the schema is behind under
    /// [`Migrations::RequireCurrent`].
    pub async fn connect(config: &DatabaseConfig, migrations: Migrations) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(&config.url)?;
        let (write, read) = match backend {
            Backend::Sqlite => {
                let url = sqlite_url(&config.url)?;
                let busy = config.busy_timeout_ms;
                let pool = |max: u32| {
                    AnyPoolOptions::new()
                        .max_connections(max)
                        .min_connections(1)
                        .acquire_timeout(Duration::from_secs(30))
                        .after_connect(move |conn, _| {
                            Box::pin(async move {
                                let pragmas = format!(
                                    "PRAGMA busy_timeout = {busy}; PRAGMA journal_mode = WAL; \
                                     PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;"
                                );
                                conn.execute(sqlx::raw_sql(sqlx::AssertSqlSafe(pragmas)))
                                    .await?;
                                Ok(())
                            })
                        })
                };
                let write = pool(1)
                    .connect(&url)
                    .await
                    .with_context(|| format!("opening the SQLite database {}", redact(&url)))?;
                let read = pool(config.max_connections.max(1))
                    .connect(&url)
                    .await
                    .with_context(|| format!("opening the SQLite database {}", redact(&url)))?;
                (write, read)
            }
            Backend::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(config.max_connections.max(2))
                    .acquire_timeout(Duration::from_secs(30))
                    .connect(&config.url)
                    .await
                    .with_context(|| {
                        format!("connecting to PostgreSQL at {}", redact(&config.url))
                    })?;
                (pool.clone(), pool)
            }
        };
        let migrator = migrator(backend);
        match migrations {
            Migrations::Apply => migrator.run(&write).await?,
            Migrations::RequireCurrent => {
                let pending = pending_migrations(&migrator, &write).await?;
                if pending > 0 {
                    return Err(Error::Internal(anyhow::anyhow!(
                        "the database schema is {pending} migration(s) behind: run `imagegpt migrate`"
                    )));
                }
            }
        }
        let system = load_system_accounts(&read).await?;
        Ok(Store {
            inner: Arc::new(Inner {
                backend,
                write,
                read,
                system,
            }),
        })
    }

    /// Which database this store talks to.
    pub fn backend(&self) -> Backend {
        self.inner.backend
    }

    /// True when the database answers and every migration this binary knows is applied.
    pub async fn is_ready(&self) -> bool {
        let migrator = migrator(self.inner.backend);
        matches!(pending_migrations(&migrator, &self.inner.read).await, Ok(0))
    }

    /// Closes every connection; waits for those in use to be returned.
    pub async fn close(&self) {
        self.inner.write.close().await;
        self.inner.read.close().await;
    }

    pub(crate) fn system_account(&self, account: SystemAccount) -> AccountId {
        self.inner.system[account as usize]
    }

    /// Starts a write transaction (on SQLite, on the one writer connection).
    pub(crate) async fn begin(&self) -> Result<Transaction<'static, Any>> {
        Ok(self.inner.write.begin().await?)
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

fn migrator(backend: Backend) -> Migrator {
    let sources = match backend {
        Backend::Sqlite => SQLITE_MIGRATIONS,
        Backend::Postgres => POSTGRES_MIGRATIONS,
    };
    Migrator::with_migrations(
        sources
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(version, description.into(), MigrationType::Simple, sqlx::SqlSafeStr::into_sql_str(sql), false)
            })
            .collect(),
    )
}

async fn pending_migrations(migrator: &Migrator, pool: &AnyPool) -> Result<usize> {
    let applied: Vec<i64> = match sqlx::query_scalar::<_, i64>(
        "SELECT version FROM _sqlx_migrations WHERE success = TRUE",
    )
    .fetch_all(pool)
    .await
    {
        Ok(applied) => applied,
        // No migrations table: nothing applied yet.
        Err(sqlx::Error::Database(_)) => Vec::new(),
        Err(other) => return Err(other.into()),
    };
    Ok(migrator
        .iter()
        .filter(|m| !applied.contains(&m.version))
        .count())
}

async fn load_system_accounts(pool: &AnyPool) -> Result<[AccountId; SystemAccount::ALL.len()]> {
    let rows: Vec<(i64, String)> =
        sqlx::query_as("SELECT id, code FROM accounts WHERE kind = 'system'")
            .fetch_all(pool)
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

/// The SQLite URL with `mode=rwc`, after creating the file's folder.
fn sqlite_url(url: &str) -> Result<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path != ":memory:" {
        if let Some(dir) = PathBuf::from_str(path)
            .ok()
            .and_then(|p| p.parent().map(PathBuf::from))
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("creating the database folder {}", dir.display()))?;
        }
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

    #[test]
    fn database_urls_pick_their_backend() {
        assert_eq!(Backend::from_url("sqlite://data/x.db").ok(), Some(Backend::Sqlite));
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
        for url in ["", "mysql://x/y", "sqlite://", "postgres://", "data/imagegpt.db"] {
            assert!(
                matches!(Backend::from_url(url), Err(Error::InvalidDatabaseUrl(_))),
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
}
