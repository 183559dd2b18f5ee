//! Claiming: the next job by turn, fairly between people and under each person's running cap,
//! taken under a lease (one statement on SQLite, row locks skipping other instances' on
//! PostgreSQL).

use super::*;

/// The jobs claimable at `$1`, best first: running with an expired lease (its worker died)
/// first, then queued and due jobs by turn (see migration 0004), skipping people already at
/// their running cap (`$2`). The running set is small; the queue is read in turn order through
/// its index and never scanned.
pub(super) const CANDIDATES: &str = "SELECT id FROM ( \
           SELECT id, 0 AS kind, 0 AS turn FROM jobs \
             WHERE state = 'running' AND lease_expires_at < $1 \
           UNION ALL \
           SELECT id, kind, turn FROM ( \
             SELECT id, 1 AS kind, turn FROM jobs \
             WHERE state = 'queued' AND run_after <= $1 \
               AND user_id NOT IN (SELECT user_id FROM jobs \
                                   WHERE state = 'running' AND lease_expires_at >= $1 \
                                   GROUP BY user_id HAVING COUNT(*) >= $2) \
             ORDER BY turn, id LIMIT 8) due \
         ) candidates ORDER BY kind, turn, id LIMIT 8";

/// SQLite's claim (`$1` now, `$2` the running cap, `$3` worker, `$4` lease until): one writer,
/// so nobody else claims between the choice and the update, and both are one statement.
pub(super) static CLAIM: LazyLock<Arc<Script>> = LazyLock::new(|| {
    Script::new(format!(
        "UPDATE jobs SET state = 'running', lease_owner = $3, lease_expires_at = $4, \
         attempts = attempts + 1 \
         WHERE id = ({CANDIDATES}) \
         RETURNING {JOB_COLUMNS}"
    ))
});

/// A claim on PostgreSQL, in a transaction: the candidates, each locked (skipping rows another
/// instance holds) and claimed if still claimable.
pub(super) async fn claim_next(
    conn: &mut AnyConnection,
    worker: String,
    lease_ms: i64,
    max_running: u32,
) -> Result<Option<Lease>> {
    let now = now_millis();
    let claim = format!(
        "UPDATE jobs SET state = 'running', lease_owner = $2, lease_expires_at = $3, \
         attempts = attempts + 1 \
         WHERE id = $1 AND ((state = 'queued' AND run_after <= $4) \
               OR (state = 'running' AND lease_expires_at < $4)) \
         RETURNING {JOB_COLUMNS}"
    );
    let ids: Vec<i64> = sqlx::query_scalar(CANDIDATES)
        .bind(now)
        .bind(i64::from(max_running))
        .fetch_all(&mut *conn)
        .await?;
    for id in ids {
        // Another instance may be claiming the same rows: skip those it has locked.
        let state: Option<String> =
            sqlx::query_scalar("SELECT state FROM jobs WHERE id = $1 FOR UPDATE SKIP LOCKED")
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?;
        match state.as_deref() {
            None => continue,
            // Taking over an expired lease does not start anything new.
            Some("running") => {}
            Some(_) => {
                // Each instance counted running jobs in its own snapshot, so two could both
                // start a person's last free slot. Claims for one person take turns on
                // their row (skipping a person another instance is claiming for), and
                // count again in a new statement, whose snapshot sees the other's commit.
                let person: Option<i64> = sqlx::query_scalar(
                    "SELECT u.id FROM users u JOIN jobs j ON j.user_id = u.id \
                     WHERE j.id = $1 FOR NO KEY UPDATE OF u SKIP LOCKED",
                )
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?;
                let Some(person) = person else { continue };
                let running: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM jobs WHERE user_id = $1 \
                     AND state = 'running' AND lease_expires_at >= $2",
                )
                .bind(person)
                .bind(now)
                .fetch_one(&mut *conn)
                .await?;
                if running >= i64::from(max_running) {
                    continue;
                }
            }
        }
        let row = sqlx::query_as::<_, JobRow>(sqlx::AssertSqlSafe(claim.clone()))
            .bind(id)
            .bind(&worker)
            .bind(now.saturating_add(lease_ms))
            .bind(now)
            .fetch_optional(&mut *conn)
            .await?;
        if let Some(row) = row {
            return Ok(Some(Lease {
                job: job_from_row(row)?,
                worker,
            }));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::TestDb;

    /// The reads every claim, idle poll and enqueue makes seek in an index or walk a partial
    /// one (a small set: the running jobs, or the queue in turn order), never every job ever
    /// run: SQLite's plans, as `EXPLAIN QUERY PLAN` tells them.
    #[tokio::test]
    async fn hot_job_reads_never_scan_the_jobs_table() -> Result<()> {
        let db = TestDb::sqlite().await;
        let queries = [
            ("candidates", CANDIDATES.to_string()),
            ("ahead", AHEAD.to_string()),
            (
                "the enqueue's ahead",
                format!(
                    "SELECT {} FROM (SELECT 1) one LEFT JOIN jobs mine ON mine.id = $2",
                    ahead_of("mine")
                ),
            ),
            ("standing", format!("SELECT * FROM {}", standing("$1", 10))),
        ];
        for (name, sql) in queries {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
                .bind(now_millis())
                .bind(3_i64)
                .fetch_all(&mut *db.store().reader().await?)
                .await?;
            let plan: Vec<String> = rows
                .iter()
                .map(|row| sqlx::Row::try_get::<String, _>(row, 3))
                .collect::<std::result::Result<_, _>>()?;
            assert!(!plan.is_empty(), "{name}: no plan");
            for step in &plan {
                let Some(scanned) = step.strip_prefix("SCAN ") else {
                    continue;
                };
                let table = scanned.split(' ').next().unwrap_or_default();
                if !["jobs", "q", "mine"].contains(&table) {
                    continue; // a subquery's rows, not a table
                }
                assert!(
                    ["jobs_running", "jobs_queue_order"]
                        .iter()
                        .any(|partial| scanned.ends_with(partial)),
                    "{name} scans the jobs table: {plan:#?}"
                );
            }
        }
        Ok(())
    }
}
