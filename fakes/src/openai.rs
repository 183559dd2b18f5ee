//! OpenAI's Images API under a base URL that includes `/v1`: `POST /v1/images/generations`
//! (JSON) and `POST /v1/images/edits` (multipart), answering `{"created", "data": [{"b64_json"}]}`
//! and errors as `{"error": {"message", "type", "param", "code"}}`.
//!
//! Strictness: a bearer key is required; every body is validated against the published request
//! schema stored in the `contract` crate (`model` and `prompt` required, the models served
//! today, `quality`, `output_format`, `n`… as documented; an unknown parameter is
//! `unknown_parameter`); a model that was shut down (`gpt-image-1` on 2026-10-23, `gpt-image-1.5`,
//! `gpt-image-1-mini` and `chatgpt-image-latest` on 2026-12-01, `dall-e-2`/`dall-e-3` on
//! 2026-05-12) answers `404 model_not_found`; `size` is `auto`, one of the three standard
//! sizes, or for the gpt-image-2 family any `WIDTHxHEIGHT` with both sides divisible by 16, a
//! ratio within 3:1, 655,360–8,294,400 pixels and at most 3,840 on a side; edits need an
//! `image` (or `image[]`) part that is a PNG, JPEG or WebP; prompts containing a word the test
//! marks are refused with `moderation_blocked` (HTTP 400, `image_generation_user_error`, with
//! `moderation_details`), as the real safety system does; an exhausted quota is HTTP 429
//! `insufficient_quota` with no `retry-after`.
//! Sources: <https://developers.openai.com/api/docs/deprecations>,
//! <https://developers.openai.com/api/docs/models/gpt-image-2>,
//! <https://developers.openai.com/api/docs/guides/error-codes>, and openai-python's
//! `image_generate_params.py` / `image_edit_params.py` (2026-08-21).

use std::sync::{Arc, Mutex, MutexGuard};

use axum::{
    Json, Router,
    extract::{Multipart, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use base64::Engine as _;
use serde_json::{Value, json};

use crate::Server;

/// Sizes every GPT image model accepts.
pub const SIZES: &[&str] = &["1024x1024", "1536x1024", "1024x1536", "auto"];

/// Image models OpenAI has shut down.
pub const RETIRED: &[&str] = &[
    "gpt-image-1",
    "gpt-image-1.5",
    "gpt-image-1.5-2025-12-16",
    "gpt-image-1-mini",
    "chatgpt-image-latest",
    "dall-e-2",
    "dall-e-3",
];

/// The width and height `size` asks for, when a gpt-image-2 model can draw it.
pub fn flexible_size(size: &str) -> Option<(u32, u32)> {
    let (w, h) = size.split_once('x')?;
    let (w, h): (u32, u32) = (w.parse().ok()?, h.parse().ok()?);
    let pixels = u64::from(w) * u64::from(h);
    let ok = w % 16 == 0
        && h % 16 == 0
        && w.max(h) <= 3 * w.min(h)
        && (655_360..=8_294_400).contains(&pixels)
        && w.max(h) <= 3_840;
    ok.then_some((w, h))
}

/// One request the fake accepted: the endpoint, the model, prompt, size and the number of images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub endpoint: &'static str,
    pub model: String,
    pub prompt: String,
    pub size: String,
    pub images: usize,
}

#[derive(Debug, Default)]
struct Fake {
    key: String,
    blocked_words: Vec<String>,
    throttle: u32,
    out_of_quota: u32,
    fail: u32,
    delay_ms: u64,
    seen: Vec<Seen>,
}

type Shared = Arc<Mutex<Fake>>;

/// A running fake OpenAI.
#[derive(Debug)]
pub struct FakeOpenAi {
    server: Server,
    state: Shared,
}

impl FakeOpenAi {
    /// Starts a fake that accepts `key`.
    pub async fn start(key: &str) -> FakeOpenAi {
        let state: Shared = Arc::new(Mutex::new(Fake {
            key: key.to_string(),
            ..Fake::default()
        }));
        let router = Router::new()
            .route("/v1/images/generations", post(generations))
            .route("/v1/images/edits", post(edits))
            .route("/v1/models/{model}", axum::routing::get(model_info))
            .with_state(state.clone());
        FakeOpenAi {
            server: Server::start(router).await,
            state,
        }
    }

    /// The value for `OPENAI_BASE_URL` (it includes `/v1`).
    pub fn base_url(&self) -> String {
        format!("{}/v1", self.server.origin())
    }

    /// Prompts containing `word` are refused by the "safety system".
    pub fn block(&self, word: &str) {
        lock(&self.state).blocked_words.push(word.to_lowercase());
    }

    /// The next `n` requests get 429 `rate_limit_exceeded` with `retry-after: 1`.
    pub fn throttle(&self, n: u32) {
        lock(&self.state).throttle = n;
    }

    /// The next `n` requests find the project's spending limit reached (429 `insufficient_quota`,
    /// no `retry-after`: waiting does not help).
    pub fn exhaust_quota(&self, n: u32) {
        lock(&self.state).out_of_quota = n;
    }

    /// The next `n` requests get 500 `server_error`.
    pub fn fail(&self, n: u32) {
        lock(&self.state).fail = n;
    }

    /// Every answer waits this long first.
    pub fn delay(&self, millis: u64) {
        lock(&self.state).delay_ms = millis;
    }

    /// The requests accepted so far.
    pub fn seen(&self) -> Vec<Seen> {
        lock(&self.state).seen.clone()
    }
}

fn lock(state: &Shared) -> MutexGuard<'_, Fake> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn error(
    status: StatusCode,
    kind: &str,
    code: Option<&str>,
    param: Option<&str>,
    message: &str,
) -> Response {
    (
        status,
        Json(
            json!({ "error": { "message": message, "type": kind, "param": param, "code": code } }),
        ),
    )
        .into_response()
}

/// OpenAI's answer for a model it does not serve (shut down, or never existed).
fn model_not_found(model: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        Some("model_not_found"),
        Some("model"),
        &format!("The model `{model}` does not exist or you do not have access to it."),
    )
}

/// OpenAI's answer to a request without a required parameter.
fn missing(param: &str) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        Some("missing_required_parameter"),
        Some(param),
        &format!("Missing required parameter: '{param}'."),
    )
}

/// The checks every request passes first: key, scripted throttling and failures.
async fn gate(state: &Shared, headers: &HeaderMap) -> Result<(), Response> {
    let delay = lock(state).delay_ms;
    if delay > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
    let mut fake = lock(state);
    let expected = format!("Bearer {}", fake.key);
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(expected.as_str())
    {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            Some("invalid_api_key"),
            None,
            "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
        ));
    }
    if fake.throttle > 0 {
        fake.throttle -= 1;
        let mut response = error(
            StatusCode::TOO_MANY_REQUESTS,
            "requests",
            Some("rate_limit_exceeded"),
            None,
            "Rate limit reached for images per minute. Please try again in 1s.",
        );
        response
            .headers_mut()
            .insert("retry-after", header::HeaderValue::from_static("1"));
        return Err(response);
    }
    if fake.out_of_quota > 0 {
        fake.out_of_quota -= 1;
        return Err(error(
            StatusCode::TOO_MANY_REQUESTS,
            "insufficient_quota",
            Some("project_spend_limit_exceeded"),
            None,
            "You exceeded your current quota, please check your plan and billing details.",
        ));
    }
    if fake.fail > 0 {
        fake.fail -= 1;
        return Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            None,
            None,
            "The server had an error while processing your request. Sorry about that!",
        ));
    }
    Ok(())
}

/// Checks a request against the endpoint's published schema and answers with an image of the
/// requested size. `form` is true for multipart bodies, whose values arrive as text.
fn answer(
    state: &Shared,
    endpoint: &'static str,
    fields: &Value,
    images: usize,
    form: bool,
) -> Response {
    let text = |name: &str| fields.get(name).and_then(Value::as_str).map(str::to_string);
    let Some(model) = text("model").filter(|m| !m.is_empty()) else {
        return missing("model");
    };
    let contract = contract::openai("gpt-image-2", &format!("images/{endpoint}"));
    let served = contract::openai(&model, &format!("images/{endpoint}")).is_some();
    if RETIRED.contains(&model.as_str()) || !served {
        return model_not_found(&model);
    }
    let Some(prompt) = text("prompt").filter(|p| !p.is_empty()) else {
        return missing("prompt");
    };
    if let Some(contract) = contract {
        let violations = match (form, fields.as_object()) {
            (true, Some(fields)) => contract.check_form(fields),
            _ => contract.check_input(fields, ""),
        };
        if let Some(first) = violations.first() {
            let (code, message) = match first.kind {
                "additional_property" => (
                    "unknown_parameter",
                    format!("Unknown parameter: '{}'.", first.field),
                ),
                "string_lte" => (
                    "string_above_max_length",
                    format!(
                        "Invalid '{}': string too long. Expected a string with maximum length 32000.",
                        first.field
                    ),
                ),
                _ => (
                    "invalid_value",
                    format!("Invalid value for '{}': {}", first.field, first.description),
                ),
            };
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some(code),
                Some(&first.field),
                &message,
            );
        }
    }
    let size = text("size").unwrap_or_else(|| "auto".into());
    let drawn = match size.as_str() {
        "auto" | "1024x1024" => Some((1024, 1024)),
        "1536x1024" => Some((1536, 1024)),
        "1024x1536" => Some((1024, 1536)),
        other => flexible_size(other),
    };
    let Some((width, height)) = drawn else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("invalid_value"),
            Some("size"),
            &format!(
                "Invalid size '{size}'. Width and height must both be divisible by 16, the aspect ratio must be between 1:3 and 3:1, and the total pixels must be between 655360 and 8294400."
            ),
        );
    };
    let mut fake = lock(state);
    let lowered = prompt.to_lowercase();
    if fake.blocked_words.iter().any(|w| lowered.contains(w)) {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": {
                "message": "Your request was rejected by the safety system. If you believe this is an error, contact us at help.openai.com and include the request ID req_fake.",
                "type": "image_generation_user_error",
                "param": null,
                "code": "moderation_blocked",
                "moderation_details": { "moderation_stage": "input", "categories": ["violence"] },
            } })),
        )
            .into_response();
    }
    fake.seen.push(Seen {
        endpoint,
        model,
        prompt,
        size: size.clone(),
        images,
    });
    let b64 = base64::engine::general_purpose::STANDARD.encode(crate::png(width, height));
    Json(json!({
        "created": 1_764_064_800,
        "data": [{ "b64_json": b64 }],
        "size": size,
        "usage": { "total_tokens": 100, "input_tokens": 50, "output_tokens": 50 },
    }))
    .into_response()
}

/// `GET /v1/models/{model}`: the models the stored schema names exist; others are not found.
async fn model_info(
    State(state): State<Shared>,
    axum::extract::Path(model): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(denied) = gate(&state, &headers).await {
        return denied;
    }
    if contract::openai(&model, "images/generations").is_none() {
        return model_not_found(&model);
    }
    Json(json!({ "id": model, "object": "model", "created": 1_776_729_600, "owned_by": "system" }))
        .into_response()
}

async fn generations(State(state): State<Shared>, headers: HeaderMap, body: String) -> Response {
    if let Err(denied) = gate(&state, &headers).await {
        return denied;
    }
    let Ok(fields) = serde_json::from_str::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            None,
            None,
            "We could not parse the JSON body of your request.",
        );
    };
    answer(&state, "generations", &fields, 0, false)
}

async fn edits(State(state): State<Shared>, headers: HeaderMap, mut form: Multipart) -> Response {
    if let Err(denied) = gate(&state, &headers).await {
        return denied;
    }
    let mut fields = serde_json::Map::new();
    let mut images = 0;
    loop {
        let field = match form.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    None,
                    None,
                    "Invalid multipart body.",
                );
            }
        };
        let name = field.name().unwrap_or_default().to_string();
        let Ok(bytes) = field.bytes().await else {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                None,
                None,
                "Invalid multipart body.",
            );
        };
        if name == "image" || name == "image[]" {
            let is_image = bytes.starts_with(b"\x89PNG")
                || bytes.starts_with(b"\xFF\xD8\xFF")
                || (bytes.len() > 12 && &bytes[8..12] == b"WEBP");
            if !is_image {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    Some("invalid_image_format"),
                    Some("image"),
                    "Invalid file format. Supported formats are: ['png', 'jpeg', 'webp']",
                );
            }
            images += 1;
        } else {
            fields.insert(
                name,
                Value::String(String::from_utf8_lossy(&bytes).into_owned()),
            );
        }
    }
    if images == 0 {
        return missing("image");
    }
    answer(&state, "edits", &Value::Object(fields), images, true)
}
