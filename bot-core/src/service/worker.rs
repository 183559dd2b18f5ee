//! The job worker: claims a job, keeps its lease alive, fetches its uploads through the
//! adapter, asks the providers in order (falling through on an outage, not on a refusal),
//! delivers the result, and only then posts the hold. Every other ending voids the hold and tells
//! the person why in plain words.

use std::{sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;

use super::{Action, Button, JobSpec, Service, final_status, status_text};
use crate::{
    Error, Result,
    command::{AspectRatio, Quality},
    jobs::{Job, Lease},
    media::{Output, Upload},
    pricing::Operation,
    providers::{GenerationRequest, Provider, ProviderError, local::DISCLOSURE},
};

use super::DeliveryError;

/// How a worker behaves; the `[workers]` section.
#[derive(Debug, Clone, Copy, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    /// Concurrent workers in this process.
    pub count: usize,
    /// How long a claim lasts without renewal, in seconds.
    pub lease_seconds: u64,
    /// How long one provider call may take, per operation, in seconds.
    pub timeouts: Timeouts,
    /// How long an idle worker waits before looking for work again, in milliseconds.
    pub poll_ms: u64,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            count: 4,
            lease_seconds: 60,
            timeouts: Timeouts::default(),
            poll_ms: 250,
        }
    }
}

/// Provider time limits per operation, in seconds; the `[workers.timeouts]` section.
#[derive(Debug, Clone, Copy, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timeouts {
    pub image: u64,
    pub enhance: u64,
    pub removebg: u64,
    pub faceswap: u64,
    pub portrait: u64,
    pub video: u64,
    pub music: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            image: 120,
            enhance: 120,
            removebg: 120,
            faceswap: 180,
            portrait: 180,
            video: 900,
            music: 600,
        }
    }
}

impl Timeouts {
    /// The limit for one operation.
    pub fn of(&self, operation: Operation) -> Duration {
        Duration::from_secs(
            match operation {
                Operation::Image(_) => self.image,
                Operation::Enhance => self.enhance,
                Operation::RemoveBackground => self.removebg,
                Operation::FaceSwap => self.faceswap,
                Operation::Portrait => self.portrait,
                Operation::Video { .. } => self.video,
                Operation::Music { .. } => self.music,
            }
            .max(1),
        )
    }
}

/// One worker loop.
#[derive(Debug, Clone)]
pub struct Worker {
    service: Arc<Service>,
    providers: Arc<Vec<Arc<dyn Provider>>>,
    config: WorkerConfig,
    name: String,
}

/// How one job ended, for the loop.
enum Outcome {
    Delivered,
    Failed(String),
    Retry(String),
}

impl Worker {
    /// A worker named `name` (unique per process and instance).
    pub fn new(
        service: Arc<Service>,
        providers: Arc<Vec<Arc<dyn Provider>>>,
        config: WorkerConfig,
        name: String,
    ) -> Worker {
        Worker {
            service,
            providers,
            config,
            name,
        }
    }

    /// Works until `shutdown`; a job in hand is finished first.
    pub async fn run(self, shutdown: CancellationToken) {
        let lease = Duration::from_secs(self.config.lease_seconds.max(1));
        while !shutdown.is_cancelled() {
            let claimed = self
                .service
                .store()
                .claim(&self.name, lease, &self.service.settings().jobs)
                .await;
            match claimed {
                Ok(Some(lease)) => self.work(lease).await,
                Ok(None) => {
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(Duration::from_millis(self.config.poll_ms)) => {}
                    }
                }
                Err(error) => {
                    tracing::error!(worker = %self.name, error = format!("{error:#}"), "claiming a job failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Runs one claimed job to one of its endings. Public for tests and benchmarks that drive
    /// workers step by step.
    pub async fn work(&self, lease: Lease) {
        let job = lease.job.clone();
        let span = tracing::info_span!("job", job = %job.id, operation = %job.operation);
        let _entered = span.enter();
        let spec: JobSpec = match serde_json::from_str(&job.payload) {
            Ok(spec) => spec,
            Err(error) => {
                tracing::error!(%error, "unreadable job payload");
                let _ = self
                    .service
                    .store()
                    .fail(&lease, "the request could not be read")
                    .await;
                return;
            }
        };
        self.status(&job, &spec, "running").await;
        // Renew the lease while working; a lost lease (we were too slow and another worker took
        // the job) or a cancellation stops the work.
        let stop = CancellationToken::new();
        // Dropped with this future: a worker that is killed stops renewing, so its lease expires
        // and another worker takes the job.
        let renewing = AbortOnDrop(tokio::spawn(renew(
            self.service.clone(),
            lease.clone(),
            self.config,
            stop.clone(),
        )));
        let outcome = tokio::select! {
            outcome = self.attempt(&job, &spec) => outcome,
            () = stop.cancelled() => Outcome::Failed(String::new()),
        };
        drop(renewing);
        let store = self.service.store();
        let ended = match outcome {
            Outcome::Delivered => store.succeed(&lease).await,
            Outcome::Failed(reason) if stop.is_cancelled() => {
                let cancelled = store
                    .job(job.id)
                    .await
                    .map(|j| j.cancel_requested)
                    .unwrap_or(false);
                if cancelled {
                    store.fail(&lease, "cancelled at your request").await
                } else {
                    tracing::warn!(%reason, "lease lost; another worker has the job");
                    return;
                }
            }
            Outcome::Failed(reason) => store.fail(&lease, &reason).await,
            Outcome::Retry(reason) => {
                let backoff = Duration::from_secs(2u64.saturating_pow(job.attempts.min(8)));
                store
                    .retry_later(&lease, &reason, backoff, &self.service.settings().jobs)
                    .await
            }
        };
        match ended {
            Ok(ended) if ended.state.is_final() => {
                if let Ok(Some(message)) = self.service.status_message(job.id).await
                    && let Ok(messenger) = self.service.messenger(message.chat.platform)
                {
                    let _ = messenger
                        .edit_text(&message, &final_status(&ended, &spec), &[])
                        .await;
                }
            }
            Ok(requeued) => {
                let reason = requeued.failure.clone().unwrap_or_default();
                self.status(&requeued, &spec, &format!("waiting to retry ({reason})"))
                    .await;
            }
            Err(Error::LeaseLost(_)) => tracing::warn!("lease lost before the job could end"),
            Err(error) => tracing::error!(error = format!("{error:#}"), "ending a job failed"),
        }
    }

    async fn attempt(&self, job: &Job, spec: &JobSpec) -> Outcome {
        let settings = self.service.settings();
        let messenger = match self.service.messenger(spec.chat.platform) {
            Ok(messenger) => messenger.clone(),
            Err(error) => return Outcome::Failed(error.to_string()),
        };
        // Uploads are fetched now, kept in memory for this attempt only, and never logged.
        let mut inputs = Vec::new();
        for attachment in &spec.attachments {
            let bytes = match messenger
                .fetch(attachment, settings.media.max_upload_bytes)
                .await
            {
                Ok(bytes) => bytes,
                Err(DeliveryError::Retry(why)) => return Outcome::Retry(why),
                Err(error) => return Outcome::Failed(error.to_string()),
            };
            match Upload::check(bytes, &settings.media) {
                Ok(upload) => inputs.push(upload),
                Err(error) => return Outcome::Failed(error.to_string()),
            }
        }
        let request = GenerationRequest {
            operation: spec.operation,
            prompt: spec.prompt.clone(),
            negative: spec.negative.clone(),
            seed: spec.seed,
            aspect: AspectRatio::parse(&spec.aspect).unwrap_or(AspectRatio::SQUARE),
            style: spec.style.clone(),
            inputs,
        };
        let output = match self.generate(&request).await {
            Ok(output) => output,
            Err(ProviderError::Refused(why)) => return Outcome::Failed(why),
            Err(ProviderError::Transient(why)) => return Outcome::Retry(why),
            Err(ProviderError::Unavailable(why)) => {
                return Outcome::Failed(format!("no provider could take it ({why})"));
            }
        };
        let caption = self.caption(job, spec).await;
        let mut buttons = vec![Button {
            label: "Regenerate".into(),
            action: Action::Regenerate(job.id),
        }];
        if let Operation::Image(quality) = spec.operation {
            if quality == Quality::Standard {
                buttons.push(Button {
                    label: "HD".into(),
                    action: Action::Upscale(job.id, Quality::Hd),
                });
            }
            if quality != Quality::FourK {
                buttons.push(Button {
                    label: "4K".into(),
                    action: Action::Upscale(job.id, Quality::FourK),
                });
            }
        }
        deliver(&*messenger, spec, &output, &caption, &buttons).await
    }

    async fn generate(&self, request: &GenerationRequest) -> Result<Output, ProviderError> {
        let timeout = self.config.timeouts.of(request.operation);
        let mut last = ProviderError::Unavailable("no provider is configured for this".into());
        for provider in self
            .providers
            .iter()
            .filter(|p| p.supports(request.operation))
        {
            match tokio::time::timeout(timeout, provider.generate(request)).await {
                Ok(Ok(output)) => return Ok(output),
                Ok(Err(ProviderError::Unavailable(why))) => {
                    tracing::warn!(provider = provider.name(), %why, "provider unavailable; trying the next");
                    last = ProviderError::Unavailable(why);
                }
                Ok(Err(other)) => return Err(other),
                Err(_) => {
                    return Err(ProviderError::Transient(format!(
                        "{} took longer than {}s",
                        provider.name(),
                        timeout.as_secs()
                    )));
                }
            }
        }
        Err(last)
    }

    async fn caption(&self, job: &Job, spec: &JobSpec) -> String {
        let settings = self.service.settings();
        let cost = settings.pricing.cost(spec.operation);
        let mut caption = String::new();
        if let Some(prompt) = &spec.prompt {
            caption.push_str(&format!("“{}”\n", super::shorten(prompt, 600)));
        }
        caption.push_str(&format!(
            "{} for {}",
            spec.operation.label(),
            spec.requester
        ));
        caption.push_str(&format!(" · {cost}"));
        if let Ok(user) = self.service.store().user(job.user).await
            && let Ok(balance) = self.service.store().account_balance(user.wallet).await
        {
            // The hold is posted once delivery succeeds; what remains available is the balance.
            caption.push_str(&format!(" · balance {}", balance.available()));
        }
        if settings.local_preview {
            caption.push_str(&format!("\n{DISCLOSURE}"));
        }
        super::shorten(&caption, 1_000)
    }

    async fn status(&self, job: &Job, spec: &JobSpec, state: &str) {
        if let Ok(Some(message)) = self.service.status_message(job.id).await
            && let Ok(messenger) = self.service.messenger(message.chat.platform)
        {
            let buttons = [Button {
                label: "Cancel".into(),
                action: Action::Cancel(job.id),
            }];
            let _ = messenger
                .edit_text(&message, &status_text(job, spec, state), &buttons)
                .await;
        }
    }
}

async fn deliver(
    messenger: &dyn super::Messenger,
    spec: &JobSpec,
    output: &Output,
    caption: &str,
    buttons: &[Button],
) -> Outcome {
    match messenger
        .send_media(
            &spec.chat,
            spec.reply_to.as_deref(),
            output,
            caption,
            buttons,
        )
        .await
    {
        Ok(_) => Outcome::Delivered,
        // The hold stays until delivery works: the job is retried, not charged.
        Err(DeliveryError::Retry(why)) => Outcome::Retry(format!("delivery: {why}")),
        Err(error) => Outcome::Failed(format!("the result could not be delivered: {error}")),
    }
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Keeps the lease alive (renewing a third of the way through it) and watches, every second, for
/// the person cancelling; either a lost lease or a cancellation stops the work.
async fn renew(service: Arc<Service>, lease: Lease, config: WorkerConfig, stop: CancellationToken) {
    const WATCH: Duration = Duration::from_secs(1);
    let renew_every = Duration::from_secs((config.lease_seconds / 3).max(1));
    let mut since_renewal = Duration::ZERO;
    loop {
        tokio::time::sleep(WATCH).await;
        since_renewal += WATCH;
        if since_renewal >= renew_every {
            since_renewal = Duration::ZERO;
            // A database hiccup is not a lost lease: keep working, the next renewal tells.
            let still_ours = service
                .store()
                .renew(&lease, Duration::from_secs(config.lease_seconds))
                .await
                .unwrap_or(true);
            if !still_ours {
                stop.cancel();
                return;
            }
        }
        let cancelled = service
            .store()
            .job(lease.job.id)
            .await
            .map(|job| job.cancel_requested)
            .unwrap_or(false);
        if cancelled {
            stop.cancel();
            return;
        }
    }
}
