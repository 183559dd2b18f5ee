//! `/forget  (delete your prompts and requests)`: asks to confirm deleting the person's prompts and requests (terms §6.2).

use super::{Args, CommandLimits, ParseError, Spec};
use super::Visibility;

/// A parsed `/forget`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forget;

impl Forget {
    pub const NAME: &str = "forget";
    pub const VISIBILITY: Visibility = Visibility::Requester;

    pub fn spec(_limits: &CommandLimits) -> Spec {
        Spec::new(Self::NAME, "Delete the prompts and requests of your past generations", "/forget  (delete your prompts and requests)")
    }

    pub fn parse(_args: &Args, _limits: &CommandLimits) -> Result<Forget, ParseError> {
        Ok(Forget)
    }
}
