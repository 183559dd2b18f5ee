//! Joining the queue: the hold and the job in one step, as one SQLite script or one
//! PostgreSQL transaction, with the person's cap, ban and freeze decided by the database.

use super::*;

/// Where a person stands, as the derived table `now`: their last open turn (`mine`), the turn
/// now served (`serving`), how many of their jobs are queued, counted up to the cap (`queued`),
/// and whether they may spend at all (`allowed`: neither frozen nor banned, as the database
/// says, whatever an instance remembers). Each is a seek in an index, however long the queue.
pub(super) fn standing(user: &str, cap: u32) -> String {
    format!(
        "(SELECT CASE WHEN m.q > m.r THEN m.q ELSE m.r END AS mine, m.serving, m.queued, \
                 m.allowed FROM (SELECT \
           COALESCE((SELECT MAX(turn) FROM jobs WHERE user_id = {user} AND state = 'queued'), 0) AS q, \
           COALESCE((SELECT MAX(turn) FROM jobs WHERE user_id = {user} AND state = 'running'), 0) AS r, \
           COALESCE((SELECT MIN(turn) FROM jobs WHERE state = 'queued'), 1) - 1 AS serving, \
           (SELECT COUNT(*) FROM (SELECT 1 FROM jobs \
              WHERE user_id = {user} AND state = 'queued' LIMIT {cap}) counted) AS queued, \
           (SELECT CASE WHEN frozen_at IS NULL AND banned_at IS NULL THEN 1 ELSE 0 END \
              FROM users WHERE id = {user}) AS allowed \
         ) m) now"
    )
}

/// The enqueue as one SQLite script: the hold (whose triggers refuse an overdraft), the job
/// joining the queue (unless the person is at their cap, or the hold is not new: the same key
/// again), then the job under that key with its place in the queue. Which rows come back
/// tells what happened; a refusal undoes the script's savepoint in the writer.
pub(super) async fn enqueue_script(
    conn: &mut AnyConnection,
    prelude: &'static str,
    job: NewJob,
    limits: JobLimits,
    revenue: AccountId,
) -> Result<Placed> {
    use sqlx::Row as _;
    let script = format!(
        "{prelude}{separator} \
         INSERT INTO transfers (idempotency_key, debit_account_id, credit_account_id, amount, \
                                kind, state, two_phase, memo, created_at) \
         VALUES ($1, $2, $3, $4, '{kind}', 'pending', 1, $5, $6) \
         ON CONFLICT (idempotency_key) DO NOTHING RETURNING 'held'; \
         INSERT INTO jobs (user_id, hold_id, operation, payload, state, max_attempts, run_after, \
                           created_at, turn) \
         SELECT $7, t.id, $5, $8, 'queued', $9, $6, $6, \
                1 + CASE WHEN now.mine > now.serving THEN now.mine ELSE now.serving END \
         FROM transfers t, {standing} \
         WHERE t.idempotency_key = $1 AND t.created_at = $6 AND now.queued < $10 \
           AND now.allowed = 1 AND NOT EXISTS (SELECT 1 FROM jobs WHERE hold_id = t.id); \
         {PERSON}; \
         SELECT {JOB_COLUMNS}, 'job' FROM jobs \
         WHERE hold_id = (SELECT id FROM transfers WHERE idempotency_key = $1); \
         SELECT COUNT(*), 'ahead' FROM (SELECT 1 FROM jobs q, jobs mine \
           WHERE mine.hold_id = (SELECT id FROM transfers WHERE idempotency_key = $1) \
             AND mine.state = 'queued' AND q.state = 'queued' \
             AND (q.turn, q.id) < (mine.turn, mine.id) LIMIT {POSITION_CAP}) ahead",
        PERSON = PERSON.replace("$1", "$7"),
        separator = if prelude.is_empty() { "" } else { ";" },
        kind = TransferKind::Generation.as_str(),
        // The cap is written into the script, not bound: see `store`'s note on LIMIT.
        standing = standing("$7", limits.max_queued_per_person),
    );
    let key = format!("job:{}", job.key);
    let rows = sqlx::query(sqlx::AssertSqlSafe(script))
        .bind(&key)
        .bind(job.wallet.get())
        .bind(revenue.get())
        .bind(job.cost.to_db())
        .bind(&job.operation)
        .bind(now_millis())
        .bind(job.user.get())
        .bind(job.payload.as_str())
        .bind(i64::from(limits.max_attempts.max(1)))
        .bind(i64::from(limits.max_queued_per_person))
        .fetch_all(conn)
        .await
        .map_err(Error::from)
        .map_err(|error| refused_hold(error, &job))?;
    // Each row ends with the name of the statement it comes from.
    let tagged = |tag: &str| {
        rows.iter().find(|row| {
            row.try_get::<String, _>(row.len() - 1)
                .is_ok_and(|t| t == tag)
        })
    };
    match (tagged("job"), tagged("held").is_some()) {
        (Some(row), _) => {
            let ahead: i64 = match tagged("ahead") {
                Some(row) => row.try_get(0)?,
                None => 0,
            };
            Ok(Placed {
                job: job_from_row(<JobRow as sqlx::FromRow<_>>::from_row(row)?)?,
                ahead: u64::try_from(ahead).unwrap_or(0),
            })
        }
        (None, true) => {
            let person = tagged("person")
                .map(|row| {
                    Ok::<_, sqlx::Error>((
                        row.try_get::<i64, _>(0)? == 1,
                        row.try_get::<i64, _>(1)? == 1,
                    ))
                })
                .transpose()?;
            Err(Error::User(not_queued(person, limits)))
        }
        // The key holds some other transfer, with no job.
        (None, false) => Err(Error::from(Fault::IdempotencyConflict { key })),
    }
}

/// Whether a person is banned and frozen, as the database says, tagged `person` for a script.
const PERSON: &str = "SELECT CASE WHEN banned_at IS NULL THEN 0 ELSE 1 END, \
                             CASE WHEN frozen_at IS NULL THEN 0 ELSE 1 END, 'person' \
                      FROM users WHERE id = $1";

/// Why a job was not queued once its hold was made: the person's (banned, frozen) state, as
/// [`PERSON`] read it, or else their cap.
fn not_queued(person: Option<(bool, bool)>, limits: JobLimits) -> UserError {
    match person {
        Some((true, _)) => UserError::Suspended,
        Some((_, true)) => UserError::Frozen,
        _ => UserError::TooManyQueued {
            limit: limits.max_queued_per_person,
        },
    }
}

/// A hold the database refused, as the error its cause means.
fn refused_hold(error: Error, job: &NewJob) -> Error {
    if crate::store::is_check_violation(&error) {
        // The balance is filled in once the write is undone (see `with_available_credits`).
        Error::User(UserError::InsufficientCredits {
            needed: job.cost,
            available: Credits::ZERO,
        })
    } else if crate::store::is_foreign_key_violation(&error) {
        Error::from(Fault::UnknownAccount(job.wallet))
    } else {
        error
    }
}

pub(super) async fn insert_job(
    conn: &mut AnyConnection,
    job: NewJob,
    limits: JobLimits,
    revenue: AccountId,
) -> Result<Job> {
    let hold = TransferRequest {
        key: format!("job:{}", job.key),
        debit: job.wallet,
        credit: revenue,
        amount: job.cost,
        kind: TransferKind::Generation,
        memo: Some(job.operation.clone()),
    };
    // The hold comes first: it locks the person's wallet row, so two enqueues for one person
    // (on any instance) count each other's jobs below.
    let hold = match insert_transfer(&mut *conn, hold.clone(), Phase::Pending).await? {
        Inserted::Created(transfer) => transfer,
        Inserted::Existing(existing) => {
            return job_where(conn, "hold_id = $1", existing.id.get())
                .await?
                .ok_or_else(|| Error::from(Fault::IdempotencyConflict { key: hold.key }));
        }
        Inserted::MissingAccount => return Err(Error::from(Fault::UnknownAccount(job.wallet))),
    };
    // One statement: the person's queued count (for the cap), their last open turn and the
    // turn now served decide whether and where the job joins the queue.
    let sql = format!(
        "INSERT INTO jobs (user_id, hold_id, operation, payload, state, max_attempts, run_after, \
                           created_at, turn) \
         SELECT $1, $2, $3, $4, 'queued', $5, $6, $6, \
                1 + CASE WHEN now.mine > now.serving THEN now.mine ELSE now.serving END \
         FROM {standing} \
         WHERE now.queued < $7 AND now.allowed = 1 \
         RETURNING {JOB_COLUMNS}",
        standing = standing("$1", limits.max_queued_per_person),
    );
    let row = sqlx::query_as::<_, JobRow>(sqlx::AssertSqlSafe(sql))
        .bind(job.user.get())
        .bind(hold.id.get())
        .bind(job.operation)
        .bind(job.payload)
        .bind(i64::from(limits.max_attempts.max(1)))
        .bind(now_millis())
        .bind(i64::from(limits.max_queued_per_person))
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else {
        // Whatever was remembered of this person, the database decides.
        let person: Option<(i64, i64, String)> = sqlx::query_as(PERSON)
            .bind(job.user.get())
            .fetch_optional(conn)
            .await?;
        let person = person.map(|(banned, frozen, _)| (banned == 1, frozen == 1));
        return Err(Error::User(not_queued(person, limits)));
    };
    job_from_row(row)
}
