//! OpenAI's Images API: text→image through `images/generations` and photo portraits through
//! `images/edits`, both answering base64 images. The model id is configuration, never written
//! here. A request the safety system blocks (`moderation_blocked`) is a refusal, said plainly.

use secrecy::SecretString;
use serde::Deserialize;
use serde_json::json;

use super::{
    GenerationRequest, Provider, ProviderError, ProviderFuture, Run,
    http::{self, bearer},
};
use crate::{command::Quality, media::Output, pricing::Operation};

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
    /// The `quality` sent for standard and for HD images.
    pub quality_standard: String,
    pub quality_hd: String,
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        OpenAiConfig {
            api_key: None,
            base_url: "https://api.openai.com/v1".into(),
            model: "gpt-image-1".into(),
            quality_standard: "medium".into(),
            quality_hd: "high".into(),
        }
    }
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
    #[serde(default)]
    code: Option<String>,
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

    /// The size for an aspect ratio: the GPT image models draw squares, 3:2 or 2:3.
    fn size(request: &GenerationRequest) -> &'static str {
        let (w, h) = (request.aspect.width(), request.aspect.height());
        if w * 10 > h * 11 {
            "1536x1024"
        } else if h * 10 > w * 11 {
            "1024x1536"
        } else {
            "1024x1024"
        }
    }

    fn quality(&self, request: &GenerationRequest) -> &str {
        match request.quality() {
            Quality::Standard => &self.config.quality_standard,
            _ => &self.config.quality_hd,
        }
    }

    async fn generations(&self, request: &GenerationRequest) -> Result<Output, ProviderError> {
        let mut prompt = request.prompt.clone().unwrap_or_default();
        if let Some(negative) = &request.negative {
            prompt.push_str(&format!("\nAvoid: {negative}"));
        }
        let body = json!({
            "model": self.config.model,
            "prompt": prompt,
            "n": 1,
            "size": Self::size(request),
            "quality": self.quality(request),
        });
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

    async fn edit(
        &self,
        request: &GenerationRequest,
        prompt: String,
    ) -> Result<Output, ProviderError> {
        let photo = request
            .inputs
            .first()
            .ok_or_else(|| ProviderError::Refused("This needs a photo.".into()))?;
        let (mime, extension) = photo.format.mime();
        let name = format!("photo.{extension}");
        let url = self.url("images/edits");
        let form = || {
            let part = reqwest::multipart::Part::bytes(photo.bytes().to_vec())
                .file_name(name.clone())
                .mime_str(mime)
                .unwrap_or_else(|_| reqwest::multipart::Part::bytes(Vec::new()));
            reqwest::multipart::Form::new()
                .text("model", self.config.model.clone())
                .text("prompt", prompt.clone())
                .text("size", Self::size(request))
                .text("quality", self.quality(request).to_string())
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
            return Err(match (status.as_u16(), error.code.as_deref()) {
                (_, Some("moderation_blocked")) => ProviderError::Refused(
                    "OpenAI's safety system refused this request. Try rewording it.".into(),
                ),
                (401 | 403, _) => {
                    tracing::error!(%status, "OpenAI refused the API key");
                    ProviderError::Unavailable("OpenAI refused our credentials".into())
                }
                (429, Some("insufficient_quota" | "billing_hard_limit_reached")) => {
                    tracing::error!("OpenAI quota exhausted");
                    ProviderError::Unavailable("OpenAI billing needs attention".into())
                }
                (400 | 422, _) => ProviderError::Refused(format!(
                    "OpenAI could not take this request: {}",
                    error.message.unwrap_or_else(|| status.to_string())
                )),
                _ => ProviderError::Unavailable(format!("OpenAI answered {status}")),
            });
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

    fn generate<'a>(&'a self, run: Run<'a>) -> ProviderFuture<'a> {
        Box::pin(async move {
            let request = run.request;
            match request.operation {
                Operation::Portrait => {
                    let style = request.style.as_deref().unwrap_or("studio");
                    let prompt = format!(
                        "Turn this photo into a {style} portrait of the same person, keeping their face and identity."
                    );
                    self.edit(request, prompt).await
                }
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
