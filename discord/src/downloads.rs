//! Results too large for Discord's upload limit that cannot be re-encoded (videos, audio) are
//! offered through a signed, expiring link under `PUBLIC_BASE_URL`: `GET /files/{id}/{name}?
//! expires=…&sig=…`, where `sig` is an HMAC-SHA256 of id, name and expiry under a key made at
//! start. The file sits in a private temporary folder of this instance until it expires, then
//! is deleted; a link is refused once expired or when any part of it was changed.

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{
    Router,
    extract::{Path, Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;

/// How long a link works.
pub const LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// Signed links to large results.
pub struct Downloads {
    base: String,
    key: [u8; 32],
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for Downloads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Downloads")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Downloads {
    /// Links under `base` (`PUBLIC_BASE_URL`).
    ///
    /// # Errors
    ///
    /// When the temporary folder cannot be made.
    pub fn new(base: &str) -> std::io::Result<Downloads> {
        let mut key = [0u8; 32];
        rand::fill(&mut key);
        Ok(Downloads {
            base: base.trim_end_matches('/').to_string(),
            key,
            dir: tempfile::Builder::new()
                .prefix("imagegpt-files-")
                .tempdir()?,
        })
    }

    fn signature(&self, id: &str, name: &str, expires: u64) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(format!("{id}\n{name}\n{expires}").as_bytes());
        mac
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.path().join(id)
    }

    /// Keeps `bytes` until the link expires and returns the link.
    ///
    /// # Errors
    ///
    /// When the file cannot be written.
    pub async fn offer(&self, name: &str, bytes: &[u8]) -> std::io::Result<String> {
        self.sweep().await;
        let mut raw = [0u8; 16];
        rand::fill(&mut raw);
        let id = hex::encode(raw);
        let name: String = name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            .collect();
        tokio::fs::write(self.path(&id), bytes).await?;
        let expires = now() + LIFETIME.as_secs();
        let sig = hex::encode(self.signature(&id, &name, expires).finalize().into_bytes());
        Ok(format!(
            "{}/files/{id}/{name}?expires={expires}&sig={sig}",
            self.base
        ))
    }

    /// Deletes files whose links have expired.
    async fn sweep(&self) {
        let Ok(mut entries) = tokio::fs::read_dir(self.dir.path()).await else {
            return;
        };
        while let Ok(Some(entry)) = entries.next_entry().await {
            let old = entry
                .metadata()
                .await
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|at| at.elapsed().ok())
                .is_some_and(|age| age > LIFETIME);
            if old {
                let _ = tokio::fs::remove_file(entry.path()).await;
            }
        }
    }

    /// `GET /files/{id}/{name}`.
    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/files/{id}/{name}", get(serve))
            .with_state(self)
    }
}

#[derive(serde::Deserialize)]
struct Signed {
    expires: u64,
    sig: String,
}

async fn serve(
    State(downloads): State<Arc<Downloads>>,
    Path((id, name)): Path<(String, String)>,
    Query(signed): Query<Signed>,
) -> Response {
    let valid_id = id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit());
    let signature = hex::decode(&signed.sig).unwrap_or_default();
    let genuine = valid_id
        && downloads
            .signature(&id, &name, signed.expires)
            .verify_slice(&signature)
            .is_ok();
    if !genuine {
        return (StatusCode::NOT_FOUND, "no such file\n").into_response();
    }
    if signed.expires < now() {
        let _ = tokio::fs::remove_file(downloads.path(&id)).await;
        return (StatusCode::GONE, "this link has expired\n").into_response();
    }
    match tokio::fs::read(downloads.path(&id)).await {
        Ok(bytes) => {
            let kind = infer_mime(&name);
            (
                [
                    (header::CONTENT_TYPE, kind.to_string()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"{name}\""),
                    ),
                ],
                bytes,
            )
                .into_response()
        }
        Err(_) => (StatusCode::GONE, "this file is no longer kept\n").into_response(),
    }
}

fn infer_mime(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or_default() {
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "wav" => "audio/wav",
        "mp3" => "audio/mpeg",
        "gif" => "image/gif",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        _ => "application/octet-stream",
    }
}
