//! `/terms`: the terms of service and the version in force.

use super::{Args, CommandLimits, ParseError, Spec};
use super::Visibility;

/// A parsed `/terms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Terms;

impl Terms {
    pub const NAME: &str = "terms";
    pub const VISIBILITY: Visibility = Visibility::Chat;

    pub fn spec(_limits: &CommandLimits) -> Spec {
        Spec::new(Self::NAME, "The terms of service", "/terms")
    }

    pub fn parse(_args: &Args, _limits: &CommandLimits) -> Result<Terms, ParseError> {
        Ok(Terms)
    }
}
