//! Signed, expiring links to results too large for a platform's upload limit:
//! `PUBLIC_BASE_URL/files/{id}/{name}?expires=…&sig=…`. The file is kept in the store until it
//! expires, so whichever instance gets the request serves it; `sig` is a random token kept with
//! it, so a link cannot be guessed, and any changed part of it is refused.

use std::time::Duration;

use crate::{Result, Store, media::Output, store::KeptFile};

/// How long a link works.
pub const LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// Makes and reads large-file links.
#[derive(Debug, Clone)]
pub struct FileLinks {
    base: String,
    store: Store,
}

impl FileLinks {
    /// Links under `base` (`PUBLIC_BASE_URL`), kept in `store`.
    pub fn new(base: &str, store: Store) -> FileLinks {
        FileLinks {
            base: base.trim_end_matches('/').to_string(),
            store,
        }
    }

    /// Keeps `media` until its link expires and returns the link.
    ///
    /// # Errors
    ///
    /// [`crate::Error::Internal`] when it cannot be kept.
    pub async fn offer(&self, media: &Output) -> Result<String> {
        let id = random_hex();
        let token = random_hex();
        let name: String = media
            .file_name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            .collect();
        let name = if name.is_empty() {
            "result".into()
        } else {
            name
        };
        let expires = crate::store::now_millis() / 1_000 + LIFETIME.as_secs() as i64;
        self.store
            .keep_file(
                &id,
                &token,
                &name,
                media.mime,
                media.bytes.clone(),
                expires * 1_000,
            )
            .await?;
        Ok(format!(
            "{}/files/{id}/{name}?expires={expires}&sig={token}",
            self.base
        ))
    }
}

/// Reads a link's parts back: the kept file when every part matches and it has not expired.
///
/// # Errors
///
/// [`crate::Error::Internal`] when the database fails.
pub async fn open(
    store: &Store,
    id: &str,
    name: &str,
    expires: i64,
    sig: &str,
) -> Result<Option<KeptFile>> {
    let well_formed = |text: &str| text.len() == 32 && text.chars().all(|c| c.is_ascii_hexdigit());
    if !well_formed(id) || !well_formed(sig) {
        return Ok(None);
    }
    store
        .kept_file(id, sig, name, expires.saturating_mul(1_000))
        .await
}

fn random_hex() -> String {
    let mut raw = [0u8; 16];
    rand::fill(&mut raw);
    raw.iter().map(|b| format!("{b:02x}")).collect()
}
