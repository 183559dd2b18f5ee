//! The core's [`Messenger`] on Discord. A message meant for an interaction goes through its
//! token while the token lives (15 minutes): the first one replaces the deferred response, later
//! ones are follow-ups. Once the token is gone, the bot token posts in the channel mentioning the
//! requester, or in a DM where the bot cannot post. Each acknowledged interaction is kept in the
//! store too, so that another instance finishing the job (workers run anywhere) answers through
//! the interaction as well; the original response stays the acknowledging instance's to replace.

use std::{
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bot_core::{
    Store,
    media::{MediaKind, Output, links::FileLinks},
    service::{Attachment, Button, ChatRef, DeliveryError, MessageRef, Messenger, MessengerFuture},
    store::KeptInteraction,
};
use dashmap::DashMap;
use futures_util::StreamExt as _;
use reqwest::Method;
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::{
    model::{Token, created_ms},
    render,
    rest::{Body, File, Rest, RestError, codes},
    translate::{Ack, read_marker},
};

/// Discord's upload limit when an interaction does not state its own.
pub const DEFAULT_UPLOAD_LIMIT: u64 = 10 * 1024 * 1024;
/// An interaction token lasts 15 minutes; stop using it a little before.
const TOKEN_LIFETIME_MS: u64 = 15 * 60 * 1000 - 20_000;

/// An interaction whose token can still answer it.
#[derive(Debug)]
pub struct Live {
    pub id: String,
    pub token: Token,
    pub ack: Ack,
    /// When Discord stops taking the token, in ms since the epoch.
    expires_ms: u64,
    /// Discord refused the token before its time.
    dead: AtomicBool,
    /// The deferred response has been replaced (by a status message or the reply).
    pub original_used: AtomicBool,
    pub upload_limit: u64,
    /// Who acted, and in which channel.
    pub person: String,
    pub channel: String,
}

impl Live {
    /// An interaction another instance acknowledged, as the store kept it. Its original
    /// response is that instance's to replace: here it is only followed up and edited.
    fn from_kept(kept: KeptInteraction) -> Option<Live> {
        let ack = match kept.kind.as_str() {
            "update" => Ack::Update,
            "message" => Ack::Message { ephemeral: false },
            "ephemeral" => Ack::Message { ephemeral: true },
            _ => return None,
        };
        Some(Live {
            id: kept.id,
            token: Token(kept.token.expose_secret().to_string()),
            ack,
            expires_ms: u64::try_from(kept.expires_at).unwrap_or(0),
            dead: AtomicBool::new(false),
            original_used: AtomicBool::new(true),
            upload_limit: kept.upload_limit,
            person: kept.person,
            channel: kept.channel,
        })
    }

    /// This interaction as the store keeps it.
    fn kept(&self) -> KeptInteraction {
        KeptInteraction {
            id: self.id.clone(),
            platform: "discord".into(),
            token: SecretString::from(self.token.0.clone()),
            kind: match self.ack {
                Ack::Update => "update",
                Ack::Message { ephemeral: false } => "message",
                Ack::Message { ephemeral: true } => "ephemeral",
            }
            .into(),
            upload_limit: self.upload_limit,
            person: self.person.clone(),
            channel: self.channel.clone(),
            expires_at: i64::try_from(self.expires_ms).unwrap_or(i64::MAX),
        }
    }

    /// A live interaction, with its expiry read from its snowflake.
    pub fn new(
        id: &str,
        token: Token,
        ack: Ack,
        upload_limit: Option<u64>,
        person: &str,
        channel: &str,
    ) -> Live {
        let created = created_ms(id).unwrap_or_else(now_ms);
        Live {
            id: id.to_string(),
            token,
            ack,
            expires_ms: created + TOKEN_LIFETIME_MS,
            dead: AtomicBool::new(false),
            original_used: AtomicBool::new(false),
            upload_limit: upload_limit.unwrap_or(DEFAULT_UPLOAD_LIMIT),
            person: person.to_string(),
            channel: channel.to_string(),
        }
    }

    /// Acknowledged moments ago: Discord may not have taken the acknowledgement yet.
    fn young(&self) -> bool {
        now_ms() + TOKEN_LIFETIME_MS < self.expires_ms + 10_000
    }

    fn alive(&self) -> bool {
        !self.dead.load(Ordering::Relaxed) && now_ms() < self.expires_ms
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Talks to Discord for the core.
#[derive(Debug)]
pub struct DiscordMessenger {
    rest: Arc<Rest>,
    application_id: String,
    live: DashMap<String, Arc<Live>>,
    links: Option<Arc<FileLinks>>,
    /// Where interactions are kept for the other instances; set once the service exists.
    store: OnceLock<Store>,
}

/// A result as it will be sent: attached, or as a link when too large.
enum Upload {
    File(File),
    Link { url: String, megabytes: f64 },
}

/// Where a message we sent lives, as kept in a [`MessageRef`]'s id.
enum Sent<'a> {
    /// The interaction's original response.
    Original {
        interaction: &'a str,
        message: &'a str,
    },
    /// A follow-up of the interaction.
    Followup {
        interaction: &'a str,
        message: &'a str,
    },
    /// A channel message sent with the bot token.
    Channel { message: &'a str },
}

impl<'a> Sent<'a> {
    fn read(id: &'a str) -> Sent<'a> {
        let mut parts = id.splitn(3, ':');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("o"), Some(interaction), Some(message)) => Sent::Original {
                interaction,
                message,
            },
            (Some("f"), Some(interaction), Some(message)) => Sent::Followup {
                interaction,
                message,
            },
            (Some("c"), Some(message), None) => Sent::Channel { message },
            _ => Sent::Channel { message: id },
        }
    }
}

impl DiscordMessenger {
    /// A messenger for the application, over `rest`.
    pub fn new(
        rest: Arc<Rest>,
        application_id: &str,
        links: Option<Arc<FileLinks>>,
    ) -> DiscordMessenger {
        DiscordMessenger {
            rest,
            application_id: application_id.to_string(),
            live: DashMap::new(),
            links,
            store: OnceLock::new(),
        }
    }

    /// Keeps interactions in `store` from now on.
    pub fn attach(&self, store: Store) {
        let _ = self.store.set(store);
    }

    /// Keeps `live` in the store for the other instances. A failure only costs them the
    /// interaction: they post with the bot token instead.
    pub async fn keep(&self, live: &Live) {
        if let Some(store) = self.store.get()
            && let Err(error) = store.keep_interaction(&live.kept()).await
        {
            tracing::warn!(interaction = %live.id, error = format!("{error:#}"), "keeping an interaction failed");
        }
    }

    /// Remembers an interaction that was just acknowledged.
    pub fn register(&self, live: Live) -> Arc<Live> {
        let live = Arc::new(live);
        // Expired tokens are of no use: swept whenever the map doubles past 1,024.
        let len = self.live.len();
        if len >= 1_024 && len.is_power_of_two() {
            self.live.retain(|_, live| live.alive());
        }
        self.live.insert(live.id.clone(), live.clone());
        live
    }

    /// The live interaction `interaction`: this instance's, or one another instance
    /// acknowledged and kept in the store.
    async fn find(&self, interaction: &str) -> Option<Arc<Live>> {
        if let Some(live) = self.live.get(interaction) {
            return Some(live.value().clone()).filter(|live| live.alive());
        }
        let kept = match self.store.get()?.kept_interaction(interaction).await {
            Ok(kept) => kept?,
            Err(error) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "reading a kept interaction failed"
                );
                return None;
            }
        };
        let live = Arc::new(Live::from_kept(kept)?);
        self.live.insert(live.id.clone(), live.clone());
        Some(live).filter(|live| live.alive())
    }

    /// `person`'s newest live interaction in `channel` whose response is settled: a follow-up
    /// to one still "thinking…" would only edit that message, as visible as its deferral.
    fn latest(&self, person: &str, channel: &str) -> Option<Arc<Live>> {
        self.live
            .iter()
            .filter(|live| live.person == person && live.channel == channel && live.alive())
            .filter(|live| live.ack == Ack::Update || live.original_used.load(Ordering::SeqCst))
            .max_by_key(|live| live.expires_ms)
            .map(|live| live.value().clone())
    }

    /// Opens (or finds) the DM channel with `person`.
    async fn dm(&self, chat: &ChatRef, person: &str) -> Result<ChatRef, DeliveryError> {
        let dm = self
            .rest
            .call(
                Method::POST,
                "/users/@me/channels",
                "dm",
                true,
                &Body::Json(json!({"recipient_id": person})),
            )
            .await
            .map_err(delivery)?;
        Ok(ChatRef {
            platform: chat.platform,
            id: dm["id"].as_str().unwrap_or_default().to_string(),
            kind: bot_core::service::ChatKind::Private,
        })
    }

    fn webhook(&self, live: &Live, rest: &str) -> String {
        format!("/webhooks/{}/{}{rest}", self.application_id, live.token.0)
    }

    /// Sends the acknowledgement over REST (gateway mode; over HTTP it is the response body).
    ///
    /// # Errors
    ///
    /// When Discord refuses it (already acknowledged, too late) or cannot be reached.
    pub async fn acknowledge(
        &self,
        id: &str,
        token: &Token,
        body: &Value,
    ) -> Result<(), RestError> {
        let path = format!("/interactions/{id}/{}/callback", token.0);
        self.rest
            .call(
                Method::POST,
                &path,
                "interaction",
                false,
                &Body::Json(body.clone()),
            )
            .await
            .map(drop)
    }

    /// One request through the interaction's webhook. Over HTTP our acknowledgement (the
    /// response) may still be on its way when the first follow-up goes out, and Discord does not
    /// know the webhook (or the deferred message) until it arrives: in the interaction's first
    /// seconds that is waited out briefly; later an unknown message is simply gone.
    async fn webhook_call(
        &self,
        live: &Live,
        method: Method,
        suffix: &str,
        body: &Body,
    ) -> Result<Value, RestError> {
        let path = self.webhook(live, suffix);
        let route = format!("webhook:{}", live.id);
        let mut attempt: u64 = 0;
        loop {
            attempt += 1;
            match self
                .rest
                .call(method.clone(), &path, &route, false, body)
                .await
            {
                Err(error)
                    if attempt < 8
                        && live.young()
                        && matches!(
                            error.code(),
                            Some(codes::UNKNOWN_WEBHOOK | codes::UNKNOWN_MESSAGE)
                        ) =>
                {
                    tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
                }
                other => return self.note_token(live, other),
            }
        }
    }

    /// Replaces the deferred response.
    /// Sends `body` for `live`: the first answer replaces the deferred "thinking…" response
    /// (a follow-up sent while it still thinks would only edit it, as visible as the deferral,
    /// and the next answer would overwrite it); later ones, and answers to a button, are
    /// follow-ups. Returns which (`o` or `f`, as [`Sent`] reads it) and Discord's message.
    async fn answer(&self, live: &Live, body: Body) -> Result<(&'static str, Value), RestError> {
        let original = live.ack != Ack::Update && !live.original_used.swap(true, Ordering::SeqCst);
        if original {
            self.edit_original(live, body).await.map(|m| ("o", m))
        } else {
            self.followup(live, body).await.map(|m| ("f", m))
        }
    }

    pub async fn edit_original(&self, live: &Live, body: Body) -> Result<Value, RestError> {
        self.webhook_call(live, Method::PATCH, "/messages/@original", &body)
            .await
    }

    /// Removes the deferred response ("thinking…") when the answer goes elsewhere.
    pub async fn delete_original(&self, live: &Live) {
        let _ = self
            .webhook_call(live, Method::DELETE, "/messages/@original", &Body::Empty)
            .await;
    }

    /// A follow-up message through the interaction's token.
    pub async fn followup(&self, live: &Live, body: Body) -> Result<Value, RestError> {
        self.webhook_call(live, Method::POST, "", &body).await
    }

    fn note_token(
        &self,
        live: &Live,
        result: Result<Value, RestError>,
    ) -> Result<Value, RestError> {
        if let Err(error) = &result
            && expired(error)
        {
            live.dead.store(true, Ordering::Relaxed);
        }
        result
    }

    /// Posts in a channel with the bot token; where the bot may not post and we know whom the
    /// message is for, it goes to them in a DM.
    async fn post(
        &self,
        chat: &ChatRef,
        person: Option<&str>,
        body: Body,
    ) -> Result<MessageRef, DeliveryError> {
        if !self.rest.has_bot_token() {
            return Err(DeliveryError::Permanent(
                "the interaction expired and no bot token is configured".into(),
            ));
        }
        match (self.post_in(chat, &body).await, person) {
            (Ok(message), _) => Ok(message),
            (Err(error), Some(person))
                if matches!(
                    error.code(),
                    Some(codes::MISSING_ACCESS | codes::MISSING_PERMISSIONS)
                ) =>
            {
                let dm = self.dm(chat, person).await?;
                self.post_in(&dm, &body).await.map_err(delivery)
            }
            (Err(error), _) => Err(delivery(error)),
        }
    }

    /// One message in one channel, with the bot token.
    async fn post_in(&self, chat: &ChatRef, body: &Body) -> Result<MessageRef, RestError> {
        let path = format!("/channels/{}/messages", chat.id);
        let route = format!("channel:{}", chat.id);
        let message = self
            .rest
            .call(Method::POST, &path, &route, true, body)
            .await?;
        Ok(channel_message(chat.clone(), &message))
    }

    /// The media to upload within `limit`: images re-encoded smaller when needed; anything else
    /// too large offered as a signed link when `PUBLIC_BASE_URL` is set.
    async fn fit(&self, media: &Output, limit: u64) -> Result<Upload, DeliveryError> {
        if media.bytes.len() as u64 <= limit {
            return Ok(Upload::File(File {
                name: media.file_name.clone(),
                mime: media.mime,
                bytes: media.bytes.clone(),
            }));
        }
        if media.kind == MediaKind::Image {
            let bytes = media.bytes.clone();
            let fitted =
                tokio::task::spawn_blocking(move || bot_core::media::fit_image(&bytes, limit))
                    .await
                    .map_err(|e| DeliveryError::Retry(e.to_string()))?;
            if let Some(bytes) = fitted {
                let stem = media
                    .file_name
                    .rsplit_once('.')
                    .map_or(media.file_name.as_str(), |(stem, _)| stem);
                return Ok(Upload::File(File {
                    name: format!("{stem}.jpg"),
                    mime: "image/jpeg",
                    bytes,
                }));
            }
        }
        let megabytes = media.bytes.len() as f64 / 1_000_000.0;
        match &self.links {
            Some(links) => {
                let url = links
                    .offer(media)
                    .await
                    .map_err(|e| DeliveryError::Retry(format!("keeping a large result: {e}")))?;
                Ok(Upload::Link { url, megabytes })
            }
            None => Err(DeliveryError::Permanent(format!(
                "the result ({megabytes:.1} MB) is larger than Discord lets the bot upload here \
                 ({:.1} MB)",
                limit as f64 / 1_000_000.0
            ))),
        }
    }
}

fn webhook_message(chat: &ChatRef, kind: &str, live: &Live, message: &Value) -> MessageRef {
    MessageRef {
        chat: chat.clone(),
        id: format!(
            "{kind}:{}:{}",
            live.id,
            message["id"].as_str().unwrap_or_default()
        ),
    }
}

fn channel_message(chat: ChatRef, message: &Value) -> MessageRef {
    MessageRef {
        chat,
        id: format!("c:{}", message["id"].as_str().unwrap_or_default()),
    }
}

/// How a refusal reads to the core.
fn delivery(error: RestError) -> DeliveryError {
    match error {
        RestError::Unavailable(why) => DeliveryError::Retry(why),
        RestError::Refused { code, .. } if code == codes::ENTITY_TOO_LARGE => {
            DeliveryError::TooLarge(error.to_string())
        }
        refused => DeliveryError::Permanent(refused.to_string()),
    }
}

fn expired(error: &RestError) -> bool {
    matches!(
        error.code(),
        Some(codes::INVALID_WEBHOOK_TOKEN | codes::UNKNOWN_WEBHOOK | codes::UNKNOWN_INTERACTION)
    )
}

impl Messenger for DiscordMessenger {
    fn platform(&self) -> bot_core::Platform {
        bot_core::Platform::Discord
    }

    fn send_text<'a>(
        &'a self,
        chat: &'a ChatRef,
        reply_to: Option<&'a str>,
        text: &'a str,
        buttons: &'a [Button],
    ) -> MessengerFuture<'a, MessageRef> {
        Box::pin(async move {
            let marker = reply_to.and_then(read_marker);
            if let Some((interaction, _)) = marker
                && let Some(live) = self.find(interaction).await
            {
                let body = Body::Json(render::text(text, buttons, false));
                match self.answer(&live, body).await {
                    Ok((kind, message)) => return Ok(webhook_message(chat, kind, &live, &message)),
                    Err(error) if expired(&error) => {}
                    Err(error) => return Err(delivery(error)),
                }
            }
            let person = marker.map(|(_, person)| person);
            let body = render::text_for(text, buttons, person);
            self.post(chat, person, Body::Json(body)).await
        })
    }

    fn edit_text<'a>(
        &'a self,
        message: &'a MessageRef,
        text: &'a str,
        buttons: &'a [Button],
    ) -> MessengerFuture<'a, ()> {
        Box::pin(async move {
            let mut body = render::text(text, buttons, false);
            // An edit keeps the mention it was sent with; it must not ping again.
            if let Some(object) = body.as_object_mut() {
                object.remove("allowed_mentions");
            }
            let body = Body::Json(body);
            let (interaction, id, original) = match Sent::read(&message.id) {
                Sent::Original {
                    interaction,
                    message,
                } => (Some(interaction), message, true),
                Sent::Followup {
                    interaction,
                    message,
                } => (Some(interaction), message, false),
                Sent::Channel { message } => (None, message, false),
            };
            let live = match interaction {
                Some(interaction) => self.find(interaction).await,
                None => None,
            };
            if let Some(live) = live {
                let sent = if original {
                    self.edit_original(&live, body.clone()).await
                } else {
                    self.webhook_call(&live, Method::PATCH, &format!("/messages/{id}"), &body)
                        .await
                };
                match sent {
                    Ok(_) => return Ok(()),
                    Err(error) if expired(&error) => {}
                    Err(error) => return Err(delivery(error)),
                }
            }
            // The token is gone: the bot edits its own message in the channel.
            if !self.rest.has_bot_token() || id.is_empty() {
                return Err(DeliveryError::Permanent(
                    "the message can no longer be edited".into(),
                ));
            }
            let path = format!("/channels/{}/messages/{id}", message.chat.id);
            let route = format!("channel:{}", message.chat.id);
            self.rest
                .call(Method::PATCH, &path, &route, true, &body)
                .await
                .map(drop)
                .map_err(delivery)
        })
    }

    fn send_media<'a>(
        &'a self,
        chat: &'a ChatRef,
        reply_to: Option<&'a str>,
        media: &'a Output,
        caption: &'a str,
        buttons: &'a [Button],
        abandon: &'a CancellationToken,
    ) -> MessengerFuture<'a, MessageRef> {
        Box::pin(async move {
            // Discord has no per-chat queue to wait in: a result not yet started when its job
            // is handed back is left for whoever takes the job; once started it is finished.
            if abandon.is_cancelled() {
                return Err(DeliveryError::Abandoned);
            }
            let marker = reply_to.and_then(read_marker);
            let live = match marker {
                Some((interaction, _)) => self.find(interaction).await,
                None => None,
            };
            let limit = live
                .as_ref()
                .map_or(DEFAULT_UPLOAD_LIMIT, |live| live.upload_limit);
            let upload = self.fit(media, limit).await?;
            let body = |mention: Option<&str>| match &upload {
                Upload::File(file) => Body::Files(
                    render::media(caption, &file.name, media.kind, buttons, mention),
                    vec![file.clone()],
                ),
                Upload::Link { url, megabytes } => Body::Json(render::media_link(
                    caption, url, *megabytes, buttons, mention,
                )),
            };
            if let Some(live) = live {
                // A result ready before the status message replaced the "thinking…" takes its
                // place, like any first answer.
                match self.answer(&live, body(None)).await {
                    Ok((kind, message)) => return Ok(webhook_message(chat, kind, &live, &message)),
                    Err(error) if expired(&error) => {}
                    Err(error) => return Err(delivery(error)),
                }
            }
            // Too late for the interaction (a long video): post it, naming the requester.
            let person = marker.map(|(_, person)| person);
            self.post(chat, person, body(person)).await
        })
    }

    fn send_notice<'a>(
        &'a self,
        chat: &'a ChatRef,
        person: Option<&'a bot_core::Identity>,
        text: &'a str,
    ) -> MessengerFuture<'a, MessageRef> {
        Box::pin(async move {
            let person = person
                .filter(|p| p.platform() == bot_core::Platform::Discord)
                .map(bot_core::Identity::external_id);
            let Some(person) = person else {
                return self.send_text(chat, None, text, &[]).await;
            };
            // While they are still at it (Checkout takes minutes, a token lasts 15), the notice
            // appears where they bought, for their eyes only.
            if let Some(live) = self.latest(person, &chat.id) {
                let body = Body::Json(render::text(text, &[], true));
                match self.followup(&live, body).await {
                    Ok(message) => {
                        return Ok(webhook_message(chat, "f", &live, &message));
                    }
                    Err(error) if expired(&error) => {}
                    Err(error) => return Err(delivery(error)),
                }
            }
            // Later: a DM, since balances are private.
            if chat.kind == bot_core::service::ChatKind::Private {
                return self.send_text(chat, None, text, &[]).await;
            }
            let body = Body::Json(render::text(text, &[], false));
            let sent = match self.dm(chat, person).await {
                Ok(dm) => self.post_in(&dm, &body).await.map_err(delivery),
                Err(error) => Err(error),
            };
            match sent {
                // Their DMs are closed: the channel is told, naming them, that something is
                // waiting; never the notice itself, which names amounts and a balance.
                Err(DeliveryError::Permanent(_)) => {
                    let pointer = bot_core::service::words::DISCORD_NOTICE_NEEDS_DMS;
                    let body = Body::Json(render::text_for(pointer, &[], Some(person)));
                    self.post(chat, None, body).await
                }
                other => other,
            }
        })
    }

    fn fetch<'a>(
        &'a self,
        attachment: &'a Attachment,
        limit: usize,
    ) -> MessengerFuture<'a, Vec<u8>> {
        Box::pin(async move {
            let too_large = || {
                DeliveryError::TooLarge(format!(
                    "The file is larger than {} MB.",
                    limit / 1_000_000
                ))
            };
            if attachment.size.is_some_and(|size| size > limit as u64) {
                return Err(too_large());
            }
            let response = self
                .rest
                .http()
                .get(&attachment.id)
                .send()
                .await
                .map_err(|e| DeliveryError::Retry(e.without_url().to_string()))?;
            let status = response.status();
            if status.is_server_error() || status.as_u16() == 429 {
                return Err(DeliveryError::Retry(format!(
                    "the upload answered {status}"
                )));
            }
            if !status.is_success() {
                return Err(DeliveryError::Permanent(
                    "the upload is no longer available; please send it again".into(),
                ));
            }
            if response
                .content_length()
                .is_some_and(|length| length > limit as u64)
            {
                return Err(too_large());
            }
            let mut bytes = Vec::new();
            let mut stream = response.bytes_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| DeliveryError::Retry(e.without_url().to_string()))?;
                if bytes.len() + chunk.len() > limit {
                    return Err(too_large());
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(bytes)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sent_ids_are_read_back() {
        assert!(matches!(
            Sent::read("o:1:2"),
            Sent::Original {
                interaction: "1",
                message: "2"
            }
        ));
        assert!(matches!(Sent::read("f:1:2"), Sent::Followup { .. }));
        assert!(matches!(Sent::read("c:9"), Sent::Channel { message: "9" }));
    }
}
