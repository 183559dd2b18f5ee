//! `/buy [pack]`: the packs for sale, or the payment options of the pack named.

use super::{Args, CommandLimits, ParseError, Spec, one_word};
use super::Visibility;

/// A parsed `/buy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buy {
    /// A pack id, lowercased.
    pub pack: Option<String>,
}

impl Buy {
    pub const NAME: &str = "buy";
    /// Checkout links and invoices are the buyer's.
    pub const VISIBILITY: Visibility = Visibility::Requester;

    pub fn spec(_limits: &CommandLimits) -> Spec {
        Spec::new(Self::NAME, "Buy credits", "/buy [pack]").text(
            "pack",
            "A pack, e.g. small",
            false,
        )
    }

    pub fn parse(args: &Args, _limits: &CommandLimits) -> Result<Buy, ParseError> {
        Ok(Buy {
            pack: one_word(args, "pack")?.map(str::to_ascii_lowercase),
        })
    }
}
