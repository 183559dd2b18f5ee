//! Newtypes for database ids and for the platform identities people arrive with.

use crate::UserError;
use std::{fmt, str::FromStr};

use crate::Error;

macro_rules! db_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(i64);

        impl $name {
            /// The raw database value.
            pub const fn get(self) -> i64 {
                self.0
            }

            pub(crate) const fn from_db(value: i64) -> Self {
                Self(value)
            }

            /// An id an adapter read from the outside (a payment's metadata); whether it names
            /// anything is for the store to say.
            pub const fn from_raw(value: i64) -> Self {
                Self(value)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

db_id!(
    /// A person; one wallet each, however many platform identities they link.
    UserId
);
db_id!(
    /// A ledger account: a person's wallet or a system account.
    AccountId
);
db_id!(
    /// One ledger transfer.
    TransferId
);
db_id!(
    /// A generation job.
    JobId
);
db_id!(
    /// A lot: the credits that one incoming transfer put into a wallet.
    LotId
);
db_id!(
    /// One order of a credit pack, paid or not.
    PurchaseId
);
db_id!(
    /// A refund of a purchase's unused credits.
    RefundId
);

/// The chat platforms (and the local console) people reach us through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    Telegram,
    Discord,
    Console,
}

impl Platform {
    /// The name used in identities and in the database.
    pub const fn as_str(self) -> &'static str {
        match self {
            Platform::Telegram => "telegram",
            Platform::Discord => "discord",
            Platform::Console => "console",
        }
    }
}

impl FromStr for Platform {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "telegram" => Ok(Platform::Telegram),
            "discord" => Ok(Platform::Discord),
            "console" => Ok(Platform::Console),
            other => Err(Error::User(UserError::InvalidIdentity(format!(
                "unknown platform {other:?} (expected telegram, discord or console)"
            )))),
        }
    }
}

/// How a person is known on one platform: `telegram:<user id>`, `discord:<user id>` or
/// `console:<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    platform: Platform,
    external_id: String,
}

impl Identity {
    /// The longest external id we accept (Discord snowflakes and Telegram ids are far shorter).
    pub const MAX_EXTERNAL_ID_LEN: usize = 64;

    /// Builds an identity, checking the external id.
    ///
    /// # Errors
    ///
    /// [`UserError::InvalidIdentity`] when the id is empty, too long, contains characters other than
    /// letters, digits, `_`, `-` and `.`, or is not numeric on Telegram and Discord.
    pub fn new(platform: Platform, external_id: impl Into<String>) -> crate::Result<Identity> {
        let external_id = external_id.into();
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
        if external_id.is_empty() || external_id.len() > Self::MAX_EXTERNAL_ID_LEN {
            return Err(Error::User(UserError::InvalidIdentity(format!(
                "a {} id must be 1 to {} characters long",
                platform.as_str(),
                Self::MAX_EXTERNAL_ID_LEN
            ))));
        }
        if !external_id.chars().all(allowed) {
            return Err(Error::User(UserError::InvalidIdentity(format!(
                "{:?} may only contain letters, digits, '_', '-' and '.'",
                external_id
            ))));
        }
        let numeric = external_id.chars().all(|c| c.is_ascii_digit());
        if matches!(platform, Platform::Telegram | Platform::Discord) && !numeric {
            return Err(Error::User(UserError::InvalidIdentity(format!(
                "a {} id is a number, not {:?}",
                platform.as_str(),
                external_id
            ))));
        }
        Ok(Identity {
            platform,
            external_id,
        })
    }

    /// The platform part.
    pub fn platform(&self) -> Platform {
        self.platform
    }

    /// The id on that platform.
    pub fn external_id(&self) -> &str {
        &self.external_id
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.platform.as_str(), self.external_id)
    }
}

impl FromStr for Identity {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (platform, id) = s.split_once(':').ok_or_else(|| {
            Error::User(UserError::InvalidIdentity(format!(
                "{s:?} is not an identity like telegram:123, discord:456 or console:alice"
            )))
        })?;
        Identity::new(platform.parse()?, id)
    }
}

/// Whether a secret someone gave (a webhook's token, a link's signature) is the one we hold:
/// same length and bytes, compared in time that does not depend on where they differ.
pub fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_round_trip_through_their_text_form() {
        for text in ["telegram:123", "discord:80351110224678912", "console:alice"] {
            let identity: Identity = text.parse().expect("valid identity");
            assert_eq!(identity.to_string(), text);
        }
    }

    #[test]
    fn malformed_identities_are_refused_with_a_reason() {
        for text in [
            "telegram",
            "telegram:",
            "telegram:abc",
            "slack:1",
            "console:al ice",
            "discord:-1",
        ] {
            let error = text.parse::<Identity>().expect_err(text);
            assert!(
                matches!(error, Error::User(UserError::InvalidIdentity(_))),
                "{text}: {error}"
            );
        }
        let long = format!("console:{}", "a".repeat(65));
        assert!(long.parse::<Identity>().is_err());
    }
}
