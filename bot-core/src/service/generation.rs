//! Generation commands: the content policy, the price, a quote for costly operations, and the
//! hold with the job enqueued in one step, then the job's public status message.

use super::*;
use crate::media::MAX_PHOTOS;

impl Service {
    pub(super) async fn generation(
        &self,
        request: &Request,
        user: &User,
        command: Command,
    ) -> Result<Option<Reply>> {
        let mut spec = JobSpec {
            operation: Operation::Enhance,
            prompt: None,
            negative: None,
            seed: None,
            aspect: "1:1".into(),
            style: None,
            attachments: request.attachments.clone(),
            chat: request.chat.clone(),
            reply_to: request.message_id.clone(),
            requester: request.name.clone(),
            identity: request.identity.to_string(),
        };
        // How many photos the operation needs, and how many it uses at most.
        match command {
            Command::Imagine(imagine) => {
                spec.operation = Operation::Image(imagine.quality);
                spec.prompt = Some(imagine.prompt);
                spec.negative = imagine.negative;
                spec.seed = imagine.seed;
                spec.aspect = imagine.aspect.to_string();
            }
            Command::Enhance(_) => spec.operation = Operation::Enhance,
            Command::RemoveBackground(_) => spec.operation = Operation::RemoveBackground,
            Command::FaceSwap(_) => spec.operation = Operation::FaceSwap,
            Command::Portrait(portrait) => {
                spec.operation = Operation::Portrait;
                spec.style = Some(portrait.style);
            }
            Command::Video(video) => {
                spec.operation = Operation::Video {
                    seconds: video.seconds,
                };
                spec.prompt = Some(video.prompt);
            }
            Command::Music(music) => {
                spec.operation = Operation::Music {
                    seconds: music.seconds,
                };
                spec.prompt = Some(music.prompt);
            }
            _ => return Ok(None),
        }
        let info = spec.operation.info();
        if spec.attachments.len() > MAX_PHOTOS {
            return Ok(Some(Reply::private(format!(
                "That is more than {MAX_PHOTOS} photos at once, more than an album holds. \
                 Nothing was done and no credits were taken."
            ))));
        }
        if spec.attachments.len() < info.photos_needed {
            return Ok(Some(Reply::private(match info.photos_needed {
                1 => "Send this command with a photo, or as a reply to one.".to_string(),
                _ => "Send two photos together with this command: the face first, then the target."
                    .to_string(),
            })));
        }
        spec.attachments.truncate(info.photos_used);
        if let Some(too_big) = spec
            .attachments
            .iter()
            .find_map(|a| a.size)
            .filter(|s| *s > self.settings.media.max_upload_bytes as u64)
        {
            return Ok(Some(Reply::private(format!(
                "That file is {} MB; the limit is {} MB. No credits were taken.",
                too_big.div_ceil(1024 * 1024),
                self.settings.media.max_upload_bytes / (1024 * 1024)
            ))));
        }
        let texts = [
            spec.prompt.as_deref(),
            spec.negative.as_deref(),
            spec.style.as_deref(),
        ];
        if let Err(refusal) = self.settings.policy.check(texts.into_iter().flatten()) {
            self.store.count_policy_refusal(user.id).await?;
            return Ok(Some(Reply::private(refusal.reason)));
        }
        if user.frozen_at.is_some() {
            return Err(Error::User(UserError::Frozen));
        }
        let cost = self.settings.pricing.cost(spec.operation);
        if self.settings.pricing.needs_confirmation(spec.operation) {
            return self.quote(user, &spec, cost).await.map(Some);
        }
        self.enqueue(user, &request.key, spec).await
    }

    pub(super) async fn quote(&self, user: &User, spec: &JobSpec, cost: Credits) -> Result<Reply> {
        let balance = self.store.account_balance(user.wallet).await?.available();
        let payload = serde_json::to_string(spec).map_err(anyhow::Error::from)?;
        let quote = self.store.create_quote(user.id, payload, cost).await?;
        let after = balance.checked_sub(cost);
        // Lengths are charged by the rate on the site (terms §4.1): the quote says it.
        let rule = self.settings.pricing.rule(spec.operation);
        let rate = match rule {
            crate::operation::Price::PerBlock { .. } => format!(" ({rule}, started blocks)"),
            _ => String::new(),
        };
        let text = match after {
            Some(after) => format!(
                "A {} costs {cost}{rate}; your balance {} → {}.",
                spec.operation.label(),
                balance.get(),
                after.get()
            ),
            None => format!(
                "A {} costs {cost}{rate}, and your balance is {balance}.",
                spec.operation.label()
            ),
        };
        Ok(Reply::private(text)
            .with("Confirm", Action::Confirm(quote))
            .with("Cancel", Action::Dismiss(quote)))
    }

    /// Holds the cost and queues the job, then sends its status message.
    pub(super) async fn enqueue(
        &self,
        user: &User,
        key: &str,
        spec: JobSpec,
    ) -> Result<Option<Reply>> {
        let payload = serde_json::to_string(&spec).map_err(anyhow::Error::from)?;
        let crate::jobs::Placed { job, ahead } = self
            .store
            .enqueue_placed(
                &NewJob {
                    key: key.to_string(),
                    user: user.id,
                    wallet: user.wallet,
                    operation: spec.operation.name().into(),
                    cost: self.settings.pricing.cost(spec.operation),
                    payload,
                },
                &self.settings.jobs,
            )
            .await?;
        if job.state.is_final() {
            return Ok(None);
        }
        tracing::info!(job = %job.id, operation = %job.operation, "queued");
        let place = if ahead >= crate::jobs::POSITION_CAP {
            format!("queued, more than {} jobs ahead", crate::jobs::POSITION_CAP)
        } else {
            format!("queued, position {}", ahead + 1)
        };
        let text = status_text(&job, &spec, &place);
        let messenger = self.messenger(spec.chat.platform)?;
        let buttons = [Button::action("Cancel", Action::Cancel(job.id))];
        match messenger
            .send_text(&spec.chat, spec.reply_to.as_deref(), &text, &buttons)
            .await
        {
            Ok(message) => {
                // The job may have ended while the message was on its way: make sure no
                // message is left saying "queued".
                if !self.set_status_message(job.id, &message).await? {
                    let now = self.store.job(job.id).await?;
                    let _ = messenger
                        .edit_text(&message, &final_status(&now, &spec), &[])
                        .await;
                }
            }
            Err(error) => {
                tracing::warn!(job = %job.id, %error, "could not send the status message")
            }
        }
        Ok(None)
    }

    pub(crate) async fn set_status_message(
        &self,
        job: JobId,
        message: &MessageRef,
    ) -> Result<bool> {
        let message = serde_json::to_string(message).map_err(anyhow::Error::from)?;
        self.store.set_status_message(job, message).await
    }

    pub(crate) async fn status_message(&self, job: JobId) -> Result<Option<MessageRef>> {
        let message = self.store.status_message(job).await?;
        Ok(message.and_then(|text| serde_json::from_str(&text).ok()))
    }
}
