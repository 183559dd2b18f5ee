//! What the HTTP providers share: one client (rustls), the bearer header kept out of `Debug`,
//! rate-limit retries that honour `Retry-After`, and downloads capped in size as they stream.

use std::time::Duration;

use reqwest::{RequestBuilder, Response, StatusCode, header::HeaderValue};
use secrecy::{ExposeSecret as _, SecretString};

use super::ProviderError;

/// Rate-limited calls are tried this many times before the job is retried later.
const THROTTLE_TRIES: u32 = 3;
/// A `Retry-After` longer than this is not waited for in the call; the job is retried later.
const LONGEST_WAIT: Duration = Duration::from_secs(20);

/// A client for one provider.
pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(120))
        .user_agent(concat!("imagegpt/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

/// `Bearer <secret>`, marked sensitive so that it never shows in `Debug` or logs.
pub(crate) fn bearer(secret: &SecretString) -> HeaderValue {
    let mut value = HeaderValue::from_str(&format!("Bearer {}", secret.expose_secret()))
        .unwrap_or_else(|_| HeaderValue::from_static("Bearer invalid"));
    value.set_sensitive(true);
    value
}

/// Sends the request built by `build`, waiting out `429 Too Many Requests` as the service asks
/// (a few times); any other answer is returned, and so is a 429 that names no wait: OpenAI
/// answers an exhausted quota that way, and waiting would not help. A connection failure or
/// timeout is `Err`.
pub(crate) async fn send(
    provider: &str,
    build: impl Fn() -> RequestBuilder,
) -> Result<Response, ProviderError> {
    let mut tries = 0;
    loop {
        tries += 1;
        let response = build()
            .send()
            .await
            .map_err(|error| unreachable(provider, &error))?;
        if response.status() != StatusCode::TOO_MANY_REQUESTS {
            return Ok(response);
        }
        let Some(wait) = retry_after(&response) else {
            return Ok(response);
        };
        if tries >= THROTTLE_TRIES || wait > LONGEST_WAIT {
            return Err(ProviderError::Transient(format!(
                "{provider} is rate limiting us"
            )));
        }
        tracing::info!(
            provider,
            wait_ms = wait.as_millis() as u64,
            "rate limited; waiting"
        );
        tokio::time::sleep(wait).await;
    }
}

/// The wait a 429 asks for: `retry-after-ms` (OpenAI) or `Retry-After` in seconds.
fn retry_after(response: &Response) -> Option<Duration> {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
    };
    header("retry-after-ms")
        .map(|ms| Duration::from_secs_f64(ms / 1000.0))
        .or_else(|| header("retry-after").map(Duration::from_secs_f64))
}

/// A request that got no answer. The error's text names the host, never the headers.
fn unreachable(provider: &str, error: &reqwest::Error) -> ProviderError {
    let why = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not be reached"
    } else {
        "did not answer properly"
    };
    ProviderError::Unavailable(format!("{provider} {why}"))
}

/// The answer's body, at most `limit` bytes, read as it streams.
pub(crate) async fn body(
    provider: &str,
    mut response: Response,
    limit: usize,
) -> Result<Vec<u8>, ProviderError> {
    if response
        .content_length()
        .is_some_and(|length| length > limit as u64)
    {
        return Err(too_large(limit));
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| ProviderError::Transient(format!("{provider}: {}", short(&error))))?
    {
        if bytes.len() + chunk.len() > limit {
            return Err(too_large(limit));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

fn too_large(limit: usize) -> ProviderError {
    ProviderError::Refused(format!(
        "The result is larger than the {} MB we can deliver.",
        limit / 1_000_000
    ))
}

fn short(error: &reqwest::Error) -> &'static str {
    if error.is_timeout() {
        "timed out while reading"
    } else {
        "the connection broke while reading"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_header_is_sensitive() {
        let value = bearer(&SecretString::from("r8_secret".to_string()));
        assert!(value.is_sensitive());
        assert!(!format!("{value:?}").contains("r8_secret"));
    }
}
