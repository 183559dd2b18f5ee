//! `/help`: every command and what it costs.

use super::{Args, CommandLimits, ParseError, Spec};
use super::Visibility;

/// A parsed `/help`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Help;

impl Help {
    pub const NAME: &str = "help";
    pub const VISIBILITY: Visibility = Visibility::Chat;

    pub fn spec(_limits: &CommandLimits) -> Spec {
        Spec::new(Self::NAME, "What the bot can do and what it costs", "/help")
            .lenient()
    }

    pub fn parse(_args: &Args, _limits: &CommandLimits) -> Result<Help, ParseError> {
        Ok(Help)
    }
}
