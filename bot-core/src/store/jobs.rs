//! The job queue's SQL: enqueue with the hold, fair claims under a lease, renewals, one end per
//! job (posting or voiding its hold), cancellation.

use crate::jobs::*;
use crate::store::ledger::{Inserted, insert_transfer};
use crate::{
    AccountId, Credits, Error, JobId, Result, Store, TransferId, Usd, UserId,
    ledger::{Phase, SystemAccount, TransferKind, TransferRequest},
    store::{Arg, Atomic, Backend, Plan, Script, now_millis},
};
use crate::{Fault, UserError};
use dashmap::DashMap;
use sqlx::AnyConnection;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use super::rows::named_row;

mod claim;
mod enqueue;

use self::{claim::*, enqueue::*};

const JOB_COLUMNS: &str = "id, user_id, hold_id, operation, payload, state, attempts, \
                           cancel_requested, provider, provider_job_id, failure, created_at";

named_row! {
    /// A job as [`JOB_COLUMNS`] reads it.
    struct JobRow {
        id: i64,
        user_id: i64,
        hold_id: i64,
        operation: String,
        payload: String,
        state: String,
        attempts: i64,
        cancel_requested: i64,
        provider: Option<String>,
        provider_job_id: Option<String>,
        failure: Option<String>,
        created_at: i64,
    }
}

fn job_from_row(row: JobRow) -> Result<Job> {
    Ok(Job {
        id: JobId::from_db(row.id),
        user: UserId::from_db(row.user_id),
        hold: TransferId::from_db(row.hold_id),
        operation: row.operation,
        payload: row.payload,
        state: JobState::from_db(&row.state)?,
        attempts: u32::try_from(row.attempts).unwrap_or(u32::MAX),
        cancel_requested: row.cancel_requested == 1,
        provider: row.provider,
        provider_job_id: row.provider_job_id,
        failure: row.failure,
        created_at: row.created_at,
    })
}

/// The one job a plan's rows hold, if any.
fn job_in(rows: &[sqlx::any::AnyRow]) -> Result<Option<Job>> {
    rows.first()
        .map(|row| job_from_row(<JobRow as sqlx::FromRow<_>>::from_row(row)?))
        .transpose()
}

/// Where a job's status message is (`$1` job, `$2` message); the job's state comes back.
static SET_STATUS: LazyLock<Arc<Script>> = LazyLock::new(|| {
    Script::new("UPDATE jobs SET status_message = $2 WHERE id = $1 RETURNING state")
});

/// A lease extended (`$1` job, `$2` worker, `$3` until): a row back while the worker holds it.
static RENEW: LazyLock<Arc<Script>> = LazyLock::new(|| {
    Script::new(
        "UPDATE jobs SET lease_expires_at = $3 \
         WHERE id = $1 AND state = 'running' AND lease_owner = $2 RETURNING id",
    )
});

/// The provider's run recorded (`$1` job, `$2` worker, `$3` provider, `$4` its id).
static PROVIDER_JOB: LazyLock<Arc<Script>> = LazyLock::new(|| {
    Script::new(
        "UPDATE jobs SET provider = $3, provider_job_id = $4 \
         WHERE id = $1 AND state = 'running' AND lease_owner = $2 RETURNING id",
    )
});

/// A job ended (`$1` job, `$2` state, `$3` when, `$4` failure, `$5` the worker holding it or
/// NULL for none, `$6` provider, `$7` its cost); the database's `job_ended` trigger posts or
/// voids the hold in the same statement.
static FINISH: LazyLock<Arc<Script>> = LazyLock::new(|| {
    Script::new(format!(
        "UPDATE jobs SET state = $2, finished_at = $3, failure = COALESCE($4, failure), \
         lease_owner = NULL, lease_expires_at = NULL, \
         provider = COALESCE($6, provider), provider_cost_micros = $7 \
         WHERE id = $1 AND state IN ('queued', 'running') \
           AND ($5 IS NULL OR lease_owner = $5) \
         RETURNING {JOB_COLUMNS}"
    ))
});

/// A job handed back to the queue (`$1` job, `$2` worker, `$3` not before, `$4` failure).
static RELEASE: LazyLock<Arc<Script>> = LazyLock::new(|| {
    Script::new(format!(
        "UPDATE jobs SET state = 'queued', lease_owner = NULL, lease_expires_at = NULL, \
         run_after = $3, failure = COALESCE($4, failure) \
         WHERE id = $1 AND state = 'running' AND lease_owner = $2 \
         RETURNING {JOB_COLUMNS}"
    ))
});

async fn job_where(conn: &mut AnyConnection, condition: &str, id: i64) -> Result<Option<Job>> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE {condition}");
    sqlx::query_as::<_, JobRow>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(conn)
        .await?
        .map(job_from_row)
        .transpose()
}

impl Store {
    /// Holds the job's cost and queues it, in one transaction. The same key again returns the
    /// job it queued first.
    ///
    /// # Errors
    ///
    /// [`UserError::InsufficientCredits`]; [`UserError::TooManyQueued`] when the person already has
    /// their cap of queued jobs (nothing is held then); [`Fault::IdempotencyConflict`].
    pub async fn enqueue(&self, job: &NewJob, limits: &JobLimits) -> Result<Job> {
        self.enqueue_placed(job, limits)
            .await
            .map(|placed| placed.job)
    }

    /// As [`Store::enqueue`], with the job's place in the queue, read in the same step.
    ///
    /// # Errors
    ///
    /// As [`Store::enqueue`].
    pub async fn enqueue_placed(&self, job: &NewJob, limits: &JobLimits) -> Result<Placed> {
        let revenue = self.account(SystemAccount::GenerationRevenue);
        let queued = match self.backend() {
            // One script: one round trip to SQLite's thread for the whole step.
            Backend::Sqlite => {
                self.retrying(|| self.write_plan(enqueue_plan(job.clone(), *limits, revenue)))
                    .await
            }
            Backend::Postgres => {
                self.retrying(|| {
                    let (job, limits) = (job.clone(), *limits);
                    self.write(Atomic::Transaction, move |conn| {
                        Box::pin(async move {
                            let job = insert_job(&mut *conn, job, limits, revenue).await?;
                            let ahead = position(conn, job.id).await?;
                            Ok(Placed { job, ahead })
                        })
                    })
                })
                .await
            }
        };
        match queued {
            Ok(queued) => Ok(queued),
            // SQLite's plan says only that the person may not queue; the database says why.
            Err(Error::User(UserError::TooManyQueued { .. }))
                if self.backend() == Backend::Sqlite =>
            {
                let why = not_queued(&mut *self.reader().await?, job.user, *limits).await?;
                Err(Error::User(why))
            }
            Err(error) => self.with_available_credits(error, job.wallet).await,
        }
    }

    /// Claims the next job for `worker`, fairly between people, for `lease`. Jobs whose lease
    /// expired (their worker died) are claimable again.
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails.
    pub async fn claim(
        &self,
        worker: &str,
        lease: Duration,
        limits: &JobLimits,
    ) -> Result<Option<Lease>> {
        let (worker, max_running) = (worker.to_string(), limits.max_running_per_person);
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        match self.backend() {
            // The one writer excludes every other claimer, and the claim is one statement that
            // chooses and takes the job.
            Backend::Sqlite => {
                // An UPDATE takes SQLite's write lock even when it changes nothing, and idle
                // workers ask every few milliseconds: without this look first, the file's other
                // writers (the operator's `imagegpt admin`) can wait for a turn that never comes.
                if !self.anything_claimable(max_running).await? {
                    return Ok(None);
                }
                let now = now_millis();
                let args = vec![
                    Arg::from(now),
                    Arg::from(i64::from(max_running)),
                    Arg::from(worker.as_str()),
                    Arg::from(now.saturating_add(lease_ms)),
                ];
                self.retrying(|| {
                    let worker = worker.clone();
                    self.write_plan(Plan::new(&CLAIM, args.clone(), move |rows| {
                        Ok(job_in(&rows)?.map(|job| Lease { job, worker }))
                    }))
                })
                .await
            }
            // Rows locked in a transaction, skipping those other instances hold.
            Backend::Postgres => {
                self.retrying(|| {
                    let worker = worker.clone();
                    self.write(Atomic::Transaction, move |conn| {
                        Box::pin(claim_next(conn, worker, lease_ms, max_running))
                    })
                })
                .await
            }
        }
    }

    /// Whether any job is claimable now (read without the write lock).
    async fn anything_claimable(&self, max_running: u32) -> Result<bool> {
        let found: Option<i64> = sqlx::query_scalar(CANDIDATES)
            .bind(now_millis())
            .bind(i64::from(max_running))
            .fetch_optional(&mut *self.reader().await?)
            .await?;
        Ok(found.is_some())
    }

    /// Extends a lease. `Ok(false)` when the lease was lost (expired and taken by another
    /// worker, or the job ended): the worker must stop.
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails.
    pub async fn renew(&self, lease: &Lease, duration: Duration) -> Result<bool> {
        let until = now_millis() + i64::try_from(duration.as_millis()).unwrap_or(i64::MAX / 2);
        let args = vec![
            Arg::from(lease.job.id.get()),
            Arg::from(lease.worker.as_str()),
            Arg::from(until),
        ];
        self.write_plan(Plan::new(&RENEW, args, |rows| Ok(rows.len() == 1)))
            .await
    }

    /// Records the provider's id for the job as soon as it exists, so a worker that restarts
    /// polls the same run instead of paying for a second one.
    ///
    /// # Errors
    ///
    /// [`Fault::LeaseLost`] when this worker no longer holds the job.
    pub async fn record_provider_job(
        &self,
        lease: &Lease,
        provider: &str,
        provider_job_id: &str,
    ) -> Result<()> {
        let id = lease.job.id;
        let args = vec![
            Arg::from(id.get()),
            Arg::from(lease.worker.as_str()),
            Arg::from(provider),
            Arg::from(provider_job_id),
        ];
        self.write_plan(Plan::new(&PROVIDER_JOB, args, move |rows| {
            if rows.len() == 1 {
                Ok(())
            } else {
                Err(Error::from(Fault::LeaseLost(id)))
            }
        }))
        .await
    }

    /// Ends a delivered job and posts its hold, together.
    ///
    /// # Errors
    ///
    /// [`Fault::LeaseLost`] when this worker no longer holds the job (nothing changes).
    pub async fn succeed(&self, lease: &Lease) -> Result<Job> {
        self.finish(lease, JobState::Succeeded, None, None).await
    }

    /// As [`Store::succeed`], recording which provider made the result and its cost there.
    ///
    /// # Errors
    ///
    /// As [`Store::succeed`].
    pub async fn succeed_made(&self, lease: &Lease, made: &Made) -> Result<Job> {
        self.finish(lease, JobState::Succeeded, None, Some(made.clone()))
            .await
    }

    /// Ends a job that cannot be done and voids its hold, together.
    ///
    /// # Errors
    ///
    /// As [`Store::succeed`].
    pub async fn fail(&self, lease: &Lease, reason: &str) -> Result<Job> {
        self.finish(lease, JobState::Failed, Some(reason.to_string()), None)
            .await
    }

    /// Gives a job back to the queue after a transient failure, to be claimed again after
    /// `delay`; once its attempts are used up it fails (and its hold is voided) instead.
    ///
    /// # Errors
    ///
    /// As [`Store::succeed`].
    pub async fn retry_later(
        &self,
        lease: &Lease,
        reason: &str,
        delay: Duration,
        limits: &JobLimits,
    ) -> Result<Job> {
        if lease.job.attempts >= limits.max_attempts {
            return self.fail(lease, reason).await;
        }
        self.release_lease(lease, delay, Some(reason.to_string()))
            .await
    }

    /// Hands a job back untouched (graceful shutdown): another worker may claim it at once.
    ///
    /// # Errors
    ///
    /// As [`Store::succeed`].
    pub async fn release(&self, lease: &Lease) -> Result<Job> {
        self.release_lease(lease, Duration::ZERO, None).await
    }

    /// Cancels a person's job: a queued one ends now (hold voided); a running one is marked, and
    /// its worker cancels it at the provider and fails it.
    ///
    /// # Errors
    ///
    /// [`UserError::UnknownJob`] when the person has no such job; [`UserError::JobAlreadyEnded`].
    pub async fn cancel(&self, user: UserId, job: JobId) -> Result<Job> {
        self.retrying(|| {
            self.write(Atomic::Transaction, move |conn| {
                Box::pin(cancel_job(conn, user, job))
            })
        })
        .await
    }

    /// How many jobs wait to run, and the age of the oldest in seconds (for metrics).
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails.
    pub async fn queue_stats(&self) -> Result<(i64, i64)> {
        let (depth, oldest): (i64, Option<i64>) =
            sqlx::query_as("SELECT COUNT(*), MIN(created_at) FROM jobs WHERE state = 'queued'")
                .fetch_one(&mut *self.reader().await?)
                .await?;
        let age = oldest.map_or(0, |at| ((now_millis() - at) / 1000).max(0));
        Ok((depth, age))
    }

    /// How many of a person's jobs are queued or running.
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails.
    pub async fn open_jobs(&self, user: UserId) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM jobs WHERE user_id = $1 AND state IN ('queued', 'running')",
        )
        .bind(user.get())
        .fetch_one(&mut *self.reader().await?)
        .await?)
    }

    /// A job by id.
    ///
    /// # Errors
    ///
    /// [`UserError::UnknownJob`].
    pub async fn job(&self, id: JobId) -> Result<Job> {
        job_where(&mut *self.reader().await?, "id = $1", id.get())
            .await?
            .ok_or(Error::User(UserError::UnknownJob(id)))
    }

    /// The person's newest queued or running job.
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails.
    pub async fn newest_open_job(&self, user: UserId) -> Result<Option<JobId>> {
        let id: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM jobs WHERE user_id = $1 AND state IN ('queued', 'running') \
             ORDER BY id DESC LIMIT 1",
        )
        .bind(user.get())
        .fetch_optional(&mut *self.reader().await?)
        .await?;
        Ok(id.map(JobId::from_db))
    }

    /// The person's latest jobs, newest first, each with the cost held for it.
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails.
    pub async fn recent_jobs(&self, user: UserId, limit: u32) -> Result<Vec<(Job, Credits)>> {
        let columns = JOB_COLUMNS
            .split(", ")
            .map(|column| format!("j.{column}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT {columns}, t.amount AS held FROM jobs j JOIN transfers t ON t.id = j.hold_id \
             WHERE j.user_id = $1 ORDER BY j.id DESC LIMIT {limit}"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(user.get())
            .fetch_all(&mut *self.reader().await?)
            .await?;
        rows.iter()
            .map(|row| {
                let job = job_from_row(<JobRow as sqlx::FromRow<_>>::from_row(row)?)?;
                let amount: i64 = sqlx::Row::try_get(row, "held")?;
                Ok((job, Credits::from_db(amount)?))
            })
            .collect()
    }

    /// Remembers where a job's status message is, so that workers can edit it. Returns whether
    /// the job is still open (it may have ended while the message was on its way).
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails.
    pub async fn set_status_message(&self, job: JobId, message: String) -> Result<bool> {
        let args = vec![Arg::from(job.get()), Arg::from(message)];
        self.write_plan(Plan::new(&SET_STATUS, args, |rows| {
            let state: Option<String> = rows
                .first()
                .map(|row| sqlx::Row::try_get(row, 0))
                .transpose()?;
            Ok(matches!(state.as_deref(), Some("queued" | "running")))
        }))
        .await
    }

    /// Where a job's status message is, as recorded by [`Store::set_status_message`].
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails.
    pub async fn status_message(&self, job: JobId) -> Result<Option<String>> {
        let message: Option<Option<String>> =
            sqlx::query_scalar("SELECT status_message FROM jobs WHERE id = $1")
                .bind(job.get())
                .fetch_optional(&mut *self.reader().await?)
                .await?;
        Ok(message.flatten())
    }

    /// How many queued jobs would be claimed before this one (0: next), counted up to
    /// [`POSITION_CAP`]: past that, a person needs to know only that the queue is long, and
    /// the count stays cheap however long it is.
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails.
    pub async fn queue_position(&self, id: JobId) -> Result<u64> {
        position(&mut *self.reader().await?, id).await
    }

    async fn finish(
        &self,
        lease: &Lease,
        to: JobState,
        failure: Option<String>,
        made: Option<Made>,
    ) -> Result<Job> {
        let id = lease.job.id;
        self.retrying(|| {
            self.write_plan(finish_plan(
                id,
                Some(&lease.worker),
                to,
                failure.as_deref(),
                made.as_ref(),
            ))
        })
        .await
    }

    async fn release_lease(
        &self,
        lease: &Lease,
        delay: Duration,
        failure: Option<String>,
    ) -> Result<Job> {
        let id = lease.job.id;
        let run_after = now_millis() + i64::try_from(delay.as_millis()).unwrap_or(0);
        let args = vec![
            Arg::from(id.get()),
            Arg::from(lease.worker.as_str()),
            Arg::from(run_after),
            Arg::from(failure),
        ];
        self.write_plan(Plan::new(&RELEASE, args, move |rows| {
            job_in(&rows)?.ok_or_else(|| Error::from(Fault::LeaseLost(id)))
        }))
        .await
    }
}

/// The order `claim` uses: queued jobs with an earlier turn, or the same turn and older.
static AHEAD: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT COUNT(*) FROM (SELECT 1 FROM jobs q \
           WHERE q.state = 'queued' \
             AND (q.turn, q.id) < ((SELECT turn FROM jobs WHERE id = $1 AND state = 'queued'), $1) \
           LIMIT {POSITION_CAP}) ahead"
    )
});

async fn position(conn: &mut AnyConnection, id: JobId) -> Result<u64> {
    let ahead: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(AHEAD.as_str()))
        .bind(id.get())
        .fetch_one(conn)
        .await?;
    Ok(u64::try_from(ahead).unwrap_or(0))
}

/// A job's end as a plan: to state `to`, by `worker` (`None`: whoever holds it, as a
/// cancellation does), with its failure and who made its result. The database's `job_ended`
/// trigger posts or voids the hold in the same statement.
fn finish_plan(
    id: JobId,
    worker: Option<&str>,
    to: JobState,
    failure: Option<&str>,
    made: Option<&Made>,
) -> Plan<Job> {
    let args = vec![
        Arg::from(id.get()),
        Arg::from(to.as_str()),
        Arg::from(now_millis()),
        Arg::from(failure),
        Arg::from(worker),
        Arg::from(made.map(|made| made.provider.as_str())),
        Arg::from(made.and_then(|made| made.cost).map(Usd::to_db)),
    ];
    Plan::new(&FINISH, args, move |rows| {
        job_in(&rows)?.ok_or_else(|| Error::from(Fault::LeaseLost(id)))
    })
}

/// Cancels every open job of `user` (a ban): queued ones end now with their holds voided,
/// running ones are marked for their workers. Returns how many.
pub(crate) async fn cancel_open_jobs(conn: &mut AnyConnection, user: UserId) -> Result<u64> {
    let open: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM jobs WHERE user_id = $1 AND state IN ('queued', 'running') ORDER BY id",
    )
    .bind(user.get())
    .fetch_all(&mut *conn)
    .await?;
    for id in &open {
        cancel_job(&mut *conn, user, JobId::from_db(*id)).await?;
    }
    Ok(open.len() as u64)
}

async fn cancel_job(conn: &mut AnyConnection, user: UserId, id: JobId) -> Result<Job> {
    let job = job_where(&mut *conn, "id = $1", id.get())
        .await?
        .filter(|job| job.user == user)
        .ok_or(Error::User(UserError::UnknownJob(id)))?;
    match job.state {
        JobState::Queued => {
            finish_plan(id, None, JobState::Cancelled, Some("cancelled"), None)
                .run_alone(conn)
                .await
        }
        JobState::Running => {
            sqlx::query("UPDATE jobs SET cancel_requested = 1 WHERE id = $1")
                .bind(id.get())
                .execute(&mut *conn)
                .await?;
            Ok(Job {
                cancel_requested: true,
                ..job
            })
        }
        state => Err(Error::User(UserError::JobAlreadyEnded { id, state })),
    }
}
