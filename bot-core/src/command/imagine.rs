//! `/imagine <prompt> [--hd | --4k] [--ar W:H] [--seed N] [--no TEXT]`
//!
//! A text-to-image generation. `--hd` and `--4k` pick the quality tier (standard otherwise),
//! `--ar` an allowed aspect ratio (1:1 otherwise), `--seed` a number to repeat a result, and
//! `--no` the words (up to the next option) the image should not show.

use std::fmt;

use super::{
    CommandLimits, ParseError,
    options::{Piece, pieces, prompt, unknown_option, value, value_words},
};

pub(crate) const USAGE: &str = "/imagine <prompt> [--hd | --4k] [--ar W:H] [--seed N] [--no TEXT]";

/// The quality tiers, each with its own price and resolution.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub enum Quality {
    #[default]
    Standard,
    Hd,
    FourK,
}

impl Quality {
    /// The name people see and the option that asks for it.
    pub fn label(self) -> &'static str {
        match self {
            Quality::Standard => "standard",
            Quality::Hd => "HD",
            Quality::FourK => "4K",
        }
    }
}

/// A width-to-height ratio such as 16:9, reduced by neither side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AspectRatio {
    width: u32,
    height: u32,
}

impl AspectRatio {
    /// Square.
    pub const SQUARE: AspectRatio = AspectRatio {
        width: 1,
        height: 1,
    };

    /// Parses `W:H` with both sides from 1 to 100.
    pub fn parse(text: &str) -> Option<AspectRatio> {
        let (width, height) = text.split_once(':')?;
        let width: u32 = width.trim().parse().ok()?;
        let height: u32 = height.trim().parse().ok()?;
        ((1..=100).contains(&width) && (1..=100).contains(&height))
            .then_some(AspectRatio { width, height })
    }

    pub fn width(self) -> u32 {
        self.width
    }

    pub fn height(self) -> u32 {
        self.height
    }
}

impl fmt::Display for AspectRatio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.width, self.height)
    }
}

/// A parsed `/imagine`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imagine {
    pub prompt: String,
    pub quality: Quality,
    pub aspect: AspectRatio,
    pub seed: Option<u32>,
    pub negative: Option<String>,
}

pub(crate) fn parse(arguments: &str, limits: &CommandLimits) -> Result<Imagine, ParseError> {
    let pieces = pieces(arguments);
    let mut words = Vec::new();
    let mut quality = None;
    let mut aspect = None;
    let mut seed = None;
    let mut negative = None;
    let mut at = 0;
    while let Some(piece) = pieces.get(at) {
        at += 1;
        let name = match piece {
            Piece::Word(word) => {
                words.push(*word);
                continue;
            }
            Piece::Option(name) => name.as_str(),
        };
        match name {
            "hd" | "4k" => {
                let asked = if name == "hd" {
                    Quality::Hd
                } else {
                    Quality::FourK
                };
                if quality.is_some_and(|q| q != asked) {
                    return Err(ParseError::invalid(
                        "Choose either --hd or --4k, not both.",
                        USAGE,
                    ));
                }
                quality = Some(asked);
            }
            "ar" => {
                let text = value(&pieces, &mut at, name, USAGE)?;
                let ratio = AspectRatio::parse(text)
                    .filter(|ratio| limits.aspect_ratios.iter().any(|a| *a == ratio.to_string()))
                    .ok_or_else(|| {
                        ParseError::invalid(
                            format!(
                                "--ar {text} is not available; choose one of {}.",
                                limits.aspect_ratios.join(", ")
                            ),
                            USAGE,
                        )
                    })?;
                aspect = Some(ratio);
            }
            "seed" => {
                let text = value(&pieces, &mut at, name, USAGE)?;
                seed = Some(text.parse().map_err(|_| {
                    ParseError::invalid(
                        format!(
                            "--seed takes a whole number from 0 to {}, not {text:?}.",
                            u32::MAX
                        ),
                        USAGE,
                    )
                })?);
            }
            "no" => {
                let text = value_words(&pieces, &mut at, name, USAGE)?.join(" ");
                if text.chars().count() > limits.prompt_max_chars {
                    return Err(ParseError::invalid("The --no text is too long.", USAGE));
                }
                negative = Some(text);
            }
            other => return Err(unknown_option(other, USAGE)),
        }
    }
    Ok(Imagine {
        prompt: prompt(&words, limits, USAGE)?,
        quality: quality.unwrap_or_default(),
        aspect: aspect.unwrap_or(AspectRatio::SQUARE),
        seed,
        negative,
    })
}
