//! The Telegram Bot API (`https://api.telegram.org/bot<token>/<method>`, files under
//! `/file/bot<token>/<path>`), answering `{"ok": true, "result": …}` or
//! `{"ok": false, "error_code": N, "description": "…", "parameters": {"retry_after": N}}`.
//!
//! Strictness, as Telegram: the token must match; `chat_id` and the text are required; text is
//! 1–4,096 characters and captions at most 1,024 after entity parsing (UTF-16 units); HTML must
//! parse (only Telegram's tags, `&` only in entities); callback data is 1–64 bytes; files over
//! 20 MB cannot be downloaded; scripted 429s carry `retry_after`; with [`FakeTelegram::enforce_limits`],
//! messages past Telegram's limits get 429 with `retry_after` as Telegram does (the Bots FAQ, "My
//! bot is hitting limits, how do I avoid this?": about 30 messages a second overall, one a
//! second in a chat, 20 a minute in a group; read 2026-12-03 at
//! <https://core.telegram.org/bots/faq#my-bot-is-hitting-limits-how-do-i-avoid-this>; the
//! live API lets short bursts through, the fake does not); a bot cannot write first to
//! a person who never opened a private chat with it, nor to one who blocked it: 403 with
//! "Forbidden: bot can't initiate conversation with a user" or "Forbidden: bot was blocked by
//! the user" (the Bot API's error catalogue as teloxide-core 0.13 `src/errors.rs` records it,
//! `CantInitiateConversation` and `BotBlocked`; the live API now says "Forbidden:" for both).
//!
//! Tests play the people: [`FakeTelegram::message`] and friends queue updates for `getUpdates`
//! (or post them to the webhook, with its secret), and [`FakeTelegram::sent`] shows what the bot
//! sent.

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::{Map, Value, json};
use tokio::sync::Notify;

use crate::Server;

/// The bot's own user id and username.
pub const BOT_ID: i64 = 7_000_000_001;
pub const BOT_USERNAME: &str = "ImageGptTestBot";
/// The largest file a bot may download.
pub const DOWNLOAD_LIMIT: usize = 20 * 1024 * 1024;
/// The largest file a bot may upload ("Bots can currently send files of any type of up to 50 MB
/// in size", <https://core.telegram.org/bots/api#sending-files>); past it Telegram answers 413.
pub const UPLOAD_LIMIT: usize = 50 * 1024 * 1024;

/// A chat in the fake: a private chat has the person's id, a group a negative id.
#[derive(Debug, Clone, PartialEq)]
pub struct Chat {
    pub id: i64,
    pub group: bool,
}

impl Chat {
    pub fn private(user: i64) -> Chat {
        Chat {
            id: user,
            group: false,
        }
    }

    pub fn group(id: i64) -> Chat {
        Chat {
            id: -id.abs(),
            group: true,
        }
    }

    fn json(&self) -> Value {
        if self.group {
            json!({ "id": self.id, "type": "supergroup", "title": "Test group" })
        } else {
            json!({ "id": self.id, "type": "private", "first_name": "Person" })
        }
    }
}

/// Something the bot sent or changed, as the fake recorded it.
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    pub method: String,
    pub chat_id: i64,
    pub message_id: i64,
    /// The text or caption as a person sees it (entities parsed).
    pub text: String,
    pub reply_to: Option<i64>,
    /// Button labels and callback data, row by row.
    pub buttons: Vec<Vec<(String, String)>>,
    /// For media: the uploaded bytes' length.
    pub media_bytes: usize,
    /// For answerCallbackQuery: whether it was an alert.
    pub alert: bool,
    /// For sendDocument: whether a preview (thumbnail) was attached.
    pub thumbnail: bool,
}

/// The bot's answer to a pre-checkout query: `ok`, and the error message when not.
pub type PreCheckoutAnswer = (bool, Option<String>);

/// A pre-checkout query Telegram asked: when, for whom and what, and the bot's answer.
#[derive(Debug)]
struct PreCheckout {
    asked: std::time::Instant,
    user: i64,
    payload: String,
    total: u64,
    answer: Option<PreCheckoutAnswer>,
}

#[derive(Debug, Default)]
struct Fake {
    token: String,
    origin: String,
    updates: VecDeque<Value>,
    next_update: i64,
    next_message: i64,
    next_file: u64,
    files: BTreeMap<String, (String, Vec<u8>, usize)>,
    messages: BTreeMap<(i64, i64), Value>,
    sent: Vec<Sent>,
    calls: Vec<String>,
    rate_limited: u32,
    retry_after: u64,
    /// Polls answered only after this many more (see [`FakeTelegram::answer_polls`]).
    polls_left: Option<u32>,
    webhook: Option<(String, Option<String>)>,
    commands: Vec<(String, String)>,
    /// Stars invoices sent: (chat, payload, amount in XTR).
    invoices: Vec<(i64, String, u64)>,
    /// Pre-checkout queries asked, by id: when asked and, once answered, the answer.
    pre_checkouts: BTreeMap<String, PreCheckout>,
    /// Stars charges paid and whether each was refunded.
    star_charges: BTreeMap<String, (i64, bool)>,
    /// People who opened a private chat with the bot: only they can be written to there.
    started: BTreeSet<i64>,
    /// People who blocked the bot.
    blocked: BTreeSet<i64>,
    /// The largest upload taken, in bytes (Telegram: 50 MB); 0 means the default.
    upload_limit: usize,
    /// Calls answered, by method.
    counts: BTreeMap<String, usize>,
    /// Telegram's sending limits, when enforced: the overall limit per second.
    limits: Option<u32>,
    /// Messages sent lately: overall, and per chat (for the per-chat and group limits).
    recent: VecDeque<tokio::time::Instant>,
    recent_by_chat: BTreeMap<i64, VecDeque<tokio::time::Instant>>,
    /// Messages refused with 429 by the limits.
    limited: usize,
}

type Shared = Arc<(Mutex<Fake>, Notify)>;

/// A running fake Bot API.
#[derive(Debug)]
pub struct FakeTelegram {
    server: Server,
    state: Shared,
    http: Client,
}

/// A minimal HTTP/1 client for posting updates to the bot's webhook.
#[derive(Debug, Default, Clone)]
struct Client;

impl FakeTelegram {
    /// Starts a fake that accepts `token`.
    pub async fn start(token: &str) -> FakeTelegram {
        let state: Shared = Arc::new((
            Mutex::new(Fake {
                token: token.to_string(),
                next_update: 1,
                next_message: 1,
                ..Fake::default()
            }),
            Notify::new(),
        ));
        let router = Router::new()
            .route("/{bot}/{method}", post(method).get(method_get))
            .route("/file/{bot}/{*path}", get(file))
            .with_state(state.clone());
        let server = Server::start(router).await;
        lock(&state).origin = server.origin();
        FakeTelegram {
            server,
            state,
            http: Client,
        }
    }

    /// The value for `TELEGRAM_API_URL`.
    pub fn url(&self) -> String {
        self.server.origin()
    }

    /// Everything the bot sent, in order.
    pub fn sent(&self) -> Vec<Sent> {
        lock(&self.state).sent.clone()
    }

    /// Updates not yet confirmed by the bot (Telegram keeps them until a later offset).
    pub fn pending_updates(&self) -> usize {
        lock(&self.state).updates.len()
    }

    /// The Bot API methods called, in order.
    pub fn calls(&self) -> Vec<String> {
        lock(&self.state).calls.clone()
    }

    /// The commands the bot registered with setMyCommands.
    pub fn commands(&self) -> Vec<(String, String)> {
        lock(&self.state).commands.clone()
    }

    /// The webhook URL and secret the bot registered, if any.
    pub fn webhook(&self) -> Option<(String, Option<String>)> {
        lock(&self.state).webhook.clone()
    }

    /// From now on, messages past Telegram's limits get 429: more than `per_second` a second
    /// overall, more than one a second in a chat, more than 20 a minute in a group. (A few
    /// milliseconds of leeway stand for the network between the bot and Telegram.)
    pub fn enforce_limits(&self, per_second: u32) {
        lock(&self.state).limits = Some(per_second);
    }

    /// How many messages the limits refused with 429.
    pub fn limited(&self) -> usize {
        lock(&self.state).limited
    }

    /// How many calls of `method` were answered successfully, without copying what was sent.
    pub fn count(&self, method: &str) -> usize {
        lock(&self.state).counts.get(method).copied().unwrap_or(0)
    }

    /// Waits until `count(method)` reaches `n`, or `within` has passed; the count then.
    pub async fn wait_for_count(&self, within: Duration, method: &str, n: usize) -> usize {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let count = self.count(method);
            if count >= n || tokio::time::Instant::now() >= deadline {
                return count;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// The next `n` sending calls get 429 with `retry_after` seconds.
    pub fn rate_limit(&self, n: u32, retry_after: u64) {
        let mut fake = lock(&self.state);
        fake.rate_limited = n;
        fake.retry_after = retry_after;
    }

    /// Answers only the next `n` calls of `getUpdates`; later ones fail with `502 Bad Gateway`
    /// without confirming anything, as when the bot dies before it asks again (`None` answers
    /// every poll again).
    pub fn answer_polls(&self, n: Option<u32>) {
        lock(&self.state).polls_left = n;
    }

    /// Stores a file people can attach; returns its file id.
    pub fn upload(&self, bytes: Vec<u8>) -> String {
        let size = bytes.len();
        self.upload_claiming(bytes, size)
    }

    /// Stores a file whose declared size is `size` (to stand for huge files cheaply).
    pub fn upload_claiming(&self, bytes: Vec<u8>, size: usize) -> String {
        let mut fake = lock(&self.state);
        fake.next_file += 1;
        let id = format!("AgACAgIAAxkBAAI{:06}", fake.next_file);
        let path = format!("photos/file_{}.jpg", fake.next_file);
        fake.files.insert(id.clone(), (path, bytes, size));
        id
    }

    /// A person with `user` id writes `text` in `chat`; returns the message id.
    pub fn message(&self, chat: &Chat, user: i64, text: &str) -> i64 {
        self.post(chat, user, |m| {
            m.insert("text".into(), json!(text));
            if let Some(entities) = command_entities(text) {
                m.insert("entities".into(), entities);
            }
        })
    }

    /// `user` forwards into `chat` a message `original` wrote: `from` is who forwards, and
    /// `forward_origin` (a `MessageOriginUser`, Bot API 7.0) names the original sender
    /// (<https://core.telegram.org/bots/api#messageoriginuser>).
    pub fn forward(&self, chat: &Chat, user: i64, original: i64, text: &str) -> i64 {
        self.post(chat, user, |m| {
            m.insert("text".into(), json!(text));
            m.insert(
                "forward_origin".into(),
                json!({ "type": "user", "date": 1_764_064_000, "sender_user": person(original) }),
            );
            if let Some(entities) = command_entities(text) {
                m.insert("entities".into(), entities);
            }
        })
    }

    /// The declared size of an uploaded file.
    fn size_of(&self, file_id: &str) -> usize {
        lock(&self.state).files.get(file_id).map_or(0, |f| f.2)
    }

    /// A person sends a photo (with `caption`, and in an album when `group_id` is set).
    pub fn photo(
        &self,
        chat: &Chat,
        user: i64,
        file_id: &str,
        caption: Option<&str>,
        album: Option<&str>,
    ) -> i64 {
        let size = self.size_of(file_id);
        self.post(chat, user, |m| {
            m.insert(
                "photo".into(),
                json!([
                    { "file_id": format!("{file_id}_thumb"), "file_unique_id": "t", "width": 90, "height": 90, "file_size": 1000 },
                    { "file_id": file_id, "file_unique_id": "u", "width": 1280, "height": 960, "file_size": size },
                ]),
            );
            if let Some(caption) = caption {
                m.insert("caption".into(), json!(caption));
            }
            if let Some(album) = album {
                m.insert("media_group_id".into(), json!(album));
            }
        })
    }

    /// A person sends a file as a document (full resolution), with `caption`.
    pub fn document(
        &self,
        chat: &Chat,
        user: i64,
        file_id: &str,
        mime: &str,
        caption: &str,
    ) -> i64 {
        let size = self.size_of(file_id);
        self.post(chat, user, |m| {
            m.insert(
                "document".into(),
                json!({ "file_id": file_id, "file_unique_id": "d", "file_name": "photo.png",
                        "mime_type": mime, "file_size": size }),
            );
            m.insert("caption".into(), json!(caption));
        })
    }

    /// A person replies to message `to` with `text`.
    pub fn reply(&self, chat: &Chat, user: i64, to: i64, text: &str) -> i64 {
        let original = lock(&self.state).messages.get(&(chat.id, to)).cloned();
        self.post(chat, user, |m| {
            m.insert("text".into(), json!(text));
            if let Some(original) = original {
                m.insert("reply_to_message".into(), original);
            }
        })
    }

    /// A person presses a button with `data` under the bot's message `message_id`.
    pub fn press(&self, chat: &Chat, user: i64, message_id: i64, data: &str) {
        let mut fake = lock(&self.state);
        let message = fake
            .messages
            .get(&(chat.id, message_id))
            .cloned()
            .unwrap_or_else(|| json!({ "message_id": message_id, "date": 0, "chat": chat.json() }));
        let id = fake.next_update;
        fake.next_update += 1;
        let update = json!({
            "update_id": id,
            "callback_query": {
                "id": format!("cb{id}"),
                "from": person(user),
                "message": message,
                "chat_instance": "ci",
                "data": data,
            }
        });
        fake.updates.push_back(update);
        drop(fake);
        self.state.1.notify_waiters();
    }

    /// The Stars invoices the bot sent: (chat, payload, amount).
    pub fn invoices(&self) -> Vec<(i64, String, u64)> {
        lock(&self.state).invoices.clone()
    }

    /// A person opens the payment form for an invoice: Telegram asks the bot (pre_checkout_query)
    /// and waits up to 10 seconds. Returns the query id.
    ///
    /// # Panics
    ///
    /// When the bot sent no invoice with this payload and total: Telegram has no form to open.
    pub fn pre_checkout(&self, user: i64, payload: &str, total: u64) -> String {
        let mut fake = lock(&self.state);
        assert!(
            fake.invoices
                .iter()
                .any(|(_, sent, amount)| sent == payload && *amount == total),
            "Telegram has no invoice for {payload:?} at {total} XTR"
        );
        let id = fake.next_update;
        fake.next_update += 1;
        let query = format!("pcq{id}");
        fake.pre_checkouts.insert(
            query.clone(),
            PreCheckout {
                asked: std::time::Instant::now(),
                user,
                payload: payload.to_string(),
                total,
                answer: None,
            },
        );
        fake.updates.push_back(json!({
            "update_id": id,
            "pre_checkout_query": {
                "id": query, "from": person(user), "currency": "XTR",
                "total_amount": total, "invoice_payload": payload,
            }
        }));
        drop(fake);
        self.state.1.notify_waiters();
        query
    }

    /// The bot's answer to a pre-checkout query: `(ok, error_message)`, once answered.
    pub fn pre_checkout_answer(&self, query: &str) -> Option<PreCheckoutAnswer> {
        lock(&self.state)
            .pre_checkouts
            .get(query)
            .and_then(|q| q.answer.clone())
    }

    /// The payment went through: Telegram posts a service message with `successful_payment`
    /// (call it twice to replay the same charge). The charge id is `charge`.
    ///
    /// # Panics
    ///
    /// When the bot did not approve a pre-checkout for this person, payload and total: Telegram
    /// takes no payment then.
    pub fn successful_payment(
        &self,
        chat: &Chat,
        user: i64,
        payload: &str,
        total: u64,
        charge: &str,
    ) {
        let mut fake = lock(&self.state);
        assert!(
            fake.pre_checkouts.values().any(|q| q.user == user
                && q.payload == payload
                && q.total == total
                && q.answer.as_ref().is_some_and(|(ok, _)| *ok)),
            "Telegram takes no payment from {user} for {payload:?} without an approved pre-checkout"
        );
        fake.star_charges
            .entry(charge.to_string())
            .or_insert((user, false));
        drop(fake);
        self.post(chat, user, |m| {
            m.insert(
                "successful_payment".into(),
                json!({
                    "currency": "XTR", "total_amount": total, "invoice_payload": payload,
                    "telegram_payment_charge_id": charge, "provider_payment_charge_id": "",
                }),
            );
        });
    }

    /// Whether a Stars charge was refunded.
    pub fn star_refunded(&self, charge: &str) -> bool {
        lock(&self.state)
            .star_charges
            .get(charge)
            .is_some_and(|(_, r)| *r)
    }

    /// Queues any update JSON as it is (for malformed and unknown updates).
    pub fn raw(&self, update: Value) {
        lock(&self.state).updates.push_back(update);
        self.state.1.notify_waiters();
    }

    /// Lowers the upload limit, so tests need not send 50 MB.
    pub fn set_upload_limit(&self, bytes: usize) {
        lock(&self.state).upload_limit = bytes;
    }

    /// `user` blocks the bot: it can no longer write to them.
    pub fn block(&self, user: i64) {
        lock(&self.state).blocked.insert(user);
    }

    fn post(&self, chat: &Chat, user: i64, fill: impl FnOnce(&mut Map<String, Value>)) -> i64 {
        let mut fake = lock(&self.state);
        if !chat.group {
            // Writing to the bot in private is what opens the chat (Start).
            fake.started.insert(user);
        }
        let message_id = fake.next_message;
        fake.next_message += 1;
        let mut message = Map::new();
        message.insert("message_id".into(), json!(message_id));
        message.insert("date".into(), json!(1_764_064_800));
        message.insert("chat".into(), chat.json());
        message.insert("from".into(), person(user));
        fill(&mut message);
        let message = Value::Object(message);
        fake.messages.insert((chat.id, message_id), message.clone());
        let id = fake.next_update;
        fake.next_update += 1;
        fake.updates
            .push_back(json!({ "update_id": id, "message": message }));
        drop(fake);
        self.state.1.notify_waiters();
        message_id
    }

    /// Posts every queued update to the registered webhook with `secret` as the header (the
    /// registered one when `None`); returns the HTTP statuses.
    pub async fn deliver_to_webhook(&self, secret: Option<&str>) -> Vec<u16> {
        let (url, registered, updates) = {
            let mut fake = lock(&self.state);
            let (url, registered) = fake.webhook.clone().unwrap_or_default();
            (url, registered, fake.updates.drain(..).collect::<Vec<_>>())
        };
        let secret = secret.map(str::to_string).or(registered);
        let mut statuses = Vec::new();
        for update in updates {
            statuses.push(
                self.http
                    .post(&url, secret.as_deref(), &update.to_string())
                    .await,
            );
        }
        statuses
    }

    /// Waits (up to `within`) until `done` holds for what was sent.
    pub async fn wait_for(&self, within: Duration, done: impl Fn(&[Sent]) -> bool) -> Vec<Sent> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let sent = self.sent();
            if done(&sent) || tokio::time::Instant::now() >= deadline {
                return sent;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Client {
    async fn post(&self, url: &str, secret: Option<&str>, body: &str) -> u16 {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let Some(rest) = url.strip_prefix("http://") else {
            return 0;
        };
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let Ok(mut stream) = tokio::net::TcpStream::connect(host).await else {
            return 0;
        };
        let secret = secret
            .map(|s| format!("X-Telegram-Bot-Api-Secret-Token: {s}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "POST /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n{secret}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(request.as_bytes()).await.is_err() {
            return 0;
        }
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer)
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0)
    }
}

fn person(user: i64) -> Value {
    json!({ "id": user, "is_bot": false, "first_name": format!("User{user}"), "username": format!("user{user}") })
}

fn lock(state: &Shared) -> MutexGuard<'_, Fake> {
    state
        .0
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The `entities` Telegram marks a message starting with a command with.
fn command_entities(text: &str) -> Option<Value> {
    let command = text
        .split_whitespace()
        .next()
        .filter(|w| w.starts_with('/'))?;
    Some(json!([{ "type": "bot_command", "offset": 0, "length": utf16(command) }]))
}

fn utf16(text: &str) -> usize {
    text.encode_utf16().count()
}

fn ok(result: Value) -> Response {
    Json(json!({ "ok": true, "result": result })).into_response()
}

fn fail(code: u16, description: &str) -> Response {
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST),
        Json(json!({ "ok": false, "error_code": code, "description": description })),
    )
        .into_response()
}

/// The parameters of a call, from JSON, a form, or the query, as JSON values (form fields that
/// hold JSON, like `reply_markup`, are parsed), plus any uploaded file's length.
struct Call {
    params: Map<String, Value>,
    upload: usize,
    /// The `thumbnail` file part, if one was attached.
    thumbnail: Option<Vec<u8>>,
}

async fn read_call(headers: &HeaderMap, body: Bytes) -> Result<Call, Response> {
    let kind = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if kind.starts_with("multipart/form-data") {
        let boundary =
            multer_boundary(kind).ok_or_else(|| fail(400, "Bad Request: invalid multipart"))?;
        return parse_multipart(&body, &boundary);
    }
    if body.is_empty() {
        return Ok(Call {
            params: Map::new(),
            upload: 0,
            thumbnail: None,
        });
    }
    if kind.starts_with("application/json") {
        return match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(params)) => Ok(Call {
                params,
                upload: 0,
                thumbnail: None,
            }),
            _ => Err(fail(400, "Bad Request: can't parse JSON")),
        };
    }
    if kind.starts_with("application/x-www-form-urlencoded") {
        let params = String::from_utf8_lossy(&body)
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k.to_string(), form_value(&percent_decode(v))))
            .collect();
        return Ok(Call {
            params,
            upload: 0,
            thumbnail: None,
        });
    }
    Err(fail(400, "Bad Request: unsupported content type"))
}

fn form_value(text: &str) -> Value {
    if text.starts_with('{') || text.starts_with('[') {
        serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
    } else {
        Value::String(text.to_string())
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn multer_boundary(content_type: &str) -> Option<String> {
    content_type
        .split(';')
        .find_map(|part| part.trim().strip_prefix("boundary="))
        .map(|b| b.trim_matches('"').to_string())
}

/// Splits a multipart body into text fields and file parts (their length only).
fn parse_multipart(body: &[u8], boundary: &str) -> Result<Call, Response> {
    let delimiter = format!("--{boundary}");
    let mut params = Map::new();
    let mut upload = 0;
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let text = body;
    let positions: Vec<usize> = find_all(text, delimiter.as_bytes());
    if positions.is_empty() {
        return Err(fail(400, "Bad Request: invalid multipart"));
    }
    for window in positions.windows(2) {
        let part = &text[window[0] + delimiter.len()..window[1]];
        let part = part.strip_prefix(b"\r\n").unwrap_or(part);
        let Some(split) = find_all(part, b"\r\n\r\n").first().copied() else {
            continue;
        };
        let head = String::from_utf8_lossy(&part[..split]).to_string();
        let mut content = &part[split + 4..];
        if content.ends_with(b"\r\n") {
            content = &content[..content.len() - 2];
        }
        let name = head
            .split(';')
            .find_map(|p| p.trim().strip_prefix("name="))
            .map(|n| n.trim_matches('"').to_string())
            .unwrap_or_default();
        if head.contains("filename=") {
            files.insert(name.clone(), content.to_vec());
            params
                .entry(name)
                .or_insert_with(|| Value::String("<file>".into()));
        } else {
            params.insert(name, form_value(&String::from_utf8_lossy(content)));
        }
    }
    // A thumbnail is the part named `thumbnail`, or the part its `attach://NAME` names.
    let thumbnail_part = match params.get("thumbnail").and_then(Value::as_str) {
        Some(attach) if attach.starts_with("attach://") => attach["attach://".len()..].to_string(),
        _ => "thumbnail".to_string(),
    };
    let thumbnail = files.remove(&thumbnail_part);
    upload += files.values().map(Vec::len).sum::<usize>();
    Ok(Call {
        params,
        upload,
        thumbnail,
    })
}

fn find_all(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return Vec::new();
    }
    (0..=haystack.len() - needle.len())
        .filter(|&i| &haystack[i..i + needle.len()] == needle)
        .collect()
}

/// The visible text of Telegram HTML, or the error Telegram gives.
pub fn parse_html(text: &str) -> Result<String, String> {
    const TAGS: &[&str] = &[
        "b",
        "strong",
        "i",
        "em",
        "u",
        "ins",
        "s",
        "strike",
        "del",
        "span",
        "tg-spoiler",
        "a",
        "code",
        "pre",
        "blockquote",
        "tg-emoji",
    ];
    let mut visible = String::new();
    let mut open: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        let offset = text.len() - rest.len();
        match c {
            '<' => {
                let end = rest
                    .find('>')
                    .ok_or_else(|| format!("Unclosed start tag at byte offset {offset}"))?;
                let inner = &rest[1..end];
                let (closing, name) = match inner.strip_prefix('/') {
                    Some(name) => (true, name.trim()),
                    None => (false, inner.split_whitespace().next().unwrap_or("")),
                };
                if !TAGS.contains(&name) {
                    return Err(format!(
                        "Unsupported start tag \"{name}\" at byte offset {offset}"
                    ));
                }
                if closing {
                    if open.pop().as_deref() != Some(name) {
                        return Err(format!(
                            "Unmatched end tag at byte offset {offset}, expected \"</{}>\", found \"</{name}>\"",
                            open.last().map(String::as_str).unwrap_or("")
                        ));
                    }
                } else {
                    open.push(name.to_string());
                }
                rest = &rest[end + 1..];
            }
            '&' => {
                let end = rest
                    .find(';')
                    .filter(|&e| e <= 10)
                    .ok_or_else(|| format!("Character entity expected at byte offset {offset}"))?;
                let entity = &rest[1..end];
                let decoded = match entity {
                    "lt" => '<',
                    "gt" => '>',
                    "amp" => '&',
                    "quot" => '"',
                    numeric if numeric.starts_with('#') => numeric[1..]
                        .parse::<u32>()
                        .ok()
                        .and_then(char::from_u32)
                        .ok_or_else(|| format!("Invalid entity at byte offset {offset}"))?,
                    _ => return Err(format!("Unsupported HTML entity at byte offset {offset}")),
                };
                visible.push(decoded);
                rest = &rest[end + 1..];
            }
            other => {
                visible.push(other);
                rest = &rest[other.len_utf8()..];
            }
        }
    }
    if let Some(tag) = open.last() {
        return Err(format!(
            "Can't find end tag corresponding to start tag \"{tag}\""
        ));
    }
    Ok(visible)
}

fn buttons(markup: Option<&Value>) -> Result<Vec<Vec<(String, String)>>, Response> {
    let Some(markup) = markup else {
        return Ok(Vec::new());
    };
    let rows = markup
        .get("inline_keyboard")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            fail(
                400,
                "Bad Request: can't parse reply keyboard markup JSON object",
            )
        })?;
    let mut out = Vec::new();
    for row in rows {
        let mut cells = Vec::new();
        for button in row.as_array().into_iter().flatten() {
            let label = button.get("text").and_then(Value::as_str).unwrap_or("");
            let data = button.get("callback_data").and_then(Value::as_str);
            let url = button.get("url").and_then(Value::as_str);
            if label.is_empty() {
                return Err(fail(
                    400,
                    "Bad Request: text buttons are unallowed in the inline keyboard",
                ));
            }
            match (data, url) {
                (Some(data), _) if data.is_empty() || data.len() > 64 => {
                    return Err(fail(400, "Bad Request: BUTTON_DATA_INVALID"));
                }
                (Some(data), _) => cells.push((label.to_string(), data.to_string())),
                (None, Some(url)) => cells.push((label.to_string(), format!("url:{url}"))),
                (None, None) => {
                    return Err(fail(400, "Bad Request: can't parse inline keyboard button"));
                }
            }
        }
        out.push(cells);
    }
    Ok(out)
}

/// The methods this fake implements.
const METHODS: &[&str] = &[
    "getMe",
    "getUpdates",
    "setMyCommands",
    "setWebhook",
    "deleteWebhook",
    "answerCallbackQuery",
    "sendChatAction",
    "getFile",
    "deleteMessage",
    "sendMessage",
    "editMessageText",
    "editMessageReplyMarkup",
    "sendPhoto",
    "sendDocument",
    "sendVideo",
    "sendAnimation",
    "sendAudio",
    "sendInvoice",
    "answerPreCheckoutQuery",
    "refundStarPayment",
];

async fn method_get(
    state: State<Shared>,
    path: Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    method(state, path, headers, Bytes::new()).await
}

async fn method(
    State(state): State<Shared>,
    Path((bot, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if bot.strip_prefix("bot") != Some(lock(&state).token.as_str()) {
        return fail(401, "Unauthorized");
    }
    // Method names are case-insensitive (teloxide sends `GetMe`); record Telegram's spelling.
    let Some(name) = METHODS
        .iter()
        .find(|m| m.eq_ignore_ascii_case(&name))
        .map(|m| (*m).to_string())
    else {
        return fail(404, "Not Found");
    };
    let call = match read_call(&headers, body).await {
        Ok(call) => call,
        Err(response) => return response,
    };
    lock(&state).calls.push(name.clone());
    if name == "getUpdates" {
        return get_updates(&state, &call.params).await;
    }
    let mut fake = lock(&state);
    let limit = match fake.upload_limit {
        0 => UPLOAD_LIMIT,
        limit => limit,
    };
    if call.upload > limit {
        return fail(413, "Request Entity Too Large");
    }
    let response = handle(&mut fake, &name, &call);
    if response.status().is_success() {
        *fake.counts.entry(name).or_default() += 1;
    }
    response
}

async fn get_updates(state: &Shared, params: &Map<String, Value>) -> Response {
    let offset = params.get("offset").and_then(as_i64).unwrap_or(0);
    let timeout = params
        .get("timeout")
        .and_then(as_i64)
        .unwrap_or(0)
        .clamp(0, 50);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout as u64);
    {
        let mut fake = lock(state);
        match fake.polls_left {
            Some(0) => return fail(502, "Bad Gateway"),
            Some(n) => fake.polls_left = Some(n - 1),
            None => {}
        }
    }
    loop {
        let notified = state.1.notified();
        {
            let mut fake = lock(state);
            if fake.webhook.is_some() {
                return fail(
                    409,
                    "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first",
                );
            }
            // Confirming an offset forgets everything before it, as Telegram does.
            while fake
                .updates
                .front()
                .and_then(|u| u.get("update_id"))
                .and_then(Value::as_i64)
                .is_some_and(|id| id < offset)
            {
                fake.updates.pop_front();
            }
            if !fake.updates.is_empty() || tokio::time::Instant::now() >= deadline {
                let batch: Vec<Value> = fake.updates.iter().take(100).cloned().collect();
                return ok(Value::Array(batch));
            }
        }
        let _ = tokio::time::timeout_at(deadline, notified).await;
    }
}

/// Leeway for the network between the bot and Telegram, in the limits.
const LEEWAY: Duration = Duration::from_millis(10);

/// `Some(retry_after)` when one more message to `chat` now would break Telegram's limits;
/// otherwise the message is counted.
fn over_limits(fake: &mut Fake, per_second: u32, chat: i64) -> Option<u64> {
    let now = tokio::time::Instant::now();
    let second = Duration::from_secs(1) - LEEWAY;
    let minute = Duration::from_secs(60) - LEEWAY;
    while fake.recent.front().is_some_and(|at| now - *at >= second) {
        fake.recent.pop_front();
    }
    let mine = fake.recent_by_chat.entry(chat).or_default();
    while mine.front().is_some_and(|at| now - *at >= minute) {
        mine.pop_front();
    }
    let in_chat_last_second = mine.iter().filter(|at| now - **at < second).count();
    // Groups and channels have negative ids.
    let group_full = chat < 0 && mine.len() >= 20;
    if in_chat_last_second >= 1 || group_full {
        return Some(if group_full { 3 } else { 1 });
    }
    if fake.recent.len() >= per_second as usize {
        return Some(1);
    }
    mine.push_back(now);
    fake.recent.push_back(now);
    None
}

fn as_i64(value: &Value) -> Option<i64> {
    value
        .as_i64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
}

/// Telegram's 429, with how long to wait.
fn too_many_requests(retry_after: u64) -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        Json(json!({
            "ok": false,
            "error_code": 429,
            "description": format!("Too Many Requests: retry after {retry_after}"),
            "parameters": { "retry_after": retry_after },
        })),
    )
        .into_response()
}

fn handle(fake: &mut Fake, name: &str, call: &Call) -> Response {
    let params = &call.params;
    let sending = name.starts_with("send") || name.starts_with("edit");
    if sending && name != "sendChatAction" && fake.rate_limited > 0 {
        fake.rate_limited -= 1;
        return too_many_requests(fake.retry_after);
    }
    let chat_id = params.get("chat_id").and_then(as_i64);
    let message = name.starts_with("send") && name != "sendChatAction";
    if message
        && let (Some(per_second), Some(chat)) = (fake.limits, chat_id)
        && let Some(retry_after) = over_limits(fake, per_second, chat)
    {
        fake.limited += 1;
        return too_many_requests(retry_after);
    }
    // A private chat's id is the person's; a bot may only write there once they opened it.
    if (sending || name == "sendInvoice")
        && let Some(person) = chat_id.filter(|id| *id > 0)
    {
        if fake.blocked.contains(&person) {
            return fail(403, "Forbidden: bot was blocked by the user");
        }
        if !fake.started.contains(&person) {
            return fail(
                403,
                "Forbidden: bot can't initiate conversation with a user",
            );
        }
    }
    match name {
        "getMe" => ok(json!({
            "id": BOT_ID, "is_bot": true, "first_name": "ImageGPT", "username": BOT_USERNAME,
            "can_join_groups": true, "can_read_all_group_messages": false,
            "supports_inline_queries": false, "can_connect_to_business": false,
            "has_main_web_app": false,
        })),
        "setMyCommands" => {
            let Some(commands) = params.get("commands").and_then(Value::as_array) else {
                return fail(400, "Bad Request: parameter \"commands\" is required");
            };
            let mut parsed = Vec::new();
            for command in commands {
                let name = command.get("command").and_then(Value::as_str).unwrap_or("");
                let description = command
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let name_ok = !name.is_empty()
                    && name.len() <= 32
                    && name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                if !name_ok {
                    return fail(400, "Bad Request: BOT_COMMAND_INVALID");
                }
                if description.is_empty() || description.chars().count() > 256 {
                    return fail(400, "Bad Request: BOT_COMMAND_DESCRIPTION_INVALID");
                }
                parsed.push((name.to_string(), description.to_string()));
            }
            fake.commands = parsed;
            ok(json!(true))
        }
        "setWebhook" => {
            let Some(url) = params.get("url").and_then(Value::as_str) else {
                return fail(400, "Bad Request: parameter \"url\" is required");
            };
            let secret = params
                .get("secret_token")
                .and_then(Value::as_str)
                .map(str::to_string);
            fake.webhook = Some((url.to_string(), secret));
            ok(json!(true))
        }
        "deleteWebhook" => {
            fake.webhook = None;
            ok(json!(true))
        }
        "answerCallbackQuery" => {
            if params
                .get("callback_query_id")
                .and_then(Value::as_str)
                .is_none()
            {
                return fail(
                    400,
                    "Bad Request: parameter \"callback_query_id\" is required",
                );
            }
            let text = params.get("text").and_then(Value::as_str).unwrap_or("");
            if text.chars().count() > 200 {
                return fail(400, "Bad Request: MESSAGE_TOO_LONG");
            }
            fake.sent.push(Sent {
                method: name.into(),
                chat_id: 0,
                message_id: 0,
                text: text.into(),
                reply_to: None,
                buttons: Vec::new(),
                media_bytes: 0,
                alert: params
                    .get("show_alert")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
                    || params.get("show_alert").and_then(Value::as_str) == Some("true"),
                thumbnail: false,
            });
            ok(json!(true))
        }
        "sendChatAction" => {
            if chat_id.is_none() {
                return fail(400, "Bad Request: chat not found");
            }
            ok(json!(true))
        }
        "getFile" => {
            let id = params.get("file_id").and_then(Value::as_str).unwrap_or("");
            match fake.files.get(id) {
                Some((_, _, size)) if *size > DOWNLOAD_LIMIT => {
                    fail(400, "Bad Request: file is too big")
                }
                Some((path, _, size)) => ok(json!({
                    "file_id": id, "file_unique_id": "u", "file_size": size, "file_path": path,
                })),
                None => fail(400, "Bad Request: invalid file_id"),
            }
        }
        "deleteMessage" => ok(json!(true)),
        "sendInvoice" => {
            let Some(chat) = chat_id else {
                return fail(400, "Bad Request: chat not found");
            };
            let text = |key: &str| params.get(key).and_then(Value::as_str).unwrap_or("");
            let (title, description, payload) =
                (text("title"), text("description"), text("payload"));
            if title.is_empty() || title.chars().count() > 32 {
                return fail(400, "Bad Request: INVOICE_TITLE_INVALID");
            }
            if description.is_empty() || description.chars().count() > 255 {
                return fail(400, "Bad Request: INVOICE_DESCRIPTION_INVALID");
            }
            if payload.is_empty() || payload.len() > 128 {
                return fail(400, "Bad Request: INVOICE_PAYLOAD_INVALID");
            }
            // Stars: currency XTR, exactly one price, no provider token.
            if text("currency") != "XTR" {
                return fail(400, "Bad Request: CURRENCY_INVALID");
            }
            if !text("provider_token").is_empty() {
                return fail(400, "Bad Request: PAYMENT_PROVIDER_INVALID");
            }
            let prices = params.get("prices").and_then(Value::as_array);
            let amount = match prices.map(Vec::as_slice) {
                Some([price]) => price.get("amount").and_then(Value::as_u64).unwrap_or(0),
                _ => return fail(400, "Bad Request: STARS_INVOICE_INVALID"),
            };
            if amount == 0 || amount > 10_000 {
                return fail(400, "Bad Request: STARS_INVOICE_INVALID");
            }
            fake.invoices.push((chat, payload.to_string(), amount));
            let message_id = fake.next_message;
            fake.next_message += 1;
            fake.sent.push(Sent {
                method: name.to_string(),
                chat_id: chat,
                message_id,
                text: format!("{title}: {description}"),
                reply_to: None,
                buttons: Vec::new(),
                media_bytes: 0,
                alert: false,
                thumbnail: false,
            });
            ok(
                json!({ "message_id": message_id, "date": 0, "chat": { "id": chat, "type": "private" } }),
            )
        }
        "answerPreCheckoutQuery" => {
            let id = params
                .get("pre_checkout_query_id")
                .and_then(Value::as_str)
                .unwrap_or("");
            let ok_given = params.get("ok").and_then(Value::as_bool).or_else(|| {
                params
                    .get("ok")
                    .and_then(Value::as_str)
                    .map(|v| v == "true")
            });
            let Some(answer) = ok_given else {
                return fail(400, "Bad Request: parameter \"ok\" is required");
            };
            let error = params
                .get("error_message")
                .and_then(Value::as_str)
                .map(str::to_string);
            if !answer && error.as_deref().is_none_or(str::is_empty) {
                return fail(400, "Bad Request: ERROR_MESSAGE_EMPTY");
            }
            match fake.pre_checkouts.get_mut(id) {
                // Telegram drops the query after 10 seconds; each is answered once.
                Some(query)
                    if query.answer.is_none()
                        && query.asked.elapsed() <= Duration::from_secs(10) =>
                {
                    query.answer = Some((answer, error));
                    ok(json!(true))
                }
                _ => fail(
                    400,
                    "Bad Request: query is too old and response timeout expired or query ID is invalid",
                ),
            }
        }
        "refundStarPayment" => {
            let charge = params
                .get("telegram_payment_charge_id")
                .and_then(Value::as_str)
                .unwrap_or("");
            let user = params.get("user_id").and_then(Value::as_i64).or_else(|| {
                params
                    .get("user_id")
                    .and_then(Value::as_str)
                    .and_then(|v| v.parse().ok())
            });
            match fake.star_charges.get_mut(charge) {
                Some((payer, _)) if Some(*payer) != user => {
                    fail(400, "Bad Request: USER_ID_INVALID")
                }
                Some((_, true)) => fail(400, "Bad Request: CHARGE_ALREADY_REFUNDED"),
                Some((_, refunded)) => {
                    *refunded = true;
                    ok(json!(true))
                }
                None => fail(400, "Bad Request: CHARGE_ID_INVALID"),
            }
        }
        "sendMessage"
        | "editMessageText"
        | "sendPhoto"
        | "sendDocument"
        | "sendVideo"
        | "sendAnimation"
        | "sendAudio"
        | "editMessageReplyMarkup" => send(fake, name, call, chat_id),
        _ => fail(404, "Not Found"),
    }
}

fn send(fake: &mut Fake, name: &str, call: &Call, chat_id: Option<i64>) -> Response {
    let params = &call.params;
    let Some(chat_id) = chat_id else {
        return fail(400, "Bad Request: chat_id is empty");
    };
    let is_text = name == "sendMessage" || name == "editMessageText";
    let raw = if is_text {
        params.get("text").and_then(Value::as_str).unwrap_or("")
    } else {
        params.get("caption").and_then(Value::as_str).unwrap_or("")
    };
    let visible = match params.get("parse_mode").and_then(Value::as_str) {
        Some("HTML") => match parse_html(raw) {
            Ok(visible) => visible,
            Err(why) => return fail(400, &format!("Bad Request: can't parse entities: {why}")),
        },
        Some(other) if !other.is_empty() => {
            return fail(
                400,
                &format!("Bad Request: unsupported parse_mode \"{other}\""),
            );
        }
        _ => raw.to_string(),
    };
    if is_text && visible.trim().is_empty() {
        return fail(400, "Bad Request: message text is empty");
    }
    if is_text && utf16(&visible) > 4096 {
        return fail(400, "Bad Request: message is too long");
    }
    if !is_text && name != "editMessageReplyMarkup" && utf16(&visible) > 1024 {
        return fail(400, "Bad Request: message caption is too long");
    }
    let buttons = match buttons(params.get("reply_markup")) {
        Ok(buttons) => buttons,
        Err(response) => return response,
    };
    let media_field = match name {
        "sendPhoto" => Some("photo"),
        "sendDocument" => Some("document"),
        "sendVideo" => Some("video"),
        "sendAnimation" => Some("animation"),
        "sendAudio" => Some("audio"),
        _ => None,
    };
    if let Some(field) = media_field
        && params.get(field).is_none()
    {
        return fail(
            400,
            &format!("Bad Request: there is no {field} in the request"),
        );
    }
    if let Some(thumbnail) = &call.thumbnail {
        // Telegram's rule: a JPEG under 200 kB, at most 320 px a side.
        let size = image::load_from_memory_with_format(thumbnail, image::ImageFormat::Jpeg)
            .map(|i| (i.width(), i.height()));
        if thumbnail.len() >= 200 * 1024 || !size.is_ok_and(|(w, h)| w <= 320 && h <= 320) {
            return fail(400, "Bad Request: wrong thumbnail");
        }
    }
    if name == "sendPhoto" && call.upload > 10 * 1024 * 1024 {
        return fail(400, "Bad Request: PHOTO_INVALID_DIMENSIONS");
    }
    let chat = if chat_id < 0 {
        Chat::group(chat_id)
    } else {
        Chat::private(chat_id)
    };
    let editing = name.starts_with("edit");
    let message_id = if editing {
        let Some(id) = params.get("message_id").and_then(as_i64) else {
            return fail(400, "Bad Request: message identifier is not specified");
        };
        let Some(current) = fake.messages.get(&(chat_id, id)) else {
            return fail(400, "Bad Request: message to edit not found");
        };
        // Telegram refuses an edit that changes nothing.
        let same_text = current.get("text").and_then(Value::as_str) == Some(visible.as_str());
        let same_markup = current.get("reply_markup") == params.get("reply_markup");
        if name == "editMessageText" && same_text && same_markup {
            return fail(
                400,
                "Bad Request: message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message",
            );
        }
        id
    } else {
        let id = fake.next_message;
        fake.next_message += 1;
        id
    };
    let reply_to = params
        .get("reply_parameters")
        .and_then(|r| r.get("message_id"))
        .and_then(as_i64)
        .or_else(|| params.get("reply_to_message_id").and_then(as_i64));
    let mut message = json!({
        "message_id": message_id,
        "date": 1_764_064_800,
        "chat": chat.json(),
        "from": { "id": BOT_ID, "is_bot": true, "first_name": "ImageGPT", "username": BOT_USERNAME },
    });
    if let Value::Object(m) = &mut message {
        if is_text {
            m.insert("text".into(), json!(visible));
        } else if !visible.is_empty() {
            m.insert("caption".into(), json!(visible));
        }
        if let Some(markup) = params.get("reply_markup") {
            m.insert("reply_markup".into(), markup.clone());
        }
        let file = json!({ "file_id": format!("sent{message_id}"), "file_unique_id": format!("s{message_id}") });
        match name {
            "sendPhoto" => {
                m.insert("photo".into(), json!([{ "file_id": format!("sent{message_id}"), "file_unique_id": "s", "width": 1024, "height": 1024 }]));
            }
            "sendDocument" => {
                m.insert("document".into(), file);
            }
            "sendVideo" => {
                m.insert("video".into(), json!({ "file_id": format!("sent{message_id}"), "file_unique_id": "s", "width": 512, "height": 512, "duration": 5 }));
            }
            "sendAnimation" => {
                let animation = json!({ "file_id": format!("sent{message_id}"), "file_unique_id": "s", "width": 512, "height": 512, "duration": 5 });
                m.insert("animation".into(), animation);
                m.insert("document".into(), file);
            }
            "sendAudio" => {
                m.insert("audio".into(), json!({ "file_id": format!("sent{message_id}"), "file_unique_id": "s", "duration": 30 }));
            }
            _ => {}
        }
        if editing {
            m.insert("edit_date".into(), json!(1_764_064_801));
        }
    }
    fake.messages.insert((chat_id, message_id), message.clone());
    fake.sent.push(Sent {
        method: name.into(),
        chat_id,
        message_id,
        text: visible,
        reply_to,
        buttons,
        media_bytes: call.upload,
        alert: false,
        thumbnail: call.thumbnail.is_some(),
    });
    ok(message)
}

async fn file(State(state): State<Shared>, Path((bot, path)): Path<(String, String)>) -> Response {
    let fake = lock(&state);
    if bot.strip_prefix("bot") != Some(fake.token.as_str()) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    match fake.files.values().find(|(p, _, _)| *p == path) {
        Some((_, bytes, _)) => bytes.clone().into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_html;

    #[test]
    fn html_is_parsed_as_telegram_does() {
        assert_eq!(
            parse_html("&lt;b&gt; &amp; _*[").as_deref(),
            Ok("<b> & _*[")
        );
        assert_eq!(parse_html("<b>bold</b> <i>x</i>").as_deref(), Ok("bold x"));
        assert!(parse_html("<b>unclosed").is_err());
        assert!(parse_html("a <x> tag").is_err());
        assert!(parse_html("fish & chips").is_err());
    }
}
