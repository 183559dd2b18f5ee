//! `/privacy [on | off]`: show or set the anonymised reuse of outputs (terms §5.4).

use super::{Args, Choice, CommandLimits, OptionKind, ParseError, Spec, TextForm};
use super::Visibility;

/// A parsed `/privacy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Privacy {
    /// `Some(true)` allows reuse, `Some(false)` opts out, `None` shows the setting.
    pub reuse: Option<bool>,
}

impl Privacy {
    pub const NAME: &str = "privacy";
    pub const VISIBILITY: Visibility = Visibility::Requester;

    pub fn spec(_limits: &CommandLimits) -> Spec {
        Spec::new(
            Self::NAME,
            "Show or set the anonymised reuse of your outputs",
            "/privacy [on | off]  (anonymised reuse of your outputs)",
        )
        .option(
            "reuse",
            "Allow anonymised reuse",
            false,
            OptionKind::Choices(["on", "off"].map(Choice::text).to_vec()),
            TextForm::Rest,
        )
    }

    pub fn parse(args: &Args, _limits: &CommandLimits) -> Result<Privacy, ParseError> {
        let reuse = match args.text("reuse").map(str::to_ascii_lowercase).as_deref() {
            None => None,
            Some("on") => Some(true),
            Some("off") => Some(false),
            Some(_) => {
                return Err(ParseError::invalid(
                    "Say on to allow anonymised reuse of your outputs, or off to opt out.",
                ));
            }
        };
        Ok(Privacy { reuse })
    }
}
