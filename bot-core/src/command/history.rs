//! `/history`: the person's recent generations.

use super::{Args, CommandLimits, ParseError, Spec};
use super::Visibility;

/// A parsed `/history`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct History;

impl History {
    pub const NAME: &str = "history";
    pub const VISIBILITY: Visibility = Visibility::Requester;

    pub fn spec(_limits: &CommandLimits) -> Spec {
        Spec::new(Self::NAME, "Your recent generations", "/history")
    }

    pub fn parse(_args: &Args, _limits: &CommandLimits) -> Result<History, ParseError> {
        Ok(History)
    }
}
