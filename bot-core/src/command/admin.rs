//! `/admin <words>`: operator actions, for the identities in `ADMIN_IDS` only; anyone else is
//! told the command does not exist. The words are read by [`crate::admin::AdminCommand`], the
//! same grammar as `imagegpt admin …`.

use super::{Args, CommandLimits, ParseError, Spec};
use super::Visibility;

/// A parsed `/admin`: its words, read once the sender is known to be an operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    pub words: String,
}

impl Admin {
    pub const NAME: &str = "admin";
    pub const VISIBILITY: Visibility = Visibility::Requester;

    pub fn spec(_limits: &CommandLimits) -> Spec {
        Spec::new(Self::NAME, "Operator commands", crate::admin::USAGE)
            .operators_only()
            .text("command", "e.g. lookup telegram:123", true)
    }

    pub fn parse(args: &Args, _limits: &CommandLimits) -> Result<Admin, ParseError> {
        Ok(Admin {
            words: args.text("command").unwrap_or_default().to_string(),
        })
    }
}
