//! `/video <prompt> [--seconds 5|10]`
//!
//! A short video from a prompt, optionally starting from an attached photo. The allowed lengths
//! come from configuration; the shortest is the default.

use super::{CommandLimits, ParseError, options::prompt_and_seconds};

pub(crate) const USAGE: &str = "/video <prompt> [--seconds 5|10]  (optionally with a photo)";

/// A parsed `/video`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Video {
    pub prompt: String,
    pub seconds: u32,
}

pub(crate) fn parse(arguments: &str, limits: &CommandLimits) -> Result<Video, ParseError> {
    let (prompt, seconds) = prompt_and_seconds(
        arguments,
        limits,
        USAGE,
        |s| limits.video_seconds.contains(&s),
        || {
            let allowed: Vec<String> = limits.video_seconds.iter().map(u32::to_string).collect();
            format!("A video can be {} seconds long.", allowed.join(" or "))
        },
    )?;
    let shortest = limits.video_seconds.iter().copied().min().unwrap_or(5);
    Ok(Video {
        prompt,
        seconds: seconds.unwrap_or(shortest),
    })
}
