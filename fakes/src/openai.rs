//! OpenAI's Images API under a base URL that includes `/v1`: `POST /v1/images/generations`
//! (JSON) and `POST /v1/images/edits` (multipart), answering `{"created", "data": [{"b64_json"}]}`
//! and errors as `{"error": {"message", "type", "param", "code"}}`.
//!
//! Strictness: a bearer key is required; `model` and `prompt` are required; `size` must be one
//! the GPT image models accept; edits need an `image` (or `image[]`) part that is a PNG, JPEG or
//! WebP; prompts containing a word the test marks are refused with `moderation_blocked`, as the
//! real safety system does.

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

/// Sizes the GPT image models accept.
pub const SIZES: &[&str] = &["1024x1024", "1536x1024", "1024x1536", "auto"];

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

/// Checks the fields both endpoints share and answers with an image of the requested size.
fn answer(state: &Shared, endpoint: &'static str, fields: &Value, images: usize) -> Response {
    let text = |name: &str| fields.get(name).and_then(Value::as_str).map(str::to_string);
    let Some(model) = text("model").filter(|m| !m.is_empty()) else {
        return missing("model");
    };
    let Some(prompt) = text("prompt").filter(|p| !p.is_empty()) else {
        return missing("prompt");
    };
    if prompt.chars().count() > 32_000 {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("string_above_max_length"),
            Some("prompt"),
            "Invalid 'prompt': string too long. Expected a string with maximum length 32000.",
        );
    }
    let size = text("size").unwrap_or_else(|| "auto".into());
    if !SIZES.contains(&size.as_str()) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("invalid_value"),
            Some("size"),
            &format!(
                "Invalid value: '{size}'. Supported values are: '1024x1024', '1024x1536', '1536x1024', and 'auto'."
            ),
        );
    }
    let mut fake = lock(state);
    let lowered = prompt.to_lowercase();
    if fake.blocked_words.iter().any(|w| lowered.contains(w)) {
        return error(
            StatusCode::BAD_REQUEST,
            "image_generation_user_error",
            Some("moderation_blocked"),
            None,
            "Your request was rejected as a result of our safety system. Your request may contain content that is not allowed by our safety system.",
        );
    }
    fake.seen.push(Seen {
        endpoint,
        model,
        prompt,
        size: size.clone(),
        images,
    });
    let (width, height) = match size.as_str() {
        "1536x1024" => (1536, 1024),
        "1024x1536" => (1024, 1536),
        _ => (1024, 1024),
    };
    let b64 = base64::engine::general_purpose::STANDARD.encode(crate::png(width, height));
    Json(json!({
        "created": 1_764_064_800,
        "data": [{ "b64_json": b64 }],
        "usage": { "total_tokens": 100, "input_tokens": 50, "output_tokens": 50 },
    }))
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
    answer(&state, "generations", &fields, 0)
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
    answer(&state, "edits", &Value::Object(fields), images)
}
