//! A command's description of itself: its name and purpose, its options (typed, with choices
//! taken from configuration) and how each is written in text, its usage line and its default
//! visibility. Discord's registration, Telegram's command menu, `/help` and the text tokenizer
//! all read the same [`Spec`].

use super::ArgValue;

/// One command, as platforms and `/help` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub name: &'static str,
    /// One line, at most 100 characters (Discord's limit).
    pub description: &'static str,
    /// The usage line shown in `/help` and with a parse error.
    pub usage: String,
    pub options: Vec<OptionSpec>,
    pub visibility: Visibility,
    /// Only for the operators in `ADMIN_IDS`: hidden from menus and `/help`.
    pub operators_only: bool,
    /// Words after the command that no option takes are ignored rather than refused
    /// (`/start <deep-link payload>`, `/enhance please`).
    pub lenient: bool,
}

/// One option of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionSpec {
    /// Its name in typed options and in [`super::Args`].
    pub name: &'static str,
    pub description: &'static str,
    pub required: bool,
    pub kind: OptionKind,
    /// How it is written in a message's text.
    pub text: TextForm,
}

/// What an option holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionKind {
    /// Free text.
    Text,
    /// A whole number within bounds.
    Integer { min: Option<i64>, max: Option<i64> },
    /// One of a fixed list.
    Choices(Vec<Choice>),
    /// A photo, sent with the command (Telegram) or as an attachment option (Discord). Photos go
    /// into the request's attachments, not into [`super::Args`].
    Photo,
}

/// One allowed value and how it is labelled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub label: String,
    pub value: ArgValue,
}

impl Choice {
    /// A text choice labelled as its value.
    pub fn text(value: &str) -> Choice {
        Choice {
            label: value.to_string(),
            value: ArgValue::Text(value.to_string()),
        }
    }
}

/// How an option appears in text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextForm {
    /// The words no other option takes (a prompt, a code).
    Rest,
    /// `--name WORD`.
    Value(&'static str),
    /// `--name words…` up to the next option.
    Words(&'static str),
    /// `--hd` or `--4k`: the flag's name is the value it sets.
    Flags(&'static [&'static str]),
    /// Not written in text (a photo).
    Absent,
}

impl Spec {
    /// A command with no options, visible to the chat.
    pub fn new(name: &'static str, description: &'static str, usage: impl Into<String>) -> Spec {
        Spec {
            name,
            description,
            usage: usage.into(),
            options: Vec::new(),
            visibility: Visibility::Chat,
            operators_only: false,
            lenient: false,
        }
    }

    /// Extra words are ignored.
    #[must_use]
    pub fn lenient(mut self) -> Spec {
        self.lenient = true;
        self
    }

    /// Operators only.
    #[must_use]
    pub fn operators_only(mut self) -> Spec {
        self.operators_only = true;
        self
    }

    /// Free text: the words after the command.
    #[must_use]
    pub fn text(self, name: &'static str, description: &'static str, required: bool) -> Spec {
        self.option(
            name,
            description,
            required,
            OptionKind::Text,
            TextForm::Rest,
        )
    }

    /// A photo.
    #[must_use]
    pub fn photo(self, name: &'static str, description: &'static str, required: bool) -> Spec {
        self.option(
            name,
            description,
            required,
            OptionKind::Photo,
            TextForm::Absent,
        )
    }

    /// Any option.
    #[must_use]
    pub fn option(
        mut self,
        name: &'static str,
        description: &'static str,
        required: bool,
        kind: OptionKind,
        text: TextForm,
    ) -> Spec {
        self.options.push(OptionSpec {
            name,
            description,
            required,
            kind,
            text,
        });
        self
    }

    /// The option called `name`.
    pub fn find(&self, name: &str) -> Option<&OptionSpec> {
        self.options.iter().find(|o| o.name == name)
    }

    /// The photo options, in order.
    pub fn photos(&self) -> impl Iterator<Item = &OptionSpec> {
        self.options
            .iter()
            .filter(|o| matches!(o.kind, OptionKind::Photo))
    }
}

/// Who may see an answer. Each command has a default ([`super::visibility`]), which
/// Discord needs before the core answers (its 3-second acknowledgement); an answer may only make
/// itself more private than that, never less.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Visibility {
    /// Everyone in the chat (a generation's status, `/help`).
    #[default]
    Chat,
    /// Only the person who asked: an ephemeral message on Discord, the person's private chat
    /// with the bot on Telegram when asked in a group. Balances, refunds, link codes, payment
    /// notices, refusals and admin answers.
    Requester,
}
