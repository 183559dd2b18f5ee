//! `/portrait <style>`
//!
//! An AI portrait of the attached photo in one of the configured styles.

use super::{Args, Choice, CommandLimits, OptionKind, ParseError, Spec, TextForm};
use super::Visibility;

/// A parsed `/portrait`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Portrait {
    pub style: String,
}

impl Portrait {
    pub const NAME: &str = "portrait";
    pub const VISIBILITY: Visibility = Visibility::Chat;

    pub fn spec(limits: &CommandLimits) -> Spec {
        Spec::new(
            Self::NAME,
            "An AI portrait from a photo",
            "/portrait <style>  (with a photo; /portrait alone lists the styles)",
        )
        .photo("image", "Your photo", true)
        .option(
            "style",
            "The style",
            true,
            OptionKind::Choices(limits.portrait_styles.iter().map(|s| Choice::text(s)).collect()),
            TextForm::Rest,
        )
    }

    pub fn parse(args: &Args, limits: &CommandLimits) -> Result<Portrait, ParseError> {
        let asked = args.text("style").unwrap_or_default();
        let wanted = asked.to_lowercase().replace([' ', '_'], "-");
        let styles = limits.portrait_styles.join(", ");
        if wanted.is_empty() {
            return Err(ParseError::invalid(format!("Choose a style: {styles}.")));
        }
        limits
            .portrait_styles
            .iter()
            .find(|style| style.eq_ignore_ascii_case(&wanted))
            .map(|style| Portrait {
                style: style.clone(),
            })
            .ok_or_else(|| {
                ParseError::invalid(format!(
                    "There is no {asked:?} style; choose one of {styles}."
                ))
            })
    }
}
