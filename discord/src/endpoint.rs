//! `POST /discord/interactions`: Discord's HTTP way in. Every request is verified with the
//! application's Ed25519 public key over `X-Signature-Timestamp` followed by the raw body, and
//! refused with 401 when the signature is missing, wrong or older than five minutes; nothing is
//! read from a body before that. The acknowledgement is the response; the work goes on after.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
};
use ed25519_dalek::{Signature, VerifyingKey};

use crate::{adapter::Handler, model::Interaction};

/// Signatures older (or newer) than this are refused, so a captured request cannot be replayed
/// later.
const TOLERANCE_SECONDS: i64 = 300;
/// Interactions are small; anything larger is not from Discord.
const MAX_BODY: usize = 256 * 1024;

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing signature headers")]
    Missing,
    #[error("malformed signature")]
    Malformed,
    #[error("signature does not match")]
    Mismatch,
    #[error("timestamp outside the allowed window")]
    Stale,
}

/// Checks Discord's request signatures.
#[derive(Debug, Clone)]
pub struct Verifier {
    key: VerifyingKey,
}

impl Verifier {
    /// A verifier for the hex public key from the Developer Portal.
    ///
    /// # Errors
    ///
    /// When the key is not 64 hex characters of a valid Ed25519 point.
    pub fn new(public_key_hex: &str) -> Result<Verifier, String> {
        let bytes: [u8; 32] = hex::decode(public_key_hex)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or("the public key must be 64 hex characters")?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|e| e.to_string())?;
        Ok(Verifier { key })
    }

    /// Verifies one request at `now` (Unix seconds).
    ///
    /// # Errors
    ///
    /// Why it is refused.
    pub fn verify(
        &self,
        signature: Option<&str>,
        timestamp: Option<&str>,
        body: &[u8],
        now: i64,
    ) -> Result<(), SignatureError> {
        let (Some(signature), Some(timestamp)) = (signature, timestamp) else {
            return Err(SignatureError::Missing);
        };
        let signature: [u8; 64] = hex::decode(signature)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or(SignatureError::Malformed)?;
        let signature = Signature::from_bytes(&signature);
        let mut message = Vec::with_capacity(timestamp.len() + body.len());
        message.extend_from_slice(timestamp.as_bytes());
        message.extend_from_slice(body);
        self.key
            .verify_strict(&message, &signature)
            .map_err(|_| SignatureError::Mismatch)?;
        let at: i64 = timestamp.parse().map_err(|_| SignatureError::Malformed)?;
        if (now - at).abs() > TOLERANCE_SECONDS {
            return Err(SignatureError::Stale);
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
struct Endpoint {
    handler: Handler,
    verifier: Verifier,
}

/// The route, for the shared server.
pub fn router(handler: Handler, verifier: Verifier) -> Router {
    Router::new()
        .route("/discord/interactions", post(interactions))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(Endpoint { handler, verifier })
}

async fn interactions(
    State(endpoint): State<Endpoint>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    if let Err(error) = endpoint.verifier.verify(
        header("x-signature-ed25519"),
        header("x-signature-timestamp"),
        &body,
        now,
    ) {
        tracing::warn!(%error, "refused a Discord interaction");
        bot_core::metrics::metrics().request("discord", "rejected");
        return (StatusCode::UNAUTHORIZED, "invalid request signature").into_response();
    }
    let interaction: Interaction = match serde_json::from_slice(&body) {
        Ok(interaction) => interaction,
        Err(error) => {
            tracing::warn!(%error, "unreadable Discord interaction");
            return (StatusCode::BAD_REQUEST, "unreadable interaction").into_response();
        }
    };
    let (ack, pending) = endpoint.handler.begin(&interaction).await;
    endpoint.handler.proceed(pending);
    Json(ack).into_response()
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer as _, SigningKey};

    use super::*;

    #[test]
    fn signatures_are_checked_with_their_timestamp() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let verifier = Verifier::new(&hex::encode(key.verifying_key().to_bytes())).expect("a key");
        let body = br#"{"type":1}"#;
        let sign = |timestamp: &str, body: &[u8]| {
            let mut message = timestamp.as_bytes().to_vec();
            message.extend_from_slice(body);
            hex::encode(key.sign(&message).to_bytes())
        };
        let good = sign("1000", body);
        assert_eq!(
            verifier.verify(Some(&good), Some("1000"), body, 1010),
            Ok(())
        );
        assert_eq!(
            verifier.verify(Some(&good), Some("1000"), b"{\"type\":2}", 1010),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verifier.verify(Some(&good), Some("1001"), body, 1010),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verifier.verify(Some(&good), Some("1000"), body, 1000 + 301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verifier.verify(None, Some("1000"), body, 1000),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verifier.verify(Some("zz"), Some("1000"), body, 1000),
            Err(SignatureError::Malformed)
        );
        let other = SigningKey::from_bytes(&[8; 32]);
        let mut message = b"1000".to_vec();
        message.extend_from_slice(body);
        let forged = hex::encode(other.sign(&message).to_bytes());
        assert_eq!(
            verifier.verify(Some(&forged), Some("1000"), body, 1000),
            Err(SignatureError::Mismatch)
        );
        assert!(Verifier::new("abc").is_err());
    }
}
