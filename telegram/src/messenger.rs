//! The core's messenger port on Telegram: text in HTML with everything escaped, results as the
//! right kind of message, inline buttons, chat actions, and uploads fetched when a job runs.
//! Every message waits its turn under Telegram's limits ([`Pace`]) and is sent again after a
//! 429's `retry_after`.

use std::{future::IntoFuture, sync::Arc};

use bot_core::{
    Identity, Platform,
    media::{MediaKind, Output, links::FileLinks},
    service::{
        Attachment, Button, ChatKind, ChatRef, DeliveryError, MessageRef, Messenger,
        MessengerFuture, Press, words,
    },
};
use teloxide::{
    ApiError, Bot, RequestError,
    net::Download as _,
    payloads::AnswerPreCheckoutQuerySetters as _,
    payloads::{
        AnswerCallbackQuerySetters as _, EditMessageTextSetters as _, SendAnimationSetters as _,
        SendAudioSetters as _, SendDocumentSetters as _, SendMessage, SendMessageSetters as _,
        SendPhotoSetters as _, SendVideoSetters as _,
    },
    prelude::Requester as _,
    requests::{JsonRequest, Payload},
    types::{
        CallbackQueryId, ChatAction, ChatId, FileId, InlineKeyboardButton, InlineKeyboardMarkup,
        InputFile, MessageId, ParseMode, PreCheckoutQueryId, ReplyParameters,
    },
};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::{pace::Pace, text};

/// Images whose long side is beyond this go as documents, at full resolution (Telegram
/// recompresses photos to about 1280–2560 px).
const PHOTO_LONG_SIDE: u32 = 1_536;
/// The largest file Telegram lets bots download.
pub const DOWNLOAD_LIMIT: usize = 20 * 1024 * 1024;

/// `sendMessage`, its answer read only for the sent message's id. Telegram answers with the
/// whole message (its text, entities, keyboard and chat); teloxide's own payload reads all of
/// that into a `Message`, the costliest part of the answer for the one number kept.
#[derive(Clone, Serialize)]
#[serde(transparent)]
struct ForItsId(SendMessage);

impl Payload for ForItsId {
    type Output = Sent;
    const NAME: &'static str = <SendMessage as Payload>::NAME;
}

/// What is read of a sent message (the rest of it is skipped unread).
#[derive(Debug, Deserialize)]
struct Sent {
    message_id: i32,
}

/// Sends through Telegram.
#[derive(Clone)]
pub struct TelegramMessenger {
    bot: Bot,
    /// Telegram's sending limits.
    pace: Arc<Pace>,
    /// The bot's @username, for pointing people to their private chat with it.
    username: String,
    /// The largest upload; larger results are fitted or linked.
    upload_limit: usize,
    links: Option<Arc<FileLinks>>,
}

impl std::fmt::Debug for TelegramMessenger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The bot holds the token; never print it.
        f.debug_struct("TelegramMessenger").finish_non_exhaustive()
    }
}

impl TelegramMessenger {
    pub(crate) fn new(
        bot: Bot,
        pace: Arc<Pace>,
        username: &str,
        upload_limit: usize,
        links: Option<Arc<FileLinks>>,
    ) -> TelegramMessenger {
        TelegramMessenger {
            bot,
            pace,
            username: username.to_string(),
            upload_limit,
            links,
        }
    }

    /// Sends `body`, split into as many messages as Telegram's length limit asks, the buttons
    /// under the last. Only the first piece may be abandoned: once one is out, the rest follow.
    async fn post_text(
        &self,
        chat: &ChatRef,
        reply_to: Option<&str>,
        body: &str,
        buttons: &[Button],
        abandon: Option<&CancellationToken>,
    ) -> Result<MessageRef, DeliveryError> {
        let id = chat_id(chat)?;
        let pieces = text::split(body, text::MAX_TEXT);
        let last = pieces.len() - 1;
        let mut first = None;
        for (n, piece) in pieces.into_iter().enumerate() {
            let mut send = SendMessage::new(id, piece).parse_mode(ParseMode::Html);
            if n == 0
                && let Some(to) = reply_to.and_then(message_id)
            {
                send =
                    send.reply_parameters(ReplyParameters::new(to).allow_sending_without_reply());
            }
            if n == last
                && let Some(markup) = keyboard(buttons)
            {
                send = send.reply_markup(markup);
            }
            let abandon = if n == 0 { abandon } else { None };
            let send = JsonRequest::new(self.bot.clone(), ForItsId(send));
            let sent = self
                .pace
                .send_unless(id.0, abandon, || send.clone().into_future())
                .await
                .ok_or(DeliveryError::Abandoned)?
                .map_err(delivery)?;
            first.get_or_insert(sent.message_id);
        }
        Ok(MessageRef {
            chat: chat.clone(),
            id: first.map(|m: i32| m.to_string()).unwrap_or_default(),
        })
    }

    /// A result too large to upload, as a message with a download link when links are offered.
    async fn send_link(
        &self,
        chat: &ChatRef,
        reply_to: Option<&str>,
        media: &Output,
        caption: &str,
        buttons: &[Button],
        abandon: &CancellationToken,
    ) -> Result<MessageRef, DeliveryError> {
        let megabytes = media.bytes.len() as f64 / 1_000_000.0;
        let Some(links) = &self.links else {
            return Err(DeliveryError::Permanent(format!(
                "the result ({megabytes:.1} MB) is larger than Telegram lets bots upload ({:.1} MB)",
                self.upload_limit as f64 / 1_000_000.0
            )));
        };
        let url = links
            .offer(media)
            .await
            .map_err(|e| DeliveryError::Retry(format!("keeping a large result: {e}")))?;
        let mut all = vec![Button {
            label: words::download_label(megabytes),
            press: Press::Link(url),
        }];
        all.extend_from_slice(buttons);
        let text = format!("{caption}\n\n{}", words::DOWNLOAD_NOTE);
        self.post_text(chat, reply_to, &text, &all, Some(abandon))
            .await
    }

    /// The bot and its limits, for the Stars rail.
    pub(crate) fn bot(&self) -> (Bot, Arc<Pace>) {
        (self.bot.clone(), self.pace.clone())
    }

    /// Answers Telegram's pre-checkout question: yes, or no with the reason shown to the payer.
    pub(crate) async fn answer_pre_checkout(&self, id: &str, refusal: Option<&str>) {
        let mut answer = self
            .bot
            .answer_pre_checkout_query(PreCheckoutQueryId(id.to_string()), refusal.is_none());
        if let Some(why) = refusal {
            answer = answer.error_message(why);
        }
        if let Err(error) = answer.await {
            tracing::warn!(error = %describe(&error), "answering a pre-checkout query failed");
        }
    }

    /// Answers a pressed button, as an alert when `alert`.
    pub(crate) async fn answer(&self, id: &str, text: Option<&str>, alert: bool) {
        let mut answer = self
            .bot
            .answer_callback_query(CallbackQueryId(id.to_string()));
        if let Some(text) = text {
            // Telegram shows at most 200 characters in an alert.
            answer = answer.text(text::truncate(text, 200)).show_alert(alert);
        }
        if let Err(error) = answer.await {
            tracing::warn!(error = %describe(&error), "answering a button press failed");
        }
    }
}

/// A JPEG preview of an image sent as a document, as Telegram wants one: at most 320 px a side
/// and under 200 kB.
fn preview(bytes: &[u8]) -> Option<Vec<u8>> {
    let image = image::load_from_memory(bytes).ok()?;
    let small = image.thumbnail(320, 320).to_rgb8();
    let mut jpeg = std::io::Cursor::new(Vec::new());
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 80)
        .encode_image(&small)
        .ok()?;
    let jpeg = jpeg.into_inner();
    (jpeg.len() < 200 * 1024).then_some(jpeg)
}

fn chat_id(chat: &ChatRef) -> Result<ChatId, DeliveryError> {
    chat.id
        .parse()
        .map(ChatId)
        .map_err(|_| DeliveryError::Permanent(format!("{:?} is not a Telegram chat", chat.id)))
}

fn message_id(id: &str) -> Option<MessageId> {
    id.parse().ok().map(MessageId)
}

fn keyboard(buttons: &[Button]) -> Option<InlineKeyboardMarkup> {
    if buttons.is_empty() {
        return None;
    }
    // Three to a row keeps labels readable on a phone.
    let rows: Vec<Vec<InlineKeyboardButton>> = buttons
        .chunks(3)
        .map(|row| {
            row.iter()
                .filter_map(|b| match &b.press {
                    Press::Action(action) => Some(InlineKeyboardButton::callback(
                        b.label.clone(),
                        action.encode(),
                    )),
                    Press::Link(url) => url::Url::parse(url)
                        .ok()
                        .map(|url| InlineKeyboardButton::url(b.label.clone(), url)),
                })
                .collect()
        })
        .collect();
    Some(InlineKeyboardMarkup::new(rows))
}

/// A teloxide error without the request's URL (which holds the token).
pub(crate) fn describe(error: &RequestError) -> String {
    match error {
        RequestError::Api(api) => format!("Telegram refused: {api}"),
        RequestError::RetryAfter(after) => format!("rate limited for {}s", after.seconds()),
        RequestError::MigrateToChatId(_) => "the group became a supergroup".into(),
        RequestError::Network(_) => "network error talking to Telegram".into(),
        RequestError::InvalidJson { .. } => "Telegram answered with unexpected JSON".into(),
        RequestError::Io(_) => "I/O error talking to Telegram".into(),
    }
}

/// Whether a failed send is worth retrying.
fn delivery(error: RequestError) -> DeliveryError {
    let why = describe(&error);
    if matches!(error, RequestError::RetryAfter(_)) {
        bot_core::metrics::metrics().rate_limited("telegram");
    }
    match error {
        RequestError::RetryAfter(_) | RequestError::Network(_) | RequestError::Io(_) => {
            DeliveryError::Retry(why)
        }
        _ => DeliveryError::Permanent(why),
    }
}

impl Messenger for TelegramMessenger {
    fn platform(&self) -> Platform {
        Platform::Telegram
    }

    fn send_text<'a>(
        &'a self,
        chat: &'a ChatRef,
        reply_to: Option<&'a str>,
        body: &'a str,
        buttons: &'a [Button],
    ) -> MessengerFuture<'a, MessageRef> {
        Box::pin(self.post_text(chat, reply_to, body, buttons, None))
    }

    fn edit_text<'a>(
        &'a self,
        message: &'a MessageRef,
        body: &'a str,
        buttons: &'a [Button],
    ) -> MessengerFuture<'a, ()> {
        Box::pin(async move {
            let id = chat_id(&message.chat)?;
            let target = message_id(&message.id)
                .ok_or_else(|| DeliveryError::Permanent("not a Telegram message".into()))?;
            // A status line is short; if a prompt made it long, the edit keeps the first part.
            let piece = text::split(body, text::MAX_TEXT).remove(0);
            let mut edit = self
                .bot
                .edit_message_text(id, target, piece)
                .parse_mode(ParseMode::Html);
            if let Some(markup) = keyboard(buttons) {
                edit = edit.reply_markup(markup);
            }
            match edit.await {
                Ok(_) => Ok(()),
                Err(RequestError::Api(ApiError::MessageNotModified)) => Ok(()),
                Err(error) => Err(delivery(error)),
            }
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
            let id = chat_id(chat)?;
            let fitted;
            let mut media = media;
            if media.bytes.len() > self.upload_limit {
                let fits = if media.kind == MediaKind::Image {
                    let (bytes, limit) = (media.bytes.clone(), self.upload_limit as u64);
                    tokio::task::spawn_blocking(move || bot_core::media::fit_image(&bytes, limit))
                        .await
                        .ok()
                        .flatten()
                } else {
                    None
                };
                let Some(bytes) = fits else {
                    return self
                        .send_link(chat, reply_to, media, caption, buttons, abandon)
                        .await;
                };
                let stem = media
                    .file_name
                    .rsplit_once('.')
                    .map_or(media.file_name.as_str(), |(stem, _)| stem);
                // Built field by field: the original's bytes are not copied for nothing.
                fitted = Output {
                    kind: media.kind,
                    mime: "image/jpeg",
                    file_name: format!("{stem}.jpg"),
                    bytes,
                    dimensions: media.dimensions,
                };
                media = &fitted;
            }
            let file = InputFile::memory(media.bytes.clone()).file_name(media.file_name.clone());
            let escaped = text::caption(caption, text::MAX_CAPTION);
            let reply = reply_to
                .and_then(message_id)
                .map(|to| ReplyParameters::new(to).allow_sending_without_reply());
            let markup = keyboard(buttons);
            macro_rules! send {
                ($request:expr) => {{
                    let mut request = $request.caption(escaped).parse_mode(ParseMode::Html);
                    if let Some(reply) = reply {
                        request = request.reply_parameters(reply);
                    }
                    if let Some(markup) = markup {
                        request = request.reply_markup(markup);
                    }
                    self.pace
                        .send_unless(id.0, Some(abandon), || request.clone().into_future())
                        .await
                        .ok_or(DeliveryError::Abandoned)?
                }};
            }
            let large = media
                .dimensions
                .is_some_and(|(w, h)| w.max(h) > PHOTO_LONG_SIDE)
                || media.bytes.len() > 10 * 1024 * 1024;
            let sent = match media.kind {
                MediaKind::Image if large => {
                    let mut document = self.bot.send_document(id, file);
                    // Decoding a 4K image is CPU work: keep it off the async threads.
                    let bytes = media.bytes.clone();
                    let preview = tokio::task::spawn_blocking(move || preview(&bytes))
                        .await
                        .ok()
                        .flatten();
                    if let Some(preview) = preview {
                        document =
                            document.thumbnail(InputFile::memory(preview).file_name("preview.jpg"));
                    }
                    send!(document)
                }
                MediaKind::Image => send!(self.bot.send_photo(id, file)),
                MediaKind::Animation => send!(self.bot.send_animation(id, file)),
                MediaKind::Video => send!(self.bot.send_video(id, file)),
                MediaKind::Audio => send!(self.bot.send_audio(id, file)),
            };
            let sent = match sent {
                // Telegram's own limit is lower than ours (a smaller local server, a change).
                Err(RequestError::Api(ApiError::RequestEntityTooLarge)) => {
                    return self
                        .send_link(chat, reply_to, media, caption, buttons, abandon)
                        .await;
                }
                other => other.map_err(delivery)?,
            };
            Ok(MessageRef {
                chat: chat.clone(),
                id: sent.id.0.to_string(),
            })
        })
    }

    fn send_notice<'a>(
        &'a self,
        chat: &'a ChatRef,
        person: Option<&'a Identity>,
        text: &'a str,
    ) -> MessengerFuture<'a, MessageRef> {
        Box::pin(async move {
            let person = person.filter(|p| p.platform() == Platform::Telegram);
            let (ChatKind::Group, Some(person)) = (chat.kind, person) else {
                return self.send_text(chat, None, text, &[]).await;
            };
            // A notice names a balance or an amount: it goes to the person's private chat (its
            // id is theirs); the group only hears that something is waiting, when it cannot.
            let private = ChatRef {
                platform: Platform::Telegram,
                id: person.external_id().to_string(),
                kind: ChatKind::Private,
            };
            match self.send_text(&private, None, text, &[]).await {
                Err(DeliveryError::Permanent(_)) => {
                    let pointer = words::notice_needs_private_chat(&self.username);
                    self.send_text(chat, None, &pointer, &[]).await
                }
                other => other,
            }
        })
    }

    fn activity<'a>(&'a self, chat: &'a ChatRef) -> MessengerFuture<'a, ()> {
        Box::pin(async move {
            let id = chat_id(chat)?;
            self.bot
                .send_chat_action(id, ChatAction::UploadPhoto)
                .await
                .map(|_| ())
                .map_err(delivery)
        })
    }

    fn fetch<'a>(
        &'a self,
        attachment: &'a Attachment,
        limit: usize,
    ) -> MessengerFuture<'a, Vec<u8>> {
        Box::pin(async move {
            let limit = limit.min(DOWNLOAD_LIMIT);
            let too_large = || {
                DeliveryError::TooLarge(format!(
                    "The file is larger than the {} MB Telegram lets bots download. Send it compressed as a photo, or a smaller file.",
                    limit / (1024 * 1024)
                ))
            };
            let file = match self.bot.get_file(FileId(attachment.id.clone())).await {
                Ok(file) => file,
                Err(RequestError::Api(ApiError::Unknown(text)))
                    if text.contains("file is too big") =>
                {
                    return Err(too_large());
                }
                Err(error) => return Err(delivery(error)),
            };
            if file.meta.size as usize > limit {
                return Err(too_large());
            }
            let mut bytes = Vec::new();
            let mut stream = self.bot.download_file_stream(&file.path);
            use futures_util::StreamExt as _;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk
                    .map_err(|_| DeliveryError::Retry("downloading the photo failed".into()))?;
                if bytes.len() + chunk.len() > limit {
                    return Err(too_large());
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(bytes)
        })
    }
}
