//! Telegram updates as core requests: who, where, which command (with `/cmd@ThisBot` handled and
//! commands for other bots ignored), and which photos (the largest size of a photo, an image
//! sent as a document, or the photo the command replies to). Pure functions, no I/O.

use bot_core::{
    Platform,
    service::{Action, Attachment, ChatKind, ChatRef, Input, Request},
};
use teloxide::types::{CallbackQuery, Chat, Message, User};

/// What an update asks of the core.
#[derive(Debug, Clone)]
pub enum Incoming {
    /// A message (or a whole album) for the core.
    Message(Request),
    /// A message that belongs to an album still arriving; collected before handling.
    AlbumPart { album: String, request: Request },
    /// A button press; `query` must be answered whatever happens.
    Press {
        query: String,
        request: Option<Request>,
    },
    /// Nothing for us.
    Ignored,
}

/// The key an update is known by: in the store's taken updates, and as the idempotency key of
/// what it asks for (a charging command holds credits once per key).
pub fn update_key(update_id: u32) -> String {
    format!("telegram:update:{update_id}")
}

fn person(user: &User) -> (String, String) {
    let name = match &user.username {
        Some(username) => format!("@{username}"),
        None => user.first_name.clone(),
    };
    (format!("telegram:{}", user.id.0), name)
}

fn chat_ref(chat: &Chat) -> ChatRef {
    ChatRef {
        platform: Platform::Telegram,
        id: chat.id.0.to_string(),
        kind: if chat.is_private() {
            ChatKind::Private
        } else {
            ChatKind::Group
        },
    }
}

/// The photos a message carries: the largest size of a photo, or an image document.
fn photos(message: &Message) -> Vec<Attachment> {
    if let Some(sizes) = message.photo()
        && let Some(largest) = sizes
            .iter()
            .max_by_key(|s| u64::from(s.width) * u64::from(s.height))
    {
        return vec![Attachment {
            id: largest.file.id.0.clone(),
            size: Some(u64::from(largest.file.size)),
        }];
    }
    if let Some(document) = message.document()
        && document
            .mime_type
            .as_ref()
            .is_none_or(|mime| mime.type_() == "image")
    {
        return vec![Attachment {
            id: document.file.id.0.clone(),
            size: Some(u64::from(document.file.size)),
        }];
    }
    Vec::new()
}

/// The text with `/cmd@ThisBot` made `/cmd`; `None` when the command is for another bot.
fn addressed(text: &str, me: &str) -> Option<String> {
    let trimmed = text.trim_start();
    let Some(first) = trimmed
        .split_whitespace()
        .next()
        .filter(|w| w.starts_with('/'))
    else {
        return Some(text.to_string());
    };
    match first.split_once('@') {
        Some((command, bot)) if bot.eq_ignore_ascii_case(me) => {
            Some(format!("{command}{}", &trimmed[first.len()..]))
        }
        Some(_) => None,
        None => Some(trimmed.to_string()),
    }
}

/// A message as a core request; `me` is the bot's username.
pub fn message(update_id: u32, message: &Message, me: &str) -> Incoming {
    let Some(from) = message.from.as_ref().filter(|u| !u.is_bot) else {
        return Incoming::Ignored;
    };
    let text = message.text().or_else(|| message.caption()).unwrap_or("");
    let Some(text) = addressed(text, me) else {
        return Incoming::Ignored;
    };
    let mut attachments = photos(message);
    if attachments.is_empty()
        && let Some(original) = message.reply_to_message()
    {
        attachments = photos(original);
    }
    let (identity, name) = person(from);
    let Ok(identity) = identity.parse() else {
        return Incoming::Ignored;
    };
    let request = Request {
        identity,
        name,
        chat: chat_ref(&message.chat),
        message_id: Some(message.id.0.to_string()),
        key: update_key(update_id),
        input: Input::Text(text),
        attachments,
    };
    match message.media_group_id() {
        Some(album) => Incoming::AlbumPart {
            album: format!("{}:{}", message.chat.id.0, album.0),
            request,
        },
        None if request_is_empty(&request) => Incoming::Ignored,
        None => Incoming::Message(request),
    }
}

fn request_is_empty(request: &Request) -> bool {
    matches!(&request.input, Input::Text(text) if text.trim().is_empty())
        && request.attachments.is_empty()
}

/// The parts of an album as one request: the caption that has text, every photo in order.
pub fn album(mut parts: Vec<Request>) -> Option<Request> {
    parts.sort_by_key(|p| p.message_id.as_ref().and_then(|id| id.parse::<i64>().ok()));
    let mut whole = parts.first()?.clone();
    whole.attachments = parts.iter().flat_map(|p| p.attachments.clone()).collect();
    if let Some(captioned) = parts
        .iter()
        .find(|p| matches!(&p.input, Input::Text(text) if !text.trim().is_empty()))
    {
        whole.input = captioned.input.clone();
        whole.message_id = captioned.message_id.clone();
    }
    if request_is_empty(&whole) {
        return None;
    }
    Some(whole)
}

/// A button press as a core request.
pub fn press(query: &CallbackQuery) -> Incoming {
    let id = query.id.0.clone();
    let Some(message) = &query.message else {
        return Incoming::Press {
            query: id,
            request: None,
        };
    };
    let action = query.data.as_deref().and_then(Action::decode);
    let (identity, name) = person(&query.from);
    let (Some(action), Ok(identity)) = (action, identity.parse()) else {
        return Incoming::Press {
            query: id,
            request: None,
        };
    };
    let chat = chat_ref(message.chat());
    Incoming::Press {
        request: Some(Request {
            identity,
            name,
            chat,
            message_id: Some(message.id().0.to_string()),
            key: format!("telegram:press:{id}"),
            input: Input::Action(action),
            attachments: Vec::new(),
        }),
        query: id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_for_this_bot_are_kept_and_for_others_ignored() {
        assert_eq!(
            addressed("/imagine@MyBot a fox", "mybot").as_deref(),
            Some("/imagine a fox")
        );
        assert_eq!(
            addressed("/imagine a fox", "MyBot").as_deref(),
            Some("/imagine a fox")
        );
        assert_eq!(addressed("/imagine@OtherBot a fox", "MyBot"), None);
        assert_eq!(
            addressed("hello @MyBot", "MyBot").as_deref(),
            Some("hello @MyBot")
        );
    }
}
