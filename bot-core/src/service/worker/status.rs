//! A job's status line (its message, edited no more often than `status_edit_ms`, with a
//! progress bar), what a provider reports while it runs, and the chat's "working" activity.

use std::{sync::Arc, time::Duration};

use crate::service::{JobSpec, Service, status_text};
use crate::{
    chat::{Action, Button, ChatRef, MessageRef},
    jobs::{Job, Lease},
    providers::{Done, Progress},
};

use super::WorkerConfig;

/// Tells the job what its provider reports: the run's id (stored at once) and progress.
pub(super) struct Reporter<'a> {
    pub(super) service: &'a Service,
    pub(super) lease: &'a Lease,
    pub(super) provider: &'static str,
    pub(super) percent: &'a tokio::sync::watch::Sender<Option<u8>>,
}

impl Progress for Reporter<'_> {
    fn started<'a>(&'a self, provider_job_id: &'a str) -> Done<'a> {
        Box::pin(async move {
            if let Err(error) = self
                .service
                .store()
                .record_provider_job(self.lease, self.provider, provider_job_id)
                .await
            {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "recording the provider's run id failed"
                );
            }
        })
    }

    fn percent(&self, percent: u8) {
        self.percent.send_replace(Some(percent.min(100)));
    }
}

/// The job's status message, edited at most once per `status_edit_ms`.
#[derive(Clone)]
pub(super) struct StatusLine {
    inner: Arc<StatusInner>,
}

struct StatusInner {
    service: Arc<Service>,
    message: tokio::sync::Mutex<Option<MessageRef>>,
    job: Job,
    spec: JobSpec,
    every: Duration,
    last: tokio::sync::Mutex<Option<tokio::time::Instant>>,
}

impl StatusLine {
    /// The job's status line; where its message is, is looked up at the first edit.
    pub(super) fn open(
        service: &Arc<Service>,
        job: &Job,
        spec: &JobSpec,
        config: WorkerConfig,
    ) -> StatusLine {
        StatusLine {
            inner: Arc::new(StatusInner {
                service: service.clone(),
                message: tokio::sync::Mutex::new(None),
                job: job.clone(),
                spec: spec.clone(),
                every: Duration::from_millis(config.status_edit_ms),
                last: tokio::sync::Mutex::new(None),
            }),
        }
    }

    /// Shows `state` with a Cancel button. When the last edit was too recent, a `must` edit
    /// waits its turn and any other is dropped.
    pub(super) async fn edit(&self, state: &str, must: bool) {
        let buttons = [Button::action("Cancel", Action::Cancel(self.inner.job.id))];
        let text = status_text(&self.inner.job, &self.inner.spec, state);
        self.send(&text, &buttons, must).await;
    }

    /// Shows how the job ended; this edit is never dropped. When it must wait its turn, it is
    /// returned to be run apart, so the worker can take its next job meanwhile.
    pub(super) async fn finish(
        &self,
        text: &str,
    ) -> Option<impl Future<Output = ()> + Send + 'static> {
        let due = (*self.inner.last.lock().await).map(|at| at + self.inner.every);
        if due.is_some_and(|due| tokio::time::Instant::now() < due) {
            let (line, text) = (self.clone(), text.to_string());
            Some(async move { line.send(&text, &[], true).await })
        } else {
            self.send(text, &[], true).await;
            None
        }
    }

    async fn send(&self, text: &str, buttons: &[Button], must: bool) {
        // Looked up until found: the status message may still be on its way when the job
        // starts. Once the job has ended, the service sees that when it records the message and edits
        // it itself, so no message is left saying "queued".
        let message = {
            let mut known = self.inner.message.lock().await;
            if known.is_none() {
                *known = self
                    .inner
                    .service
                    .status_message(self.inner.job.id)
                    .await
                    .ok()
                    .flatten();
            }
            known.clone()
        };
        let Some(message) = &message else {
            return;
        };
        let Ok(messenger) = self.inner.service.messenger(message.chat.platform) else {
            return;
        };
        let mut last = self.inner.last.lock().await;
        if let Some(at) = *last {
            let next = at + self.inner.every;
            if tokio::time::Instant::now() < next {
                if !must {
                    return;
                }
                tokio::time::sleep_until(next).await;
            }
        }
        *last = Some(tokio::time::Instant::now());
        let _ = messenger.edit_text(message, text, buttons).await;
    }

    /// Shows each new percentage, waiting out the edit interval so the latest one is shown.
    pub(super) async fn follow(self, mut percent: tokio::sync::watch::Receiver<Option<u8>>) {
        while percent.changed().await.is_ok() {
            let Some(now) = *percent.borrow_and_update() else {
                continue;
            };
            self.edit(&format!("running {} {now}%", bar(now)), true)
                .await;
        }
    }
}

/// A ten-step progress bar.
fn bar(percent: u8) -> String {
    let filled = usize::from(percent.min(100)) / 10;
    format!("{}{}", "▰".repeat(filled), "▱".repeat(10 - filled))
}

/// Tells the chat every few seconds that a result is being made, until aborted.
pub(super) async fn show_activity(service: Arc<Service>, chat: ChatRef) {
    let Ok(messenger) = service.messenger(chat.platform) else {
        return;
    };
    let messenger = messenger.clone();
    loop {
        let _ = messenger.activity(&chat).await;
        tokio::time::sleep(Duration::from_secs(4)).await;
    }
}
