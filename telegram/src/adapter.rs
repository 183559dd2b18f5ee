//! The Telegram adapter's life: connect (getMe, setMyCommands, and setWebhook or deleteWebhook),
//! receive updates by long polling or through `POST /telegram/webhook`, hand each to the core,
//! and answer. Albums are collected for a short window so that two photos sent together with
//! `/faceswap` are one request. No business rule lives here.

use std::{sync::Arc, time::Duration};

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
};
use bot_core::{
    Platform,
    media::links::FileLinks,
    service::{
        ChatKind, ChatRef, DeliveryError, Messenger, Reply, Request, Service, Visibility, words,
    },
};
use dashmap::DashMap;
use secrecy::{ExposeSecret as _, SecretString};
use teloxide::{
    Bot, RequestError,
    payloads::{GetUpdatesSetters as _, SetMyCommandsSetters as _, SetWebhookSetters as _},
    prelude::Requester as _,
    types::{AllowedUpdate, BotCommand, BotCommandScope, ChatId, Recipient, Update, UpdateKind},
};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::{
    TelegramConfig,
    messenger::{TelegramMessenger, describe},
    updates::{self, Incoming, update_key},
};

/// Why the adapter could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("TELEGRAM_BOT_TOKEN is not set")]
    NoToken,
    #[error("TELEGRAM_API_URL is not a URL: {0}")]
    BadUrl(String),
    #[error("Telegram: {0}")]
    Telegram(String),
}

/// Updates handled at once; more wait their turn.
const IN_FLIGHT: usize = 1_024;
/// Albums collected at once; parts of further albums are handled one by one.
const ALBUMS: usize = 1_024;
/// Parts of one album collected: one more than the core takes, so that it can refuse an album
/// larger than any Telegram client sends; anything past that is not kept.
const ALBUM_PARTS: usize = bot_core::media::MAX_PHOTOS + 1;

/// A connected Telegram bot.
pub struct Telegram {
    messenger: Arc<TelegramMessenger>,
    raw: Bot,
    username: String,
    webhook: Option<(SecretString, mpsc::Sender<Update>)>,
    updates: Option<mpsc::Receiver<Update>>,
    album_window: Duration,
}

impl std::fmt::Debug for Telegram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // teloxide's `Bot` prints its token in `Debug`; only say which bot this is.
        f.debug_struct("Telegram")
            .field("username", &self.username)
            .field("webhook", &self.webhook.is_some())
            .finish_non_exhaustive()
    }
}

impl Telegram {
    /// Connects to the Bot API: checks the token (getMe), registers the command menu, and sets
    /// or removes the webhook.
    ///
    /// # Errors
    ///
    /// When the token is missing or refused, or Telegram cannot be reached.
    pub async fn connect(
        config: &TelegramConfig,
        commands: &bot_core::command::CommandLimits,
        operators: &[bot_core::Identity],
        links: Option<Arc<FileLinks>>,
    ) -> Result<Telegram, Error> {
        let token = config.bot_token.as_ref().ok_or(Error::NoToken)?;
        let api = url::Url::parse(&config.api_url).map_err(|e| Error::BadUrl(e.to_string()))?;
        let raw = Bot::new(token.expose_secret()).set_api_url(api);
        let pace = Arc::new(crate::pace::Pace::new(config.messages_per_second));
        let failed = |error: RequestError| Error::Telegram(describe(&error));
        let me = raw.get_me().await.map_err(failed)?;
        let grammar = bot_core::command::Grammar::new(commands.clone());
        for (scope, menu) in menus(&grammar, operators) {
            raw.set_my_commands(menu)
                .scope(scope)
                .await
                .map_err(failed)?;
        }
        let (webhook, updates) = match (&config.webhook_url, &config.webhook_secret) {
            (Some(url), Some(secret)) => {
                let url = url::Url::parse(url).map_err(|e| Error::BadUrl(e.to_string()))?;
                raw.set_webhook(url)
                    .secret_token(secret.expose_secret().to_string())
                    .allowed_updates(allowed_updates())
                    .await
                    .map_err(failed)?;
                let (sender, receiver) = mpsc::channel(1_024);
                (Some((secret.clone(), sender)), Some(receiver))
            }
            _ => {
                // Long polling needs any earlier webhook gone.
                raw.delete_webhook().await.map_err(failed)?;
                (None, None)
            }
        };
        let username = me.username.clone().unwrap_or_default();
        tracing::info!(bot = %username, mode = if webhook.is_some() { "webhook" } else { "polling" }, "Telegram connected");
        Ok(Telegram {
            messenger: Arc::new(TelegramMessenger::new(
                raw.clone(),
                pace,
                &username,
                config.upload_limit_bytes.max(1),
                links,
            )),
            raw,
            username,
            webhook,
            updates,
            album_window: Duration::from_millis(config.album_window_ms),
        })
    }

    /// The messenger the core uses to reach Telegram.
    pub fn messenger(&self) -> Arc<dyn Messenger> {
        self.messenger.clone()
    }

    /// Telegram Stars, as a payment rail.
    pub fn stars(&self) -> Arc<dyn bot_core::payments::PaymentRail> {
        Arc::new(crate::Stars::new(self.messenger.bot()))
    }

    /// `POST /telegram/webhook`, in webhook mode.
    pub fn webhook_router(&self) -> Option<Router> {
        let (secret, sender) = self.webhook.clone()?;
        Some(
            Router::new()
                .route("/telegram/webhook", post(receive))
                .with_state(Arc::new(WebhookState { secret, sender })),
        )
    }

    /// Handles updates until `shutdown`.
    pub async fn run(mut self, service: Arc<Service>, shutdown: CancellationToken) {
        let handler = Handler {
            service,
            messenger: self.messenger.clone(),
            username: self.username.clone(),
            albums: Arc::default(),
            window: self.album_window,
            permits: Arc::new(Semaphore::new(IN_FLIGHT)),
        };
        match self.updates.take() {
            Some(mut updates) => loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    update = updates.recv() => match update {
                        // Telegram retries a webhook delivery it thinks failed: each update is
                        // handled by whoever takes it first.
                        Some(update) => {
                            for update in handler.take(vec![update], None).await.unwrap_or_default() {
                                handler.dispatch(update).await;
                            }
                        }
                        None => break,
                    },
                }
            },
            // One instance polls (Telegram allows one getUpdates at a time); the others wait to
            // take over when it stops or dies.
            None => loop {
                let store = handler.service.store().clone();
                let Some(mut leader) = store.lead("telegram-long-polling", &shutdown).await else {
                    break;
                };
                tracing::info!(part = "telegram", "leading long polling");
                tokio::select! {
                    () = poll(&self.raw, &handler, &shutdown) => break,
                    () = leader.lost() => {
                        tracing::warn!(part = "telegram", "lost the long-polling lead; waiting to take it again");
                    }
                }
            },
        }
        // Let in-flight updates finish; what they still have to say may wait behind Telegram's
        // per-chat limits, so not for ever (what they did is in the store already).
        let finished = tokio::time::timeout(
            Duration::from_secs(10),
            handler.permits.acquire_many(IN_FLIGHT as u32),
        )
        .await;
        if finished.is_err() {
            tracing::warn!(
                part = "telegram",
                "updates still answering at shutdown were left"
            );
        }
    }
}

/// The core's menus, in the scopes Telegram picks a menu by: everyone's by default and in
/// private chats, the group menu in groups, and the operators' in each operator's private chat
/// (`ADMIN_IDS` of the form `telegram:<id>`).
fn menus(
    grammar: &bot_core::command::Grammar,
    operators: &[bot_core::Identity],
) -> Vec<(BotCommandScope, Vec<BotCommand>)> {
    use bot_core::command::Audience;
    let listed = |audience| -> Vec<BotCommand> {
        grammar
            .menu(audience)
            .map(|spec| BotCommand::new(spec.name, spec.description))
            .collect()
    };
    let everyone = listed(Audience::Everyone);
    let mut menus = vec![
        (BotCommandScope::Default, everyone.clone()),
        (BotCommandScope::AllPrivateChats, everyone),
        (BotCommandScope::AllGroupChats, listed(Audience::Group)),
    ];
    let operators = operators
        .iter()
        .filter(|identity| identity.platform() == Platform::Telegram)
        .filter_map(|identity| identity.external_id().parse::<i64>().ok());
    for operator in operators {
        menus.push((
            BotCommandScope::Chat {
                chat_id: Recipient::Id(ChatId(operator)),
            },
            listed(Audience::Operator),
        ));
    }
    menus
}

/// The long-polling stream's name in the store's cursors.
const STREAM: &str = "telegram";

/// Long polling with backoff on errors. It starts where the store says the stream stands (so a
/// restarted or new leader does not get the last batch again), and each batch is taken in the
/// store, with the stream moved past it, before any of it is handled: an update is handled at
/// most once across restarts and instances. When the store cannot be written, the batch is
/// left to Telegram, which delivers it again.
async fn poll(bot: &Bot, handler: &Handler, shutdown: &CancellationToken) {
    let store = handler.service.store();
    let mut offset = loop {
        match store.cursor(STREAM).await {
            Ok(position) => break position.and_then(|p| i32::try_from(p).ok()).unwrap_or(0),
            Err(error) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "reading the polling cursor failed; retrying"
                );
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    let mut backoff = Duration::from_millis(250);
    loop {
        let request = bot
            .get_updates()
            .offset(offset)
            .timeout(25)
            .allowed_updates(allowed_updates());
        let answer = tokio::select! {
            () = shutdown.cancelled() => return,
            answer = request.into_future() => answer,
        };
        match answer {
            Ok(updates) => {
                backoff = Duration::from_millis(250);
                // Never move back: Telegram confirms everything below the offset.
                let next = updates
                    .iter()
                    .map(|u| i32::try_from(u.id.0).unwrap_or(i32::MAX).saturating_add(1))
                    .fold(offset, i32::max);
                if next == offset {
                    continue;
                }
                match handler.take(updates, Some(next)).await {
                    Ok(fresh) => {
                        offset = next;
                        for update in fresh {
                            handler.dispatch(update).await;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(
                            error = format!("{error:#}"),
                            "recording updates failed; Telegram will send them again"
                        );
                        tokio::select! {
                            () = shutdown.cancelled() => return,
                            () = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                    }
                }
            }
            Err(error) => {
                tracing::warn!(error = %describe(&error), "getUpdates failed; retrying");
                let wait = match error {
                    RequestError::RetryAfter(after) => after.duration(),
                    _ => backoff,
                };
                backoff = (backoff * 2).min(Duration::from_secs(30));
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

struct WebhookState {
    secret: SecretString,
    sender: mpsc::Sender<Update>,
}

async fn receive(
    State(state): State<Arc<WebhookState>>,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    let given = headers
        .get("x-telegram-bot-api-secret-token")
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if !bot_core::ids::same_secret(given, state.secret.expose_secret().as_bytes()) {
        return StatusCode::UNAUTHORIZED;
    }
    match serde_json::from_str::<Update>(&body) {
        Ok(update) => match state.sender.send(update).await {
            Ok(()) => StatusCode::OK,
            Err(_) => StatusCode::SERVICE_UNAVAILABLE,
        },
        // Not an update at all: Telegram would not send it, and retrying will not help.
        Err(_) => StatusCode::BAD_REQUEST,
    }
}

/// The updates the bot asks Telegram for, polling or by webhook.
fn allowed_updates() -> Vec<AllowedUpdate> {
    vec![
        AllowedUpdate::Message,
        AllowedUpdate::CallbackQuery,
        AllowedUpdate::PreCheckoutQuery,
    ]
}

#[derive(Clone)]
struct Handler {
    service: Arc<Service>,
    messenger: Arc<TelegramMessenger>,
    username: String,
    /// Albums still arriving, by media group id; bounded (see [`ALBUMS`], [`ALBUM_PARTS`]).
    albums: Arc<DashMap<String, Vec<Request>>>,
    window: Duration,
    permits: Arc<Semaphore>,
}

impl Handler {
    /// Takes `updates` in the store (moving the polled stream on to `next`): the ones returned
    /// were taken by nobody before and are this instance's to handle.
    async fn take(&self, updates: Vec<Update>, next: Option<i32>) -> bot_core::Result<Vec<Update>> {
        let keys: Vec<String> = updates.iter().map(|u| update_key(u.id.0)).collect();
        let fresh: std::collections::HashSet<String> = self
            .service
            .store()
            .take_updates(keys, next.map(|n| (STREAM, i64::from(n))))
            .await?
            .into_iter()
            .collect();
        Ok(updates
            .into_iter()
            .filter(|u| fresh.contains(&update_key(u.id.0)))
            .collect())
    }

    async fn dispatch(&self, update: Update) {
        let incoming = match &update.kind {
            // Payments are handled apart (Telegram waits at most 10 seconds for a pre-checkout
            // answer) but, like every update, within a permit that shutdown waits for.
            UpdateKind::PreCheckoutQuery(query) => {
                let Ok(permit) = self.permits.clone().acquire_owned().await else {
                    return;
                };
                let (handler, query) = (self.clone(), query.clone());
                tokio::spawn(async move {
                    handler.pre_checkout(&query).await;
                    drop(permit);
                });
                return;
            }
            UpdateKind::Message(message) if message.successful_payment().is_some() => {
                let Ok(permit) = self.permits.clone().acquire_owned().await else {
                    return;
                };
                let (handler, message) = (self.clone(), message.clone());
                tokio::spawn(async move {
                    handler.paid(&message).await;
                    drop(permit);
                });
                return;
            }
            UpdateKind::Message(message) => updates::message(update.id.0, message, &self.username),
            UpdateKind::CallbackQuery(query) => updates::press(query),
            // Edits, joins, unknown kinds and updates teloxide could not read.
            _ => Incoming::Ignored,
        };
        if matches!(incoming, Incoming::Ignored) {
            return;
        }
        let Ok(permit) = self.permits.clone().acquire_owned().await else {
            return;
        };
        let handler = self.clone();
        match incoming {
            Incoming::Ignored => {}
            Incoming::Message(request) => {
                tokio::spawn(async move {
                    handler.handle(request, None).await;
                    drop(permit);
                });
            }
            Incoming::Press { query, request } => {
                tokio::spawn(async move {
                    match request {
                        Some(request) => handler.handle(request, Some(query)).await,
                        None => {
                            handler
                                .messenger
                                .answer(&query, Some("This button no longer works."), false)
                                .await;
                        }
                    }
                    drop(permit);
                });
            }
            Incoming::AlbumPart { album, request } => {
                let first = match self.albums.get_mut(&album) {
                    Some(mut parts) => {
                        if parts.len() < ALBUM_PARTS {
                            parts.push(request);
                        }
                        false
                    }
                    // Too many albums at once: this part stands alone rather than wait.
                    None if self.albums.len() >= ALBUMS => {
                        tokio::spawn(async move {
                            handler.handle(request, None).await;
                            drop(permit);
                        });
                        return;
                    }
                    None => {
                        self.albums.insert(album.clone(), vec![request]);
                        true
                    }
                };
                if first {
                    tokio::spawn(async move {
                        tokio::time::sleep(handler.window).await;
                        let parts = handler
                            .albums
                            .remove(&album)
                            .map(|(_, parts)| parts)
                            .unwrap_or_default();
                        if let Some(request) = updates::album(parts) {
                            handler.handle(request, None).await;
                        }
                        drop(permit);
                    });
                }
            }
        }
    }

    async fn pre_checkout(&self, query: &teloxide::types::PreCheckoutQuery) {
        let payer: Result<bot_core::Identity, _> = format!("telegram:{}", query.from.id.0).parse();
        let verdict = match payer {
            Ok(payer) => {
                self.service
                    .stars_pre_checkout(
                        &payer,
                        &query.invoice_payload,
                        &query.currency,
                        u64::from(query.total_amount),
                    )
                    .await
            }
            Err(error) => Err(error),
        };
        let refusal = match verdict {
            Ok(Ok(())) => None,
            Ok(Err(why)) => Some(why),
            Err(error) => {
                tracing::error!(
                    error = format!("{error:#}"),
                    "checking a Stars order failed"
                );
                Some("Sorry, the order could not be checked. No Stars were taken.".to_string())
            }
        };
        self.messenger
            .answer_pre_checkout(&query.id.0, refusal.as_deref())
            .await;
    }

    async fn paid(&self, message: &teloxide::types::Message) {
        let Some(payment) = message.successful_payment() else {
            return;
        };
        let outcome = self
            .service
            .stars_paid(
                &payment.invoice_payload,
                &payment.telegram_payment_charge_id.0,
                u64::from(payment.total_amount),
            )
            .await;
        match outcome {
            Ok(outcome) => {
                tracing::info!(?outcome, "Telegram Stars payment");
            }
            // Telegram delivers the update once: the charge id is logged so an operator can
            // credit or refund it by hand.
            Err(error) => tracing::error!(
                charge = %payment.telegram_payment_charge_id.0,
                error = format!("{error:#}"),
                "crediting a Stars payment failed"
            ),
        }
    }

    async fn handle(&self, request: Request, query: Option<String>) {
        let (chat, reply_to) = (request.chat.clone(), request.message_id.clone());
        let (person, name) = (
            request.identity.external_id().to_string(),
            request.name.clone(),
        );
        let reply = self
            .service
            .answer(request)
            .await
            .filter(|r| !r.text.trim().is_empty());
        let private_in_group = chat.kind == ChatKind::Group
            && reply
                .as_ref()
                .is_some_and(|r| !r.notice && r.visibility == Visibility::Requester);
        if let Some(query) = &query {
            match &reply {
                Some(reply) if reply.notice => {
                    self.messenger.answer(query, Some(&reply.text), true).await;
                }
                // Answered below, once we know whether the private chat took the answer.
                Some(_) if private_in_group => {}
                _ => self.messenger.answer(query, None, false).await,
            }
        }
        let Some(reply) = reply.filter(|r| !r.notice) else {
            return;
        };
        if !private_in_group {
            // In a private chat the answer follows the message; in a group it replies to it.
            let reply_to = match chat.kind {
                ChatKind::Group => reply_to,
                ChatKind::Private => None,
            };
            let _ = self.send(&chat, reply_to.as_deref(), &reply).await;
            return;
        }
        // Only the requester may see this: their private chat with the bot (its id is theirs).
        let private = ChatRef {
            platform: Platform::Telegram,
            id: person,
            kind: ChatKind::Private,
        };
        let delivered = self.send(&private, None, &reply).await;
        let bot = self.username.as_str();
        match (query, delivered) {
            (Some(query), Ok(())) => {
                self.messenger
                    .answer(&query, Some(words::SENT_PRIVATELY_ALERT), false)
                    .await;
            }
            (Some(query), Err(_)) => {
                let alert = words::open_private_chat_alert(bot);
                self.messenger.answer(&query, Some(&alert), true).await;
            }
            (None, delivered) => {
                let pointer = match delivered {
                    Ok(()) => words::sent_privately(&name),
                    Err(_) => words::open_private_chat(&name, bot),
                };
                let pointer = Reply::text(pointer);
                let _ = self.send(&chat, reply_to.as_deref(), &pointer).await;
            }
        }
    }

    /// Sends a reply, retrying what is worth retrying.
    async fn send(
        &self,
        chat: &ChatRef,
        reply_to: Option<&str>,
        reply: &Reply,
    ) -> Result<(), DeliveryError> {
        for attempt in 1..=3 {
            match self
                .messenger
                .send_text(chat, reply_to, &reply.text, &reply.buttons)
                .await
            {
                Ok(_) => return Ok(()),
                Err(DeliveryError::Retry(why)) if attempt < 3 => {
                    tracing::warn!(%why, "sending a reply failed; retrying");
                    tokio::time::sleep(Duration::from_secs(attempt)).await;
                }
                Err(error) => {
                    tracing::warn!(%error, "a reply could not be sent");
                    return Err(error);
                }
            }
        }
        Err(DeliveryError::Retry("no attempt left".into()))
    }
}
