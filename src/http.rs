//! The one axum router (`/healthz`, `/readyz`, `/metrics`, and `/files/…` for results too large
//! to upload, served from the store by whichever instance gets the request); each part of the
//! application adds its routes to it.

use axum::{
    Router,
    extract::{Path, Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use bot_core::Store;

/// What HTTP handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Store,
    /// One strong reference per running job worker (and one here): a count of 1 means none run.
    pub workers: std::sync::Arc<()>,
}

/// Every route the server answers.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/files/{id}/{name}", get(file))
        .with_state(state)
}

/// Liveness: the process is up and serving HTTP.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: job workers run, the database answers and its schema is current.
async fn readyz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    if std::sync::Arc::strong_count(&state.workers) <= 1 {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "no job worker is running\n",
        );
    }
    if state.store.is_ready().await {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "database unreachable or schema behind\n",
        )
    }
}

/// Prometheus metrics; the queue and the ledger's totals are read at each scrape.
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let metrics = bot_core::metrics::metrics();
    metrics.refresh(&state.store).await;
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.render(),
    )
}

#[derive(serde::Deserialize)]
struct Signed {
    expires: i64,
    sig: String,
}

/// A large result behind a signed link: 404 for any link that was not made as it is, 410 once
/// it expired.
async fn file(
    State(state): State<AppState>,
    Path((id, name)): Path<(String, String)>,
    Query(signed): Query<Signed>,
) -> Response {
    let opened =
        bot_core::media::links::open(&state.store, &id, &name, signed.expires, &signed.sig).await;
    match opened {
        Ok(Some(file)) => (
            [
                (header::CONTENT_TYPE, file.mime),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{}\"", file.name),
                ),
            ],
            file.bytes,
        )
            .into_response(),
        Ok(None) if signed.expires.saturating_mul(1_000) < now_millis() => {
            (StatusCode::GONE, "this link has expired\n").into_response()
        }
        Ok(None) => (StatusCode::NOT_FOUND, "no such file\n").into_response(),
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "serving a large file failed");
            (StatusCode::SERVICE_UNAVAILABLE, "try again in a moment\n").into_response()
        }
    }
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
