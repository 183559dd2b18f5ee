//! `/imagine <prompt> [--hd | --4k] [--ar W:H] [--seed N] [--no TEXT]`
//!
//! A text-to-image generation. `--hd` and `--4k` pick the quality tier (standard otherwise),
//! `--ar` an allowed aspect ratio (1:1 otherwise), `--seed` a number to repeat a result, and
//! `--no` the words (up to the next option) the image should not show.

use std::fmt;

use super::{
    ArgValue, Args, Choice, CommandLimits, OptionKind, ParseError, Spec, TextForm, prompt,
};
use super::Visibility;

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

impl Imagine {
    pub const NAME: &str = "imagine";
    /// The job's status is public; refusals and quotes make themselves private.
    pub const VISIBILITY: Visibility = Visibility::Chat;

    pub fn spec(limits: &CommandLimits) -> Spec {
        Spec::new(
            Self::NAME,
            "Generate an image from a prompt",
            "/imagine <prompt> [--hd | --4k] [--ar W:H] [--seed N] [--no TEXT]",
        )
        .text("prompt", "What to draw", true)
        .option(
            "quality",
            "Standard, HD or 4K (prices differ)",
            false,
            OptionKind::Choices(["standard", "hd", "4k"].map(Choice::text).to_vec()),
            TextForm::Flags(&["hd", "4k"]),
        )
        .option(
            "aspect",
            "Aspect ratio",
            false,
            OptionKind::Choices(limits.aspect_ratios.iter().map(|a| Choice::text(a)).collect()),
            TextForm::Value("ar"),
        )
        .option(
            "seed",
            "Seed for a repeatable result",
            false,
            OptionKind::Integer {
                min: Some(0),
                max: Some(i64::from(u32::MAX)),
            },
            TextForm::Value("seed"),
        )
        .option(
            "negative",
            "What to leave out",
            false,
            OptionKind::Text,
            TextForm::Words("no"),
        )
    }

    pub fn parse(args: &Args, limits: &CommandLimits) -> Result<Imagine, ParseError> {
        let quality = match args.text("quality").map(str::to_ascii_lowercase).as_deref() {
            None | Some("standard") => Quality::Standard,
            Some("hd") => Quality::Hd,
            Some("4k") => Quality::FourK,
            Some(other) => {
                return Err(ParseError::invalid(format!(
                    "There is no {other:?} quality; choose standard, hd or 4k."
                )));
            }
        };
        let aspect = match args.text("aspect") {
            None => AspectRatio::SQUARE,
            Some(text) => AspectRatio::parse(text)
                .filter(|ratio| limits.aspect_ratios.iter().any(|a| *a == ratio.to_string()))
                .ok_or_else(|| {
                    ParseError::invalid(format!(
                        "--ar {text} is not available; choose one of {}.",
                        limits.aspect_ratios.join(", ")
                    ))
                })?,
        };
        let seed = match args.get("seed") {
            None => None,
            Some(value) => {
                let number = match value {
                    ArgValue::Integer(n) => u32::try_from(*n).ok(),
                    ArgValue::Text(text) => text.trim().parse().ok(),
                };
                Some(number.ok_or_else(|| {
                    ParseError::invalid(format!(
                        "--seed takes a whole number from 0 to {}, not {:?}.",
                        u32::MAX,
                        args.word("seed").unwrap_or_default()
                    ))
                })?)
            }
        };
        let negative = args.text("negative").map(str::to_string);
        if negative
            .as_ref()
            .is_some_and(|n| n.chars().count() > limits.prompt_max_chars)
        {
            return Err(ParseError::invalid("The --no text is too long."));
        }
        Ok(Imagine {
            prompt: prompt(args.text("prompt"), limits)?,
            quality,
            aspect,
            seed,
            negative,
        })
    }
}
