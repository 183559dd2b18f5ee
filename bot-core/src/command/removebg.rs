//! `/removebg (send it with a photo, or reply to one)`: remove a photo's background.

use super::{Args, CommandLimits, ParseError, Spec};
use super::Visibility;

/// A parsed `/removebg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoveBackground;

impl RemoveBackground {
    pub const NAME: &str = "removebg";
    pub const VISIBILITY: Visibility = Visibility::Chat;

    pub fn spec(_limits: &CommandLimits) -> Spec {
        Spec::new(Self::NAME, "Remove a photo's background", "/removebg (send it with a photo, or reply to one)")
            .lenient()
            .photo("image", "The photo", true)
    }

    pub fn parse(_args: &Args, _limits: &CommandLimits) -> Result<RemoveBackground, ParseError> {
        Ok(RemoveBackground)
    }
}
