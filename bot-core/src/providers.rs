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
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProvidersConfig {
    pub replicate: ReplicateConfig,
    pub openai: OpenAiConfig,
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
