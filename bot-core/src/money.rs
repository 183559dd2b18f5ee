//! Credits, the unit people buy and spend. The only type that counts them.

use std::fmt;

/// A non-negative number of credits.
///
/// Stored as `BIGINT` in both backends; the constructor keeps it within `i64` so that conversion
/// to the database can never fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize)]
#[serde(transparent)]
pub struct Credits(u64);

impl Credits {
    /// No credits.
    pub const ZERO: Credits = Credits(0);
    /// The largest amount the store can hold.
    pub const MAX: Credits = Credits(i64::MAX as u64);

    /// `n` credits, saturating at [`Credits::MAX`].
    pub const fn new(n: u64) -> Credits {
        if n > i64::MAX as u64 {
            Credits::MAX
        } else {
            Credits(n)
        }
    }

    /// The count as a plain number.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// True when there are no credits.
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// `self - other`, or `None` when that would be negative.
    pub fn checked_sub(self, other: Credits) -> Option<Credits> {
        self.0.checked_sub(other.0).map(Credits)
    }

    /// `self + other`, saturating at [`Credits::MAX`].
    pub fn saturating_add(self, other: Credits) -> Credits {
        Credits::new(self.0.saturating_add(other.0))
    }

    /// The smaller of two amounts.
    pub fn min(self, other: Credits) -> Credits {
        Credits(self.0.min(other.0))
    }

    pub(crate) fn to_db(self) -> i64 {
        // The constructor keeps the value within i64.
        self.0 as i64
    }

    /// Reads a non-negative database value; a negative one means the books are broken.
    pub(crate) fn from_db(value: i64) -> crate::Result<Credits> {
        u64::try_from(value).map(Credits).map_err(|_| {
            crate::Error::Internal(anyhow::anyhow!(
                "negative credit amount {value} in the database"
            ))
        })
    }
}

impl fmt::Display for Credits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            1 => write!(f, "1 credit"),
            n => write!(f, "{n} credits"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credits_read_naturally_in_singular_and_plural() {
        assert_eq!(Credits::new(1).to_string(), "1 credit");
        assert_eq!(Credits::new(0).to_string(), "0 credits");
        assert_eq!(Credits::new(150).to_string(), "150 credits");
    }

    #[test]
    fn credits_never_exceed_what_the_database_can_store() {
        assert_eq!(Credits::new(u64::MAX), Credits::MAX);
        assert_eq!(Credits::MAX.to_db(), i64::MAX);
    }

    #[test]
    fn subtracting_more_than_there_is_gives_nothing() {
        assert_eq!(Credits::new(3).checked_sub(Credits::new(4)), None);
        assert_eq!(
            Credits::new(4).checked_sub(Credits::new(3)),
            Some(Credits::new(1))
        );
    }

    #[test]
    fn a_negative_database_value_is_an_internal_error() {
        assert!(Credits::from_db(-1).is_err());
        assert_eq!(Credits::from_db(7).ok(), Some(Credits::new(7)));
    }
}
