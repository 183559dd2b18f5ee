//! Generation providers behind one trait. The offline `local` provider is the embedded default
//! and needs no network or key; the HTTP providers need a key, and their base URL can point at a
//! local fake.

pub mod local;

use std::{future::Future, pin::Pin};

use secrecy::SecretString;
use serde::Deserialize;

use crate::{
    command::{AspectRatio, Quality},
    media::{Output, Upload},
    pricing::Operation,
};

/// What a provider is asked to make.
#[derive(Debug, Clone)]
pub struct GenerationRequest {
    pub operation: Operation,
    pub prompt: Option<String>,
    pub negative: Option<String>,
    pub seed: Option<u32>,
    pub aspect: AspectRatio,
    pub style: Option<String>,
    /// Checked uploads, in the order the operation names them (face swap: face, then target).
    pub inputs: Vec<Upload>,
}

impl GenerationRequest {
    /// The quality tier of an image request; standard otherwise.
    pub fn quality(&self) -> Quality {
        match self.operation {
            Operation::Image(quality) => quality,
            _ => Quality::Standard,
        }
    }
}

/// How a provider failed. The worker decides from the kind: a refusal ends the job, an outage
/// falls through to the next provider, a transient fault is retried with backoff.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The request itself cannot be done (no face found, moderation, bad input); no other
    /// provider is tried. The text is shown to the person.
    #[error("{0}")]
    Refused(String),
    /// The provider is down or not configured; the next provider is tried.
    #[error("provider unavailable: {0}")]
    Unavailable(String),
    /// Worth trying again later (timeouts, rate limits, 5xx).
    #[error("temporary provider failure: {0}")]
    Transient(String),
}

/// A boxed future, for calling providers through `dyn Provider`.
pub type ProviderFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Output, ProviderError>> + Send + 'a>>;

/// A service that turns a [`GenerationRequest`] into media.
pub trait Provider: Send + Sync + std::fmt::Debug {
    /// The name used in configuration and in the job record.
    fn name(&self) -> &'static str;

    /// True when this provider can do the operation at all.
    fn supports(&self, operation: Operation) -> bool;

    /// Makes the media.
    ///
    /// # Errors
    ///
    /// A [`ProviderError`] whose kind tells the worker what to do next.
    fn generate<'a>(&'a self, request: &'a GenerationRequest) -> ProviderFuture<'a>;
}

/// Settings for every provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProvidersConfig {
    /// How many calls each provider may have running at once in this process, by name.
    pub concurrency: std::collections::BTreeMap<String, usize>,
    pub replicate: ReplicateConfig,
    pub openai: OpenAiConfig,
}

impl Default for ProvidersConfig {
    fn default() -> Self {
        ProvidersConfig {
            // The local provider works on this machine's cores.
            concurrency: [("local".to_string(), 2)].into_iter().collect(),
            replicate: ReplicateConfig::default(),
            openai: OpenAiConfig::default(),
        }
    }
}

/// A provider with at most `max` calls running at once; the others wait their turn.
#[derive(Debug)]
pub struct Limited {
    inner: std::sync::Arc<dyn Provider>,
    permits: tokio::sync::Semaphore,
}

impl Limited {
    /// Wraps `inner`, allowing `max` (at least one) calls at once.
    pub fn new(inner: std::sync::Arc<dyn Provider>, max: usize) -> Limited {
        Limited {
            inner,
            permits: tokio::sync::Semaphore::new(max.max(1)),
        }
    }
}

impl Provider for Limited {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn supports(&self, operation: Operation) -> bool {
        self.inner.supports(operation)
    }

    fn generate<'a>(&'a self, request: &'a GenerationRequest) -> ProviderFuture<'a> {
        Box::pin(async move {
            let _permit =
                self.permits.acquire().await.map_err(|_| {
                    ProviderError::Unavailable("the provider is shutting down".into())
                })?;
            self.inner.generate(request).await
        })
    }
}

/// Replicate's predictions API.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplicateConfig {
    /// `REPLICATE_API_TOKEN`; the provider is off without it.
    pub api_token: Option<SecretString>,
    /// `REPLICATE_API_URL`: replaces `https://api.replicate.com`; requests go to `…/v1/…`.
    pub api_url: String,
}

impl Default for ReplicateConfig {
    fn default() -> Self {
        ReplicateConfig {
            api_token: None,
            api_url: "https://api.replicate.com".into(),
        }
    }
}

/// OpenAI's image API.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpenAiConfig {
    /// `OPENAI_API_KEY`; the provider is off without it.
    pub api_key: Option<SecretString>,
    /// `OPENAI_BASE_URL`, OpenAI's own convention: it includes `/v1`.
    pub base_url: String,
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        OpenAiConfig {
            api_key: None,
            base_url: "https://api.openai.com/v1".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{
            Arc,
            atomic::{AtomicUsize, Ordering},
        },
        time::Duration,
    };

    use super::*;
    use crate::media::MediaKind;

    /// Counts how many calls run at once.
    #[derive(Debug, Default)]
    struct Counting {
        now: AtomicUsize,
        most: AtomicUsize,
    }

    impl Provider for Counting {
        fn name(&self) -> &'static str {
            "counting"
        }
        fn supports(&self, _: Operation) -> bool {
            true
        }
        fn generate<'a>(&'a self, _: &'a GenerationRequest) -> ProviderFuture<'a> {
            Box::pin(async move {
                let running = self.now.fetch_add(1, Ordering::SeqCst) + 1;
                self.most.fetch_max(running, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(30)).await;
                self.now.fetch_sub(1, Ordering::SeqCst);
                Ok(Output {
                    kind: MediaKind::Image,
                    mime: "image/png",
                    file_name: "x.png".into(),
                    bytes: Vec::new(),
                    dimensions: None,
                })
            })
        }
    }

    #[tokio::test]
    async fn a_limited_provider_runs_no_more_calls_at_once_than_allowed() {
        let counting = Arc::new(Counting::default());
        let limited = Arc::new(Limited::new(counting.clone(), 2));
        let request = GenerationRequest {
            operation: Operation::Enhance,
            prompt: None,
            negative: None,
            seed: None,
            aspect: AspectRatio::SQUARE,
            style: None,
            inputs: Vec::new(),
        };
        let calls: Vec<_> = (0..6)
            .map(|_| {
                let (limited, request) = (limited.clone(), request.clone());
                tokio::spawn(async move { limited.generate(&request).await.map(|_| ()) })
            })
            .collect();
        for call in calls {
            call.await.expect("task").expect("generated");
        }
        assert_eq!(counting.most.load(Ordering::SeqCst), 2);
        assert_eq!(limited.name(), "counting");
    }
}
