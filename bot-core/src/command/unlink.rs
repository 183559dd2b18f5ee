//! `/unlink <platform:id>`: detach a linked identity into an account of its own.

use super::{Args, CommandLimits, ParseError, Spec, one_word};
use super::Visibility;

/// A parsed `/unlink`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unlink {
    /// As `/link` lists it, lowercased.
    pub identity: String,
}

impl Unlink {
    pub const NAME: &str = "unlink";
    pub const VISIBILITY: Visibility = Visibility::Requester;

    pub fn spec(_limits: &CommandLimits) -> Spec {
        Spec::new(
            Self::NAME,
            "Detach a linked account",
            "/unlink <platform:id>  (as /link lists them)",
        )
        .text("identity", "As /link lists it, e.g. telegram:123", true)
    }

    pub fn parse(args: &Args, _limits: &CommandLimits) -> Result<Unlink, ParseError> {
        let identity = one_word(args, "identity")?
            .ok_or_else(|| ParseError::invalid("Name the identity to unlink."))?;
        Ok(Unlink {
            identity: identity.to_ascii_lowercase(),
        })
    }
}
