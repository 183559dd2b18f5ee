//! The crate's one error type, in two kinds: [`UserError`], what a person did or asked that
//! cannot be done (worded for them by the service), and `Internal`, a fault of ours or of the
//! database, which a person only ever sees as an apology with a reference. Internal faults the
//! code must tell apart (a lost lease, a ledger invariant) are typed as [`Fault`] and carried
//! inside `Internal`.

use crate::{AccountId, Credits, JobId, TransferId, jobs::JobState, ledger::TransferState};

/// Result alias for bot-core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the domain.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Something the person can act on; nothing was changed.
    #[error(transparent)]
    User(#[from] UserError),
    /// A fault of ours or of the database; shown to people only as a short apology.
    #[error(transparent)]
    Internal(anyhow::Error),
}

/// What a person asked that cannot be done, in words they can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    /// The wallet cannot cover the amount; nothing was changed.
    #[error("this needs {needed} but the balance is {available}")]
    InsufficientCredits { needed: Credits, available: Credits },

    /// The person already has their cap of queued jobs; nothing was held.
    #[error("you already have {limit} jobs waiting; wait for one to finish or /cancel one")]
    TooManyQueued { limit: u32 },

    /// A payment dispute froze the wallet: no spending, buying or refunds until it is settled.
    #[error("your wallet is frozen because of a payment dispute; contact support to settle it")]
    Frozen,

    /// An admin banned this person (found by the enqueue itself, whatever was remembered).
    #[error("your access to the bot is suspended; if you think this is a mistake, contact support")]
    Suspended,

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

    /// A platform identity could not be parsed.
    #[error("{0}")]
    InvalidIdentity(String),
}

/// Internal faults the code tells apart; never shown to a person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    /// A transfer must move at least one credit.
    #[error("a transfer must move a positive amount of credits")]
    ZeroAmount,

    /// A transfer cannot debit and credit the same account.
    #[error("a transfer needs two different accounts")]
    SameAccount,

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

    /// The database URL names no supported backend or cannot be parsed.
    #[error("DATABASE_URL: {0}")]
    InvalidDatabaseUrl(String),
}

impl Error {
    /// True for faults a person cannot act on; [`crate::service::Service::answer`] logs these.
    pub fn is_internal(&self) -> bool {
        matches!(self, Error::Internal(_))
    }

    /// The typed fault inside an internal error, if it is one.
    pub fn fault(&self) -> Option<&Fault> {
        match self {
            Error::Internal(error) => error.downcast_ref::<Fault>(),
            Error::User(_) => None,
        }
    }

    /// The person's error, if it is one.
    pub fn user(&self) -> Option<&UserError> {
        match self {
            Error::User(error) => Some(error),
            Error::Internal(_) => None,
        }
    }
}

/// Matching on typed faults: `result.faulted()` turns `Err(error)` into `Err(Some(fault))` for a
/// typed fault and `Err(None)` for any other error.
pub trait Faulted<T> {
    /// The result with its error reduced to its typed fault.
    ///
    /// # Errors
    ///
    /// The fault, if the result was an error.
    fn faulted(self) -> std::result::Result<T, Option<Fault>>;
}

impl<T> Faulted<T> for Result<T> {
    fn faulted(self) -> std::result::Result<T, Option<Fault>> {
        self.map_err(|error| error.fault().cloned())
    }
}

impl From<Fault> for Error {
    fn from(fault: Fault) -> Self {
        Error::Internal(anyhow::Error::new(fault))
    }
}

impl From<anyhow::Error> for Error {
    fn from(error: anyhow::Error) -> Self {
        // A fault already typed keeps its type however it travelled.
        Error::Internal(error)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_is_internal_and_keeps_its_type() {
        let error = Error::from(Fault::IdempotencyConflict { key: "k".into() });
        assert!(error.is_internal());
        assert_eq!(
            error.fault(),
            Some(&Fault::IdempotencyConflict { key: "k".into() })
        );
        assert_eq!(error.user(), None);
        let user = Error::from(UserError::Frozen);
        assert!(!user.is_internal());
        assert_eq!(user.fault(), None);
    }
}
