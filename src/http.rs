//! The one axum router. Each part of the application adds its routes here.

use axum::{Router, extract::State, http::StatusCode, routing::get};
use bot_core::Store;

/// What HTTP handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Store,
}

/// Every route the server answers.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// Liveness: the process is up and serving HTTP.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: the database answers and its schema is current.
async fn readyz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    if state.store.is_ready().await {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "database unreachable or schema behind\n",
        )
    }
}
