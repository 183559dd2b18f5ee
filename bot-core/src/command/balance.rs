//! `/balance`: the person's credits and what is on hold.

use super::{Args, CommandLimits, ParseError, Spec};
use super::Visibility;

/// A parsed `/balance`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Balance;

impl Balance {
    pub const NAME: &str = "balance";
    pub const VISIBILITY: Visibility = Visibility::Requester;

    pub fn spec(_limits: &CommandLimits) -> Spec {
        Spec::new(Self::NAME, "Your credits", "/balance")
    }

    pub fn parse(_args: &Args, _limits: &CommandLimits) -> Result<Balance, ParseError> {
        Ok(Balance)
    }
}
