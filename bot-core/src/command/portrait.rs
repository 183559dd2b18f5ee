//! `/portrait <style>`
//!
//! An AI portrait of the attached photo in one of the configured styles.

use super::{CommandLimits, ParseError};

pub(crate) const USAGE: &str =
    "/portrait <style>  (with a photo; /portrait alone lists the styles)";

/// A parsed `/portrait`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Portrait {
    pub style: String,
}

pub(crate) fn parse(arguments: &str, limits: &CommandLimits) -> Result<Portrait, ParseError> {
    let wanted = arguments.trim().to_lowercase().replace([' ', '_'], "-");
    let styles = limits.portrait_styles.join(", ");
    if wanted.is_empty() {
        return Err(ParseError::invalid(
            format!("Choose a style: {styles}."),
            USAGE,
        ));
    }
    limits
        .portrait_styles
        .iter()
        .find(|style| style.eq_ignore_ascii_case(&wanted))
        .map(|style| Portrait {
            style: style.clone(),
        })
        .ok_or_else(|| {
            ParseError::invalid(
                format!(
                    "There is no {:?} style; choose one of {styles}.",
                    arguments.trim()
                ),
                USAGE,
            )
        })
}
