//! The durable job queue. A job is enqueued in the same transaction as the hold on its cost;
//! workers claim jobs with a lease they renew while working; a job ends exactly once, and its
//! hold with it: succeeded posts the hold, failed and cancelled void it. Claiming is fair: each
//! person's oldest queued job comes before anyone's second, and nobody runs more than their cap.

use crate::{AccountId, Credits, Error, JobId, Result, TransferId, UserId};

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    /// The name stored in the database.
    pub const fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    pub(crate) fn from_db(value: &str) -> Result<JobState> {
        [
            JobState::Queued,
            JobState::Running,
            JobState::Succeeded,
            JobState::Failed,
            JobState::Cancelled,
        ]
        .into_iter()
        .find(|state| state.as_str() == value)
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("unknown job state {value:?}")))
    }

    /// True once the job has ended.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}

/// Per-person limits on jobs; the `[jobs]` section.
#[derive(Debug, Clone, Copy, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobLimits {
    pub max_running_per_person: u32,
    pub max_queued_per_person: u32,
    /// Attempts before a job that keeps failing transiently fails for good.
    pub max_attempts: u32,
}

impl Default for JobLimits {
    fn default() -> Self {
        JobLimits {
            max_running_per_person: 3,
            max_queued_per_person: 10,
            max_attempts: 3,
        }
    }
}

/// Queue positions are counted up to this many jobs ahead: further back, a person learns only
/// that the queue is long ("more than 100 jobs ahead"). The count is a walk along the queue's
/// index, on the one writer's path at every enqueue; at 1,000 it was 40% of an enqueue's time
/// on SQLite (~100 µs of ~260 µs) whenever the queue was that long, that is under load.
pub const POSITION_CAP: u64 = 100;

/// A job to enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    /// Unique per request (an update id, an interaction id): the same key enqueues once.
    pub key: String,
    pub user: UserId,
    pub wallet: AccountId,
    /// What to run, e.g. `image`; the worker's dispatch key.
    pub operation: String,
    pub cost: Credits,
    /// The request's parameters as JSON; never media bytes.
    pub payload: String,
}

/// A job as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: JobId,
    pub user: UserId,
    pub hold: TransferId,
    pub operation: String,
    pub payload: String,
    pub state: JobState,
    pub attempts: u32,
    pub cancel_requested: bool,
    pub provider: Option<String>,
    pub provider_job_id: Option<String>,
    pub failure: Option<String>,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// Who made a job's result and what it cost there, recorded as the job succeeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Made {
    pub provider: String,
    /// At the provider's configured price; `None` when none is configured.
    pub cost: Option<crate::Usd>,
}

/// A job just queued, and how many queued jobs will be claimed before it (counted up to
/// [`POSITION_CAP`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub job: Job,
    pub ahead: u64,
}

/// What `claim` hands a worker: the job, and the name it must use to act on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub job: Job,
    pub worker: String,
}

#[cfg(test)]
mod tests;
