//! Splitting arguments into prompt words and `--options`, shared by the generation commands.
//! Phones often turn `--` into an em dash, so `—hd` is read as `--hd`; a lone `--` ends the
//! options, so a prompt may contain words that look like them.

use super::ParseError;

/// One piece of the arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece<'a> {
    Word(&'a str),
    /// An option name without its dashes, lowercased.
    Option(String),
}

pub(crate) fn pieces(arguments: &str) -> Vec<Piece<'_>> {
    let mut pieces = Vec::new();
    let mut literal = false;
    for word in arguments.split_whitespace() {
        if literal {
            pieces.push(Piece::Word(word));
            continue;
        }
        if word == "--" {
            literal = true;
            continue;
        }
        let name = word
            .strip_prefix("--")
            .or_else(|| word.strip_prefix('—'))
            .or_else(|| word.strip_prefix('–'));
        match name {
            Some(name) if !name.is_empty() && !name.starts_with('-') => {
                pieces.push(Piece::Option(name.to_lowercase()));
            }
            _ => pieces.push(Piece::Word(word)),
        }
    }
    pieces
}

/// The words after an option, up to the next option.
pub(crate) fn value_words<'a>(
    pieces: &[Piece<'a>],
    at: &mut usize,
    option: &str,
    usage: &'static str,
) -> Result<Vec<&'a str>, ParseError> {
    let mut words = Vec::new();
    while let Some(Piece::Word(word)) = pieces.get(*at) {
        words.push(*word);
        *at += 1;
    }
    if words.is_empty() {
        return Err(ParseError::invalid(
            format!("--{option} needs a value."),
            usage,
        ));
    }
    Ok(words)
}

/// The one word after an option.
pub(crate) fn value<'a>(
    pieces: &[Piece<'a>],
    at: &mut usize,
    option: &str,
    usage: &'static str,
) -> Result<&'a str, ParseError> {
    match pieces.get(*at) {
        Some(Piece::Word(word)) => {
            *at += 1;
            Ok(word)
        }
        _ => Err(ParseError::invalid(
            format!("--{option} needs a value."),
            usage,
        )),
    }
}

/// Checks a prompt's length in characters.
pub(crate) fn prompt(
    words: &[&str],
    limits: &super::CommandLimits,
    usage: &'static str,
) -> Result<String, ParseError> {
    let prompt = words.join(" ");
    let length = prompt.chars().count();
    if length < limits.prompt_min_chars.max(1) {
        return Err(ParseError::invalid(
            "Describe what you want after the command.",
            usage,
        ));
    }
    if length > limits.prompt_max_chars {
        return Err(ParseError::invalid(
            format!(
                "The prompt is {length} characters long; the limit is {}.",
                limits.prompt_max_chars
            ),
            usage,
        ));
    }
    Ok(prompt)
}

pub(crate) fn unknown_option(name: &str, usage: &'static str) -> ParseError {
    ParseError::invalid(format!("Unknown option --{name}."), usage)
}

/// The arguments of a command made of a prompt and an optional `--seconds N`: the prompt and the
/// seconds asked for, if `allowed` accepts them (`refusal` explains otherwise).
pub(crate) fn prompt_and_seconds(
    arguments: &str,
    limits: &super::CommandLimits,
    usage: &'static str,
    allowed: impl Fn(u32) -> bool,
    refusal: impl Fn() -> String,
) -> Result<(String, Option<u32>), ParseError> {
    let pieces = pieces(arguments);
    let mut words = Vec::new();
    let mut seconds = None;
    let mut at = 0;
    while let Some(piece) = pieces.get(at) {
        at += 1;
        match piece {
            Piece::Word(word) => words.push(*word),
            Piece::Option(name) if name == "seconds" => {
                let text = value(&pieces, &mut at, name, usage)?;
                let asked = text.trim_end_matches('s').parse::<u32>().ok();
                seconds = Some(
                    asked
                        .filter(|s| allowed(*s))
                        .ok_or_else(|| ParseError::invalid(refusal(), usage))?,
                );
            }
            Piece::Option(name) => return Err(unknown_option(name, usage)),
        }
    }
    Ok((prompt(&words, limits, usage)?, seconds))
}
