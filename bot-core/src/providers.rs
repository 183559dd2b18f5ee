//! Generation providers behind one trait. The offline `local` provider is the embedded default
//! and needs no network or key; the HTTP providers need a key, and their base URL can point at a
//! local fake.

mod http;
pub mod local;
pub mod openai;
pub mod replicate;
pub mod samples;

pub use openai::OpenAiConfig;
pub use replicate::ReplicateConfig;

use std::{future::Future, pin::Pin};

use std::{collections::BTreeMap, sync::Arc};

use serde::Deserialize;

use crate::{
    Usd,
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

/// A boxed future with nothing to return.
pub type Done<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// What a provider tells the job while it works.
pub trait Progress: Send + Sync {
    /// The provider's own id for the run now exists. It is stored before this returns, so a
    /// worker that restarts polls that run instead of paying for a second one.
    fn started<'a>(&'a self, provider_job_id: &'a str) -> Done<'a>;

    /// How far along the run is, 0–100, when the provider says.
    fn percent(&self, percent: u8);
}

/// Progress that goes nowhere, for calls outside a job.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unobserved;

impl Progress for Unobserved {
    fn started<'a>(&'a self, _: &'a str) -> Done<'a> {
        Box::pin(async {})
    }

    fn percent(&self, _: u8) {}
}

/// One call of a provider for a job.
#[derive(Clone, Copy)]
pub struct Run<'a> {
    pub request: &'a GenerationRequest,
    /// This provider's id for the run an earlier attempt at this job started, if any.
    pub resume: Option<&'a str>,
    pub progress: &'a dyn Progress,
}

impl std::fmt::Debug for Run<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Run")
            .field("request", self.request)
            .field("resume", &self.resume)
            .finish_non_exhaustive()
    }
}

impl<'a> Run<'a> {
    /// A fresh run nobody watches.
    pub fn new(request: &'a GenerationRequest) -> Run<'a> {
        Run {
            request,
            resume: None,
            progress: &Unobserved,
        }
    }
}

/// A service that turns a [`GenerationRequest`] into media.
pub trait Provider: Send + Sync + std::fmt::Debug {
    /// The name used in configuration and in the job record.
    fn name(&self) -> &'static str;

    /// True when this provider can do the operation at all.
    fn supports(&self, operation: Operation) -> bool;

    /// True for the offline preview, whose results are marked as not made by an AI model.
    fn is_preview(&self) -> bool {
        false
    }

    /// Makes the media, resuming `run.resume` when it names a run this provider started.
    ///
    /// # Errors
    ///
    /// A [`ProviderError`] whose kind tells the worker what to do next.
    fn generate<'a>(&'a self, run: Run<'a>) -> ProviderFuture<'a>;

    /// Asks the provider to stop a run (the person cancelled, or it took too long), so that it
    /// is not billed for work nobody will receive. Best effort: failures are only logged.
    fn cancel<'a>(&'a self, _provider_job_id: &'a str) -> Done<'a> {
        Box::pin(async {})
    }

    /// What one run of `operation` (its length, for video and music) costs here at the
    /// configured (published) price; `None` when no price is configured for the model that
    /// would serve it.
    fn cost(&self, _operation: Operation) -> Option<Usd> {
        Some(Usd::ZERO)
    }

    /// The model that serves `operation` here, as configured (for the operator's views).
    fn model(&self, _operation: Operation) -> Option<String> {
        None
    }
}

/// A provider's price for one model, as configuration writes it: `{ usd = 0.003 }` per run, or
/// `{ usd = 0.036, per = "second" }` per second of the video or track asked for.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CostConfig {
    pub usd: f64,
    #[serde(default)]
    pub per: CostUnit,
}

/// What a [`CostConfig`] is charged by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CostUnit {
    /// One prediction or image.
    #[default]
    Run,
    /// One second of the output asked for (video and music lengths).
    Second,
}

impl CostConfig {
    /// A price per run.
    pub const fn per_run(usd: f64) -> CostConfig {
        CostConfig {
            usd,
            per: CostUnit::Run,
        }
    }

    /// A price per second of output.
    pub const fn per_second(usd: f64) -> CostConfig {
        CostConfig {
            usd,
            per: CostUnit::Second,
        }
    }

    /// The price of `operation` (its length, for a price per second).
    pub fn of(&self, operation: Operation) -> Usd {
        let each = Usd::from_dollars(self.usd).unwrap_or(Usd::ZERO);
        match (self.per, operation) {
            (CostUnit::Run, _) => each,
            (CostUnit::Second, Operation::Video { seconds } | Operation::Music { seconds }) => {
                each.times(u64::from(seconds))
            }
            (CostUnit::Second, _) => each,
        }
    }

    /// Checks the figure is a price.
    ///
    /// # Errors
    ///
    /// What is wrong, for the configuration key holding it.
    pub fn validate(&self) -> Result<(), String> {
        if Usd::from_dollars(self.usd).is_none() {
            return Err(format!(
                "usd must be a non-negative number, not {}",
                self.usd
            ));
        }
        if self.per == CostUnit::Second && self.usd > 100.0 {
            return Err(format!(
                "{} dollars per second looks like a mistake",
                self.usd
            ));
        }
        Ok(())
    }
}

/// Every provider's name in configuration, in the order tried when routes are not configured.
pub const PROVIDER_NAMES: [&str; 3] = ["replicate", "openai", "local"];

/// Settings for every provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProvidersConfig {
    /// How many calls each provider may have running at once in this process, by name.
    pub concurrency: BTreeMap<String, usize>,
    /// Per operation (`image`, `enhance`, …), the providers to try in order. An operation not
    /// named here uses every configured AI provider that can do it, or else the local preview:
    /// the preview is never a silent stand-in for a paid AI result unless named here.
    pub routes: BTreeMap<String, Vec<String>>,
    pub replicate: ReplicateConfig,
    pub openai: OpenAiConfig,
}

impl Default for ProvidersConfig {
    fn default() -> Self {
        ProvidersConfig {
            // The local provider works on this machine's cores.
            concurrency: [("local".to_string(), 2)].into_iter().collect(),
            routes: BTreeMap::new(),
            replicate: ReplicateConfig::default(),
            openai: OpenAiConfig::default(),
        }
    }
}

impl ProvidersConfig {
    /// Checks provider and operation names, and that every routed provider is configured.
    ///
    /// # Errors
    ///
    /// The configuration key at fault and what is wrong.
    pub fn validate(&self) -> Result<(), (String, String)> {
        for name in self.concurrency.keys() {
            if !PROVIDER_NAMES.contains(&name.as_str()) {
                return Err((
                    format!("providers.concurrency.{name}"),
                    format!("unknown provider; expected one of {PROVIDER_NAMES:?}"),
                ));
            }
        }
        for (operation, names) in &self.routes {
            let at = format!("providers.routes.{operation}");
            if !Operation::NAMES.contains(&operation.as_str()) {
                return Err((
                    at,
                    format!("unknown operation; expected one of {:?}", Operation::NAMES),
                ));
            }
            if names.is_empty() {
                return Err((at, "names no provider".into()));
            }
            for name in names {
                let keyed = match name.as_str() {
                    "local" => true,
                    "replicate" => self.replicate.api_token.is_some(),
                    "openai" => self.openai.api_key.is_some(),
                    _ => {
                        return Err((
                            at,
                            format!(
                                "unknown provider {name:?}; expected one of {PROVIDER_NAMES:?}"
                            ),
                        ));
                    }
                };
                if !keyed {
                    return Err((at, format!("{name} is named but has no API key configured")));
                }
            }
        }
        self.replicate.validate()?;
        self.openai.validate()
    }

    /// The configured providers (those with keys, and the local preview), each limited to its
    /// configured concurrency, routed per operation.
    pub fn build(&self, media: crate::media::MediaLimits) -> Routes {
        let mut all: Vec<Arc<dyn Provider>> = Vec::new();
        if let Some(replicate) = replicate::Replicate::from_config(&self.replicate) {
            all.push(Arc::new(replicate));
        }
        if let Some(openai) = openai::OpenAi::from_config(&self.openai) {
            all.push(Arc::new(openai));
        }
        all.push(Arc::new(local::LocalProvider::new(media)));
        let all: Vec<Arc<dyn Provider>> = all
            .into_iter()
            .map(|provider| match self.concurrency.get(provider.name()) {
                Some(max) => Arc::new(Limited::new(provider, *max)) as Arc<dyn Provider>,
                None => provider,
            })
            .collect();
        let table = Operation::NAMES
            .iter()
            .map(|operation| {
                let chosen: Vec<Arc<dyn Provider>> = match self.routes.get(*operation) {
                    Some(names) => names
                        .iter()
                        .filter_map(|name| all.iter().find(|p| p.name() == name).cloned())
                        .collect(),
                    None => {
                        let ai: Vec<_> = all.iter().filter(|p| !p.is_preview()).cloned().collect();
                        if ai.is_empty() { all.clone() } else { ai }
                    }
                };
                (*operation, chosen)
            })
            .collect();
        Routes(Arc::new(table))
    }
}

/// Which providers serve each operation, in the order they are tried. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Routes(Arc<BTreeMap<&'static str, Vec<Arc<dyn Provider>>>>);

impl Routes {
    /// Every operation tries `providers` in this order.
    pub fn every(providers: Vec<Arc<dyn Provider>>) -> Routes {
        Routes(Arc::new(
            Operation::NAMES
                .iter()
                .map(|operation| (*operation, providers.clone()))
                .collect(),
        ))
    }

    /// The providers to try for `operation`, in order, keeping those that can do it.
    pub fn providers(&self, operation: Operation) -> impl Iterator<Item = &Arc<dyn Provider>> {
        self.0
            .get(operation.name())
            .into_iter()
            .flatten()
            .filter(move |provider| provider.supports(operation))
    }

    /// Each operation with its providers in order, e.g. `image=replicate,openai`, for the
    /// start-up log.
    pub fn describe(&self) -> String {
        self.0
            .iter()
            .map(|(operation, providers)| {
                let names: Vec<&str> = providers.iter().map(|p| p.name()).collect();
                format!("{operation}={}", names.join(","))
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// True when some operation may be served by the offline preview.
    pub fn serves_preview(&self) -> bool {
        self.0
            .values()
            .flatten()
            .any(|provider| provider.is_preview())
    }
}

/// A provider with at most `max` calls running at once; the others wait their turn.
#[derive(Debug)]
pub struct Limited {
    inner: Arc<dyn Provider>,
    permits: tokio::sync::Semaphore,
}

impl Limited {
    /// Wraps `inner`, allowing `max` (at least one) calls at once.
    pub fn new(inner: Arc<dyn Provider>, max: usize) -> Limited {
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

    fn is_preview(&self) -> bool {
        self.inner.is_preview()
    }

    fn cancel<'a>(&'a self, provider_job_id: &'a str) -> Done<'a> {
        self.inner.cancel(provider_job_id)
    }

    fn cost(&self, operation: Operation) -> Option<Usd> {
        self.inner.cost(operation)
    }

    fn model(&self, operation: Operation) -> Option<String> {
        self.inner.model(operation)
    }

    fn generate<'a>(&'a self, run: Run<'a>) -> ProviderFuture<'a> {
        Box::pin(async move {
            let _permit =
                self.permits.acquire().await.map_err(|_| {
                    ProviderError::Unavailable("the provider is shutting down".into())
                })?;
            self.inner.generate(run).await
        })
    }
}

#[cfg(test)]
mod contract_tests;

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
        fn generate<'a>(&'a self, _: Run<'a>) -> ProviderFuture<'a> {
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
                tokio::spawn(async move { limited.generate(Run::new(&request)).await.map(|_| ()) })
            })
            .collect();
        for call in calls {
            call.await.expect("task").expect("generated");
        }
        assert_eq!(counting.most.load(Ordering::SeqCst), 2);
        assert_eq!(limited.name(), "counting");
    }
}
