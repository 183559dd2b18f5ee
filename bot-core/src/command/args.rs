//! A command's arguments as named values, from either source: a message's text, tokenised here
//! (phones turn `--` into an em dash, so `—hd` reads as `--hd`; a lone `--` ends the options, so
//! a prompt may hold words that look like them), or a platform's typed options, taken as they
//! are: a typed prompt is one value and can never carry options.

use super::{ParseError, Spec, TextForm};

/// One value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgValue {
    Text(String),
    Integer(i64),
}

/// Named values, in the order they were given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Args {
    values: Vec<(String, ArgValue)>,
}

/// One piece of a message's arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece<'a> {
    Word(&'a str),
    /// An option name without its dashes, lowercased.
    Option(String),
}

fn pieces(arguments: &str) -> Vec<Piece<'_>> {
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

impl Args {
    /// Typed options as a platform sent them.
    pub fn from_options<N: Into<String>>(options: impl IntoIterator<Item = (N, ArgValue)>) -> Args {
        Args {
            values: options
                .into_iter()
                .map(|(name, value)| (name.into(), value))
                .collect(),
        }
    }

    /// The words after a command, read with the command's text forms.
    ///
    /// # Errors
    ///
    /// An unknown option, an option without its value, two flags of one choice, or words for a
    /// command that takes none.
    pub fn from_text(arguments: &str, spec: &Spec) -> Result<Args, ParseError> {
        let pieces = pieces(arguments);
        let mut args = Args::default();
        let mut rest: Vec<&str> = Vec::new();
        let mut at = 0;
        while let Some(piece) = pieces.get(at) {
            at += 1;
            let flag = match piece {
                Piece::Word(word) => {
                    rest.push(word);
                    continue;
                }
                Piece::Option(flag) => flag.as_str(),
            };
            let found = spec.options.iter().find_map(|option| match option.text {
                TextForm::Value(name) | TextForm::Words(name) if name == flag => {
                    Some((option, option.text))
                }
                TextForm::Flags(flags) if flags.contains(&flag) => Some((option, option.text)),
                _ => None,
            });
            let Some((option, form)) = found else {
                return Err(ParseError::invalid(format!("Unknown option --{flag}.")));
            };
            let value = match form {
                TextForm::Flags(flags) => {
                    if let Some(ArgValue::Text(earlier)) = args.get(option.name)
                        && earlier != flag
                    {
                        let names: Vec<String> = flags.iter().map(|f| format!("--{f}")).collect();
                        return Err(ParseError::invalid(match &names[..] {
                            [a, b] => format!("Choose either {a} or {b}, not both."),
                            _ => format!("Choose only one of {}.", names.join(", ")),
                        }));
                    }
                    flag.to_string()
                }
                TextForm::Value(_) => match pieces.get(at) {
                    Some(Piece::Word(word)) => {
                        at += 1;
                        (*word).to_string()
                    }
                    _ => return Err(ParseError::invalid(format!("--{flag} needs a value."))),
                },
                _ => {
                    let mut words = Vec::new();
                    while let Some(Piece::Word(word)) = pieces.get(at) {
                        words.push(*word);
                        at += 1;
                    }
                    if words.is_empty() {
                        return Err(ParseError::invalid(format!("--{flag} needs a value.")));
                    }
                    words.join(" ")
                }
            };
            args.set(option.name, ArgValue::Text(value));
        }
        if !rest.is_empty() {
            match spec.options.iter().find(|o| o.text == TextForm::Rest) {
                Some(option) => args.set(option.name, ArgValue::Text(rest.join(" "))),
                None if spec.lenient => {}
                None => {
                    return Err(ParseError::invalid(format!(
                        "/{} takes no arguments.",
                        spec.name
                    )));
                }
            }
        }
        Ok(args)
    }

    /// The last value given for `name` wins, as a repeated `--ar` does.
    fn set(&mut self, name: &str, value: ArgValue) {
        self.values.retain(|(n, _)| n != name);
        self.values.push((name.to_string(), value));
    }

    /// The value of `name`, if given.
    pub fn get(&self, name: &str) -> Option<&ArgValue> {
        self.values.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// The text of `name`, trimmed; `None` when absent, blank or a number.
    pub fn text(&self, name: &str) -> Option<&str> {
        match self.get(name)? {
            ArgValue::Text(text) => Some(text.trim()).filter(|t| !t.is_empty()),
            ArgValue::Integer(_) => None,
        }
    }

    /// The value of `name` as text, numbers written out.
    pub fn word(&self, name: &str) -> Option<String> {
        match self.get(name)? {
            ArgValue::Text(_) => self.text(name).map(str::to_string),
            ArgValue::Integer(n) => Some(n.to_string()),
        }
    }

    /// Whether nothing was given.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{OptionKind, Spec};

    fn spec() -> Spec {
        Spec::new("x", "x", "/x")
            .text("prompt", "p", true)
            .option(
                "quality",
                "q",
                false,
                OptionKind::Text,
                TextForm::Flags(&["hd", "4k"]),
            )
            .option(
                "aspect",
                "a",
                false,
                OptionKind::Text,
                TextForm::Value("ar"),
            )
            .option(
                "negative",
                "n",
                false,
                OptionKind::Text,
                TextForm::Words("no"),
            )
    }

    #[test]
    fn text_is_split_into_the_rest_values_and_flags() {
        let args =
            Args::from_text("a red fox —hd --ar 16:9 --no blur noise", &spec()).expect("reads");
        assert_eq!(args.text("prompt"), Some("a red fox"));
        assert_eq!(args.text("quality"), Some("hd"));
        assert_eq!(args.text("aspect"), Some("16:9"));
        assert_eq!(args.text("negative"), Some("blur noise"));
    }

    #[test]
    fn a_lone_double_dash_ends_the_options() {
        let args = Args::from_text("a fox -- --4k --ar 1:1", &spec()).expect("reads");
        assert_eq!(args.text("prompt"), Some("a fox --4k --ar 1:1"));
        assert_eq!(args.text("quality"), None);
    }

    #[test]
    fn typed_options_are_taken_verbatim() {
        let args = Args::from_options([("prompt", ArgValue::Text("a fox --4k —hd".into()))]);
        assert_eq!(args.text("prompt"), Some("a fox --4k —hd"));
        assert_eq!(args.get("quality"), None);
    }

    #[test]
    fn unknown_options_missing_values_and_clashing_flags_are_refused() {
        let refused = |text: &str| Args::from_text(text, &spec()).expect_err(text).to_string();
        assert!(refused("a fox --zoom").contains("Unknown option --zoom"));
        assert!(refused("a fox --ar").contains("--ar needs a value"));
        assert!(refused("a fox --no").contains("--no needs a value"));
        assert!(refused("a fox --hd --4k").contains("either --hd or --4k"));
        let none = Spec::new("balance", "b", "/balance");
        assert!(
            Args::from_text("please", &none)
                .expect_err("no words")
                .to_string()
                .contains("/balance takes no arguments")
        );
        assert!(Args::from_text("please", &none.lenient()).is_ok());
    }
}
