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
    CostConfig, Done, GenerationRequest, Provider, ProviderError, ProviderFuture, Run,
    http::{self, bearer},
};
use crate::{
    Usd,
    command::{AspectRatio, Quality},
    media::Output,
    pricing::Operation,
};

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
    /// The aspect ratios the model takes, when it takes only some: one asked for outside the
    /// list is sent as the nearest listed ratio. Unset, every ratio is sent as asked.
    #[serde(default)]
    pub aspect_ratios: Option<Vec<String>>,
    /// What one run costs at Replicate's published price; unset, the cost of a default model
    /// named here is its documented default, and any other model's is unknown.
    #[serde(default)]
    pub cost: Option<CostConfig>,
}

/// Every key of `[providers.replicate.models]`.
pub const MODEL_KEYS: [&str; 9] = [
    "image", "image_hd", "image_4k", "enhance", "removebg", "faceswap", "portrait", "video",
    "music",
];

/// The operation's name, with image tiers told apart: each tier has its own model.
pub fn model_key(operation: Operation) -> &'static str {
    match operation {
        Operation::Image(Quality::Hd) => "image_hd",
        Operation::Image(Quality::FourK) => "image_4k",
        other => other.name(),
    }
}

/// The model an operation uses when configuration names none: public models on Replicate, with
/// the input names, allowed values and published prices of their schemas as stored in
/// `fakes/contract/schemas/replicate/` (read 2026-12-03; sources there).
pub fn default_model(key: &str) -> Option<ModelConfig> {
    // flux-schnell and flux-1.1-pro-ultra take these; flux-1.1-pro has no 21:9 or 9:21.
    const FLUX: &[&str] = &[
        "1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16", "9:21",
    ];
    const FLUX_PRO: &[&str] = &[
        "1:1", "16:9", "3:2", "2:3", "4:5", "5:4", "9:16", "3:4", "4:3",
    ];
    let (model, input, ratios, cost) = match key {
        "image" => (
            "black-forest-labs/flux-schnell",
            json!({ "prompt": "{prompt}", "aspect_ratio": "{aspect_ratio}", "seed": "{seed}",
                    "output_format": "png" }),
            Some(FLUX),
            // $3 per thousand images.
            CostConfig::per_run(0.003),
        ),
        "image_hd" => (
            "black-forest-labs/flux-1.1-pro",
            json!({ "prompt": "{prompt}", "aspect_ratio": "{aspect_ratio}", "seed": "{seed}",
                    "output_format": "png" }),
            Some(FLUX_PRO),
            CostConfig::per_run(0.04),
        ),
        "image_4k" => (
            "black-forest-labs/flux-1.1-pro-ultra",
            json!({ "prompt": "{prompt}", "aspect_ratio": "{aspect_ratio}", "seed": "{seed}",
                    "output_format": "png", "raw": false }),
            Some(FLUX),
            CostConfig::per_run(0.06),
        ),
        "enhance" => (
            "nightmareai/real-esrgan:f121d640bd286e1fdc67f9799164c1d5be36ff74576ee11c803ae5b665dd46aa",
            json!({ "image": "{image}", "scale": 2, "face_enhance": true }),
            None,
            // Billed by time on a T4 ($0.000225/s); a run takes about nine seconds.
            CostConfig::per_run(0.002),
        ),
        "removebg" => (
            "cjwbw/rembg:fb8af171cfa1616ddcf1242c093f9c46bcada5ad4cf6f2fbe8b81b330ec5c003",
            json!({ "image": "{image}" }),
            None,
            // Billed by time on an A40 ($0.000575/s); a run takes about five seconds.
            CostConfig::per_run(0.003),
        ),
        "faceswap" => (
            // This model's `swap_image` is the face; `input_image` is the photo it goes into.
            "codeplugtech/face-swap:278a81e7ebb22db98bcba54de985d22cc1abeead2754eb1f2af717247be69b34",
            json!({ "swap_image": "{image}", "input_image": "{image2}" }),
            None,
            // Billed by time; no published figure, about $0.003 a run by others' measurements.
            CostConfig::per_run(0.003),
        ),
        "portrait" => (
            "black-forest-labs/flux-kontext-pro",
            json!({ "prompt": "Turn this photo into a {style} portrait of the same person, keeping their face and identity",
                    "input_image": "{image}", "output_format": "png" }),
            None,
            CostConfig::per_run(0.04),
        ),
        "video" => (
            // The resolution is pinned because it sets the price: $0.036 per second at 720p.
            "bytedance/seedance-1-lite",
            json!({ "prompt": "{prompt}", "image": "{image}", "duration": "{seconds}",
                    "resolution": "720p", "seed": "{seed}" }),
            None,
            CostConfig::per_second(0.036),
        ),
        "music" => (
            "meta/musicgen:671ac645ce5e552cc63a54a2bbff63fcf798043055d2dac5fc9e36a837eedcfb",
            json!({ "prompt": "{prompt}", "duration": "{seconds}", "model_version": "stereo-large",
                    "output_format": "mp3" }),
            None,
            // Billed by time on an A100 ($0.00115/s); stereo-large takes about two seconds of
            // work per second of music.
            CostConfig::per_second(0.0025),
        ),
        _ => return None,
    };
    let Value::Object(input) = input else {
        return None;
    };
    Some(ModelConfig {
        model: model.into(),
        input,
        aspect_ratios: ratios.map(|r| r.iter().map(|s| (*s).to_string()).collect()),
        cost: Some(cost),
    })
}

impl ReplicateConfig {
    /// The model for `key`: configured, else the default. A configured model that is the
    /// default one keeps the default's cost and aspect ratios unless it names its own.
    pub fn model(&self, key: &str) -> Option<ModelConfig> {
        let default = default_model(key);
        let Some(configured) = self.models.get(key) else {
            return default;
        };
        let mut model = configured.clone();
        if let Some(default) = default.filter(|d| d.model == configured.model) {
            model.cost = model.cost.or(default.cost);
            model.aspect_ratios = model.aspect_ratios.or(default.aspect_ratios);
        }
        Some(model)
    }

    /// What one run of `operation` costs on its model, when a price is known.
    pub fn cost_of(&self, operation: Operation) -> Option<Usd> {
        let model = self.model(model_key(operation))?;
        model.cost.map(|cost| cost.of(operation))
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
            if let Some(cost) = &model.cost {
                cost.validate().map_err(|why| (format!("{at}.cost"), why))?;
            }
            if let Some(ratios) = &model.aspect_ratios
                && let Some(bad) = ratios.iter().find(|r| AspectRatio::parse(r).is_none())
            {
                return Err((
                    format!("{at}.aspect_ratios"),
                    format!("{bad:?} is not an aspect ratio such as 16:9"),
                ));
            }
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
            StatusCode::TOO_MANY_REQUESTS => {
                ProviderError::Transient("Replicate is rate limiting us".into())
            }
            _ => ProviderError::Unavailable(format!("Replicate answered {status}")),
        }
    }

    /// Whether Replicate serves `reference` (`owner/name`, or `owner/name:version`), asked of
    /// its models endpoint (`GET /v1/models/{owner}/{name}[/versions/{id}]`).
    ///
    /// # Errors
    ///
    /// When Replicate cannot be asked, or refuses the token.
    pub async fn exists(&self, reference: &str) -> Result<bool, ProviderError> {
        let url = match reference.split_once(':') {
            Some((name, version)) => format!("{}/models/{name}/versions/{version}", self.api),
            None => format!("{}/models/{reference}", self.api),
        };
        let response = http::send(NAME, || {
            self.http
                .get(&url)
                .header(reqwest::header::AUTHORIZATION, bearer(&self.token))
        })
        .await?;
        match response.status() {
            status if status.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            status => Err(ProviderError::Unavailable(format!(
                "Replicate answered {status}"
            ))),
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

/// The ratio among `allowed` nearest to `asked` (by the logarithm of width over height, so
/// 21:9 goes to 16:9 rather than to 1:1); `asked` itself when it is allowed or nothing is.
fn nearest_ratio(asked: AspectRatio, allowed: Option<&[String]>) -> String {
    let shape = |r: AspectRatio| (f64::from(r.width()) / f64::from(r.height())).ln();
    let Some(allowed) = allowed else {
        return asked.to_string();
    };
    allowed
        .iter()
        .filter_map(|text| AspectRatio::parse(text).map(|r| (text, r)))
        .min_by(|(_, a), (_, b)| {
            let (da, db) = (
                (shape(*a) - shape(asked)).abs(),
                (shape(*b) - shape(asked)).abs(),
            );
            da.total_cmp(&db)
        })
        .map_or_else(|| asked.to_string(), |(text, _)| text.clone())
}

/// The prediction input for a request, from the model's template.
pub fn render(model: &ModelConfig, request: &GenerationRequest) -> Value {
    fill(&model.input, model.aspect_ratios.as_deref(), request)
}

fn fill(
    template: &Map<String, Value>,
    ratios: Option<&[String]>,
    request: &GenerationRequest,
) -> Value {
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
            "aspect_ratio" => Some(Value::String(nearest_ratio(request.aspect, ratios))),
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

    fn cost(&self, operation: Operation) -> Option<Usd> {
        self.config.cost_of(operation)
    }

    fn model(&self, operation: Operation) -> Option<String> {
        self.config.model(model_key(operation)).map(|m| m.model)
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
            let prediction = self.create(&model, render(&model, run.request)).await?;
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
