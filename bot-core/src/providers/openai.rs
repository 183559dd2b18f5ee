//! OpenAI's Images API: text→image through `images/generations` and photo portraits through
//! `images/edits`, both answering base64 images (`data[].b64_json`; the GPT image models take no
//! `response_format`). The model is configuration; the default is `gpt-image-2`, since
//! `gpt-image-1` was shut down on 2026-10-23 and `gpt-image-1.5` on 2026-12-01
//! (<https://developers.openai.com/api/docs/deprecations>). `gpt-image-2` takes any
//! `WIDTHxHEIGHT` with both sides divisible by 16, a ratio within 3:1 and 655,360–8,294,400
//! pixels, so each aspect ratio is drawn exactly; older models get the nearest of their three
//! sizes. A request the safety system blocks (`moderation_blocked`) is a refusal, said plainly;
//! an exhausted quota (`insufficient_quota` with a billing code, HTTP 429) or a retired model
//! (`model_not_found`) sends the job to the next provider.

use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{
    CostConfig, GenerationRequest, Provider, ProviderError, ProviderFuture, Run,
    http::{self, bearer},
};
use crate::{
    Usd,
    command::{AspectRatio, Quality},
    media::Output,
    pricing::Operation,
};

const NAME: &str = "openai";

/// The `[providers.openai]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpenAiConfig {
    /// `OPENAI_API_KEY`; the provider is off without it.
    pub api_key: Option<SecretString>,
    /// `OPENAI_BASE_URL`, OpenAI's own convention: it includes `/v1`.
    pub base_url: String,
    /// The image model, for generations and edits.
    pub model: String,
    /// The `quality` sent for standard images, and for HD images and portraits.
    pub quality_standard: String,
    pub quality_hd: String,
    /// True when the model draws any `WIDTHxHEIGHT` (the gpt-image-2 family); false sends the
    /// nearest of 1024x1024, 1536x1024 and 1024x1536.
    pub exact_sizes: bool,
    /// What one image costs at OpenAI's published prices, in dollars.
    pub cost: OpenAiCost,
}

/// OpenAI's price per image at about one megapixel, by what is asked for. The defaults are
/// gpt-image-2's published figures for 1024x1024 (low $0.006, medium $0.053); a portrait adds
/// the input photo's image tokens ($8 per million) to a medium image.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpenAiCost {
    pub standard: f64,
    pub hd: f64,
    pub portrait: f64,
}

impl Default for OpenAiCost {
    fn default() -> Self {
        OpenAiCost {
            standard: 0.006,
            hd: 0.053,
            portrait: 0.065,
        }
    }
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        OpenAiConfig {
            api_key: None,
            base_url: "https://api.openai.com/v1".into(),
            model: "gpt-image-2".into(),
            quality_standard: "low".into(),
            quality_hd: "medium".into(),
            exact_sizes: true,
            cost: OpenAiCost::default(),
        }
    }
}

impl OpenAiConfig {
    /// Checks the prices are prices.
    ///
    /// # Errors
    ///
    /// The configuration key at fault and what is wrong.
    pub fn validate(&self) -> Result<(), (String, String)> {
        for (key, usd) in [
            ("standard", self.cost.standard),
            ("hd", self.cost.hd),
            ("portrait", self.cost.portrait),
        ] {
            CostConfig::per_run(usd)
                .validate()
                .map_err(|why| (format!("providers.openai.cost.{key}"), why))?;
        }
        Ok(())
    }
}

impl OpenAiConfig {
    fn size(&self, request: &GenerationRequest) -> String {
        size(request.aspect, self.exact_sizes)
    }

    /// Standard images at the standard quality; HD images and portraits (a paid edit of a
    /// person's photo) at the HD quality.
    fn quality(&self, request: &GenerationRequest) -> &str {
        match request.operation {
            Operation::Image(Quality::Standard) => &self.quality_standard,
            _ => &self.quality_hd,
        }
    }

    /// What one image for `operation` costs, when OpenAI does it.
    pub fn cost_of(&self, operation: Operation) -> Option<Usd> {
        Self::endpoint(operation)?;
        let usd = match operation {
            Operation::Image(Quality::Standard) => self.cost.standard,
            Operation::Portrait => self.cost.portrait,
            _ => self.cost.hd,
        };
        Usd::from_dollars(usd)
    }

    /// The endpoint an operation is sent to, if OpenAI does it.
    pub fn endpoint(operation: Operation) -> Option<&'static str> {
        match operation {
            Operation::Image(Quality::Standard | Quality::Hd) => Some("images/generations"),
            Operation::Portrait => Some("images/edits"),
            _ => None,
        }
    }

    /// The JSON body of an `images/generations` request.
    pub fn generation_body(&self, request: &GenerationRequest) -> Value {
        let mut prompt = request.prompt.clone().unwrap_or_default();
        if let Some(negative) = &request.negative {
            prompt.push_str(&format!("\nAvoid: {negative}"));
        }
        json!({
            "model": self.model,
            "prompt": prompt,
            "n": 1,
            "size": self.size(request),
            "quality": self.quality(request),
        })
    }

    /// The text fields of an `images/edits` request (the photo goes beside them as `image`).
    pub fn edit_fields(&self, request: &GenerationRequest) -> Map<String, Value> {
        let style = request.style.as_deref().unwrap_or("studio");
        let prompt = format!(
            "Turn this photo into a {style} portrait of the same person, keeping their face and identity."
        );
        let mut fields = Map::new();
        fields.insert("model".into(), Value::String(self.model.clone()));
        fields.insert("prompt".into(), Value::String(prompt));
        fields.insert("size".into(), Value::String(self.size(request)));
        fields.insert(
            "quality".into(),
            Value::String(self.quality(request).into()),
        );
        fields
    }
}

/// The size sent for `aspect`: exact (both sides multiples of 16, about a megapixel, within
/// OpenAI's 3:1 and pixel limits) or the nearest of the three sizes every GPT image model takes.
pub fn size(aspect: AspectRatio, exact: bool) -> String {
    let (w, h) = (f64::from(aspect.width()), f64::from(aspect.height()));
    if !exact {
        return if w * 10.0 > h * 11.0 {
            "1536x1024"
        } else if h * 10.0 > w * 11.0 {
            "1024x1536"
        } else {
            "1024x1024"
        }
        .into();
    }
    // A ratio past 3:1 is drawn at 3:1, the widest OpenAI takes.
    let ratio = (w / h).clamp(1.0 / 3.0, 3.0);
    let side = |x: f64| ((x / 16.0).round() as u32).max(1) * 16;
    let width = side((1_048_576.0 * ratio).sqrt());
    let height = side((1_048_576.0 / ratio).sqrt());
    format!("{width}x{height}")
}

/// The OpenAI provider.
#[derive(Debug)]
pub struct OpenAi {
    http: reqwest::Client,
    key: SecretString,
    config: OpenAiConfig,
}

#[derive(Debug, Deserialize)]
struct Images {
    data: Vec<Image>,
}

#[derive(Debug, Deserialize)]
struct Image {
    #[serde(default)]
    b64_json: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error: ErrorDetail,
}

#[derive(Debug, Default, Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    message: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    code: Option<String>,
}

/// What an error answer means (<https://developers.openai.com/api/docs/guides/error-codes>).
/// Billing trouble comes as HTTP 429 with `type: insufficient_quota` and a code naming the
/// limit; only `rate_limit_exceeded` and `slow_down` are worth waiting for.
fn refusal(status: u16, error: ErrorDetail) -> ProviderError {
    const BILLING: &[&str] = &[
        "insufficient_quota",
        "credit_balance_exhausted",
        "organization_spend_limit_exceeded",
        "project_spend_limit_exceeded",
        "organization_usage_limit_exceeded",
        "billing_hard_limit_reached",
    ];
    let code = error.code.as_deref();
    let kind = error.kind.as_deref();
    let message = || {
        error
            .message
            .clone()
            .unwrap_or_else(|| format!("HTTP {status}"))
    };
    if matches!(
        code,
        Some("moderation_blocked" | "content_policy_violation")
    ) {
        return ProviderError::Refused(
            "OpenAI's safety system refused this request. Try rewording it.".into(),
        );
    }
    if code.is_some_and(|c| BILLING.contains(&c)) || kind.is_some_and(|k| BILLING.contains(&k)) {
        tracing::error!(code, "OpenAI quota or spending limit reached");
        return ProviderError::Unavailable("OpenAI billing needs attention".into());
    }
    if code == Some("model_not_found") {
        tracing::error!("OpenAI does not serve the configured model: {}", message());
        return ProviderError::Unavailable("OpenAI does not serve the configured model".into());
    }
    match status {
        401 | 403 => {
            tracing::error!(status, "OpenAI refused the API key");
            ProviderError::Unavailable("OpenAI refused our credentials".into())
        }
        429 => ProviderError::Transient("OpenAI is rate limiting us".into()),
        400 | 422 => {
            ProviderError::Refused(format!("OpenAI could not take this request: {}", message()))
        }
        _ => ProviderError::Unavailable(format!("OpenAI answered HTTP {status}")),
    }
}

impl OpenAi {
    /// The provider, when a key is configured.
    pub fn from_config(config: &OpenAiConfig) -> Option<OpenAi> {
        Some(OpenAi {
            http: http::client(),
            key: config.api_key.clone()?,
            config: config.clone(),
        })
    }

    fn url(&self, endpoint: &str) -> String {
        format!("{}/{endpoint}", self.config.base_url.trim_end_matches('/'))
    }

    /// Whether OpenAI serves the configured model to this key (`GET /v1/models/{model}`).
    ///
    /// # Errors
    ///
    /// When OpenAI cannot be asked, or refuses the key.
    pub async fn exists(&self) -> Result<bool, ProviderError> {
        let url = self.url(&format!("models/{}", self.config.model));
        let response = http::send(NAME, || {
            self.http
                .get(&url)
                .header(reqwest::header::AUTHORIZATION, bearer(&self.key))
        })
        .await?;
        match response.status().as_u16() {
            200..=299 => Ok(true),
            404 => Ok(false),
            status => Err(ProviderError::Unavailable(format!(
                "OpenAI answered HTTP {status}"
            ))),
        }
    }

    async fn generations(&self, request: &GenerationRequest) -> Result<Output, ProviderError> {
        let body = self.config.generation_body(request);
        let url = self.url("images/generations");
        let response = http::send(NAME, || {
            self.http
                .post(&url)
                .header(reqwest::header::AUTHORIZATION, bearer(&self.key))
                .json(&body)
        })
        .await?;
        self.answer(response).await
    }

    async fn edit(&self, request: &GenerationRequest) -> Result<Output, ProviderError> {
        let photo = request
            .inputs
            .first()
            .ok_or_else(|| ProviderError::Refused("This needs a photo.".into()))?;
        let (mime, extension) = photo.format.mime();
        let name = format!("photo.{extension}");
        let url = self.url("images/edits");
        let fields = self.config.edit_fields(request);
        let form = || {
            let part = reqwest::multipart::Part::bytes(photo.bytes().to_vec())
                .file_name(name.clone())
                .mime_str(mime)
                .unwrap_or_else(|_| reqwest::multipart::Part::bytes(Vec::new()));
            fields
                .iter()
                .fold(reqwest::multipart::Form::new(), |form, (key, value)| {
                    let text = match value {
                        Value::String(text) => text.clone(),
                        other => other.to_string(),
                    };
                    form.text(key.clone(), text)
                })
                .part("image", part)
        };
        let response = http::send(NAME, || {
            self.http
                .post(&url)
                .header(reqwest::header::AUTHORIZATION, bearer(&self.key))
                .multipart(form())
        })
        .await?;
        self.answer(response).await
    }

    async fn answer(&self, response: reqwest::Response) -> Result<Output, ProviderError> {
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            let ErrorBody { error } = serde_json::from_str(&text).unwrap_or_default();
            return Err(refusal(status.as_u16(), error));
        }
        let images: Images = serde_json::from_str(&text).map_err(|_| {
            ProviderError::Unavailable("OpenAI answered with something unexpected".into())
        })?;
        let b64 = images
            .data
            .into_iter()
            .find_map(|image| image.b64_json)
            .ok_or_else(|| ProviderError::Unavailable("OpenAI returned no image".into()))?;
        let bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64)
            .map_err(|_| ProviderError::Unavailable("OpenAI returned a damaged image".into()))?;
        Output::sniff(bytes, "openai")
            .map_err(|what| ProviderError::Unavailable(format!("OpenAI returned {what}")))
    }
}

impl Provider for OpenAi {
    fn name(&self) -> &'static str {
        NAME
    }

    /// Standard and HD images, and portraits; the GPT image models draw at most 1536 pixels, so
    /// 4K is left to others.
    fn supports(&self, operation: Operation) -> bool {
        matches!(
            operation,
            Operation::Image(Quality::Standard | Quality::Hd) | Operation::Portrait
        )
    }

    fn cost(&self, operation: Operation) -> Option<Usd> {
        self.config.cost_of(operation)
    }

    fn model(&self, operation: Operation) -> Option<String> {
        self.supports(operation).then(|| self.config.model.clone())
    }

    fn generate<'a>(&'a self, run: Run<'a>) -> ProviderFuture<'a> {
        Box::pin(async move {
            let request = run.request;
            match request.operation {
                Operation::Portrait => self.edit(request).await,
                Operation::Image(_) => self.generations(request).await,
                other => Err(ProviderError::Unavailable(format!(
                    "OpenAI does not do {}",
                    other.name()
                ))),
            }
        })
    }
}

#[cfg(test)]
mod tests;
