//! `/start`: welcome, the balance, and acceptance of the terms (a deep-link payload is ignored).

use super::{Args, CommandLimits, ParseError, Spec};
use super::Visibility;

/// A parsed `/start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Start;

impl Start {
    pub const NAME: &str = "start";
    pub const VISIBILITY: Visibility = Visibility::Requester;

    pub fn spec(_limits: &CommandLimits) -> Spec {
        Spec::new(Self::NAME, "Start, and see your credits", "/start")
            .lenient()
    }

    pub fn parse(_args: &Args, _limits: &CommandLimits) -> Result<Start, ParseError> {
        Ok(Start)
    }
}
