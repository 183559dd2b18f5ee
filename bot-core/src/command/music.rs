//! `/music <prompt> [--seconds N]`
//!
//! A piece of music from a prompt; the length defaults to the configured one (30 s) and may go
//! up to the configured maximum.

use super::{Args, CommandLimits, OptionKind, ParseError, Spec, TextForm, prompt, video::seconds};
use super::Visibility;

/// A parsed `/music`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Music {
    pub prompt: String,
    pub seconds: u32,
}

impl Music {
    pub const NAME: &str = "music";
    pub const VISIBILITY: Visibility = Visibility::Chat;

    pub fn spec(limits: &CommandLimits) -> Spec {
        Spec::new(Self::NAME, "Generate music", "/music <prompt> [--seconds N]")
            .text("prompt", "The music to make", true)
            .option(
                "seconds",
                "Length in seconds",
                false,
                OptionKind::Integer {
                    min: Some(1),
                    max: Some(i64::from(limits.music_max_seconds)),
                },
                TextForm::Value("seconds"),
            )
    }

    pub fn parse(args: &Args, limits: &CommandLimits) -> Result<Music, ParseError> {
        let prompt = prompt(args.text("prompt"), limits)?;
        let seconds = match seconds(args) {
            None => limits.music_default_seconds,
            Some(asked) => asked
                .filter(|s| (1..=limits.music_max_seconds).contains(s))
                .ok_or_else(|| {
                    ParseError::invalid(format!(
                        "Music can be 1 to {} seconds long.",
                        limits.music_max_seconds
                    ))
                })?,
        };
        Ok(Music { prompt, seconds })
    }
}
