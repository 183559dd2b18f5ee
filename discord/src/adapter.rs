//! One handler for both ways in. An interaction is acknowledged at once (Discord allows three
//! seconds and one acknowledgement), then the core answers in a task: the answer replaces the
//! deferred response, or, when it must be private and the deferral was public, the deferral is
//! removed and the answer sent ephemerally.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use bot_core::{
    command::Spec,
    service::{Reply, Service, Visibility},
};
use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{
    messenger::{DiscordMessenger, Live},
    model::Interaction,
    render,
    rest::Body,
    translate::{self, Ack, Incoming, Translated},
};

/// How many interactions are worked on at once; more wait for a permit.
pub const IN_FLIGHT: usize = 256;

/// Interaction callback types.
const PONG: u8 = 1;
const CHANNEL_MESSAGE: u8 = 4;
const DEFERRED_CHANNEL_MESSAGE: u8 = 5;
const DEFERRED_UPDATE: u8 = 6;
const AUTOCOMPLETE_RESULT: u8 = 8;
const EPHEMERAL: u64 = 1 << 6;

/// Turns interactions into core requests and core replies into Discord answers.
#[derive(Debug, Clone)]
pub struct Handler {
    service: Arc<Service>,
    messenger: Arc<DiscordMessenger>,
    permits: Arc<Semaphore>,
    /// The core's commands, as registered (choices from configuration).
    specs: Arc<[Spec]>,
}

/// Work left after the acknowledgement.
#[derive(Debug)]
pub struct Pending {
    translated: Translated,
    live: Arc<Live>,
    _permit: OwnedSemaphorePermit,
}

impl Handler {
    pub fn new(service: Arc<Service>, messenger: Arc<DiscordMessenger>) -> Handler {
        let specs = service.grammar().specs().into();
        Handler {
            service,
            messenger,
            permits: Arc::new(Semaphore::new(IN_FLIGHT)),
            specs,
        }
    }

    pub fn messenger(&self) -> &Arc<DiscordMessenger> {
        &self.messenger
    }

    /// The acknowledgement to give `interaction`, and the work to do once it is given.
    pub async fn begin(&self, interaction: &Interaction) -> (Value, Option<Pending>) {
        match translate::interaction(interaction, &self.specs) {
            Incoming::Ping => (json!({"type": PONG}), None),
            Incoming::NoChoices => (
                json!({"type": AUTOCOMPLETE_RESULT, "data": {"choices": []}}),
                None,
            ),
            Incoming::Refuse(text) => (
                json!({"type": CHANNEL_MESSAGE, "data": render::text(&text, &[], true)}),
                None,
            ),
            Incoming::Request(translated) => {
                // Discord waits three seconds for the acknowledgement: rather than wait longer
                // for room, say so.
                let waiting = tokio::time::timeout(
                    Duration::from_millis(1_500),
                    self.permits.clone().acquire_owned(),
                );
                let Ok(Ok(permit)) = waiting.await else {
                    let text = if self.permits.is_closed() {
                        "The bot is restarting; please try again in a minute."
                    } else {
                        "The bot is very busy right now; please try again in a moment."
                    };
                    return (
                        json!({"type": CHANNEL_MESSAGE, "data": render::text(text, &[], true)}),
                        None,
                    );
                };
                let ack = match translated.ack {
                    Ack::Message { ephemeral: true } => {
                        json!({"type": DEFERRED_CHANNEL_MESSAGE, "data": {"flags": EPHEMERAL}})
                    }
                    Ack::Message { ephemeral: false } => json!({"type": DEFERRED_CHANNEL_MESSAGE}),
                    Ack::Update => json!({"type": DEFERRED_UPDATE}),
                };
                let live = self.messenger.register(Live::new(
                    &interaction.id,
                    interaction.token.clone(),
                    translated.ack,
                    interaction.attachment_size_limit,
                    translated.request.identity.external_id(),
                    &translated.request.chat.id,
                ));
                (
                    ack,
                    Some(Pending {
                        translated,
                        live,
                        _permit: permit,
                    }),
                )
            }
        }
    }

    /// Once the acknowledgement is given, lets the core answer in a task of its own.
    pub fn proceed(&self, pending: Option<Pending>) {
        if let Some(pending) = pending {
            let handler = self.clone();
            tokio::spawn(async move { handler.finish(pending).await });
        }
    }

    /// Asks the core and delivers its answer.
    async fn finish(&self, pending: Pending) {
        let Pending {
            translated, live, ..
        } = pending;
        // Before the core acts: a job it queues may be finished by another instance.
        self.messenger.keep(&live).await;
        let reply = self
            .service
            .answer(translated.request)
            .await
            .filter(|r| !r.text.trim().is_empty());
        let result = match (translated.ack, reply) {
            // A button: the answer is a follow-up, the message with the button stays.
            (Ack::Update, Some(reply)) => self.followup(&live, &reply).await,
            (Ack::Update, None) => Ok(()),
            (Ack::Message { ephemeral }, reply) => {
                let original_free = !live.original_used.swap(true, Ordering::SeqCst);
                match reply {
                    // A job's status message took the response, or there is nothing to say.
                    None if original_free => {
                        self.messenger.delete_original(&live).await;
                        Ok(())
                    }
                    None => Ok(()),
                    // The deferred response is as visible as the answer may be: it becomes it.
                    Some(reply)
                        if original_free && (ephemeral || reply.visibility == Visibility::Chat) =>
                    {
                        let body = render::text(&reply.text, &reply.buttons, ephemeral);
                        self.messenger
                            .edit_original(&live, Body::Json(body))
                            .await
                            .map(drop)
                    }
                    // A private answer to a public command (a refusal, a price to confirm).
                    // Discord keeps a deferral's visibility, and a follow-up sent while it is
                    // still "thinking…" only edits it: so the public message is resolved first,
                    // the answer follows as a new message for the requester alone, and the
                    // public one goes.
                    Some(reply) if original_free => {
                        let note = render::text("Only you can see the answer.", &[], false);
                        let resolved = self.messenger.edit_original(&live, Body::Json(note)).await;
                        let sent = self.followup(&live, &reply).await;
                        self.messenger.delete_original(&live).await;
                        resolved.and(sent)
                    }
                    Some(reply) => self.followup(&live, &reply).await,
                }
            }
        };
        if let Err(error) = result {
            tracing::warn!(interaction = %live.id, %error, "a Discord answer could not be sent");
        }
    }

    async fn followup(&self, live: &Live, reply: &Reply) -> Result<(), crate::rest::RestError> {
        let private = reply.visibility == Visibility::Requester;
        let body = render::text(&reply.text, &reply.buttons, private);
        self.messenger
            .followup(live, Body::Json(body))
            .await
            .map(drop)
    }

    /// Waits for the interactions in hand to be answered; new ones are turned away.
    pub async fn drain(&self) {
        let _ = self.permits.acquire_many(IN_FLIGHT as u32).await;
        self.permits.close();
    }
}
