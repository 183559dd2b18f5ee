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
//! setMyCommands takes at most 100 commands (names 1–32 of `a-z0-9_`, descriptions 1–256
//! characters) per scope; a scope is one of the seven BotCommandScope types, and
//! [`FakeTelegram::menu_seen`] picks a chat's menu as Telegram does, narrowest scope first (the
//! Bot API's setMyCommands and BotCommandScope, <https://core.telegram.org/bots/api#setmycommands>,
//! read 2026-12-03 through the copy of that text in telbot-types' docs; the descriptions of the
//! fake's refusals are its own).
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

mod html;
mod methods;
mod wire;

use self::{html::*, methods::*, wire::*};
pub use html::parse_html;

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
    /// The commands set per scope: `default`, `all_private_chats`, `all_group_chats`,
    /// `all_chat_administrators`, `chat:<id>`, `chat_administrators:<id>`, `chat_member:<id>:<user>`.
    commands: BTreeMap<String, Vec<(String, String)>>,
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

    /// The commands the bot registered with setMyCommands for the default scope.
    pub fn commands(&self) -> Vec<(String, String)> {
        self.commands_in("default")
    }

    /// The commands set for one scope (see the `commands` field for the names), empty if none.
    pub fn commands_in(&self, scope: &str) -> Vec<(String, String)> {
        lock(&self.state)
            .commands
            .get(scope)
            .cloned()
            .unwrap_or_default()
    }

    /// The menu a person sees in a chat, as Telegram chooses it: the first scope with commands
    /// set, narrowest first (language codes aside). In a private chat: `chat`, then
    /// `all_private_chats`, then `default`. In a group: `chat_member`, then (for the group's
    /// administrators) `chat_administrators`, then `chat`, then (administrators)
    /// `all_chat_administrators`, then `all_group_chats`, then `default` (the Bot API's
    /// "Determining list of commands", under BotCommandScope).
    pub fn menu_seen(&self, chat: i64, user: i64, group_admin: bool) -> Vec<(String, String)> {
        let state = lock(&self.state);
        let order: Vec<String> = if chat == user {
            vec![
                format!("chat:{chat}"),
                "all_private_chats".into(),
                "default".into(),
            ]
        } else {
            let mut order = vec![format!("chat_member:{chat}:{user}")];
            if group_admin {
                order.push(format!("chat_administrators:{chat}"));
            }
            order.push(format!("chat:{chat}"));
            if group_admin {
                order.push("all_chat_administrators".into());
            }
            order.extend(["all_group_chats".into(), "default".into()]);
            order
        };
        order
            .iter()
            .find_map(|scope| state.commands.get(scope).filter(|c| !c.is_empty()))
            .cloned()
            .unwrap_or_default()
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
