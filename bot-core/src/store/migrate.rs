//! The migrations of both backends (append-only, one folder each), applied at start-up or
//! checked to be current.

use super::*;

pub(super) const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "people and ledger",
        include_str!("../../../migrations/sqlite/0001_people_and_ledger.sql"),
    ),
    (
        2,
        "jobs",
        include_str!("../../../migrations/sqlite/0002_jobs.sql"),
    ),
    (
        3,
        "service",
        include_str!("../../../migrations/sqlite/0003_service.sql"),
    ),
    (
        4,
        "turns",
        include_str!("../../../migrations/sqlite/0004_turns.sql"),
    ),
    (
        5,
        "payments",
        include_str!("../../../migrations/sqlite/0005_payments.sql"),
    ),
    (
        6,
        "links",
        include_str!("../../../migrations/sqlite/0006_links.sql"),
    ),
    (
        7,
        "notice recipient",
        include_str!("../../../migrations/sqlite/0007_notice_recipient.sql"),
    ),
    (
        8,
        "admin",
        include_str!("../../../migrations/sqlite/0008_admin.sql"),
    ),
    (
        9,
        "large files",
        include_str!("../../../migrations/sqlite/0009_large_files.sql"),
    ),
    (
        10,
        "provider cost",
        include_str!("../../../migrations/sqlite/0010_provider_cost.sql"),
    ),
    (
        11,
        "updates",
        include_str!("../../../migrations/sqlite/0011_updates.sql"),
    ),
    (
        12,
        "interactions",
        include_str!("../../../migrations/sqlite/0012_interactions.sql"),
    ),
    (
        13,
        "link attempts",
        include_str!("../../../migrations/sqlite/0013_link_attempts.sql"),
    ),
    (
        14,
        "people changes",
        include_str!("../../../migrations/sqlite/0014_people_changes.sql"),
    ),
    (
        15,
        "turns by person",
        include_str!("../../../migrations/sqlite/0015_turns_by_person.sql"),
    ),
    (
        16,
        "let through",
        include_str!("../../../migrations/sqlite/0016_let_through.sql"),
    ),
    (
        17,
        "notice records",
        include_str!("../../../migrations/sqlite/0017_notice_records.sql"),
    ),
    (
        18,
        "running jobs",
        include_str!("../../../migrations/sqlite/0018_running_jobs.sql"),
    ),
    (
        19,
        "credit trigger",
        include_str!("../../../migrations/sqlite/0019_credit_trigger.sql"),
    ),
    (
        20,
        "wallet changes",
        include_str!("../../../migrations/sqlite/0020_wallet_changes.sql"),
    ),
    (
        21,
        "checks as comparisons",
        include_str!("../../../migrations/sqlite/0021_checks_as_comparisons.sql"),
    ),
];
pub(super) const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "people and ledger",
        include_str!("../../../migrations/postgres/0001_people_and_ledger.sql"),
    ),
    (
        2,
        "jobs",
        include_str!("../../../migrations/postgres/0002_jobs.sql"),
    ),
    (
        3,
        "service",
        include_str!("../../../migrations/postgres/0003_service.sql"),
    ),
    (
        4,
        "turns",
        include_str!("../../../migrations/postgres/0004_turns.sql"),
    ),
    (
        5,
        "payments",
        include_str!("../../../migrations/postgres/0005_payments.sql"),
    ),
    (
        6,
        "links",
        include_str!("../../../migrations/postgres/0006_links.sql"),
    ),
    (
        7,
        "notice recipient",
        include_str!("../../../migrations/postgres/0007_notice_recipient.sql"),
    ),
    (
        8,
        "admin",
        include_str!("../../../migrations/postgres/0008_admin.sql"),
    ),
    (
        9,
        "large files",
        include_str!("../../../migrations/postgres/0009_large_files.sql"),
    ),
    (
        10,
        "provider cost",
        include_str!("../../../migrations/postgres/0010_provider_cost.sql"),
    ),
    (
        11,
        "updates",
        include_str!("../../../migrations/postgres/0011_updates.sql"),
    ),
    (
        12,
        "interactions",
        include_str!("../../../migrations/postgres/0012_interactions.sql"),
    ),
    (
        13,
        "link attempts",
        include_str!("../../../migrations/postgres/0013_link_attempts.sql"),
    ),
    (
        14,
        "people changes",
        include_str!("../../../migrations/postgres/0014_people_changes.sql"),
    ),
    (
        15,
        "turns by person",
        include_str!("../../../migrations/postgres/0015_turns_by_person.sql"),
    ),
    (
        16,
        "let through",
        include_str!("../../../migrations/postgres/0016_let_through.sql"),
    ),
    (
        17,
        "notice records",
        include_str!("../../../migrations/postgres/0017_notice_records.sql"),
    ),
    (
        18,
        "running jobs",
        include_str!("../../../migrations/postgres/0018_running_jobs.sql"),
    ),
    (
        19,
        "credit trigger",
        include_str!("../../../migrations/postgres/0019_credit_trigger.sql"),
    ),
    (
        20,
        "oldest lot pays",
        include_str!("../../../migrations/postgres/0020_oldest_lot_pays.sql"),
    ),
];

pub(super) fn migrator(backend: Backend) -> Migrator {
    let sources = match backend {
        Backend::Sqlite => SQLITE_MIGRATIONS,
        Backend::Postgres => POSTGRES_MIGRATIONS,
    };
    Migrator::with_migrations(
        sources
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    description.into(),
                    MigrationType::Simple,
                    sqlx::SqlSafeStr::into_sql_str(sql),
                    false,
                )
            })
            .collect(),
    )
}

/// Applies the migrations, or checks that none is pending.
pub(super) async fn prepare_schema(
    backend: Backend,
    migrations: Migrations,
    conn: &mut AnyConnection,
) -> Result<()> {
    let migrator = migrator(backend);
    match migrations {
        Migrations::Apply => migrator.run(conn).await?,
        Migrations::RequireCurrent => {
            let pending = pending_migrations(&migrator, conn).await?;
            if pending > 0 {
                return Err(Error::Internal(anyhow::anyhow!(
                    "the database schema is {pending} migration(s) behind: run `imagegpt migrate`"
                )));
            }
        }
    }
    Ok(())
}

pub(super) async fn pending_migrations(
    migrator: &Migrator,
    conn: &mut AnyConnection,
) -> Result<usize> {
    let applied: Vec<i64> = match sqlx::query_scalar::<_, i64>(
        "SELECT version FROM _sqlx_migrations WHERE success = TRUE",
    )
    .fetch_all(&mut *conn)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{execute_unchecked, testing::TestDb};

    /// Whether `sql` holds `IN (…)` over a list of three or more terms, which SQLite evaluates
    /// by building a b-tree of the list each time (see migration 21).
    fn lists_three_or_more(sql: &str) -> bool {
        sql.match_indices("IN (").any(|(at, _)| {
            let list = &sql[at + 4..];
            let list = &list[..list.find(')').unwrap_or(list.len())];
            !list.to_uppercase().contains("SELECT") && list.matches(',').count() >= 2
        })
    }

    #[test]
    fn a_list_of_three_is_told_from_two() {
        assert!(lists_three_or_more("CHECK (state IN ('a', 'b', 'c'))"));
        assert!(!lists_three_or_more("CHECK (state IN ('a', 'b'))"));
        assert!(!lists_three_or_more("WHERE id IN (SELECT a, b, c FROM t)"));
    }

    /// The rules written every time a job, a hold or an identity is written compare term by
    /// term on SQLite, and still refuse what they refused.
    #[tokio::test]
    async fn sqlite_rules_on_hot_tables_compare_rather_than_list() {
        let db = TestDb::sqlite().await;
        let store = db.store();
        let schema: Vec<(String, String)> = sqlx::query_as(
            "SELECT name, sql FROM sqlite_schema \
             WHERE name IN ('transfers', 'jobs', 'identities', 'job_ended') ORDER BY name",
        )
        .fetch_all(&mut *store.reader().await.expect("a reader"))
        .await
        .expect("the schema");
        let names: Vec<&str> = schema.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["identities", "job_ended", "jobs", "transfers"]);
        for (name, sql) in &schema {
            assert!(!lists_three_or_more(sql), "{name} still lists: {sql}");
        }
        // Each binds $1 = 1 where an id goes; the state or platform is what is refused.
        for sql in [
            "INSERT INTO identities (platform, external_id, user_id, created_at) \
             VALUES ('irc', 'x', $1, 0)",
            "INSERT INTO jobs (user_id, hold_id, operation, payload, state, max_attempts, \
                               run_after, created_at) \
             VALUES ($1, 1, 'imagine', '{}', 'bogus', 1, 0, 0)",
            "INSERT INTO transfers (idempotency_key, debit_account_id, credit_account_id, \
                                    amount, kind, state, two_phase, created_at) \
             VALUES ('k', $1, 2, 1, 'grant', 'bogus', 0, 0)",
        ] {
            let refused = execute_unchecked(store, sql, 1).await.expect_err(sql);
            assert!(is_check_violation(&refused), "{sql}: {refused:#}");
        }
    }
}
