//! The one axum router (`/healthz`, `/readyz`, `/metrics`); each part of the application adds
//! its routes to it.

use axum::{Router, extract::State, http::StatusCode, routing::get};
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
async fn metrics(State(state): State<AppState>) -> impl axum::response::IntoResponse {
    let metrics = bot_core::metrics::metrics();
    metrics.refresh(&state.store).await;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.render(),
    )
}
