//! Joining the queue: the hold and the job in one step, as one SQLite script or one
//! PostgreSQL transaction, with the person's cap, ban and freeze decided by the database.

use super::*;

/// Where a person stands, as the derived table `now`: their last open turn (`mine`), the turn
/// now served (`serving`), how many of their jobs are queued as far as the cap cares
/// (`queued`), and whether they may spend at all (`allowed`: neither frozen nor banned, as the
/// database says, whatever an instance remembers). Each is a seek in an index, however long
/// the queue.
///
/// A person's queued jobs have distinct turns, each above the turn now served (every new job
/// takes a turn past all of its owner's open jobs), so they number at most `q - serving`. When
/// that is under the cap, it stands for the count and the person's queued jobs are not counted
/// one by one: only someone near their cap costs a count, of at most `cap` index entries.
pub(super) fn standing(user: &str, cap: u32) -> String {
    format!(
        "(SELECT CASE WHEN m.q > m.r THEN m.q ELSE m.r END AS mine, m.serving, \
                 CASE WHEN m.q - m.serving < {cap} THEN m.q - m.serving \
                      ELSE (SELECT COUNT(*) FROM (SELECT 1 FROM jobs \
                              WHERE user_id = {user} AND state = 'queued' LIMIT {cap}) counted) \
                 END AS queued, \
                 m.allowed FROM (SELECT \
           COALESCE((SELECT MAX(turn) FROM jobs WHERE user_id = {user} AND state = 'queued'), 0) AS q, \
           COALESCE((SELECT MAX(turn) FROM jobs WHERE user_id = {user} AND state = 'running'), 0) AS r, \
           COALESCE((SELECT MIN(turn) FROM jobs WHERE state = 'queued'), 1) - 1 AS serving, \
           (SELECT CASE WHEN frozen_at IS NULL AND banned_at IS NULL THEN 1 ELSE 0 END \
              FROM users WHERE id = {user}) AS allowed \
         ) m) now"
    )
}

/// How many queued jobs `claim` takes before the job `mine` (a table alias; 0 when `mine` is
/// missing or not queued), counted up to [`POSITION_CAP`], as the SQLite enqueue reads it: the
/// same answer as `Store::queue_position`, found a cheaper way on SQLite's one writer.
///
/// Past the cap a person needs to know only that the queue is long, so the cap's place is
/// probed first: when `mine` comes after the queue's `POSITION_CAP`th job, the answer is the
/// cap. Otherwise fewer than the cap are ahead, and two counts over the queue's index, each
/// bounded on both sides, find them. Counting the first `POSITION_CAP` jobs ahead through a
/// `LIMIT`ed subquery (as `queue_position` does) took 23.5–25.2 µs of an enqueue's 102–111 µs
/// with a long queue, against 11.4–11.7 µs for this (Python `sqlite3`, the enqueue's five
/// statements over 3,000 people, three rounds). PostgreSQL keeps the `LIMIT`ed count: there this
/// form made `/imagine` slower in `cargo bench --bench service` (767–845/s against 902–932/s).
pub(super) fn ahead_of(mine: &str) -> String {
    format!(
        "CASE WHEN {mine}.state <> 'queued' THEN 0 \
              WHEN ({mine}.turn, {mine}.id) > (SELECT turn, id FROM jobs WHERE state = 'queued' \
                     ORDER BY state, turn, id LIMIT 1 OFFSET {last}) THEN {POSITION_CAP} \
              ELSE (SELECT COUNT(*) FROM jobs q \
                     WHERE q.state = 'queued' AND q.turn < {mine}.turn) \
                 + (SELECT COUNT(*) FROM jobs q \
                     WHERE q.state = 'queued' AND q.turn = {mine}.turn AND q.id < {mine}.id) END",
        last = POSITION_CAP - 1,
    )
}

/// The enqueue as one SQLite plan (`$1` key, `$2` wallet, `$3` revenue account, `$4` cost, `$5`
/// operation, `$6` now, `$7` person, `$8` payload, `$9` attempts, `$10` the cap): the hold
/// (whose triggers refuse an overdraft); the job joining the queue under a hold made just now,
/// with no turn (which the database refuses: see [`NOT_QUEUED`]) when the person may not queue
/// (banned, frozen or at their cap); then the job under that key with its place in the queue,
/// and whether the key is taken. Every refusal is raised by a statement, as a plan's must be,
/// so the writer undoes the hold with the plan's savepoint.
fn enqueue_script(cap: u32) -> Arc<Script> {
    static BY_CAP: LazyLock<DashMap<u32, Arc<Script>>> = LazyLock::new(DashMap::new);
    BY_CAP
        .entry(cap)
        .or_insert_with(|| {
            Script::new(format!(
                "INSERT INTO transfers (idempotency_key, debit_account_id, credit_account_id, \
                                        amount, kind, state, two_phase, memo, created_at) \
                 VALUES ($1, $2, $3, $4, '{kind}', 'pending', 1, $5, $6) \
                 ON CONFLICT (idempotency_key) DO NOTHING; \
                 INSERT INTO jobs (user_id, hold_id, operation, payload, state, max_attempts, \
                                   run_after, created_at, turn) \
                 SELECT $7, t.id, $5, $8, 'queued', $9, $6, $6, \
                        CASE WHEN now.queued < $10 AND now.allowed = 1 \
                             THEN 1 + CASE WHEN now.mine > now.serving \
                                           THEN now.mine ELSE now.serving END END \
                 FROM transfers t, {standing} \
                 WHERE t.idempotency_key = $1 AND t.created_at = $6 \
                   AND NOT EXISTS (SELECT 1 FROM jobs WHERE hold_id = t.id); \
                 SELECT {mine}, \
                        {ahead} AS ahead, \
                        EXISTS (SELECT 1 FROM transfers WHERE idempotency_key = $1) AS taken \
                 FROM (SELECT 1) LEFT JOIN jobs mine \
                   ON mine.hold_id = (SELECT id FROM transfers WHERE idempotency_key = $1)",
                kind = TransferKind::Generation.as_str(),
                mine = JOB_COLUMNS
                    .split(", ")
                    .map(|column| format!("mine.{column}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                ahead = ahead_of("mine"),
                // The cap is written into the script, not bound: see `store`'s note on LIMIT.
                standing = standing("$7", cap),
            ))
        })
        .clone()
}

/// The message SQLite gives for a job refused a place in the queue (see [`enqueue_script`]).
const NOT_QUEUED: &str = "jobs.turn";

/// The enqueue's plan on SQLite (see [`enqueue_script`]). A person who may not queue comes back
/// as [`UserError::TooManyQueued`]; [`Store::enqueue_placed`] asks the database why.
pub(super) fn enqueue_plan(job: NewJob, limits: JobLimits, revenue: AccountId) -> Plan<Placed> {
    use sqlx::Row as _;
    let key = format!("job:{}", job.key);
    let args = vec![
        Arg::from(key.as_str()),
        Arg::from(job.wallet.get()),
        Arg::from(revenue.get()),
        Arg::from(job.cost.to_db()),
        Arg::from(job.operation.as_str()),
        Arg::from(now_millis()),
        Arg::from(job.user.get()),
        Arg::from(job.payload.as_str()),
        Arg::from(i64::from(limits.max_attempts.max(1))),
        Arg::from(i64::from(limits.max_queued_per_person)),
    ];
    let refused = {
        let job = job.clone();
        move |error: Error| {
            let not_queued = crate::store::database_error(&error).is_some_and(|db| {
                matches!(db.kind(), sqlx::error::ErrorKind::NotNullViolation)
                    && db.message().contains(NOT_QUEUED)
            });
            if not_queued {
                // Why is asked once the write is undone (see `Store::enqueue_placed`).
                Error::User(UserError::TooManyQueued {
                    limit: limits.max_queued_per_person,
                })
            } else {
                refused_hold(error, &job)
            }
        }
    };
    let read = move |rows: Vec<sqlx::any::AnyRow>| {
        let row = rows
            .first()
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("the enqueue answered nothing")))?;
        if row.try_get::<Option<i64>, _>("id")?.is_some() {
            let ahead: i64 = row.try_get("ahead")?;
            return Ok(Placed {
                job: job_from_row(<JobRow as sqlx::FromRow<_>>::from_row(row)?)?,
                ahead: u64::try_from(ahead).unwrap_or(0),
            });
        }
        if row.try_get::<i64, _>("taken")? == 1 {
            // The key holds some other transfer, with no job.
            return Err(Error::from(Fault::IdempotencyConflict { key }));
        }
        Err(Error::Internal(anyhow::anyhow!(
            "job {key} was neither queued nor refused"
        )))
    };
    Plan::refusing(
        &enqueue_script(limits.max_queued_per_person),
        args,
        read,
        refused,
    )
}

/// Why a person may not queue, as the database says now: banned, frozen, or else at their cap.
pub(super) async fn not_queued(
    conn: &mut AnyConnection,
    user: UserId,
    limits: JobLimits,
) -> Result<UserError> {
    // Integers, not booleans: SQLite has none, and sqlx's `Any` reads its 0 and 1 as numbers.
    let person: Option<(i64, i64)> = sqlx::query_as(
        "SELECT CASE WHEN banned_at IS NULL THEN 0 ELSE 1 END, \
                CASE WHEN frozen_at IS NULL THEN 0 ELSE 1 END \
         FROM users WHERE id = $1",
    )
    .bind(user.get())
    .fetch_optional(conn)
    .await?;
    Ok(match person {
        Some((1, _)) => UserError::Suspended,
        Some((_, 1)) => UserError::Frozen,
        _ => UserError::TooManyQueued {
            limit: limits.max_queued_per_person,
        },
    })
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
        return Err(Error::User(not_queued(conn, job.user, limits).await?));
    };
    job_from_row(row)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::plan::{CHUNKS, SQLX_ROW_CHANNEL};

    /// The largest chunk of enqueues, opened by the batch's `BEGIN`, answers within sqlx's
    /// channel (see [`CHUNKS`]): each plan's statements end, and its job's row comes back.
    #[test]
    fn the_largest_chunk_of_enqueues_answers_within_sqlx_channel() {
        let script = enqueue_script(5);
        assert!(
            script.fits(CHUNKS[0]),
            "a chunk of {} enqueues of {} statements each does not fit the {SQLX_ROW_CHANNEL} \
             answers sqlx holds",
            CHUNKS[0],
            script.statements_per_plan()
        );
    }
}
