//! `/refund [purchase]`: what refunding a purchase's unused credits gives back (terms §4.4).

use super::{Args, CommandLimits, OptionKind, ParseError, Spec, TextForm, number};
use super::Visibility;

/// A parsed `/refund`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refund {
    pub purchase: Option<u64>,
}

impl Refund {
    pub const NAME: &str = "refund";
    pub const VISIBILITY: Visibility = Visibility::Requester;

    pub fn spec(_limits: &CommandLimits) -> Spec {
        Spec::new(Self::NAME, "Refund unused credits", "/refund [purchase]").option(
            "purchase",
            "The purchase number",
            false,
            OptionKind::Integer {
                min: Some(1),
                max: None,
            },
            TextForm::Rest,
        )
    }

    pub fn parse(args: &Args, _limits: &CommandLimits) -> Result<Refund, ParseError> {
        Ok(Refund {
            purchase: number(args, "purchase")?,
        })
    }
}
