//! Fresh databases for tests: a SQLite file in a temporary folder, or a new PostgreSQL database
//! on the server named by `TEST_POSTGRES_URL`, dropped afterwards. [`on_every_backend!`] runs one
//! story against both, so the backends are proven to behave the same.
//!
//! [`on_every_backend!`]: crate::on_every_backend

use std::{
    future::Future,
    sync::atomic::{AtomicU32, Ordering},
};

use sqlx::{Connection as _, Executor as _, PgConnection};

use crate::{Backend, DatabaseConfig, Store, store::Migrations};

/// The variable naming the PostgreSQL server tests may create databases on.
pub const TEST_POSTGRES_URL: &str = "TEST_POSTGRES_URL";

/// A migrated database that is removed when dropped.
#[derive(Debug)]
pub struct TestDb {
    store: Store,
    url: String,
    cleanup: Cleanup,
}

#[derive(Debug)]
enum Cleanup {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { admin_url: String, name: String },
}

impl TestDb {
    /// A fresh database of the given backend; `None` for PostgreSQL when `TEST_POSTGRES_URL` is
    /// not set (a line on stderr says the test was skipped).
    pub async fn new(backend: Backend, test: &str) -> Option<TestDb> {
        TestDb::with_connections(backend, test, 3).await
    }

    /// As [`TestDb::new`], with a pool of `connections` (benchmarks size it to their tasks).
    pub async fn with_connections(
        backend: Backend,
        test: &str,
        connections: u32,
    ) -> Option<TestDb> {
        match backend {
            Backend::Sqlite => Some(TestDb::sqlite_with(connections).await),
            Backend::Postgres => TestDb::postgres_with(test, connections).await,
        }
    }

    /// A fresh SQLite database in a temporary folder.
    ///
    /// # Panics
    ///
    /// When the folder or the database cannot be created.
    pub async fn sqlite() -> TestDb {
        TestDb::sqlite_with(3).await
    }

    async fn sqlite_with(connections: u32) -> TestDb {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let url = format!("sqlite://{}", dir.path().join("test.db").display());
        let store = connect(&url, connections).await;
        TestDb {
            store,
            url,
            cleanup: Cleanup::Sqlite(dir),
        }
    }

    /// A fresh database on the PostgreSQL server of `TEST_POSTGRES_URL`.
    ///
    /// # Panics
    ///
    /// When the variable is set but the server refuses to create the database.
    pub async fn postgres(test: &str) -> Option<TestDb> {
        TestDb::postgres_with(test, 3).await
    }

    async fn postgres_with(test: &str, connections: u32) -> Option<TestDb> {
        let Some(admin_url) = std::env::var(TEST_POSTGRES_URL)
            .ok()
            .filter(|url| !url.trim().is_empty())
        else {
            eprintln!("skipped {test} on PostgreSQL: {TEST_POSTGRES_URL} is not set");
            return None;
        };
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let name = format!(
            "imagegpt_test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            nanos
        );
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("{TEST_POSTGRES_URL} is set but unreachable: {e}"));
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .expect("creating a test database");
        admin.close().await.ok();
        let mut url = url::Url::parse(&admin_url).expect("TEST_POSTGRES_URL is a URL");
        url.set_path(&name);
        let url = url.to_string();
        let store = connect(&url, connections).await;
        Some(TestDb {
            store,
            url,
            cleanup: Cleanup::Postgres { admin_url, name },
        })
    }

    /// The store over this database.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The `DATABASE_URL` of this database, for starting the binary against it.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Cleanup::Postgres { admin_url, name } = &self.cleanup {
            let (admin_url, name) = (admin_url.clone(), name.clone());
            // Drop runs inside the test's runtime, which cannot be blocked on; a thread with its
            // own runtime can. FORCE ends the connections the store still holds.
            let dropped = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .ok()?;
                runtime.block_on(async {
                    let mut admin = PgConnection::connect(&admin_url).await.ok()?;
                    admin
                        .execute(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        )))
                        .await
                        .ok()?;
                    admin.close().await.ok()
                })
            })
            .join();
            if !matches!(dropped, Ok(Some(()))) {
                eprintln!("could not drop test database {}", self.cleanup_name());
            }
        }
    }
}

impl TestDb {
    fn cleanup_name(&self) -> &str {
        match &self.cleanup {
            Cleanup::Postgres { name, .. } => name,
            Cleanup::Sqlite(_) => "(sqlite)",
        }
    }
}

async fn connect(url: &str, connections: u32) -> Store {
    let config = DatabaseConfig {
        url: url.to_string(),
        max_connections: connections,
        ..DatabaseConfig::default()
    };
    Store::connect(&config, Migrations::Apply)
        .await
        .unwrap_or_else(|e| panic!("opening test database: {e:#}"))
}

/// A Stripe order of the small pack (150 credits for $5.00) made by `user`, paying as `payer`,
/// from `chat`: what `/buy` records before the checkout.
pub async fn stripe_order(
    store: &Store,
    user: &crate::people::User,
    payer: &str,
    chat: crate::chat::ChatRef,
) -> crate::payments::Purchase {
    store
        .create_purchase(&crate::payments::NewPurchase {
            user: user.id,
            payer: payer.to_string(),
            pack: "small".into(),
            credits: crate::Credits::new(150),
            rail: crate::payments::Rail::Stripe,
            amount: 500,
            currency: "usd".into(),
            chat,
            fee_estimate: 45,
        })
        .await
        .expect("purchase")
}

/// What `user` can spend now.
///
/// # Panics
///
/// When the store fails.
pub async fn available(store: &Store, user: &crate::people::User) -> u64 {
    store
        .account_balance(user.wallet)
        .await
        .expect("balance")
        .available()
        .get()
}

/// Runs one statement with integer parameters through the store's writer, as another process
/// changing the database behind the code under test would.
///
/// # Panics
///
/// When the statement fails.
pub async fn execute(store: &Store, sql: &'static str, params: &[i64]) {
    let params = params.to_vec();
    store
        .write(super::Atomic::Statement, move |conn| {
            Box::pin(async move {
                let mut query = sqlx::query(sql);
                for param in params {
                    query = query.bind(param);
                }
                query.execute(conn).await?;
                Ok(())
            })
        })
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error:#}"));
}

/// The person `console:NAME`, granted `credits` (once: the grant is keyed by the name).
///
/// # Panics
///
/// When the store fails.
pub async fn person(store: &Store, name: &str, credits: u64) -> crate::people::User {
    let identity: crate::Identity = format!("console:{name}")
        .parse()
        .expect("a console identity");
    let user = store.contact(&identity).await.expect("contact").user;
    if credits > 0 {
        store
            .transfer(&crate::ledger::TransferRequest {
                key: format!("test-grant:{name}"),
                debit: store.account(crate::ledger::SystemAccount::Grants),
                credit: user.wallet,
                amount: crate::Credits::new(credits),
                kind: crate::ledger::TransferKind::Grant,
                memo: None,
            })
            .await
            .expect("grant");
    }
    user
}

/// Runs `story` on a fresh database of `backend`, then requires a clean audit.
///
/// # Panics
///
/// When the story panics or the audit afterwards finds a problem.
pub async fn run_story<F, Fut>(backend: Backend, test: &str, story: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(db) = TestDb::new(backend, test).await else {
        return;
    };
    story(db.store().clone()).await;
    let report = db.store().audit().await.expect("audit runs");
    assert!(report.is_clean(), "audit after {test}:\n{report}");
    db.store().close().await;
}

/// Turns each `async fn story(store: Store)` in scope into two tests, `story::on_sqlite` and
/// `story::on_postgres`, each on a fresh database and each ending with a clean audit.
#[macro_export]
macro_rules! on_every_backend {
    ($($story:ident),* $(,)?) => {
        $(
            mod $story {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn on_sqlite() {
                    $crate::store::testing::run_story(
                        $crate::Backend::Sqlite,
                        concat!(module_path!(), "::on_sqlite"),
                        super::$story,
                    )
                    .await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn on_postgres() {
                    $crate::store::testing::run_story(
                        $crate::Backend::Postgres,
                        concat!(module_path!(), "::on_postgres"),
                        super::$story,
                    )
                    .await;
                }
            }
        )*
    };
}
