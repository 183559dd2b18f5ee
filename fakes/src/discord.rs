//! Discord: the REST API under `/api/v10` (interaction callbacks, interaction webhooks, channel
//! messages, DMs, command registration) and the sending side of HTTP interactions, signed with a
//! real Ed25519 key like Discord signs them.
//!
//! Strictness, as Discord: one acknowledgement per interaction (`40060` for a second), within
//! three seconds of its creation (`10062 Unknown interaction` after); the webhook of an
//! interaction exists only once it is acknowledged (`10015 Unknown Webhook` before) and for 15
//! minutes (`50027 Invalid Webhook Token` after, or once a test expires it); the bot token is
//! required where Discord requires it (`401`); content at most 2,000 characters, embed
//! descriptions 4,096, five rows of five buttons, labels 80 and custom ids 100 characters
//! (`50035 Invalid Form Body`); an empty message is refused (`50006`); the first follow-up
//! after a deferred message response edits the "thinking…" message instead, keeping the
//! deferral's visibility whatever flags it asks for, as Discord documents; a file over the upload
//! limit (10 MiB unless changed) is refused with `413` and `40005`; channels the bot may not post
//! in answer `403 50001 Missing Access`, and a DM to a person whose DMs are closed `403 50007
//! Cannot send messages to this user` (Discord's JSON error codes); scripted rate limits answer `429` with `retry_after`.
//! Registered commands are checked as Discord checks them (application-commands, "Application
//! Command Option Structure": <https://discord.com/developers/docs/interactions/application-commands#application-command-object-application-command-option-structure>,
//! with the limits as twilight-model 0.17 and @sapphire/discord-utilities record them: 25
//! options, 25 choices, names 1–32, descriptions 1–100, 4,000 characters in all).

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, FromRequest as _, Multipart, Path, Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, patch, post, put},
};
use ed25519_dalek::{Signer as _, SigningKey};
use serde_json::{Value, json};

use crate::Server;

mod checks;
mod routes;

use self::{checks::*, routes::*};

/// Discord's default upload limit for bots.
pub const UPLOAD_LIMIT: usize = 10 * 1024 * 1024;
/// How long Discord waits for an acknowledgement.
pub const ACK_DEADLINE: Duration = Duration::from_secs(3);
/// How long an interaction token works.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// The application's bot user.
pub const BOT_USER: &str = "1100000000000000001";

/// Someone in the fake.
#[derive(Debug, Clone)]
pub struct Person {
    pub id: String,
    pub name: String,
}

impl Person {
    pub fn new(id: u64, name: &str) -> Person {
        Person {
            id: id.to_string(),
            name: name.into(),
        }
    }
}

/// Where an interaction happens.
#[derive(Debug, Clone)]
pub enum Place {
    Guild { guild: String, channel: String },
    Dm { channel: String },
}

impl Place {
    pub fn guild(guild: u64, channel: u64) -> Place {
        Place::Guild {
            guild: guild.to_string(),
            channel: channel.to_string(),
        }
    }

    pub fn dm(channel: u64) -> Place {
        Place::Dm {
            channel: channel.to_string(),
        }
    }

    pub fn channel(&self) -> &str {
        match self {
            Place::Guild { channel, .. } | Place::Dm { channel } => channel,
        }
    }
}

/// How a message came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// An interaction's response.
    Original,
    /// An interaction's follow-up.
    Followup,
    /// A channel message sent with the bot token.
    Bot,
}

/// A message as the fake keeps it.
#[derive(Debug, Clone)]
pub struct Message {
    pub id: String,
    pub channel: String,
    pub via: Via,
    pub interaction: Option<String>,
    pub content: String,
    pub embeds: Vec<Value>,
    pub components: Value,
    /// File names and sizes.
    pub files: Vec<(String, usize)>,
    pub flags: u64,
    /// Still "thinking…" (deferred, not yet replaced).
    pub loading: bool,
    pub deleted: bool,
    pub edits: usize,
    /// Users the message may ping.
    pub mentions: Vec<String>,
}

impl Message {
    /// A new message from a request body (`content`, `embeds`, `components`, `flags`).
    fn from_body(
        id: String,
        channel: String,
        via: Via,
        interaction: Option<String>,
        body: &Value,
        files: Vec<(String, usize)>,
    ) -> Message {
        Message {
            id,
            channel,
            via,
            interaction,
            content: body["content"].as_str().unwrap_or_default().into(),
            embeds: body["embeds"].as_array().cloned().unwrap_or_default(),
            components: body["components"].clone(),
            files,
            flags: body["flags"].as_u64().unwrap_or(0),
            loading: false,
            deleted: false,
            edits: 0,
            mentions: mentions(body),
        }
    }

    pub fn ephemeral(&self) -> bool {
        self.flags & 64 != 0
    }

    /// Every button's custom id.
    pub fn custom_ids(&self) -> Vec<String> {
        self.components
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|row| row["components"].as_array().cloned().unwrap_or_default())
            .filter_map(|button| button["custom_id"].as_str().map(str::to_string))
            .collect()
    }

    /// Every link button's URL.
    pub fn links(&self) -> Vec<String> {
        self.components
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|row| row["components"].as_array().cloned().unwrap_or_default())
            .filter_map(|button| button["url"].as_str().map(str::to_string))
            .collect()
    }

    /// The content and every embed's description.
    pub fn text(&self) -> String {
        let mut text = self.content.clone();
        for embed in &self.embeds {
            if let Some(description) = embed["description"].as_str() {
                text.push('\n');
                text.push_str(description);
            }
        }
        text
    }
}

#[derive(Debug)]
struct Interaction {
    id: String,
    created: Instant,
    acks: usize,
    /// The callback type given, once acknowledged.
    ack: Option<u64>,
    expired: bool,
    /// The message a button was on.
    source: Option<String>,
    original: Option<String>,
    channel: String,
}

#[derive(Debug, Default)]
struct Fake {
    application: String,
    bot_token: String,
    counter: u64,
    interactions: HashMap<String, Interaction>,
    messages: Vec<Message>,
    denied: HashSet<String>,
    dms: HashMap<String, String>,
    /// People whose DMs are closed to the bot.
    closed_dms: HashSet<String>,
    commands: HashMap<String, Value>,
    files: HashMap<String, Vec<u8>>,
    rate_limit: Option<(usize, f64)>,
    rate_limited: usize,
    upload_limit: usize,
    late_acks: usize,
    bad_acks: usize,
}

impl Fake {
    fn snowflake(&mut self) -> String {
        self.counter += 1;
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        (((ms - 1_420_070_400_000) << 22) | (self.counter & 0x3F_FFFF)).to_string()
    }
}

type Shared = Arc<Mutex<Fake>>;

fn lock(state: &Shared) -> MutexGuard<'_, Fake> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// The fake Discord.
#[derive(Debug)]
pub struct FakeDiscord {
    server: Server,
    state: Shared,
    key: SigningKey,
    endpoint: Mutex<Option<String>>,
    http: reqwest::Client,
    ack_delay: Mutex<Duration>,
}

/// What the application answered to an interaction.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub interaction: String,
}

impl FakeDiscord {
    /// Starts the fake for `application`, taking `bot_token` as the bot's token.
    pub async fn start(application: &str, bot_token: &str) -> FakeDiscord {
        let state: Shared = Arc::new(Mutex::new(Fake {
            application: application.into(),
            bot_token: bot_token.into(),
            upload_limit: UPLOAD_LIMIT,
            ..Fake::default()
        }));
        let api = Router::new()
            .route("/applications/{app}/commands", put(register))
            .route("/applications/{app}/guilds/{guild}/commands", put(register))
            .route("/interactions/{id}/{token}/callback", post(callback))
            .route("/webhooks/{app}/{token}", post(followup))
            .route(
                "/webhooks/{app}/{token}/messages/{message}",
                patch(webhook_message)
                    .get(webhook_message)
                    .delete(webhook_message),
            )
            .route("/channels/{channel}/messages", post(channel_post))
            .route(
                "/channels/{channel}/messages/{message}",
                patch(channel_edit),
            )
            .route("/users/@me/channels", post(open_dm));
        let router = Router::new()
            .nest("/api/v10", api)
            .route("/attachments/{id}/{name}", get(download))
            // Larger than any limit, so the fake itself answers 40005 as Discord does.
            .layer(DefaultBodyLimit::max(64 * 1024 * 1024))
            .with_state(state.clone());
        let mut seed = [0u8; 32];
        rand::fill(&mut seed);
        FakeDiscord {
            server: Server::start(router).await,
            state,
            key: SigningKey::from_bytes(&seed),
            endpoint: Mutex::new(None),
            http: reqwest::Client::new(),
            ack_delay: Mutex::new(Duration::ZERO),
        }
    }

    /// What to give as `DISCORD_API_URL`.
    pub fn url(&self) -> String {
        self.server.origin()
    }

    /// What to give as `DISCORD_PUBLIC_KEY`.
    pub fn public_key(&self) -> String {
        hex::encode(self.key.verifying_key().to_bytes())
    }

    /// Where interactions are sent (the application's `/discord/interactions`).
    pub fn set_endpoint(&self, url: &str) {
        *self.endpoint.lock().unwrap_or_else(|e| e.into_inner()) = Some(url.to_string());
    }

    /// Signs `body` at `timestamp` as Discord does: Ed25519 over the timestamp then the body.
    pub fn sign(&self, timestamp: &str, body: &[u8]) -> String {
        let mut message = timestamp.as_bytes().to_vec();
        message.extend_from_slice(body);
        hex::encode(self.key.sign(&message).to_bytes())
    }

    /// A new snowflake.
    pub fn snowflake(&self) -> String {
        lock(&self.state).snowflake()
    }

    /// Hosts a file like Discord's CDN and returns its attachment object.
    pub fn attachment(&self, bytes: Vec<u8>, filename: &str, content_type: &str) -> Value {
        let mut state = lock(&self.state);
        let id = state.snowflake();
        let size = bytes.len();
        state.files.insert(format!("{id}/{filename}"), bytes);
        json!({
            "id": id, "filename": filename, "size": size, "content_type": content_type,
            "url": format!("{}/attachments/{id}/{filename}", self.server.origin()),
            "proxy_url": format!("{}/attachments/{id}/{filename}", self.server.origin()),
        })
    }

    fn base(&self, kind: u8, person: &Person, place: &Place) -> Value {
        let (id, token) = {
            let mut state = lock(&self.state);
            (state.snowflake(), format!("tok-{}", state.snowflake()))
        };
        let user = json!({"id": person.id, "username": person.name.to_lowercase(),
                          "global_name": person.name, "discriminator": "0", "avatar": null});
        let mut interaction = json!({
            "id": id, "application_id": lock(&self.state).application.clone(), "type": kind,
            "token": token, "version": 1, "channel_id": place.channel(),
            "channel": {"id": place.channel(), "type": if matches!(place, Place::Dm { .. }) { 1 } else { 0 }},
            "app_permissions": "2248473465835073", "locale": "en-US",
            "entitlements": [], "authorizing_integration_owners": {"0": "1"},
            "attachment_size_limit": lock(&self.state).upload_limit,
        });
        match place {
            Place::Guild { guild, .. } => {
                interaction["guild_id"] = json!(guild);
                interaction["guild_locale"] = json!("en-US");
                interaction["context"] = json!(0);
                interaction["member"] = json!({"user": user, "roles": [], "permissions": "2248473465835073",
                    "joined_at": "2024-01-01T00:00:00.000000+00:00", "deaf": false, "mute": false,
                    "flags": 0, "nick": null, "avatar": null, "premium_since": null, "pending": false});
            }
            Place::Dm { .. } => {
                interaction["context"] = json!(1);
                interaction["user"] = user;
            }
        }
        interaction
    }

    /// A slash command: `options` as Discord sends them, `resolved` for attachments.
    pub fn slash(
        &self,
        person: &Person,
        place: &Place,
        name: &str,
        options: Value,
        resolved: Value,
    ) -> Value {
        let mut interaction = self.base(2, person, place);
        interaction["data"] = json!({"id": "900", "name": name, "type": 1, "options": options,
                                     "resolved": resolved});
        interaction
    }

    /// A message context-menu command on `target` (a message object).
    pub fn message_command(
        &self,
        person: &Person,
        place: &Place,
        name: &str,
        target: Value,
    ) -> Value {
        let mut interaction = self.base(2, person, place);
        let id = target["id"].clone();
        interaction["data"] = json!({"id": "901", "name": name, "type": 3, "target_id": id,
                                     "resolved": {"messages": {id.as_str().unwrap_or_default(): target}}});
        interaction
    }

    /// A button press on `message`.
    pub fn press(
        &self,
        person: &Person,
        place: &Place,
        message: &Message,
        custom_id: &str,
    ) -> Value {
        let mut interaction = self.base(3, person, place);
        interaction["data"] = json!({"custom_id": custom_id, "component_type": 2});
        interaction["message"] = json!({"id": message.id, "channel_id": message.channel,
            "content": message.content, "attachments": [], "embeds": message.embeds,
            "components": message.components, "type": 0, "flags": message.flags,
            "author": {"id": BOT_USER, "username": "imagegpt", "bot": true}});
        interaction
    }

    fn register_interaction(&self, interaction: &Value) {
        let id = interaction["id"].as_str().unwrap_or_default().to_string();
        let token = interaction["token"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let source = interaction["message"]["id"].as_str().map(str::to_string);
        let channel = interaction["channel_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        lock(&self.state).interactions.insert(
            token,
            Interaction {
                id,
                created: Instant::now(),
                acks: 0,
                ack: None,
                expired: false,
                source,
                original: None,
                channel,
            },
        );
    }

    /// Sends an interaction to the application over HTTP, signed, and takes its response as
    /// the acknowledgement (if it came within three seconds).
    ///
    /// # Panics
    ///
    /// When no endpoint is set.
    pub async fn interact(&self, interaction: &Value) -> Answer {
        let endpoint = self.endpoint();
        self.interact_at(&endpoint, interaction).await
    }

    /// As [`FakeDiscord::interact`], to `endpoint`: one instance of several behind the one
    /// Interactions Endpoint URL an application has, as a load balancer would pick it.
    pub async fn interact_at(&self, endpoint: &str, interaction: &Value) -> Answer {
        self.register_interaction(interaction);
        let body = interaction.to_string();
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .to_string();
        let signature = self.sign(&timestamp, body.as_bytes());
        self.deliver_to(
            endpoint,
            interaction,
            &body,
            Some(&signature),
            Some(&timestamp),
        )
        .await
    }

    fn endpoint(&self) -> String {
        self.endpoint
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .expect("set_endpoint first")
    }

    /// Sends a body with the given headers (for tests of bad signatures).
    ///
    /// # Panics
    ///
    /// When no endpoint is set.
    pub async fn deliver(
        &self,
        interaction: &Value,
        body: &str,
        signature: Option<&str>,
        timestamp: Option<&str>,
    ) -> Answer {
        let endpoint = self.endpoint();
        self.deliver_to(&endpoint, interaction, body, signature, timestamp)
            .await
    }

    async fn deliver_to(
        &self,
        endpoint: &str,
        interaction: &Value,
        body: &str,
        signature: Option<&str>,
        timestamp: Option<&str>,
    ) -> Answer {
        let mut request = self
            .http
            .post(endpoint)
            .header("content-type", "application/json")
            .header(
                "user-agent",
                "Discord-Interactions/1.0 (+https://discord.com)",
            )
            .body(body.to_string());
        if let Some(signature) = signature {
            request = request.header("X-Signature-Ed25519", signature);
        }
        if let Some(timestamp) = timestamp {
            request = request.header("X-Signature-Timestamp", timestamp);
        }
        let started = Instant::now();
        let response = request.send().await;
        let late = started.elapsed() > ACK_DEADLINE;
        let (status, body) = match response {
            Ok(response) => {
                let status = response.status().as_u16();
                let text = response.text().await.unwrap_or_default();
                (
                    status,
                    serde_json::from_str(&text).unwrap_or(Value::String(text)),
                )
            }
            Err(_) => (0, Value::Null),
        };
        let token = interaction["token"].as_str().unwrap_or_default();
        let id = interaction["id"].as_str().unwrap_or_default().to_string();
        // Discord takes a moment to process a response; until then the webhook is unknown.
        let delay = *self.ack_delay.lock().unwrap_or_else(|e| e.into_inner());
        if status == 200 && !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if status == 200 {
            let mut state = lock(&self.state);
            if late {
                state.late_acks += 1;
            } else {
                if acknowledge(&mut state, token, &body).is_err() {
                    state.bad_acks += 1;
                }
            }
        }
        Answer {
            status,
            body,
            interaction: id,
        }
    }

    /// Every message, in the order made (deleted ones included, marked).
    pub fn messages(&self) -> Vec<Message> {
        lock(&self.state).messages.clone()
    }

    /// How many messages satisfy `check` (without copying them).
    pub fn count(&self, check: impl Fn(&Message) -> bool) -> usize {
        lock(&self.state)
            .messages
            .iter()
            .filter(|m| check(m))
            .count()
    }

    /// Waits until a message satisfies `check`, up to `timeout`.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        check: impl Fn(&Message) -> bool,
    ) -> Option<Message> {
        let until = Instant::now() + timeout;
        loop {
            if let Some(found) = self.messages().into_iter().find(|m| check(m)) {
                return Some(found);
            }
            if Instant::now() > until {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The original response of an interaction.
    pub fn original(&self, interaction: &str) -> Option<Message> {
        self.messages()
            .into_iter()
            .find(|m| m.via == Via::Original && m.interaction.as_deref() == Some(interaction))
    }

    /// How many acknowledgements an interaction received (only the first is taken).
    pub fn acks(&self, interaction: &str) -> usize {
        lock(&self.state)
            .interactions
            .values()
            .find(|i| i.id == interaction)
            .map_or(0, |i| i.acks)
    }

    /// Acknowledgements that came after Discord's three seconds.
    pub fn late_acks(&self) -> usize {
        lock(&self.state).late_acks
    }

    /// Responses Discord would not take as an acknowledgement (a second one, a bad type or body).
    pub fn bad_acks(&self) -> usize {
        lock(&self.state).bad_acks
    }

    /// Ends an interaction's token now, as 15 minutes passing would.
    pub fn expire(&self, interaction: &str) {
        let mut state = lock(&self.state);
        for found in state.interactions.values_mut() {
            if found.id == interaction {
                found.expired = true;
            }
        }
    }

    /// The bot may not post in `channel` (403 Missing Access).
    pub fn deny_channel(&self, channel: &str) {
        lock(&self.state).denied.insert(channel.to_string());
    }

    /// `person` allows no direct messages from the bot: posting in their DM channel answers
    /// `403 50007 Cannot send messages to this user`, as Discord does.
    pub fn close_dms(&self, person: &str) {
        lock(&self.state).closed_dms.insert(person.to_string());
    }

    /// The DM channel opened with `person`, if any.
    pub fn dm_channel(&self, person: &str) -> Option<String> {
        lock(&self.state).dms.get(person).cloned()
    }

    /// The next `count` REST requests answer 429 with `retry_after` seconds.
    pub fn rate_limit(&self, count: usize, retry_after: f64) {
        lock(&self.state).rate_limit = Some((count, retry_after));
    }

    /// 429s answered so far.
    pub fn rate_limited(&self) -> usize {
        lock(&self.state).rate_limited
    }

    /// Commands registered, by scope (`global` or the guild id).
    pub fn commands(&self) -> HashMap<String, Value> {
        lock(&self.state).commands.clone()
    }

    /// Takes this long after a response before treating it as the acknowledgement, as Discord
    /// does under load: follow-ups sent at once meet `10015 Unknown Webhook`.
    pub fn delay_acks(&self, delay: Duration) {
        *self.ack_delay.lock().unwrap_or_else(|e| e.into_inner()) = delay;
    }

    /// Changes the upload limit.
    pub fn set_upload_limit(&self, bytes: usize) {
        lock(&self.state).upload_limit = bytes;
    }
}
