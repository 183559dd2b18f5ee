//! `/faceswap (with two photos: the face, then the target)`: put the face of the first photo onto the second.

use super::{Args, CommandLimits, ParseError, Spec};
use super::Visibility;

/// A parsed `/faceswap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaceSwap;

impl FaceSwap {
    pub const NAME: &str = "faceswap";
    pub const VISIBILITY: Visibility = Visibility::Chat;

    pub fn spec(_limits: &CommandLimits) -> Spec {
        Spec::new(Self::NAME, "Put a face onto another photo", "/faceswap (with two photos: the face, then the target)")
            .lenient()
            .photo("face", "The photo with the face", true)
            .photo("target", "The photo to put it on", true)
    }

    pub fn parse(_args: &Args, _limits: &CommandLimits) -> Result<FaceSwap, ParseError> {
        Ok(FaceSwap)
    }
}
