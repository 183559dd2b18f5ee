//! The port each adapter implements so the core can talk back: send and edit messages, send
//! media, and fetch an upload when its job runs (never before: terms §6.2).

use std::{future::Future, pin::Pin};

use tokio_util::sync::CancellationToken;

use crate::{Identity, Platform, media::Output};

use super::{Attachment, Button, ChatRef, MessageRef};

/// A boxed future for calling a messenger through `dyn Messenger`.
pub type MessengerFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, DeliveryError>> + Send + 'a>>;

/// Why a platform did not take a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// Worth trying again (rate limit, network); the job keeps its hold until delivery works.
    #[error("delivery failed for now: {0}")]
    Retry(String),
    /// Will never work (chat gone, bot blocked); the job ends and its hold is voided.
    #[error("delivery impossible: {0}")]
    Permanent(String),
    /// The upload is larger than the platform lets bots download.
    #[error("{0}")]
    TooLarge(String),
    /// Not sent: it was still waiting its turn when the job was handed back (shutdown).
    #[error("not sent: the job was handed back before its turn came")]
    Abandoned,
}

/// How the core reaches people on one platform.
pub trait Messenger: Send + Sync + std::fmt::Debug {
    /// The platform this messenger serves.
    fn platform(&self) -> Platform;

    /// Sends text, as a reply to `reply_to` when given.
    ///
    /// # Errors
    ///
    /// A [`DeliveryError`] saying whether to retry.
    fn send_text<'a>(
        &'a self,
        chat: &'a ChatRef,
        reply_to: Option<&'a str>,
        text: &'a str,
        buttons: &'a [Button],
    ) -> MessengerFuture<'a, MessageRef>;

    /// Replaces the text (and buttons) of a message we sent.
    ///
    /// # Errors
    ///
    /// A [`DeliveryError`] saying whether to retry.
    fn edit_text<'a>(
        &'a self,
        message: &'a MessageRef,
        text: &'a str,
        buttons: &'a [Button],
    ) -> MessengerFuture<'a, ()>;

    /// Sends a result with its caption. When `abandon` fires while the result is still
    /// waiting its turn (a platform's rate limits), nothing is sent and the answer is
    /// [`DeliveryError::Abandoned`]; a request already on its way to the platform is finished,
    /// never cut, because the platform would then hold a result we believe undelivered, and
    /// whoever takes the job next would send it again.
    ///
    /// # Errors
    ///
    /// A [`DeliveryError`] saying whether to retry.
    fn send_media<'a>(
        &'a self,
        chat: &'a ChatRef,
        reply_to: Option<&'a str>,
        media: &'a Output,
        caption: &'a str,
        buttons: &'a [Button],
        abandon: &'a CancellationToken,
    ) -> MessengerFuture<'a, MessageRef>;

    /// Sends a private notice (a payment's or refund's outcome) for `person`, in or from `chat`
    /// where they bought. Platforms that can answer one person privately do; by default it is
    /// sent to the chat.
    ///
    /// # Errors
    ///
    /// A [`DeliveryError`] saying whether to retry.
    fn send_notice<'a>(
        &'a self,
        chat: &'a ChatRef,
        _person: Option<&'a Identity>,
        text: &'a str,
    ) -> MessengerFuture<'a, MessageRef> {
        self.send_text(chat, None, text, &[])
    }

    /// Shows that the bot is working on something for this chat ("sending a photo…"), for a
    /// few seconds. Best effort.
    fn activity<'a>(&'a self, _chat: &'a ChatRef) -> MessengerFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }

    /// Downloads an upload's bytes, at most `limit` of them.
    ///
    /// # Errors
    ///
    /// [`DeliveryError::TooLarge`] past the limit; otherwise whether to retry.
    fn fetch<'a>(
        &'a self,
        attachment: &'a Attachment,
        limit: usize,
    ) -> MessengerFuture<'a, Vec<u8>>;
}
