//! Local stand-ins for the outside services imagegpt talks to, for tests. Each speaks the real
//! service's wire format (paths, headers, JSON shapes, error bodies) and is at least as strict as
//! the real one about what it accepts; tests script the failures the real services produce.

// Handlers answer with whole responses; their size does not matter in a test fake.
#![allow(clippy::result_large_err)]
// The fakes build whole Stripe objects with `json!`.
#![recursion_limit = "256"]

pub mod discord;
pub mod openai;
pub mod replicate;
pub mod stripe;
pub mod telegram;

use std::net::SocketAddr;

use axum::Router;
use tokio::task::JoinHandle;

/// A fake's HTTP server; stops when dropped.
#[derive(Debug)]
pub struct Server {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Server {
    /// Serves `router` on a free port of 127.0.0.1.
    ///
    /// # Panics
    ///
    /// When no port can be bound (a test cannot go on without its fake).
    pub async fn start(router: Router) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a port for a fake");
        let addr = listener.local_addr().expect("fake's address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Server { addr, task }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A small real PNG of the given size, for fakes that return images.
pub fn png(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
    });
    let mut bytes = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut bytes, image::ImageFormat::Png)
        .expect("encode a PNG in memory");
    bytes.into_inner()
}
