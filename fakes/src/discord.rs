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

fn error(status: u16, code: u64, message: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        Json(json!({"message": message, "code": code})),
    )
        .into_response()
}

fn form_error(field: &str, message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({
            "message": "Invalid Form Body",
            "code": 50035,
            "errors": {field: {"_errors": [{"code": "BASE_TYPE_BAD_LENGTH", "message": message}]}}
        })),
    )
        .into_response()
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

/// Takes an acknowledgement for the interaction with `token`: the first only.
fn acknowledge(state: &mut Fake, token: &str, body: &Value) -> Result<(), Response> {
    let kind = body["type"].as_u64().unwrap_or(0);
    let Some(interaction) = state.interactions.get_mut(token) else {
        return Err(error(404, 10062, "Unknown interaction"));
    };
    interaction.acks += 1;
    if interaction.ack.is_some() {
        return Err(error(
            400,
            40060,
            "Interaction has already been acknowledged.",
        ));
    }
    if interaction.created.elapsed() > ACK_DEADLINE {
        return Err(error(404, 10062, "Unknown interaction"));
    }
    if !matches!(kind, 1 | 4 | 5 | 6 | 7 | 8 | 9) {
        return Err(form_error(
            "type",
            "Value is not a valid interaction callback type.",
        ));
    }
    if matches!(kind, 4 | 7) {
        check_message(&body["data"], 0)?;
    }
    interaction.ack = Some(kind);
    let id = interaction.id.clone();
    let channel = interaction.channel.clone();
    let source = interaction.source.clone();
    let data = &body["data"];
    let original = match kind {
        4 | 5 => {
            let message_id = state.snowflake();
            let mut message = Message::from_body(
                message_id.clone(),
                channel,
                Via::Original,
                Some(id),
                data,
                Vec::new(),
            );
            message.loading = kind == 5;
            state.messages.push(message);
            Some(message_id)
        }
        _ => source,
    };
    if let Some(interaction) = state.interactions.get_mut(token) {
        interaction.original = original;
    }
    Ok(())
}

fn authorised(state: &Fake, headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bot {}", state.bot_token))
}

fn unauthorised() -> Response {
    error(401, 0, "401: Unauthorized")
}

/// A scripted 429, when one is due.
fn limited(state: &mut Fake) -> Option<Response> {
    let (count, retry_after) = state.rate_limit?;
    state.rate_limit = (count > 1).then_some((count - 1, retry_after));
    state.rate_limited += 1;
    let mut response = (
        StatusCode::TOO_MANY_REQUESTS,
        Json(json!({"message": "You are being rate limited.", "retry_after": retry_after, "global": false})),
    )
        .into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        ("retry-after", format!("{}", retry_after.ceil() as u64)),
        ("x-ratelimit-limit", "5".into()),
        ("x-ratelimit-remaining", "0".into()),
        ("x-ratelimit-reset-after", format!("{retry_after}")),
        ("x-ratelimit-scope", "user".into()),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    Some(response)
}

/// Checks a message body; `files` is how many files come with it.
fn check_message(body: &Value, files: usize) -> Result<(), Response> {
    let content = body["content"].as_str().unwrap_or_default();
    if content.chars().count() > 2_000 {
        return Err(form_error("content", "Must be 2000 or fewer in length."));
    }
    let embeds = body["embeds"].as_array().cloned().unwrap_or_default();
    if embeds.len() > 10 {
        return Err(form_error("embeds", "Must be 10 or fewer in length."));
    }
    for embed in &embeds {
        if embed["description"]
            .as_str()
            .is_some_and(|d| d.chars().count() > 4_096)
        {
            return Err(form_error(
                "embeds.0.description",
                "Must be 4096 or fewer in length.",
            ));
        }
    }
    let rows = body["components"].as_array().cloned().unwrap_or_default();
    if rows.len() > 5 {
        return Err(form_error("components", "Must be 5 or fewer in length."));
    }
    for row in &rows {
        let buttons = row["components"].as_array().cloned().unwrap_or_default();
        if row["type"] != 1 || buttons.is_empty() || buttons.len() > 5 {
            return Err(form_error(
                "components.0.components",
                "Must be between 1 and 5 in length.",
            ));
        }
        for button in &buttons {
            if button["label"]
                .as_str()
                .is_some_and(|l| l.chars().count() > 80)
            {
                return Err(form_error(
                    "components.0.components.0.label",
                    "Must be 80 or fewer in length.",
                ));
            }
            match button["style"].as_u64() {
                Some(5) => {
                    if button["url"].as_str().is_none_or(|u| u.len() > 512)
                        || button.get("custom_id").is_some()
                    {
                        return Err(form_error(
                            "components.0.components.0.url",
                            "A link button needs a url and no custom_id.",
                        ));
                    }
                }
                Some(1..=4) => {
                    let id = button["custom_id"].as_str().unwrap_or_default();
                    if id.is_empty() || id.chars().count() > 100 {
                        return Err(form_error(
                            "components.0.components.0.custom_id",
                            "Must be between 1 and 100 in length.",
                        ));
                    }
                }
                _ => {
                    return Err(form_error(
                        "components.0.components.0.style",
                        "Value is not a valid button style.",
                    ));
                }
            }
        }
    }
    if content.is_empty() && embeds.is_empty() && files == 0 && rows.is_empty() {
        return Err(error(400, 50006, "Cannot send an empty message"));
    }
    Ok(())
}

/// The JSON body and files of a request (JSON, or multipart with `payload_json` and `files[n]`).
async fn read_body(
    request: Request,
    limit: usize,
) -> Result<(Value, Vec<(String, usize)>), Response> {
    let multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|kind| kind.starts_with("multipart/form-data"));
    if multipart {
        let mut form = Multipart::from_request(request, &())
            .await
            .map_err(|_| error(400, 50035, "Invalid Form Body"))?;
        let mut payload = Value::Null;
        let mut files = Vec::new();
        while let Some(field) = form
            .next_field()
            .await
            .map_err(|_| error(400, 50035, "Invalid Form Body"))?
        {
            let name = field.name().unwrap_or_default().to_string();
            let file_name = field.file_name().map(str::to_string);
            let bytes = field
                .bytes()
                .await
                .map_err(|_| error(400, 50035, "Invalid Form Body"))?;
            if name == "payload_json" {
                payload = serde_json::from_slice(&bytes)
                    .map_err(|_| form_error("payload_json", "Invalid JSON."))?;
            } else if name.starts_with("files[") {
                if bytes.len() > limit {
                    return Err(error(413, 40005, "Request entity too large"));
                }
                files.push((file_name.unwrap_or(name), bytes.len()));
            }
        }
        return Ok((payload, files));
    }
    let body = Bytes::from_request(request, &())
        .await
        .map_err(|_| error(400, 50109, "The request body contains invalid JSON."))?;
    if body.is_empty() {
        return Ok((Value::Null, Vec::new()));
    }
    let value = serde_json::from_slice(&body)
        .map_err(|_| error(400, 50109, "The request body contains invalid JSON."))?;
    Ok((value, Vec::new()))
}

fn mentions(body: &Value) -> Vec<String> {
    body["allowed_mentions"]["users"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| u.as_str().map(str::to_string))
        .collect()
}

/// A command's options as Discord checks them: at most 25, names and descriptions within their
/// lengths, required before optional, at most 25 choices and only on string, integer and number
/// options, each choice's value of its option's type, and 4,000 characters in all.
fn check_options(command: &Value) -> Result<(), String> {
    let options = command["options"].as_array().cloned().unwrap_or_default();
    if options.len() > 25 {
        return Err("Must be 25 or fewer in length.".into());
    }
    let mut total = command["name"].as_str().map_or(0, str::len)
        + command["description"].as_str().map_or(0, str::len);
    let mut optional_seen = false;
    for option in &options {
        let name = option["name"].as_str().unwrap_or_default();
        let description = option["description"].as_str().unwrap_or_default();
        if !(1..=32).contains(&name.chars().count())
            || !name
                .chars()
                .all(|c| c.is_lowercase() || c.is_numeric() || c == '-' || c == '_')
            || !(1..=100).contains(&description.chars().count())
        {
            return Err(format!("Invalid option name or description: {name:?}."));
        }
        total += name.len() + description.len();
        let required = option["required"].as_bool().unwrap_or(false);
        if required && optional_seen {
            return Err("Required options must be placed before non-required options.".into());
        }
        optional_seen |= !required;
        let kind = option["type"].as_u64().unwrap_or(0);
        let Some(choices) = option["choices"].as_array() else {
            continue;
        };
        if choices.len() > 25 {
            return Err("Must be 25 or fewer in length.".into());
        }
        for choice in choices {
            let label = choice["name"].as_str().unwrap_or_default();
            let value = &choice["value"];
            let typed = match kind {
                3 => value
                    .as_str()
                    .is_some_and(|v| (1..=100).contains(&v.chars().count())),
                4 => value.is_i64(),
                10 => value.is_number(),
                _ => return Err("Choices are only for string, integer and number options.".into()),
            };
            if !typed || !(1..=100).contains(&label.chars().count()) {
                return Err(format!("Invalid choice {choice} for option {name:?}."));
            }
            total += label.len() + value.to_string().len();
        }
    }
    if total > 4_000 {
        return Err("Combined sum of characters must be 4000 or fewer.".into());
    }
    Ok(())
}

async fn register(
    State(state): State<Shared>,
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
    Json(commands): Json<Value>,
) -> Response {
    let mut state = lock(&state);
    if !authorised(&state, &headers) {
        return unauthorised();
    }
    if params.get("app") != Some(&state.application) {
        return error(403, 50001, "Missing Access");
    }
    let Some(list) = commands.as_array() else {
        return form_error("_root", "Must be an array.");
    };
    if list.len() > 100 {
        return form_error("_root", "Must be 100 or fewer in length.");
    }
    for command in list {
        let name = command["name"].as_str().unwrap_or_default();
        let kind = command["type"].as_u64().unwrap_or(1);
        let description = command["description"].as_str().unwrap_or_default();
        let name_ok = (1..=32).contains(&name.chars().count())
            && (kind != 1
                || name
                    .chars()
                    .all(|c| c.is_lowercase() || c.is_numeric() || c == '-' || c == '_'));
        let description_ok = kind != 1 || (1..=100).contains(&description.chars().count());
        if !name_ok || !description_ok {
            return form_error("0.name", "Invalid command name or description.");
        }
        if let Err(why) = check_options(command) {
            return form_error("0.options", &why);
        }
    }
    let scope = params
        .get("guild")
        .cloned()
        .unwrap_or_else(|| "global".into());
    state.commands.insert(scope, commands.clone());
    Json(commands).into_response()
}

async fn callback(
    State(state): State<Shared>,
    Path((id, token)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Response {
    let mut state = lock(&state);
    if state.interactions.get(&token).is_none_or(|i| i.id != id) {
        return error(404, 10062, "Unknown interaction");
    }
    match acknowledge(&mut state, &token, &body) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(response) => response,
    }
}

/// The interaction behind a webhook token, if it may be used now.
fn webhook<'a>(
    state: &'a mut Fake,
    app: &str,
    token: &str,
) -> Result<&'a mut Interaction, Response> {
    if app != state.application {
        return Err(error(404, 10015, "Unknown Webhook"));
    }
    let Some(interaction) = state.interactions.get_mut(token) else {
        return Err(error(401, 50027, "Invalid Webhook Token"));
    };
    if interaction.expired || interaction.created.elapsed() > TOKEN_LIFETIME {
        return Err(error(401, 50027, "Invalid Webhook Token"));
    }
    if interaction.ack.is_none() {
        return Err(error(404, 10015, "Unknown Webhook"));
    }
    Ok(interaction)
}

async fn followup(
    State(state): State<Shared>,
    Path((app, token)): Path<(String, String)>,
    request: Request,
) -> Response {
    let limit = lock(&state).upload_limit;
    let (body, files) = match read_body(request, limit).await {
        Ok(read) => read,
        Err(response) => return response,
    };
    let mut state = lock(&state);
    if let Some(response) = limited(&mut state) {
        return response;
    }
    let (id, channel, ack, original) = match webhook(&mut state, &app, &token) {
        Ok(interaction) => (
            interaction.id.clone(),
            interaction.channel.clone(),
            interaction.ack,
            interaction.original.clone(),
        ),
        Err(response) => return response,
    };
    if let Err(response) = check_message(&body, files.len()) {
        return response;
    }
    // "When using this endpoint directly after responding to an interaction with
    // DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE, this endpoint will function as Edit Original
    // Interaction Response … The ephemeral flag will be ignored, and the value you provided in
    // the initial defer response will be preserved" (Create Followup Message,
    // https://discord.com/developers/docs/interactions/receiving-and-responding).
    if ack == Some(5)
        && let Some(loading) = state
            .messages
            .iter_mut()
            .find(|m| Some(&m.id) == original.as_ref() && m.loading)
    {
        if loading.deleted {
            return error(404, 10008, "Unknown Message");
        }
        edit(loading, &body, files);
        return Json(message_json(loading)).into_response();
    }
    let message_id = state.snowflake();
    let message = Message::from_body(
        message_id.clone(),
        channel,
        Via::Followup,
        Some(id),
        &body,
        files,
    );
    state.messages.push(message.clone());
    Json(message_json(&message)).into_response()
}

fn message_json(message: &Message) -> Value {
    json!({"id": message.id, "channel_id": message.channel, "content": message.content,
           "embeds": message.embeds, "components": message.components, "flags": message.flags,
           "type": 0, "author": {"id": BOT_USER, "username": "imagegpt", "bot": true},
           "attachments": message.files.iter().map(|(name, size)| json!({"filename": name, "size": size})).collect::<Vec<_>>()})
}

async fn webhook_message(
    State(state): State<Shared>,
    method: Method,
    Path((app, token, message)): Path<(String, String, String)>,
    request: Request,
) -> Response {
    let limit = lock(&state).upload_limit;
    let (body, files) = if method == Method::PATCH {
        match read_body(request, limit).await {
            Ok(read) => read,
            Err(response) => return response,
        }
    } else {
        (Value::Null, Vec::new())
    };
    let mut state = lock(&state);
    if let Some(response) = limited(&mut state) {
        return response;
    }
    let (interaction, original) = match webhook(&mut state, &app, &token) {
        Ok(interaction) => (interaction.id.clone(), interaction.original.clone()),
        Err(response) => return response,
    };
    let target = if message == "@original" {
        original.clone()
    } else {
        Some(message)
    };
    // A token reaches its own messages, and (for a button) the message the button was on.
    let found = state.messages.iter_mut().find(|m| {
        Some(&m.id) == target.as_ref()
            && !m.deleted
            && (m.interaction.as_deref() == Some(interaction.as_str())
                || Some(&m.id) == original.as_ref())
    });
    let Some(found) = found else {
        return error(404, 10008, "Unknown Message");
    };
    if method == Method::DELETE {
        found.deleted = true;
        return StatusCode::NO_CONTENT.into_response();
    }
    if method == Method::GET {
        return Json(message_json(found)).into_response();
    }
    if let Err(response) = check_message(&body, files.len()) {
        return response;
    }
    edit(found, &body, files);
    Json(message_json(found)).into_response()
}

fn edit(message: &mut Message, body: &Value, files: Vec<(String, usize)>) {
    if let Some(content) = body["content"].as_str() {
        message.content = content.into();
    }
    if let Some(embeds) = body["embeds"].as_array() {
        message.embeds = embeds.clone();
    }
    if body.get("components").is_some() {
        message.components = body["components"].clone();
    }
    if !files.is_empty() {
        message.files = files;
    }
    message.loading = false;
    message.edits += 1;
}

/// A request made with the bot token: its body and files.
async fn bot_request(
    state: &Shared,
    request: Request,
) -> Result<(Value, Vec<(String, usize)>), Response> {
    let limit = lock(state).upload_limit;
    if !authorised(&lock(state), request.headers()) {
        return Err(unauthorised());
    }
    read_body(request, limit).await
}

async fn channel_post(
    State(state): State<Shared>,
    Path(channel): Path<String>,
    request: Request,
) -> Response {
    let (body, files) = match bot_request(&state, request).await {
        Ok(read) => read,
        Err(response) => return response,
    };
    let mut state = lock(&state);
    if let Some(response) = limited(&mut state) {
        return response;
    }
    if state.denied.contains(&channel) {
        return error(403, 50001, "Missing Access");
    }
    let closed = state
        .dms
        .iter()
        .any(|(person, dm)| *dm == channel && state.closed_dms.contains(person));
    if closed {
        return error(403, 50007, "Cannot send messages to this user");
    }
    if let Err(response) = check_message(&body, files.len()) {
        return response;
    }
    if body["flags"].as_u64().is_some_and(|f| f & 64 != 0) {
        return form_error(
            "flags",
            "Ephemeral messages can only be sent by interactions.",
        );
    }
    let id = state.snowflake();
    // Checked above: a channel message is never ephemeral.
    let message = Message::from_body(id, channel, Via::Bot, None, &body, files);
    state.messages.push(message.clone());
    Json(message_json(&message)).into_response()
}

async fn channel_edit(
    State(state): State<Shared>,
    Path((channel, message)): Path<(String, String)>,
    request: Request,
) -> Response {
    let (body, files) = match bot_request(&state, request).await {
        Ok(read) => read,
        Err(response) => return response,
    };
    let mut state = lock(&state);
    if let Some(response) = limited(&mut state) {
        return response;
    }
    if let Err(response) = check_message(&body, files.len()) {
        return response;
    }
    // The bot may edit its own messages; ephemeral ones are not in any channel.
    let found = state
        .messages
        .iter_mut()
        .find(|m| m.id == message && !m.deleted && !m.ephemeral() && m.channel == channel);
    let Some(found) = found else {
        return error(404, 10008, "Unknown Message");
    };
    edit(found, &body, files);
    Json(message_json(found)).into_response()
}

async fn open_dm(
    State(state): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mut state = lock(&state);
    if !authorised(&state, &headers) {
        return unauthorised();
    }
    let Some(person) = body["recipient_id"].as_str().map(str::to_string) else {
        return form_error("recipient_id", "This field is required");
    };
    let channel = match state.dms.get(&person) {
        Some(channel) => channel.clone(),
        None => {
            let channel = state.snowflake();
            state.dms.insert(person.clone(), channel.clone());
            channel
        }
    };
    Json(json!({"id": channel, "type": 1, "recipients": [{"id": person}]})).into_response()
}

async fn download(
    State(state): State<Shared>,
    Path((id, name)): Path<(String, String)>,
) -> Response {
    match lock(&state).files.get(&format!("{id}/{name}")) {
        Some(bytes) => bytes.clone().into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "This content is no longer available.",
        )
            .into_response(),
    }
}
