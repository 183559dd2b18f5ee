//! Replicate's predictions API: create a prediction for an official model or a pinned version,
//! store its id at once, poll it (reading progress from the model's progress-bar logs), cancel
//! it when the job is cancelled or too slow, and download the output immediately (Replicate
//! deletes outputs after an hour).
//!
//! Which model serves each operation, and how the request fills its input, is configuration
//! (`[providers.replicate.models.<operation>]`) with working defaults for every operation.

use std::{collections::BTreeMap, sync::LazyLock, time::Duration};

use base64::Engine as _;
use regex::Regex;
use reqwest::StatusCode;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{
    Done, GenerationRequest, Provider, ProviderError, ProviderFuture, Run,
    http::{self, bearer},
};
use crate::{command::Quality, media::Output, pricing::Operation};

const NAME: &str = "replicate";

/// The `[providers.replicate]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplicateConfig {
    /// `REPLICATE_API_TOKEN`; the provider is off without it.
    pub api_token: Option<SecretString>,
    /// `REPLICATE_API_URL`: replaces `https://api.replicate.com`; requests go to `…/v1/…`.
    pub api_url: String,
    /// How often a running prediction is polled, in milliseconds.
    pub poll_ms: u64,
    /// The largest output downloaded, in bytes.
    pub max_output_bytes: usize,
    /// Models by operation (`image`, `image_hd`, `image_4k`, `enhance`, `removebg`, `faceswap`,
    /// `portrait`, `video`, `music`); one named here replaces that operation's default.
    pub models: BTreeMap<String, ModelConfig>,
}

impl Default for ReplicateConfig {
    fn default() -> Self {
        ReplicateConfig {
            api_token: None,
            api_url: "https://api.replicate.com".into(),
            poll_ms: 1_000,
            max_output_bytes: 200_000_000,
            models: BTreeMap::new(),
        }
    }
}

/// One operation's model.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// `owner/name` for an official model, `owner/name:version` to pin a version.
    pub model: String,
    /// The prediction's input. A string value that is exactly `{prompt}`, `{negative}`,
    /// `{seed}`, `{aspect_ratio}`, `{style}`, `{seconds}`, `{image}` or `{image2}` becomes that
    /// value (numbers stay numbers; a key whose value the request lacks is left out); the same
    /// names inside longer text are replaced in place. Photos are sent as data URIs.
    pub input: Map<String, Value>,
}

/// Every key of `[providers.replicate.models]`.
pub const MODEL_KEYS: [&str; 9] = [
    "image", "image_hd", "image_4k", "enhance", "removebg", "faceswap", "portrait", "video",
    "music",
];

/// The operation's name, with image tiers told apart: each tier has its own model.
fn model_key(operation: Operation) -> &'static str {
    match operation {
        Operation::Image(Quality::Hd) => "image_hd",
        Operation::Image(Quality::FourK) => "image_4k",
        other => other.name(),
    }
}

/// The model an operation uses when configuration names none: public models on Replicate, with
/// their documented input names.
pub fn default_model(key: &str) -> Option<ModelConfig> {
    let (model, input) = match key {
        "image" => (
            "black-forest-labs/flux-schnell",
            json!({ "prompt": "{prompt}", "aspect_ratio": "{aspect_ratio}", "seed": "{seed}",
                    "output_format": "png" }),
        ),
        "image_hd" => (
            "black-forest-labs/flux-1.1-pro",
            json!({ "prompt": "{prompt}", "aspect_ratio": "{aspect_ratio}", "seed": "{seed}",
                    "output_format": "png" }),
        ),
        "image_4k" => (
            "black-forest-labs/flux-1.1-pro-ultra",
            json!({ "prompt": "{prompt}", "aspect_ratio": "{aspect_ratio}", "seed": "{seed}",
                    "output_format": "png", "raw": false }),
        ),
        "enhance" => (
            "nightmareai/real-esrgan:f121d640bd286e1fdc67f9799164c1d5be36ff74576ee11c803ae5b665dd46aa",
            json!({ "image": "{image}", "scale": 2, "face_enhance": true }),
        ),
        "removebg" => (
            "cjwbw/rembg:fb8af171cfa1616ddcf1242c093f9c46bcada5ad4cf6f2fbe8b81b330ec5c003",
            json!({ "image": "{image}" }),
        ),
        "faceswap" => (
            // This model's `swap_image` is the face; `input_image` is the photo it goes into.
            "codeplugtech/face-swap:278a81e7ebb22db98bcba54de985d22cc1abeead2754eb1f2af717247be69b34",
            json!({ "swap_image": "{image}", "input_image": "{image2}" }),
        ),
        "portrait" => (
            "black-forest-labs/flux-kontext-pro",
            json!({ "prompt": "Turn this photo into a {style} portrait of the same person, keeping their face and identity",
                    "input_image": "{image}", "output_format": "png" }),
        ),
        "video" => (
            "bytedance/seedance-1-lite",
            json!({ "prompt": "{prompt}", "duration": "{seconds}", "seed": "{seed}" }),
        ),
        "music" => (
            "meta/musicgen:671ac645ce5e552cc63a54a2bbff63fcf798043055d2dac5fc9e36a837eedcfb",
            json!({ "prompt": "{prompt}", "duration": "{seconds}", "model_version": "stereo-large",
                    "output_format": "mp3" }),
        ),
        _ => return None,
    };
    let Value::Object(input) = input else {
        return None;
    };
    Some(ModelConfig {
        model: model.into(),
        input,
    })
}

impl ReplicateConfig {
    /// The model for `key`: configured, else the default.
    pub fn model(&self, key: &str) -> Option<ModelConfig> {
        self.models.get(key).cloned().or_else(|| default_model(key))
    }

    /// Checks model keys and references.
    ///
    /// # Errors
    ///
    /// The configuration key at fault and what is wrong.
    pub fn validate(&self) -> Result<(), (String, String)> {
        for (key, model) in &self.models {
            let at = format!("providers.replicate.models.{key}");
            if !MODEL_KEYS.contains(&key.as_str()) {
                return Err((
                    at,
                    format!("unknown operation; expected one of {MODEL_KEYS:?}"),
                ));
            }
            let (name, version) = match model.model.split_once(':') {
                Some((name, version)) => (name, Some(version)),
                None => (model.model.as_str(), None),
            };
            let name_ok = name.split_once('/').is_some_and(|(owner, model)| {
                !owner.is_empty() && !model.is_empty() && !model.contains('/')
            });
            let version_ok = version
                .is_none_or(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric()));
            if !name_ok || !version_ok {
                return Err((
                    format!("{at}.model"),
                    format!("{:?} is not owner/name or owner/name:version", model.model),
                ));
            }
        }
        Ok(())
    }
}

/// The Replicate provider.
#[derive(Debug)]
pub struct Replicate {
    http: reqwest::Client,
    api: String,
    token: SecretString,
    config: ReplicateConfig,
}

/// A prediction as the API returns it (the fields this client reads).
#[derive(Debug, Deserialize)]
struct Prediction {
    id: String,
    status: String,
    #[serde(default)]
    output: Value,
    #[serde(default)]
    error: Value,
    #[serde(default)]
    logs: Option<String>,
}

/// An RFC 7807 problem document, as Replicate sends errors.
#[derive(Debug, Default, Deserialize)]
struct Problem {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    detail: Option<String>,
}

impl Replicate {
    /// The provider, when a token is configured.
    pub fn from_config(config: &ReplicateConfig) -> Option<Replicate> {
        let token = config.api_token.clone()?;
        Some(Replicate {
            http: http::client(),
            api: format!("{}/v1", config.api_url.trim_end_matches('/')),
            token,
            config: config.clone(),
        })
    }

    async fn create(&self, model: &ModelConfig, input: Value) -> Result<Prediction, ProviderError> {
        let (url, body) = match model.model.split_once(':') {
            Some((_, version)) => (
                format!("{}/predictions", self.api),
                json!({ "version": version, "input": input }),
            ),
            None => (
                format!("{}/models/{}/predictions", self.api, model.model),
                json!({ "input": input }),
            ),
        };
        let response = http::send(NAME, || {
            self.http
                .post(&url)
                .header(reqwest::header::AUTHORIZATION, bearer(&self.token))
                .json(&body)
        })
        .await?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if status.is_success() {
            return serde_json::from_str(&text).map_err(|_| {
                ProviderError::Unavailable("Replicate answered with something unexpected".into())
            });
        }
        Err(self.refusal(status, &text, &model.model))
    }

    /// What an error answer to a creation means. Nothing has started, so an outage falls
    /// through to the next provider without paying twice.
    fn refusal(&self, status: StatusCode, text: &str, model: &str) -> ProviderError {
        let problem: Problem = serde_json::from_str(text).unwrap_or_default();
        let detail = problem
            .detail
            .or(problem.title)
            .unwrap_or_else(|| status.to_string());
        match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                tracing::error!(%status, "Replicate refused the API token");
                ProviderError::Unavailable("Replicate refused our credentials".into())
            }
            StatusCode::PAYMENT_REQUIRED => {
                tracing::error!("Replicate wants payment: {detail}");
                ProviderError::Unavailable("Replicate billing needs attention".into())
            }
            StatusCode::NOT_FOUND => {
                tracing::error!(model, "Replicate has no such model; check configuration");
                ProviderError::Unavailable(format!("Replicate has no model {model}"))
            }
            StatusCode::UNPROCESSABLE_ENTITY | StatusCode::BAD_REQUEST => ProviderError::Refused(
                format!("The model could not take this request: {}", detail.trim()),
            ),
            _ => ProviderError::Unavailable(format!("Replicate answered {status}")),
        }
    }

    async fn get(&self, id: &str) -> Result<Option<Prediction>, ProviderError> {
        let url = format!("{}/predictions/{id}", self.api);
        let response = http::send(NAME, || {
            self.http
                .get(&url)
                .header(reqwest::header::AUTHORIZATION, bearer(&self.token))
        })
        .await
        // The run exists: any trouble now is retried later on the same run, never by starting
        // another one elsewhere.
        .map_err(|error| ProviderError::Transient(error.to_string()))?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(ProviderError::Transient(format!(
                "Replicate answered {status} while we waited for the result"
            )));
        }
        let text = response.text().await.unwrap_or_default();
        serde_json::from_str(&text).map(Some).map_err(|_| {
            ProviderError::Transient("Replicate answered with something unexpected".into())
        })
    }

    /// Polls until the prediction ends.
    async fn wait(
        &self,
        mut prediction: Prediction,
        run: &Run<'_>,
    ) -> Result<Output, ProviderError> {
        let every = Duration::from_millis(self.config.poll_ms.max(10));
        let mut errors = 0;
        loop {
            match prediction.status.as_str() {
                "succeeded" => return self.download(&prediction).await,
                "failed" => {
                    let error = match &prediction.error {
                        Value::String(text) if !text.trim().is_empty() => text.trim().to_string(),
                        _ => "the model failed".into(),
                    };
                    return Err(ProviderError::Refused(error));
                }
                "canceled" | "aborted" => {
                    return Err(ProviderError::Transient(
                        "the run was stopped at Replicate".into(),
                    ));
                }
                _ => {}
            }
            if let Some(percent) = prediction.logs.as_deref().and_then(progress) {
                run.progress.percent(percent);
            }
            tokio::time::sleep(every).await;
            match self.get(&prediction.id).await {
                Ok(Some(next)) => {
                    errors = 0;
                    prediction = next;
                }
                Ok(None) => {
                    return Err(ProviderError::Transient("Replicate lost the run".into()));
                }
                // A blip while polling is waited out a few times before the job is retried.
                Err(error) if errors < 3 => {
                    errors += 1;
                    tracing::warn!(%error, "polling Replicate failed; trying again");
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn download(&self, prediction: &Prediction) -> Result<Output, ProviderError> {
        let url = match &prediction.output {
            Value::String(url) => Some(url.clone()),
            Value::Array(items) => items.iter().find_map(|v| v.as_str().map(str::to_string)),
            _ => None,
        }
        .ok_or_else(|| ProviderError::Refused("The model finished without a result.".into()))?;
        // Output URLs need no credentials; ours are not sent to another host.
        let response = http::send(NAME, || {
            self.http.get(&url).timeout(Duration::from_secs(300))
        })
        .await
        .map_err(|error| ProviderError::Transient(error.to_string()))?;
        if !response.status().is_success() {
            return Err(ProviderError::Transient(format!(
                "downloading the result failed ({})",
                response.status()
            )));
        }
        let bytes = http::body(NAME, response, self.config.max_output_bytes).await?;
        Output::sniff(bytes, &format!("replicate-{}", prediction.id))
            .map_err(|what| ProviderError::Refused(format!("The model returned {what}.")))
    }
}

/// The last percentage a progress bar in the logs shows (`45%|████▌     | 23/50`).
fn progress(logs: &str) -> Option<u8> {
    static BAR: LazyLock<Option<Regex>> =
        LazyLock::new(|| Regex::new(r"(?m)^\s*(\d{1,3})%\|").ok());
    BAR.as_ref()?
        .captures_iter(logs)
        .last()
        .and_then(|c| c[1].parse::<u8>().ok())
        .map(|p| p.min(100))
}

/// The prediction input for a request, from the model's template.
fn fill(template: &Map<String, Value>, request: &GenerationRequest) -> Value {
    let data_uri = |n: usize| {
        request.inputs.get(n).map(|upload| {
            let (mime, _) = upload.format.mime();
            format!(
                "data:{mime};base64,{}",
                base64::engine::general_purpose::STANDARD.encode(upload.bytes())
            )
        })
    };
    let seconds = match request.operation {
        Operation::Video { seconds } | Operation::Music { seconds } => Some(u64::from(seconds)),
        _ => None,
    };
    let value = |name: &str| -> Option<Value> {
        match name {
            "prompt" => request.prompt.clone().map(Value::String),
            "negative" => request.negative.clone().map(Value::String),
            "seed" => request.seed.map(Value::from),
            "aspect_ratio" => Some(Value::String(request.aspect.to_string())),
            "style" => request.style.clone().map(Value::String),
            "seconds" => seconds.map(Value::from),
            "image" => data_uri(0).map(Value::String),
            "image2" => data_uri(1).map(Value::String),
            _ => None,
        }
    };
    let mut input = Map::new();
    for (key, template) in template {
        let Value::String(text) = template else {
            input.insert(key.clone(), template.clone());
            continue;
        };
        if let Some(name) = text.strip_prefix('{').and_then(|t| t.strip_suffix('}'))
            && !name.contains(['{', '}', ' '])
        {
            if let Some(value) = value(name) {
                input.insert(key.clone(), value);
            }
            continue;
        }
        let mut filled = text.clone();
        for name in [
            "prompt",
            "negative",
            "style",
            "aspect_ratio",
            "seed",
            "seconds",
        ] {
            let placeholder = format!("{{{name}}}");
            if filled.contains(&placeholder) {
                let text = match value(name) {
                    Some(Value::String(text)) => text,
                    Some(other) => other.to_string(),
                    None => String::new(),
                };
                filled = filled.replace(&placeholder, &text);
            }
        }
        input.insert(key.clone(), Value::String(filled));
    }
    Value::Object(input)
}

impl Provider for Replicate {
    fn name(&self) -> &'static str {
        NAME
    }

    fn supports(&self, operation: Operation) -> bool {
        self.config.model(model_key(operation)).is_some()
    }

    fn generate<'a>(&'a self, run: Run<'a>) -> ProviderFuture<'a> {
        Box::pin(async move {
            let key = model_key(run.request.operation);
            let model = self.config.model(key).ok_or_else(|| {
                ProviderError::Unavailable(format!("no Replicate model for {key}"))
            })?;
            // An earlier attempt's run is polled, not paid for again, unless it is gone or
            // was stopped.
            if let Some(id) = run.resume {
                match self.get(id).await? {
                    Some(prediction)
                        if !matches!(prediction.status.as_str(), "canceled" | "aborted") =>
                    {
                        return self.wait(prediction, &run).await;
                    }
                    _ => tracing::info!("the earlier run is gone; starting a new one"),
                }
            }
            let prediction = self.create(&model, fill(&model.input, run.request)).await?;
            run.progress.started(&prediction.id).await;
            self.wait(prediction, &run).await
        })
    }

    fn cancel<'a>(&'a self, provider_job_id: &'a str) -> Done<'a> {
        Box::pin(async move {
            let url = format!("{}/predictions/{provider_job_id}/cancel", self.api);
            let sent = http::send(NAME, || {
                self.http
                    .post(&url)
                    .header(reqwest::header::AUTHORIZATION, bearer(&self.token))
            })
            .await;
            match sent {
                Ok(response) if response.status().is_success() => {}
                Ok(response) => {
                    tracing::warn!(status = %response.status(), "Replicate did not cancel the run")
                }
                Err(error) => tracing::warn!(%error, "cancelling at Replicate failed"),
            }
        })
    }
}

#[cfg(test)]
mod tests;
