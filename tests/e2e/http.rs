//! The HTTP server answers liveness and readiness probes.

use bot_core::Backend;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::helpers::spawn_app;

/// A minimal HTTP/1.1 GET; returns the status code and body.
async fn get(address: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    (status, body)
}

async fn probes_answer_while_the_server_runs(backend: Backend, test: &str) {
    let Some(app) = spawn_app(backend, test).await else {
        return;
    };
    assert_eq!(
        get(app.address, "/healthz").await,
        (200, "ok\n".to_string())
    );
    let (status, body) = get(app.address, "/readyz").await;
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    assert_eq!(get(app.address, "/no-such-route").await.0, 404);
    let db = app.stop().await;
    assert!(db.store().audit().await.expect("audit").is_clean());
}

#[tokio::test]
async fn probes_answer_on_sqlite() {
    probes_answer_while_the_server_runs(Backend::Sqlite, "probes_answer_on_sqlite").await;
}

#[tokio::test]
async fn probes_answer_on_postgres() {
    probes_answer_while_the_server_runs(Backend::Postgres, "probes_answer_on_postgres").await;
}
