//! One wallet across platforms (terms §3.4): a person shows a one-time code on one platform and
//! types it on the other; both identities then belong to one person with one wallet. Joining two
//! people moves the balance with a ledger transfer (never by editing balances) and keeps both
//! histories; it is refused while either wallet is frozen or has credits on hold.

use crate::{Credits, UserId};

/// How long a code works.
pub const CODE_LIFETIME_MS: i64 = 10 * 60 * 1000;

/// Wrong codes one person may type within [`ATTEMPTS_WINDOW_MS`]; past that, `/link CODE` is
/// refused without looking at the code.
pub const MAX_WRONG_ATTEMPTS: i64 = 5;
pub const ATTEMPTS_WINDOW_MS: i64 = 60 * 60 * 1000;

/// Letters and digits that cannot be mistaken for each other.
pub(crate) const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";

/// A code someone can type on the other platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkCode {
    pub code: String,
    /// Unix milliseconds.
    pub expires_at: i64,
}

/// What joining did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Linked {
    /// The person both identities now belong to.
    pub user: UserId,
    /// Credits moved from the joining wallet.
    pub moved: Credits,
}

#[cfg(test)]
mod tests;
