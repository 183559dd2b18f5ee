//! `/video <prompt> [--seconds 5|10]`
//!
//! A short video from a prompt, optionally starting from an attached photo. The allowed lengths
//! come from configuration; the shortest is the default.

use super::{
    CommandLimits, ParseError,
    options::{Piece, pieces, prompt, unknown_option, value},
};

pub(crate) const USAGE: &str = "/video <prompt> [--seconds 5|10]  (optionally with a photo)";

/// A parsed `/video`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Video {
    pub prompt: String,
    pub seconds: u32,
}

pub(crate) fn parse(arguments: &str, limits: &CommandLimits) -> Result<Video, ParseError> {
    let pieces = pieces(arguments);
    let mut words = Vec::new();
    let mut seconds = None;
    let mut at = 0;
    while let Some(piece) = pieces.get(at) {
        at += 1;
        match piece {
            Piece::Word(word) => words.push(*word),
            Piece::Option(name) if name == "seconds" => {
                let text = value(&pieces, &mut at, name, USAGE)?;
                let asked = text.trim_end_matches('s').parse::<u32>().ok();
                seconds = Some(
                    asked
                        .filter(|s| limits.video_seconds.contains(s))
                        .ok_or_else(|| {
                            let allowed: Vec<String> =
                                limits.video_seconds.iter().map(u32::to_string).collect();
                            ParseError::invalid(
                                format!("A video can be {} seconds long.", allowed.join(" or ")),
                                USAGE,
                            )
                        })?,
                );
            }
            Piece::Option(name) => return Err(unknown_option(name, USAGE)),
        }
    }
    let shortest = limits.video_seconds.iter().copied().min().unwrap_or(5);
    Ok(Video {
        prompt: prompt(&words, limits, USAGE)?,
        seconds: seconds.unwrap_or(shortest),
    })
}
