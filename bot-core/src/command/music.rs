//! `/music <prompt> [--seconds N]`
//!
//! A piece of music from a prompt; the length defaults to the configured one (30 s) and may go
//! up to the configured maximum.

use super::{
    CommandLimits, ParseError,
    options::{Piece, pieces, prompt, unknown_option, value},
};

pub(crate) const USAGE: &str = "/music <prompt> [--seconds N]";

/// A parsed `/music`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Music {
    pub prompt: String,
    pub seconds: u32,
}

pub(crate) fn parse(arguments: &str, limits: &CommandLimits) -> Result<Music, ParseError> {
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
                        .filter(|s| (1..=limits.music_max_seconds).contains(s))
                        .ok_or_else(|| {
                            ParseError::invalid(
                                format!(
                                    "Music can be 1 to {} seconds long.",
                                    limits.music_max_seconds
                                ),
                                USAGE,
                            )
                        })?,
                );
            }
            Piece::Option(name) => return Err(unknown_option(name, USAGE)),
        }
    }
    Ok(Music {
        prompt: prompt(&words, limits, USAGE)?,
        seconds: seconds.unwrap_or(limits.music_default_seconds),
    })
}
