//! What passes between an adapter and the core: where a conversation happens, what a person
//! sent or pressed, and what to answer, with who may see the answer ([`Visibility`]).

use serde::{Deserialize, Serialize};

pub use crate::command::Visibility;

use crate::{
    Identity, JobId, Platform, PurchaseId,
    command::{Args, Quality},
};

/// Where a conversation happens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatRef {
    pub platform: Platform,
    pub id: String,
    pub kind: ChatKind,
}

/// Private chats get every reply; in groups the bot stays quiet unless addressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChatKind {
    Private,
    Group,
}

/// A message the bot sent, to edit later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRef {
    pub chat: ChatRef,
    pub id: String,
}

/// An upload, by the platform's reference; its bytes are fetched when the job runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub id: String,
    /// The size the platform announced, when it did.
    pub size: Option<u64>,
}

/// What a person did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A message's text or caption, in the command grammar.
    Text(String),
    /// A command with typed options (Discord's slash commands): a prompt given this way is one
    /// value and never carries options.
    Command { name: String, args: Args },
    /// A button they pressed.
    Action(Action),
}

/// What a button does. Encoded into at most 24 bytes for platforms' callback data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Run the quoted operation.
    Confirm(i64),
    /// Drop the quote.
    Dismiss(i64),
    /// Cancel a queued job.
    Cancel(JobId),
    /// The same request again.
    Regenerate(JobId),
    /// The same image request at a higher tier.
    Upscale(JobId, Quality),
    /// Show the packs.
    Buy,
    /// Buy the pack at this place in the price list, counted from 1.
    Pack(u8),
    /// Pay for the pack at this place by card (Stripe Checkout).
    PayCard(u8),
    /// Pay for the pack at this place with Telegram Stars.
    PayStars(u8),
    /// Show what refunding this purchase gives back.
    RefundAsk(PurchaseId),
    /// Refund this purchase's unused credits.
    RefundConfirm(PurchaseId),
    /// Delete the person's prompts and requests (terms 6.2).
    Forget,
}

impl Action {
    /// Who sees the answer to a press: a new generation's status is public like the command's;
    /// everything about a person's money, offers and data is theirs alone.
    pub fn visibility(&self) -> Visibility {
        match self {
            Action::Regenerate(_) | Action::Upscale(..) => Visibility::Chat,
            Action::Confirm(_)
            | Action::Dismiss(_)
            | Action::Cancel(_)
            | Action::Buy
            | Action::Pack(_)
            | Action::PayCard(_)
            | Action::PayStars(_)
            | Action::RefundAsk(_)
            | Action::RefundConfirm(_)
            | Action::Forget => Visibility::Requester,
        }
    }

    /// The compact text form adapters put in callback data.
    pub fn encode(&self) -> String {
        match self {
            Action::Confirm(quote) => format!("q:{quote}"),
            Action::Dismiss(quote) => format!("d:{quote}"),
            Action::Cancel(job) => format!("c:{job}"),
            Action::Regenerate(job) => format!("r:{job}"),
            Action::Upscale(job, Quality::FourK) => format!("u4:{job}"),
            Action::Upscale(job, _) => format!("uh:{job}"),
            Action::Buy => "b".into(),
            Action::Pack(place) => format!("p:{place}"),
            Action::PayCard(place) => format!("pc:{place}"),
            Action::PayStars(place) => format!("ps:{place}"),
            Action::RefundAsk(purchase) => format!("ra:{purchase}"),
            Action::RefundConfirm(purchase) => format!("rc:{purchase}"),
            Action::Forget => "fg".into(),
        }
    }

    /// Reads [`Action::encode`]'s form; `None` for anything else.
    pub fn decode(text: &str) -> Option<Action> {
        match text {
            "b" => return Some(Action::Buy),
            "fg" => return Some(Action::Forget),
            _ => {}
        }
        let (kind, id) = text.split_once(':')?;
        let id: i64 = id.parse().ok().filter(|id| *id > 0)?;
        let job = JobId::from_db(id);
        Some(match kind {
            "q" => Action::Confirm(id),
            "d" => Action::Dismiss(id),
            "c" => Action::Cancel(job),
            "r" => Action::Regenerate(job),
            "uh" => Action::Upscale(job, Quality::Hd),
            "u4" => Action::Upscale(job, Quality::FourK),
            "p" => Action::Pack(u8::try_from(id).ok()?),
            "pc" => Action::PayCard(u8::try_from(id).ok()?),
            "ps" => Action::PayStars(u8::try_from(id).ok()?),
            "ra" => Action::RefundAsk(PurchaseId::from_db(id)),
            "rc" => Action::RefundConfirm(PurchaseId::from_db(id)),
            _ => return None,
        })
    }
}

/// One thing a person sent.
#[derive(Debug, Clone)]
pub struct Request {
    pub identity: Identity,
    /// How to name them in a group.
    pub name: String,
    pub chat: ChatRef,
    /// The message this answers.
    pub message_id: Option<String>,
    /// Unique per update (the platform's update or interaction id): a repeat does nothing twice.
    pub key: String,
    pub input: Input,
    pub attachments: Vec<Attachment>,
}

/// A button under a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Button {
    pub label: String,
    pub press: Press,
}

/// What pressing a button does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Press {
    /// Comes back to us as [`Input::Action`].
    Action(Action),
    /// Opens a web page (a Stripe Checkout link).
    Link(String),
}

impl Button {
    /// A button that comes back as `action`.
    pub fn action(label: impl Into<String>, action: Action) -> Button {
        Button {
            label: label.into(),
            press: Press::Action(action),
        }
    }
}

/// What to answer, platform-neutral.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reply {
    pub text: String,
    pub buttons: Vec<Button>,
    /// Who may see it.
    pub visibility: Visibility,
    /// A short answer to a button press (someone else's button, a used offer): platforms show
    /// it as an alert or an ephemeral message to the presser rather than as a message.
    pub notice: bool,
}

impl Reply {
    /// Text for the chat, without buttons.
    pub fn text(text: impl Into<String>) -> Reply {
        Reply {
            text: text.into(),
            ..Reply::default()
        }
    }

    /// Text for the requester only.
    pub fn private(text: impl Into<String>) -> Reply {
        Reply::text(text).visible_to(Visibility::Requester)
    }

    pub(crate) fn notice(text: impl Into<String>) -> Reply {
        Reply {
            notice: true,
            ..Reply::private(text)
        }
    }

    /// At least as private as `visibility`: an answer never becomes more public than asked.
    #[must_use]
    pub fn visible_to(mut self, visibility: Visibility) -> Reply {
        self.visibility = self.visibility.max(visibility);
        self
    }

    pub(crate) fn with(mut self, label: &str, action: Action) -> Reply {
        self.buttons.push(Button::action(label, action));
        self
    }

    pub(crate) fn link(mut self, label: &str, url: &str) -> Reply {
        self.buttons.push(Button {
            label: label.into(),
            press: Press::Link(url.into()),
        });
        self
    }
}
