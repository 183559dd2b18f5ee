//! One grammar for every platform: the text of a message (or a platform's typed options turned
//! into text) becomes a [`Command`], or a [`ParseError`] a person can act on: what was wrong and
//! the usage line. Pure functions, no I/O.

mod imagine;
mod music;
mod options;
mod portrait;
mod video;

use std::fmt;

use serde::Deserialize;

pub use imagine::{AspectRatio, Imagine, Quality};
pub use music::Music;
pub use portrait::Portrait;
pub use video::Video;

/// What a person asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `/start`: welcome, record acceptance of the terms.
    Start,
    /// `/help`: every command and what it costs.
    Help,
    /// `/balance`.
    Balance,
    /// `/history`: recent generations and payments.
    History,
    /// `/terms`: the terms of service and the version in force.
    Terms,
    /// `/buy [pack]`.
    Buy { pack: Option<String> },
    /// `/refund [purchase]`.
    Refund { purchase: Option<u64> },
    /// `/privacy [on|off]`: show or set the anonymised reuse of outputs (terms 5.4).
    Privacy { reuse: Option<bool> },
    /// `/link [code]`: show a one-time code, or use one from the other platform.
    Link { code: Option<String> },
    /// `/unlink <identity>`: detach a linked identity (`telegram:123`) into its own account.
    Unlink { identity: String },
    /// `/cancel [job]`: the newest queued job, or the one named.
    Cancel { job: Option<u64> },
    /// `/forget`: delete my prompts and requests (after a confirmation).
    Forget,
    /// `/imagine <prompt> [--hd | --4k] [--ar W:H] [--seed N] [--no TEXT]`.
    Imagine(Imagine),
    /// `/enhance` on a photo: upscale and denoise.
    Enhance,
    /// `/removebg` on a photo.
    RemoveBackground,
    /// `/faceswap` with a face photo and a target photo.
    FaceSwap,
    /// `/portrait <style>` on a photo.
    Portrait(Portrait),
    /// `/video <prompt> [--seconds 5|10]`, optionally from a photo.
    Video(Video),
    /// `/music <prompt> [--seconds N]`.
    Music(Music),
}

/// A command and the bot it was addressed to (`/balance@SomeBot`), which adapters compare with
/// their own name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub command: Command,
    pub addressed_to: Option<String>,
}

/// Limits the grammar enforces; the `[commands]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CommandLimits {
    /// Shortest prompt, in characters.
    pub prompt_min_chars: usize,
    /// Longest prompt, in characters (Unicode scalar values).
    pub prompt_max_chars: usize,
    /// Aspect ratios `/imagine --ar` accepts, as `W:H`.
    pub aspect_ratios: Vec<String>,
    /// Lengths `/video --seconds` accepts.
    pub video_seconds: Vec<u32>,
    /// `/music` length when `--seconds` is not given.
    pub music_default_seconds: u32,
    /// Longest `/music`.
    pub music_max_seconds: u32,
    /// Styles `/portrait` accepts.
    pub portrait_styles: Vec<String>,
}

impl Default for CommandLimits {
    fn default() -> Self {
        CommandLimits {
            prompt_min_chars: 1,
            prompt_max_chars: 2_000,
            aspect_ratios: ["1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "21:9"]
                .map(String::from)
                .to_vec(),
            video_seconds: vec![5, 10],
            music_default_seconds: 30,
            music_max_seconds: 120,
            portrait_styles: [
                "anime",
                "oil-painting",
                "watercolor",
                "cyberpunk",
                "sketch",
                "comic",
                "renaissance",
                "pixel-art",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

/// Why a message is not a command we can run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// `/something` we do not know.
    Unknown { name: String },
    /// A known command with wrong arguments.
    Invalid { reason: String, usage: &'static str },
}

impl ParseError {
    pub(crate) fn invalid(reason: impl Into<String>, usage: &'static str) -> ParseError {
        ParseError::Invalid {
            reason: reason.into(),
            usage,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Unknown { name } => {
                write!(
                    f,
                    "Unknown command /{name}. Send /help to see what I can do."
                )
            }
            ParseError::Invalid { reason, usage } => write!(f, "{reason}\nUsage: {usage}"),
        }
    }
}

impl std::error::Error for ParseError {}

/// Every command with its usage line, for `/help` and platform command menus.
pub const USAGE: &[(&str, &str)] = &[
    ("start", "/start"),
    ("help", "/help"),
    ("imagine", imagine::USAGE),
    (
        "enhance",
        "/enhance (send it with a photo, or reply to one)",
    ),
    (
        "removebg",
        "/removebg (send it with a photo, or reply to one)",
    ),
    (
        "faceswap",
        "/faceswap (with two photos: the face, then the target)",
    ),
    ("portrait", portrait::USAGE),
    ("video", video::USAGE),
    ("music", music::USAGE),
    ("balance", "/balance"),
    ("buy", "/buy [pack]"),
    ("history", "/history"),
    ("refund", "/refund [purchase]"),
    ("terms", "/terms"),
    ("privacy", PRIVACY_USAGE),
    ("link", "/link [code]"),
    ("unlink", UNLINK_USAGE),
    ("cancel", CANCEL_USAGE),
    ("forget", "/forget  (delete your prompts and requests)"),
];

const PRIVACY_USAGE: &str = "/privacy [on | off]  (anonymised reuse of your outputs)";
const CANCEL_USAGE: &str = "/cancel [job number]";
const UNLINK_USAGE: &str = "/unlink <platform:id>  (as /link lists them)";

/// Parses one message. `Ok(None)` when the text is not a command at all (no leading `/`).
///
/// # Errors
///
/// [`ParseError::Unknown`] for a command we do not know, [`ParseError::Invalid`] with the usage
/// line for wrong arguments.
pub fn parse(text: &str, limits: &CommandLimits) -> Result<Option<Parsed>, ParseError> {
    let text = text.trim_start();
    let Some(rest) = text.strip_prefix('/') else {
        return Ok(None);
    };
    let (head, arguments) = match rest.find(char::is_whitespace) {
        Some(at) => (&rest[..at], rest[at..].trim()),
        None => (rest, ""),
    };
    let (name, addressed_to) = match head.split_once('@') {
        Some((name, bot)) => (name, Some(bot.to_string())),
        None => (head, None),
    };
    if name.is_empty() {
        return Ok(None);
    }
    let name = name.to_ascii_lowercase();
    let no_arguments = |command: Command, usage: &'static str| {
        if arguments.is_empty() {
            Ok(command)
        } else {
            Err(ParseError::invalid(
                format!("/{name} takes no arguments."),
                usage,
            ))
        }
    };
    let command = match name.as_str() {
        "start" => Command::Start,
        "help" => Command::Help,
        "balance" => no_arguments(Command::Balance, "/balance")?,
        "history" => no_arguments(Command::History, "/history")?,
        "terms" => no_arguments(Command::Terms, "/terms")?,
        "forget" => no_arguments(Command::Forget, "/forget")?,
        "enhance" => Command::Enhance,
        "removebg" => Command::RemoveBackground,
        "faceswap" => Command::FaceSwap,
        "imagine" => Command::Imagine(imagine::parse(arguments, limits)?),
        "portrait" => Command::Portrait(portrait::parse(arguments, limits)?),
        "video" => Command::Video(video::parse(arguments, limits)?),
        "music" => Command::Music(music::parse(arguments, limits)?),
        "buy" => Command::Buy {
            pack: single_word(arguments, "/buy [pack]")?.map(str::to_ascii_lowercase),
        },
        "refund" => Command::Refund {
            purchase: number(arguments, "/refund [purchase]")?,
        },
        "cancel" => Command::Cancel {
            job: number(arguments, CANCEL_USAGE)?,
        },
        "link" => Command::Link {
            code: single_word(arguments, "/link [code]")?.map(str::to_ascii_uppercase),
        },
        "unlink" => Command::Unlink {
            identity: single_word(arguments, UNLINK_USAGE)?
                .ok_or_else(|| ParseError::invalid("Name the identity to unlink.", UNLINK_USAGE))?
                .to_ascii_lowercase(),
        },
        "privacy" => Command::Privacy {
            reuse: match arguments.to_ascii_lowercase().as_str() {
                "" => None,
                "on" => Some(true),
                "off" => Some(false),
                _ => {
                    return Err(ParseError::invalid(
                        "Say on to allow anonymised reuse of your outputs, or off to opt out.",
                        PRIVACY_USAGE,
                    ));
                }
            },
        },
        _ => return Err(ParseError::Unknown { name }),
    };
    Ok(Some(Parsed {
        command,
        addressed_to,
    }))
}

fn single_word<'a>(arguments: &'a str, usage: &'static str) -> Result<Option<&'a str>, ParseError> {
    match arguments.split_whitespace().collect::<Vec<_>>()[..] {
        [] => Ok(None),
        [word] if word.len() <= 64 => Ok(Some(word)),
        _ => Err(ParseError::invalid("Give one word at most.", usage)),
    }
}

fn number(arguments: &str, usage: &'static str) -> Result<Option<u64>, ParseError> {
    match single_word(arguments, usage)? {
        None => Ok(None),
        Some(word) => word
            .trim_start_matches('#')
            .parse()
            .map(Some)
            .map_err(|_| ParseError::invalid(format!("{word:?} is not a number."), usage)),
    }
}

#[cfg(test)]
mod tests;
