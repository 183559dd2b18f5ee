//! The imagegpt application: configuration, the command line, the HTTP server and the wiring
//! that starts every part. `main.rs` only calls into here, so tests run exactly what production
//! runs.

#![forbid(unsafe_code)]

pub mod chat;
pub mod cli;
pub mod config;
pub mod http;
pub mod providers;
pub mod startup;
pub mod telemetry;
