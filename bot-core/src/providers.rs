//! Configuration of the generation providers. The offline `local` provider needs none; the HTTP
//! providers need a key, and their base URL can point at a local fake.

use secrecy::SecretString;
use serde::Deserialize;

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
