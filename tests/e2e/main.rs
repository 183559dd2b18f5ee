//! End-to-end tests: the whole application started on port 0, and the real binary run as an
//! operator would run it, against fresh databases.

mod adversarial;
mod chat;
mod cli;
mod discord_adapter;
mod helpers;
mod http;
mod operations;
mod payments;
mod telegram;
mod visibility;
