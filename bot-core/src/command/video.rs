//! `/video <prompt> [--seconds 5|10]`
//!
//! A short video from a prompt, optionally starting from an attached photo. The allowed lengths
//! come from configuration; the shortest is the default.

use super::{ArgValue, Args, Choice, CommandLimits, OptionKind, ParseError, Spec, TextForm, prompt};
use super::Visibility;

/// A parsed `/video`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Video {
    pub prompt: String,
    pub seconds: u32,
}

impl Video {
    pub const NAME: &str = "video";
    pub const VISIBILITY: Visibility = Visibility::Chat;

    pub fn spec(limits: &CommandLimits) -> Spec {
        let lengths: Vec<String> = limits.video_seconds.iter().map(u32::to_string).collect();
        Spec::new(
            Self::NAME,
            "Generate a short video",
            format!(
                "/video <prompt> [--seconds {}]  (optionally with a photo)",
                lengths.join("|")
            ),
        )
        .text("prompt", "What happens", true)
        .photo("image", "A photo to start from", false)
        .option(
            "seconds",
            "Length",
            false,
            OptionKind::Choices(
                limits
                    .video_seconds
                    .iter()
                    .map(|s| Choice {
                        label: format!("{s} seconds"),
                        value: ArgValue::Integer(i64::from(*s)),
                    })
                    .collect(),
            ),
            TextForm::Value("seconds"),
        )
    }

    pub fn parse(args: &Args, limits: &CommandLimits) -> Result<Video, ParseError> {
        let prompt = prompt(args.text("prompt"), limits)?;
        let seconds = match seconds(args) {
            None => limits.video_seconds.iter().copied().min().unwrap_or(5),
            Some(asked) => asked
                .filter(|s| limits.video_seconds.contains(s))
                .ok_or_else(|| {
                    let allowed: Vec<String> =
                        limits.video_seconds.iter().map(u32::to_string).collect();
                    ParseError::invalid(format!(
                        "A video can be {} seconds long.",
                        allowed.join(" or ")
                    ))
                })?,
        };
        Ok(Video { prompt, seconds })
    }
}

/// `--seconds` as asked (`10`, `10s`, or a typed number): `Some(None)` when it is not a length.
pub(crate) fn seconds(args: &Args) -> Option<Option<u32>> {
    Some(match args.get("seconds")? {
        ArgValue::Integer(n) => u32::try_from(*n).ok(),
        ArgValue::Text(text) => text.trim().trim_end_matches('s').parse().ok(),
    })
}
