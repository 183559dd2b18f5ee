//! The crate's one error type. Variants a person should read are kept apart from internal faults,
//! so that adapters can show the first and apologise for the second.

use crate::{AccountId, Credits, JobId, TransferId, jobs::JobState, ledger::TransferState};

/// Result alias for bot-core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the domain.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The wallet cannot cover the amount; nothing was changed.
    #[error("this needs {needed} but the balance is {available}")]
    InsufficientCredits { needed: Credits, available: Credits },

    /// A transfer must move at least one credit.
    #[error("a transfer must move a positive amount of credits")]
    ZeroAmount,

    /// A transfer cannot debit and credit the same account.
    #[error("a transfer needs two different accounts")]
    SameAccount,

    /// The person already has their cap of queued jobs; nothing was held.
    #[error("you already have {limit} jobs waiting; wait for one to finish or /cancel one")]
    TooManyQueued { limit: u32 },

    /// A payment dispute froze the wallet: no spending, buying or refunds until it is settled.
    #[error("your wallet is frozen because of a payment dispute; contact support to settle it")]
    Frozen,

    /// Two identities cannot be linked; the reason is for the person.
    #[error("those accounts cannot be linked: {0}")]
    LinkRefused(String),

    /// A refund cannot be made; the reason is for the person.
    #[error("this cannot be refunded: {0}")]
    NotRefundable(String),

    /// No such job (for this person).
    #[error("there is no job #{0}")]
    UnknownJob(JobId),

    /// The job already ended.
    #[error("job #{id} has already {}", match state { JobState::Succeeded => "finished", JobState::Failed => "failed", _ => "been cancelled" })]
    JobAlreadyEnded { id: JobId, state: JobState },

    /// The worker no longer holds the job's lease (it expired and another worker took it, or
    /// the job ended); the worker must drop its work.
    #[error("the lease on job {0} was lost")]
    LeaseLost(JobId),

    /// The idempotency key was used before for a different transfer.
    #[error("idempotency key {key:?} was already used for a different transfer")]
    IdempotencyConflict { key: String },

    /// A pending transfer was already posted or voided; it ends exactly once.
    #[error("transfer {id} is already {state}")]
    TransferAlreadyResolved {
        id: TransferId,
        state: TransferState,
    },

    /// Only pending transfers can be posted or voided.
    #[error("transfer {0} does not exist")]
    UnknownTransfer(TransferId),

    /// An account named in a transfer does not exist.
    #[error("account {0} does not exist")]
    UnknownAccount(AccountId),

    /// The identity was claimed by someone else while this person was being created; nothing
    /// was written.
    #[error("this identity already belongs to someone")]
    IdentityTaken,

    /// A platform identity could not be parsed.
    #[error("{0}")]
    InvalidIdentity(String),

    /// The database URL names no supported backend or cannot be parsed.
    #[error("DATABASE_URL: {0}")]
    InvalidDatabaseUrl(String),

    /// A fault of ours or of the database; shown to people only as a short apology.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl Error {
    /// True for faults a person cannot act on; adapters log these with their chain.
    pub fn is_internal(&self) -> bool {
        matches!(self, Error::Internal(_))
    }
}

impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Self {
        Error::Internal(anyhow::Error::new(error))
    }
}

impl From<sqlx::migrate::MigrateError> for Error {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        Error::Internal(anyhow::Error::new(error).context("running database migrations"))
    }
}
