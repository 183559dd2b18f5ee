//! The job worker: claims a job, keeps its lease alive, fetches its uploads through the
//! adapter, asks the providers in order (falling through on an outage, not on a refusal),
//! delivers the result, and only then posts the hold. Every other ending voids the hold and tells
//! the person why in plain words.

use crate::Fault;
use std::{sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::{Action, Button, JobSpec, Service, final_status};
use crate::{
    Result,
    command::{AspectRatio, Quality},
    jobs::{Job, Lease, Made},
    media::{Output, Upload},
    pricing::Operation,
    providers::{GenerationRequest, ProviderError, Routes, Run, local::DISCLOSURE},
};

use super::DeliveryError;

mod config;
mod status;

pub use config::{Timeouts, WorkerConfig};
use status::{Reporter, StatusLine, show_activity};

/// One worker loop.
#[derive(Debug, Clone)]
pub struct Worker {
    service: Arc<Service>,
    routes: Routes,
    config: WorkerConfig,
    name: String,
    /// Final status edits waiting their turn apart from the worker; awaited before it stops.
    waiting_edits: Arc<std::sync::Mutex<tokio::task::JoinSet<()>>>,
    /// Cancelled when a job in hand must be handed back rather than finished.
    hand_back: CancellationToken,
}

/// How long a status message may wait for its turn at shutdown.
const SHUTDOWN_SENDS: Duration = Duration::from_secs(2);

/// A result made and not yet delivered.
struct Product {
    messenger: Arc<dyn super::Messenger>,
    output: Output,
    preview: bool,
    made: Made,
}

/// How one job ended, for the loop.
enum Outcome {
    Delivered(Made),
    Failed(String),
    Retry(String),
    /// Not delivered because the job is being handed back; it goes back to the queue as it is.
    Abandoned,
    /// Not delivered because another worker has the job now; it is theirs to end.
    LeaseLost,
}

impl Worker {
    /// A worker named `name` (unique per process and instance).
    pub fn new(
        service: Arc<Service>,
        routes: Routes,
        config: WorkerConfig,
        name: String,
    ) -> Worker {
        Worker {
            service,
            routes,
            config,
            name,
            waiting_edits: Arc::default(),
            hand_back: CancellationToken::new(),
        }
    }

    /// Works until `shutdown`; a job in hand is finished first.
    pub async fn run(self, shutdown: CancellationToken) {
        let lease = Duration::from_secs(self.config.lease_seconds.max(1));
        let _deadline = AbortOnDrop(tokio::spawn({
            let (shutdown, hand_back) = (shutdown.clone(), self.hand_back.clone());
            let after = Duration::from_secs(self.config.hand_back_seconds);
            async move {
                shutdown.cancelled().await;
                tokio::time::sleep(after).await;
                hand_back.cancel();
            }
        }));
        while !shutdown.is_cancelled() {
            let claimed = self
                .service
                .store()
                .claim(&self.name, lease, &self.service.settings().jobs)
                .await;
            match claimed {
                Ok(Some(lease)) => {
                    self.work(lease).await;
                    let mut waiting = self.edits();
                    while waiting.try_join_next().is_some() {}
                }
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
        // Final status edits still queued behind a platform's rate limits are given a little
        // time, not the whole grace period: the results themselves are out.
        let waiting = std::mem::take(&mut *self.edits());
        if tokio::time::timeout(SHUTDOWN_SENDS, waiting.join_all())
            .await
            .is_err()
        {
            tracing::info!("status edits still waiting at shutdown were dropped");
        }
    }

    fn edits(&self) -> std::sync::MutexGuard<'_, tokio::task::JoinSet<()>> {
        self.waiting_edits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs one claimed job to one of its endings. Public for tests and benchmarks that drive
    /// workers step by step.
    pub async fn work(&self, lease: Lease) {
        // Instrumented, not entered: an entered span held across awaits would mark whatever
        // else runs on this thread meanwhile as part of this job.
        let span =
            tracing::info_span!("job", job = %lease.job.id, operation = %lease.job.operation);
        self.work_in_span(lease).instrument(span).await;
    }

    async fn work_in_span(&self, lease: Lease) {
        let job = lease.job.clone();
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
        let status = StatusLine::open(&self.service, &job, &spec, self.config);
        status.edit("running", true).await;
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
        // While running, the chat shows that something is on its way (platforms show this for
        // about five seconds).
        let busy = AbortOnDrop(tokio::spawn(show_activity(
            self.service.clone(),
            spec.chat.clone(),
        )));
        let (percent, watching) = tokio::sync::watch::channel(None::<u8>);
        let showing = AbortOnDrop(tokio::spawn(status.clone().follow(watching)));
        let made = tokio::select! {
            made = self.make(&lease, &spec, &percent) => made,
            () = stop.cancelled() => Err(Outcome::Failed(String::new())),
            () = self.hand_back.cancelled() => {
                drop((renewing, showing, busy));
                self.hand_back_job(&lease, &status).await;
                return;
            }
        };
        // Once a result is on its way to the platform it is seen through, hand-back or not:
        // cut in flight, the platform could hold a result we believe undelivered, and whoever
        // took the job next would send it again (no chat platform takes an idempotency key).
        // Only a result still waiting its turn behind the platform's limits is abandoned, and
        // the job handed back untouched.
        let outcome = match made {
            Ok(made) => self.deliver_in_hand(&lease, &spec, made, &stop).await,
            Err(outcome) => outcome,
        };
        drop((renewing, showing, busy));
        let store = self.service.store();
        let ended = match outcome {
            Outcome::LeaseLost => {
                tracing::warn!("lease lost before delivery; another worker has the job");
                return;
            }
            Outcome::Abandoned => {
                tracing::info!("result abandoned unsent: it was still waiting its turn");
                self.hand_back_job(&lease, &status).await;
                return;
            }
            Outcome::Delivered(made) => store.succeed_made(&lease, &made).await,
            Outcome::Failed(reason) if stop.is_cancelled() => {
                let cancelled = store
                    .job(job.id)
                    .await
                    .map(|j| j.cancel_requested)
                    .unwrap_or(false);
                if cancelled {
                    self.cancel_at_provider(&job, spec.operation).await;
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
        if let Ok(ended) = &ended {
            let state = if ended.state.is_final() {
                ended.state.as_str()
            } else {
                "retry"
            };
            crate::metrics::metrics().job(&job.operation, state);
        }
        match ended {
            Ok(ended) if ended.state.is_final() => {
                if let Some(later) = status.finish(&final_status(&ended, &spec)).await {
                    self.edits().spawn(later);
                }
            }
            Ok(requeued) => {
                let reason = requeued.failure.clone().unwrap_or_default();
                status
                    .edit(&format!("waiting to retry ({reason})"), true)
                    .await;
            }
            Err(error) if matches!(error.fault(), Some(Fault::LeaseLost(_))) => {
                tracing::warn!("lease lost before the job could end")
            }
            Err(error) => tracing::error!(error = format!("{error:#}"), "ending a job failed"),
        }
    }

    /// Shutting down: the job goes back to the queue with its hold, for another instance (or
    /// this one after its restart) to take at once.
    async fn hand_back_job(&self, lease: &Lease, status: &StatusLine) {
        match self.service.store().release(lease).await {
            Ok(_) => {
                tracing::info!("handed back at shutdown");
                crate::metrics::metrics().job(&lease.job.operation, "handed_back");
                let said = status.edit("waiting (the bot is restarting)", true);
                let _ = tokio::time::timeout(SHUTDOWN_SENDS, said).await;
            }
            Err(error) => tracing::warn!(
                error = format!("{error:#}"),
                "handing back failed; the lease will expire"
            ),
        }
    }

    /// Fetches the uploads and has a provider make the result.
    async fn make(
        &self,
        lease: &Lease,
        spec: &JobSpec,
        percent: &tokio::sync::watch::Sender<Option<u8>>,
    ) -> Result<Product, Outcome> {
        let settings = self.service.settings();
        let messenger = match self.service.messenger(spec.chat.platform) {
            Ok(messenger) => messenger.clone(),
            Err(error) => return Err(Outcome::Failed(error.to_string())),
        };
        // Uploads are fetched now, kept in memory for this attempt only, and never logged.
        let mut inputs = Vec::new();
        for attachment in &spec.attachments {
            let bytes = match messenger
                .fetch(attachment, settings.media.max_upload_bytes)
                .await
            {
                Ok(bytes) => bytes,
                Err(DeliveryError::Retry(why)) => return Err(Outcome::Retry(why)),
                Err(error) => return Err(Outcome::Failed(error.to_string())),
            };
            match Upload::check(bytes, &settings.media) {
                Ok(upload) => inputs.push(upload),
                Err(error) => return Err(Outcome::Failed(error.to_string())),
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
        let (output, preview, made) = self.generate(lease, &request, percent).await?;
        Ok(Product {
            messenger,
            output,
            preview,
            made,
        })
    }

    /// Delivers a made result if the job is still this worker's. A fence first: a worker too
    /// slow to renew (a starved machine) may have lost the job to another, which will deliver
    /// it; this one must not too (when the store cannot say, the renewals decide meanwhile).
    /// The delivery is abandoned while still waiting its turn when the job is handed back, the
    /// lease is lost or the person cancels.
    async fn deliver_in_hand(
        &self,
        lease: &Lease,
        spec: &JobSpec,
        made: Product,
        stop: &CancellationToken,
    ) -> Outcome {
        let term = Duration::from_secs(self.config.lease_seconds.max(1));
        if let Ok(false) = self.service.store().renew(lease, term).await {
            return Outcome::LeaseLost;
        }
        let abandon = CancellationToken::new();
        let _either = AbortOnDrop(tokio::spawn({
            let (abandon, stop, hand_back) =
                (abandon.clone(), stop.clone(), self.hand_back.clone());
            async move {
                tokio::select! {
                    () = stop.cancelled() => {}
                    () = hand_back.cancelled() => {}
                }
                abandon.cancel();
            }
        }));
        match self.deliver_made(&lease.job, spec, made, &abandon).await {
            // Stopped for a lost lease or the person's cancellation, not a hand-back.
            Outcome::Abandoned if !self.hand_back.is_cancelled() => Outcome::Failed(String::new()),
            outcome => outcome,
        }
    }

    /// Sends a made result to the chat, with its buttons.
    async fn deliver_made(
        &self,
        job: &Job,
        spec: &JobSpec,
        product: Product,
        abandon: &CancellationToken,
    ) -> Outcome {
        let Product {
            messenger,
            output,
            preview,
            made,
        } = product;
        let caption = self.caption(job, spec, preview).await;
        let mut buttons = vec![Button::action("Regenerate", Action::Regenerate(job.id))];
        if let Operation::Image(quality) = spec.operation {
            if quality == Quality::Standard {
                buttons.push(Button::action("HD", Action::Upscale(job.id, Quality::Hd)));
            }
            if quality != Quality::FourK {
                buttons.push(Button::action(
                    "4K",
                    Action::Upscale(job.id, Quality::FourK),
                ));
            }
        }
        deliver(
            &*messenger,
            spec,
            &output,
            &caption,
            &buttons,
            made,
            abandon,
        )
        .await
    }

    /// Asks the providers in order. A refusal ends the job; an outage tries the next provider;
    /// when every provider is out the job is retried later. Returns the media, whether the
    /// offline preview made it, and who made it at what cost.
    async fn generate(
        &self,
        lease: &Lease,
        request: &GenerationRequest,
        percent: &tokio::sync::watch::Sender<Option<u8>>,
    ) -> Result<(Output, bool, Made), Outcome> {
        let job = &lease.job;
        let timeout = self.config.timeouts.of(request.operation);
        let mut outage = None;
        for provider in self.routes.providers(request.operation) {
            let reporter = Reporter {
                service: &self.service,
                lease,
                provider: provider.name(),
                percent,
            };
            let resume = match (&job.provider, &job.provider_job_id) {
                (Some(name), Some(id)) if name == provider.name() => Some(id.as_str()),
                _ => None,
            };
            let run = Run {
                request,
                resume,
                progress: &reporter,
            };
            let started = std::time::Instant::now();
            let result = tokio::time::timeout(timeout, provider.generate(run)).await;
            let metrics = crate::metrics::metrics();
            metrics.provider_time(provider.name(), started.elapsed().as_secs_f64());
            let failure = match &result {
                Ok(Ok(_)) => None,
                Ok(Err(ProviderError::Unavailable(_))) => Some("unavailable"),
                Ok(Err(ProviderError::Refused(_))) => Some("refused"),
                Ok(Err(ProviderError::Transient(_))) => Some("transient"),
                Err(_) => Some("timeout"),
            };
            if let Some(kind) = failure {
                metrics.provider_error(provider.name(), kind);
            }
            match result {
                Ok(Ok(output)) => {
                    let made = Made {
                        provider: provider.name().to_string(),
                        cost: provider.cost(request.operation),
                    };
                    return Ok((output, provider.is_preview(), made));
                }
                Ok(Err(ProviderError::Unavailable(why))) => {
                    tracing::warn!(provider = provider.name(), %why, "provider unavailable; trying the next");
                    outage = Some(why);
                }
                Ok(Err(ProviderError::Refused(why))) => return Err(Outcome::Failed(why)),
                Ok(Err(ProviderError::Transient(why))) => return Err(Outcome::Retry(why)),
                Err(_) => {
                    // Nobody will receive what it makes: stop it so it is not billed.
                    self.cancel_at_provider(job, request.operation).await;
                    return Err(Outcome::Retry(format!(
                        "{} took longer than {}s",
                        provider.name(),
                        timeout.as_secs()
                    )));
                }
            }
        }
        Err(match outage {
            Some(why) => Outcome::Retry(format!("the generation service is unavailable ({why})")),
            None => Outcome::Failed("no generation service is set up for this".into()),
        })
    }

    /// Cancels the run the job's provider started, if one was recorded.
    async fn cancel_at_provider(&self, job: &Job, operation: Operation) {
        let Ok(current) = self.service.store().job(job.id).await else {
            return;
        };
        if let (Some(name), Some(id)) = (&current.provider, &current.provider_job_id)
            && let Some(provider) = self.routes.providers(operation).find(|p| p.name() == name)
        {
            provider.cancel(id).await;
        }
    }

    async fn caption(&self, job: &Job, spec: &JobSpec, preview: bool) -> String {
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
        if let Ok(balance) = self.service.store().wallet_balance(job.user).await {
            // The hold is posted once delivery succeeds; what remains available is the balance.
            caption.push_str(&format!(" · balance {}", balance.available()));
        }
        if preview {
            caption.push_str(&format!("\n{DISCLOSURE}"));
        }
        super::shorten(&caption, 1_000)
    }
}

async fn deliver(
    messenger: &dyn super::Messenger,
    spec: &JobSpec,
    output: &Output,
    caption: &str,
    buttons: &[Button],
    made: Made,
    abandon: &CancellationToken,
) -> Outcome {
    match messenger
        .send_media(
            &spec.chat,
            spec.reply_to.as_deref(),
            output,
            caption,
            buttons,
            abandon,
        )
        .await
    {
        Ok(_) => Outcome::Delivered(made),
        Err(DeliveryError::Abandoned) => Outcome::Abandoned,
        // The hold stays until delivery works: the job is retried, not charged.
        Err(DeliveryError::Retry(why)) => {
            crate::metrics::metrics().delivery(spec.chat.platform.as_str(), "retry");
            Outcome::Retry(format!("delivery: {why}"))
        }
        Err(error) => {
            crate::metrics::metrics().delivery(spec.chat.platform.as_str(), "failed");
            Outcome::Failed(format!("the result could not be delivered: {error}"))
        }
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
