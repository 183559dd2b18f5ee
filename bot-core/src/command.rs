//! One grammar for every platform. A command is one file under `command/` that describes itself
//! ([`Spec`]: its options, usage and default [`Visibility`]) and reads its [`Args`], which come
//! either from a message's text (`/imagine a fox --hd`) or from a platform's typed options
//! (Discord's slash options, where a prompt is one value and never carries options). The
//! `commands!` list below is the one place a new command is added. Pure functions, no I/O.

mod args;
mod spec;

use std::fmt;

use serde::Deserialize;

pub use args::{ArgValue, Args};
pub use spec::{Choice, OptionKind, OptionSpec, Spec, TextForm, Visibility};

/// The commands, in the order `/help` and the platforms' menus show them. Each line names the
/// variant of [`Command`] and the file's type, which provides `NAME`, `VISIBILITY`,
/// `spec(&CommandLimits)` and `parse(&Args, &CommandLimits)`.
macro_rules! commands {
    ($($variant:ident => $module:ident::$kind:ident),+ $(,)?) => {
        $(mod $module;)+
        $(pub use $module::$kind;)+

        /// What a person asked for.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Command {
            $($variant($kind),)+
        }

        impl Command {
            /// The command's name, as typed after the `/`.
            pub fn name(&self) -> &'static str {
                match self {
                    $(Command::$variant(_) => $kind::NAME,)+
                }
            }

            /// Who sees its answers unless an answer makes itself more private.
            pub fn visibility(&self) -> Visibility {
                match self {
                    $(Command::$variant(_) => $kind::VISIBILITY,)+
                }
            }
        }

        /// Every command's description, for `/help` and the platforms' command menus; choices
        /// (aspect ratios, lengths, styles) come from `limits`.
        pub fn specs(limits: &CommandLimits) -> Vec<Spec> {
            vec![$(with_visibility($kind::spec(limits), $kind::VISIBILITY),)+]
        }

        /// The default visibility of the command called `name`, known before it is parsed
        /// (Discord must acknowledge within three seconds, publicly or not).
        pub fn visibility(name: &str) -> Option<Visibility> {
            match name {
                $($kind::NAME => Some($kind::VISIBILITY),)+
                _ => None,
            }
        }

        fn read(name: &str, args: &Args, limits: &CommandLimits) -> Option<Result<Command, ParseError>> {
            match name {
                $($kind::NAME => Some($kind::parse(args, limits).map(Command::$variant)),)+
                _ => None,
            }
        }
    };
}

/// A command's spec with its default visibility, which the command states once as `VISIBILITY`.
fn with_visibility(mut spec: Spec, visibility: Visibility) -> Spec {
    spec.visibility = visibility;
    spec
}

commands! {
    Start => start::Start,
    Help => help::Help,
    Imagine => imagine::Imagine,
    Enhance => enhance::Enhance,
    RemoveBackground => removebg::RemoveBackground,
    FaceSwap => faceswap::FaceSwap,
    Portrait => portrait::Portrait,
    Video => video::Video,
    Music => music::Music,
    Balance => balance::Balance,
    Buy => buy::Buy,
    History => history::History,
    Refund => refund::Refund,
    Terms => terms::Terms,
    Privacy => privacy::Privacy,
    Link => link::Link,
    Unlink => unlink::Unlink,
    Cancel => cancel::Cancel,
    Forget => forget::Forget,
    Admin => admin::Admin,
}

pub use imagine::{AspectRatio, Quality};

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
    Invalid { reason: String, usage: String },
}

impl ParseError {
    /// Wrong arguments; the command's usage line is added where the command is read.
    pub(crate) fn invalid(reason: impl Into<String>) -> ParseError {
        ParseError::Invalid {
            reason: reason.into(),
            usage: String::new(),
        }
    }

    fn with_usage(self, spec: &Spec) -> ParseError {
        match self {
            ParseError::Invalid { reason, usage } if usage.is_empty() => ParseError::Invalid {
                reason,
                usage: spec.usage.clone(),
            },
            other => other,
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

/// Whom a platform's command menu is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// Anyone, in a private chat or wherever no narrower menu applies.
    Everyone,
    /// A group chat: the commands whose answers everyone there sees.
    Group,
    /// An operator (`ADMIN_IDS`): every command, the operators' own included.
    Operator,
}

/// The grammar for one configuration: every command's [`Spec`] built once from its limits, so
/// that a message is read against specs already made. (Building them formats usage lines and
/// copies the configured choices: work a service should not repeat for every message.)
#[derive(Debug, Clone)]
pub struct Grammar {
    limits: CommandLimits,
    specs: Vec<Spec>,
}

impl Grammar {
    /// The grammar with the choices and limits of `limits`.
    pub fn new(limits: CommandLimits) -> Grammar {
        let specs = specs(&limits);
        Grammar { limits, specs }
    }

    /// The limits it enforces.
    pub fn limits(&self) -> &CommandLimits {
        &self.limits
    }

    /// Every command's description, in menu order (see [`specs`]).
    pub fn specs(&self) -> &[Spec] {
        &self.specs
    }

    fn spec(&self, name: &str) -> Option<&Spec> {
        self.specs.iter().find(|spec| spec.name == name)
    }

    /// The commands a menu for `audience` offers, in menu order.
    pub fn menu(&self, audience: Audience) -> impl Iterator<Item = &Spec> {
        self.specs.iter().filter(move |spec| match audience {
            Audience::Operator => true,
            Audience::Everyone => !spec.operators_only,
            // The others work in a group too, answered in private, but a group's menu is for
            // what the group does together.
            Audience::Group => !spec.operators_only && spec.visibility == Visibility::Chat,
        })
    }

    /// Parses one message. `Ok(None)` when the text is not a command at all (no leading `/`).
    ///
    /// # Errors
    ///
    /// [`ParseError::Unknown`] for a command we do not know, [`ParseError::Invalid`] with the
    /// usage line for wrong arguments.
    pub fn parse(&self, text: &str) -> Result<Option<Parsed>, ParseError> {
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
        let spec = self
            .spec(&name)
            .ok_or_else(|| ParseError::Unknown { name: name.clone() })?;
        let args = Args::from_text(arguments, spec).map_err(|e| e.with_usage(spec))?;
        let command = self.build(&name, &args)?;
        Ok(Some(Parsed {
            command,
            addressed_to,
        }))
    }

    /// Builds the command called `name` from arguments already split into named values (a
    /// platform's typed options, or [`Args::from_text`]).
    ///
    /// # Errors
    ///
    /// [`ParseError::Unknown`] for a name we do not know, [`ParseError::Invalid`] with the
    /// usage line for wrong values.
    pub fn build(&self, name: &str, args: &Args) -> Result<Command, ParseError> {
        match read(name, args, &self.limits) {
            Some(result) => result.map_err(|error| match self.spec(name) {
                Some(spec) => error.with_usage(spec),
                None => error,
            }),
            None => Err(ParseError::Unknown { name: name.into() }),
        }
    }
}

/// Parses one message with a grammar made for it (see [`Grammar::parse`]); a service keeps
/// one [`Grammar`] instead.
///
/// # Errors
///
/// As [`Grammar::parse`].
pub fn parse(text: &str, limits: &CommandLimits) -> Result<Option<Parsed>, ParseError> {
    Grammar::new(limits.clone()).parse(text)
}

/// Builds one command with a grammar made for it (see [`Grammar::build`]).
///
/// # Errors
///
/// As [`Grammar::build`].
pub fn build(name: &str, args: &Args, limits: &CommandLimits) -> Result<Command, ParseError> {
    Grammar::new(limits.clone()).build(name, args)
}

/// Checks a prompt's length in characters.
/// Characters a prompt loses: control characters other than line breaks and tabs, and the
/// bidirectional embeddings, overrides and isolates that can make a caption read other than it
/// is (U+202A–U+202E, U+2066–U+2069). Marks that right-to-left text needs (U+200E, U+200F) and
/// the joiners of emoji sequences stay.
fn hidden(c: char) -> bool {
    (c.is_control() && !matches!(c, '\n' | '\t'))
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

/// Characters that show nothing by themselves: a prompt of only these is empty.
fn invisible(c: char) -> bool {
    c.is_whitespace() || matches!(c, '\u{200b}'..='\u{200f}' | '\u{2060}' | '\u{feff}')
}

pub(crate) fn prompt(text: Option<&str>, limits: &CommandLimits) -> Result<String, ParseError> {
    let cleaned: String = text
        .unwrap_or_default()
        .chars()
        .filter(|c| !hidden(*c))
        .collect();
    let prompt = cleaned.trim();
    let length = prompt.chars().count();
    if length < limits.prompt_min_chars.max(1) || prompt.chars().all(invisible) {
        return Err(ParseError::invalid(
            "Describe what you want after the command.",
        ));
    }
    if length > limits.prompt_max_chars {
        return Err(ParseError::invalid(format!(
            "The prompt is {length} characters long; the limit is {}.",
            limits.prompt_max_chars
        )));
    }
    Ok(prompt.to_string())
}

/// One word of at most 64 bytes, or nothing.
pub(crate) fn one_word<'a>(args: &'a Args, name: &str) -> Result<Option<&'a str>, ParseError> {
    match args.text(name) {
        None => Ok(None),
        Some(text) => match text.split_whitespace().collect::<Vec<_>>()[..] {
            [word] if word.len() <= 64 => Ok(Some(word)),
            _ => Err(ParseError::invalid("Give one word at most.")),
        },
    }
}

/// A whole number (`12`, `#12`), or nothing.
pub(crate) fn number(args: &Args, name: &str) -> Result<Option<u64>, ParseError> {
    if let Some(ArgValue::Integer(n)) = args.get(name) {
        return u64::try_from(*n)
            .map(Some)
            .map_err(|_| ParseError::invalid(format!("{n} is not a number I can use.")));
    }
    match one_word(args, name)? {
        None => Ok(None),
        Some(word) => word
            .trim_start_matches('#')
            .parse()
            .map(Some)
            .map_err(|_| ParseError::invalid(format!("{word:?} is not a number."))),
    }
}

#[cfg(test)]
mod tests;
