//! The parts of Discord's interaction payload the adapter reads, as Discord sends them over HTTP
//! and in the gateway's `INTERACTION_CREATE`. Unknown fields are ignored (Discord adds fields
//! often); snowflakes are read from strings or numbers, since serenity writes some as numbers.

use std::collections::HashMap;

use serde::{Deserialize, Deserializer};

/// Interaction types.
pub const PING: u8 = 1;
pub const APPLICATION_COMMAND: u8 = 2;
pub const MESSAGE_COMPONENT: u8 = 3;
pub const AUTOCOMPLETE: u8 = 4;

/// Application command types.
pub const CHAT_INPUT: u8 = 1;
pub const MESSAGE_COMMAND: u8 = 3;

/// One interaction.
#[derive(Debug, Clone, Deserialize)]
pub struct Interaction {
    #[serde(deserialize_with = "snowflake")]
    pub id: String,
    #[serde(deserialize_with = "snowflake")]
    pub application_id: String,
    #[serde(rename = "type")]
    pub kind: u8,
    #[serde(default)]
    pub data: Option<Data>,
    #[serde(default, deserialize_with = "maybe_snowflake")]
    pub guild_id: Option<String>,
    #[serde(default, deserialize_with = "maybe_snowflake")]
    pub channel_id: Option<String>,
    #[serde(default)]
    pub channel: Option<Channel>,
    #[serde(default)]
    pub member: Option<Member>,
    #[serde(default)]
    pub user: Option<User>,
    /// Lets us answer this interaction for 15 minutes; never logged.
    pub token: Token,
    /// The message a component was on.
    #[serde(default)]
    pub message: Option<Message>,
    /// The largest file this interaction's response may carry, in bytes.
    #[serde(default)]
    pub attachment_size_limit: Option<u64>,
}

impl Interaction {
    /// The person who acted: the member in a server, the user in a DM.
    pub fn person(&self) -> Option<&User> {
        self.member
            .as_ref()
            .map(|member| &member.user)
            .or(self.user.as_ref())
    }

    /// Where it happened.
    pub fn channel_id(&self) -> Option<&str> {
        self.channel_id
            .as_deref()
            .or(self.channel.as_ref().map(|c| c.id.as_str()))
    }
}

/// An interaction token: a credential, so `Debug` hides it.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Token(pub String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(…)")
    }
}

/// What the interaction carries.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Data {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(rename = "type", default)]
    pub kind: Option<u8>,
    #[serde(default)]
    pub options: Vec<CommandOption>,
    #[serde(default)]
    pub resolved: Option<Resolved>,
    #[serde(default, deserialize_with = "maybe_snowflake")]
    pub target_id: Option<String>,
    #[serde(default)]
    pub custom_id: Option<String>,
}

/// One option of a slash command.
#[derive(Debug, Clone, Deserialize)]
pub struct CommandOption {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: u8,
    #[serde(default)]
    pub value: Option<serde_json::Value>,
}

impl CommandOption {
    /// The value as text (strings as they are, numbers written out).
    pub fn text(&self) -> Option<String> {
        match self.value.as_ref()? {
            serde_json::Value::String(text) => Some(text.clone()),
            serde_json::Value::Number(number) => Some(number.to_string()),
            serde_json::Value::Bool(flag) => Some(flag.to_string()),
            _ => None,
        }
    }
}

/// Objects an interaction refers to by id.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Resolved {
    #[serde(default)]
    pub attachments: HashMap<String, Attachment>,
    #[serde(default)]
    pub messages: HashMap<String, Message>,
}

/// An uploaded file.
#[derive(Debug, Clone, Deserialize)]
pub struct Attachment {
    #[serde(deserialize_with = "snowflake")]
    pub id: String,
    #[serde(default)]
    pub filename: String,
    #[serde(default)]
    pub size: u64,
    pub url: String,
    #[serde(default)]
    pub content_type: Option<String>,
}

impl Attachment {
    /// Whether this is a picture (by its declared type, else its name).
    pub fn is_image(&self) -> bool {
        match &self.content_type {
            Some(kind) => kind.starts_with("image/"),
            None => {
                let name = self.filename.to_ascii_lowercase();
                [".png", ".jpg", ".jpeg", ".webp", ".gif"]
                    .iter()
                    .any(|ext| name.ends_with(ext))
            }
        }
    }
}

/// A message (a component's message, or a context-menu target).
#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    #[serde(deserialize_with = "snowflake")]
    pub id: String,
    #[serde(default, deserialize_with = "maybe_snowflake")]
    pub channel_id: Option<String>,
    #[serde(default)]
    pub attachments: Vec<Attachment>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Channel {
    #[serde(deserialize_with = "snowflake")]
    pub id: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Member {
    pub user: User,
}

#[derive(Debug, Clone, Deserialize)]
pub struct User {
    #[serde(deserialize_with = "snowflake")]
    pub id: String,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub global_name: Option<String>,
}

impl User {
    /// How to name them under a result.
    pub fn display_name(&self) -> &str {
        self.global_name
            .as_deref()
            .filter(|name| !name.is_empty())
            .unwrap_or(&self.username)
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Snowflake {
    Text(String),
    Number(u64),
}

fn snowflake<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(match Snowflake::deserialize(deserializer)? {
        Snowflake::Text(text) => text,
        Snowflake::Number(number) => number.to_string(),
    })
}

fn maybe_snowflake<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(
        Option::<Snowflake>::deserialize(deserializer)?.map(|id| match id {
            Snowflake::Text(text) => text,
            Snowflake::Number(number) => number.to_string(),
        }),
    )
}

/// When a snowflake was made, in milliseconds since the Unix epoch.
pub fn created_ms(snowflake: &str) -> Option<u64> {
    let id: u64 = snowflake.parse().ok()?;
    Some((id >> 22) + 1_420_070_400_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snowflake_time_is_read() {
        // Discord's documented example: 175928847299117063 was made at 2016-04-30 11:18:25.796.
        assert_eq!(created_ms("175928847299117063"), Some(1_462_015_105_796));
        assert_eq!(created_ms("not a number"), None);
    }

    #[test]
    fn ids_read_as_strings_or_numbers_and_token_hidden() {
        let interaction: Interaction = serde_json::from_value(serde_json::json!({
            "id": 1234, "application_id": "99", "type": 2, "token": "secret-token",
            "channel_id": "7", "user": {"id": 42, "username": "ann"}
        }))
        .expect("reads");
        assert_eq!(interaction.id, "1234");
        assert_eq!(interaction.person().map(|u| u.id.as_str()), Some("42"));
        assert!(!format!("{interaction:?}").contains("secret-token"));
    }
}
