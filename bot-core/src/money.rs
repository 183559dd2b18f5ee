//! Credits, the unit people buy and spend, and US dollars as the operator counts provider costs
//! and revenue. The only types that count them.

use std::fmt;

/// A non-negative number of credits.
///
/// Stored as `BIGINT` in both backends; the constructor keeps it within `i64` so that conversion
/// to the database can never fail.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(into = "u64", from = "u64")]
pub struct Credits(u64);

/// Read back (a notice record) through [`Credits::new`], so the bound holds however it was written.
impl From<u64> for Credits {
    fn from(n: u64) -> Credits {
        Credits::new(n)
    }
}

impl From<Credits> for u64 {
    fn from(credits: Credits) -> u64 {
        credits.0
    }
}

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

/// US dollars, in millionths: provider prices go down to fractions of a cent per image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Usd(u64);

impl Usd {
    /// Nothing.
    pub const ZERO: Usd = Usd(0);

    /// `micros` millionths of a dollar, kept within what the store holds.
    pub const fn micros(micros: u64) -> Usd {
        if micros > i64::MAX as u64 {
            Usd(i64::MAX as u64)
        } else {
            Usd(micros)
        }
    }

    /// A dollar figure as configuration writes it (`0.003`); negative or non-finite is `None`.
    pub fn from_dollars(dollars: f64) -> Option<Usd> {
        (dollars.is_finite() && (0.0..9.0e12).contains(&dollars))
            .then(|| Usd::micros((dollars * 1_000_000.0).round() as u64))
    }

    /// Cents (a card price) as dollars.
    pub const fn cents(cents: u64) -> Usd {
        Usd::micros(cents.saturating_mul(10_000))
    }

    /// The amount in millionths.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// `self × n`, saturating.
    pub const fn times(self, n: u64) -> Usd {
        Usd::micros(self.0.saturating_mul(n))
    }

    /// `self + other`, saturating.
    pub const fn plus(self, other: Usd) -> Usd {
        Usd::micros(self.0.saturating_add(other.0))
    }

    pub(crate) fn to_db(self) -> i64 {
        // The constructor keeps the value within i64.
        self.0 as i64
    }

    /// Reads a database value; a negative one is treated as nothing (the column forbids it).
    pub(crate) fn from_db(value: i64) -> Usd {
        Usd::micros(u64::try_from(value).unwrap_or(0))
    }
}

impl fmt::Display for Usd {
    /// Whole cents from a dollar up (`$12.40`); below that, tenths of a cent (`$0.003`,
    /// `$0.0245`), since provider prices live there.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (dollars, micros) = (self.0 / 1_000_000, self.0 % 1_000_000);
        if dollars > 0 {
            let cents = (micros + 5_000) / 10_000;
            let (dollars, cents) = if cents == 100 {
                (dollars + 1, 0)
            } else {
                (dollars, cents)
            };
            return write!(f, "${dollars}.{cents:02}");
        }
        let tenths = (micros + 50) / 100;
        if tenths >= 10_000 {
            return f.write_str("$1.00");
        }
        let tenths = format!("{tenths:04}");
        let trimmed = tenths.trim_end_matches('0');
        let shown = if trimmed.len() < 2 {
            &tenths[..2]
        } else {
            trimmed
        };
        write!(f, "$0.{shown}")
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

    #[test]
    fn dollars_show_cents_above_a_dollar_and_fractions_below() {
        assert_eq!(
            Usd::from_dollars(0.003).map(|u| u.to_string()).as_deref(),
            Some("$0.003")
        );
        assert_eq!(
            Usd::from_dollars(0.04).map(|u| u.to_string()).as_deref(),
            Some("$0.04")
        );
        assert_eq!(
            Usd::from_dollars(0.0245).map(|u| u.to_string()).as_deref(),
            Some("$0.0245")
        );
        assert_eq!(Usd::cents(1_240).to_string(), "$12.40");
        assert_eq!(Usd::micros(1_999_999).to_string(), "$2.00");
        assert_eq!(Usd::ZERO.to_string(), "$0.00");
        assert_eq!(Usd::micros(999_990).to_string(), "$1.00");
        assert_eq!(Usd::micros(500_000).to_string(), "$0.50");
        assert_eq!(Usd::from_dollars(-0.01), None);
        assert_eq!(Usd::from_dollars(f64::NAN), None);
    }

    #[test]
    fn dollars_add_and_multiply_without_overflow() {
        assert_eq!(Usd::micros(3_000).times(5), Usd::micros(15_000));
        assert_eq!(Usd::micros(u64::MAX).plus(Usd::micros(1)).to_db(), i64::MAX);
        assert_eq!(Usd::from_db(-5), Usd::ZERO);
    }
}
