//! `/enhance (send it with a photo, or reply to one)`: upscale and denoise a photo.

use super::{Args, CommandLimits, ParseError, Spec};
use super::Visibility;

/// A parsed `/enhance`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enhance;

impl Enhance {
    pub const NAME: &str = "enhance";
    pub const VISIBILITY: Visibility = Visibility::Chat;

    pub fn spec(_limits: &CommandLimits) -> Spec {
        Spec::new(Self::NAME, "Upscale and denoise a photo", "/enhance (send it with a photo, or reply to one)")
            .lenient()
            .photo("image", "The photo", true)
    }

    pub fn parse(_args: &Args, _limits: &CommandLimits) -> Result<Enhance, ParseError> {
        Ok(Enhance)
    }
}
