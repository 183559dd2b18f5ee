//! Discord's REST API under `DISCORD_API_URL`, with a rate limiter that does what serenity's
//! does: each route waits out an exhausted bucket (`X-RateLimit-Remaining: 0` for
//! `X-RateLimit-Reset-After` seconds), every request waits out a global limit, and a 429 is
//! waited out (`retry_after`) and tried again. Paths carry interaction tokens, so they are never
//! logged and never put in an error.

use std::time::{Duration, Instant};

use dashmap::DashMap;

use reqwest::{Method, StatusCode, header::HeaderMap};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::Value;

/// How many times one request meets a 429 before giving up (the caller retries later).
const ATTEMPTS: u32 = 5;
/// The longest 429 wait taken in place; longer ones are handed back as a retry.
const LONGEST_WAIT: Duration = Duration::from_secs(30);

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestError {
    /// Discord answered with an error (its JSON `code` and `message`).
    #[error("Discord refused ({status}, code {code}): {message}")]
    Refused {
        status: u16,
        code: u64,
        message: String,
    },
    /// Network trouble, a server error or rate limits that did not clear: try again later.
    #[error("Discord unreachable for now: {0}")]
    Unavailable(String),
}

impl RestError {
    /// Discord's error code, when it answered with one.
    pub fn code(&self) -> Option<u64> {
        match self {
            RestError::Refused { code, .. } => Some(*code),
            RestError::Unavailable(_) => None,
        }
    }
}

/// Discord error codes the adapter acts on.
pub mod codes {
    pub const UNKNOWN_MESSAGE: u64 = 10008;
    pub const UNKNOWN_WEBHOOK: u64 = 10015;
    pub const UNKNOWN_INTERACTION: u64 = 10062;
    pub const MISSING_ACCESS: u64 = 50001;
    pub const MISSING_PERMISSIONS: u64 = 50013;
    pub const INVALID_WEBHOOK_TOKEN: u64 = 50027;
    pub const ENTITY_TOO_LARGE: u64 = 40005;
}

/// A file to upload with a message.
#[derive(Clone)]
pub struct File {
    pub name: String,
    pub mime: &'static str,
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for File {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "File({}, {} bytes)", self.name, self.bytes.len())
    }
}

/// What a request sends.
#[derive(Debug, Clone)]
pub enum Body {
    Empty,
    Json(Value),
    /// `payload_json` and `files[n]`, as Discord takes uploads.
    Files(Value, Vec<File>),
}

/// The REST client.
#[derive(Debug)]
pub struct Rest {
    http: reqwest::Client,
    base: String,
    bot: Option<SecretString>,
    /// Until when each route (and every route, under `""`) must wait.
    gates: DashMap<String, Instant>,
}

impl Rest {
    /// A client for `api_url` (`https://discord.com`), authenticating as the bot when a token is
    /// given.
    ///
    /// # Errors
    ///
    /// When the HTTP client cannot be built.
    pub fn new(api_url: &str, bot: Option<SecretString>) -> Result<Rest, reqwest::Error> {
        Ok(Rest {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .user_agent("DiscordBot (https://imagegpt.org, 0.1)")
                .build()?,
            base: format!("{}/api/v10", api_url.trim_end_matches('/')),
            bot,
            gates: DashMap::new(),
        })
    }

    /// The HTTP client, for downloading attachments.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Whether a bot token is configured (channel posts and DMs need one).
    pub fn has_bot_token(&self) -> bool {
        self.bot.is_some()
    }

    /// Sends one request; `route` names its rate-limit bucket (e.g. `channel:123`), `auth`
    /// whether it carries the bot token (interaction webhooks do not need it).
    ///
    /// # Errors
    ///
    /// [`RestError::Refused`] with Discord's code, or [`RestError::Unavailable`].
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        route: &str,
        auth: bool,
        body: &Body,
    ) -> Result<Value, RestError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.wait_gates(route).await;
            let mut request = self
                .http
                .request(method.clone(), format!("{}{path}", self.base));
            if auth && let Some(token) = &self.bot {
                request = request.header(
                    reqwest::header::AUTHORIZATION,
                    format!("Bot {}", token.expose_secret()),
                );
            }
            request = match body {
                Body::Empty => request,
                Body::Json(value) => request.json(value),
                Body::Files(payload, files) => {
                    let mut form =
                        reqwest::multipart::Form::new().text("payload_json", payload.to_string());
                    for (n, file) in files.iter().enumerate() {
                        let part = reqwest::multipart::Part::bytes(file.bytes.clone())
                            .file_name(file.name.clone())
                            .mime_str(file.mime)
                            .map_err(|e| RestError::Unavailable(e.to_string()))?;
                        form = form.part(format!("files[{n}]"), part);
                    }
                    request.multipart(form)
                }
            };
            let response = match request.send().await {
                Ok(response) => response,
                // `without_url`: the URL may hold an interaction token.
                Err(error) => return Err(RestError::Unavailable(error.without_url().to_string())),
            };
            let status = response.status();
            let headers = response.headers().clone();
            self.note_bucket(route, &headers);
            let text = response
                .text()
                .await
                .map_err(|error| RestError::Unavailable(error.without_url().to_string()))?;
            let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            if status == StatusCode::TOO_MANY_REQUESTS {
                let wait = json["retry_after"]
                    .as_f64()
                    .or_else(|| header_f64(&headers, "retry-after"))
                    .map_or(Duration::from_secs(1), Duration::from_secs_f64);
                let global = json["global"].as_bool().unwrap_or(false)
                    || headers.contains_key("x-ratelimit-global");
                bot_core::metrics::metrics().rate_limited("discord");
                tracing::warn!(
                    route = route.split(':').next().unwrap_or(""),
                    wait_ms = wait.as_millis() as u64,
                    global,
                    "Discord rate limit"
                );
                if attempt >= ATTEMPTS || wait > LONGEST_WAIT {
                    return Err(RestError::Unavailable(format!(
                        "rate limited for {:.1}s",
                        wait.as_secs_f64()
                    )));
                }
                self.close_gate(if global { "" } else { route }, wait);
                continue;
            }
            if status.is_server_error() {
                return Err(RestError::Unavailable(format!("Discord answered {status}")));
            }
            if !status.is_success() {
                return Err(RestError::Refused {
                    status: status.as_u16(),
                    code: json["code"].as_u64().unwrap_or(0),
                    message: json["message"]
                        .as_str()
                        .unwrap_or("no message")
                        .chars()
                        .take(300)
                        .collect(),
                });
            }
            return Ok(json);
        }
    }

    async fn wait_gates(&self, route: &str) {
        loop {
            let until = [self.gates.get(""), self.gates.get(route)]
                .into_iter()
                .flatten()
                .map(|gate| *gate)
                .max();
            match until {
                Some(until) if until > Instant::now() => {
                    tokio::time::sleep_until(until.into()).await;
                }
                _ => return,
            }
        }
    }

    fn close_gate(&self, route: &str, wait: Duration) {
        let until = Instant::now() + wait;
        {
            let mut gate = self.gates.entry(route.to_string()).or_insert(until);
            *gate = (*gate).max(until);
        }
        // Old gates are of no use; keep the map small.
        if self.gates.len() > 10_000 {
            let now = Instant::now();
            self.gates.retain(|_, until| *until > now);
        }
    }

    fn note_bucket(&self, route: &str, headers: &HeaderMap) {
        let remaining = header_f64(headers, "x-ratelimit-remaining");
        let reset_after = header_f64(headers, "x-ratelimit-reset-after");
        if let (Some(remaining), Some(reset_after)) = (remaining, reset_after)
            && remaining < 1.0
        {
            self.close_gate(route, Duration::from_secs_f64(reset_after.max(0.0)));
        }
    }
}

fn header_f64(headers: &HeaderMap, name: &str) -> Option<f64> {
    headers.get(name)?.to_str().ok()?.parse().ok()
}
