//! `/music <prompt> [--seconds N]`
//!
//! A piece of music from a prompt; the length defaults to the configured one (30 s) and may go
//! up to the configured maximum.

use super::{CommandLimits, ParseError, options::prompt_and_seconds};

pub(crate) const USAGE: &str = "/music <prompt> [--seconds N]";

/// A parsed `/music`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Music {
    pub prompt: String,
    pub seconds: u32,
}

pub(crate) fn parse(arguments: &str, limits: &CommandLimits) -> Result<Music, ParseError> {
    let (prompt, seconds) = prompt_and_seconds(
        arguments,
        limits,
        USAGE,
        |s| (1..=limits.music_max_seconds).contains(&s),
        || {
            format!(
                "Music can be 1 to {} seconds long.",
                limits.music_max_seconds
            )
        },
    )?;
    Ok(Music {
        prompt,
        seconds: seconds.unwrap_or(limits.music_default_seconds),
    })
}
