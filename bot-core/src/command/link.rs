//! `/link [code]`: a one-time code to share one wallet across platforms, or the code from the
//! other platform. The code is a credential (whoever sends it joins the wallet, terms §3.4), so
//! every answer is the requester's alone.

use super::{Args, CommandLimits, ParseError, Spec, one_word};
use super::Visibility;

/// A parsed `/link`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The code, uppercased.
    pub code: Option<String>,
}

impl Link {
    pub const NAME: &str = "link";
    pub const VISIBILITY: Visibility = Visibility::Requester;

    pub fn spec(_limits: &CommandLimits) -> Spec {
        Spec::new(
            Self::NAME,
            "Share one wallet with your account on the other platform",
            "/link [code]",
        )
        .text("code", "The code shown on the other platform", false)
    }

    pub fn parse(args: &Args, _limits: &CommandLimits) -> Result<Link, ParseError> {
        Ok(Link {
            code: one_word(args, "code")?.map(str::to_ascii_uppercase),
        })
    }
}
